"""Global alignment of two instruction listings for the side-by-side evidence view.

Needleman-Wunsch over normalised tokens, so that the 32-bit and the 64-bit build of one routine
line up even though their operands differ: equal ``norm`` scores best, equal mnemonic or equal
API second, anything else is a mismatch; gaps mark instructions one side has and the other lacks
(argument pushes on x86, register moves on x64).

    left                        right
    push  imm            <->    (gap)
    call  CreateProcessA <->    call  CreateProcessA
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Scores (integers so the DP stays in int32). Tuned by eye on x86/x64 pairs: an API match must
# outweigh a couple of gaps so calls line up; a mnemonic match is worth a little.
SCORE_SAME_NORM = 3
SCORE_SAME_API = 6
SCORE_SAME_MNEMONIC = 1
SCORE_MISMATCH = -2
SCORE_GAP = -1
# Above this many cells the quadratic DP is replaced by a linear greedy pairing (reason: memory
# and time; 4M cells is ~16 MB and well under a second).
MAX_ALIGN_CELLS = 4_000_000


class Alignable(Protocol):
    @property
    def mnemonic(self) -> str: ...

    @property
    def norm(self) -> str: ...

    @property
    def api(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class AlignedRow:
    """One row of the side-by-side view: an index into each side, or None for a gap."""

    left: int | None
    right: int | None
    kind: str  # "same" (equal norm), "api" (same API), "similar" (same mnemonic), "diff", "gap"


def _pair_kind(a: Alignable, b: Alignable) -> tuple[int, str]:
    if a.api and a.api == b.api:
        return SCORE_SAME_API, "api"
    if a.norm == b.norm:
        return SCORE_SAME_NORM, "same"
    if a.mnemonic == b.mnemonic:
        return SCORE_SAME_MNEMONIC, "similar"
    return SCORE_MISMATCH, "diff"


def align(left: Sequence[Alignable], right: Sequence[Alignable]) -> list[AlignedRow]:
    """Align two instruction sequences; every index of each side appears exactly once, in order."""
    n, m = len(left), len(right)
    if n * m > MAX_ALIGN_CELLS:
        return _greedy(left, right)
    # Token ids so that the substitution matrix is built with numpy instead of n*m Python calls.
    norm_ids: dict[str, int] = {}
    mn_ids: dict[str, int] = {}
    api_ids: dict[str, int] = {}

    def ids(seq: Sequence[Alignable]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.array([norm_ids.setdefault(x.norm, len(norm_ids)) for x in seq], dtype=np.int64)
        b = np.array([mn_ids.setdefault(x.mnemonic, len(mn_ids)) for x in seq], dtype=np.int64)
        c = np.array(
            [api_ids.setdefault(x.api, len(api_ids) + 1) if x.api else -1 for x in seq],
            dtype=np.int64,
        )
        return a, b, c

    ln, lm, la = ids(left)
    rn, rm, ra = ids(right)
    sub = np.full((n, m), SCORE_MISMATCH, dtype=np.int32)
    sub[lm[:, None] == rm[None, :]] = SCORE_SAME_MNEMONIC
    sub[ln[:, None] == rn[None, :]] = SCORE_SAME_NORM
    sub[(la[:, None] == ra[None, :]) & (la[:, None] >= 0)] = SCORE_SAME_API

    dp = np.zeros((n + 1, m + 1), dtype=np.int32)
    dp[:, 0] = np.arange(n + 1) * SCORE_GAP
    dp[0, :] = np.arange(m + 1) * SCORE_GAP
    # Row by row; the left-gap dependency inside a row is resolved with a running maximum.
    cols = np.arange(m + 1, dtype=np.int32) * SCORE_GAP
    for i in range(1, n + 1):
        diag = dp[i - 1, :-1] + sub[i - 1]
        up = dp[i - 1, 1:] + SCORE_GAP
        best = np.maximum(diag, up)
        row = np.empty(m + 1, dtype=np.int32)
        row[0] = dp[i, 0]
        row[1:] = best
        # left gaps: row[j] = max(row[j], row[j-1] + GAP) == max_k (row[k] + (j-k)*GAP)
        row = np.maximum.accumulate(row - cols) + cols
        dp[i] = row
    # Traceback.
    rows: list[AlignedRow] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dp[i, j] == dp[i - 1, j - 1] + sub[i - 1, j - 1]:
            rows.append(AlignedRow(i - 1, j - 1, _pair_kind(left[i - 1], right[j - 1])[1]))
            i -= 1
            j -= 1
        elif i > 0 and dp[i, j] == dp[i - 1, j] + SCORE_GAP:
            rows.append(AlignedRow(i - 1, None, "gap"))
            i -= 1
        else:
            rows.append(AlignedRow(None, j - 1, "gap"))
            j -= 1
    rows.reverse()
    return rows


def _greedy(left: Sequence[Alignable], right: Sequence[Alignable]) -> list[AlignedRow]:
    """Linear fallback for huge functions: pair positions in order, pad the shorter side."""
    rows = []
    for k in range(max(len(left), len(right))):
        li = k if k < len(left) else None
        ri = k if k < len(right) else None
        if li is not None and ri is not None:
            rows.append(AlignedRow(li, ri, _pair_kind(left[li], right[ri])[1]))
        else:
            rows.append(AlignedRow(li, ri, "gap"))
    return rows


def identity(rows: Sequence[AlignedRow]) -> float:
    """Fraction of aligned rows whose instructions agree (same norm or same API)."""
    if not rows:
        return 0.0
    return sum(1 for r in rows if r.kind in ("same", "api")) / len(rows)
