"""Calibration of attribution confidences: reliability bins, ECE, Brier score, a diagram.

A verdict's confidence is meant to be the probability that the verdict is right. Given pairs
``(confidence, correct)`` for every attributed verdict of a benchmark:

* **reliability bins**: ``n_bins`` equal-width bins over [0, 1] (a confidence of exactly 1.0
  goes into the last bin); per bin the mean confidence and the fraction correct (accuracy);
* **ECE** (expected calibration error, Guo et al. 2017): ``sum_b (n_b / N) * |acc_b - conf_b|``
  over non-empty bins, 0 for a perfectly calibrated set, at most 1;
* **Brier score**: ``mean((confidence - correct)^2)``, 0 best, 0.25 for always saying 0.5.

Pure functions on plain floats and bools (tests/test_bench_small.py); the diagram needs
matplotlib and is skipped without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_BINS = 10  # equal-width bins, the usual choice for ECE


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float  # bin edges: [lo, hi), the last bin [lo, 1.0]
    hi: float
    n: int  # verdicts whose confidence falls in the bin
    mean_confidence: float  # mean confidence in the bin (nan when n == 0)
    accuracy: float  # fraction of those verdicts that were right (nan when n == 0)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"lo": self.lo, "hi": self.hi, "n": self.n,
                "mean_confidence": num(self.mean_confidence), "accuracy": num(self.accuracy)}


@dataclass(frozen=True)
class Calibration:
    n: int  # verdicts measured
    ece: float  # expected calibration error over ``bins`` (nan when n == 0)
    brier: float  # mean squared error of the confidence against 0/1 correctness (nan if n == 0)
    accuracy: float  # fraction right overall (nan when n == 0)
    mean_confidence: float  # mean confidence overall (nan when n == 0)
    bins: list[ReliabilityBin] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"n": self.n, "ece": num(self.ece), "brier": num(self.brier),
                "accuracy": num(self.accuracy), "mean_confidence": num(self.mean_confidence),
                "bins": [b.to_dict() for b in self.bins]}


def bin_index(confidence: float, n_bins: int = DEFAULT_BINS) -> int:
    """The bin of ``confidence`` (clamped to [0, 1]); 1.0 belongs to the last bin."""
    c = min(max(confidence, 0.0), 1.0)
    return min(int(c * n_bins), n_bins - 1)


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool],
                     n_bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """Equal-width reliability bins (every bin listed, empty ones with n == 0)."""
    if len(confidences) != len(correct):
        raise ValueError("confidences and correct differ in length")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    sums = [0.0] * n_bins
    hits = [0] * n_bins
    counts = [0] * n_bins
    for c, ok in zip(confidences, correct, strict=True):
        b = bin_index(c, n_bins)
        sums[b] += min(max(c, 0.0), 1.0)
        hits[b] += int(bool(ok))
        counts[b] += 1
    return [
        ReliabilityBin(
            lo=i / n_bins, hi=(i + 1) / n_bins, n=counts[i],
            mean_confidence=sums[i] / counts[i] if counts[i] else math.nan,
            accuracy=hits[i] / counts[i] if counts[i] else math.nan,
        )
        for i in range(n_bins)
    ]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               n_bins: int = DEFAULT_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins; nan for an empty input."""
    n = len(confidences)
    if n == 0:
        return math.nan
    return sum(b.n / n * abs(b.accuracy - b.mean_confidence)
               for b in reliability_bins(confidences, correct, n_bins) if b.n)


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean squared difference between confidence and correctness (1/0); nan when empty."""
    if len(confidences) != len(correct):
        raise ValueError("confidences and correct differ in length")
    if not confidences:
        return math.nan
    return sum((min(max(c, 0.0), 1.0) - float(bool(ok))) ** 2
               for c, ok in zip(confidences, correct, strict=True)) / len(confidences)


def calibrate(confidences: Sequence[float], correct: Sequence[bool],
              n_bins: int = DEFAULT_BINS) -> Calibration:
    """Every calibration figure of one set of verdicts."""
    n = len(confidences)
    bins = reliability_bins(confidences, correct, n_bins)
    if n == 0:
        return Calibration(0, math.nan, math.nan, math.nan, math.nan, bins)
    ece = sum(b.n / n * abs(b.accuracy - b.mean_confidence) for b in bins if b.n)
    return Calibration(
        n=n, ece=ece, brier=brier_score(confidences, correct),
        accuracy=sum(bool(x) for x in correct) / n,
        mean_confidence=sum(min(max(c, 0.0), 1.0) for c in confidences) / n,
        bins=bins,
    )


def plot_reliability(cal: Calibration, title: str, paths: Sequence[Path]) -> list[Path]:
    """A reliability diagram (accuracy per confidence bin vs the diagonal, with counts) as PNG
    at each of ``paths``; returns the paths written ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: no reliability diagram")
        return []
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / max(len(cal.bins), 1)
    full = [b for b in cal.bins if b.n]
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.bar([b.lo for b in full], [b.accuracy for b in full], width=width, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.plot([b.mean_confidence for b in full], [b.accuracy for b in full], "o", color="C3",
            label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction right")
    ece = "n/a" if math.isnan(cal.ece) else f"{cal.ece:.3f}"
    brier = "n/a" if math.isnan(cal.brier) else f"{cal.brier:.3f}"
    ax.set_title(f"{title}\nattributed verdicts: {cal.n}, ECE {ece}, Brier {brier}",
                 fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    axn.bar([b.lo for b in cal.bins], [b.n for b in cal.bins], width=width, align="edge",
            edgecolor="black", color="C7")
    axn.set_xlabel("confidence")
    axn.set_ylabel("verdicts")
    fig.tight_layout()
    written = []
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=100)
        written.append(p)
    plt.close(fig)
    return written
