"""Exports: the STIX bundle validates, the MISP event round-trips, Navigator and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string

from conftest import skip_or_fail
from kinship.api import report as build_report
from kinship.export.csv_iocs import to_csv
from kinship.export.misp import to_misp_event
from kinship.export.navigator import to_layer
from kinship.export.stix import to_bundle
from kinship.intel.iocs import iocs_from_text
from kinship.report.build import ReportOptions
from kinship.report.model import IntelReport
from kinship.rules.yara_gen import generate_family_rule
from kinship.rules.yara_validate import sha256_file


@pytest.fixture(scope="module")
def report(bins: dict[str, Path], shared_dir: Path | None) -> IntelReport:
    rules = shared_dir / "data/capa-rules" if shared_dir is not None else None
    if rules is None or not rules.is_dir():
        skip_or_fail("../shared/data/capa-rules is not here")
    paths = [bins["netsh_x86.exe"], bins["netsh_x64.exe"]]
    rule = generate_family_rule("netsh", {sha256_file(p): p for p in paths},
                                {sha256_file(bins["other_x64.exe"]): bins["other_x64.exe"]})
    assert rule is not None
    r = build_report(paths, ReportOptions(capa_rules=rules, actor="Hidden Cobra"),
                     yara_rules=[rule.to_dict()])
    r.samples[0].iocs.extend(iocs_from_text(
        "c2 hxxp://update[.]example-cdn[.]net/gate.php").iocs)
    return r


def test_stix_bundle_validates(report: IntelReport) -> None:
    text = to_bundle(report).serialize(pretty=True)
    result = validate_string(text, ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    objs = json.loads(text)["objects"]
    types = {o["type"] for o in objs}
    assert {"malware", "intrusion-set", "attack-pattern", "indicator", "relationship",
            "report"} <= types
    assert any(o["type"] == "indicator" and o["pattern_type"] == "yara" for o in objs)
    assert any(o["type"] == "attack-pattern" and any(
        r.get("external_id") == "T1562.004" for r in o["external_references"]) for o in objs)


def test_misp_event_roundtrips(report: IntelReport) -> None:
    event = to_misp_event(report)
    again = MISPEvent()
    again.load(event.to_json())
    assert again.info == event.info
    assert {(a.type, a.value) for a in again.attributes} == \
        {(a.type, a.value) for a in event.attributes}
    assert {t.name for t in again.tags} == {t.name for t in event.tags}
    assert 'misp-galaxy:threat-actor="Lazarus Group"' in {t.name for t in again.tags}
    assert len(again.objects) == len(report.samples)
    assert ("url", "http://update.example-cdn.net/gate.php") in {
        (a.type, a.value) for a in again.attributes}


def test_navigator_layer(report: IntelReport) -> None:
    layer = to_layer(report)
    ids = {t["techniqueID"]: t for t in layer["techniques"]}
    assert ids["T1562.004"]["score"] == 2
    assert layer["domain"] == "enterprise-attack"
    json.dumps(layer)


def test_csv(report: IntelReport) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert any(r["value"] == "http://update.example-cdn.net/gate.php" for r in rows)
    assert all(r["type"] and r["defanged"] for r in rows)


def test_csv_records_match_csv(report: IntelReport) -> None:
    from kinship.export.csv_iocs import to_records

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert to_records(report) == rows


def _cli(*args: str | Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from kinship.cli import main

    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


def test_cli_intel_commands_use_db_and_json(bins: dict[str, Path], tmp_path: Path) -> None:
    """--db annotates iocs/capabilities/actor output with the store's labels; export --json
    prints JSON for every format (csv: a list of row objects)."""
    db = tmp_path / "k.db"
    sample = bins["netsh_x86.exe"]
    code, out = _cli("add", sample, "--family", "netsh", "--actor", "Hidden Cobra",
                     "--source", "Vendor 2016", "--db", db, "--json")
    assert code == 0, out
    code, out = _cli("iocs", sample, "--db", db, "--json")
    assert code == 0, out
    doc = json.loads(out)["files"][0]
    assert doc["stored_labels"]["family"] == "netsh" and len(doc["sha256"]) == 64
    code, out = _cli("iocs", bins["other_x86.exe"], "--db", db)
    assert code == 0 and "not in the store" in out
    # a --db that does not exist is not created
    code, out = _cli("iocs", sample, "--db", tmp_path / "none.db", "--json")
    assert code == 0 and json.loads(out)["files"][0]["stored_labels"] is None
    assert not (tmp_path / "none.db").exists()
    code, out = _cli("actor", "APT38", "--db", db, "--json")
    assert code == 0, out
    actor = json.loads(out)
    assert actor["name"] == "Lazarus Group"
    # stored under an alias ("Hidden Cobra"; `add` may store the resolved name): found by APT38
    assert [s["family"] for s in actor["stored_samples"]] == ["netsh"]
    assert actor["stored_samples"][0]["actor_label"] in ("Hidden Cobra", "Lazarus Group")
    for fmt in ("stix", "misp", "navigator", "csv"):
        code, out = _cli("export", fmt, bins["netsh_x64.exe"], "--db", db, "--json")
        assert code == 0, (fmt, out)
        doc = json.loads(out)
        assert isinstance(doc, list if fmt == "csv" else dict), fmt
