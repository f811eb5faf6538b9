"""Reference servers of the serving benchmark, on the same uvicorn stack as dl_service.

noop:  reads the upload and answers; the ceiling of the HTTP stack itself.
naive: the design of older projects: one model.predict per request inside an async handler.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from fastapi import FastAPI, File, UploadFile

from services.dl_service.app import NO_OPENTELEMETRY
from tasks.core.preprocessing import InputSpec, preprocess


def create_noop_app() -> FastAPI:
    app = FastAPI(telemetry=NO_OPENTELEMETRY)  # the same stack settings as dl_service

    @app.post("/predict")
    async def upload(file: UploadFile = File(...)) -> dict[str, int]:  # noqa: B008
        return {"size": len(await file.read())}

    return app


def create_naive_app() -> FastAPI:
    model = keras.models.load_model(os.environ["BENCH_MODEL_PATH"])
    spec = InputSpec(model.input_shape[1], model.input_shape[2])
    app = FastAPI(telemetry=NO_OPENTELEMETRY)  # the same stack settings as dl_service

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict[str, float]:  # noqa: B008
        pixels = preprocess(await file.read(), spec)[None].astype(np.float32)
        probabilities = model.predict(pixels, verbose=0)[0]
        return {"class": int(probabilities.argmax()), "confidence": float(probabilities.max())}

    return app
