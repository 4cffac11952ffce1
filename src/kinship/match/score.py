"""Similarity of function pairs, vectorised over aligned arrays of pairs.

    score = 1.0                                                  if exact hashes are equal
          = 1 - (1 - code_j) * (1 - sem_j * trust(n_sem) * size_pen)   otherwise

* ``code_j``, ``sem_j``: MinHash estimates of the Jaccard similarity of the code and sem token
  sets (0 when either sketch is empty);
* ``trust(n)`` = clamp((n - sem_shape_tokens) / sem_full_trust_tokens, 0, 1) with ``n`` the
  smaller sem token count of the pair: an overlap made of one API and the CFG shape is weak;
* ``size_pen`` = min(1, (min/max instruction count) / size_ratio_floor): sem sets do not grow
  with code size, so a 20-instruction wrapper and a 400-instruction function calling the same
  APIs must not look identical. Code Jaccard already drops with size differences, so the
  penalty scales the sem term only. Since the sem sketch carries call-graph context
  (features.context), penalising the whole score cost cross-optimisation pairs, whose sizes
  differ most (quick matching set, exact-Jaccard harness, 1,000 queries, pool 100,
  R@1/MRR@10/AUC, 2026-11-26): whole score XO .792/.832/.948, XV .947/.964/.989,
  XC .890/.925/.978, XB .962/.974/.990, XM .698/.759/.927 -> sem term only XO .800/.841/.956,
  XV .956/.973/.994, XC .889/.928/.983, XB .963/.976/.994, XM .707/.773/.939 (no penalty at
  all: XO .800/.845/.961, but nothing then stops a wrapper matching on its APIs alone).

The two signals are combined by a noisy-or (either one alone gives its own value, agreement of
both raises the score) instead of their maximum, which discarded the weaker signal: quick
matching bench (Lua 5.3/5.4, tuning families, 1,000 queries/task, pool 100, R@1/MRR@10,
2026-11-26) max -> noisy-or: XO .583/.640 -> .606/.661, XC .692/.775 -> .723/.800,
XB .828/.875 -> .843/.885, XF .762/.824 -> .788/.838, XM .438/.511 -> .459/.531,
XV .928/.949 -> .936/.949; max + 0.5 * min and max + 0.25 * min were in between.

The ``kind`` of a pair is the signal that gave the score: exact, else code if
``code_j >= sem_j * trust * size_pen`` else sem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kinship.features.minhash import EMPTY_SLOT, I64, U32
from kinship.features.model import FunctionFeatures
from kinship.index.rows import SketchRows
from kinship.match.config import MatchConfig
from kinship.match.result import MatchKind

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
KINDS: tuple[MatchKind, ...] = (MatchKind.EXACT, MatchKind.CODE, MatchKind.SEM)  # kind codes

__all__ = ["KINDS", "PairScores", "SketchRows", "score_candidates", "score_function_pair",
           "score_pairs"]


@dataclass(frozen=True, slots=True, eq=False)
class PairScores:
    score: F64  # combined score, 0..1
    code: F64  # code-sketch Jaccard estimate
    sem: F64  # sem-sketch Jaccard estimate (before trust)
    kind: I8  # index into KINDS

    def kinds(self) -> list[MatchKind]:
        return [KINDS[k] for k in self.kind.tolist()]


def jaccard_rows(a: U32, b: U32) -> F64:
    """Row-wise Jaccard estimates of two aligned (K, num_perm) sketch matrices (0 if empty)."""
    if a.shape != b.shape:
        raise ValueError(f"sketch matrices differ in shape: {a.shape} vs {b.shape}")
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    j: F64 = np.count_nonzero(a == b, axis=1) / np.float64(a.shape[1])
    empty = np.all(a == EMPTY_SLOT, axis=1) | np.all(b == EMPTY_SLOT, axis=1)
    j[empty] = 0.0
    return j


def sem_trust(n_sem_tokens: I64, config: MatchConfig) -> F64:
    """Trust (0..1) in a sem Jaccard given the smaller sem token count of the pair."""
    specific = n_sem_tokens.astype(np.float64) - config.sem_shape_tokens
    out: F64 = np.clip(specific / config.sem_full_trust_tokens, 0.0, 1.0)
    return out


def size_penalty(n_a: I64, n_b: I64, config: MatchConfig) -> F64:
    """1 for similar sizes, falling linearly below ``size_ratio_floor``."""
    lo = np.minimum(n_a, n_b).astype(np.float64)
    hi = np.maximum(np.maximum(n_a, n_b), 1).astype(np.float64)
    if config.size_ratio_floor <= 0.0:
        return np.ones(len(lo), dtype=np.float64)
    out: F64 = np.minimum(1.0, (lo / hi) / config.size_ratio_floor)
    return out


def score_pairs(
    query: SketchRows, ref: SketchRows, config: MatchConfig | None = None
) -> PairScores:
    """Scores of the aligned pairs (query row i, ref row i)."""
    cfg = config or MatchConfig()
    if len(query) != len(ref):
        raise ValueError("query and ref must have the same number of rows")
    code = jaccard_rows(query.code_sig, ref.code_sig)
    sem = jaccard_rows(query.sem_sig, ref.sem_sig)
    sem_w = sem * sem_trust(np.minimum(query.n_sem_tokens, ref.n_sem_tokens), cfg)
    exact = query.exact_hash == ref.exact_hash
    pen = size_penalty(query.n_instructions, ref.n_instructions, cfg)
    sem_w = sem_w * pen
    score = np.where(exact, 1.0, 1.0 - (1.0 - code) * (1.0 - sem_w))
    kind = np.where(exact, 0, np.where(code >= sem_w, 1, 2)).astype(np.int8)
    return PairScores(score.astype(np.float64), code, sem, kind)


def score_candidates(
    query: FunctionFeatures,
    candidates: Sequence[FunctionFeatures],
    config: MatchConfig | None = None,
) -> PairScores:
    """Scores of one query function against each candidate (vectorised)."""
    num_perm = int(query.code_sig.shape[0])
    ref = SketchRows.from_features(candidates, num_perm)
    q = SketchRows.from_features([query], num_perm).take(np.zeros(len(ref), dtype=np.int64))
    return score_pairs(q, ref, config)


def score_function_pair(
    a: FunctionFeatures, b: FunctionFeatures, config: MatchConfig | None = None
) -> float:
    """Score of one pair (see module docstring)."""
    return float(score_candidates(a, [b], config).score[0])
