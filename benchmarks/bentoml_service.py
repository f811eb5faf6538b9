"""The same model served by BentoML 1.4 with adaptive batching (run in its own virtual environment).

BENCH_MODEL_PATH=.../model.keras [BENCH_WORKERS=2] bentoml serve benchmarks.bentoml_service:Classifier --port 3000
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
from PIL.Image import Image


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")), traffic={"concurrency": 256})
class Classifier:
    def __init__(self) -> None:
        import keras

        self.model = keras.models.load_model(os.environ["BENCH_MODEL_PATH"])
        self.size = (self.model.input_shape[2], self.model.input_shape[1])

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)
    def predict(self, files: list[Image]) -> list[dict[str, float]]:
        pixels = np.stack([np.asarray(f.convert("RGB").resize(self.size), dtype=np.float32) for f in files])
        probabilities = self.model(pixels, training=False).numpy()
        return [{"class": int(p.argmax()), "confidence": float(p.max())} for p in probabilities]
