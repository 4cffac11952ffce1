"""``kinship artifact``: encrypted zips opened with the password the mail states (or
``--password``), which password and which line recorded; locked zips still listed.

Inputs are built here: mails with email.message, AES zips with pyzipper and ZipCrypto zips
with :func:`zipcrypto` below (the standard library reads ZipCrypto but cannot write it).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest
import pyzipper
from click.testing import CliRunner

from kinship.artifacts.analyze import analyze_file
from kinship.artifacts.model import ArtifactResult, PasswordCandidate
from kinship.artifacts.passwords import candidates, passwords_in_text
from kinship.cli import main

EXE = b"MZ\x90\x00" + b"\x00" * 60 + b"not really a program"


# ---- inputs -------------------------------------------------------------------------------
def _crc_step(crc: int, byte: int) -> int:
    return zlib.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def zipcrypto(members: dict[str, bytes], password: bytes, header: bytes | None = None) -> bytes:
    """A stored (uncompressed) zip with traditional PKWARE encryption (APPNOTE 6.1).
    ``header``: the 11 random bytes of the encryption header (os.urandom by default)."""
    out = io.BytesIO()
    central: list[bytes] = []
    for name, data in members.items():
        keys = [0x12345678, 0x23456789, 0x34567890]

        def update(p: int, k: list[int] = keys) -> None:
            k[0] = _crc_step(k[0], p)
            k[1] = ((k[1] + (k[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k[2] = _crc_step(k[2], k[1] >> 24)

        for b in password:
            update(b)
        crc = zlib.crc32(data)
        plain = (header if header is not None else os.urandom(11)) + bytes([crc >> 24]) + data
        cipher = bytearray()
        for p in plain:
            t = (keys[2] | 2) & 0xFFFF
            cipher.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            update(p)
        raw = name.encode("utf-8")
        flags = 0x1 | 0x800  # encrypted, UTF-8 name
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, 0, 0, 0x21, crc,
                              len(cipher), len(data), len(raw), 0) + raw + bytes(cipher))
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, flags, 0, 0,
                                   0x21, crc, len(cipher), len(data), len(raw), 0, 0, 0, 0, 0,
                                   offset) + raw)
    start = out.tell()
    cd = b"".join(central)
    out.write(cd + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(central), len(central),
                               len(cd), start, 0))
    return out.getvalue()


def aes_zip(members: dict[str, bytes], password: bytes) -> bytes:
    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password)
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def mail(path: Path, body: str, attachments: dict[str, bytes], html: str | None = None,
         subject: str = "Invoice") -> Path:
    msg = EmailMessage()
    msg["From"] = "Accounts <billing@invoice-portal-secure.net>"
    msg["To"] = "clerk@victim.example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 05 Mar 2018 09:00:00 +0000"
    msg["Message-ID"] = "<20180305090000.1@invoice-portal-secure.net>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="zip", filename=name)
    path.write_bytes(msg.as_bytes())
    return path


def run(*args: str | Path) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


def the_zip(res: ArtifactResult) -> ArtifactResult:
    return next(n for n in res.walk() if n.kind == "zip")


def roundtrips(res: ArtifactResult) -> None:
    doc = json.loads(json.dumps(res.to_dict()))
    assert ArtifactResult.from_dict(doc) == res and doc == res.to_dict()


# ---- the helper writes what zipfile reads ------------------------------------------------
def test_zipcrypto_helper_is_read_by_zipfile() -> None:
    blob = zipcrypto({"a.txt": b"hello"}, b"pw")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.read("a.txt", pwd=b"pw") == b"hello"
        with pytest.raises(RuntimeError):
            zf.read("a.txt", pwd=b"not-it")


# ---- finding passwords in text ------------------------------------------------------------
@pytest.mark.parametrize(("line", "password"), [
    ("The password is: Offer2018", "Offer2018"),
    ("pwd: x", "x"),
    ("Passwort: Rechnung#44", "Rechnung#44"),
    ("Das Passwort lautet: geheim2023.", "geheim2023"),
    ("password for the archive - abc123", "abc123"),
    ('Password: "Offer 2018"', "Offer 2018"),
    ("PASSWORD = 'q1w2e3'", "q1w2e3"),
    ("The password is Spring24!", "Spring24!"),
    ("Password:\n   nextline99", "nextline99"),
    ("le mot de passe est : soleil", "soleil"),
    ("Kennwort: «Ab Cd»", "Ab Cd"),
    ("Password:\xa0Nbsp-77", "Nbsp-77"),
    ("> pw = quoted.reply", "quoted.reply"),
])
def test_password_phrasings(line: str, password: str) -> None:
    found = [c.password for c in passwords_in_text(f"Hello,\n{line}\nRegards", "m: body")]
    assert password in found
    src = passwords_in_text(f"Hello,\n{line}\n", "m.eml: body:text/plain")[0].source
    assert src.startswith("m.eml: body:text/plain line 2: ")


@pytest.mark.parametrize("text", ["This is a password-protected archive.",
                                  "passwords are required by policy", "no secret here",
                                  "Password: none"])
def test_no_password_in_ordinary_sentences(text: str) -> None:
    assert passwords_in_text(text, "x") == []


def test_candidates_order_and_bounds() -> None:
    opt = [PasswordCandidate("a", "option"), PasswordCandidate("infected", "option")]
    body = [PasswordCandidate("b", "m: body line 1"), PasswordCandidate("a", "m: body line 2")]
    got = candidates(opt, body)
    assert [(c.password, c.source) for c in got] == [
        ("infected", "default"), ("a", "option"), ("b", "m: body line 1")]
    many = passwords_in_text("\n".join(f"password: p{i}" for i in range(5000)), "x")
    assert 0 < len(many) <= 16


# ---- end to end ---------------------------------------------------------------------------
def test_aes_zip_opened_with_the_body_password(tmp_path: Path, tmp_home: Path) -> None:
    blob = aes_zip({"Invoice_4471.exe": EXE}, b"Offer2018")
    eml = mail(tmp_path / "invoice.eml", "Dear customer,\nplease find the invoice attached.\n"
               "The password is: Offer2018\n", {"Invoice_4471.zip": blob})
    res = analyze_file(eml)
    z = the_zip(res)
    assert z.archive is not None and z.archive.encrypted and z.archive.opened
    assert z.archive.password == PasswordCandidate(
        "Offer2018", f"{eml}: body:text/plain line 3: 'The password is: Offer2018'")
    assert z.archive.tried == 2  # "infected" first, then the body's
    assert z.archive.members[0].name == "Invoice_4471.exe"
    assert z.archive.members[0].encryption.startswith("AES")
    assert [(c.name, c.kind) for c in z.children] == [("Invoice_4471.exe", "pe")]
    roundtrips(res)
    code, out = run("artifact", eml)
    assert code == 0, out
    assert "opened with password 'Offer2018'" in out and "line 3" in out


def test_zipcrypto_zip_opened_with_password_from_html_part(tmp_path: Path,
                                                           tmp_home: Path) -> None:
    blob = zipcrypto({"scan_0093.exe": EXE}, b"Kx-2210")
    html = ("<html><body><p>Your scan is attached.</p>"
            "<p><b>Passwort:</b> <span>Kx-2210</span></p></body></html>")
    eml = mail(tmp_path / "scan.eml", "Your scan is attached.", {"scan.zip": blob}, html=html)
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and z.archive.opened
    assert z.archive.password is not None and z.archive.password.password == "Kx-2210"
    assert "body:text/html" in z.archive.password.source
    assert z.archive.members[0].encryption == "ZipCrypto"
    assert z.children[0].kind == "pe" and z.children[0].size == len(EXE)


def test_default_password_still_comes_first(tmp_path: Path, tmp_home: Path) -> None:
    blob = aes_zip({"a.exe": EXE}, b"infected")
    eml = mail(tmp_path / "m.eml", "pwd: something-else", {"a.zip": blob})
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and z.archive.password is not None
    assert (z.archive.password.password, z.archive.password.source) == ("infected", "default")
    assert z.archive.tried == 1


def test_wrong_passwords_only_lists_members_and_says_so(tmp_path: Path,
                                                        tmp_home: Path) -> None:
    blob = aes_zip({"docs/Rechnung.pdf.exe": EXE, "readme.txt": b"x"}, b"real-one")
    eml = mail(tmp_path / "m.eml", "The password is: wrong-one\npwd: also-wrong",
               {"Rechnung.zip": blob})
    res = analyze_file(eml, passwords=["guess"])
    z = the_zip(res)
    assert z.archive is not None and z.archive.encrypted and not z.archive.opened
    assert z.archive.password is None and z.archive.tried == 4
    assert [m.name for m in z.archive.members] == ["docs/Rechnung.pdf.exe", "readme.txt"]
    assert "content not analysed" in z.archive.note and z.children == [] and z.error is None
    roundtrips(res)
    code, out = run("artifact", eml, "--password", "guess")
    assert code == 0, out
    assert "content could not be opened" in out
    assert "docs/Rechnung.pdf.exe" in out and "readme.txt" in out


def test_password_option_cli_and_api(tmp_path: Path, tmp_home: Path) -> None:
    blob = zipcrypto({"tool.exe": EXE}, b"from-analyst")
    eml = mail(tmp_path / "m.eml", "see attached", {"tool.zip": blob})
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and not z.archive.opened
    z = the_zip(analyze_file(eml, passwords=["x", "from-analyst"]))
    assert z.archive is not None and z.archive.password == PasswordCandidate("from-analyst",
                                                                             "option")
    code, out = run("artifact", eml, "--password", "x", "--password", "from-analyst", "--json")
    assert code == 0, out
    archive = json.loads(out)["artifacts"][0]["children"][0]["archive"]
    assert archive["password"] == {"password": "from-analyst", "source": "option"}
    assert archive["opened"] is True


def test_password_of_outer_mail_opens_zip_in_forwarded_mail(tmp_path: Path,
                                                           tmp_home: Path) -> None:
    inner = EmailMessage()
    for k, v in (("From", "a@sender-mail.net"), ("To", "b@c.org"), ("Subject", "orig"),
                 ("Date", "Mon, 05 Mar 2018 09:00:00 +0000")):
        inner[k] = v
    inner.set_content("archive attached")
    inner.add_attachment(aes_zip({"x.exe": EXE}, b"fwd-pass"), maintype="application",
                         subtype="zip", filename="x.zip")
    outer = EmailMessage()
    for k, v in (("From", "d@fwd-mail.net"), ("To", "e@c.org"), ("Subject", "Fwd: orig"),
                 ("Date", "Mon, 05 Mar 2018 10:00:00 +0000")):
        outer[k] = v
    outer.set_content("forwarding; password: fwd-pass")
    outer.add_attachment(inner)
    path = tmp_path / "fwd.eml"
    path.write_bytes(outer.as_bytes())
    z = the_zip(analyze_file(path))
    assert z.archive is not None and z.archive.password is not None
    assert z.archive.password.source.startswith(f"{path}: body:text/plain line 1")


def test_zipcrypto_false_positive_header_check_is_not_taken(tmp_path: Path,
                                                            tmp_home: Path) -> None:
    """A wrong ZipCrypto password passes the one-byte header check once in 256; the right one,
    stated later in the body, must still open the zip (the CRC decides)."""
    payload = EXE + bytes(range(256)) * 400  # past the reader's buffer: the CRC comes last
    blob = zipcrypto({"payload.exe": payload}, b"right-pass", header=b"\x07" * 11)
    decoy = None
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for i in range(20_000):
            try:
                zf.open("payload.exe", pwd=f"w{i}".encode()).close()
            except RuntimeError:
                continue
            decoy = f"w{i}"
            break
    assert decoy is not None
    eml = mail(tmp_path / "m.eml", f"password: {decoy}\npassword: right-pass",
               {"p.zip": blob})
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and z.archive.password is not None
    assert z.archive.password.password == "right-pass"
    assert z.children[0].size == len(payload)


def test_hostile_password_line_reaches_terminal_escaped(tmp_path: Path,
                                                        tmp_home: Path) -> None:
    """The password (and its line) carries an ANSI sequence and rich markup: it must open the
    zip, not crash the renderer, and never reach the terminal raw."""
    password = "\x1b[31mred[/]\x1b]0;pwned\x07"
    blob = aes_zip({"\x1b[2Jname[/bold].exe": EXE}, password.encode())
    eml = mail(tmp_path / "m.eml", f"Password: {password}\n[/][bold red]fake[/]", {"z.zip": blob})
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and z.archive.password is not None
    assert z.archive.password.password == password
    code, out = run("artifact", eml)
    assert code == 0, out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred[/]" in out  # shown escaped, markup literal
    assert "\\x1b[2Jname[/bold].exe" in out
    code, out = run("artifact", eml, "--json")
    assert code == 0 and "\x1b" not in out


def test_top_level_locked_zip_is_listed_not_an_error(tmp_path: Path, tmp_home: Path) -> None:
    path = tmp_path / "sample.zip"
    path.write_bytes(aes_zip({"a.exe": EXE, "b.dll": EXE}, b"not-infected"))
    code, out = run("artifact", path, "--json")
    assert code == 0, out
    archive = json.loads(out)["artifacts"][0]["archive"]
    assert archive["opened"] is False and [m["name"] for m in archive["members"]] == [
        "a.exe", "b.dll"]
    assert archive["tried"] == 1


def test_mixed_zip_plain_members_read_when_locked_ones_stay_shut(tmp_path: Path,
                                                                tmp_home: Path) -> None:
    """A plain member, then a ZipCrypto one that no candidate opens: the plain one is still
    analysed, the reader's stop is a warning."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", b"open me first")
    plain = buf.getvalue()
    locked = zipcrypto({"payload.exe": EXE}, b"secret")
    # splice both into one archive: local headers, then one central directory
    local_plain = plain[: plain.rindex(b"PK\x01\x02")]
    cd_plain = plain[plain.rindex(b"PK\x01\x02"): plain.rindex(b"PK\x05\x06")]
    local_locked = locked[: locked.rindex(b"PK\x01\x02")]
    cd_locked = bytearray(locked[locked.rindex(b"PK\x01\x02"): locked.rindex(b"PK\x05\x06")])
    struct.pack_into("<I", cd_locked, 42, len(local_plain))  # its local header moved
    cd = cd_plain + bytes(cd_locked)
    blob = (local_plain + local_locked + cd
            + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 2, 2, len(cd),
                          len(local_plain) + len(local_locked), 0))
    eml = mail(tmp_path / "m.eml", "see attached", {"mixed.zip": blob})
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and not z.archive.opened
    assert [(m.name, m.encryption) for m in z.archive.members] == [
        ("readme.txt", ""), ("payload.exe", "ZipCrypto")]
    assert [c.name for c in z.children] == ["readme.txt"]
    assert any("zip read stopped" in w for w in z.warnings)


def test_shared_zip_limits_still_apply(tmp_path: Path, tmp_home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from kinship.binary import limits as binary_limits

    blob = aes_zip({"a.exe": EXE, "b.exe": EXE}, b"infected")
    eml = mail(tmp_path / "m.eml", "see attached", {"two.zip": blob})
    monkeypatch.setattr(binary_limits, "MAX_ZIP_MEMBERS", 1)
    z = the_zip(analyze_file(eml))
    assert z.error is not None and "limit is 1" in z.error
    monkeypatch.undo()
    monkeypatch.setattr(binary_limits, "MAX_FILE_SIZE", 10)  # both members are larger
    z = the_zip(analyze_file(eml))
    assert z.archive is not None and z.archive.opened and z.children == []
