"""Reference servers of the serving benchmark, on the same uvicorn stack as dl_service.

noop:  reads the upload as /predict does (multipart or the raw body) and answers; the ceiling of the
       HTTP stack itself.
naive: the design of older projects: one model.predict per request inside an async handler.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from fastapi import FastAPI, File, Request, UploadFile

from services.dl_service.app import NO_OPENTELEMETRY
from services.dl_service.uploads import read_image_upload
from tasks.core.preprocessing import InputSpec, preprocess


def create_noop_app() -> FastAPI:
    app = FastAPI(telemetry=NO_OPENTELEMETRY)  # the same stack settings as dl_service

    @app.post("/predict")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await read_image_upload(request, 10 * 1024 * 1024))}

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
