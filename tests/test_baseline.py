"""Compiler-runtime baseline: a fresh store with default options and no --library corpus must
not attribute unrelated small programs through the runtime code they share (issue #9).

The programs are ours (tests/fixtures/src), built with mingw-w64 and clang in the test setup and
stripped here, as implants are: netsh.c (the "2016 implant" and its "2019 x64 rebuild"),
other.c (a word counter), checksum.c (a checksum tool) and hello.c.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kinship.api import Kinship
from kinship.baseline.build import BuildInput, build_pack, undecorate
from kinship.baseline.pack import PACK_SUFFIX, BaselinePack, LibraryInfo
from kinship.baseline.registry import BUILTIN_DIR, discover, with_baseline
from kinship.cli import main
from kinship.exceptions import InputError
from kinship.match.result import MatchResult, VerdictStatus
from kinship.pipeline import Labels, feature_params
from kinship.store.base import FunctionArrays

STRIP = {"pe": "x86_64-w64-mingw32-strip", "elf": "strip"}


def _stripped(src: Path, dest_dir: Path) -> Path:
    tool = STRIP["pe" if src.suffix in (".exe", ".dll") else "elf"]
    if shutil.which(tool) is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{tool} missing (CI installs binutils-mingw-w64)")
        pytest.skip(f"{tool} missing")
    out = dest_dir / src.name
    subprocess.run([tool, "--strip-all", "-o", str(out), str(src)], check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def case(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The issue's case, stripped: names -> files."""
    d = tmp_path_factory.mktemp("stripped")
    names = ["netsh_x86.exe", "netsh_v2_x64.exe", "other_x86.exe", "other_x64.exe",
             "checksum_x86.exe", "checksum_x64.exe", "crt_x64.exe", "crt_x86.exe",
             "netsh_elf64", "netsh_elf64_clang", "checksum_elf64_clang", "other_elf64"]
    return {n: _stripped(bins[n], d) for n in names}


@pytest.fixture(scope="module")
def store(case: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh store, default options, no library corpus: two small implants under actors."""
    db = tmp_path_factory.mktemp("store") / "kinship.db"
    with Kinship(db) as k:
        k.add([case["netsh_x86.exe"]], Labels(family="netsh-backdoor", actor="Lazarus Group",
                                              source="Vendor report 2016", first_seen="2016"))
        k.add([case["other_x86.exe"]], Labels(family="wordstat", actor="APT28"))
        k.add([case["netsh_elf64"]], Labels(family="netsh-elf", actor="Lazarus Group"))
    return db


def _match(db: Path, path: Path, *, baseline: bool = True) -> MatchResult:
    with Kinship(db, baseline=baseline) as k:
        return k.match(path)


@pytest.mark.parametrize("stranger", ["checksum_x86.exe", "checksum_x64.exe", "crt_x64.exe",
                                      "crt_x86.exe", "checksum_elf64_clang"])
def test_strangers_are_not_attributed(store: Path, case: dict[str, Path], stranger: str) -> None:
    res = _match(store, case[stranger])
    assert res.verdict.family is None and res.verdict.actor is None
    assert res.verdict.confidence is None and res.verdict.status is not VerdictStatus.ATTRIBUTED
    assert res.verdict.reason
    # the runtime was recognised, and by the built-in baseline, not by a --library sample
    # (a dynamic ELF carries only a few start-up functions of >= 10 instructions)
    assert res.n_library_functions >= (10 if stranger.endswith(".exe") else 1)
    assert all(not m.is_library or m.ref_sample_sha256.startswith("baseline:")
               for m in res.function_matches)
    # no family is credited with runtime code
    assert all(f.n_functions_matched <= 2 for f in res.families)


def test_stranger_without_baseline_shows_the_cause(store: Path, case: dict[str, Path]) -> None:
    """Turning the baseline off brings back what issue #9 saw: runtime functions matched as
    family code, and a warning that the toolchain has no baseline."""
    off = _match(store, case["checksum_x64.exe"], baseline=False)
    on = _match(store, case["checksum_x64.exe"])
    assert off.n_library_functions == 0 < on.n_library_functions
    assert off.families and off.families[0].n_functions_matched > 2
    assert any("baseline" in w for w in off.warnings)
    assert not any("baseline" in w for w in on.warnings)


@pytest.mark.parametrize(("query", "family"), [
    ("netsh_v2_x64.exe", "netsh-backdoor"),  # 2016 x86 implant -> 2019 x64 rebuild, v2
    ("other_x64.exe", "wordstat"),
    ("netsh_elf64_clang", "netsh-elf"),  # gcc -> clang
])
def test_rebuilds_are_attributed(store: Path, case: dict[str, Path], query: str,
                                 family: str) -> None:
    res = _match(store, case[query])
    v = res.verdict
    # netsh-backdoor (PE) and netsh-elf (ELF) are one source under one actor: either family may
    # lead, the actor must be right, and a near-tie between them must be said
    same_source = {"netsh-backdoor", "netsh-elf"} if family.startswith("netsh") else {family}
    assert v.status is VerdictStatus.ATTRIBUTED and v.family in same_source
    assert v.actor == ("Lazarus Group" if family.startswith("netsh") else "APT28")
    runner = res.families[1] if len(res.families) > 1 else None
    if runner is not None and runner.score >= 0.95 * res.families[0].score:
        assert runner.family in same_source and "same actor" in v.reason
    assert v.confidence is not None and 0.5 < v.confidence <= 1.0
    top = res.families[0]
    assert top.n_functions_matched >= 3 and top.matched_instructions >= 120
    # no library function is counted as family evidence
    lib = res.library_vas
    assert not any(m.query_va in lib for m in res.function_matches if m.family == family)


def test_library_hits_name_the_runtime(store: Path, case: dict[str, Path]) -> None:
    res = _match(store, case["netsh_v2_x64.exe"])
    labels = {h.library for h in res.library_functions}
    assert any("MinGW-w64" in x and "x64" in x for x in labels), labels
    # one CRT function is in several releases' packs: the sample's own release names it
    # (the fixtures are built with Debian 12's mingw-w64)
    bookworm = [h for h in res.library_functions if "bookworm" in h.library]
    assert len(bookworm) >= 0.9 * len(res.library_functions)
    d = json.loads(json.dumps(res.to_dict()))
    assert MatchResult.from_dict(d) == res
    assert d["library_functions"] and d["verdict"]["status"] == "attributed"


def test_builtin_pack_covers_the_mingw_runtime(case: dict[str, Path], tmp_path: Path) -> None:
    """A MinGW hello world is all runtime but main: the built-in pack knows nearly all of it."""
    with Kinship(tmp_path / "empty.db") as k:
        for name in ("crt_x64.exe", "crt_x86.exe"):
            res = k.match(case[name])
            assert res.n_library_functions >= 0.9 * (res.n_considered_functions - 1), name
            assert any("no labelled" in w for w in res.warnings)  # empty store: said so


def test_match_cli_stranger_prints_no_confidence(store: Path, case: dict[str, Path]) -> None:
    r = CliRunner().invoke(main, ["match", str(case["checksum_x64.exe"]), "--db", str(store)])
    assert r.exit_code == 0, r.output
    assert "verdict: unknown" in r.output or "verdict: weak" in r.output
    assert "confidence" not in r.output
    assert "MinGW-w64" in r.output  # the runtime is named where it was left out


# ---- packs --------------------------------------------------------------------------------


def test_pack_build_roundtrip_and_reproducible(case: dict[str, Path], tmp_path: Path) -> None:
    lib = LibraryInfo("MinGW hello", toolchain="mingw", arch="x64", format="PE")
    first = build_pack("hello", [lib], [BuildInput(case["crt_x64.exe"], 0)]).pack
    again = build_pack("hello", [lib], [BuildInput(case["crt_x64.exe"], 0)]).pack
    a, b = tmp_path / f"a{PACK_SUFFIX}", tmp_path / f"b{PACK_SUFFIX}"
    first.save(a)
    again.save(b)
    assert a.read_bytes() == b.read_bytes()  # same inputs, same bytes
    loaded = BaselinePack.load(a)
    assert loaded.digest() == first.digest() and len(loaded) == len(first) > 10
    assert loaded.libraries == [lib] and loaded.compatible(feature_params())
    assert int(loaded.n_instructions.min()) >= 8
    rows = {(int(n), c.tobytes(), m.tobytes()) for n, c, m in
            zip(loaded.n_instructions, loaded.code_sig, loaded.sem_sig, strict=True)}
    assert len(rows) == len(loaded)  # no two rows a query could not tell apart


def test_min_programs_keeps_only_shared_code(case: dict[str, Path]) -> None:
    lib = LibraryInfo("MinGW x64")
    inputs = [BuildInput(case[n], 0, program=n)
              for n in ("crt_x64.exe", "checksum_x64.exe", "other_x64.exe")]
    every = build_pack("all", [lib], inputs).pack
    shared = build_pack("shared", [lib], inputs, min_programs=3).pack
    assert 0 < len(shared) < len(every)
    # the checksum tool's own code (a CRC loop) is in one program only
    one = build_pack("one", [lib], inputs[1:2]).pack
    own = set(one.exact_hash.tolist()) - set(shared.exact_hash.tolist())
    assert own and not own & set(shared.exact_hash.tolist())


def test_exclude_drops_the_programs_own_functions(bins: dict[str, Path]) -> None:
    lib = LibraryInfo("MinGW x64")
    unstripped = bins["checksum_x64.exe"]  # COFF symbols name our functions
    kept = build_pack("x", [lib], [BuildInput(unstripped, 0)],
                      exclude=r"^(main|crc_.*|adler32_.*|fnv1a_.*|sum_file|usage)$").pack
    names = {undecorate(n) for n in kept.names if n}
    assert not names & {"main", "sum_file", "crc32_update", "adler32_update"}
    assert any(n.startswith("__") or n.startswith("_") for n in kept.names if n)
    assert undecorate("_DllMain@12") == "DllMain" and undecorate("f.constprop.0") == "f"


@pytest.mark.parametrize("damage", ["truncated", "not-a-zip", "bad-shapes"])
def test_damaged_pack_is_refused_with_its_name(tmp_path: Path, case: dict[str, Path],
                                               damage: str) -> None:
    pack = build_pack("p", [LibraryInfo("x")], [BuildInput(case["crt_x64.exe"], 0)]).pack
    path = tmp_path / f"p{PACK_SUFFIX}"
    if damage == "bad-shapes":
        pack.n_instructions = pack.n_instructions[:-1]
    pack.save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "not-a-zip":
        path.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(InputError) as e:
        BaselinePack.load(path)
    assert str(path) in str(e.value)


def test_registry_skips_unusable_user_packs(tmp_path: Path, case: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINSHIP_BASELINES", str(tmp_path))
    (tmp_path / f"junk{PACK_SUFFIX}").write_bytes(b"junk")
    other = build_pack("other-params", [LibraryInfo("x")],
                       [BuildInput(case["crt_x64.exe"], 0)]).pack
    other.feature_params = {**other.feature_params, "num_perm": 128}
    other.save(tmp_path / f"other{PACK_SUFFIX}")
    entries = {e.path.name: e for e in discover(feature_params())}
    assert entries[f"junk{PACK_SUFFIX}"].pack is None and entries[f"junk{PACK_SUFFIX}"].error
    assert "feature parameters" in entries[f"other{PACK_SUFFIX}"].error
    builtin = [e for e in entries.values() if e.builtin]
    assert builtin and all(e.pack is not None for e in builtin)
    assert {e.path.parent for e in builtin} == {BUILTIN_DIR}


def test_with_baseline_appends_library_rows() -> None:
    packs = [e.pack for e in discover(feature_params()) if e.pack is not None]
    arrays, names = with_baseline(FunctionArrays(), packs)
    n = sum(len(p) for p in packs)
    assert len(arrays) == n and n > 100
    assert (arrays.function_id < 0).all() and (arrays.sample_id < 0).all()
    assert all(s.is_library for s in arrays.samples.values())
    assert arrays.code_sig.shape == (n, 64) and names
    assert np.array_equal(np.sort(arrays.function_id), np.arange(-n, 0))


def test_baseline_cli_list_build_add(case: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINSHIP_BASELINES", str(tmp_path / "user"))
    runner = CliRunner()
    r = runner.invoke(main, ["baseline", "list", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert any(p["builtin"] and p["used"] and p["functions"] > 100 for p in doc["packs"])
    out = tmp_path / f"mine{PACK_SUFFIX}"
    r = runner.invoke(main, ["baseline", "build", str(case["crt_x64.exe"]), "--name", "mine",
                             "--library", "My [bold]RTL[/]", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["functions"] > 10
    r = runner.invoke(main, ["baseline", "add", str(out)])
    assert r.exit_code == 0 and (tmp_path / "user" / f"mine{PACK_SUFFIX}").exists()
    r = runner.invoke(main, ["baseline", "list"])
    assert r.exit_code == 0 and "My [bold]RTL[/]" in r.output  # shown, not read as markup
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    r = runner.invoke(main, ["baseline", "add", str(junk)])
    assert r.exit_code == 3 and "junk.bin" in r.output


def test_compare_shows_the_implant_routines_first(store: Path, case: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """Issue #9: compare of the two netsh builds leads with the CreateProcess/Wait/Close/Sleep
    routine and the netsh routine, not runtime code; the page names the stored sample's family
    and source, and no internal names."""
    with Kinship(store) as k:
        res = k.compare(case["netsh_v2_x64.exe"], case["netsh_x86.exe"])
    lib = [i for i, p in enumerate(res.pairs) if p.is_library]
    own = [i for i, p in enumerate(res.pairs) if not p.is_library]
    assert lib and own and max(own) < min(lib)  # runtime code strictly after the rest
    assert all(p.library for p in res.pairs if p.is_library)
    top = res.pairs[:4]
    assert any("CreateProcessA" in p.apis for p in top)
    assert any(any("netsh" in s for s in p.strings) for p in top)
    assert res.right.family == "netsh-backdoor" and res.right.source == "Vendor report 2016"
    html = tmp_path / "c.html"
    r = CliRunner().invoke(main, ["compare", str(case["netsh_v2_x64.exe"]),
                                  str(case["netsh_x86.exe"]), "--db", str(store),
                                  "--html", str(html)])
    assert r.exit_code == 0, r.output
    page = html.read_text(encoding="utf-8")
    assert "MatchKind" not in page and "Vendor report 2016" in page and "netsh-backdoor" in page
    assert "library: MinGW-w64" in page


def test_python_api_stores_actor_aliases_canonically(case: dict[str, Path],
                                                     tmp_path: Path) -> None:
    with Kinship(tmp_path / "k.db") as k:
        k.add([case["netsh_x86.exe"]], Labels(family="netsh", actor="Hidden Cobra"))
        assert k.store.samples()[0].actor == "Lazarus Group"
        rec = k.relabel(k.store.samples()[0].sha256, actor="Fancy Bear")
        assert rec.actor == "APT28"
        k.add([case["other_x86.exe"]], Labels(family="other", actor="Not A Known Group 42"))
        assert {s.actor for s in k.store.samples()} == {"APT28", "Not A Known Group 42"}


def test_shipped_mingw_pack_is_reproducible(tmp_path: Path) -> None:
    """tools/baseline/build_packs.py rebuilds the shipped MinGW-w64 pack from this machine's
    compilers: the same functions and the same bytes, when the toolchain is the one the pack
    records (a different mingw-w64 version is a different pack, not a failure)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_packs", Path(__file__).resolve().parents[1] / "tools/baseline/build_packs.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for cc in ("i686-w64-mingw32-gcc", "x86_64-w64-mingw32-gcc"):
        if shutil.which(cc) is None:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"{cc} missing (CI installs gcc-mingw-w64)")
            pytest.skip(f"{cc} missing")
    shipped = BaselinePack.load(BUILTIN_DIR / f"mingw-w64-gcc12-bookworm{PACK_SUFFIX}")
    if tool.tool_version("x86_64-w64-mingw32-gcc") != shipped.libraries[1].toolchain:
        pytest.skip("this machine's mingw-w64 is not the one the shipped pack was built with")
    (tmp_path / "work").mkdir()
    tool.build_mingw(tmp_path / "work", tmp_path)
    rebuilt = tmp_path / f"mingw-w64-gcc12-bookworm{PACK_SUFFIX}"
    again = BaselinePack.load(rebuilt)
    assert again.digest() == shipped.digest()
    assert again.strings == shipped.strings and len(again) == len(shipped) > 300


def test_hostile_pack_labels_are_shown_inert(case: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A pack from elsewhere may carry terminal escapes in its labels: shown as \\x1b."""
    monkeypatch.setenv("KINSHIP_BASELINES", str(tmp_path))
    evil = "\x1b]0;pwned\x07\x1b[2J[red]lib[/]"
    pack = build_pack("evil", [LibraryInfo(evil)], [BuildInput(case["crt_x64.exe"], 0)]).pack
    pack.save(tmp_path / f"evil{PACK_SUFFIX}")
    r = CliRunner().invoke(main, ["baseline", "list"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\\x1b" in r.output and "[red]lib[/]" in r.output


def test_compare_terminal_names_provenance_and_runtime(store: Path,
                                                       case: dict[str, Path]) -> None:
    r = CliRunner().invoke(main, ["compare", str(case["netsh_v2_x64.exe"]),
                                  str(case["netsh_x86.exe"]), "--db", str(store),
                                  "--listings", "0"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "netsh-backdoor" in r.output and "Vendor report 2016" in r.output
    assert "first seen 2016" in r.output and "library: MinGW-w64" in r.output
    assert "MatchKind" not in r.output


def test_compare_and_match_show_hostile_names_inert(case: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """A stored name/label with markup and terminal escapes is printed literally and with
    its control characters visible, never raw."""
    evil = tmp_path / "[red]evil[x]\x1b]0;t\x07.exe"
    shutil.copyfile(case["netsh_x86.exe"], evil)
    db = tmp_path / "k.db"
    with Kinship(db) as k:
        k.add([evil], Labels(family="[bold]fam\x1b[2J", actor="Hidden Cobra"))
    runner = CliRunner()
    for args in (["compare", str(case["netsh_v2_x64.exe"]), str(evil), "--listings", "0"],
                 ["match", str(case["netsh_v2_x64.exe"])]):
        r = runner.invoke(main, [*args, "--db", str(db)], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.output and "\x07" not in r.output
        assert "[bold]fam\\x1b[2J" in r.output
        if args[0] == "compare":
            assert "[red]evil[x]\\x1b]0;t\\x07.exe" in r.output
