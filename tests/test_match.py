"""Pair scoring, library filtering and attribution on hand-made FunctionFeatures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kinship.api import Kinship
from kinship.exceptions import StoreError, UsageError
from kinship.features.extract import extract_features
from kinship.features.minhash import EMPTY_SLOT
from kinship.features.model import FunctionFeatures
from kinship.index.config import IndexConfig
from kinship.index.diskarray import DiskArray
from kinship.index.reference import _SAVE_VERSION, ReferenceIndex, SampleLabel, ref_rows
from kinship.match.aggregate import attribute
from kinship.match.config import MatchConfig
from kinship.match.result import (
    ActorScore,
    FamilyScore,
    FunctionMatch,
    MatchKind,
    MatchResult,
    QuerySample,
    SampleScore,
    Verdict,
    VerdictStatus,
)
from kinship.match.score import SketchRows, score_candidates, score_function_pair
from kinship.match.verdict import decide
from kinship.store.model import SampleRecord
from test_features import netsh_like

RNG = np.random.default_rng(12345)
_counter = iter(range(1, 1 << 30))


def feat(
    code: np.ndarray | None = None,
    sem: np.ndarray | None = None,
    *,
    n_ins: int = 40,
    n_sem: int = 12,
    exact: int | None = None,
) -> FunctionFeatures:
    k = next(_counter)
    return FunctionFeatures(
        va=0x1000 * k,
        name=f"f{k}",
        n_instructions=n_ins,
        n_blocks=4,
        n_edges=5,
        size=n_ins * 4,
        exact_hash=exact if exact is not None else int(RNG.integers(-(2**63), 2**63 - 1)),
        code_sig=code if code is not None else rand_sig(),
        sem_sig=sem if sem is not None else rand_sig(),
        n_code_tokens=80,
        n_sem_tokens=n_sem,
    )


def rand_sig() -> np.ndarray:
    return RNG.integers(0, 2**32 - 2, 64, dtype=np.uint32)


def near(sig: np.ndarray, changed: int = 8) -> np.ndarray:
    out = sig.copy()
    out[RNG.choice(64, changed, replace=False)] = RNG.integers(0, 2**32 - 2, changed)
    return out


def variant(f: FunctionFeatures, changed: int = 8) -> FunctionFeatures:
    """A new version of f: similar code sketch, different bytes."""
    return feat(near(f.code_sig, changed), near(f.sem_sig, changed), n_ins=f.n_instructions)


def rec(name: str, family: str | None, actor: str | None = None, lib: bool = False) -> SampleRecord:
    sha = (name.encode().hex() * 64)[:64]
    return SampleRecord(
        sha, sha[:32], sha[:40], name, "pe", "x64", 1000, family=family, actor=actor, is_library=lib
    )


def test_score_exact_code_sem() -> None:
    a = feat()
    assert score_function_pair(a, feat(a.code_sig, a.sem_sig, exact=a.exact_hash)) == 1.0
    s = score_candidates(a, [variant(a, 8), feat(), feat(rand_sig(), a.sem_sig, n_sem=5 + 1)])
    assert 0.75 <= s.score[0] < 1.0 and s.kinds()[0] is MatchKind.CODE
    # noisy-or: agreement of both sketches scores above either one alone
    assert s.score[0] > s.code[0] > 0.75
    assert s.score[1] < 0.1
    # sem identical but only one specific token (1 API + 5 shape tokens): weak evidence
    assert s.score[2] == 0.25 and s.kinds()[2] is MatchKind.SEM


def test_size_penalty() -> None:
    a = feat(n_ins=400)
    b = feat(rand_sig(), a.sem_sig, n_ins=20)
    assert score_function_pair(a, b) == pytest.approx(0.1)  # sem 1.0 * (20/400)/0.5


def test_x86_x64_same_source_scores_high_on_sem() -> None:
    a = extract_features(netsh_like(0x1000, x64=False))
    b = extract_features(netsh_like(0x1000, x64=True))
    s = score_candidates(a, [b])
    assert s.score[0] >= 0.7
    assert s.sem[0] >= s.code[0]


def _corpus(
    config: IndexConfig | None = None,
) -> tuple[ReferenceIndex, dict[str, list[FunctionFeatures]]]:
    fam_a = [feat() for _ in range(30)]
    fam_b = [feat() for _ in range(30)]
    crt = [feat() for _ in range(10)]
    shared5 = feat()  # a function present in all five families
    samples = {
        "a1": fam_a + crt[:5] + [shared5],
        "a2": [variant(f) for f in fam_a[:25]] + crt[5:] + [shared5],
        "b1": fam_b + crt + [shared5],
        "c1": [feat() for _ in range(20)] + [shared5],
        "d1": [feat() for _ in range(20)] + [shared5],
        "e1": [feat() for _ in range(20)] + [shared5],
        "lib": crt + [feat() for _ in range(10)],
        "unlabelled": [variant(f) for f in fam_b[:10]],
    }
    families = {
        "a1": "FamA",
        "a2": "FamA",
        "b1": "FamB",
        "c1": "FamC",
        "d1": "FamD",
        "e1": "FamE",
        "lib": None,
        "unlabelled": None,
    }
    actors = {"FamA": "APT-A", "FamB": "APT-B"}
    index = ReferenceIndex.from_features(
        [
            (rec(n, families[n], actors.get(families[n] or ""), lib=n == "lib"), fs)
            for n, fs in samples.items()
        ],
        config,
    )
    named = {"fam_a": fam_a, "fam_b": fam_b, "crt": crt, "shared5": [shared5]}
    return index, named


def test_query_mostly_family_a() -> None:
    index, named = _corpus()
    fam_a, crt = named["fam_a"], named["crt"]
    query = [variant(f, 6) for f in fam_a[:20]] + [feat() for _ in range(5)] + crt[:6]
    res = attribute(query, index, sample_sha256="q" * 64)
    assert res.verdict.family == "FamA" and res.verdict.actor == "APT-A"
    assert res.verdict.confidence > 0.9
    assert res.families[0].family == "FamA" and res.families[0].n_functions_matched == 20
    assert 0.5 < res.families[0].score <= 1.0
    assert res.n_library_functions == 6  # CRT functions recognised and dropped
    assert res.n_query_functions == res.n_considered_functions == 31
    assert all(m.is_library for m in res.function_matches if m.family is None)
    assert {s.family for s in res.samples[:2]} == {"FamA"}
    assert res.actors[0] == ActorScore("APT-A", res.families[0].score, ("FamA",))
    top = [m for m in res.function_matches if m.family == "FamA"]
    assert len(top) == 20 and all(m.ref_name and m.ref_va for m in top)


def test_random_query_is_unknown() -> None:
    index, named = _corpus()
    res = attribute([feat() for _ in range(40)], index)
    assert res.verdict.family is None and res.verdict.status is VerdictStatus.UNKNOWN
    # an unknown verdict carries no confidence (there is no named family to be right about)
    assert res.families == () and res.verdict.confidence is None and res.verdict.reason
    # one family function among 40 random ones: listed, but below the unknown threshold
    res = attribute([feat() for _ in range(40)] + named["fam_b"][:1], index)
    assert res.families[0].family == "FamB" and res.verdict.family is None
    assert res.verdict.status is VerdictStatus.UNKNOWN and res.verdict.candidate == "FamB"
    # above a lenient threshold one matched function is still thin evidence: weak, no name
    lenient = attribute(
        [feat() for _ in range(40)] + named["fam_b"][:1], index, MatchConfig(unknown_threshold=0.01)
    )
    assert lenient.verdict.family is None and lenient.verdict.confidence is None
    assert lenient.verdict.status is VerdictStatus.WEAK
    assert lenient.verdict.candidate == "FamB" and "thin evidence" in lenient.verdict.reason


def test_small_functions_ignored() -> None:
    index, named = _corpus()
    tiny = [feat(f.code_sig, f.sem_sig, n_ins=5, exact=f.exact_hash) for f in named["fam_b"]]
    res = attribute(tiny, index)
    assert res.n_considered_functions == 0 and res.verdict.family is None


def test_function_shared_by_five_families_has_low_weight() -> None:
    index, named = _corpus()
    shared = named["shared5"][0]
    own = named["fam_b"][0]
    res_shared = attribute([shared], index, MatchConfig(common_families=0))
    res_own = attribute([own], index)
    by_fam = {f.family: f.score for f in res_shared.families}
    assert set(by_fam) == {"FamA", "FamB", "FamC", "FamD", "FamE"}
    assert res_own.families[0].score == 1.0
    assert all(abs(s - 1 / np.log2(6)) < 1e-9 for s in by_fam.values())


def test_function_in_many_families_is_library_code() -> None:
    index, named = _corpus()
    shared = named["shared5"][0]
    assert int(index.exact_families(np.array([shared.exact_hash]))[0]) == 5
    res = attribute([shared, named["fam_b"][0]], index)  # default common_families=3
    assert res.n_library_functions == 1
    assert res.families[0].family == "FamB" and res.families[0].score == 1.0
    near = feat(shared.code_sig, shared.sem_sig, exact=12345)  # same sketches, other hash
    res = attribute([near], index)
    assert res.n_library_functions == 1 and res.families == ()
    res = attribute([shared], index, MatchConfig(common_families=6))
    assert res.n_library_functions == 0 and len(res.families) == 5


def test_candidates_capped_round_robin_over_families() -> None:
    index, named = _corpus()
    q = SketchRows.from_features([named["shared5"][0]])
    full = index.candidates(q, max_candidates=10**6)
    capped = index.candidates(q, max_candidates=5)
    assert len(full) > 5 and len(capped) == 5
    assert set(capped.row.tolist()) <= set(full.row.tolist())
    assert len(set(index.family_id[capped.row].tolist())) == 5  # one per family first


def test_exclude_self() -> None:
    index, named = _corpus()
    query = named["fam_b"]
    sha_b1 = rec("b1", "FamB").sha256
    assert attribute(query, index, exclude_sha256=None).verdict.family == "FamB"
    res = attribute(query, index, sample_sha256=sha_b1, exclude_sha256=sha_b1)
    # only the unlabelled variants of ten functions remain
    assert res.families == () and res.samples[0].name == "unlabelled"


def test_empty_index_and_sem_only_signatures() -> None:
    empty = ReferenceIndex.from_features([])
    assert len(empty) == 0
    assert attribute([feat()], empty).verdict.family is None
    no_code = np.full(64, EMPTY_SLOT, dtype=np.uint32)
    f = feat(no_code)
    index = ReferenceIndex.from_features([(rec("s", "FamS"), [f])])
    res = attribute([feat(no_code, f.sem_sig)], index)
    # one matched function is thin evidence: FamS leads but is not named
    assert res.families[0].family == "FamS" and res.verdict.candidate == "FamS"
    assert res.verdict.status is VerdictStatus.WEAK and res.verdict.family is None
    assert res.function_matches[0].kind is MatchKind.SEM


def test_match_result_json_roundtrip() -> None:
    index, named = _corpus()
    res = attribute(
        [variant(f) for f in named["fam_a"]] + named["crt"][:3], index, sample_sha256="ab" * 32
    )
    d = json.loads(json.dumps(res.to_dict()))
    assert d["sample"]["sha256"] == "ab" * 32
    assert set(d["verdict"]) >= {"family", "actor", "confidence"}
    assert set(d["families"][0]) >= {"family", "actor", "score"}
    assert MatchResult.from_dict(d) == res
    manual = MatchResult(
        sample=QuerySample("x" * 64),
        verdict=Verdict(None, None, None, 0.05, VerdictStatus.WEAK, "thin", "F"),
        families=(FamilyScore("F", None, 0.05, 1, 0.1),),
        samples=(SampleScore("y" * 64, "y.exe", None, 0.1, 2),),
        function_matches=(
            FunctionMatch(1, None, "y" * 64, 2, "g", None, 0.5, MatchKind.SEM, False),
        ),
        n_query_functions=3,
        n_library_functions=1,
        seconds=0.01,
    )
    assert MatchResult.from_dict(json.loads(json.dumps(manual.to_dict()))) == manual


def test_reference_index_validates_rows() -> None:
    labels = {1: SampleLabel("s" * 64, "s", "F", None)}
    sig = np.stack([rand_sig(), rand_sig()])
    with pytest.raises(ValueError, match="sample_id"):
        ReferenceIndex(
            function_id=np.arange(2),
            sample_id=np.array([1]),
            n_instructions=np.array([10, 10]),
            exact_hash=np.array([1, 2]),
            code_sig=sig,
            sem_sig=sig,
            samples=labels,
        )


def test_reference_index_save_load_mmap(tmp_path: Path) -> None:
    index, named = _corpus()
    index.save(tmp_path / "idx")
    query = named["fam_b"] + [named["shared5"][0]]
    for mmap in (True, False):
        loaded = ReferenceIndex.load(tmp_path / "idx", mmap=mmap)
        a, b = attribute(query, index), attribute(query, loaded)
        assert a.verdict.family == b.verdict.family == "FamB"
        assert [(f.family, f.score) for f in a.families] == [
            (f.family, f.score) for f in b.families
        ]
        assert a.n_library_functions == b.n_library_functions
    with pytest.raises(StoreError):
        ReferenceIndex.load(tmp_path / "missing")


def test_saved_index_gathers_rows_by_positional_reads(tmp_path: Path) -> None:
    index, named = _corpus()
    index.save(tmp_path / "idx")
    disk = ReferenceIndex.load(tmp_path / "idx", mmap=True)
    assert isinstance(disk.sketches, DiskArray)
    assert isinstance(disk.code_lsh.keys, DiskArray) and isinstance(disk.sem_lsh.order, DiskArray)
    assert disk.nbytes == index.nbytes and disk.num_perm == index.num_perm == 64
    rows = np.array([5, 0, 5, len(index) - 1, 3], dtype=np.int64)
    a, b = ref_rows(index, rows), ref_rows(disk, rows)
    for field in ("code_sig", "sem_sig", "exact_hash", "n_instructions", "n_sem_tokens"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    q = SketchRows.from_features(named["fam_a"] + named["shared5"])
    ca, cb = index.candidates(q), disk.candidates(q)
    assert np.array_equal(ca.query, cb.query) and np.array_equal(ca.row, cb.row)
    disk.save(tmp_path / "again")  # an index read from disk can be saved again
    again = ReferenceIndex.load(tmp_path / "again", mmap=False)
    assert np.array_equal(np.asarray(again.sketches), np.asarray(index.sketches))


def test_saved_index_of_another_format_is_rebuilt(tmp_path: Path) -> None:
    index, _ = _corpus()
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    meta["version"] = 1  # uint32 code_sig.npy / sem_sig.npy layout
    (tmp_path / "idx" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="format"):
        ReferenceIndex.load(tmp_path / "idx")
    db = tmp_path / "k.db"
    with Kinship(db) as k:
        k.reference_index()
    cache = tmp_path / "k.db.index"
    meta = json.loads((cache / "index.json").read_text())
    meta["version"] = 1
    (cache / "index.json").write_text(json.dumps(meta))
    with Kinship(db) as k:
        k.reference_index()  # refused, rebuilt from the store and saved again
    assert json.loads((cache / "index.json").read_text())["version"] == _SAVE_VERSION


def test_sketch_bits_16_scores_like_32() -> None:
    fam = {f: [feat() for _ in range(40)] for f in ("FamA", "FamB", "FamC")}
    crt = [feat() for _ in range(10)]
    samples = [
        (rec(f"{f}{i}", f), [variant(x, 4 * i) for x in fs] + crt)
        for f, fs in fam.items()
        for i in range(3)
    ]
    indexes = [ReferenceIndex.from_features(samples, IndexConfig(sketch_bits=b)) for b in (16, 32)]
    assert [np.asarray(i.sketches).dtype for i in indexes] == [np.uint16, np.uint32]
    q = [variant(f, 12) for f in fam["FamA"]] + [variant(f, 30) for f in fam["FamB"][:10]] + crt
    a, b = (attribute(q, i) for i in indexes)
    assert a.verdict.family == "FamA" and len(a.families) >= 2
    assert [(f.family, round(f.score, 3)) for f in a.families] == [
        (f.family, round(f.score, 3)) for f in b.families
    ]
    with pytest.raises(UsageError):
        IndexConfig(sketch_bits=8)


@pytest.mark.parametrize(("n_fn", "n_instr", "n_str", "status"), [
    (1, 5000, 0, VerdictStatus.WEAK),  # one function is never enough on its own
    (2, 239, 0, VerdictStatus.WEAK),  # two small functions
    (2, 240, 0, VerdictStatus.ATTRIBUTED),  # two functions with twice the code
    (3, 119, 0, VerdictStatus.WEAK),
    (3, 120, 0, VerdictStatus.ATTRIBUTED),
    (0, 0, 3, VerdictStatus.ATTRIBUTED),  # three distinctive strings
    (1, 50, 2, VerdictStatus.WEAK),
])
def test_verdict_evidence_rule(n_fn: int, n_instr: int, n_str: int,
                               status: VerdictStatus) -> None:
    cfg = MatchConfig()
    top = FamilyScore("F", "Actor", 0.6, n_fn, 0.5, n_strings_shared=n_str,
                      matched_instructions=n_instr)
    v = decide([top], cfg)
    assert v.status is status
    if status is VerdictStatus.ATTRIBUTED:
        assert v.family == "F" and v.confidence is not None and 0.5 < v.confidence < 1.0
    else:
        assert v.family is None and v.confidence is None and v.candidate == "F"
        assert "thin evidence" in v.reason


def test_ties_are_never_a_verdict_unless_one_actor() -> None:
    cfg = MatchConfig()
    a = FamilyScore("A", "Actor 1", 0.60, 10, 0.5, matched_instructions=900)
    b = FamilyScore("B", "Actor 2", 0.59, 10, 0.5, matched_instructions=900)
    same = FamilyScore("B", "Actor 1", 0.59, 10, 0.5, matched_instructions=900)
    far = FamilyScore("B", "Actor 2", 0.40, 10, 0.5, matched_instructions=900)
    tie = decide([a, b], cfg)
    assert tie.status is VerdictStatus.UNKNOWN and tie.family is None and "tie" in tie.reason
    assert tie.confidence is None
    one_actor = decide([a, same], cfg)
    assert one_actor.family == "A" and one_actor.actor == "Actor 1"
    assert "same actor" in one_actor.reason
    clear = decide([a, far], cfg)
    assert clear.family == "A" and clear.confidence is not None
    # a bigger margin over the runner-up means more confidence
    assert clear.confidence > one_actor.confidence  # type: ignore[operator]
