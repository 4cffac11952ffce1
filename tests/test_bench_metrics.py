"""Metric functions of bench/ on tiny hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.attribution import threshold_curve
from bench.matching import (
    BinaryMeta,
    auc,
    expected_rank_metrics,
    normalise_name,
    task_of,
)


def test_rank_metrics_clear_winner() -> None:
    r1, rr = expected_rank_metrics(0.9, np.array([0.1, 0.5, 0.2]))
    assert r1 == 1.0 and rr == 1.0


def test_rank_metrics_third_place() -> None:
    r1, rr = expected_rank_metrics(0.5, np.array([0.9, 0.8, 0.1]))
    assert r1 == 0.0
    assert rr == pytest.approx(1 / 3)


def test_rank_metrics_ties_are_expected_values() -> None:
    # positive tied with one negative, nothing above: rank 1 or 2 with equal chance
    r1, rr = expected_rank_metrics(0.5, np.array([0.5, 0.1]))
    assert r1 == pytest.approx(0.5)
    assert rr == pytest.approx((1 + 0.5) / 2)
    # everything equal among 100: chance level
    r1, _ = expected_rank_metrics(0.0, np.zeros(99))
    assert r1 == pytest.approx(0.01)


def test_mrr_cutoff_at_10() -> None:
    _, rr = expected_rank_metrics(0.1, np.full(10, 0.9))  # rank 11
    assert rr == 0.0
    _, rr = expected_rank_metrics(0.1, np.full(9, 0.9))  # rank 10
    assert rr == pytest.approx(0.1)


def test_auc() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5], [0.5]) == 0.5
    # 3 pos x 2 neg: pairs won: 0.9>all(2), 0.4>0.3(1), 0.3==0.3(0.5) -> 3.5/6
    assert auc([0.9, 0.4, 0.3], [0.3, 0.6]) == pytest.approx(3.5 / 6)
    assert math.isnan(auc([], [0.1]))


def test_normalise_name() -> None:
    assert normalise_name("foo.isra.0") == "foo"
    assert normalise_name("bar.constprop.2.cold") == "bar"
    assert normalise_name("lua_pushnil@@LUA_5.3") == "lua_pushnil"
    assert normalise_name("_Sleep@4") == "Sleep"
    assert normalise_name("__mingw_x") == "__mingw_x"


def test_task_of() -> None:
    a = BinaryMeta("lua", "lua5.3", "gcc", "O2", "x64", "ELF")
    assert task_of(a, BinaryMeta("lua", "lua5.3", "gcc", "O0", "x64", "ELF")) == ["XM", "XO"]
    assert "XB" in task_of(a, BinaryMeta("lua", "lua5.3", "gcc", "O2", "x86", "ELF"))
    assert "XC" in task_of(a, BinaryMeta("lua", "lua5.3", "clang", "O2", "x64", "ELF"))
    assert "XF" in task_of(a, BinaryMeta("lua", "lua5.3", "mingw", "O2", "x64", "PE"))
    assert "XV" in task_of(a, BinaryMeta("lua", "lua5.4", "gcc", "O2", "x64", "ELF"))
    assert task_of(a, BinaryMeta("zlib/x", "1", "gcc", "O2", "x64", "ELF")) == []


def test_threshold_curve() -> None:
    # known queries: (score, correct); unknown queries: score
    known = [(0.9, True), (0.6, True), (0.4, False)]
    unknown = [0.5, 0.1]
    curve = threshold_curve(known, unknown, [0.0, 0.45, 0.7])
    t0, t45, t70 = curve
    assert t0.recall == pytest.approx(2 / 3) and t0.false_attribution == 1.0
    assert t45.recall == pytest.approx(2 / 3) and t45.false_attribution == 0.5
    assert t45.precision == pytest.approx(2 / 3)  # 2 correct of 3 attributed (0.9, 0.6, 0.5)
    assert t70.recall == pytest.approx(1 / 3) and t70.false_attribution == 0.0
    assert t70.precision == 1.0


def test_calibrate_threshold_leave_one_family_out() -> None:
    from bench.attribution import calibrate_threshold

    # 23 unknown scores: at <= 1% false attribution none may reach the threshold, so the base
    # is the first grid point above the maximum (0.05 -> 0.06). Leaving family "c" out, the
    # rule on the others gives 0.03, which c's 0.05 would pass unless the margin is >= 2.
    cal = calibrate_threshold({"a": [0.01] * 10, "b": [0.02] * 10, "c": [0.05, 0.01, 0.01]})
    assert (cal.base, cal.margin, cal.threshold) == (0.06, 2.0, 0.12)
    assert cal.cv_false_attribution == 0.0 and cal.n_families == 3 and cal.n_samples == 23
    # a single family: nothing to leave out, the smallest margin holds
    one = calibrate_threshold({"a": [0.1, 0.2]})
    assert one.threshold > 0.2
