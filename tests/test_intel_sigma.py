"""Generated Sigma rules parse with pySigma and fire on exactly their family's stored strings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kinship.api import Kinship
from kinship.cli import register
from kinship.pipeline import Labels
from kinship.rules.sigma_gen import SigmaConfig, corpus_events, generate_family_rules
from kinship.rules.sigma_validate import event_table, lint_rule, parse_rule, to_sql
from kinship.store.base import StoredString
from kinship.store.memory import MemoryStore
from kinship.store.model import SampleRecord

FAMILIES = {
    "netsh": ["netsh_x86.exe", "netsh_x64.exe", "netsh_v2_x64.exe", "netsh_x64_dll.dll"],
    "other": ["other_x86.exe", "other_x64.exe", "other_elf64"],
}
CFG = SigmaConfig(date="2026-01-01")


@pytest.fixture(scope="module")
def kin(bins: dict[str, Path]) -> Iterator[Kinship]:
    with Kinship(store=MemoryStore()) as k:
        for fam, names in FAMILIES.items():
            k.add([bins[n] for n in names], Labels(family=fam))
        yield k


def _netsh_rule(k: Kinship) -> tuple[list[str], str]:
    res = generate_family_rules(k.store, "netsh", CFG)
    rule = next(r for r in res.rules if r.tokens[:2] == ("netsh",
                                                           "firewall add portopening TCP"))
    assert rule.validation is not None
    return rule.validation.true_positives, rule.text


def test_netsh_rule_has_skeleton_and_technique(kin: Kinship) -> None:
    tps, text = _netsh_rule(kin)
    rule = parse_rule(text)
    assert [str(t) for t in rule.tags] == ["attack.defense-evasion", "attack.t1562.004"]
    assert rule.logsource.category == "process_creation"
    assert lint_rule(rule) == []
    assert "CommandLine|contains|all" in text and "firewall add portopening" in text
    netsh = {r.sha256 for r in kin.store.samples(family="netsh")}
    assert set(tps) == netsh
    for sha in netsh:
        assert sha in text  # provenance: every member's sha256 in the description


def test_sql_fires_on_family_only(kin: Kinship) -> None:
    _, text = _netsh_rule(kin)
    con = event_table(corpus_events(kin.store))
    hits = {f for (f,) in con.execute(f"SELECT DISTINCT family FROM ({to_sql(parse_rule(text))})")}
    assert hits == {"netsh"}
    res = generate_family_rules(kin.store, "netsh", CFG)
    for r in res.rules:
        assert r.validation is not None and r.validation.false_positives == []
    assert generate_family_rules(kin.store, "other", CFG).rules == []  # no log-like strings


def test_ids_stable_across_runs(kin: Kinship) -> None:
    a = generate_family_rules(kin.store, "netsh", CFG)
    b = generate_family_rules(kin.store, "netsh", CFG)
    assert [r.id for r in a.rules] == [r.id for r in b.rules] and a.rules
    assert a.yaml() == b.yaml()


def _record(name: str, family: str) -> SampleRecord:
    data = name.encode()
    return SampleRecord(hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(),
                        hashlib.sha1(data).hexdigest(), name, "pe", "x64", 1, family=family)


def _strings(*texts: str) -> list[StoredString]:
    return [StoredString(t, "ascii", 0x400 + 64 * n, None, ".rdata") for n, t in enumerate(texts)]


def test_rule_firing_on_another_family_is_dropped() -> None:
    """No binaries: a store of strings. 'mimic' builds the same netsh command with a literal
    port, so its text differs (no shared posting) but the rule's skeleton fires on it."""
    store = MemoryStore()
    for n in range(2):
        store.add_sample(_record(f"a{n}", "alpha"), [], strings=_strings(
            'netsh firewall add portopening TCP %d "%s"',
            'schtasks /create /tn "AlphaUpdater" /tr "%s" /sc onlogon /f',
            r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\AlphaUpdater"))
    store.add_sample(_record("m", "mimic"), [], strings=_strings(
        'netsh firewall add portopening TCP 8080 "svc"'))
    res = generate_family_rules(store, "alpha", CFG)
    kept = {r.tokens[0] for r in res.rules}
    assert kept == {"schtasks", "\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\AlphaUpdater"}
    assert [r.tokens[0] for r in res.dropped] == ["netsh"]
    v = res.dropped[0].validation
    assert v is not None and len(v.false_positives) == 1 and len(v.true_positives) == 2
    tags = {r.tokens[0]: r.techniques for r in res.rules}
    assert tags["schtasks"] == ["T1053.005"]


def test_cli_rules_sigma(bins: dict[str, Path], tmp_home: Path) -> None:
    db = tmp_home / "k.db"
    with Kinship(db) as k:
        for fam, names in FAMILIES.items():
            k.add([bins[n] for n in names], Labels(family=fam))
    group = click.Group("kinship")
    register(group)
    runner = CliRunner()
    out = tmp_home / "netsh.yml"
    res = runner.invoke(group, ["rules", "sigma", "netsh", "--db", str(db), "--json",
                                "--out", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["rules"] and all(r["validation"]["fp"] == 0 for r in d["rules"])
    assert d["n_members"] == 4 and d["n_other_samples"] == 3
    assert "firewall add portopening" in out.read_text(encoding="utf-8")
    missing = runner.invoke(group, ["rules", "sigma", "nosuch", "--db", str(db)])
    assert missing.exit_code != 0
