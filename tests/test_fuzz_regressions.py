"""Crashes the artifact/archive fuzz target found, kept as fixed regressions (inputs built
here with the fuzz target's own builders)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from tests.fuzz_inputs import ole10native

from kinship.exceptions import UnsupportedFormatError
from kinship.ingest import Failure, expand
from kinship.pipeline import Labels


def _zip_needing_version(version: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.exe", b"MZ" + b"\0" * 64)
    raw = bytearray(buf.getvalue())
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<H", raw, cd + 6, version)  # version needed to extract
    return bytes(raw)


def test_zip_needing_a_future_version_is_one_failure(tmp_path: Path) -> None:
    """zipfile raises NotImplementedError('zip file version 25.4') while reading the central
    directory: a recorded, typed failure, not an internal error."""
    z = tmp_path / "v254.zip"
    z.write_bytes(_zip_needing_version(254))
    [item] = list(expand([z], Labels()))
    assert isinstance(item, Failure)
    assert item.error == UnsupportedFormatError.__name__
    assert "25.4" in item.reason


class _OleWithStream:
    """The olefile calls _ole_packages makes, over one \x01Ole10Native stream (olefile cannot
    write a file, and a builder that pads streams to a sector never ends one mid-field)."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream

    def listdir(self) -> list[list[str]]:
        return [["\x01Ole10Native"]]

    def get_size(self, entry: list[str]) -> int:
        return len(self.stream)

    def openstream(self, entry: list[str]) -> io.BytesIO:
        return io.BytesIO(self.stream)


def test_truncated_ole10native_stream_is_a_warning() -> None:
    """oletools reads the fields after the names with struct.unpack: a stream that ends
    there (a 3 KB fuzzed .doc did) is a warning on the document, not a crash."""
    from kinship.artifacts.model import OfficeInfo
    from kinship.artifacts.office import ParsedOffice, _Budget, _ole_packages

    full = ole10native("payload.exe", b"MZ" + b"A" * 200)
    end_of_names = full.index(b"\0", full.index(b"\0", 6) + 1) + 1  # file name, source path
    cut = full[:end_of_names + 2]  # then 2 of the 4 bytes of the next field
    out = ParsedOffice(OfficeInfo(format="ole"))
    _ole_packages(_OleWithStream(cut), out, _Budget())
    assert out.embedded == []
    assert [w for w in out.warnings if "Ole10Native package unreadable" in w]


def _looping_fat_doc() -> bytes:
    """make_ole_doc's .doc with its Ole10Native stream declaring ~2 GB over a FAT chain
    that loops on its first sector: each sector is stored once, read a million times."""
    from tests.fuzz_inputs import make_ole_doc

    doc = bytearray(make_ole_doc("payload.exe", b"MZ" + b"A" * 5000))
    sector = 1 << struct.unpack_from("<H", doc, 0x1E)[0]
    first_dir = struct.unpack_from("<L", doc, 0x30)[0]
    first_fat = struct.unpack_from("<L", doc, 0x4C)[0]
    name = "\x01Ole10Native".encode("utf-16-le")
    at = doc.index(name, 512 * (first_dir + 1))
    start = struct.unpack_from("<L", doc, at + 116)[0]
    struct.pack_into("<L", doc, at + 120, 0x7FFF0000)  # stream size
    struct.pack_into("<L", doc, sector * (first_fat + 1) + 4 * start, start)  # FAT: loop
    return bytes(doc)


def test_ole_with_a_looping_fat_is_not_given_to_olevba(tmp_path: Path) -> None:
    """A fuzzed 243 KB .doc cost 1.4 GB: olevba reads every stream by following the FAT.
    A file whose streams declare more than the file can hold is refused before olevba."""
    import subprocess
    import sys

    from kinship.artifacts.office import implausible_ole

    doc = _looping_fat_doc()
    why = implausible_ole(doc)
    assert why is not None and "declares" in why
    path = tmp_path / "loop.doc"
    path.write_bytes(doc)
    child = (
        "import resource, sys, json\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from kinship.artifacts.analyze import analyze_file\n"
        "r = analyze_file(sys.argv[1])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(json.dumps({'warnings': r.warnings, 'hwm_kb': int(hwm.split()[1])}))\n")
    out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("macros not analysed" in w for w in res["warnings"])
    assert res["hwm_kb"] < 400 * 1024


def test_docx_with_a_damaged_lzma_part_is_a_warning(tmp_path: Path) -> None:
    """zipfile reads method 14 (LZMA) parts; a damaged one raised lzma.LZMAError out of the
    Office reader (a fuzzed docx did): it is a warning on the document, the rest is read."""
    from tests.fuzz_inputs import make_ooxml

    from kinship.artifacts.analyze import analyze_file

    good = make_ooxml("docx")
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        parts = [(i.filename, zf.read(i)) for i in zf.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in parts:
            method = zipfile.ZIP_LZMA if name == "docProps/core.xml" else zipfile.ZIP_DEFLATED
            zf.writestr(name, data if method != zipfile.ZIP_LZMA else data * 50,
                        compress_type=method)
    raw = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("docProps/core.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 12, start + min(info.compress_size, 60)):
        raw[i] ^= 0x5A  # damage the LZMA stream after its 4-byte header and properties
    path = tmp_path / "lzma.docx"
    path.write_bytes(bytes(raw))
    result = analyze_file(path)
    assert result.office is not None
    assert any("docProps/core.xml" in w and "unreadable part" in w for w in result.warnings)
