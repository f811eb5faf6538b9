"""Micro-batching: concurrent requests share one model call, run off the event loop.

Requests wait at most ``max_wait`` for company, and a batch never exceeds ``max_batch`` images.
While one batch runs in the inference thread the next one gathers, so the model stays busy.
Each batch takes the current model once, so all its images get the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from services.dl_service.images import ImageRejected
from services.dl_service.model import ModelManager, ModelUnavailable, ServedModel


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
    def __init__(self, manager: ModelManager, max_batch: int, max_wait_seconds: float) -> None:
        self.manager, self.max_batch, self.max_wait = manager, max_batch, max_wait_seconds
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
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
        loop = asyncio.get_running_loop()
        pending = [_Pending(content, loop.create_future()) for content in contents]
        for item in pending:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in pending)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                model = self.manager.current
                outputs = await loop.run_in_executor(self._executor, _predict_each_or_all, model, batch)
            except Exception as error:
                outputs = [error] * len(batch)
            for item, output in zip(batch, outputs, strict=True):
                if item.future.done():  # a client that went away has cancelled its future
                    continue
                if isinstance(output, BaseException):
                    item.future.set_exception(output)
                else:
                    item.future.set_result(output)

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch


def _predict_each_or_all(model: ServedModel, batch: list[_Pending]) -> list[BatchOutput | BaseException]:
    """One model call for the batch; if an image the checks passed still fails to decode, the
    others are predicted one by one so only that request fails."""
    try:
        probabilities, features = model.predict([item.content for item in batch])
        return [BatchOutput(probabilities[i], features[i], model, len(batch)) for i in range(len(batch))]
    except tf.errors.InvalidArgumentError:
        if len(batch) == 1:
            return [ImageRejected(422, "corrupt or truncated image: the decoder refused it")]
        return [_predict_each_or_all(model, [item])[0] for item in batch]
