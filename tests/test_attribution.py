"""End to end through the Python API on real binaries: ingest, match, compare, library filter.

The reference store holds: our netsh program (x86 PE + x64 ELF) as family "netshdoor" of actor
"Lazarus Group"; Debian's Lua 5.1-5.3 as family "lua"; and the toolchains' runtimes (hello-world
builds) as a library corpus. Queries are builds the store has never seen.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kinship.api import Kinship
from kinship.exceptions import InputError
from kinship.match.result import MatchResult
from kinship.pipeline import Labels


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, Path],
          lua_libs: dict[str, Path]) -> Path:
    db = tmp_path_factory.mktemp("attr") / "refs.db"
    with Kinship(db) as k:
        r = k.add([bins["crt_x86.exe"], bins["crt_x64.exe"], bins["crt_elf64"]],
                  Labels(is_library=True))
        assert len(r.added) == 3 and not r.failed
        r = k.add([bins["netsh_x86.exe"], bins["netsh_elf64"]],
                  Labels(family="netshdoor", actor="Lazarus Group", source="Vendor report 2016",
                         first_seen="2016-03"))
        assert len(r.added) == 2
        r = k.add([lua_libs["5.1"], lua_libs["5.2"], lua_libs["5.3"]], Labels(family="lua"),
                  jobs=2)
        assert len(r.added) == 3 and not r.failed
    return db


def test_x64_build_attributed_to_family_of_x86_build(store: Path, bins: dict[str, Path]) -> None:
    with Kinship(store) as k:
        res = k.match(bins["netsh_x64.exe"])
    assert res.verdict.family == "netshdoor"
    assert res.verdict.actor == "Lazarus Group"
    assert res.verdict.confidence >= 0.5
    # the mingw runtime in the query is recognised as library code, not evidence
    assert res.n_library_functions >= 20
    names = {m.query_name for m in res.function_matches if m.family == "netshdoor"}
    assert "run_command" in names


def test_newer_version_attributed(store: Path, bins: dict[str, Path]) -> None:
    with Kinship(store) as k:
        res = k.match(bins["netsh_v2_x64.exe"])
    assert res.verdict.family == "netshdoor"


def test_newer_lua_attributed_to_lua(store: Path, lua_libs: dict[str, Path]) -> None:
    with Kinship(store) as k:
        res = k.match(lua_libs["5.4"])
    assert res.verdict.family == "lua"
    assert res.families[0].family == "lua"
    assert len(res.families) == 1 or res.families[1].score < res.families[0].score / 5


@pytest.mark.parametrize("name", ["other_x64.exe", "other_elf64"])
def test_unrelated_binary_is_unknown(store: Path, bins: dict[str, Path], name: str) -> None:
    with Kinship(store) as k:
        res = k.match(bins[name])
    assert res.verdict.family is None, res.families[:3]
    assert res.to_dict()["verdict"]["family"] is None


def test_same_routine_matched_across_x86_and_x64(bins: dict[str, Path], tmp_path: Path) -> None:
    with Kinship(tmp_path / "empty.db") as k:
        cmp = k.compare(bins["netsh_x86.exe"], bins["netsh_x64.exe"])
    by_left = {p.left_name: p for p in cmp.pairs}
    pair = by_left.get("_run_command") or by_left.get("run_command")
    assert pair is not None, sorted(n for n in by_left if n)[:40]
    assert pair.right_name == "run_command"
    assert {"CreateProcessA", "WaitForSingleObject", "CloseHandle", "Sleep"} <= set(pair.apis)
    assert pair.rows, "the pair has an aligned listing"
    # the API calls line up on the same rows in both columns
    api_rows = [r for r in pair.rows if r.kind == "api"]
    assert {r.left.api.split("!")[-1] for r in api_rows if r.left and r.left.api} >= {
        "CreateProcessA", "Sleep"}
    # the listing is in order on both sides
    lv = [r.left.va for r in pair.rows if r.left]
    rv = [r.right.va for r in pair.rows if r.right]
    assert lv == sorted(lv) and rv == sorted(rv)


def test_corrupt_file_leaves_store_intact(store: Path, bins: dict[str, Path],
                                          tmp_path: Path) -> None:
    bad = tmp_path / "truncated.exe"
    bad.write_bytes(bins["netsh_x64.exe"].read_bytes()[:300])
    before = sqlite3.connect(store).execute("select count(*) from functions").fetchone()[0]
    with Kinship(store) as k:
        n_samples = k.stats().samples
        report = k.add([bad, bins["other_elf64"]], Labels(family="mixed"))
        assert [f.name for f in report.failed] == [str(bad)]
        assert len(report.added) == 1
        with pytest.raises(InputError) as ei:
            k.match(bad)
        assert str(bad) in str(ei.value)
        assert k.stats().samples == n_samples + 1
        k.store.delete_sample(report.added[0].sha256)
        assert k.stats().samples == n_samples
    after = sqlite3.connect(store).execute("select count(*) from functions").fetchone()[0]
    assert after == before
    assert sqlite3.connect(store).execute("pragma integrity_check").fetchone()[0] == "ok"


def test_saved_index_is_reused_and_follows_store_changes(tmp_path: Path,
                                                         bins: dict[str, Path]) -> None:
    db = tmp_path / "k.db"
    with Kinship(db) as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netshdoor"))
        first = k.match(bins["netsh_x64.exe"])
    cache = Path(f"{db}.index")
    assert (cache / "GENERATION").exists()
    stamp = (cache / "GENERATION").read_text()
    with Kinship(db) as k:  # a new process would map the saved index
        again = k.match(bins["netsh_x64.exe"])
        assert (cache / "GENERATION").read_text() == stamp
        assert again.to_dict()["families"] == first.to_dict()["families"]
        k.relabel(first.samples[0].sha256, family="renamed")
    with Kinship(db) as k:
        res = k.match(bins["netsh_x64.exe"])
    assert res.verdict.family == "renamed"
    assert (cache / "GENERATION").read_text() != stamp


def test_sample_level_signals_are_listed(store: Path, bins: dict[str, Path]) -> None:
    with Kinship(store) as k:
        res = k.match(bins["netsh_v2_x64.exe"])
    signals = {(s.name, s.signal) for s in res.sample_signals}
    doc = res.to_dict()
    assert MatchResult.from_dict(doc).to_dict() == doc
    assert all(s.sha256 != res.sample_sha256 for s in res.sample_signals)
    assert signals == {(s["name"], s["signal"]) for s in doc["sample_signals"]}


def test_identical_import_table_is_an_imphash_signal(tmp_path: Path, bins: dict[str, Path]
                                                     ) -> None:
    db = tmp_path / "k.db"
    with Kinship(db) as k:
        k.add([bins["netsh_x64.exe"]], Labels(family="netshdoor", source="Vendor 2016"))
        res = k.match(bins["netsh_x64_dll.dll"])
    by_signal = {s.signal: s for s in res.sample_signals}
    info = {s.signal for s in res.sample_signals}
    assert "imphash" in info or "tlsh" in info or "rich_header" in info, res.sample_signals
    for s in by_signal.values():
        assert s.name == "netsh_x64.exe" and s.source == "Vendor 2016"
