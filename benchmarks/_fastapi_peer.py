"""The FastAPI peer of ``bench_serving.py``: TF Serving's predict route for the same model,
written the way FastAPI's documentation shows.

* the model is loaded in a lifespan handler into a module-level dict, as in FastAPI's
  "Lifespan Events" page (its example is exactly "loading a shared machine learning model");
* the body is a pydantic model, ``{"instances": list[list[float]]}``;
* the endpoint is ``async def``: FastAPI's "Concurrency and async / await" page says to use
  ``async def`` when the function does not wait on anything, and that a compute-only path
  operation written with plain ``def`` costs more, being run in a thread pool ("in FastAPI the
  effect would be quite opposite ... it's better to use async def unless your path operation
  functions use code that performs blocking I/O"). ``app_def`` is the same route as a plain
  ``def`` (run in Starlette's thread pool), measured too;
* the answer is the returned dict, ``{"predictions": ...}``, serialised by FastAPI
  (``jsonable_encoder``, ``JSONResponse``); no return annotation, as in the docs' examples
  (one would make FastAPI validate the answer through a response model as well).

Run as ``uvicorn _fastapi_peer:app`` (or ``:app_def``) with the model file in
``$BENCH_SERVING_MODEL``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from minidl.model import load_model

PREDICT_PATH = "/v1/models/m:predict"
ml_models: dict[str, Any] = {}


class PredictRequest(BaseModel):
    instances: list[list[float]]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Load the ML model
    ml_models["m"] = load_model(os.environ["BENCH_SERVING_MODEL"])
    yield
    # Clean up the ML models and release the resources
    ml_models.clear()


app = FastAPI(lifespan=lifespan)


@app.post(PREDICT_PATH)
async def predict(request: PredictRequest):  # no return annotation: no response_model
    x = np.array(request.instances, dtype=np.float32)
    return {"predictions": ml_models["m"].predict(x).tolist()}


app_def = FastAPI(lifespan=lifespan)


@app_def.post(PREDICT_PATH)
def predict_def(request: PredictRequest):
    x = np.array(request.instances, dtype=np.float32)
    return {"predictions": ml_models["m"].predict(x).tolist()}
