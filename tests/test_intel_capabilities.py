"""capa rules over kinship's disassembly: the netsh firewall routine yields T1562.004."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import skip_or_fail
from kinship.exceptions import UsageError
from kinship.intel.capabilities import (
    BUILTIN_RULES,
    CapabilitiesConfig,
    CapabilitiesResult,
    find_capabilities,
    load_rule_sets,
    load_rules,
    rules_dir,
)
from kinship.pipeline import AnalysedSample, SampleInput, analyse


@pytest.fixture(scope="module")
def capa_rules(shared_dir: Path | None) -> Path:
    if shared_dir is None or not (shared_dir / "data/capa-rules").is_dir():
        skip_or_fail("../shared/data/capa-rules is not here")
    return shared_dir / "data/capa-rules"


def _run(path: Path, rules: Path) -> tuple[CapabilitiesResult, dict[str, int]]:
    a = analyse(SampleInput(name=str(path), path=path), keep=True)
    assert a.binary is not None and a.disassembly is not None
    res = find_capabilities(a.binary, a.disassembly,
                            load_rules(CapabilitiesConfig(rules_dir=rules)))
    names = {(f.name or "").lstrip("_"): f.va for f in a.disassembly.functions}
    return res, names


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe"])
def test_netsh_techniques_with_addresses(bins: dict[str, Path], capa_rules: Path,
                                         name: str) -> None:
    res, funcs = _run(bins[name], capa_rules)
    by_id = {t.id: t for t in res.techniques}
    fw = by_id["T1562.004"]
    assert fw.name and "Firewall" in fw.name
    assert funcs["open_port"] in fw.function_vas
    assert any('netsh' in f for e in fw.evidence for f in e.features)
    proc = by_id["T1106"]  # Native API: CreateProcessA in the process launcher
    assert funcs["run_command"] in proc.function_vas
    create = next(c for c in res.capabilities if c.rule == "create process on Windows")
    assert any("CreateProcess" in f for e in create.evidence for f in e.features)
    assert res.to_dict()["techniques"]


def test_elf_process_creation(bins: dict[str, Path], capa_rules: Path) -> None:
    res, _funcs = _run(bins["netsh_elf64"], capa_rules)
    rules = {c.rule for c in res.capabilities}
    assert "create process on Linux" in rules or "execute shell command line" in rules


def test_rules_dir_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINSHIP_CAPA_RULES", raising=False)
    with pytest.raises(UsageError):
        rules_dir(None)


def test_basic_block_count_feature(bins: dict[str, Path], capa_rules: Path) -> None:
    """capa's ``count(basic blocks)`` needs one BasicBlock feature per block (as vivisect
    yields): without it "enumerate PE sections" (3 or more blocks) never matched the mingw
    runtime's section walker that capa-vivisect finds in netsh_x64.exe."""
    from capa.features.basicblock import BasicBlock as CapaBasicBlock

    from kinship.intel.capa_extractor import KinshipCapaExtractor

    a = analyse(SampleInput(name="x", path=bins["netsh_x64.exe"]), keep=True)
    assert a.binary is not None and a.disassembly is not None
    ex = KinshipCapaExtractor(a.binary, a.disassembly)
    fh = next(iter(ex.get_functions()))
    bbs = list(ex.get_basic_blocks(fh))
    n = sum(1 for bb in bbs for f, _ in ex.extract_basic_block_features(fh, bb)
            if isinstance(f, CapaBasicBlock))
    assert n == len(bbs) > 0
    res = find_capabilities(a.binary, a.disassembly,
                            load_rules(CapabilitiesConfig(rules_dir=capa_rules)))
    assert "enumerate PE sections" in {c.rule for c in res.capabilities}


# ---- rule sets: kinship's own rules always run; capa rules are optional (issue #9 §5) ----

def _analysed(path: Path) -> AnalysedSample:
    a = analyse(SampleInput(name=str(path), path=path), keep=True)
    assert a.binary is not None and a.disassembly is not None
    return a


def test_kinship_rules_run_without_capa_rules(bins: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINSHIP_CAPA_RULES", raising=False)
    loaded = load_rule_sets()
    sets = {s.name: s for s in loaded.sets}
    own = sets["kinship"]
    assert own.used and own.n_rules == len(list(BUILTIN_RULES.glob("*.yml"))) >= 3
    assert not sets["capa-rules"].used and sets["capa-rules"].reason_code == "not_given"
    assert "--capa-rules" in (sets["capa-rules"].reason or "")
    a = _analysed(bins["netsh_x64.exe"])
    assert a.binary is not None and a.disassembly is not None
    res = find_capabilities(a.binary, a.disassembly, loaded)
    funcs = {(f.name or "").lstrip("_"): f.va for f in a.disassembly.functions}
    by_id = {t.id: t for t in res.techniques}
    assert funcs["open_port"] in by_id["T1562.004"].function_vas
    assert funcs["run_command"] in by_id["T1106"].function_vas  # self-contained API rule
    assert {c.source for c in res.capabilities} == {"kinship"}
    d = res.to_dict()
    assert [s["name"] for s in d["rule_sets"]] == ["kinship", "capa-rules"]
    assert CapabilitiesResult.from_dict(d).to_dict() == d


def test_capa_rules_env_missing_dir_and_bad_option(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINSHIP_CAPA_RULES", str(tmp_path / "gone"))
    capa = {s.name: s for s in load_rule_sets().sets}["capa-rules"]
    assert not capa.used and capa.reason_code == "not_a_directory"
    assert str(tmp_path / "gone") in (capa.reason or "")
    with pytest.raises(UsageError):  # an explicit option that is wrong is the user's mistake
        load_rule_sets(CapabilitiesConfig(rules_dir=tmp_path / "typo"))
    with pytest.raises(UsageError):  # nothing left to run
        load_rule_sets(CapabilitiesConfig(builtin_rules=False))


def test_both_rule_sets_counted(capa_rules: Path) -> None:
    sets = {s.name: s for s in load_rule_sets(CapabilitiesConfig(rules_dir=capa_rules)).sets}
    assert sets["kinship"].used and sets["capa-rules"].used
    assert sets["capa-rules"].n_rules > 500 and sets["capa-rules"].path == str(capa_rules)


def test_cli_capabilities_says_which_rule_sets(bins: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from kinship.cli import main

    monkeypatch.delenv("KINSHIP_CAPA_RULES", raising=False)
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["capabilities", str(bins["netsh_x64.exe"]), "--db", str(tmp_path / "none.db")]
    r = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert "T1562.004" in {t["id"] for t in doc["techniques"]}
    sets = {s["name"]: s for s in doc["rule_sets"]}
    assert sets["kinship"]["used"] and sets["kinship"]["n_rules"] >= 3
    assert not sets["capa-rules"]["used"] and sets["capa-rules"]["reason"]
    assert doc["n_functions"] > 100 and "n_library_functions" in doc
    r = runner.invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "capa-rules: not used: no capa rules given" in r.output
    assert "kinship: 3 rules from" in r.output and "library code:" in r.output


# ---- library code is not searched (issue #9 §1) -------------------------------------------

def _runtime_vas(sample: AnalysedSample, other: AnalysedSample) -> set[int]:
    """``sample``'s functions whose exact code an unrelated program of the same toolchain has
    too: its MinGW runtime, found the way a runtime baseline finds it."""
    theirs = {f.exact_hash for f in other.features if f.n_instructions >= 10}
    return {f.va for f in sample.features if f.exact_hash in theirs}


def test_library_code_excluded_from_capabilities(bins: dict[str, Path],
                                                 capa_rules: Path) -> None:
    a = _analysed(bins["netsh_x64.exe"])
    assert a.binary is not None and a.disassembly is not None
    runtime = _runtime_vas(a, _analysed(bins["other_x64.exe"]))
    rules = load_rule_sets(CapabilitiesConfig(rules_dir=capa_rules))
    before = find_capabilities(a.binary, a.disassembly, rules)
    after = find_capabilities(a.binary, a.disassembly, rules, library_vas=runtime)
    funcs = {(f.name or "").lstrip("_"): f.va for f in a.disassembly.functions}
    # the MinGW runtime parses its own PE header: T1129 "shared modules" without the filter
    assert "T1129" in {t.id for t in before.techniques}
    assert before.n_library_functions == 0
    assert funcs["ValidateImageBase"] in runtime and funcs["open_port"] not in runtime
    assert after.n_library_functions == len(runtime) > 20
    assert after.n_functions == len(a.disassembly.functions)
    by_id = {t.id: t for t in after.techniques}
    assert "T1129" not in by_id and "parse PE header" not in {c.rule for c in after.capabilities}
    assert funcs["open_port"] in by_id["T1562.004"].function_vas
    assert funcs["run_command"] in by_id["T1106"].function_vas
    assert not runtime & {v for t in after.techniques for v in t.function_vas}


def test_library_functions_of_the_store_are_skipped(bins: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The count comes from Kinship.library_functions (runtime baseline + --library samples)."""
    from kinship.api import Kinship
    from kinship.intel.capabilities import library_code
    from kinship.pipeline import Labels

    monkeypatch.delenv("KINSHIP_CAPA_RULES", raising=False)
    a = _analysed(bins["netsh_x64.exe"])
    assert a.binary is not None and a.disassembly is not None
    with Kinship(tmp_path / "k.db") as k:
        k.add([bins["other_x64.exe"]], Labels(is_library=True))
        expected = k.library_functions(a)
        library, note = library_code(a, k.library_functions)
    assert note is None and library == expected and len(library) > 20  # MinGW runtime
    res = find_capabilities(a.binary, a.disassembly, load_rule_sets(), library_vas=library,
                            library_note=note)
    assert res.n_library_functions == len(library & {f.va for f in a.disassembly.functions})
    assert not library & {v for t in res.techniques for v in t.function_vas}
    assert "T1562.004" in {t.id for t in res.techniques}


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe"])
def test_runtime_recognised_on_a_fresh_install(bins: dict[str, Path], capa_rules: Path,
                                               tmp_path: Path, name: str) -> None:
    """No store, no --library: the compiler runtime is still known (baseline), so the MinGW
    start-up code's PE parsing is not reported as T1129 "shared modules"."""
    import json

    from click.testing import CliRunner

    from kinship.cli import main

    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [
        "capabilities", str(bins[name]), "--capa-rules", str(capa_rules),
        "--db", str(tmp_path / "none.db"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    ids = {t["id"] for t in doc["techniques"]}
    assert "T1129" not in ids and {"T1562.004", "T1106"} <= ids
    assert doc["n_library_functions"] > 40 and doc["library_note"] is None
    assert not (tmp_path / "none.db").exists()


def test_rule_sets_counted_by_name_not_cached_path(tmp_path: Path) -> None:
    """capa's rule cache is keyed by content: a cache filled from a copy of kinship's rules
    remembers the copy's paths. kinship's rules must still be counted as kinship's."""
    from kinship.intel.capabilities import _count_rules, _load

    copy = tmp_path / "copy"
    shutil.copytree(BUILTIN_RULES, copy)
    cache = tmp_path / "cache"
    _load.cache_clear()
    try:
        _load((str(copy),), False, str(cache))
        _load.cache_clear()
        ruleset = _load((str(BUILTIN_RULES),), False, str(cache))
        assert _count_rules(ruleset) == {"kinship": len(list(BUILTIN_RULES.glob("*.yml")))}
    finally:
        _load.cache_clear()
