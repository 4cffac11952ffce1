"""One example of every result document that is not a match, built by hand with every field set
(nested documents, None and non-None optionals, floats that are rounded in the JSON).

``tests/data/documents_before.json`` holds their JSON as the hand-written ``to_dict`` methods
gave it before results became documents (issue #11); tests/test_documents.py checks that the
generic serialiser gives the same. Regenerate it only on purpose:
``python tests/document_examples.py`` rewrites it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from kinship.artifacts.model import (
    ArchiveInfo,
    ArtifactResult,
    Attribution,
    EmailInfo,
    Hop,
    Link,
    MacroFinding,
    MacroModule,
    OfficeInfo,
    PasswordCandidate,
    Relationship,
    Technique,
    ZipMember,
)
from kinship.evidence.compare import CompareResult, FunctionPair, ListingRow, SampleRef, Side
from kinship.evidence.hexdump import HexDump
from kinship.evidence.shared_strings import (
    FunctionRef,
    SharedStringRow,
    SharedStringsResult,
    StringInSample,
    StringSample,
)
from kinship.info import FunctionSummary, InfoResult
from kinship.ingest import Added, AddReport, Failure, Notice
from kinship.intel.actors import ActorProfile, Software
from kinship.intel.actors import Technique as ActorTechnique
from kinship.intel.capabilities import (
    CapabilitiesResult,
    Capability,
    Evidence,
    RuleSetStatus,
    TechniqueHit,
)
from kinship.intel.iocs import IOC, IOCResult, IOCSource
from kinship.match.result import (
    FamilyScore,
    FunctionMatch,
    MatchKind,
    MatchResult,
    QuerySample,
    Verdict,
    VerdictStatus,
)
from kinship.report.model import IntelReport, SampleIntel
from kinship.rules.sigma_gen import Evidence as SigmaEvidence
from kinship.rules.sigma_gen import SigmaResult, SigmaRule
from kinship.rules.sigma_validate import SigmaValidation
from kinship.rules.yara_gen import CodePattern, FamilyRule
from kinship.rules.yara_validate import HeldOut, LeaveOneOut, Validation
from kinship.sample_hashes import SampleHashes, SectionHash
from kinship.strings.similarity import SharedString, StringOccurrence

BEFORE = Path(__file__).resolve().parent / "data" / "documents_before.json"
SHA = "ab" * 32
SHA2 = "cd" * 32


def iocs() -> IOCResult:
    src = IOCSource("string", SHA, 0x1200, 0x401200, 0x401000, "http://evil.example/x")
    return IOCResult(
        iocs=[IOC("url", "http://evil.example/x", [src]),
              IOC("file_path", "C:\\Temp\\a.exe", [IOCSource("pdb", SHA)])],
        filtered=[IOC("domain", "microsoft.com", [src], ["microsoft"])])


def capabilities() -> CapabilitiesResult:
    ev = Evidence(0x401010, 0x401000, "sub_401000", ("api(CreateProcess)", 'substring("netsh")'))
    ev2 = Evidence(0x402010, None, None)
    return CapabilitiesResult(
        sha256=SHA, name="a.exe",
        capabilities=[Capability("create process", "host-interaction/process", "function",
                                 ["T1059"], ["Execution::Command [T1059]"], ["C0017"],
                                 [ev, ev2], "kinship")],
        techniques=[TechniqueHit("T1059", "Command and Scripting Interpreter", ["execution"],
                                 ["create process"], [ev, ev2])],
        n_rules=12, rules_source="kinship", seconds=1.234567, warnings=["w1"],
        rule_sets=[RuleSetStatus("kinship", "/x/rules", True, 12),
                   RuleSetStatus("capa-rules", None, False, 0, "no capa rules given",
                                 "not_given")],
        n_functions=40, n_library_functions=7, library_note=None)


def artifact() -> ArtifactResult:
    email = EmailInfo(
        subject="Offer", date="Mon, 1 Jan 2024", from_="a@x.example", to="b@y.example",
        reply_to="c@z.example", message_id="<1@x.example>", message_id_domain="x.example",
        received=[Hop(0, "mx.x", "mx.y", ("192.0.2.1",), "Mon, 1 Jan 2024")],
        auth={"spf": "fail"}, mismatches=["Reply-To differs from From"],
        links=[Link("http://evil.example/", "bank", "body:text/html", True)])
    office = OfficeInfo(
        "ole", metadata={"author": "me"}, has_macros=True,
        macros=[MacroModule("ThisDocument.cls", "VBA/ThisDocument", 120, SHA)],
        macro_findings=[MacroFinding("AutoExec", "AutoOpen", "runs on open")],
        external_relationships=[Relationship("word/_rels/settings.xml.rels",
                                             "attachedTemplate", "http://t.example/t.dotm")])
    archive = ArchiveInfo(True, True, [ZipMember("a.exe", 100, 80, "ZipCrypto")],
                          PasswordCandidate("Offer2018", "body:text/plain line 3"), 2, "")
    child = ArtifactResult(
        "a.exe", "pe", "zip member", 100, SHA2, "00" * 16,
        attribution=Attribution("matched", "", "fam", "Lazarus Group", 0.91, 0.5),
        techniques=[Technique("T1204.002", "Malicious File", ("executable in an archive",))],
        iocs=iocs().iocs, warnings=["w"])
    broken = ArtifactResult("b.bin", "other", "attachment", 3, SHA, "11" * 16,
                            error="cannot parse")
    return ArtifactResult(
        "m.eml", "email", "file", 1000, SHA, "22" * 16, content_type="message/rfc822",
        email=email, office=office, archive=archive, children=[child, broken],
        techniques=[Technique("T1566.001", "Spearphishing Attachment", ("zip attachment",))])


def info() -> InfoResult:
    return InfoResult(
        name="a.exe", sha256=SHA, sha1="ef" * 20, md5="01" * 16, size=4096, format="pe",
        arch="x86", image_base=0x400000, entry_point=0x401000, imphash="23" * 16,
        compile_time="2020-01-01T00:00:00Z", pdb_path=None,
        sections=[{"name": ".text", "va": 0x401000, "size": 512}],
        imports={"kernel32.dll": ["CreateProcessA"]}, exports=[{"name": "f", "va": 0x401000}],
        n_functions=1, n_instructions=10, discovery={"entry": 1},
        functions=[FunctionSummary(0x401000, "start", 10, 2, 40, "entry", ["CreateProcessA"])],
        warnings=[], seconds={"load": 0.01, "disasm": 0.02},
        similarity_hashes=SampleHashes("23" * 16, None, "T1AB", None, None, ["f"],
                                       [SectionHash(".text", "45" * 16, 512)]).to_dict())


def add_report() -> AddReport:
    return AddReport(
        added=[Added(SHA, "a.exe", "fam", 10, 1000), Added(SHA2, "b.exe", None, 2, 30)],
        duplicates=["c.exe"], failed=[Failure("d.exe", "not a PE", "InputError")],
        warnings=[Notice("e.exe", "symbolic link not followed", "symlink")],
        seconds=1.23456, cpu_seconds=2.5)


def empty_add_report() -> AddReport:
    return AddReport()


def shared_strings() -> SharedStringsResult:
    dump = HexDump(0x8640, "6e657473682066697265", 0x8640, 0x8645)
    return SharedStringsResult(
        samples=[StringSample(SHA, "a.exe", "pe", "x86", "fam", "vt"),
                 StringSample(SHA2, "b.exe", "pe", "x64")],
        strings=[SharedStringRow("netsh firewall", 0.75, [
            StringInSample(SHA, 0x8640, 0x409240, ".rdata", "ascii",
                           [FunctionRef(0x401000, "sub_401000"), FunctionRef(0x401100)], dump),
            StringInSample(SHA2, None, None, None, "utf-16le")], True)],
        min_samples=2, seconds=0.123456)


def compare() -> CompareResult:
    rows = [ListingRow("same", Side(0x401000, "push ebp", "55"), Side(0x140001000, "push rbp",
                                                                     "55", None, None)),
            ListingRow("api", Side(0x401001, "call CreateProcessA", "e8", "CreateProcessA",
                                   None), None),
            ListingRow("gap", None, Side(0x140001001, "nop", "90", None, "text"))]
    pair = FunctionPair(0x401000, 0x140001000, "f", None, 0.8, "code", 10, 12,
                        ["CreateProcessA"], ["netsh"], 0.5, False, None, rows)
    return CompareResult(SampleRef(SHA, "a.exe", "pe", "x86", 3, "fam", "vt", "Lazarus Group",
                                   "2016"),
                         SampleRef(SHA2, "b.exe", "pe", "x64", 4), [pair], 0.62, 0.25)


def sample_hashes() -> SampleHashes:
    return SampleHashes("23" * 16, "67" * 16, "T1AB", "3:abc:def", "C:\\x.pdb", ["f", "g"],
                        [SectionHash(".text", "45" * 16, 512)])


def shared_string() -> SharedString:
    q = StringOccurrence(SHA, "a.exe", None, None, 0x8640, 0x409240, ".rdata", "ascii",
                         (0x401000,))
    r = StringOccurrence(SHA2, "b.exe", "fam", "vt", None, None, None, "utf-16le")
    return SharedString("netsh firewall", 0.75, q, ("fam",), (r,))


def actor() -> ActorProfile:
    return ActorProfile(
        "Lazarus Group", "lazarus", ["Hidden Cobra"], "KP", "G0032", "Lazarus Group", "desc",
        [ActorTechnique("T1059", "Command and Scripting Interpreter", ("execution",))],
        [Software("S0001", "tool", "malware")], ["https://ref.example/"], "uuid-1")


def yara_rule() -> FamilyRule:
    code = [CodePattern("x86", "55 89 E5 ?? 8B 45 08", 0x401000, "f", SHA)]
    val = Validation([SHA], [SHA2], [], 5)
    loo = LeaveOneOut([HeldOut(SHA, True, "fam_1", 1), HeldOut(SHA2, False, None, 1, "none")],
                      1)
    group = FamilyRule("fam", "fam_1", "rule fam_1 {}", ["s"], code, val, [], [SHA])
    return FamilyRule("fam", "fam", "rule fam {}", ["netsh", "x"], code, val, ["y"], [SHA, SHA2],
                      loo, [group], [SHA2])


def yara_rule_bare() -> FamilyRule:
    return FamilyRule("fam", "fam", "rule fam {}", [], [])


def sigma_result() -> SigmaResult:
    val = SigmaValidation([SHA], [], ["an issue"], "SELECT 1")
    rule = SigmaRule("fam", "id-1", "process_creation", ("netsh", "firewall"), ["T1562.004"],
                     "title: x\n", [SigmaEvidence(SHA, "netsh firewall", 0x8640),
                                    SigmaEvidence(SHA2, "x", None)], val)
    dropped = SigmaRule("fam", "id-2", "registry_set", ("hklm",), [], "title: y\n", [])
    return SigmaResult("fam", "Lazarus Group", 2, 5, [rule], [dropped])


def match() -> MatchResult:
    return MatchResult(
        QuerySample(SHA),
        Verdict("fam", "Lazarus Group", 0.9, 0.6, VerdictStatus.ATTRIBUTED, "because"),
        families=(FamilyScore("fam", "Lazarus Group", 0.6, 3, 0.5),),
        function_matches=(
            FunctionMatch(0x401000, "f", SHA2, 0x140001000, None, "fam", 0.9, MatchKind.CODE,
                          False),
            FunctionMatch(0x401100, None, SHA2, 0x140001100, None, None, 1.0,
                          MatchKind.EXACT, True, "msvcrt")),
        n_query_functions=5, n_considered_functions=4)


def intel_report() -> IntelReport:
    sample = SampleIntel(
        SHA, "01" * 16, "ef" * 20, "a.exe", "pe", "x86", 4096, 5, match=match(),
        capabilities=capabilities(), iocs=iocs().iocs, filtered_iocs=iocs().filtered,
        shared_strings=[{"text": "netsh", "weight": 0.5}], listing={"pair": {"score": 0.9}},
        coverage=[{"family": "fam", "share": 0.5}], references=[{"sha256": SHA2}],
        stored={"family": "fam"})
    bare = SampleIntel(SHA2, "02" * 16, "fe" * 20, "b.exe", "elf", "x64", 100, 0)
    return IntelReport(
        "Report", "2024-01-01T00:00:00Z", [sample, bare], family="fam", actor=actor(),
        yara_rules=[yara_rule().to_dict()], lang="ja", warnings=["w"],
        sigma_rules=[sigma_result().rules[0].to_dict()], rule_notes=[{"note": "n"}],
        n_family_samples=2, n_other_samples=5)


# name -> builder; every document type and the parts that have their own to_dict
EXAMPLES = {
    "iocs": iocs, "capabilities": capabilities, "artifact": artifact, "info": info,
    "add_report": add_report, "empty_add_report": empty_add_report,
    "shared_strings": shared_strings, "compare": compare, "sample_hashes": sample_hashes,
    "shared_string": shared_string, "actor": actor, "yara_rule": yara_rule,
    "yara_rule_bare": yara_rule_bare, "sigma_result": sigma_result,
    "intel_report": intel_report,
}


def as_json(doc: Any) -> Any:
    """``doc`` through a JSON text and back (what a command prints, as data)."""
    return json.loads(json.dumps(doc, default=str))


def jsons() -> dict[str, Any]:
    """Every example's JSON (``to_dict``), through a JSON text."""
    return {name: as_json(build().to_dict()) for name, build in EXAMPLES.items()}


if __name__ == "__main__":
    BEFORE.write_text(json.dumps(jsons(), indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {BEFORE}\n")
