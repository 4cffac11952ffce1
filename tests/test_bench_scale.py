"""bench.scale's replay: a spread query function equals its row in the replayed copy."""

from __future__ import annotations

import numpy as np
from bench.scale import _replay, spread_query

from kinship.features.model import FunctionFeatures
from kinship.match.score import SketchRows


def _feat(rng: np.random.Generator, k: int) -> FunctionFeatures:
    code = rng.integers(0, 2**32 - 1, size=64, dtype=np.uint64).astype(np.uint32)
    sem = np.full(64, 0xFFFFFFFF, dtype=np.uint32) if k % 3 == 0 else code[::-1].copy()
    return FunctionFeatures(k, None, 20 + k, 5, 6, 80, int(rng.integers(-(2**62), 2**62)),
                            code, sem, 10, 0 if k % 3 == 0 else 10)


def test_spread_query_lands_in_replayed_copies() -> None:
    rng = np.random.default_rng(1)
    feats = [_feat(rng, k) for k in range(12)]
    base = SketchRows.from_features(feats)
    rows = _replay(base, 5 * len(feats))
    assert spread_query(feats, 1) == feats  # one copy: identity
    spread = spread_query(feats, 5, seed=3)
    moved = 0
    for k, f in enumerate(spread):
        hits = np.flatnonzero(rows.exact_hash == f.exact_hash)
        assert len(hits) == 1 and hits[0] % len(feats) == k
        assert np.array_equal(rows.code_sig[hits[0]], f.code_sig)
        assert np.array_equal(rows.sem_sig[hits[0]], f.sem_sig)
        moved += int(hits[0] >= len(feats))
    assert moved > 0
