"""Exports: the STIX bundle validates, the MISP event round-trips, Navigator and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string

from kinship.export.csv_iocs import to_csv
from kinship.export.misp import to_misp_event
from kinship.export.navigator import to_layer
from kinship.export.stix import to_bundle
from kinship.intel.iocs import iocs_from_text
from kinship.report.build import IntelReport, ReportOptions, build_report
from kinship.rules.yara_gen import generate_family_rule
from kinship.rules.yara_validate import sha256_file


@pytest.fixture(scope="module")
def report(bins: dict[str, Path], shared_dir: Path | None) -> IntelReport:
    rules = shared_dir / "data/capa-rules" if shared_dir is not None else None
    if rules is None or not rules.is_dir():
        pytest.skip("../shared/data/capa-rules is not here")
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
