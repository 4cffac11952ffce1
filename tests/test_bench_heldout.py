"""The frozen fresh held-out split (bench/heldout.py): the draw is reproducible, tuning code
cannot be handed a held-out family's sample, and no tuning list contains one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench import attribution, heldout
from bench.attribution import (
    LIBRARY_FAMILIES,
    QUICK_FAMILIES,
    TUNING_UNKNOWN,
    Query,
    calibrate_threshold,
    evaluate,
    lineage,
    tuning_queries,
)
from bench.gt import CorpusEntry, ensure_corpus
from bench.heldout import FRESH_HOLDOUT_FAMILIES, HeldOutLeak, guard_tuning
from bench.matching import HOLDOUT_FAMILIES

from conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[1]


def test_frozen_list_is_the_documented_draw() -> None:
    assert heldout.draw() == FRESH_HOLDOUT_FAMILIES
    assert heldout.digest(FRESH_HOLDOUT_FAMILIES) == heldout.FRESH_HOLDOUT_SHA256
    assert set(FRESH_HOLDOUT_FAMILIES) <= set(heldout.DEV_FAMILIES)
    # every family is either exposed (with its reason) or a draw candidate
    assert set(heldout.EXPOSURE) <= set(heldout.DEV_FAMILIES)
    assert not set(FRESH_HOLDOUT_FAMILIES) & set(heldout.EXPOSURE)


def test_dev_families_match_the_corpus_manifest() -> None:
    try:
        manifest = ensure_corpus() / "manifest.jsonl"  # unpacks ../shared/corpus if needed
    except (OSError, ValueError) as e:
        skip_or_fail(f"dev corpus not available: {e}")
        return
    with manifest.open(encoding="utf-8") as fh:
        families = {json.loads(line)["family"] for line in fh if line.strip()}
    assert families == set(heldout.DEV_FAMILIES)


def test_tuning_family_lists_are_disjoint_from_the_frozen_holdout() -> None:
    from bench import yara_bench

    fresh = set(FRESH_HOLDOUT_FAMILIES)
    for name, fams in (("TUNING_UNKNOWN", TUNING_UNKNOWN), ("QUICK_FAMILIES", QUICK_FAMILIES),
                       ("LIBRARY_FAMILIES", LIBRARY_FAMILIES),
                       ("matching.HOLDOUT_FAMILIES", HOLDOUT_FAMILIES),
                       ("TUNED_ON_HOLDOUT", heldout.TUNED_ON_HOLDOUT),
                       ("yara_bench.FAMILIES", yara_bench.FAMILIES),
                       ("yara_bench.QUICK_FAMILIES", yara_bench.QUICK_FAMILIES)):
        assert not fresh & set(fams), name
        # nor one code base with a tuning family (a lineage shares its code)
        assert not {lineage(f) for f in fresh} & {lineage(f) for f in fams}, name
    assert set(heldout.TUNED_ON_HOLDOUT) == set(HOLDOUT_FAMILIES)


def test_nothing_in_the_engine_names_a_held_out_family() -> None:
    for path in (REPO / "src").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for fam in FRESH_HOLDOUT_FAMILIES:
            assert fam not in text, f"{path} names the held-out family {fam}"


def test_guard_raises_on_a_held_out_family() -> None:
    guard_tuning(["zlib", None, "wine-reg"], "test")
    with pytest.raises(HeldOutLeak, match=FRESH_HOLDOUT_FAMILIES[0]):
        guard_tuning(["zlib", FRESH_HOLDOUT_FAMILIES[0]], "test")


def test_calibrate_threshold_refuses_held_out_scores() -> None:
    ok = {"a": [0.01] * 10, "b": [0.02] * 10}
    assert calibrate_threshold(ok).n_families == 2
    with pytest.raises(HeldOutLeak):
        calibrate_threshold({**ok, FRESH_HOLDOUT_FAMILIES[1]: [0.05]})


# ---- evaluate() on fake samples: fresh families reach reporting rows only ------------------
@dataclasses.dataclass
class _Fake:
    entry: CorpusEntry


def _entry(family: str, version: str, arch: str, k: int) -> CorpusEntry:
    return CorpusEntry(id=f"{family}-{version}-{arch}-{k}", family=family, component="c",
                       version=version, source="test", fmt="ELF", arch=arch,
                       variant="gcc-x64-O2", size=1, sha256=f"{family}{version}{arch}{k}",
                       path="x", gt_source="none", n_funcs=1)


def _samples() -> list[_Fake]:
    fams = ["zlib", "bzip2", "xz", TUNING_UNKNOWN[0], HOLDOUT_FAMILIES[0], LIBRARY_FAMILIES[0],
            *FRESH_HOLDOUT_FAMILIES]
    return [_Fake(_entry(f, v, a, k)) for f in fams for v in ("1.0", "2.0")
            for a in ("x86", "x64") for k in range(2)]


def _index(samples: Any) -> list[str]:
    return sorted({s.entry.family for s in samples})


def _query(index: list[str], s: _Fake, experiment: str) -> Query:
    fams = [f for f in index if f not in LIBRARY_FAMILIES]
    top = s.entry.family if s.entry.family in fams else (fams[0] if fams else None)
    score = 0.5 if top == s.entry.family else 0.03
    return Query(s.entry.sha256, s.entry.family, experiment, [top] if top else [], score,
                 top if score >= 0.1 else None, score, 0.0)


def test_evaluate_keeps_fresh_families_out_of_tuning() -> None:
    res = evaluate(_samples(), _index, _query)
    fresh = set(FRESH_HOLDOUT_FAMILIES)
    tuning_rows = [q for q in res.queries if q.experiment in ("version", "compiler", "arch",
                                                              "left-out")]
    assert tuning_rows and not {q.family for q in tuning_rows} & fresh
    assert res.calibration is not None and res.calibration.n_families == 4  # 3 known + 1 unk
    assert res.unknown["fresh_holdout"]["n"] == 16
    assert res.unknown["holdout"]["n"] == 8
    # the fresh families as known families: indexed with the older version / x64 builds
    assert res.fresh["version"]["n_queries"] == 8 and res.fresh["version"]["top1"] == 1.0
    assert res.fresh["arch"]["n_queries"] == 8
    fresh_rows = {q.experiment for q in res.queries if q.family in fresh}
    assert fresh_rows == {"fresh-unknown", "fresh-version", "fresh-arch"}
    # what fitting code may read (e.g. a confidence fit) holds no fresh family ...
    safe = tuning_queries(res.queries)
    assert safe and not {q.family for q in safe} & fresh
    # ... and a fresh query mislabelled as a tuning row is refused, not silently used
    leak = next(q for q in res.queries if q.family in fresh)
    with pytest.raises(HeldOutLeak):
        tuning_queries([dataclasses.replace(leak, experiment="unknown")])


def test_evaluate_raises_when_a_held_out_family_would_be_tuned_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a regression that lets a fresh family into the known (tuning) set must fail loudly
    monkeypatch.setattr(attribution, "_is_known", lambda s: s.entry.family not in (
        set(TUNING_UNKNOWN) | set(HOLDOUT_FAMILIES) | set(LIBRARY_FAMILIES)))
    with pytest.raises(HeldOutLeak):
        evaluate(_samples(), _index, _query)


def test_ingest_rates_equal_counts() -> None:
    from bench.mcrit_peer import McritBinary, ingest_rates

    def mb(vas: list[int], hashable: list[bool]) -> McritBinary:
        n = len(vas)
        z = np.zeros(n, dtype=np.int64)
        return McritBinary(np.array(vas, dtype=np.int64), np.zeros(n, dtype=np.uint64), z, z,
                           np.zeros(n), np.array(hashable, dtype=bool),
                           np.zeros((n, 64), dtype=np.uint8), np.zeros((n, 20), dtype=np.uint32))

    # kinship: 4 functions in 1 CPU-s; MCRIT: 3 SMDA functions (2 minhashable) in 4 CPU-s
    r = ingest_rates([(1.0, [10, 20, 30, 40], 4.0, mb([10, 20, 50], [True, False, True]))])
    assert r["kinship"]["functions_per_cpu_s"] == 4.0
    assert r["mcrit"]["functions_per_cpu_s"] == 0.5  # minhashable only, as reported before
    assert r["ratio_own_counts"] == 8.0
    eq = r["equal_counts"]
    assert eq["mcrit_minhashable"] == {"functions": 2, "kinship_per_cpu_s": 2.0,
                                       "mcrit_per_cpu_s": 0.5, "ratio": 4.0}
    assert eq["found_by_both"]["functions"] == 2
    assert eq["minhashable_found_by_both"]["functions"] == 1
    assert eq["smda_all"]["ratio"] == 4.0


def test_disasm_common_starts_use_each_tools_shift() -> None:
    from bench.disasm_vs_smda import ToolRun, common_starts
    from bench.gt import StartScore

    def run(starts: list[int], shift: int) -> ToolRun:
        r = ToolRun("t", "ok", starts=starts)
        r.score = StartScore(1, 0, 0, shift)
        return r

    assert common_starts([run([0x1010, 0x1020, 0x1030], 0),
                          run([0x10, 0x20, 0x40], 0x1000)]) == 2
