#!/usr/bin/env python3
"""Reference values for capwatch's A/B statistics (`src/stats/`), computed with scipy and
statsmodels, written to tests/fixtures/ab_stats.json. Run with tools/.venv (make fixtures-ab).

Each case holds its inputs and the reference outputs; the Rust unit tests recompute them and
compare (1e-9 relative, or as stated). Deterministic: fixed inputs and a fixed seed.
"""

import json
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ab_stats.json"
MASK = (1 << 64) - 1


def splitmix64(state):
    """The generator `src/stats/` uses for resampling: returns (next state, value)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def bootstrap_quantile_ci(values, q, resamples, seed, level=0.95):
    """Percentile bootstrap of the q-quantile (numpy's linear definition), resampling with the
    splitmix64 stream: index = value % n."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    state = seed
    estimates = []
    for _ in range(resamples):
        idx = []
        for _ in range(n):
            state, r = splitmix64(state)
            idx.append(r % n)
        estimates.append(np.quantile(values[idx], q))
    alpha = (1 - level) / 2
    return float(np.quantile(values, q)), float(np.quantile(estimates, alpha)), float(np.quantile(estimates, 1 - alpha))


def hodges_lehmann(a, b, level=0.95):
    """Shift of b against a: the median of all b_j - a_i, with the distribution-free (Moses)
    interval from the normal approximation of U's null distribution."""
    diffs = np.sort(np.subtract.outer(np.asarray(b, float), np.asarray(a, float)).ravel())
    n1, n2 = len(a), len(b)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    k = int(np.floor(n1 * n2 / 2 - z * np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)))
    k = max(k, 0)
    lo, hi = diffs[k], diffs[len(diffs) - 1 - k]
    return float(np.median(diffs)), float(lo), float(hi)


MIN_PAIRS = 20  # src/stats/sequential.rs


def msprt(diffs, tau2=None):
    """Always-valid p-values of the normal-mixture SPRT (Johari et al. 2017) for mean(diffs) = 0,
    variance estimated from the diffs so far (unbiased, from MIN_PAIRS on), mixing variance tau2
    (default: the estimated variance). Returns the p-value after each observation."""
    p, out = 1.0, []
    for n in range(1, len(diffs) + 1):
        x = np.asarray(diffs[:n], float)
        if n < MIN_PAIRS:
            out.append(p)
            continue
        var = x.var(ddof=1)
        if var <= 0:
            out.append(p)
            continue
        t2 = var if tau2 is None else tau2
        mean = x.mean()
        log_lambda = 0.5 * np.log(var / (var + n * t2)) + (n * n * t2 * mean * mean) / (2 * var * (var + n * t2))
        p = min(p, float(np.exp(-log_lambda)))
        out.append(min(1.0, p))
    return out


def main():
    rng = np.random.default_rng(20261127)
    cases = {"generator": f"scipy {scipy.__version__}, statsmodels {statsmodels.__version__}, numpy {np.__version__}"}

    mwu = []
    samples = [
        ("tiny exact", [1.1, 2.3, 0.4], [3.2, 5.0, 4.1, 2.9]),
        ("exact, one side 8", [9.5, 3.1, 6.6, 2.2, 8.8], [1.0, 4.4, 7.7, 5.5, 0.3, 9.9, 6.1, 2.8]),
        ("ties, small: asymptotic", [1, 2, 2, 3, 3, 3], [2, 3, 4, 4, 5]),
        ("equal distributions", list(rng.lognormal(3, 0.3, 40)), list(rng.lognormal(3, 0.3, 55))),
        ("shifted", list(rng.lognormal(3, 0.3, 60)), list(rng.lognormal(3.2, 0.3, 60))),
        ("all equal", [5.0] * 10, [5.0] * 12),
        ("one each", [1.0], [2.0]),
        ("latency ms with ties", list(np.round(rng.gamma(4, 10, 30))), list(np.round(rng.gamma(4, 8, 35)))),
    ]
    for name, a, b in samples:
        res = stats.mannwhitneyu(a, b, alternative="two-sided", method="auto")
        shift, lo, hi = hodges_lehmann(a, b)
        mwu.append({"name": name, "a": a, "b": b, "u": float(res.statistic), "p": float(res.pvalue),
                    "hl_shift": shift, "hl_lo": lo, "hl_hi": hi})
    cases["mann_whitney"] = mwu

    props = []
    for x1, n1, x2, n2 in [(3, 100, 12, 100), (0, 50, 5, 50), (10, 40, 10, 40), (1, 7, 4, 9), (45, 500, 70, 520)]:
        z, p = proportions_ztest([x2, x1], [n2, n1])
        lo, hi = confint_proportions_2indep(x2, n2, x1, n1, method="newcomb", compare="diff")
        props.append({"x1": x1, "n1": n1, "x2": x2, "n2": n2, "z": float(z), "p": float(p), "lo": float(lo), "hi": float(hi)})
    cases["two_proportions"] = props

    welch = []
    for a, b in [
        (list(rng.uniform(0.6, 1.0, 12)), list(rng.uniform(0.3, 0.9, 15))),
        ([1.0, 1.0, 0.75, 1.0, 0.5], [0.25, 0.5, 0.5, 0.75]),
        (list(rng.normal(0.9, 0.05, 80)), list(rng.normal(0.9, 0.05, 90))),
    ]:
        res = stats.ttest_ind(b, a, equal_var=False)
        ci = res.confidence_interval(0.95)
        welch.append({"a": a, "b": b, "t": float(res.statistic), "df": float(res.df), "p": float(res.pvalue),
                      "diff": float(np.mean(b) - np.mean(a)), "lo": float(ci.low), "hi": float(ci.high)})
    cases["welch"] = welch

    boot = []
    for values, q, seed in [(list(rng.lognormal(3, 0.4, 50)), 0.5, 1), (list(rng.lognormal(3, 0.4, 50)), 0.95, 2),
                            ([12.0, 15.0, 11.0, 30.0, 14.0], 0.95, 3)]:
        est, lo, hi = bootstrap_quantile_ci(values, q, 400, seed)
        boot.append({"values": values, "q": q, "seed": seed, "resamples": 400, "estimate": est, "lo": lo, "hi": hi})
    cases["bootstrap"] = boot

    seq = []
    for name, diffs in [("no difference", list(rng.normal(0, 1, 60))), ("shift 0.5 sd", list(rng.normal(0.5, 1, 60))),
                        ("small shift, few pairs", list(rng.normal(0.3, 1, 25)))]:
        seq.append({"name": name, "diffs": diffs, "p": msprt(diffs)})
    cases["msprt"] = seq

    OUT.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
