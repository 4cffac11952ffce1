"""``kinship artifact`` on hostile archives, Office documents and e-mails (issue #10, items 1,
3, 4 and 7 on the artifact side). Every input is built here.

The memory and CPU checks run the analysis in a child process under RLIMIT_AS (so that the
unfixed code fails there instead of taking the machine) and read the child's own peak RSS
(``ru_maxrss``) and CPU seconds.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kinship.artifacts import limits
from kinship.artifacts.analyze import analyze_file
from kinship.cli import main, register
from kinship.exceptions import EXIT_CODES, FileTooLargeError

if "artifact" not in main.commands:  # until cli.py calls register(main) itself
    register(main)

CONTENT_TYPES = ('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                 'package/2006/content-types"/>')
DOCUMENT = ('<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/'
            'main"><w:body><w:p><w:r><w:t>Invoice at http://pay-invoice-portal.net/x</w:t>'
            '</w:r></w:p></w:body></w:document>')
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MiB = 1024 * 1024
# What a hostile input may cost (issue #10: no input under 2 MB over 1 GiB or 10 s).
MAX_RSS_MB = 1024
MAX_CPU_S = 10.0
NOISE = bytes((i * 7919) % 251 for i in range(10_000))  # deflates to ~10 KB, not to 30 bytes


# ---- builders --------------------------------------------------------------------------------
def raw_zip(members: list[tuple[str, bytes]], compress: bool = True) -> bytes:
    """A zip of ``members``; each distinct content is deflated once (a zip of a hundred
    16 MiB parts is built in a second, not a minute)."""
    out, central = io.BytesIO(), io.BytesIO()
    cache: dict[int, tuple[bytes, int]] = {}
    for name, data in members:
        key = id(data)
        if key not in cache:
            if compress:
                c = zlib.compressobj(9, zlib.DEFLATED, -15)
                cache[key] = (c.compress(data) + c.flush(), zlib.crc32(data))
            else:
                cache[key] = (data, zlib.crc32(data))
        body, crc = cache[key]
        method = 8 if compress else 0
        fname = name.encode("utf-8")
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                              len(body), len(data), len(fname), 0) + fname + body)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                                  crc, len(body), len(data), len(fname), 0, 0, 0, 0, 0,
                                  offset) + fname)
    cd = central.getvalue()
    n = len(members)
    return out.getvalue() + cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd),
                                             out.tell(), 0)


def docx(parts: list[tuple[str, bytes]]) -> bytes:
    return raw_zip([("[Content_Types].xml", CONTENT_TYPES.encode()),
                    ("word/document.xml", DOCUMENT.encode()), *parts])


def damaged_deflate_zip() -> bytes:
    """A zip whose first member's deflate stream is garbage (zlib.error on reading)."""
    data = bytearray(raw_zip([("a.txt", b"hello world " * 1000)]))
    start = 30 + len("a.txt")
    for k in range(start + 2, start + 40):
        data[k] ^= 0x55
    return bytes(data)


def damaged(data: bytes, member: bytes) -> bytes:
    """``data`` with the deflate stream of ``member`` (its local header's copy) garbled."""
    out = bytearray(data)
    start = out.index(member) + len(member)
    for k in range(start + 2, start + 30):
        out[k] ^= 0x55
    return bytes(out)


def good_docx() -> bytes:
    return docx([])


def nested_rfc822(depth: int, inner: bytes) -> bytes:
    for i in range(depth):
        inner = (f"From: level{i}@sender.example\r\nTo: victim@example.org\r\n"
                 f"Subject: level {i}\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: message/rfc822\r\n\r\n").encode() + inner
    return inner


INNER_MAIL = (b"From: a@b.example\r\nTo: c@d.example\r\nSubject: innermost\r\n\r\n"
              b"see http://innermost-lure.net/x\r\n")


def nested_multipart(depth: int) -> bytes:
    head = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for i in reversed(range(depth)):
        b = b"B%d" % i
        body = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b
                + b"\r\n" + body + b"\r\n--" + b + b"--\r\n")
    return head + body


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def measured(path: Path, limit_gib: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
    """Analyse ``path`` in a child process under RLIMIT_AS: its peak RSS (MiB, VmHWM: not
    ru_maxrss, which keeps the forking test process's peak across exec), CPU seconds and
    either the result summary or the error."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({int(limit_gib * 2**30)},) * 2)
        from kinship.artifacts.analyze import analyze_file
        from kinship.exceptions import InputError
        out = {{}}
        try:
            r = analyze_file({str(path)!r})
            out["warnings"] = [w for n in r.walk() for w in n.warnings]
            out["children"] = len(r.children)
            out["iocs"] = [i.value for i in r.iocs]
        except InputError as e:
            out["error"] = type(e).__name__ + ": " + e.reason
        ru = resource.getrusage(resource.RUSAGE_SELF)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        out["rss_mb"] = int(hwm.split()[1]) / 1024
        out["cpu_s"] = ru.ru_utime + ru.ru_stime
        print(json.dumps(out))
    """)
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name}: still running after {timeout} s")
    assert p.returncode == 0, f"{path.name}: child failed:\n{p.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    print(path.name, {k: result[k] for k in ("rss_mb", "cpu_s")})
    assert result["rss_mb"] < MAX_RSS_MB, result
    assert result["cpu_s"] < MAX_CPU_S, result
    return result


# ---- item 1: one damaged file does not lose the batch ----------------------------------------
def test_batch_lists_damaged_files_and_reports_the_others(tmp_path: Path) -> None:
    bad_zip = tmp_path / "corrupt.zip"
    bad_zip.write_bytes(damaged_deflate_zip())
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(good_docx()[:-40])
    damaged_part = tmp_path / "damaged_part.docx"
    damaged_part.write_bytes(damaged(docx([("word/header1.xml", NOISE)]), b"header1.xml"))
    good = tmp_path / "good.docx"
    good.write_bytes(good_docx())
    code, out, err = run_cli("artifact", "--json", bad_zip, truncated, damaged_part, good)
    assert code == EXIT_CODES["partial_batch"], (out, err)
    doc = json.loads(out)
    assert [a["name"] for a in doc["artifacts"]] == [str(damaged_part), str(good)]
    assert any("word/header1.xml: unreadable part" in w
               for w in doc["artifacts"][0]["warnings"])
    for a in doc["artifacts"]:
        assert "pay-invoice-portal.net" in json.dumps(a["iocs"])
    failed = {Path(f["path"]).name: f for f in doc["failed"]}
    assert set(failed) == {"corrupt.zip", "truncated.docx"}
    assert failed["corrupt.zip"]["error"] == "CorruptFileError"
    assert "Error -3" in failed["corrupt.zip"]["reason"]  # zlib's reason, one line
    assert "\n" not in failed["corrupt.zip"]["reason"]


def test_damaged_member_inside_an_artifact_is_a_warning(tmp_path: Path) -> None:
    """A zip holding a good member then a damaged one, and a docx whose embedded object is
    damaged: the file is analysed, the good member kept, the damage a warning."""
    good_member = b"MZ" + bytes(200)
    path = tmp_path / "half.zip"
    path.write_bytes(damaged(raw_zip([("first.exe", good_member), ("second.txt", NOISE)]),
                             b"second.txt"))
    res = analyze_file(path)
    assert [c.name for c in res.children] == ["first.exe"]
    assert any("Error -3" in w for w in res.warnings), res.warnings

    path = tmp_path / "damaged_embedding.docx"
    path.write_bytes(damaged(docx([("word/embeddings/oleObject1.bin", OLE_MAGIC + NOISE)]),
                             b"oleObject1.bin"))
    res = analyze_file(path)
    assert res.error is None and res.kind == "ooxml"
    assert any("oleObject1.bin" in w and "unreadable part" in w for w in res.warnings)
    assert "pay-invoice-portal.net" in {i.value for i in res.iocs}


def test_damaged_zip_attached_to_a_mail_is_recorded_not_raised(tmp_path: Path) -> None:
    boundary = b"XX"
    mail = (b"From: a@b.example\r\nTo: c@d.example\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--XX\r\n"
            b"Content-Type: text/plain\r\n\r\npay at http://pay-invoice-portal.net/x\r\n"
            b"--XX\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=invoice.zip\r\n\r\n"
            + __import__("base64").encodebytes(damaged_deflate_zip()) + b"\r\n--XX--\r\n")
    path = tmp_path / "invoice.eml"
    path.write_bytes(mail)
    res = analyze_file(path)
    (att,) = res.children
    assert att.name == "invoice.zip" and att.error and "Error -3" in att.error
    assert any(w.startswith("invoice.zip: ") for w in res.warnings)


def test_failed_file_line_is_inert(tmp_path: Path) -> None:
    """A damaged file whose name holds ESC and rich markup: the error line shows them."""
    bad = tmp_path / "x\x1b]0;owned\x07[red]y.docx"
    bad.write_bytes(good_docx()[:-40])
    good = tmp_path / "good.docx"
    good.write_bytes(good_docx())
    code, _out, err = run_cli("artifact", bad, good)
    assert code == EXIT_CODES["partial_batch"]
    assert "\x1b" not in err and "\x07" not in err
    assert "x\\x1b]0;owned\\x07[red]y.docx" in err


# ---- item 4: Office documents cost bounded memory and CPU ------------------------------------
def test_docx_of_embedded_objects_is_bounded(tmp_path: Path) -> None:
    """1.6 MB: a hundred 16 MiB embedded OLE objects of zeros (1.7 GB RSS before)."""
    blob = OLE_MAGIC + bytes(16 * MiB - len(OLE_MAGIC))
    path = tmp_path / "embeds.docx"
    path.write_bytes(docx([(f"word/embeddings/oleObject{i}.bin", blob) for i in range(100)]))
    assert path.stat().st_size < 2 * MiB
    res = measured(path)
    assert "error" not in res, res
    assert any("inflates more than" in w for w in res["warnings"]), res["warnings"]
    assert "pay-invoice-portal.net" in res["iocs"]


def test_docx_of_embedded_objects_under_the_ratio_stays_in_budget(tmp_path: Path) -> None:
    """Embedded objects that compress ~90:1 (under MAX_PART_RATIO): the document budget stops
    the reading, the objects read are analysed."""
    blob = bytearray(8 * MiB)
    blob[: len(OLE_MAGIC)] = OLE_MAGIC
    blob[len(OLE_MAGIC)::90] = bytes((i * 7919) % 251 for i in range(len(blob[8::90])))
    path = tmp_path / "mid.docx"
    part = bytes(blob)
    path.write_bytes(docx([(f"word/embeddings/oleObject{i}.bin", part) for i in range(40)]))
    res = measured(path)
    assert "error" not in res, res
    assert any("MAX_DOCUMENT_INFLATED" in w for w in res["warnings"]), res["warnings"]
    assert 0 < res["children"] <= limits.MAX_DOCUMENT_INFLATED // len(blob)


def test_docx_of_compressible_header_parts_is_bounded(tmp_path: Path) -> None:
    """Header parts of 20 MiB of zeros and spaces, and 1 MiB parts of "<" (each "<" cost the
    old tag regex 4,096 steps): 194 s of CPU before."""
    zeros, spaces, angles = bytes(20 * MiB), b" " * (20 * MiB), b"<" * MiB
    parts = [(f"word/header{i}.xml", (zeros, spaces)[i % 2]) for i in range(40)]
    parts += [(f"word/footer{i}.xml", angles) for i in range(12)]
    path = tmp_path / "headers.docx"
    path.write_bytes(docx(parts))
    res = measured(path)
    assert "error" not in res, res
    assert any("word/header" in w for w in res["warnings"]), res["warnings"]
    assert "pay-invoice-portal.net" in res["iocs"]


def test_ioc_scan_is_bounded_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_IOC_CHARS", 4096)
    text = " ".join(f"http://host{i}.lure-domain.net/p" for i in range(2000))
    parts = [(f"word/header{i}.xml", f"<w:t>{text}</w:t>".encode()) for i in range(3)]
    path = tmp_path / "dense.docx"
    path.write_bytes(docx(parts))
    res = analyze_file(path)
    assert any("MAX_IOC_CHARS" in w for w in res.warnings), res.warnings
    assert len(res.iocs) < 500


# ---- item 4: zips ------------------------------------------------------------------------
def test_overlapping_zip_entries_cost_nothing(tmp_path: Path) -> None:
    """Two hundred entries quoting one deflate stream of 40 MiB (8 GB inflated before)."""
    blob = b"A" * 64 + bytes(40 * MiB)
    plain = raw_zip([("m0.bin", blob)])
    local_end = plain.index(b"PK\x01\x02")
    record = plain[local_end: plain.index(b"PK\x05\x06")]
    central = b"".join(record[:28] + struct.pack("<H", 9) + record[30:46] + b"m%04d.bin" % i
                       for i in range(200))
    data = plain[:local_end] + central + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 200, 200, len(central), local_end, 0)
    path = tmp_path / "overlap.zip"
    path.write_bytes(data)
    res = measured(path)
    assert res.get("error", "").startswith("FileTooLargeError"), res


def test_zip_entries_are_counted_before_zipfile_lists_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip of many tiny members is refused from its central directory alone: zipfile
    (a ZipInfo per entry: a gigabyte for a 64 MiB zip) is never asked to list it."""
    import pyzipper

    from kinship.binary import limits as binary_limits

    monkeypatch.setattr(binary_limits, "MAX_ZIP_MEMBERS", 500)
    monkeypatch.setattr(limits, "MAX_OOXML_MEMBERS", 500)
    members = [(f"{i}.txt", b"x") for i in range(501)]

    def no_listing(*_a: object, **_k: object) -> None:
        raise AssertionError("zipfile asked to list an oversized central directory")

    monkeypatch.setattr(pyzipper, "AESZipFile", no_listing)
    monkeypatch.setattr(zipfile, "ZipFile", no_listing)
    path = tmp_path / "tiny.zip"
    path.write_bytes(raw_zip(members, compress=False))
    with pytest.raises(FileTooLargeError, match="MAX_ZIP_MEMBERS"):
        analyze_file(path)
    path = tmp_path / "tiny.docx"
    path.write_bytes(docx(members))
    with pytest.raises(FileTooLargeError, match="MAX_OOXML_MEMBERS"):
        analyze_file(path)


# ---- item 7: e-mails --------------------------------------------------------------------------
def test_mail_nested_2000_levels_is_analysed_to_the_depth_limit(tmp_path: Path) -> None:
    path = tmp_path / "nested.eml"
    path.write_bytes(nested_rfc822(2000, INNER_MAIL))
    res = measured(path)
    assert "error" not in res, res
    assert any("nested deeper than" in w and "rest not analysed" in w
               for w in res["warnings"]), res["warnings"]


def test_multipart_nested_2000_levels_is_capped_in_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "deep.eml"
    path.write_bytes(nested_multipart(2000))
    res = analyze_file(path)
    assert res.kind == "email" and res.error is None
    assert any(f"nested deeper than {limits.MAX_MIME_DEPTH} MIME levels" in w
               for w in res.warnings), res.warnings


def test_nested_mail_with_raw_8bit_headers(tmp_path: Path) -> None:
    """A forwarded mail whose headers carry raw Latin-1 bytes (no encoded words) and a word
    too long for one line: re-folding it, as_bytes() raised UnicodeEncodeError."""
    inner = (b"From: J\xf6rg M\xfcller <j@sender.example>\r\nTo: b@victim.example\r\n"
             b"Subject: Ihre Rechnung, Gr\xfc\xdfe " + b"R" * 100 + b"\r\n\r\n"
             b"Bitte zahlen: http://pay-invoice-portal.net/r\r\n")
    outer = (b"From: a@b.example\r\nTo: c@d.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\nsiehe Anhang \xc3\xa4\r\n"
             b"--XX\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--XX--\r\n")
    path = tmp_path / "fwd.eml"
    path.write_bytes(outer)
    res = analyze_file(path)
    (att,) = res.children
    assert att.kind == "email" and att.error is None, att.error
    assert att.email is not None and "Rechnung" in att.email.subject
    assert "pay-invoice-portal.net" in {i.value for i in att.iocs}
    code, out, _err = run_cli("artifact", path)
    assert code == 0 and "Rechnung" in out
