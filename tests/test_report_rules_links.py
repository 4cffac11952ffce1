"""The report carries the family's validated YARA and Sigma rules, the reference samples'
provenance, the sample -> reference link (also in STIX), kinship's own ATT&CK rules without
capa rules, and verdicts worded for people (issue #9 sections 3 and 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from stix2validator import ValidationOptions, validate_string

from kinship.api import write_report
from kinship.export.stix import to_bundle
from kinship.render.verdict import confidence_text, verdict_view
from kinship.report.build import ReportOptions, render
from kinship.report.model import IntelReport


@pytest.fixture(scope="module")
def case(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[IntelReport, dict[str, Path]]:
    """The issue's case: the 2016 x86 build (and an ELF port) stored under the actor, the
    x64 rebuild attributed; unrelated programs stored; no capa rules."""
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    mp = pytest.MonkeyPatch()
    mp.delenv("KINSHIP_CAPA_RULES", raising=False)
    tmp = tmp_path_factory.mktemp("report-case")
    try:
        with Kinship(tmp / "k.db") as k:
            k.add([bins["netsh_x86.exe"]], Labels(family="netsh", actor="APT38",
                                                  source="Vendor 2016", first_seen="2016-03"))
            k.add([bins["netsh_elf64"]], Labels(family="netsh", actor="APT38",
                                                source="Vendor 2017", first_seen="2017-01"))
            k.add([bins["other_x86.exe"]], Labels(family="other", source="Goodware"))
            k.add([bins["other_elf64"]], Labels(family="other"))
            report = k.report([bins["netsh_x64.exe"]], ReportOptions())
        files = write_report(report, tmp / "out")
    finally:
        mp.undo()
    return report, files


def test_verdict_and_references_with_provenance(case: tuple[IntelReport, dict[str, Path]],
                                                bins: dict[str, Path]) -> None:
    report, files = case
    s = report.samples[0]
    assert s.verdict is not None and s.verdict["family"] == "netsh"
    assert report.family == "netsh"
    refs = {r["name"]: r for r in s.references}
    x86 = refs["netsh_x86.exe"]
    assert x86["source"] == "Vendor 2016" and x86["first_seen"] == "2016-03"
    assert x86["family"] == "netsh" and x86["n_functions_matched"] > 0 and 0 < x86["score"] <= 1
    html = files["html"].read_text(encoding="utf-8")
    md = files["md"].read_text(encoding="utf-8")
    for text in (html, md):
        assert "Link to reference samples" in text
        assert "Vendor 2016" in text and "2016-03" in text and "Vendor 2017" in text
    # people read a rounded confidence; JSON keeps the engine's number
    conf = s.verdict["confidence"]
    cell = re.search(r'<td class="confidence">([^<]*)</td>', html)
    assert cell is not None and cell.group(1) == confidence_text(conf)
    assert not re.search(r"\b0\.\d{5,}", html) and not re.search(r"\b0\.\d{5,}", md)
    doc = json.loads(files["json"].read_text(encoding="utf-8"))
    assert doc["samples"][0]["verdict"]["confidence"] == conf


def test_report_has_validated_yara_and_sigma(case: tuple[IntelReport, dict[str, Path]]
                                             ) -> None:
    report, files = case
    assert report.yara_rules, report.rule_notes
    rule = report.yara_rules[0]
    v = rule["validation"]
    assert v["tpr"] == 1.0 and v["fpr"] == 0.0 and len(v["true_positives"]) == 2
    assert report.sigma_rules and report.n_family_samples == 2 and report.n_other_samples == 2
    assert all(r["validation"]["fp"] == 0 and r["validation"]["tp"] >= 1
               for r in report.sigma_rules)
    assert any("portopening" in " ".join(r["tokens"]) for r in report.sigma_rules)
    html = files["html"].read_text(encoding="utf-8")
    md = files["md"].read_text(encoding="utf-8")
    assert "YARA rules: none" not in md
    for text in (html, md):
        assert f"rule {rule['name']}" in text
        assert "detected 2 of 2 netsh samples (TPR 1.0)" in text
        assert "fired on 0 of 2 other samples (FPR 0.0)" in text
        assert "Sigma rules" in text and "not against real endpoint logs" in text
    assert html.count('class="sigma-rule"') == len(report.sigma_rules)
    yml = list(yaml.safe_load_all(files["sigma"].read_text(encoding="utf-8")))
    assert {d["id"] for d in yml} == {r["id"] for r in report.sigma_rules}
    assert files["yara0"].read_text(encoding="utf-8") == rule["text"]
    # tried on the analysed sample, which the rule was not made from
    hit = rule["analysed"]["netsh_x64.exe"]
    word = "matched" if hit else "not matched"
    assert f"On the analysed sample (not used to make the rule): netsh_x64.exe {word}" in md


def test_kinship_rules_ran_without_capa_rules(case: tuple[IntelReport, dict[str, Path]]
                                              ) -> None:
    report, files = case
    assert "T1562.004" in {t["id"] for t in report.techniques}
    sets = {s["name"]: s for s in report.rule_sets}
    assert sets["kinship"]["used"] and sets["kinship"]["n_rules"] >= 3
    assert not sets["capa-rules"]["used"]
    html = files["html"].read_text(encoding="utf-8")
    assert "T1562.004" in html and "Defense Evasion" in html
    assert "capa-rules</b>: not available" in html and "--capa-rules" in html
    m = re.search(r"netsh_x64\.exe: (\d+) of (\d+) functions were recognised as library code",
                  html)
    assert m is not None and 20 < int(m.group(1)) < int(m.group(2))  # the MinGW runtime
    caps = report.samples[0].capabilities
    assert caps is not None and caps.n_library_functions == int(m.group(1))


def _objects(report: IntelReport) -> list[dict[str, Any]]:
    text = to_bundle(report).serialize(pretty=True)
    result = validate_string(text, ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    objs: list[dict[str, Any]] = json.loads(text)["objects"]
    return objs


def test_stix_links_sample_to_reference_and_family(case: tuple[IntelReport, dict[str, Path]],
                                                   bins: dict[str, Path]) -> None:
    from kinship.rules.yara_validate import sha256_file

    report, _files = case
    objs = _objects(report)
    by_id = {o["id"]: o for o in objs}
    files = {o["hashes"]["SHA-256"]: o["id"] for o in objs if o["type"] == "file"}
    instance = {o["sample_refs"][0]: o for o in objs
                if o["type"] == "malware" and not o["is_family"]}
    query = instance[files[report.samples[0].sha256]]
    ref = instance[files[sha256_file(bins["netsh_x86.exe"])]]
    assert ref["first_seen"].startswith("2016-03-01") and "Vendor 2016" in ref["description"]
    family = next(o for o in objs if o["type"] == "malware" and o["is_family"]
                  and o["name"] == "netsh")
    rels = [o for o in objs if o["type"] == "relationship"]
    to_ref = next(r for r in rels if r["source_ref"] == query["id"]
                  and r["target_ref"] == ref["id"])
    x86 = next(r for r in report.samples[0].references if r["name"] == "netsh_x86.exe")
    assert to_ref["relationship_type"] == "variant-of"
    assert f"{x86['n_functions_matched']} shared functions" in to_ref["description"]
    assert f"score {x86['score']:.3f}" in to_ref["description"]
    conf = report.samples[0].verdict["confidence"]  # type: ignore[index]
    expected = 100 if conf >= 1 else min(99, round(100 * conf))
    assert to_ref["confidence"] == expected
    to_family = next(r for r in rels if r["source_ref"] == query["id"]
                     and r["target_ref"] == family["id"])
    assert to_family["relationship_type"] == "variant-of"
    assert to_family["confidence"] == expected
    assert by_id[ref["id"]]["name"] == "netsh_x86.exe"
    assert any(o["type"] == "indicator" and o["pattern_type"] == "sigma" for o in objs)
    assert any(o["type"] == "indicator" and o["pattern_type"] == "yara" for o in objs)


@pytest.mark.parametrize("status", ["weak", "unknown"])
def test_weak_and_unknown_verdicts_carry_no_confidence(
        case: tuple[IntelReport, dict[str, Path]], status: str) -> None:
    """A saved report re-rendered with a weak/unknown verdict: no confidence anywhere people
    read it, the reason shown, no variant-of claim in STIX."""
    report, _files = case
    d = json.loads(json.dumps(report.to_dict(), default=str))
    d["family"] = None
    d["samples"][0]["verdict"] = {
        "family": None, "actor": None, "confidence": None, "score": 0.123456789,
        "status": status, "reason": "only 2 small functions matched (41 instructions)",
        "candidate": "netsh" if status == "weak" else None, "candidate_actor": None}
    again = IntelReport.from_dict(d)
    for kind in ("html", "md"):
        text = render(again, kind)
        assert "only 2 small functions matched (41 instructions)" in text
        assert "0.12345" not in text
    html = render(again, "html")
    assert re.search(r'<td class="confidence">-</td>', html)
    summary = re.search(r'<td class="summary-family">([^<]*)</td>', html)
    assert summary is not None
    if status == "weak":
        assert "weak (not attributed)" in html and "leading candidate: netsh" in html
        assert summary.group(1) == "weak (not attributed); leading candidate: netsh"
    else:
        assert "unknown (no family in the store is close enough)" in html
        assert summary.group(1).startswith("unknown")
    objs = _objects(again)
    query_file = next(o["id"] for o in objs if o["type"] == "file"
                      and o["hashes"]["SHA-256"] == again.samples[0].sha256)
    query = next(o["id"] for o in objs if o["type"] == "malware"
                 and o.get("sample_refs") == [query_file])
    rels = [o for o in objs if o["type"] == "relationship" and o["source_ref"] == query]
    assert rels and all(r["relationship_type"] == "related-to" for r in rels)
    assert not any("confidence" in o for o in objs if o["type"] == "relationship")
    if status == "weak":  # the candidate family is linked, with the reason, not claimed
        assert any("leading candidate netsh" in r["description"] for r in rels)


def test_verdict_view_reads_old_and_new_verdicts() -> None:
    old_unknown = verdict_view({"family": None, "actor": None, "confidence": 0.999,
                                "score": 0.05})
    assert old_unknown.status == "unknown" and old_unknown.confidence is None
    old = verdict_view({"family": "lua", "actor": "X", "confidence": 0.99999999906,
                        "score": 0.4})
    assert old.status == "attributed" and old.confidence_text == ">0.99"
    weak = verdict_view({"family": None, "actor": None, "confidence": None, "score": 0.2,
                         "status": "weak", "reason": "thin", "candidate": "lua"})
    assert weak.status == "weak" and weak.candidate == "lua" and weak.confidence is None
    assert verdict_view(None).status == "none"
    assert [confidence_text(x) for x in (0.93, 0.934999, 1.0, 0.0, 0.001)] == \
        ["0.93", "0.93", "1.00", "0.00", "<0.01"]


def test_misp_event_carries_sigma_and_the_verdict(case: tuple[IntelReport, dict[str, Path]]
                                                  ) -> None:
    from pymisp import MISPEvent

    from kinship.export.misp import to_misp_event

    report, _files = case
    again = MISPEvent()
    again.load(to_misp_event(report).to_json())
    sigma = [a for a in again.attributes if a.type == "sigma"]
    assert len(sigma) == len(report.sigma_rules) > 0
    assert {a.value for a in sigma} == {r["text"].strip() for r in report.sigma_rules}
    view = verdict_view(report.samples[0].verdict)
    assert again.objects[0].comment == f"kinship verdict: netsh, confidence {view.confidence_text}"
