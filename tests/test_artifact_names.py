"""``kinship artifact``: file names that lie (double extensions, right-to-left override) and
strings that look like addresses but are identifiers or file names (Message-ID, Content-ID,
attachment names) kept out of the IOCs. Mails and zips are built here (email, pyzipper).
"""

from __future__ import annotations

import io
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
import pyzipper
from click.testing import CliRunner

from kinship.artifacts.analyze import analyze_file
from kinship.artifacts.filenames import name_tricks, printable
from kinship.artifacts.identifiers import known_ids, mask
from kinship.artifacts.model import ArtifactResult
from kinship.cli import main

EXE = b"MZ\x90\x00" + b"\x00" * 60 + b"not really a program"
RTLO_NAME = "invoice\u202efdp.exe"


def zipped(members: dict[str, bytes], password: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"encryption": pyzipper.WZ_AES} if password else {}
    with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_DEFLATED, **kwargs) as zf:
        if password:
            zf.setpassword(password)
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def message(body: str, attachments: dict[str, bytes], html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "HR <hr@aerocareers.com>"
    msg["To"] = "engineer@victim.example.org"
    msg["Subject"] = "Offer"
    msg["Date"] = "Wed, 01 Mar 2023 10:00:00 +0000"
    msg["Message-ID"] = "<CAF=7x+Yq@mail.relay-offers.com>"
    msg["In-Reply-To"] = "<prev.4411@mx.earlier-thread.net>"
    msg["References"] = "<root.1@refs-thread.org> <prev.4411@mx.earlier-thread.net>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg


def run(*args: str | Path) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


def techniques(res: ArtifactResult) -> dict[str, list[str]]:
    return {t.id: list(t.evidence) for t in res.all_techniques()}


# ---- names --------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kinds"), [
    ("offer.pdf.exe", ["double extension"]),
    ("cv.docx.scr", ["double extension"]),
    ("cv.docx            .scr", ["double extension"]),
    ("docs/Rechnung.PDF.EXE. ", ["double extension"]),
    ("scan.jpg.lnk", ["double extension"]),
    (RTLO_NAME, ["right-to-left override"]),
    ("photo\u202egpj.scr", ["right-to-left override"]),
    ("setup.exe", []),
    ("archive.tar.gz", []),
    ("report.2023.exe", []),
    ("offer.pdf", []),
    ("résumé.docx", []),
])
def test_name_tricks(name: str, kinds: list[str]) -> None:
    assert [t.kind for t in name_tricks(name)] == kinds


def test_rtlo_shown_name_and_escaping() -> None:
    (t,) = name_tricks(RTLO_NAME)
    assert t.shown == "invoiceexe.pdf" and t.real_extension == "exe" and t.runs
    assert "\u202e" not in t.describe() and "invoice\\u202efdp.exe" in t.describe()
    assert printable("a\x1bb\u200bc") == "a\\x1bb\\u200bc"


def test_double_extensions_flagged_with_evidence(tmp_path: Path, tmp_home: Path) -> None:
    msg = message("CV and offer attached.", {
        "cv.docx.scr": EXE, RTLO_NAME: EXE, "setup.exe": EXE,
        "bundle.zip": zipped({"offer.pdf.exe": EXE, "notes.txt": b"hello"})})
    path = tmp_path / "offer.eml"
    path.write_bytes(msg.as_bytes())
    res = analyze_file(path)
    t = techniques(res)
    assert set(t) >= {"T1204.002", "T1036.007", "T1036.002", "T1566.001"}
    double = t["T1036.007"]
    assert any(e.startswith(f"{path}: attachment: double extension: 'cv.docx.scr'")
               for e in double)
    assert any(e.startswith("bundle.zip: zip member: double extension: 'offer.pdf.exe'")
               for e in double)
    assert not any("setup.exe" in e or "notes.txt" in e for ev in t.values() for e in ev
                   if "double extension:" in e or "override:" in e)
    assert any("shown as 'invoiceexe.pdf'" in e for e in t["T1036.002"])
    user = t["T1204.002"]
    assert any("cv.docx.scr" in e for e in user) and any("offer.pdf.exe" in e for e in user)
    assert any("invoice\\u202efdp.exe" in e for e in user)
    doc = json.loads(json.dumps(res.to_dict()))
    assert ArtifactResult.from_dict(doc) == res


def test_double_extension_in_a_zip_that_stays_locked(tmp_path: Path, tmp_home: Path) -> None:
    msg = message("see attached", {"docs.zip": zipped({"Invoice.pdf.exe": EXE}, b"unknown!")})
    path = tmp_path / "locked.eml"
    path.write_bytes(msg.as_bytes())
    res = analyze_file(path)
    z = next(n for n in res.walk() if n.kind == "zip")
    assert z.archive is not None and not z.archive.opened and z.children == []
    evidence = techniques(res)["T1036.007"]
    assert any("zip member (AES-256-encrypted, not opened): double extension: "
               "'Invoice.pdf.exe'" in e for e in evidence)
    code, out = run("artifact", path)
    assert code == 0 and "T1036.007" in out and "Invoice.pdf.exe" in out


# ---- identifiers and file names are not IOCs ----------------------------------------------
BODY = """Please open Rechnung.zip and run setup.exe from it.
Contact boss@evil-corp.net or download http://files.evil-cdn.net/Rechnung.zip
Saved to C:\\Users\\clerk\\Downloads\\Rechnung.zip
[inline image <part1.06090408.01060107@cid-host.net>, thread <prev.4411@mx.earlier-thread.net>]

-----Original Message-----
From: old@earlier-thread.net
Message-ID: <zz99.1@mx.evil-corp.net>
> In-Reply-To: <a1@quoted-reply.org>
References: <r1@first-ref.org>
 <r2@second-ref.org>
"""
HTML = ('<html><body><img src="cid:part1.06090408.01060107@cid-host.net">'
        '<a href="cid:att.9@cidlink-host.net">open</a> see <b>Rechnung.zip</b></body></html>')


def test_message_and_content_ids_and_file_names_are_not_iocs(tmp_path: Path,
                                                            tmp_home: Path) -> None:
    msg = message(BODY, {"Rechnung.zip": zipped({"setup.exe": EXE})}, html=HTML)
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG\r\n", maintype="image", subtype="png",
                          cid="<part1.06090408.01060107@cid-host.net>")
    path = tmp_path / "m.eml"
    path.write_bytes(msg.as_bytes())
    res = analyze_file(path, filter_benign=False)
    got = {(i.type, i.value.lower()) for i in res.iocs}
    emails = {v for t, v in got if t == "email"}
    domains = {v for t, v in got if t == "domain"}
    # real addresses and domains are kept
    assert {"boss@evil-corp.net", "old@earlier-thread.net", "hr@aerocareers.com"} <= emails
    assert {"evil-corp.net", "files.evil-cdn.net", "earlier-thread.net"} <= domains
    assert ("url", "http://files.evil-cdn.net/rechnung.zip") in got
    assert any(t == "file_path" and "rechnung.zip" in v for t, v in got)
    # identifiers and names are not
    for fake in ("zz99.1@mx.evil-corp.net", "a1@quoted-reply.org", "r1@first-ref.org",
                 "r2@second-ref.org", "part1.06090408.01060107@cid-host.net",
                 "att.9@cidlink-host.net"):
        assert fake not in emails, fake
    for fake in ("mx.evil-corp.net", "quoted-reply.org", "first-ref.org", "second-ref.org",
                 "cid-host.net", "cidlink-host.net", "rechnung.zip", "setup.exe"):
        assert fake not in domains, fake


def test_mask_keeps_length_and_real_addresses() -> None:
    text = ("Message-ID: <x1@host-a.net>\nmail y@host-b.net about <k@host-c.net> and a.zip\n"
            "see cid:q@host-d.net, http://h.net/a.zip")
    masked = mask(text, known_ids(["<k@host-c.net>"]), {"a.zip"})
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "x1@host-a.net" not in masked and "k@host-c.net" not in masked
    assert "q@host-d.net" not in masked and "y@host-b.net" in masked
    assert "about" in masked and "and a.zip" not in masked and " and " in masked
    assert masked.endswith("http://h.net/a.zip")


def test_hostile_names_do_not_reach_the_terminal_raw(tmp_path: Path, tmp_home: Path) -> None:
    nasty = "\x1b[2J\x1b]8;;http://x\x07[/][bold red]cv.docx.scr"
    msg = message("hi", {nasty: EXE, RTLO_NAME: EXE})
    path = tmp_path / "m.eml"
    path.write_bytes(msg.as_bytes())
    code, out = run("artifact", path)
    assert code == 0, out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "[/][bold red]cv.docx.scr" in out and "invoice\\u202efdp.exe" in out
    assert "T1036.007" in out and "T1036.002" in out
