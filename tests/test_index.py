"""LSH banding and exact-hash lookup over stacked signatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinship.exceptions import StoreError, UsageError
from kinship.features.minhash import EMPTY_SLOT
from kinship.index import diskarray
from kinship.index.diskarray import DiskArray
from kinship.index.lsh import (
    FENCE_STRIDE,
    ExactIndex,
    LSHIndex,
    band_keys,
    fence_of,
    fenced_search_disk,
    fenced_searchsorted,
    sorted_unique,
)
from kinship.index.sketch16 import fold, to_stored, widen


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


def test_disk_array_reads_equal_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for shape, dtype in (((5000,), np.uint64), ((700, 128), np.uint16), ((3, 4000), np.uint32)):
        a = rng.integers(0, 10**6, size=shape).astype(dtype)
        np.save(tmp_path / "a.npy", a)
        disk = DiskArray(tmp_path / "a.npy")
        assert disk.shape == a.shape and disk.nbytes == a.nbytes
        starts = rng.integers(0, len(a), 200)
        counts = np.minimum(rng.integers(0, 30, 200), len(a) - starts)
        expect = np.concatenate([a[s : s + c] for s, c in zip(starts, counts, strict=True)])
        assert np.array_equal(disk.read_ranges(starts, counts), expect)
        rows = rng.integers(0, len(a), 500)  # duplicates, any order
        assert np.array_equal(disk.take(rows), a[rows])
        assert np.array_equal(disk.load(), a)
        flat = disk.flat()
        assert np.array_equal(flat.take(np.array([0, a.size - 1])), a.reshape(-1)[[0, -1]])
    with pytest.raises(IndexError):
        disk.read_ranges(np.array([len(disk)]), np.array([1]))
    (tmp_path / "bad.npy").write_bytes(b"nonsense")
    with pytest.raises(StoreError):
        DiskArray(tmp_path / "bad.npy")


def test_lsh_on_disk_equals_in_memory(tmp_path: Path) -> None:
    sigs = _random_sigs(3000, seed=11)
    sigs[1000:1700] = sigs[3]  # a bucket wider than one fence block (FENCE_STRIDE = 512)
    sigs[2000:2010] = EMPTY_SLOT
    mem = LSHIndex.build(sigs, bands=16, rows=4, max_bucket=600)
    np.save(tmp_path / "keys.npy", mem.keys)
    np.save(tmp_path / "order.npy", mem.order)
    disk = LSHIndex(
        DiskArray(tmp_path / "keys.npy"),
        DiskArray(tmp_path / "order.npy"),
        len(sigs),
        4,
        600,
        mem.fence,
    )
    q = np.concatenate([sigs[:50], sigs[1000:1003], sigs[2000:2002], _random_sigs(20, 5)])
    for unique in (True, False):
        a, b = mem.query_batch(q, unique), disk.query_batch(q, unique)
        assert np.array_equal(a.query, b.query) and np.array_equal(a.row, b.row)
    assert disk.nbytes == mem.nbytes
    with pytest.raises(StoreError):
        LSHIndex(DiskArray(tmp_path / "keys.npy"), mem.order, len(sigs), 4)


def test_fenced_search_on_disk_equals_searchsorted(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    keys = np.sort(rng.integers(0, 400, size=(2, 3000)).astype(np.uint64), axis=1)
    np.save(tmp_path / "k.npy", keys)
    flat = DiskArray(tmp_path / "k.npy").flat()
    q = np.concatenate([rng.integers(0, 420, 300).astype(np.uint64), keys[1, :3], keys[1, -3:]])
    for band in (0, 1):
        lo, hi = fenced_search_disk(flat, band, 3000, fence_of(keys)[band], q)
        assert lo.tolist() == np.searchsorted(keys[band], q, side="left").tolist()
        assert hi.tolist() == np.searchsorted(keys[band], q, side="right").tolist()


def test_sketch16_folds_alike_and_keeps_empty() -> None:
    sig = np.array([[0x12345678, 0xABCDFFFF, 7], [EMPTY_SLOT] * 3], dtype=np.uint32)
    stored = to_stored(sig, 16)
    assert stored.dtype == np.uint16 and stored[0].tolist() == [0x5678, 0xFFFF, 7]
    wide = widen(stored)
    assert wide[0].tolist() == [0x5678, EMPTY_SLOT, 7] and (wide[1] == EMPTY_SLOT).all()
    assert np.array_equal(fold(sig, 16), wide)
    assert np.array_equal(fold(sig, 32), sig) and to_stored(sig, 32).dtype == np.uint32


def test_disk_array_without_preadv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diskarray, "_HAS_PREADV", False)  # os.pread + copy (no os.preadv)
    a = np.arange(3000, dtype=np.uint32).reshape(1000, 3)
    np.save(tmp_path / "a.npy", a)
    rows = np.array([999, 0, 17, 17], dtype=np.int64)
    assert np.array_equal(DiskArray(tmp_path / "a.npy").take(rows), a[rows])
