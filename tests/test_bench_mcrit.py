"""MCRIT's query-sample aggregation (bench.mcrit_peer) on synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest
from bench.mcrit_peer import (
    McritBinary,
    McritIndex,
    family_adjustment,
    family_ranking,
    match_query,
    min_matches_for_threshold,
)

NB = 20


def _bin(pichash: list[int], n_ins: list[int], weight: list[float], sigs: list[list[int] | None],
         bands: list[int | None]) -> McritBinary:
    n = len(pichash)
    mh = np.zeros((n, 64), dtype=np.uint8)
    bd = np.zeros((n, NB), dtype=np.uint32)
    hashable = np.zeros(n, dtype=bool)
    for i, (s, b) in enumerate(zip(sigs, bands, strict=True)):
        if s is not None:
            hashable[i] = True
            mh[i] = s
            bd[i] = b if b is not None else 1000 + i  # synthetic band hashes: equal rows share
    return McritBinary(np.arange(n, dtype=np.int64), np.array(pichash, dtype=np.uint64),
                       np.array(n_ins, dtype=np.int64), np.zeros(n, dtype=np.int64),
                       np.array(weight, dtype=np.float64), hashable, mh, bd)


def _sig(seed: int, equal_to: list[int] | None = None, n_equal: int = 64) -> list[int]:
    base = [(seed * 7 + k) % 251 for k in range(64)]
    if equal_to is None:
        return base
    return equal_to[:n_equal] + [(v + 1) % 256 for v in equal_to[n_equal:]]


def test_thresholds_and_adjustment() -> None:
    assert min_matches_for_threshold() == 33  # score > 50: 33/64 = 51.6
    assert family_adjustment(np.array([0, 1, 2, 3, 4, 7, 8])).tolist() == [1, 1, 1, 2, 3, 3, 4]


def test_pichash_and_minhash_sample_scores() -> None:
    s_b = _sig(2)
    a = _bin([77, 0], [20, 20], [100, 40], [_sig(1), None], [None, None])
    b = _bin([0], [30], [60], [s_b], [5])
    lib = _bin([0], [30], [60], [_sig(3)], [None])
    index = McritIndex([a, b, lib], ["fa", "fb", "runtime"], [False, False, True],
                       ["a", "b", "l"])
    q = _bin(
        [77, 0, 0, 9],
        [20, 40, 15, 5],  # the last function (5 instructions) is not matchable
        [100, 50, 50, 10],
        [_sig(9), _sig(0, s_b, 40), _sig(8), None],
        [None, 5, None, None],
    )
    scores = match_query(q, index)
    # matchable bytes 200: fa gets f0 (PicHash, 100 bytes at 100), fb gets f1 (40/64 slots)
    assert scores[0] == pytest.approx(50.0)
    assert scores[1] == pytest.approx(100 * 50 * (40 / 64) / 200)
    assert scores[2] == 0.0
    ranking = family_ranking(scores, index)
    assert [f for f, _ in ranking] == ["fa", "fb"]
    assert [v for _, v in ranking] == pytest.approx([50.0, 15.625])
    # excluded sample (byte-identical copy) is treated as absent
    assert match_query(q, index, np.array([0]))[0] == 0.0


def test_minhash_threshold_bands_and_library() -> None:
    s = _sig(4)
    # same bands, 32 equal slots (score 50, not > 50): no match; 33: match
    a = _bin([0], [30], [10], [_sig(0, s, 32)], [7])
    b = _bin([0], [30], [10], [_sig(0, s, 33)], [7])
    c = _bin([0], [30], [10], [s], [None])  # identical signature, no shared band: no candidate
    lib = _bin([0], [30], [10], [s], [7])
    index = McritIndex([a, b, c, lib], ["fa", "fb", "fc", "runtime"], [False, False, False, True])
    q = _bin([0], [30], [100], [s], [7])
    scores = match_query(q, index)
    assert scores[0] == 0.0 and scores[2] == 0.0
    assert scores[1] == pytest.approx(100 * 33 / 64)
    assert scores[3] == pytest.approx(100.0)
    # the library sample is best but never the family verdict
    assert [f for f, _ in family_ranking(scores, index)] == ["fb"]


def test_family_adjustment_in_scores() -> None:
    s = _sig(5)
    bins = [_bin([0], [30], [10], [s], [3]) for _ in range(4)]
    index = McritIndex(bins, ["f1", "f2", "f3", "f4"], [False] * 4)
    q = _bin([0], [30], [100], [s], [3])
    # one function matched in 4 families: each family gets 100% / (1 + log2(4)) = 33.3%
    assert match_query(q, index).tolist() == pytest.approx([100 / 3] * 4)


def test_mcrit_band_projection() -> None:
    pytest.importorskip("mcrit")
    from bench.mcrit_peer import band_hashes, band_projection

    proj = band_projection()
    assert len(proj) == 20 and all(len(b) == 4 for b in proj)
    sig = np.arange(64, dtype=np.uint8)[None, :]
    h = band_hashes(np.r_[sig, sig], proj)
    assert h.shape == (2, 20) and (h[0] == h[1]).all()
