"""Micro-batching: concurrent requests share one model call, run off the event loop.

A batch closes when it holds ``max_batch`` images, or when the model is free and its oldest
request has waited ``max_wait``. While the model is busy the next batch keeps growing instead
of closing on a timer, so the event loop answers one batch and reads the next while the other
is computed: a closed-loop client pool never falls into lock-step with a single batch.
Waiting only pays when company is coming: requests arriving further apart than ``max_wait`` (a
smoothed mean of the gaps) go at once when the model is free, so a lone client never waits for
nothing, and under load the wait gathers batches again (BentoML's adaptive window and Triton's
queue delay answer the same question).
Each batch takes the current model once, so all its images get the same version.
The batch's predictions are recorded (``record``: the prediction log's group commit, in a thread of
its own while the model goes on) before any of its requests is answered, so an answer is never
ahead of its log row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.dl_service.images import CheckedImage, ImageRejected
from services.dl_service.model import NO_TRUST_FIELDS, ModelManager, ModelUnavailable, ServedModel, Shadow
from services.dl_service.shadow import ShadowRunner
from services.dl_service.store import new_prediction_id
from tasks.core.errors import MlopsError

logger = logging.getLogger(__name__)
GAP_SMOOTHING = 0.2  # weight of the newest gap between requests in their running mean


class Overloaded(MlopsError):
    """The service holds as many images, taken and not yet answered, as it may: 503 with Retry-After."""


@dataclass(frozen=True)
class BatchOutput:
    probabilities: np.ndarray
    features: np.ndarray
    model: ServedModel
    batch_size: int
    trust: dict[str, Any] = field(default_factory=lambda: dict(NO_TRUST_FIELDS))  # ServedModel.trust_fields
    prediction_id: str = field(default_factory=new_prediction_id)


@dataclass(frozen=True)
class Submitted:
    """One image of a request, as the batch's recorder sees it."""

    image: CheckedImage
    request_id: str | None
    started: float  # time.perf_counter() when the request arrived


Outcome = BatchOutput | BaseException
Recorder = Callable[[list[Submitted], list[Outcome]], list[Outcome]]
StageTimer = Callable[[str, float], None]  # (stage, seconds) of each batch: dl_service_batch_stage_seconds


@dataclass
class _Pending:
    submitted: Submitted
    future: asyncio.Future[BatchOutput]


class MicroBatcher:
    def __init__(
        self,
        manager: ModelManager,
        max_batch: int,
        max_wait_seconds: float,
        max_queued: int = 512,
        record: Recorder | None = None,
        shadow: ShadowRunner | None = None,
        timed: StageTimer | None = None,
    ) -> None:
        self.manager, self.max_batch, self.max_wait = manager, max_batch, max_wait_seconds
        self.record = record  # durable before answering: what it turns into an error is answered as that error
        self.shadow = shadow  # runs the manager's shadow version, if any, on the images each batch predicted
        self.timed = timed  # told how long each batch's model call took
        self.max_queued = max_queued  # images taken and not yet answered: past it a request is refused, not held
        self._queued = 0
        self._waiting: deque[_Pending] = deque()
        self._wake = asyncio.Event()  # set when a request arrives or a batch finishes
        self._in_flight = 0  # batches handed to the inference thread and not yet answered
        # Between submitted requests; no request yet reads as "no company in sight" (see _arrived).
        self._last_arrival, self._mean_gap = float("-inf"), 2 * max_wait_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        # Recording (the log's commit) runs beside inference, so the model never waits for the database.
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        self._recorder.shutdown(wait=True)

    async def submit(
        self, images: list[CheckedImage], request_id: str | None = None, started: float | None = None
    ) -> list[BatchOutput]:
        """Queue the checked images of one request; wait for their rows of the outputs."""
        if not self.manager.loaded:
            raise ModelUnavailable(self.manager.unavailable_reason)
        if self._queued + len(images) > self.max_queued:
            raise Overloaded(
                f"{self._queued} images are in hand and not yet answered (the limit is {self.max_queued}); "
                "retry shortly"
            )
        loop = asyncio.get_running_loop()
        started = time.perf_counter() if started is None else started
        pending = [_Pending(Submitted(image, request_id, started), loop.create_future()) for image in images]
        self._queued += len(pending)
        self._waiting.extend(pending)
        self._arrived(started)
        self._wake.set()
        if len(pending) == 1:  # the common case: skip gather's bookkeeping
            return [await pending[0].future]
        outputs = await asyncio.gather(*(item.future for item in pending), return_exceptions=True)
        for index, output in enumerate(outputs):
            if isinstance(output, ImageRejected):  # re-decoded for a reloaded model and refused
                raise output.at(index)
            if isinstance(output, BaseException):
                raise output
        return [output for output in outputs if isinstance(output, BatchOutput)]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                model = self.manager.current
            except ModelUnavailable as error:
                self._queued -= len(batch)
                _deliver(batch, [error] * len(batch))
                continue
            shadow = self.manager.shadow if self.shadow is not None else None
            self._in_flight += 1
            predicted = loop.run_in_executor(self._executor, self._infer, model, shadow, batch)
            predicted.add_done_callback(lambda future, batch=batch: self._predicted(batch, future))  # type: ignore[misc]

    def _infer(self, model: ServedModel, shadow: Shadow | None, batch: list[_Pending]) -> list[Outcome]:
        """The batch through the production model, then handed (in this thread) to the shadow, if any."""
        started = time.perf_counter()
        outcomes = _predict_isolating_failures(model, batch)
        if self.timed is not None:
            self.timed("inference", time.perf_counter() - started)
        if shadow is not None and self.shadow is not None:
            answered = [(item, out) for item, out in zip(batch, outcomes, strict=True) if isinstance(out, BatchOutput)]
            try:  # whatever happens to the shadow, these answers stand
                self.shadow.offer(
                    shadow,
                    model.version,
                    [item.submitted.image for item, _ in answered],
                    [out.prediction_id for _, out in answered],
                    batch[0].submitted.started,
                )
            except Exception:
                logger.exception("The shadow could not take a batch")
        return outcomes

    def _predicted(self, batch: list[_Pending], predicted: asyncio.Future[list[Outcome]]) -> None:
        """The model is free for the next batch; this one is recorded (off the loop) and then answered."""
        self._in_flight -= 1
        self._wake.set()
        error = predicted.exception()
        outcomes: list[Outcome] = [error] * len(batch) if error is not None else predicted.result()
        if self.record is None:
            self._answer(batch, outcomes)
            return
        submitted = [item.submitted for item in batch]
        recorded = asyncio.get_running_loop().run_in_executor(self._recorder, self.record, submitted, outcomes)
        recorded.add_done_callback(lambda future, batch=batch: self._recorded(batch, future))  # type: ignore[misc]

    def _recorded(self, batch: list[_Pending], recorded: asyncio.Future[list[Outcome]]) -> None:
        error = recorded.exception()
        self._answer(batch, [error] * len(batch) if error is not None else recorded.result())

    def _answer(self, batch: list[_Pending], outcomes: Sequence[Outcome]) -> None:
        self._queued -= len(batch)
        _deliver(batch, outcomes)

    def _arrived(self, now: float) -> None:
        # Any gap longer than the wait says the same (no company): capped, an idle spell is forgotten
        # after a few close arrivals instead of thousands.
        gap, self._last_arrival = min(now - self._last_arrival, 2 * self.max_wait), now
        self._mean_gap = GAP_SMOOTHING * gap + (1 - GAP_SMOOTHING) * self._mean_gap

    @property
    def wait(self) -> float:
        """How long a batch waits for company while the model is free: ``max_wait`` only when requests
        arrive closer together than that, else none."""
        return self.max_wait if self._mean_gap < self.max_wait else 0.0

    async def _collect(self) -> list[_Pending]:
        """Wait for the first request, then for company: until full, or the model is free and the wait is over."""
        while not self._waiting:
            self._wake.clear()
            await self._wake.wait()
        deadline = time.perf_counter() + self.wait
        batch: list[_Pending] = []
        while True:
            while self._waiting and len(batch) < self.max_batch:
                batch.append(self._waiting.popleft())
            if len(batch) >= self.max_batch:
                return batch
            remaining = deadline - time.perf_counter()
            if self._in_flight == 0 and remaining <= 0:
                return batch
            self._wake.clear()
            try:  # while the model is busy there is no point closing the batch
                await asyncio.wait_for(self._wake.wait(), None if self._in_flight else remaining)
            except TimeoutError:
                return batch


def _deliver(batch: list[_Pending], outputs: Sequence[BatchOutput | BaseException]) -> None:
    for item, output in zip(batch, outputs, strict=True):
        if item.future.done():  # a client that went away has cancelled its future
            continue
        if isinstance(output, BaseException):
            item.future.set_exception(output)
        else:
            item.future.set_result(output)


def _predict_isolating_failures(model: ServedModel, batch: list[_Pending]) -> list[Outcome]:
    """One model call for the batch; any failure reaches only the requests whose images cause it."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    inputs: dict[int, np.ndarray] = {}
    for position, item in enumerate(batch):
        try:
            inputs[position] = model.input_of(item.submitted.image)
        except (OSError, SyntaxError, ValueError) as error:  # re-decoded for a reloaded model, and refused
            outcomes[position] = ImageRejected(422, f"corrupt or truncated image: {error}")
    positions = list(inputs)
    for position, outcome in zip(positions, _predict_bisecting(model, [inputs[p] for p in positions]), strict=True):
        outcomes[position] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _predict_bisecting(model: ServedModel, images: list[np.ndarray]) -> list[Outcome]:
    """If the model call fails, the batch is halved and each half tried again, so a failure reaches only
    the images that raise it alone, for about 2 log2(n) more calls instead of n."""
    if not images:
        return []
    try:
        out = model.predict(np.stack(images))
        trust = model.trust_fields(out)
        return [
            BatchOutput(out.probabilities[i], out.features[i], model, len(images), trust[i]) for i in range(len(images))
        ]
    except Exception as error:
        if len(images) == 1:
            return [error]
        middle = len(images) // 2
        return [*_predict_bisecting(model, images[:middle]), *_predict_bisecting(model, images[middle:])]
