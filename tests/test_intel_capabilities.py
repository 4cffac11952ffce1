"""capa rules over kinship's disassembly: the netsh firewall routine yields T1562.004."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinship.exceptions import UsageError
from kinship.intel.capabilities import (
    CapabilitiesConfig,
    CapabilitiesResult,
    find_capabilities,
    load_rules,
    rules_dir,
)
from kinship.pipeline import SampleInput, analyse


@pytest.fixture(scope="module")
def capa_rules(shared_dir: Path | None) -> Path:
    if shared_dir is None or not (shared_dir / "data/capa-rules").is_dir():
        pytest.skip("../shared/data/capa-rules is not here")
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
