#!/usr/bin/python3
"""scikit-learn reference of the trainers benchmark (bench/trainers.ts): one training, timed phase by phase.

    /usr/bin/python3 bench/sklearn_reference.py --model logistic_regression \
        --train train.csv --eval eval.csv --out result.json [--seed 0]

The CSV files are written by bench/trainers.ts with DuckDB from the prepared train and eval Parquet: a header
`hour,day_of_week,distance,origin,destination,label`, all numbers; origin and destination are integer codes (the
training split's categories first, sorted, then those seen only in the evaluation split), label is 0/1.

- logistic_regression: hour, day_of_week, origin, destination one-hot (OneHotEncoder, unknown categories ignored),
  distance standardized (StandardScaler), then LogisticRegression(solver='lbfgs', C=1, max_iter=100).
- gradient_boosted_trees: HistGradientBoostingClassifier(categorical_features=the --categorical columns, by default
  origin and destination; random_state=seed; learning_rate=--learning-rate, default 0.1), every other parameter at its
  default; the other columns numeric.

Timed separately (time.perf_counter): reading the CSV files (`load_s`), encoding the training split (`encode_s`,
logistic regression only), `fit` (`fit_s`: the figure compared with our trainer call) and predicting the evaluation
split (`predict_s`, eval encoding included). Writes one JSON object to --out: timings, AUC and log loss on the
evaluation split (sklearn.metrics), iterations, the peak RSS of this process, versions and thread pools.
"""
import argparse
import json
import os
import resource
import sys
import time
import warnings

import numpy as np
from scipy import sparse

import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.preprocessing import OneHotEncoder, StandardScaler

COLUMNS = ["hour", "day_of_week", "distance", "origin", "destination", "label"]
HOUR, DAY_OF_WEEK, DISTANCE, ORIGIN, DESTINATION, LABEL = range(len(COLUMNS))
# HistGradientBoosting's categorical codes must lie in [0, max_bins); max_bins defaults to 255.
MAX_CATEGORY_CODE = 254


def load(path):
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    if header != COLUMNS:
        sys.exit(f"{path}: columns {header}, expected {COLUMNS}")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if np.isnan(data).any():
        sys.exit(f"{path}: missing values")
    return data[:, :LABEL], data[:, LABEL].astype(np.int64)


def thread_pools():
    try:
        from threadpoolctl import threadpool_info

        return [
            {k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for pool in threadpool_info()
        ]
    except Exception as error:  # threadpoolctl missing or failing: record why, the figures do not depend on it
        return [{"error": repr(error)}]


def logistic_regression(x_train, y_train, x_eval, seed):
    categorical = [HOUR, DAY_OF_WEEK, ORIGIN, DESTINATION]
    started = time.perf_counter()
    scaler = StandardScaler()
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=True, dtype=np.float64)
    design_train = sparse.hstack(
        [
            scaler.fit_transform(x_train[:, [DISTANCE]]),
            encoder.fit_transform(x_train[:, categorical].astype(np.int64)),
        ],
        format="csr",
    )
    encode_s = time.perf_counter() - started

    model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        started = time.perf_counter()
        model.fit(design_train, y_train)
        fit_s = time.perf_counter() - started
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    started = time.perf_counter()
    design_eval = sparse.hstack(
        [scaler.transform(x_eval[:, [DISTANCE]]), encoder.transform(x_eval[:, categorical].astype(np.int64))],
        format="csr",
    )
    probabilities = model.predict_proba(design_eval)[:, 1]
    predict_s = time.perf_counter() - started
    return {
        "estimator": "LogisticRegression",
        "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
        "design_columns": int(design_train.shape[1]),
        "iterations": int(model.n_iter_[0]),
        "converged": converged,
        "encode_s": encode_s,
        "fit_s": fit_s,
        "predict_s": predict_s,
    }, probabilities


def gradient_boosted_trees(x_train, y_train, x_eval, seed, learning_rate, categorical):
    for column in categorical:
        if x_train[:, column].max() > MAX_CATEGORY_CODE or x_eval[:, column].max() > MAX_CATEGORY_CODE:
            sys.exit(f"column {COLUMNS[column]}: category codes above {MAX_CATEGORY_CODE}")
    model = HistGradientBoostingClassifier(
        categorical_features=categorical, random_state=seed, learning_rate=learning_rate
    )
    started = time.perf_counter()
    model.fit(x_train, y_train)
    fit_s = time.perf_counter() - started

    started = time.perf_counter()
    probabilities = model.predict_proba(x_eval)[:, 1]
    predict_s = time.perf_counter() - started
    params = model.get_params()
    params["categorical_features"] = [COLUMNS[c] for c in params["categorical_features"]]
    return {
        "estimator": "HistGradientBoostingClassifier",
        "params": {
            k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, list, type(None)))
        },
        "iterations": int(model.n_iter_),
        "encode_s": 0.0,
        "fit_s": fit_s,
        "predict_s": predict_s,
    }, probabilities


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=["logistic_regression", "gradient_boosted_trees"])
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=0.1, help="gradient_boosted_trees only")
    parser.add_argument(
        "--categorical",
        default="origin,destination",
        help="gradient_boosted_trees only: the columns split as categories (comma-separated)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    x_train, y_train = load(args.train)
    x_eval, y_eval = load(args.eval)
    load_s = time.perf_counter() - started

    if args.model == "logistic_regression":
        result, probabilities = logistic_regression(x_train, y_train, x_eval, args.seed)
    else:
        result, probabilities = gradient_boosted_trees(
            x_train, y_train, x_eval, args.seed, args.learning_rate, [COLUMNS.index(c) for c in args.categorical.split(",")]
        )
    result.update(
        {
            "model": args.model,
            "load_s": load_s,
            "train_rows": int(x_train.shape[0]),
            "eval_rows": int(x_eval.shape[0]),
            "eval_positives": int(y_eval.sum()),
            "auc": float(roc_auc_score(y_eval, probabilities)),
            "log_loss": float(log_loss(y_eval, probabilities)),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "versions": {
                "python": sys.version.split()[0],
                "sklearn": sklearn.__version__,
                "numpy": np.__version__,
                "scipy": __import__("scipy").__version__,
            },
            "cpus": os.cpu_count(),
            "thread_pools": thread_pools(),
        }
    )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
