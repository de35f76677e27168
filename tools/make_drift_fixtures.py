#!/usr/bin/env python3
"""Reference values for capwatch's drift tests (`src/drift/`), written to
tests/fixtures/drift_stats.json. Run with tools/.venv (`make fixtures`).

- KS: scipy.stats.ks_2samp (two-sided, method "auto").
- Normed Wasserstein, Jensen-Shannon and PSI: Evidently's own stat tests
  (evidently.legacy.calculations.stattests) on pandas Series, numerical feature type.
- MMD: the unbiased MMD^2 with a Gaussian RBF kernel, median-heuristic bandwidth and a
  permutation p-value, as Alibi Detect's MMDDrift computes it, written out in numpy here with
  the splitmix64 stream the Rust code shuffles with (Alibi itself needs torch or tensorflow).

Deterministic: fixed inputs and seeds.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy import stats

from make_ab_fixtures import splitmix64  # the stream the Rust code shuffles with

import evidently
from evidently.legacy.calculations.stattests import (
    jensenshannon_stat_test,
    psi_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "drift_stats.json"


def evidently_score(test, reference, live):
    result = test(pd.Series(reference), pd.Series(live), ColumnType.Numerical, None)
    return float(result.drift_score)


def mmd_reference(x, y, permutations, seed):
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    y = np.asarray(y, dtype=np.float64)
    cross = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).ravel()
    cross.sort()
    median = cross[min(len(cross) // 2, len(cross) - 1)]
    sigma = np.sqrt(0.5 * median) if median > 0 else 1.0
    pooled = np.concatenate([x, y])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * sigma * sigma))
    n = len(x)

    def mmd2(order):
        k = kernel[np.ix_(order, order)]
        m = len(order) - n
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        return (
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.sum() / (n * m)
        )

    order = list(range(len(pooled)))
    observed = mmd2(order)
    state = seed
    as_large = 0
    for _ in range(permutations):
        for i in range(len(order) - 1, 0, -1):
            state, r = splitmix64(state)
            j = r % (i + 1)
            order[i], order[j] = order[j], order[i]
        if mmd2(order) >= observed:
            as_large += 1
    return float(observed), as_large / permutations, float(sigma)


def main():
    rng = np.random.default_rng(20261127)
    ks_cases = []

    def ks(name, a, b):
        result = stats.ks_2samp(a, b)
        ks_cases.append({"name": name, "a": list(map(float, a)), "b": list(map(float, b)),
                         "statistic": float(result.statistic), "p": float(result.pvalue)})

    ks("tiny", [0.1, 0.5, 0.9], [0.2, 0.3, 1.5, 2.0])
    ks("one each", [1.0], [2.0])
    ks("identical", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    ks("equal sizes shifted", rng.normal(0, 1, 20), rng.normal(0.8, 1, 20))
    ks("unequal sizes", rng.normal(0, 1, 37), rng.normal(0.3, 1.2, 53))
    ks("ties", np.round(rng.normal(0, 1, 60), 1), np.round(rng.normal(0.2, 1, 45), 1))
    ks("same distribution", rng.normal(5, 2, 120), rng.normal(5, 2, 150))
    ks("live window", rng.normal(0.5, 0.1, 500), rng.normal(0.45, 0.1, 400))
    ks("far apart", rng.normal(0, 1, 200), rng.normal(3, 1, 300))

    distance_cases = []

    def distance(name, reference, live):
        reference = np.asarray(reference, dtype=float)
        live = np.asarray(live, dtype=float)
        distance_cases.append({
            "name": name,
            "reference": list(map(float, reference)),
            "live": list(map(float, live)),
            "wasserstein": float(stats.wasserstein_distance(reference, live)),
            "normed_wasserstein": evidently_score(wasserstein_stat_test, reference, live),
            "jensenshannon": evidently_score(jensenshannon_stat_test, reference, live),
            "psi": evidently_score(psi_stat_test, reference, live),
        })

    distance("many distinct, shifted", rng.normal(0.5, 0.15, 300), rng.normal(0.6, 0.15, 250))
    distance("many distinct, same", rng.normal(0.5, 0.15, 300), rng.normal(0.5, 0.15, 280))
    distance("few distinct (words per caption)", rng.integers(3, 9, 200), rng.integers(4, 12, 150))
    distance("live outside the reference's range", rng.uniform(0, 1, 100), rng.uniform(0.5, 2, 100))
    distance("constant reference", [2.0] * 50, rng.normal(2.0, 0.5, 40))
    distance("brightness, darker", rng.beta(5, 5, 400), rng.beta(2, 6, 300))

    # Evidently's own choice of test for a numerical column, its score and its verdict.
    default_cases = []

    def default(name, reference, live):
        reference = pd.Series(np.asarray(reference, dtype=float))
        live = pd.Series(np.asarray(live, dtype=float))
        test = get_stattest(reference, live, ColumnType.Numerical, None)
        result = test(reference, live, ColumnType.Numerical, None)
        default_cases.append({"name": name, "reference": list(map(float, reference)), "live": list(map(float, live)),
                              "test": test.name, "score": float(result.drift_score), "drifted": bool(result.drifted)})

    default("two values (format png or jpeg)", rng.integers(0, 2, 300), (rng.uniform(0, 1, 200) < 0.7).astype(float))
    default("two values, same", rng.integers(0, 2, 300), rng.integers(0, 2, 250))
    default("one value", [1.0] * 20, [1.0] * 30)
    default("four values (repeated pairs)", rng.integers(0, 4, 400), rng.integers(1, 5, 300))
    default("four values, same", rng.integers(0, 4, 400), rng.integers(0, 4, 300))
    default("many values, small reference", rng.normal(0.4, 0.1, 500), rng.normal(0.43, 0.1, 500))
    default("few values, large reference", rng.integers(0, 4, 1500), rng.integers(0, 5, 600))
    default("many values, large reference", rng.normal(0.4, 0.1, 1500), rng.normal(0.45, 0.1, 500))

    mmd_cases = []
    for name, shift, n, m, dim in [("shifted", 0.8, 20, 25, 4), ("same", 0.0, 30, 30, 3), ("small shift", 0.3, 40, 35, 8)]:
        x = rng.normal(0, 1, (n, dim)).astype(np.float32)
        y = (rng.normal(0, 1, (m, dim)) + shift).astype(np.float32)
        mmd2, p, sigma = mmd_reference(x, y, permutations=60, seed=7)
        mmd_cases.append({"name": name, "x": x.tolist(), "y": y.tolist(), "permutations": 60, "seed": 7,
                          "mmd2": mmd2, "p": p, "sigma": sigma})

    OUT.write_text(json.dumps({
        "generated_by": "tools/make_drift_fixtures.py",
        "scipy": scipy.__version__,
        "evidently": evidently.__version__,
        "ks": ks_cases,
        "distance": distance_cases,
        "default": default_cases,
        "mmd": mmd_cases,
    }, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
