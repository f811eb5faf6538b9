"""MicroBatcher's closing rule, shown by the batch sizes a fake model is called with.

A batch closes when it holds ``max_batch`` images, or when the model is free and its oldest request
has waited ``max_wait``; while the model is busy the next batch grows instead of closing on a timer.
Every caller gets its own row back, an unloaded model refuses with its reason, and an image the model
fails on fails only its own request. The model is a fake on purpose: the rule is under test,
not TensorFlow.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import numpy as np
import pytest
import tensorflow as tf

from services.dl_service.batching import BatchOutput, MicroBatcher, Overloaded
from services.dl_service.images import CheckedImage, ImageRejected
from services.dl_service.model import NO_TRUST_FIELDS, Inference, ModelManager, ModelUnavailable

T = TypeVar("T")
Outcome = list[BatchOutput] | BaseException  # what one submit gives, under gather(return_exceptions=True)


def image(number: int) -> CheckedImage:
    """A checked image whose model input is just its number."""
    return CheckedImage(str(number).encode(), "", {}, np.array([float(number)]))


POISON = image(-1)  # an image the fake model's call fails on
UNDECODABLE = CheckedImage(b"corrupt", "", {}, None)  # must be decoded again (the model was reloaded) and cannot be


class FakeModel:
    """Stands in for ServedModel: row i of its outputs is the number image i stands for."""

    def __init__(self, busy: bool = False) -> None:
        self.calls: list[int] = []  # the batch size of each call, in order
        self.entered = threading.Event()  # set once the first call has started
        self.free = threading.Event()  # a busy model holds every call until this is set
        if not busy:
            self.free.set()

    def input_of(self, checked: CheckedImage) -> np.ndarray:
        if checked.pixels is None:
            raise OSError("image file is truncated")
        return checked.pixels

    def predict(self, images: np.ndarray) -> Inference:
        self.calls.append(len(images))
        self.entered.set()
        self.free.wait(timeout=30)
        numbers = images[:, 0]
        if (numbers < 0).any():
            raise tf.errors.InvalidArgumentError(None, None, "the model failed on an image")
        return Inference(np.stack([numbers, -numbers], axis=1), numbers[:, None] * 10, None, None)

    def trust_fields(self, inference: Inference) -> list[dict[str, object]]:
        return [dict(NO_TRUST_FIELDS) for _ in inference.probabilities]  # a version without a trust layer


class FakeManager:
    """What MicroBatcher reads of ModelManager: whether a model is loaded, why not, and the current one."""

    def __init__(self, model: FakeModel | None, unavailable_reason: str = "no model loaded yet") -> None:
        self.model, self.unavailable_reason = model, unavailable_reason

    @property
    def loaded(self) -> bool:
        return self.model is not None

    @property
    def current(self) -> FakeModel:
        if self.model is None:
            raise ModelUnavailable(self.unavailable_reason)
        return self.model


def with_batcher(
    manager: FakeManager,
    max_batch: int,
    max_wait: float,
    scenario: Callable[[MicroBatcher], Awaitable[T]],
    max_queued: int = 512,
) -> T:
    """Run ``scenario`` against a started batcher in a fresh event loop; free the model and stop after."""

    async def main() -> T:
        batcher = MicroBatcher(cast(ModelManager, manager), max_batch, max_wait, max_queued)
        batcher.start()
        try:
            return await scenario(batcher)
        finally:
            if manager.model is not None:
                manager.model.free.set()
            await batcher.stop()

    return asyncio.run(main())


def row(outputs: list[BatchOutput]) -> list[list[float]]:
    return [output.probabilities.tolist() for output in outputs]


def test_micro_batcher_splits_a_burst_into_full_batches_and_answers_each_caller_with_its_row() -> None:
    model = FakeModel()

    async def burst(batcher: MicroBatcher) -> list[list[BatchOutput]]:
        return await asyncio.gather(*(batcher.submit([image(n)]) for n in range(10)))

    answers = with_batcher(FakeManager(model), max_batch=4, max_wait=0.05, scenario=burst)
    assert model.calls == [4, 4, 2]
    assert [row(answer) for answer in answers] == [[[n, -n]] for n in range(10)]
    assert [answer[0].features.tolist() for answer in answers] == [[10.0 * n] for n in range(10)]
    assert [answer[0].batch_size for answer in answers] == [4] * 8 + [2] * 2
    assert all(answer[0].model is model for answer in answers)


def test_micro_batcher_returns_a_request_larger_than_a_batch_in_image_order() -> None:
    model = FakeModel()

    async def one_request(batcher: MicroBatcher) -> list[BatchOutput]:
        return await batcher.submit([image(n) for n in range(7)])

    outputs = with_batcher(FakeManager(model), max_batch=3, max_wait=0.05, scenario=one_request)
    assert model.calls == [3, 3, 1]
    assert row(outputs) == [[n, -n] for n in range(7)]


def test_micro_batcher_answers_a_lone_request_at_once_when_the_model_is_free() -> None:
    model = FakeModel()

    async def lone(batcher: MicroBatcher) -> tuple[list[BatchOutput], float]:
        start = time.perf_counter()
        outputs = await batcher.submit([image(7)])
        return outputs, time.perf_counter() - start

    outputs, seconds = with_batcher(FakeManager(model), max_batch=8, max_wait=0.5, scenario=lone)
    assert model.calls == [1]
    assert row(outputs) == [[7, -7]]
    assert seconds < 0.4  # no request before it: no company is coming, so it did not wait the 0.5 s


def test_micro_batcher_puts_requests_arriving_within_max_wait_into_one_call() -> None:
    model = FakeModel()

    async def trickle(batcher: MicroBatcher) -> list[list[BatchOutput]]:
        requests = []
        for n in range(8):
            requests.append(asyncio.create_task(batcher.submit([image(n)])))
            await asyncio.sleep(0.05)  # eight arrivals over ~0.35 s, well inside the 0.6 s wait
        return await asyncio.gather(*requests)

    answers = with_batcher(FakeManager(model), max_batch=8, max_wait=0.6, scenario=trickle)
    # The first had no company in sight and went alone; once arrivals 0.05 s apart are the pattern,
    # they wait for each other and share calls.
    assert model.calls[0] == 1 and len(model.calls) <= 5 and max(model.calls) >= 3, model.calls
    assert [row(answer) for answer in answers] == [[[n, -n]] for n in range(8)]


def test_micro_batcher_sends_each_request_at_once_when_requests_arrive_further_apart_than_max_wait() -> None:
    model = FakeModel()

    async def sparse(batcher: MicroBatcher) -> list[float]:
        seconds = []
        for n in range(3):
            start = time.perf_counter()
            await batcher.submit([image(n)])
            seconds.append(time.perf_counter() - start)
            await asyncio.sleep(0.45)  # the next arrival comes later than max_wait
        return seconds

    seconds = with_batcher(FakeManager(model), max_batch=8, max_wait=0.3, scenario=sparse)
    assert model.calls == [1, 1, 1]
    assert max(seconds) < 0.25  # none of them waited the 0.3 s for company that was not coming


def test_micro_batcher_grows_the_next_batch_while_the_model_is_busy() -> None:
    model = FakeModel(busy=True)

    async def during_a_slow_call(batcher: MicroBatcher) -> list[list[BatchOutput]]:
        first = asyncio.create_task(batcher.submit([image(100)]))
        assert await asyncio.to_thread(model.entered.wait, 10), "the first batch never reached the model"
        later = []
        for n in range(11):
            later.append(asyncio.create_task(batcher.submit([image(n)])))
            await asyncio.sleep(0.03)  # 11 arrivals over ~0.33 s, fifteen times max_wait
        model.free.set()
        return await asyncio.gather(first, *later)

    answers = with_batcher(FakeManager(model), max_batch=8, max_wait=0.02, scenario=during_a_slow_call)
    # A timer-closed batcher would have called the model once per arrival: [1, 1, 1, ...].
    assert model.calls == [1, 8, 3]
    assert [row(answer) for answer in answers] == [[[n, -n]] for n in (100, *range(11))]
    assert [answer[0].batch_size for answer in answers] == [1] + [8] * 8 + [3] * 3


def test_micro_batcher_refuses_past_its_queue_bound_and_answers_everything_it_took() -> None:
    model = FakeModel(busy=True)

    async def flood(batcher: MicroBatcher) -> list[list[BatchOutput]]:
        first = asyncio.create_task(batcher.submit([image(100)]))
        assert await asyncio.to_thread(model.entered.wait, 10), "the first batch never reached the model"
        taken = [asyncio.create_task(batcher.submit([image(n), image(n)])) for n in range(3)]
        taken.append(asyncio.create_task(batcher.submit([image(7)])))
        await asyncio.sleep(0.05)  # 8 images taken and not answered (1 in the busy model): the bound
        with pytest.raises(Overloaded, match=re.escape("8 images are in hand and not yet answered (the limit is 8)")):
            await batcher.submit([image(8)])
        model.free.set()
        return await asyncio.gather(first, *taken)

    answers = with_batcher(FakeManager(model), max_batch=4, max_wait=0.02, scenario=flood, max_queued=8)
    assert [row(answer) for answer in answers] == [[[100, -100]], *([[n, -n]] * 2 for n in range(3)), [[7, -7]]]
    assert sum(model.calls) == 8  # the refused request never reached the model


def test_micro_batcher_submit_raises_model_unavailable_with_the_reason() -> None:
    reason = "no production model for 'fashion-cnn' yet: run the deploy flow"

    async def ask(batcher: MicroBatcher) -> list[BatchOutput]:
        return await batcher.submit([image(1)])

    with pytest.raises(ModelUnavailable, match=re.escape(reason)):
        with_batcher(FakeManager(None, reason), max_batch=4, max_wait=0.01, scenario=ask)


def test_micro_batcher_fails_only_the_request_whose_image_the_model_fails_on() -> None:
    model = FakeModel()

    async def mixed(batcher: MicroBatcher) -> tuple[Outcome, Outcome]:
        return await asyncio.gather(
            batcher.submit([image(1), POISON, image(3)]), batcher.submit([image(4)]), return_exceptions=True
        )

    failed, other = with_batcher(FakeManager(model), max_batch=8, max_wait=0.05, scenario=mixed)
    assert isinstance(failed, tf.errors.InvalidArgumentError)
    assert not isinstance(other, BaseException)
    assert row(other) == [[4, -4]]
    assert model.calls == [4, 2, 1, 1, 2]  # the shared batch failed: halved until the bad image stood alone


def test_micro_batcher_names_an_image_that_cannot_be_decoded_again_for_a_reloaded_model() -> None:
    model = FakeModel()

    async def mixed(batcher: MicroBatcher) -> tuple[Outcome, Outcome]:
        return await asyncio.gather(
            batcher.submit([image(1), UNDECODABLE, image(3)]), batcher.submit([image(4)]), return_exceptions=True
        )

    rejected, other = with_batcher(FakeManager(model), max_batch=8, max_wait=0.05, scenario=mixed)
    assert isinstance(rejected, ImageRejected)
    assert (rejected.index, rejected.status_code) == (1, 422)
    assert not isinstance(other, BaseException) and row(other) == [[4, -4]]
    assert model.calls == [3]  # the others still share one call


def test_micro_batcher_isolates_a_bad_image_in_a_full_batch_in_a_few_calls() -> None:
    model = FakeModel()

    async def full(batcher: MicroBatcher) -> list[Outcome]:
        images = [[image(n)] for n in range(32)]
        images[21] = [POISON]
        return await asyncio.gather(*(batcher.submit(one) for one in images), return_exceptions=True)

    outcomes = with_batcher(FakeManager(model), max_batch=32, max_wait=0.2, scenario=full)
    assert [n for n, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)] == [21]
    assert all(row(o) == [[n, -n]] for n, o in enumerate(outcomes) if not isinstance(o, BaseException))
    assert model.calls[0] == 32 and len(model.calls) <= 1 + 2 * 5  # one-by-one would take 33 calls
