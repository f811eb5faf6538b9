"""Micro-batching: concurrent requests share one model call, run off the event loop.

A batch closes when it holds ``max_batch`` images, or when the model is free and its oldest
request has waited ``max_wait``. While the model is busy the next batch keeps growing instead
of closing on a timer, so the event loop answers one batch and reads the next while the other
is computed: a closed-loop client pool never falls into lock-step with a single batch.
Each batch takes the current model once, so all its images get the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from services.dl_service.images import ImageRejected
from services.dl_service.model import ModelManager, ModelUnavailable, ServedModel
from tasks.core.errors import MlopsError


class Overloaded(MlopsError):
    """The service holds as many images, taken and not yet answered, as it may: 503 with Retry-After."""


@dataclass(frozen=True)
class BatchOutput:
    probabilities: np.ndarray
    features: np.ndarray
    model: ServedModel
    batch_size: int


@dataclass
class _Pending:
    content: bytes
    future: asyncio.Future[BatchOutput]


class MicroBatcher:
    def __init__(self, manager: ModelManager, max_batch: int, max_wait_seconds: float, max_queued: int = 512) -> None:
        self.manager, self.max_batch, self.max_wait = manager, max_batch, max_wait_seconds
        self.max_queued = max_queued  # images taken and not yet answered: past it a request is refused, not held
        self._queued = 0
        self._waiting: deque[_Pending] = deque()
        self._wake = asyncio.Event()  # set when a request arrives or a batch finishes
        self._in_flight = 0  # batches handed to the inference thread and not yet answered
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, contents: list[bytes]) -> list[BatchOutput]:
        """Queue the encoded (already checked) images of one request; wait for their rows of the outputs."""
        if not self.manager.loaded:
            raise ModelUnavailable(self.manager.unavailable_reason)
        if self._queued + len(contents) > self.max_queued:
            raise Overloaded(
                f"{self._queued} images are in hand and not yet answered (the limit is {self.max_queued}); "
                "retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = [_Pending(content, loop.create_future()) for content in contents]
        self._queued += len(pending)
        self._waiting.extend(pending)
        self._wake.set()
        if len(pending) == 1:  # the common case: skip gather's bookkeeping
            return [await pending[0].future]
        outputs = await asyncio.gather(*(item.future for item in pending), return_exceptions=True)
        for index, output in enumerate(outputs):
            if isinstance(output, ImageRejected):  # the decoder refused one the checks passed
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
            self._in_flight += 1
            done = loop.run_in_executor(self._executor, _predict_isolating_failures, model, batch)
            done.add_done_callback(lambda future, batch=batch: self._finished(batch, future))  # type: ignore[misc]

    def _finished(self, batch: list[_Pending], done: asyncio.Future[list[BatchOutput | BaseException]]) -> None:
        self._in_flight -= 1
        self._queued -= len(batch)
        self._wake.set()
        error = done.exception()
        _deliver(batch, [error] * len(batch) if error is not None else done.result())

    async def _collect(self) -> list[_Pending]:
        """Wait for the first request, then for company: until full, or the model is free and the wait is over."""
        while not self._waiting:
            self._wake.clear()
            await self._wake.wait()
        deadline = time.perf_counter() + self.max_wait
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


def _predict_isolating_failures(model: ServedModel, batch: list[_Pending]) -> list[BatchOutput | BaseException]:
    """One model call for the batch. If it fails, the batch is halved and each half tried again, so
    a bad image fails only its own request and costs about 2 log2(n) more calls, not n: an image the
    decoder refuses (one the checks passed) is a 422 naming it; any other error reaches only the
    requests whose images raise it alone."""
    try:
        probabilities, features = model.predict([item.content for item in batch])
        return [BatchOutput(probabilities[i], features[i], model, len(batch)) for i in range(len(batch))]
    except tf.errors.OpError as error:
        if len(batch) > 1:
            middle = len(batch) // 2
            return [
                *_predict_isolating_failures(model, batch[:middle]),
                *_predict_isolating_failures(model, batch[middle:]),
            ]
        if isinstance(error, tf.errors.InvalidArgumentError):
            return [ImageRejected(422, "corrupt or truncated image: the decoder refused it")]
        return [error]
