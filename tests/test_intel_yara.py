"""Generated YARA rules compile and match exactly their family on the fixture corpus."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yara
from click.testing import CliRunner

from kinship.api import Kinship
from kinship.cli import register
from kinship.pipeline import Labels
from kinship.rules.yara_gen import generate_family_rule
from kinship.rules.yara_validate import sha256_file

FAMILIES = {
    "netsh": ["netsh_x86.exe", "netsh_x64.exe", "netsh_v2_x64.exe", "netsh_x64_dll.dll"],
    "netsh-elf": ["netsh_elf64", "netsh_elf64_stripped", "netsh_v2_elf64"],
    "other": ["other_x86.exe", "other_x64.exe", "other_elf64"],
}


def _files(bins: dict[str, Path], names: list[str]) -> dict[str, Path]:
    return {sha256_file(bins[n]): bins[n] for n in names}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rule_matches_exactly_its_family(bins: dict[str, Path], family: str) -> None:
    members = _files(bins, FAMILIES[family])
    others = {h: p for f, names in FAMILIES.items() if f != family
              for h, p in _files(bins, names).items()}
    rule = generate_family_rule(family, members, others)
    assert rule is not None
    compiled = yara.compile(source=rule.text)
    for p in members.values():
        assert compiled.match(str(p)), p
    for p in others.values():
        assert not compiled.match(str(p)), p
    assert rule.validation is not None and rule.validation.tpr == 1.0
    assert rule.validation.fpr == 0.0


def test_cli_rules_yara_from_store(bins: dict[str, Path], tmp_home: Path) -> None:
    db = tmp_home / "k.db"
    with Kinship(db) as k:
        for fam in ("netsh", "other"):
            k.add([bins[n] for n in FAMILIES[fam]], Labels(family=fam))
    group = click.Group("kinship")
    register(group)
    runner = CliRunner()
    keep = runner.invoke(group, ["rules", "keep", "--db", str(db),
                                 *[str(bins[n]) for f in ("netsh", "other")
                                   for n in FAMILIES[f]]])
    assert keep.exit_code == 0, keep.output
    res = runner.invoke(group, ["rules", "yara", "--family", "netsh", "--db", str(db),
                                "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["validation"]["tpr"] == 1.0 and d["validation"]["fpr"] == 0.0
    yara.compile(source=d["text"])
    # added fields: the samples covered, one rule per group, leave-one-out per sample
    netsh = {sha256_file(bins[n]) for n in FAMILIES["netsh"]}
    assert set(d["members"]) == netsh and d["uncovered"] == []
    assert [set(g["members"]) for g in d["groups"]] == [netsh]
    loo = d["leave_one_out"]
    assert {h["sample"] for h in loo["samples"]} == netsh and loo["held_out"] == len(netsh)
    assert loo["matched"] == sum(h["matched"] for h in loo["samples"])
    assert loo["tpr"] == round(loo["matched"] / len(netsh), 4)
    assert all(h["trained_on"] == len(netsh) - 1 for h in loo["samples"])
    text = runner.invoke(group, ["rules", "yara", "--family", "netsh", "--db", str(db)])
    assert text.exit_code == 0, text.output
    assert "leave-one-out TPR" in text.output and "// TPR 1.000 FPR 0.000" in text.output
