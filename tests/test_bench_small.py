"""The pure parts of ``python -m bench small``: calibration figures and query groups.

No compiling: hand-made confidences with known ECE/Brier answers, and the query construction
on the build grid.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from bench.calibration import (
    bin_index,
    brier_score,
    calibrate,
    expected_calibration_error,
    reliability_bins,
)
from bench.small_programs import (
    FAMILIES,
    FOLDS,
    GROUPS,
    OPTS,
    QUICK_FOLDS,
    SRC_DIR,
    TOOLCHAINS,
    Build,
    Outcome,
    Query,
    all_builds,
    dump_results,
    fold_rows,
    make_queries,
    outcome_of,
    query_group,
    reference_builds,
    summarise,
    verdict_status,
)

# ---- calibration ------------------------------------------------------------------------


def test_bin_index_edges() -> None:
    assert bin_index(0.0) == 0
    assert bin_index(0.1) == 1
    assert bin_index(0.95) == 9
    assert bin_index(1.0) == 9  # 1.0 belongs to the last bin
    assert bin_index(1.5) == 9 and bin_index(-0.2) == 0  # clamped


def test_perfectly_calibrated_set_has_zero_ece() -> None:
    # 10 verdicts at 0.9 of which 9 right; 4 at 0.25 of which 1 right
    conf = [0.9] * 10 + [0.25] * 4
    ok = [True] * 9 + [False] + [True] + [False] * 3
    assert expected_calibration_error(conf, ok) == pytest.approx(0.0)


def test_overconfident_set() -> None:
    # always 1.0, right half the time: ECE 0.5, Brier 0.5
    conf, ok = [1.0] * 4, [True, False, True, False]
    assert expected_calibration_error(conf, ok) == pytest.approx(0.5)
    assert brier_score(conf, ok) == pytest.approx(0.5)


def test_ece_weights_bins_by_size() -> None:
    # bin 9: 3 at 0.95, all right -> gap 0.05; bin 5: 1 at 0.55, wrong -> gap 0.55
    conf, ok = [0.95, 0.95, 0.95, 0.55], [True, True, True, False]
    assert expected_calibration_error(conf, ok) == pytest.approx(0.75 * 0.05 + 0.25 * 0.55)


def test_brier_known_values() -> None:
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert brier_score([0.5] * 4, [True, False, False, True]) == pytest.approx(0.25)
    assert brier_score([0.8], [False]) == pytest.approx(0.64)


def test_reliability_bins_list_every_bin() -> None:
    bins = reliability_bins([0.05, 0.15, 0.17], [False, True, False], n_bins=10)
    assert len(bins) == 10
    assert (bins[0].n, bins[1].n, bins[2].n) == (1, 2, 0)
    assert bins[1].accuracy == pytest.approx(0.5)
    assert bins[1].mean_confidence == pytest.approx(0.16)
    assert math.isnan(bins[2].accuracy)


def test_calibrate_empty_and_json() -> None:
    cal = calibrate([], [])
    assert cal.n == 0 and math.isnan(cal.ece) and math.isnan(cal.brier)
    d = cal.to_dict()
    assert d["ece"] is None and len(d["bins"]) == 10
    cal = calibrate([0.9, 0.7], [True, False])
    assert cal.accuracy == 0.5 and cal.mean_confidence == pytest.approx(0.8)
    with pytest.raises(ValueError):
        reliability_bins([0.5], [])


# ---- query groups -------------------------------------------------------------------------


def test_sources_and_folds_are_consistent() -> None:
    names = {f.name for f in FAMILIES}
    assert len(names) == len(FAMILIES) >= 8
    for f in FAMILIES:
        for s in f.sources:
            assert (SRC_DIR / s).is_file()
    for fold in (*FOLDS, *QUICK_FOLDS):
        assert set(fold) <= names and len(set(fold)) == len(fold)
    # every family is known in some fold and a stranger in another
    assert {f for fold in FOLDS for f in fold} == names
    assert all(any(n not in fold for fold in FOLDS) for n in names)


def test_query_group_nearest_reference() -> None:
    refs = reference_builds(["fwgate"])
    assert len(refs) == 2
    grp = {
        Build("fwgate", "v2", "mingw-x86", "-O2"): "version",
        Build("fwgate", "v1", "mingw-x86", "-Os"): "opt",
        Build("fwgate", "v2", "mingw-x64", "-O2"): "arch",
        Build("fwgate", "v1", "mingw-x64", "-O0"): "arch+opt",
        Build("fwgate", "v1", "clang-x64", "-O2"): "compiler",
        Build("fwgate", "v1", "gcc-x86", "-O2"): "arch",  # nearest: the gcc x64 reference
        Build("fwgate", "v2", "gcc-x64", "-O2"): "version",
        Build("sumtool", "v1", "mingw-x86", "-O2"): "stranger",
    }
    for b, want in grp.items():
        assert query_group(b, ["fwgate"], refs) == want, b.name
    with pytest.raises(ValueError):
        query_group(Build("beacon", "v1", "gcc-x64", "-O2"), ["beacon"], refs)


def test_make_queries_leaves_references_out() -> None:
    fams = ["fwgate", "sumtool", "wordstat"]
    builds = all_builds(fams, [t.name for t in TOOLCHAINS], OPTS)
    assert len(builds) == 3 * 2 * len(TOOLCHAINS) * len(OPTS)
    refs = reference_builds(["fwgate"])
    qs = make_queries(builds, ["fwgate"], refs)
    assert len(qs) == len(builds) - len(refs)
    assert not {q.build for q in qs} & set(refs)
    assert {q.group for q in qs} <= set(GROUPS)
    strangers = [q for q in qs if q.group == "stranger"]
    assert len(strangers) == 2 * 2 * len(TOOLCHAINS) * len(OPTS)
    assert all(q.expected is None for q in strangers)
    assert all(q.expected == "fwgate" for q in qs if q.group != "stranger")
    assert len({b.name for b in builds}) == len(builds)  # names are unique file names


# ---- verdicts and metrics -----------------------------------------------------------------


def _verdict(family: str | None, confidence: float | None, status: str | None = None
             ) -> SimpleNamespace:
    v = SimpleNamespace(family=family, actor=None, confidence=confidence, score=0.5)
    if status is not None:
        v.status = status
    return v


def test_verdict_status_both_shapes() -> None:
    assert verdict_status(_verdict(None, 0.99)) == "unknown"  # old shape: confidence on unknown
    assert verdict_status(_verdict("x", 0.9)) == "attributed"
    assert verdict_status(_verdict("x", None, "weak")) == "weak"
    assert verdict_status(_verdict(None, None, "weak")) == "weak"  # weak: family None
    assert verdict_status(_verdict("x", 0.7, "attributed")) == "attributed"
    assert verdict_status(_verdict(None, None, "unknown")) == "unknown"


def _outcome(group: str, expected: str | None, family: str | None, conf: float | None,
             status: str | None = None) -> Outcome:
    result = SimpleNamespace(verdict=_verdict(family, conf, status), families=[],
                             n_query_functions=10, n_considered_functions=5,
                             n_library_functions=0)
    build = Build(expected or "wordstat", "v2", "mingw-x86", "-O2")
    return outcome_of(Query(build, group, expected), result, 0.01, "fwgate+beacon")


def test_summary_counts_and_calibration() -> None:
    outs = [
        _outcome("version", "fwgate", "fwgate", 0.9),  # right
        _outcome("arch", "fwgate", "beacon", 0.8),  # wrong family: false attribution
        _outcome("arch", "fwgate", None, 0.99),  # unknown (old-shape confidence ignored)
        _outcome("stranger", None, "beacon", 1.0),  # false attribution of a stranger
        _outcome("stranger", None, None, None, "unknown"),  # right
        _outcome("stranger", None, None, None, "weak"),  # weak: not an attribution
    ]
    rows, cal = summarise(outs)
    by = {r.group: r for r in rows}
    assert by["version"].top1 == 1.0
    assert by["arch"].n == 2 and by["arch"].false_attribution == 0.5 and by["arch"].unknown == 0.5
    assert by["stranger"].n_false == 1 and by["stranger"].top1 == pytest.approx(2 / 3)
    assert by["stranger"].weak == pytest.approx(1 / 3)
    assert by["stranger"].weak_right == 0.0  # a stranger has no right candidate
    assert by["all"].n == 6 and by["all"].n_false == 2
    # attributed verdicts only: 0.9 right, 0.8 wrong, 1.0 wrong
    assert cal.n == 3
    assert cal.brier == pytest.approx((0.1**2 + 0.8**2 + 1.0) / 3)
    folds = fold_rows(outs)
    assert folds[0]["strangers_false"] == 1 and folds[0]["strangers_given"] == {"beacon": 1}
    assert outs[0].to_dict()["fold"] == "fwgate+beacon"
    doc = json.loads(dump_results({"n_queries": len(outs)}, [o.to_row() for o in outs]))
    rows = [dict(zip(doc["query_columns"], r, strict=True)) for r in doc["queries"]]
    assert len(rows) == 6 and rows[3]["family"] == "beacon" and rows[3]["confidence"] == 1.0
