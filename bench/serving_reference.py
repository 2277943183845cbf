#!/usr/bin/python3
"""FastAPI + uvicorn + scikit-learn peer of the serving benchmark (bench/serving.ts): the same flights models, served
the way a Python team would, taking the same JSON body as `POST /v1/models/{name}/predict`.

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/serving_reference.py --train train.csv --port 8000 \
        --lr-name flights-delay-lr --gbt-name flights-delay --out info.json

Needs Debian's python3-sklearn, python3-fastapi and python3-uvicorn (bench/serving.ts checks, and skips this peer
with a message when they are missing).

--train is a CSV written by bench/serving.ts with DuckDB from the demo definition's expressions over the training
rows (flights before 2001-03-01): a header `hour,day_of_week,distance,origin,destination,label`; origin and
destination are airport codes (strings), label is 0/1. Two models are trained on it, like ours:

- `--lr-name`: Pipeline(ColumnTransformer(StandardScaler on hour, day_of_week, distance; OneHotEncoder
  (handle_unknown='ignore') on origin, destination), LogisticRegression(solver='lbfgs', C=1, max_iter=100)): the
  same features and encodings as our logistic regression on the demo definition;
- `--gbt-name`: Pipeline(ColumnTransformer(OrdinalEncoder on origin, destination (unknown categories become missing);
  hour, day_of_week, distance passed through), HistGradientBoostingClassifier(categorical_features=[origin,
  destination], random_state=0)), every other parameter at its default, like our gradient-boosted trees.

Requests are validated with pydantic (every input present, numbers or null, strings or null), turned into an object
array (no pandas: Debian's python3-sklearn does not pull it in) and scored with `predict_proba`; the response has our
route's shape: `{model, requestId, classes, predictions: [{label, probabilities}]}`. The handler is `async def`
(scored on the event loop: no thread-pool hop, the faster of FastAPI's two options for a 2 ms CPU-bound call).
uvicorn runs one worker with its defaults (the access log on, as our request log is), on whatever HTTP
implementation is installed (Debian's: h11 and asyncio, no uvloop or httptools).

Before serving it writes --out: training times, the in-process cost of a single-row `predict_proba` of each model
(median of 500 calls after 50 warm-up calls, the row as a request would build it), versions and thread settings.
"""
import argparse
import csv
import json
import os
import statistics
import sys
import time
import uuid
from typing import List, Optional

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

import fastapi
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

FEATURES = ["hour", "day_of_week", "distance", "origin", "destination"]
NUMERIC = [0, 1, 2]
CATEGORICAL = [3, 4]
CLASSES = [False, True]


def load(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != FEATURES + ["label"]:
            sys.exit(f"{path}: columns {header}, expected {FEATURES + ['label']}")
        columns = list(zip(*reader))
    x = np.empty((len(columns[0]), len(FEATURES)), dtype=object)
    for i in NUMERIC:
        x[:, i] = np.asarray(columns[i], dtype=np.float64)
    for i in CATEGORICAL:
        x[:, i] = np.asarray(columns[i], dtype=object)
    y = np.asarray(columns[len(FEATURES)], dtype=np.int64)
    return x, y


def logistic_regression():
    return Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), NUMERIC),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("model", LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, random_state=0)),
        ]
    )


def gradient_boosted_trees():
    return Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        (
                            "categorical",
                            OrdinalEncoder(
                                handle_unknown="use_encoded_value", unknown_value=np.nan, dtype=np.float64
                            ),
                            CATEGORICAL,
                        ),
                        ("numeric", "passthrough", NUMERIC),
                    ]
                ),
            ),
            ("model", HistGradientBoostingClassifier(categorical_features=[0, 1], random_state=0)),
        ]
    )


class Instance(BaseModel):
    hour: Optional[float]
    day_of_week: Optional[float]
    distance: Optional[float]
    origin: Optional[str]
    destination: Optional[str]


class PredictRequest(BaseModel):
    instances: List[Instance]


def to_rows(instances):
    nan = float("nan")
    return np.array(
        [
            [
                nan if i.hour is None else i.hour,
                nan if i.day_of_week is None else i.day_of_week,
                nan if i.distance is None else i.distance,
                "" if i.origin is None else i.origin,
                "" if i.destination is None else i.destination,
            ]
            for i in instances
        ],
        dtype=object,
    )


def single_row_cost_ms(model, instance):
    rows = to_rows([instance])
    for _ in range(50):
        model.predict_proba(rows)
    samples = []
    for _ in range(500):
        started = time.perf_counter()
        model.predict_proba(rows)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lr-name", required=True)
    parser.add_argument("--gbt-name", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    x, y = load(args.train)
    load_s = time.perf_counter() - started
    models = {}
    fit_s = {}
    for name, build in ((args.lr_name, logistic_regression), (args.gbt_name, gradient_boosted_trees)):
        started = time.perf_counter()
        models[name] = build().fit(x, y)
        fit_s[name] = time.perf_counter() - started
    version_ids = {name: str(uuid.uuid4()) for name in models}

    sample = Instance(hour=14, day_of_week=3, distance=1200, origin="SFO", destination="LAX")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "train_rows": int(x.shape[0]),
                "load_s": load_s,
                "fit_s": fit_s,
                "predict_proba_single_row_ms": {name: single_row_cost_ms(m, sample) for name, m in models.items()},
                "versions": {
                    "python": sys.version.split()[0],
                    "sklearn": sklearn.__version__,
                    "numpy": np.__version__,
                    "fastapi": fastapi.__version__,
                    "uvicorn": uvicorn.__version__,
                },
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            },
            f,
            indent=2,
        )
        f.write("\n")
    del x, y

    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, body: PredictRequest):
        model = models.get(name)
        if model is None:
            raise HTTPException(status_code=404, detail=f"no model {name}")
        if not body.instances:
            raise HTTPException(status_code=400, detail="no instances")
        probabilities = model.predict_proba(to_rows(body.instances))
        return {
            "model": {"name": name, "version": 1, "versionId": version_ids[name]},
            "requestId": str(uuid.uuid4()),
            "classes": CLASSES,
            "predictions": [
                {"label": CLASSES[int(p[1] > p[0])], "probabilities": [float(p[0]), float(p[1])]}
                for p in probabilities
            ],
        }

    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1)


if __name__ == "__main__":
    main()
