"""Seeds and a seeded mutator for the artifact fuzz target (tests/fuzz_artifacts.py).

Every seed is built here, in code, from the standard library, pyzipper and the test binaries
(tests/fixtures): nothing binary is committed. An input is ``(name, data, kind)`` where
``kind`` is what the bytes are meant to be ("zip", "email", "ooxml", "ole", "text"); the name's
extension matters, because ``kinship.artifacts.analyze.detect_kind`` falls back on it.

    seeds ──> mutate(rnd) ──> 1-3 operations, each either
              ├ generic bytes: flips, truncation, chunk duplication/removal, hostile text
              ├ structural: zip local/central/EOCD fields, deflate damage, overlapping
              │             entries, MIME boundaries and headers, OOXML parts, CFB fields
              └ nesting:    zip in zip, mail in mail (up to thousands deep), docx in zip ...

``generate(seed, index, seeds)`` is a pure function of its arguments: input ``index`` of a run
with ``seed`` is the same bytes on every machine, so a finding is reproduced by its numbers.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from unittest import mock

import pyzipper

MAX_INPUT_BYTES = 2 * 1024 * 1024  # the target: no input under 2 MB costs > 1 GiB/10 s
PASSWORD = "infected"

# Sample-controlled text that must stay inert: rich markup, terminal escapes (window title,
# clear screen, OSC 8 hyperlink), a traversal, an RTL override, NUL, very long.
HOSTILE_TEXTS: tuple[str, ...] = (
    "[/]", "[red]x[/red]", "[bold", "[link=http://evil.example/]x[/link]", "\x1b]0;pwned\x07",
    "\x1b[2J\x1b[H", "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\", "../../x",
    "..\\..\\x.exe", "/etc/passwd", "C:\\x.exe", "a\u202etxt.exe", "nul\x00byte", "x" * 300,
    "\u00e9t\u00e9 \u65e5\u672c \U0001f600", "%s%n{0}", "\r\nInjected: header",
)
# Values that break length and offset fields: zero, one, off-by-one, all ones, sign bit.
_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


@dataclass(frozen=True)
class FuzzInput:
    """One input: ``kind`` is the format the bytes started as; ``recipe`` how they were made."""

    name: str
    data: bytes
    kind: str
    recipe: tuple[str, ...] = field(default=())

    def derive(self, op: str, data: bytes, kind: str | None = None,
               name: str | None = None) -> FuzzInput:
        return FuzzInput(name or self.name, data, kind or self.kind, (*self.recipe, op))


# ---- building blocks ------------------------------------------------------------------------
def make_zip(members: Sequence[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED,
             password: str | None = None) -> bytes:
    """A zip of ``members``; with ``password``, WinZip AES (pyzipper). Same bytes every time:
    fixed timestamps, and a fixed AES salt."""
    buf = io.BytesIO()
    if password is None:
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, data in members:
                zf.writestr(_zinfo(name, method), data)
    else:
        with mock.patch.object(pyzipper.zipfile_aes, "Random", _FixedSalt), \
                pyzipper.AESZipFile(buf, "w", compression=method,
                                    encryption=pyzipper.WZ_AES) as azf:
            azf.setpassword(password.encode())
            for name, data in members:
                azf.writestr(name, data)
        # pyzipper stamps the current time: fixed afterwards (AES does not cover it)
        out = bytearray(buf.getvalue())
        for sig, at in ((b"PK\x03\x04", 10), (b"PK\x01\x02", 12)):
            for hit in _find_all(bytes(out), sig):
                _set_field(out, hit + at, 4, 0x58215000)
        return bytes(out)
    return buf.getvalue()


def _zinfo(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 4, 1, 10, 0, 0))
    info.compress_type = method
    return info


class _FixedSalt:
    """Stands in for Cryptodome's ``Random`` in pyzipper: the salt of a test zip need not be
    secret, only the same on every run."""

    @staticmethod
    def new() -> io.BytesIO:
        return io.BytesIO(bytes(range(64)))


@dataclass
class RawEntry:
    """A zip entry written field by field (:func:`raw_zip`): anything may be inconsistent."""

    name: bytes
    payload: bytes  # as stored (compressed and/or encrypted)
    method: int = 0
    flags: int = 0
    crc: int = 0
    size: int = 0  # uncompressed size declared


def raw_zip(entries: Sequence[RawEntry], central: Sequence[tuple[int, int]] | None = None
            ) -> bytes:
    """Local headers + data, a central directory, an EOCD. ``central``: (entry index, local
    offset override or -1) rows, so entries can be listed twice or point at another's data."""
    out = bytearray()
    offsets = []
    for e in entries:
        offsets.append(len(out))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, e.flags, e.method, 0, 0x21,
                           e.crc, len(e.payload), e.size, len(e.name), 0)
        out += e.name + e.payload
    rows = central if central is not None else [(i, -1) for i in range(len(entries))]
    cd_start = len(out)
    for idx, off in rows:
        e = entries[idx]
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, e.flags, e.method, 0,
                           0x21, e.crc, len(e.payload), e.size, len(e.name), 0, 0, 0, 0, 0,
                           offsets[idx] if off < 0 else off)
        out += e.name
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(rows) & 0xFFFF, len(rows) & 0xFFFF,
                       len(out) - cd_start, cd_start, 0)
    return bytes(out)


def deflated(name: str, data: bytes) -> RawEntry:
    """A well-formed deflated entry (compress once, list it as often as wanted)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return RawEntry(name.encode(), comp.compress(data) + comp.flush(), 8, 0, zlib.crc32(data),
                    len(data))


def _crc_keys(password: bytes) -> list[int]:
    keys = [0x12345678, 0x23456789, 0x34567890]
    for c in password:
        _update_keys(keys, c)
    return keys


def _update_keys(keys: list[int], c: int) -> None:
    keys[0] = zlib.crc32(bytes([c]), keys[0] ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
    keys[1] = (keys[1] + (keys[0] & 0xFF)) & 0xFFFFFFFF
    keys[1] = (keys[1] * 134775813 + 1) & 0xFFFFFFFF
    keys[2] = zlib.crc32(bytes([keys[1] >> 24]), keys[2] ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def zipcrypto_zip(members: Sequence[tuple[str, bytes]], password: str = PASSWORD,
                  rnd: random.Random | None = None) -> bytes:
    """A traditional PKWARE (ZipCrypto) encrypted zip, deflated: the standard library reads
    but cannot write these, and it is what most sample exchanges use."""
    rnd = rnd or random.Random(0)
    entries = []
    for name, data in members:
        crc = zlib.crc32(data)
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        plain = bytes(rnd.randrange(256) for _ in range(11)) + bytes([crc >> 24])
        plain += comp.compress(data) + comp.flush()
        keys = _crc_keys(password.encode())
        enc = bytearray()
        for b in plain:
            t = (keys[2] | 2) & 0xFFFF
            enc.append(b ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            _update_keys(keys, b)
        entries.append(RawEntry(name.encode(), bytes(enc), 8, 0x1, crc, len(data)))
    return raw_zip(entries)


def make_cfb(streams: Sequence[tuple[str, bytes]]) -> bytes:
    """A minimal OLE compound file (CFB v3, 512-byte sectors) with ``streams`` in the root.

    Each stream is padded to the 4096-byte mini-stream cutoff so no mini FAT is needed; the
    directory is a right-leaning chain (olefile walks it; it does not check the balance).

        sector 0..F-1   FAT      sector F..F+D-1 directory      then each stream's sectors
    """
    sec = 512
    bodies = [data + b"\0" * max(0, 4096 - len(data)) for _, data in streams]
    bodies = [b + b"\0" * (-len(b) % sec) for b in bodies]
    n_dir = (len(streams) + 1 + 3) // 4
    n_data = sum(len(b) // sec for b in bodies)
    n_fat = 1
    while n_fat * (sec // 4) < n_fat + n_dir + n_data:
        n_fat += 1
    fat = [0xFFFFFFFD] * n_fat
    chain_start = n_fat

    def chain(n: int) -> int:
        start = len(fat)
        fat.extend(range(start + 1, start + n))
        fat.append(0xFFFFFFFE)
        return start

    dir_start = chain(n_dir) if n_dir else chain_start
    starts = [chain(len(b) // sec) for b in bodies]
    fat += [0xFFFFFFFF] * (n_fat * (sec // 4) - len(fat))

    def entry(name: str, typ: int, right: int, child: int, start: int, size: int) -> bytes:
        raw = (name.encode("utf-16-le") + b"\0\0")[:64]
        return (raw.ljust(64, b"\0") + struct.pack("<HBBIII", len(raw), typ, 1, 0xFFFFFFFF,
                                                   right, child)
                + b"\0" * 36 + struct.pack("<IQ", start, size))

    dirs = entry("Root Entry", 5, 0xFFFFFFFF, 1 if streams else 0xFFFFFFFF, 0xFFFFFFFE, 0)
    for i, ((name, _), body, start) in enumerate(zip(streams, bodies, starts, strict=True), 1):
        right = i + 1 if i < len(streams) else 0xFFFFFFFF
        dirs += entry(name, 2, right, 0xFFFFFFFF, start, len(body))
    dirs = dirs.ljust(n_dir * sec, b"\0")
    difat = list(range(n_fat)) + [0xFFFFFFFF] * (109 - n_fat)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
              + struct.pack("<IIIIIIIII", 0, n_fat, dir_start, 0, 4096, 0xFFFFFFFE, 0,
                            0xFFFFFFFE, 0)
              + struct.pack("<109I", *difat))
    return header + struct.pack(f"<{len(fat)}I", *fat) + dirs + b"".join(bodies)


def ole10native(filename: str, data: bytes) -> bytes:
    """An \\x01Ole10Native stream: a packaged file, as Word embeds one (MS-OLEDS 2.3.6)."""
    name = filename.encode("latin-1", "replace")
    body = (struct.pack("<H", 2) + name + b"\0" + b"C:\\tmp\\" + name + b"\0"
            + struct.pack("<II", 0x00030000, 0) + b"C:\\Temp\\" + name + b"\0"
            + struct.pack("<I", len(data)) + data)
    return struct.pack("<I", len(body)) + body


def summary_information(props: dict[int, str]) -> bytes:
    """A \\x05SummaryInformation property set of VT_LPSTR properties (MS-OLEPS)."""
    values = b""
    index = b""
    base = 8 + 8 * len(props)
    for pid, text in props.items():
        raw = text.encode("cp1252", "replace") + b"\0"
        raw += b"\0" * (-len(raw) % 4)
        index += struct.pack("<II", pid, base + len(values))
        values += struct.pack("<II", 0x1E, len(raw)) + raw
    section = struct.pack("<II", 8 + len(index) + len(values), len(props)) + index + values
    fmtid = bytes.fromhex("e0859ff2f94f6810ab9108002b27b3d9")
    return (struct.pack("<HHI", 0xFFFE, 0, 0x00020006) + b"\0" * 16 + struct.pack("<I", 1)
            + fmtid + struct.pack("<I", 48) + section)


def make_ole_doc(payload_name: str, payload: bytes, author: str = "Evil Author") -> bytes:
    """An OLE .doc: WordDocument, SummaryInformation, and a packaged file (Ole10Native)."""
    return make_cfb([("WordDocument", b"\xec\xa5" + b"Invoice http://evil.example/x " * 20),
                     ("\x05SummaryInformation",
                      summary_information({2: "Invoice", 4: author, 8: "[/]admin",
                                           18: "Microsoft Office Word"})),
                     ("\x01Ole10Native", ole10native(payload_name, payload))])


_CT = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
       'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
       '<Default Extension="bin" ContentType="application/vnd.ms-office.activeX"/></Types>')
_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def make_ooxml(kind: str, *, embeddings: Sequence[tuple[str, bytes]] = (),
               author: str = "Evil Author", text: str = "Pay http://evil.example/pay now",
               vba: bytes | None = None) -> bytes:
    """A minimal .docx ("word") or .xlsx ("xl") with metadata, an external template
    relationship (template injection), visible text, embedded objects and a VBA part."""
    main = ("word/document.xml" if kind == "word" else "xl/sharedStrings.xml")
    body = (f'<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>'
            "</w:body></w:document>" if kind == "word"
            else f'<sst xmlns="x"><si><t>{text}</t></si></sst>')
    members = [
        ("[Content_Types].xml", _CT.encode()),
        ("_rels/.rels", (f'<Relationships xmlns="{_RELS_NS}"><Relationship Id="rId1" '
                         f'Type="{_OFFICE_REL}/officeDocument" Target="{main}"/>'
                         "</Relationships>").encode()),
        ("docProps/core.xml", ('<cp:coreProperties xmlns:cp="c" xmlns:dc="d"><dc:creator>'
                               f"{author}</dc:creator><cp:lastModifiedBy>[bold]x"
                               "</cp:lastModifiedBy><dc:title>Invoice</dc:title>"
                               "</cp:coreProperties>").encode()),
        ("docProps/app.xml", (b'<Properties xmlns="a"><Application>Microsoft Office Word'
                              b"</Application><Company>[/]Corp</Company></Properties>")),
        (main, body.encode()),
        (f"{kind}/_rels/{Path(main).name}.rels",
         (f'<Relationships xmlns="{_RELS_NS}"><Relationship Id="rId9" '
          f'Type="{_OFFICE_REL}/attachedTemplate" Target="http://evil.example/t.dotm" '
          'TargetMode="External"/></Relationships>').encode()),
    ]
    members += [(f"{kind}/embeddings/{n}", d) for n, d in embeddings]
    if vba is not None:
        members.append((f"{kind}/vbaProject.bin", vba))
    return make_zip(members)


def make_email(subject: str = "Invoice 2024", *, body: str = "Please see attached.",
               html: str | None = None,
               attachments: Sequence[tuple[str, str, bytes]] = (),
               nested: Sequence[bytes] = ()) -> bytes:
    """An RFC 5322 message with the usual headers, a text (and HTML) body, attachments
    ``(filename, maintype/subtype, bytes)`` and nested messages (message/rfc822)."""
    msg = EmailMessage()
    msg["From"] = '"Accounts" <billing@evil.example>'
    msg["To"] = "victim@corp.example"
    msg["Reply-To"] = "other@evil2.example"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 01 Apr 2024 10:00:00 +0000"
    msg["Message-ID"] = "<1234@mail.evil.example>"
    msg["Received"] = "from mx.evil.example (mx.evil.example [203.0.113.5]) by corp"
    msg["X-Mailer"] = "Mailer \x1b]0;t\x07"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    for raw in nested:
        msg.add_attachment(message_from_bytes(raw, policy=policy.default))
    for i, part in enumerate(msg.walk()):  # fixed boundaries: the same bytes every run
        if part.is_multipart():
            part.set_boundary(f"=_seed{i}_{len(subject)}")
    return msg.as_bytes(policy=policy.SMTP)


def nested_mail(depth: int, inner: bytes) -> bytes:
    """``inner`` wrapped ``depth`` times in message/rfc822 (no multipart: small per level)."""
    head = (b"From: a@evil.example\r\nTo: b@corp.example\r\nSubject: fwd\r\n"
            b"Date: Mon, 01 Apr 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: message/rfc822\r\n\r\n")
    return head * depth + inner


# ---- seeds ----------------------------------------------------------------------------------
def build_seeds(binaries: Sequence[Path] = ()) -> list[FuzzInput]:
    """10-20 small valid inputs: zips (plain, AES and ZipCrypto "infected", nested, hostile
    member names), e-mails (attachments, nested messages, password in the body), OOXML
    documents (embedded objects, external template, VBA part), an OLE .doc, and text lures.
    ``binaries`` (small test executables) go inside so the executable path is reached too."""
    exe_name, exe = ("netsh_elf64", b"\x7fELF" + b"\0" * 60)
    if binaries:
        exe_name, exe = binaries[0].name, binaries[0].read_bytes()
    exe2_name, exe2 = (binaries[1].name, binaries[1].read_bytes()) if len(binaries) > 1 \
        else (exe_name, exe)
    rnd = random.Random(1)
    text = b"MZ? no: just text http://evil.example/a 203.0.113.9\n" * 4
    plain = make_zip([(exe_name, exe), ("readme.txt", text)])
    docx = make_ooxml("word", embeddings=[("oleObject1.bin", make_ole_doc(exe2_name, exe2)),
                                          ("package.zip", make_zip([(exe_name, exe)]))],
                      vba=make_cfb([("PROJECT", b"ID=\"{x}\"\r\nModule=Module1\r\n")]))
    xlsx = make_ooxml("xl", embeddings=[("Microsoft_Word_Document.docx",
                                         make_ooxml("word"))], text="=cmd|'/c calc'!A0")
    html = ('<html><body><a href="http://evil.example/login">https://bank.example/</a>'
            '<img src="cid:img1@x"></body></html>')
    mail_zip = make_email("Invoice [/]\x1b]0;t\x07", html=html,
                          body="The password is: infected\nhttp://evil.example/x",
                          attachments=[("invoice.zip", "application/zip",
                                        make_zip([(exe_name, exe)], password=PASSWORD))])
    seeds = [
        FuzzInput("sample.zip", plain, "zip"),
        FuzzInput("stored.zip", make_zip([(exe2_name, exe2)], method=zipfile.ZIP_STORED), "zip"),
        FuzzInput("aes.zip", make_zip([(exe_name, exe)], password=PASSWORD), "zip"),
        FuzzInput("zipcrypto.zip", zipcrypto_zip([(exe_name, exe), ("b.txt", text)],
                                                 rnd=rnd), "zip"),
        FuzzInput("nested.zip", make_zip([("inner.zip", plain), ("doc.docx", docx)]), "zip"),
        FuzzInput("names.zip", make_zip([(f"{t}{i}.txt", text) for i, t in
                                         enumerate(HOSTILE_TEXTS[:10])]), "zip"),
        FuzzInput("invoice.eml", mail_zip, "email"),
        FuzzInput("plain.eml", make_email(html=html, body="Click http://evil.example/a"),
                  "email"),
        FuzzInput("fwd.eml", make_email("Fwd: \u00e9t\u00e9 \u65e5\u672c", nested=[
            make_email("inner \u00e9", attachments=[("x.docx", "application/octet-stream",
                                                     docx)])]), "email"),
        FuzzInput("doc.eml", make_email(attachments=[
            ("report.xlsx", "application/vnd.ms-excel", xlsx),
            ("old.doc", "application/msword", make_ole_doc("a.exe", exe2)),
            ("\x1b]0;x\x07[/].exe", "application/octet-stream", exe)]), "email"),
        FuzzInput("report.docx", docx, "ooxml"),
        FuzzInput("book.xlsx", xlsx, "ooxml"),
        FuzzInput("legacy.doc", make_ole_doc("payload.exe", exe2, author="[/]\x1b[2J"), "ole"),
        FuzzInput("deep.eml", nested_mail(8, make_email("leaf")), "email"),
        FuzzInput("lure.hta", b"<html><script>new ActiveXObject('WScript.Shell').Run("
                  b"'powershell -enc AAAA')</script></html>", "text"),
        FuzzInput("lure.js", b"var s=WScript.CreateObject('WScript.Shell');s.Run('calc');",
                  "text"),
    ]
    return seeds


# ---- mutations ------------------------------------------------------------------------------
Op = Callable[[random.Random, FuzzInput], FuzzInput]


def _pos(rnd: random.Random, data: bytes) -> int:
    return rnd.randrange(len(data) + 1)


def op_flip(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    b = bytearray(inp.data)
    for _ in range(rnd.choice((1, 2, 8, 64)) if b else 0):
        b[rnd.randrange(len(b))] = rnd.randrange(256)
    return inp.derive("flip", bytes(b))


def op_truncate(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    return inp.derive("truncate", inp.data[: _pos(rnd, inp.data)])


def op_dup_chunk(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    d = inp.data
    a = _pos(rnd, d)
    chunk = d[a: a + rnd.choice((4, 64, 1024, 65536))]
    at = _pos(rnd, d)
    return inp.derive("dup_chunk", d[:at] + chunk * rnd.choice((1, 2, 16)) + d[at:])


def op_remove_chunk(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    d = inp.data
    a = _pos(rnd, d)
    return inp.derive("remove_chunk", d[:a] + d[a + rnd.choice((1, 4, 64, 4096)):])


def op_interesting(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    b = bytearray(inp.data)
    width = rnd.choice((1, 2, 4))
    if len(b) >= width:
        at = rnd.randrange(len(b) - width + 1)
        b[at: at + width] = (rnd.choice(_INTERESTING) & ((1 << 8 * width) - 1)).to_bytes(
            width, "little")
    return inp.derive("interesting", bytes(b))


def op_hostile_text(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A hostile string where names and header values live: after a newline, a quote, '='."""
    d = inp.data
    spots = [i + 1 for i, c in enumerate(d[:200_000]) if c in b"\n\"=>"]
    at = rnd.choice(spots) if spots and rnd.random() < 0.8 else _pos(rnd, d)
    text = rnd.choice(HOSTILE_TEXTS).encode("utf-8", "surrogatepass")
    return inp.derive("hostile_text", d[:at] + text + d[at:])


def op_rename(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """Another extension (detect_kind falls back on it), sometimes a hostile file name."""
    ext = rnd.choice((".zip", ".eml", ".docx", ".xlsm", ".doc", ".msg", ".bin", ".txt", ""))
    stem = rnd.choice(("input", "[/]x", "\x1b]0;t\x07", "a[b]c", "name with space"))
    return inp.derive("rename", inp.data, name=stem + ext)


# zip structures: (signature, {field offset: width})
_LOCAL = (b"PK\x03\x04", {6: 2, 8: 2, 14: 4, 18: 4, 22: 4, 26: 2, 28: 2})
_CENTRAL = (b"PK\x01\x02", {8: 2, 10: 2, 16: 4, 20: 4, 24: 4, 28: 2, 30: 2, 32: 2, 34: 2,
                            42: 4})
_EOCD = (b"PK\x05\x06", {4: 2, 6: 2, 8: 2, 10: 2, 12: 4, 16: 4, 20: 2})


def _find_all(data: bytes, sig: bytes) -> list[int]:
    out: list[int] = []
    at = data.find(sig)
    while at >= 0 and len(out) < 10_000:
        out.append(at)
        at = data.find(sig, at + 1)
    return out


def _set_field(b: bytearray, at: int, width: int, value: int) -> None:
    if at + width <= len(b):
        b[at: at + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")


def op_zip_field(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A size, offset, name length, method, flag or count field of a local header, a central
    entry or the EOCD set to a boundary value or nudged by a little."""
    sig, fields = rnd.choice((_LOCAL, _CENTRAL, _CENTRAL, _EOCD))
    hits = _find_all(inp.data, sig)
    if not hits:
        return op_flip(rnd, inp)
    b = bytearray(inp.data)
    at = rnd.choice(hits)
    off, width = rnd.choice(sorted(fields.items()))
    old = int.from_bytes(b[at + off: at + off + width], "little")
    value = rnd.choice((rnd.choice(_INTERESTING), old + rnd.choice((-2, -1, 1, 2, 1000)),
                        rnd.getrandbits(8 * width)))
    _set_field(b, at + off, width, value)
    return inp.derive(f"zip_field:{sig[2]}+{off}", bytes(b))


def op_deflate_damage(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """Bytes changed inside a member's compressed data (not its headers)."""
    b = bytearray(inp.data)
    spans = []
    for at in _find_all(inp.data, _LOCAL[0]):
        if at + 30 > len(b):
            continue
        csize, _, nlen, xlen = struct.unpack_from("<IIHH", b, at + 18)
        start = at + 30 + nlen + xlen
        end = min(start + csize, len(b))
        if end > start:
            spans.append((start, end))
    if not spans:
        return op_flip(rnd, inp)
    start, end = rnd.choice(spans)
    if rnd.random() < 0.3:  # a hole of zeros (a damaged sector)
        n = min(end - start, rnd.choice((16, 512, 4096)))
        at = rnd.randrange(start, end - n + 1)
        b[at: at + n] = bytes(n)
    else:
        for _ in range(rnd.choice((1, 3, 16))):
            b[rnd.randrange(start, end)] ^= 1 << rnd.randrange(8)
    return inp.derive("deflate_damage", bytes(b))


def _central_entries(d: bytes) -> tuple[int, list[bytes], bytes] | None:
    """(central directory start, entries, EOCD and after) when the EOCD is where it says."""
    eocd = d.rfind(_EOCD[0])
    if eocd < 0 or eocd + 22 > len(d):
        return None
    cd_off = struct.unpack_from("<I", d, eocd + 16)[0]
    entries, at = [], cd_off
    while at + 46 <= eocd and d[at: at + 4] == _CENTRAL[0]:
        nlen, xlen, clen = struct.unpack_from("<HHH", d, at + 28)
        n = 46 + nlen + xlen + clen
        entries.append(d[at: at + n])
        at += n
    return (cd_off, entries, d[eocd:]) if entries else None


def _with_central(d: bytes, cd_off: int, entries: list[bytes], tail: bytes) -> bytes:
    cd = b"".join(entries)
    eocd = bytearray(tail)
    _set_field(eocd, 8, 2, len(entries))
    _set_field(eocd, 10, 2, len(entries))
    _set_field(eocd, 12, 4, len(cd))
    _set_field(eocd, 16, 4, cd_off)
    return d[:cd_off] + cd + bytes(eocd)


def op_overlap(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A central entry listed many times over (all pointing at one local header): the
    overlapping-entries bomb."""
    parsed = _central_entries(inp.data)
    if parsed is None:
        return op_zip_field(rnd, inp)
    cd_off, entries, tail = parsed
    victim = rnd.choice(entries)
    times = rnd.choice((2, 16, 500, 5000))
    times = min(times, max(1, (MAX_INPUT_BYTES - len(inp.data)) // len(victim)))
    return inp.derive(f"overlap*{times}", _with_central(inp.data, cd_off,
                                                       entries + [victim] * times, tail))


def op_central_order(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """Central entries shuffled, dropped or doubled (offsets still point where they did)."""
    parsed = _central_entries(inp.data)
    if parsed is None:
        return op_zip_field(rnd, inp)
    cd_off, entries, tail = parsed
    entries = list(entries)
    rnd.shuffle(entries)
    if len(entries) > 1 and rnd.random() < 0.5:
        entries.pop()
    elif rnd.random() < 0.5:
        entries.append(entries[0])
    return inp.derive("central_order", _with_central(inp.data, cd_off, entries, tail))


def _both_headers(rnd: random.Random, inp: FuzzInput, op: str, local_off: int,
                  central_off: int, width: int, values: Sequence[int]) -> FuzzInput:
    b = bytearray(inp.data)
    value = rnd.choice(values)
    for at in _find_all(inp.data, _LOCAL[0]):
        if rnd.random() < 0.7:
            _set_field(b, at + local_off, width, value)
    for at in _find_all(inp.data, _CENTRAL[0]):
        if rnd.random() < 0.7:
            _set_field(b, at + central_off, width, value)
    return inp.derive(f"{op}={value:#x}", bytes(b))


def op_huge_size(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    return _both_headers(rnd, inp, "huge_size", 22, 24, 4,
                         (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 30, 0))


def op_method(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    return _both_headers(rnd, inp, "method", 8, 10, 2, (0, 1, 6, 8, 9, 12, 14, 93, 95, 98, 99))


def op_flags(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    return _both_headers(rnd, inp, "flags", 6, 8, 2, (0x1, 0x8, 0x9, 0x41, 0x800, 0x2001, 0))


def _members(data: bytes) -> list[tuple[str, bytes]] | None:
    """The members of a zip the standard library reads, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i.filename, zf.read(i)) for i in zf.infolist()[:200]
                    if i.file_size < 4 * 1024 * 1024]
    except Exception:  # any damage: the caller falls back on a byte-level mutation
        return None


def op_rename_members(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """The zip rewritten with hostile member names (markup, escapes, traversal)."""
    members = _members(inp.data)
    if not members:
        return op_hostile_text(rnd, inp)
    renamed = [(rnd.choice(HOSTILE_TEXTS) + Path(n).suffix if rnd.random() < 0.6 else n, d)
               for n, d in members]
    return inp.derive("rename_members", make_zip(renamed))


def op_wrap_zip(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """The input as a member of a zip: plain, AES or ZipCrypto with "infected"."""
    name = rnd.choice((inp.name, rnd.choice(HOSTILE_TEXTS) + Path(inp.name).suffix))
    how = rnd.choice(("plain", "stored", "aes", "zipcrypto"))
    if how == "plain":
        data = make_zip([(name, inp.data)])
    elif how == "stored":
        data = make_zip([(name, inp.data), ("x.txt", b"x")], method=zipfile.ZIP_STORED)
    elif how == "aes":
        data = make_zip([(name, inp.data)], password=PASSWORD)
    else:
        data = zipcrypto_zip([(name, inp.data)], rnd=rnd)
    return inp.derive(f"wrap_zip:{how}", data, "zip", "outer.zip")


def op_zip_bomb(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A small deflated member of many MB of zeros, listed ``times`` times (overlapping)."""
    mb = rnd.choice((1, 8, 40))
    raw = bytes(mb << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = comp.compress(raw) + comp.flush()
    entry = RawEntry(b"a.bin", payload, 8, 0, zlib.crc32(raw), len(raw))
    times = rnd.choice((1, 4, 64, 512))
    return inp.derive(f"zip_bomb:{mb}MB*{times}", raw_zip([entry], [(0, -1)] * times), "zip",
                      "bomb.zip")


def op_many_members(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """Thousands of tiny stored members."""
    n = rnd.choice((1_000, 10_000, 20_000))
    entries = [RawEntry(f"{i}".encode(), b"", 0, 0, 0, 0) for i in range(n)]
    return inp.derive(f"many_members:{n}", raw_zip(entries), "zip", "many.zip")


# e-mails
def _boundary(rnd: random.Random) -> str:
    return f"=_fuzz{rnd.getrandbits(64):016x}"


def wrap_mail(rnd: random.Random, data: bytes, filename: str, *, rfc822: bool) -> bytes:
    """``data`` as a message/rfc822 part or a base64 attachment of a new multipart mail."""
    import base64

    b = _boundary(rnd).encode()
    if rfc822:
        part = b"Content-Type: message/rfc822\r\n\r\n" + data
    else:
        fn = filename.encode("utf-8", "surrogatepass")
        part = (b'Content-Type: application/octet-stream; name="' + fn + b'"\r\n'
                b'Content-Disposition: attachment; filename="' + fn + b'"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data))
    return (b"From: a@evil.example\r\nTo: b@corp.example\r\nSubject: Fwd: x\r\n"
            b"Date: Mon, 01 Apr 2024 10:00:00 +0000\r\nMessage-ID: <w@evil.example>\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
            b"--" + b + b"\r\nContent-Type: text/plain\r\n\r\nThe password is: infected\r\n"
            b"--" + b + b"\r\n" + part + b"\r\n--" + b + b"--\r\n")


def op_wrap_mail(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    rfc822 = inp.kind == "email" and rnd.random() < 0.6
    name = rnd.choice((inp.name, rnd.choice(HOSTILE_TEXTS) + Path(inp.name).suffix))
    return inp.derive("wrap_mail:rfc822" if rfc822 else "wrap_mail:attachment",
                      wrap_mail(rnd, inp.data, name, rfc822=rfc822), "email", "fwd.eml")


def op_deep_mail(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    depth = rnd.choice((20, 200, 2_000, 5_000))
    return inp.derive(f"deep_mail:{depth}", nested_mail(depth, inp.data), "email", "deep.eml")


_HEADER_NAMES = (b"Subject", b"From", b"Reply-To", b"X-Mailer", b"Return-Path", b"To",
                 b"Content-Type", b"Content-Disposition", b"Received", b"Authentication-Results")


def op_mail_header(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A header with a hostile value, raw or as an RFC 2047 encoded word, at the top."""
    import base64

    value = rnd.choice(HOSTILE_TEXTS).encode("utf-8", "surrogatepass")
    style = rnd.choice(("raw", "b", "q", "junk"))
    if style == "b":
        value = b"=?utf-8?b?" + base64.b64encode(value) + b"?="
    elif style == "q":
        value = b"=?utf-8?q?" + b"".join(b"=%02X" % c for c in value) + b"?="
    elif style == "junk":
        value = rnd.choice((b"=?x?y?z?=", b"=?utf-8?b?!!!?=", b"=?utf-8*en?q?a?=",
                            b"attachment; filename*=utf-8''%1b%5d0%3bx%07",
                            b"multipart/mixed; boundary=", b"<" * 1000, b"\xff\xfe\x80"))
    return inp.derive(f"mail_header:{style}",
                      rnd.choice(_HEADER_NAMES) + b": " + value + b"\r\n" + inp.data)


def op_boundary(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A MIME boundary line removed, doubled or cut short (truncated multiparts)."""
    d = inp.data
    lines = [i for i in _find_all(d, b"\n--") if i < len(d)]
    if not lines:
        return op_hostile_text(rnd, inp)
    at = rnd.choice(lines) + 1
    end = d.find(b"\n", at)
    end = len(d) if end < 0 else end
    how = rnd.choice(("drop", "double", "cut", "close"))
    if how == "drop":
        d = d[:at] + d[end + 1:]
    elif how == "double":
        d = d[:at] + d[at: end + 1] * 2 + d[end + 1:]
    elif how == "cut":
        d = d[: at + rnd.randrange(max(1, end - at))]
    else:
        d = d[:end].rstrip(b"\r-") + b"--" + d[end:]
    return inp.derive(f"boundary:{how}", d)


def op_many_parts(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    n = rnd.choice((100, 1_000, 10_000))
    b = _boundary(rnd).encode()
    part = (b"--" + b + b'\r\nContent-Type: application/octet-stream; name="a.zip"\r\n'
            b"Content-Disposition: attachment; filename=\"a.zip\"\r\n\r\nPK\x03\x04\r\n")
    data = (b"From: a@evil.example\r\nTo: b@corp.example\r\nSubject: many\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
            + part * n + b"--" + b + b"--\r\n")
    return inp.derive(f"many_parts:{n}", data, "email", "many.eml")


# OOXML
_XML_BAD = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
    b'&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;'
    b'&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><l>&e;&e;&e;</l>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    b"<a>" * 50_000 + b"</a>" * 50_000,
    b'<Relationships><Relationship TargetMode="External" Target="' + b"A" * 100_000
    + b'" Type="x/attachedTemplate"/></Relationships>',
    b"\xff\xfe<\x00a\x00>\x00", b"<a>\x1b]0;x\x07[/]</a>", b"", b"<",
)


def _rebuild(rnd: random.Random, inp: FuzzInput, op: str,
             edit: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]) -> FuzzInput:
    members = _members(inp.data)
    if members is None:
        return op_zip_field(rnd, inp)
    return inp.derive(op, make_zip(edit(members)))


def op_xml_damage(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """One XML part replaced by an entity bomb, XXE, deep nesting, a huge attribute, ..."""
    bad = rnd.choice(_XML_BAD)

    def edit(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        xml = [i for i, (n, _) in enumerate(members) if n.endswith((".xml", ".rels"))]
        if xml:
            i = rnd.choice(xml)
            members[i] = (members[i][0], bad)
        return members

    return _rebuild(rnd, inp, "xml_damage", edit)


def op_many_embeddings(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """A document of many embedded objects that each inflate to megabytes."""
    n, size = rnd.choice(((20, 8 << 20), (200, 1 << 20), (200, 8 << 20), (1_000, 64 << 10)))
    blob = deflated("x", b"\0" * size)
    base = [deflated(name, data) for name, data in _members(make_ooxml("word")) or ()]
    embeds = [RawEntry(f"word/embeddings/oleObject{i}.bin".encode(), blob.payload, 8, 0,
                       blob.crc, blob.size) for i in range(n)]
    return inp.derive(f"many_embeddings:{n}x{size >> 10}K", raw_zip(base + embeds), "ooxml",
                      "embeds.docx")


def op_big_text_parts(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    """Header parts of highly compressible visible text (IOC extraction cost)."""
    n = rnd.choice((1, 4, 12))
    size = rnd.choice((1 << 20, 15 << 20))
    unit = rnd.choice((b"<w:t>http://a.example/x 203.0.113.7 </w:t>", b"<w:t>a.b </w:t>",
                       b"x" * 64))
    part = deflated("x", unit * (size // len(unit)))
    base = [deflated(name, data) for name, data in
            (_members(inp.data) if inp.kind == "ooxml" else None)
            or [("[Content_Types].xml", _CT.encode())]]
    parts = [RawEntry(f"word/header{i}.xml".encode(), part.payload, 8, 0, part.crc, part.size)
             for i in range(1, n + 1)]
    return inp.derive(f"big_text:{n}x{size >> 20}M", raw_zip(base + parts), "ooxml",
                      inp.name if inp.kind == "ooxml" else "big.docx")


def op_wrap_docx(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    name = rnd.choice(("oleObject1.bin", rnd.choice(HOSTILE_TEXTS) + ".bin",
                       "Package" + Path(inp.name).suffix))
    how = rnd.choice(("embedding", "vba"))
    data = (make_ooxml("word", embeddings=[(name, inp.data)]) if how == "embedding"
            else make_ooxml("xl", vba=inp.data))
    return inp.derive(f"wrap_docx:{how}", data, "ooxml",
                      "wrapped.docx" if how == "embedding" else "wrapped.xlsm")


# OLE compound files: header fields, and each directory entry's type, siblings, child,
# start sector and size
_CFB_HEADER = {0x18: 2, 0x1A: 2, 0x1C: 2, 0x1E: 2, 0x20: 2, 0x2C: 4, 0x30: 4, 0x38: 4,
               0x3C: 4, 0x40: 4, 0x44: 4, 0x48: 4, 0x4C: 4, 0x50: 4}
_CFB_DIRENT = {64: 2, 66: 1, 68: 4, 72: 4, 76: 4, 116: 4, 120: 4}


def op_cfb_field(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    if not inp.data.startswith(b"\xd0\xcf\x11\xe0") or len(inp.data) < 1024:
        return op_flip(rnd, inp)
    b = bytearray(inp.data)
    if rnd.random() < 0.4:
        off, width = rnd.choice(sorted(_CFB_HEADER.items()))
        at = off
    else:
        dir_sector = struct.unpack_from("<I", b, 0x30)[0]
        base = 512 * (1 + dir_sector) if dir_sector < 0x10000 else 512
        off, width = rnd.choice(sorted(_CFB_DIRENT.items()))
        at = base + 128 * rnd.randrange(4) + off
    value = rnd.choice((rnd.choice(_INTERESTING), rnd.randrange(8), rnd.getrandbits(8 * width)))
    _set_field(b, at, width, value)
    return inp.derive(f"cfb_field:{off:#x}", bytes(b))


def op_wrap_ole(rnd: random.Random, inp: FuzzInput) -> FuzzInput:
    name = rnd.choice(("payload.exe", rnd.choice(HOSTILE_TEXTS)))
    return inp.derive("wrap_ole", make_ole_doc(name, inp.data[:200_000]), "ole", "wrapped.doc")


_GENERIC: tuple[Op, ...] = (op_flip, op_flip, op_truncate, op_dup_chunk, op_remove_chunk,
                            op_interesting, op_hostile_text, op_rename)
_NEST: tuple[Op, ...] = (op_wrap_zip, op_wrap_mail, op_wrap_docx, op_wrap_ole, op_deep_mail)
_ZIP: tuple[Op, ...] = (op_zip_field, op_zip_field, op_zip_field, op_deflate_damage,
                        op_deflate_damage, op_overlap, op_central_order, op_huge_size, op_method,
                        op_flags, op_rename_members, op_zip_bomb, op_many_members)
_MAIL: tuple[Op, ...] = (op_mail_header, op_mail_header, op_boundary, op_boundary,
                         op_many_parts)
_OOXML: tuple[Op, ...] = (*_ZIP, op_xml_damage, op_xml_damage, op_many_embeddings,
                          op_big_text_parts)
OPS_BY_KIND: dict[str, tuple[tuple[Op, ...], ...]] = {
    "zip": (_GENERIC, _ZIP, _ZIP, _NEST),
    "ooxml": (_GENERIC, _OOXML, _OOXML, _NEST),
    "email": (_GENERIC, _MAIL, _MAIL, _NEST),
    "ole": (_GENERIC, (op_cfb_field,), (op_cfb_field,), _NEST),
    "text": (_GENERIC, _NEST),
}


def mutate(rnd: random.Random, inp: FuzzInput, n_ops: int) -> FuzzInput:
    """``n_ops`` operations suited to what the input currently is; results over
    :data:`MAX_INPUT_BYTES` are dropped."""
    for _ in range(n_ops):
        op = rnd.choice(rnd.choice(OPS_BY_KIND[inp.kind]))
        out = op(rnd, inp)
        if len(out.data) <= MAX_INPUT_BYTES:
            inp = out
    return inp


def generate(seed: int, index: int, seeds: Sequence[FuzzInput]) -> FuzzInput:
    """Input ``index`` of the run ``seed``: a pure function of its arguments."""
    rnd = random.Random(f"kinship-fuzz:{seed}:{index}")
    with warnings.catch_warnings():  # zipfile warns of the duplicate names we write
        warnings.simplefilter("ignore")
        return mutate(rnd, rnd.choice(seeds), rnd.choice((1, 1, 1, 2, 2, 3)))
