"""Call-graph context of the sem sketch: what a function's direct callees and callers refer to.

A function's *own* specific sem tokens are the APIs, API bigrams, strings and distinctive
constants of its own instructions (:func:`kinship.features.tokens.sem_specific_tokens`). Its sem
token set adds, when :class:`~kinship.features.config.FeatureConfig` asks for it:

* the own specific tokens of every direct callee, unchanged: when a build inlines a callee,
  its strings and APIs move into the caller, and the caller's set stays the same;
* the own specific tokens of every direct caller, re-tagged (:func:`caller_token`), so that
  "called from the function that prints 'table overflow'" is a token of its own kind;
* :data:`~kinship.features.tokens.N_SHAPE_TOKENS` CFG-shape tokens when the set is not empty.

At most ``max_context_tokens`` context tokens (callee + caller, not already own) are kept per
function: those with the smallest :func:`_rank` (a fixed hash), so the choice is the same in
every build and a function called from 300 places does not drown its own tokens.

Why (2026-11-26, tuning families only: quick matching set = Lua 5.3/5.4 builds, 1,000 queries per
task, pool 100, exact-Jaccard harness, R@1/MRR@10/AUC): own tokens only XO .672/.727/.905,
XV .931/.949/.982, XC .809/.866/.964, XB .919/.942/.983, XM .558/.622/.878; + callees
XO .737/.788/.924; + callees + tagged callers XO .792/.832/.948, XV .947/.964/.989,
XC .890/.925/.978, XB .962/.974/.990, XM .698/.759/.927. Callers untagged were lower
(XO .775/.821), depth 2 changed little (XO .800/.845 callers, .792/.840 callees) and costs more;
the 64-token cap changed nothing measurable (XO .792/.832/.947).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from kinship.features.config import FeatureConfig
from kinship.features.minhash import I64, U32, get_hasher, mix64
from kinship.features.tokens import TokenBatch

_MASK64 = (1 << 64) - 1
_TAG_CALLER = 0x2F8B6A3D5C1E9407
_CALLER_MULT = 0xC2B2AE3D27D4EB4F
_RANK_MULT = 0x9E3779B97F4A7C15


def caller_token(token: int) -> int:
    """The context token saying "a caller of this function has ``token``"."""
    return ((token * _CALLER_MULT) & _MASK64) ^ _TAG_CALLER


def _rank(token: int) -> int:
    return (token * _RANK_MULT) & _MASK64


def callee_indexes(vas: Sequence[int], calls: Sequence[Sequence[int]]) -> list[list[int]]:
    """For function k (at ``vas[k]``): indexes of the distinct functions it calls directly
    (targets that are not function starts of ``vas``, and k itself, are left out)."""
    where = {va: k for k, va in enumerate(vas)}
    out: list[list[int]] = []
    for k, targets in enumerate(calls):
        seen: dict[int, None] = {}
        for t in targets:
            j = where.get(t)
            if j is not None and j != k:
                seen[j] = None
        out.append(list(seen))
    return out


def context_tokens(
    own: Sequence[Sequence[int]], callees: Sequence[Sequence[int]], config: FeatureConfig
) -> list[list[int]]:
    """Context tokens of each function (see module docstring), not including its own tokens."""
    n = len(own)
    use_callees = config.sem_callee_context
    use_callers = config.sem_caller_context
    ctx: list[set[int]] = [set() for _ in range(n)]
    if use_callees or use_callers:
        tagged: list[list[int]] | None = (
            [[caller_token(t) for t in toks] for toks in own] if use_callers else None
        )
        for k, targets in enumerate(callees):
            for j in targets:
                if use_callees and own[j]:
                    ctx[k].update(own[j])
                if tagged is not None and tagged[k]:
                    ctx[j].update(tagged[k])
    cap = config.max_context_tokens
    out: list[list[int]] = []
    for k in range(n):
        extra = ctx[k]
        if extra and own[k]:
            extra.difference_update(own[k])
        if len(extra) > cap:
            out.append(heapq.nsmallest(cap, extra, key=_rank))
        else:
            out.append(sorted(extra, key=_rank))
    return out


def sem_tokens_with_context(
    own: Sequence[Sequence[int]],
    shapes: Sequence[Sequence[int]],
    callees: Sequence[Sequence[int]],
    config: FeatureConfig,
) -> TokenBatch:
    """Mixed sem tokens of every function: own + context (+ shape tokens when not empty)."""
    ctx = context_tokens(own, callees, config)
    raw: list[int] = []
    seg: list[int] = []
    for k, toks in enumerate(own):
        full = list(toks) + ctx[k]
        if not full or len(full) < config.sem_min_specific_tokens:
            continue
        if config.sem_cfg_shape:
            full += shapes[k]
        raw += full
        seg += [k] * len(full)
    tokens = mix64(np.array(raw, dtype=np.uint64)) if raw else np.zeros(0, np.uint64)
    segment: I64 = np.array(seg, dtype=np.int64)
    return TokenBatch(tokens, segment, n_segments=len(own))


def sem_sketches(
    vas: Sequence[int],
    calls: Sequence[Sequence[int]],
    own: Sequence[Sequence[int]],
    shapes: Sequence[Sequence[int]],
    config: FeatureConfig,
) -> tuple[U32, list[int]]:
    """Sem sketches (with call-graph context) of the functions at ``vas`` (direct call targets
    ``calls``, own specific tokens ``own``, shape tokens ``shapes``) and their token counts."""
    sem = sem_tokens_with_context(own, shapes, callee_indexes(vas, calls), config)
    hasher = get_hasher(config.num_perm, config.seed)
    sigs, counts = hasher.sketch_segments(sem.tokens, sem.segment, sem.n_segments)
    return sigs, counts.tolist()
