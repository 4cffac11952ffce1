"""LSH banding and exact-hash lookup over stacked signatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinship.exceptions import StoreError, UsageError
from kinship.features.minhash import EMPTY_SLOT
from kinship.index.lsh import (
    FENCE_STRIDE,
    ExactIndex,
    LSHIndex,
    band_keys,
    fenced_searchsorted,
    sorted_unique,
)


def _random_sigs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32 - 1, (n, 64), dtype=np.uint32)


def _perturb(sig: np.ndarray, n_slots: int, rng: np.random.Generator) -> np.ndarray:
    out = sig.copy()
    cols = rng.choice(len(sig), n_slots, replace=False)
    out[cols] = rng.integers(0, 2**32 - 1, n_slots, dtype=np.uint32)
    return out


def test_finds_near_duplicates_not_random() -> None:
    rng = np.random.default_rng(1)
    sigs = _random_sigs(20000)
    index = LSHIndex.build(sigs, bands=16, rows=4)
    targets = rng.integers(0, len(sigs), 200)
    near = np.stack([_perturb(sigs[t], 16, rng) for t in targets])  # J ~ 0.75
    pairs = index.query_batch(near)
    found = {(int(q), int(r)) for q, r in zip(pairs.query, pairs.row, strict=True)}
    recall = np.mean([(i, int(t)) in found for i, t in enumerate(targets)])
    assert recall >= 0.95
    randoms = index.query_batch(_random_sigs(200, seed=99))
    assert len(randoms) == 0
    assert set(index.query(sigs[5]).tolist()) == {5}


def test_empty_signatures_are_not_indexed() -> None:
    sigs = _random_sigs(10)
    sigs[3] = EMPTY_SLOT
    sigs[4] = EMPTY_SLOT
    index = LSHIndex.build(sigs, bands=8, rows=8)
    assert index.keys.shape == (8, 8)
    assert len(index.query(sigs[3])) == 0
    assert index.query(sigs[4]).size == 0


def test_batch_query_equals_single_queries() -> None:
    sigs = _random_sigs(500)
    sigs[100:110] = sigs[7]  # a bucket of 11 identical rows
    index = LSHIndex.build(sigs, bands=16, rows=4, max_bucket=5)
    batch = index.query_batch(sigs[:20])
    for q in range(20):
        single = index.query(sigs[q])
        assert np.array_equal(np.sort(batch.row[batch.query == q]), single)
    assert 5 <= len(index.query(sigs[7])) <= 11  # bucket cap per band, union over bands


def test_save_load_roundtrip(tmp_path: Path) -> None:
    sigs = _random_sigs(300)
    index = LSHIndex.build(sigs, bands=16, rows=4)
    index.save(tmp_path / "code.npz")
    loaded = LSHIndex.load(tmp_path / "code.npz")
    assert np.array_equal(loaded.keys, index.keys) and np.array_equal(loaded.order, index.order)
    assert (loaded.bands, loaded.rows, loaded.n_rows) == (16, 4, 300)
    assert np.array_equal(loaded.query(sigs[9]), [9])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(StoreError):
        LSHIndex.load(tmp_path / "bad.npz")


def test_exact_index() -> None:
    hashes = np.array([5, -3, 5, 9, 2**62, 5], dtype=np.int64)
    ex = ExactIndex.build(hashes)
    assert ex.query(5).tolist() == [0, 2, 5]
    assert ex.query(7).tolist() == []
    pairs = ex.query_batch(np.array([9, -3], dtype=np.int64))
    assert list(zip(pairs.query.tolist(), pairs.row.tolist(), strict=True)) == [(0, 3), (1, 1)]


def test_memory_per_function() -> None:
    index = LSHIndex.build(_random_sigs(1000), bands=16, rows=4)
    fence = 16 * 2 * 8  # ceil(1000 / FENCE_STRIDE) fence keys per band
    assert index.nbytes == 1000 * 16 * 12 + fence


def test_band_shape_checked() -> None:
    with pytest.raises(UsageError):
        band_keys(_random_sigs(3)[:, :10], bands=16, rows=4)


def test_sorted_unique_and_raw_hits() -> None:
    a = np.array([5, -1, 5, 3, 3, 9], dtype=np.int64)
    assert sorted_unique(a).tolist() == [-1, 3, 5, 9]
    assert sorted_unique(np.zeros(0, np.int64)).tolist() == []
    sigs = _random_sigs(50, seed=3)
    index = LSHIndex.build(sigs, bands=16, rows=4)
    raw = index.query_batch(sigs[:3], unique=False)
    assert len(raw) == 48  # each sketch hits itself once per band
    assert index.query_batch(sigs[:3]).row.tolist() == [0, 1, 2]


def test_fenced_searchsorted_equals_searchsorted() -> None:
    rng = np.random.default_rng(5)
    keys = np.sort(rng.integers(0, 3000, size=5000).astype(np.uint64))
    fence = keys[::FENCE_STRIDE].copy()
    q = np.concatenate([rng.integers(0, 3100, size=500).astype(np.uint64), keys[:3], keys[-3:]])
    for side in ("left", "right"):
        expect = np.searchsorted(keys, q, side=side)  # type: ignore[call-overload]
        assert fenced_searchsorted(keys, fence, q, side).tolist() == expect.tolist()
    assert fenced_searchsorted(keys[:0], fence[:0], q[:4], "left").tolist() == [0, 0, 0, 0]
