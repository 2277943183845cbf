#!/usr/bin/python3
"""pandas + SciPy reference of the monitoring-window benchmark (bench/monitoring-window.ts): the same distances over
the same bins, from Debian's python3-pandas and python3-scipy (what Evidently is built on).

    /usr/bin/python3 bench/monitoring_reference.py --spec spec.json --csv window.csv --out result.json

--csv: the window's rows, one column per feature (empty when missing) and `p`, written by the benchmark.
--spec: per numeric feature the interior bin edges, the baseline's mass per bin and the previous window's counts; per
categorical feature the baseline's and the previous window's counts by value.

Bins (as monitoring/distances.ts): underflow (x < first edge), [e_i, e_i+1) with the last interior bin closed at the
last edge, overflow (x > last edge); with `pd.cut(right=False)` on -inf, the edges, nextafter(last edge), +inf.
Distances: Jensen-Shannon divergence = `scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`; L-infinity over the
union of values; PSI with each proportion floored at 1e-4. Timed (time.perf_counter): reading the CSV (`load_s`) and
everything after it (`compute_s`, and its CPU time `compute_cpu_s`). Writes counts, distances, timings and versions as JSON to --out.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd
import scipy
from scipy.spatial.distance import jensenshannon

PSI_EPSILON = 1e-4


def psi(p, q):
    p = np.maximum(np.asarray(p, dtype=np.float64) / np.sum(p), PSI_EPSILON)
    q = np.maximum(np.asarray(q, dtype=np.float64) / np.sum(q), PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def js(p, q):
    return float(jensenshannon(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64), base=2) ** 2)


def numeric(series, spec):
    edges = np.asarray(spec["edges"], dtype=np.float64)
    bins = np.concatenate(([-np.inf], edges[:-1], [np.nextafter(edges[-1], np.inf), np.inf]))
    if len(edges) == 1:
        bins = np.array([-np.inf, edges[0], np.nextafter(edges[0], np.inf), np.inf])
    codes = pd.cut(series.dropna(), bins=bins, right=False, labels=False)
    counts = np.bincount(codes.astype(np.int64), minlength=len(bins) - 1).astype(np.float64)
    return counts, {
        "skew": {"distance": js(spec["baseline"], counts), "psi": psi(spec["baseline"], counts)},
        "drift": {"distance": js(spec["previous"], counts), "psi": psi(spec["previous"], counts)},
    }


def linf_psi(reference, current):
    # The union of values, reference first (the order changes nothing).
    values = list(dict.fromkeys(list(reference.index) + list(current.index)))
    p = reference.reindex(values, fill_value=0).to_numpy(dtype=np.float64)
    q = current.reindex(values, fill_value=0).to_numpy(dtype=np.float64)
    return {"distance": float(np.max(np.abs(p / p.sum() - q / q.sum()))), "psi": psi(p, q)}


def categorical(series, spec):
    counts = series.dropna().value_counts()
    return counts, {
        "skew": linf_psi(pd.Series(spec["baseline"], dtype=np.float64), counts),
        "drift": linf_psi(pd.Series(spec["previous"], dtype=np.float64), counts),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)

    started = time.perf_counter()
    dtypes = {name: np.float64 for name in spec["numeric"]}
    dtypes.update({name: "string" for name in spec["categorical"]})
    dtypes["p"] = np.float64
    frame = pd.read_csv(args.csv, dtype=dtypes, keep_default_na=False, na_values=[""])
    loaded = time.perf_counter()
    cpu_before = time.process_time()

    features = {}
    for name, feature in spec["numeric"].items():
        counts, distances = numeric(frame[name], feature)
        features[name] = {"counts": counts.tolist(), **distances}
    for name, feature in spec["categorical"].items():
        counts, distances = categorical(frame[name], feature)
        features[name] = {"counts": {str(k): int(v) for k, v in counts.items()}, **distances}
    finished = time.perf_counter()
    cpu = time.process_time() - cpu_before

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "rows": len(frame),
                "load_s": loaded - started,
                "compute_s": finished - loaded,
                "compute_cpu_s": cpu,
                "features": features,
                "versions": {"pandas": pd.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
            },
            f,
        )


if __name__ == "__main__":
    main()
