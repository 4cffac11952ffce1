"""Fit kinship's confidence model (match/verdict.py) on tuning queries only, and measure it.

``python -m bench.fit_confidence [--quick]``: runs kinship's attribution bench (no peer), takes
the *tuning* queries (``bench.attribution.tuning_queries``: known-family experiments, left-out
and tuning unknowns; never a fresh held-out family, which the guard checks), keeps the
attributed verdicts, and fits by Newton's method the logistic model of "the named family is
right" on

    z = c0 + c_score * (score - unknown_threshold) + c_margin * (score - runner_up)
           + c_evidence * log2(1 + n_evidence)

with a small L2 penalty (the attributed verdicts are mostly right, so the fit is regularised
towards the prior). It prints the coefficients and the reliability (ECE, Brier) of the current
defaults and of the fit, on the tuning queries and, for reporting only, on the fresh held-out
queries. The defaults in MatchConfig are set from the printed fit, by hand, with the run's date.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

import numpy as np

from bench.attribution import Query, run_attribution, tuning_queries
from bench.calibration import brier_score, expected_calibration_error
from bench.gt import ensure_corpus, load_manifest

L2 = 1e-2  # ridge penalty on the slopes (not the intercept); keeps the fit near the prior


def features(qs: Sequence[Query], threshold: float) -> np.ndarray:
    return np.array([[1.0, q.top_score - threshold, q.top_score - q.runner_score,
                      math.log2(1 + q.n_evidence)] for q in qs], dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, iters: int = 50) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton's method (x includes the intercept)."""
    w = np.zeros(x.shape[1])
    pen = np.full(x.shape[1], l2)
    pen[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -60, 60)))
        grad = x.T @ (p - y) + pen * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def attributed(qs: Sequence[Query]) -> list[Query]:
    return [q for q in qs if q.status == "attributed" and q.verdict is not None]


def report(name: str, qs: Sequence[Query], conf: Sequence[float]) -> dict[str, float]:
    ok = [q.verdict == q.family for q in qs]
    out = {"n": len(ok),
           "accuracy": sum(ok) / len(ok) if ok else float("nan"),
           "ece": expected_calibration_error(conf, ok) if ok else float("nan"),
           "brier": brier_score(conf, ok) if ok else float("nan")}
    print(name, json.dumps({k: round(v, 4) for k, v in out.items()}))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from kinship.match.config import MatchConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    dev = ensure_corpus()
    res, _ = run_attribution(dev, load_manifest(dev), quick=args.quick, with_peer=False)
    cfg = MatchConfig()
    tune = attributed(tuning_queries(res.queries))
    fresh = attributed([q for q in res.queries if q.experiment.startswith("fresh")])
    y = np.array([q.verdict == q.family for q in tune], dtype=np.float64)
    x = features(tune, cfg.unknown_threshold)
    w = fit_logistic(x, y)
    print("fit (intercept, score, margin, evidence):", [round(float(v), 3) for v in w])

    def model(qs: Sequence[Query], coef: Sequence[float]) -> list[float]:
        z = features(qs, cfg.unknown_threshold) @ np.asarray(coef)
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).tolist() if len(qs) else []

    default = [cfg.confidence_intercept, cfg.confidence_score_slope,
               cfg.confidence_margin_slope, cfg.confidence_evidence_slope]
    report("tuning, defaults", tune, model(tune, default))
    report("tuning, fit     ", tune, model(tune, w))
    if fresh:
        report("fresh held-out, defaults (reporting only)", fresh, model(fresh, default))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
