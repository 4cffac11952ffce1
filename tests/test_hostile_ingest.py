"""Hostile inputs to ``kinship add`` (issue #10 items 1, 4, 6 and 7): damaged and overlapping
zips, zip bombs, FIFOs and devices, unreadable folders, symlinks out of a folder, unsafe member
names, truncated PEs named like dumps, concurrent writers. Every input is built here.

The batch must always finish: each bad input is a failure (or a warning) with its reason, each
good one is stored, and the exit code is 7 (partial batch).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinship.binary import archive, limits
from kinship.binary.archive import MemberRef, iter_archive, list_archive, read_member
from kinship.binary.load import load_file
from kinship.cli import main
from kinship.exceptions import CorruptFileError, FileTooLargeError, InputError
from kinship.ingest import AddReport, Failure, Notice, add_inputs, expand
from kinship.pipeline import Labels, SampleInput, load_input
from kinship.store.memory import MemoryStore

# ---- building hostile zips ----------------------------------------------------------------


def _damaged_deflate_zip(path: Path, good: dict[str, bytes], bad_name: str = "bad.exe") -> None:
    """A zip with ``good`` members and one whose deflate stream is garbage (zlib.error on
    read; the CRC and sizes in the headers are left as they were)."""
    payload = os.urandom(64 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good.items():
            zf.writestr(name, data)
        zf.writestr(bad_name, payload)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(bad_name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start:start + info.compress_size] = b"\xff" * info.compress_size  # invalid block type
    path.write_bytes(bytes(raw))


def _local(name: bytes, method: int, crc: int, csize: int, size: int) -> bytes:
    return struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, method, 0, 0x21, crc, csize,
                       size, len(name), 0) + name


def _central(name: bytes, method: int, crc: int, csize: int, size: int, offset: int) -> bytes:
    return struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, method, 0, 0x21, crc,
                       csize, size, len(name), 0, 0, 0, 0, 0, offset) + name


def _end(entries: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(entries, 0xFFFF),
                       min(entries, 0xFFFF), cd_size, cd_offset, 0)


def _overlap_bomb(path: Path, entries: int, kernel_size: int) -> None:
    """Fifield's non-quoted overlap: one deflate stream of ``kernel_size`` zero bytes, shared
    by ``entries`` central-directory entries that all point at the same local header (all
    named like it, so zipfile's name check passes)."""
    kernel = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = kernel.compress(bytes(kernel_size)) + kernel.flush()
    crc = zlib.crc32(bytes(kernel_size))
    local = _local(b"0", 8, crc, len(stream), kernel_size) + stream
    cd = _central(b"0", 8, crc, len(stream), kernel_size, 0) * entries  # names match the header
    path.write_bytes(local + cd + _end(entries, len(cd), len(local)))


def _many_members(path: Path, entries: int, *, lie: bool) -> None:
    """``entries`` stored 1-byte members (distinct local headers); with ``lie`` the end record
    claims a single entry."""
    parts, cds, offset = [], [], 0
    crc = zlib.crc32(b"x")
    for i in range(entries):
        name = f"{i:x}".encode()
        rec = _local(name, 0, crc, 1, 1) + b"x"
        parts.append(rec)
        cds.append(_central(name, 0, crc, 1, 1, offset))
        offset += len(rec)
    cd = b"".join(cds)
    path.write_bytes(b"".join(parts) + cd + _end(1 if lie else entries, len(cd), offset))


def _rss_growth_mib(z: Path) -> tuple[float, str]:
    """``add_inputs(expand([z]))`` in a fresh interpreter under a 2 GiB address-space limit:
    (how far its peak RSS grew past the imports, in MiB; its stdout). The peak is VmHWM of
    /proc/self/status: ru_maxrss would start at the parent's size (kept across fork+exec)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux)")
    code = (
        "import re, resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "def peak():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1))\n"
        "from pathlib import Path\n"
        "from kinship.ingest import add_inputs, expand\n"
        "from kinship.pipeline import Labels\n"
        "from kinship.store.memory import MemoryStore\n"
        "before = peak()\n"
        f"r = add_inputs(MemoryStore(), expand([Path({str(z)!r})], Labels()))\n"
        "print('FAILED', r.failed[0].reason)\n"
        "print('GROWTH', peak() - before)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.rsplit("GROWTH", 1)[1]) / 1024, res.stdout  # VmHWM: KiB


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def good(bins: dict[str, Path]) -> dict[str, bytes]:
    return {"a/netsh_x86.exe": bins["netsh_x86.exe"].read_bytes(),
            "other_elf64": bins["other_elf64"].read_bytes()}


def _report(items: Iterator[SampleInput | Failure], store: MemoryStore | None = None
            ) -> AddReport:
    return add_inputs(store or MemoryStore(), items)


# ---- item 1: damaged zips never abort the batch -----------------------------------------


def test_damaged_deflate_member_is_a_failure_not_an_abort(
        tmp_path: Path, good: dict[str, bytes], bins: dict[str, Path]) -> None:
    z = tmp_path / "damaged.zip"
    _damaged_deflate_zip(z, good)
    report = _report(expand([z, bins["checksum_x64.exe"]], Labels()))
    names = sorted(a.name for a in report.added)
    assert len(report.added) == 3, (names, report.failed)
    assert [f.name for f in report.failed] == [f"{z}:bad.exe"]
    failure = report.failed[0]
    assert failure.error == "CorruptFileError" and "damaged zip member" in failure.reason
    assert "\n" not in failure.reason


@pytest.mark.parametrize("damage", ["truncated", "central", "garbage"])
def test_damaged_archive_is_one_failure(tmp_path: Path, good: dict[str, bytes],
                                        bins: dict[str, Path], damage: str) -> None:
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good.items():
            zf.writestr(name, data)
    raw = bytearray(z.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "central":  # central directory offset points into the data
        raw[-6:-2] = struct.pack("<L", 7)
    else:
        raw = raw[:4] + bytearray(os.urandom(len(raw) - 4))
    z.write_bytes(bytes(raw))
    report = _report(expand([z, bins["checksum_x64.exe"]], Labels()))
    assert [a.name for a in report.added] == ["checksum_x64.exe"]
    assert len(report.failed) >= 1 and all(f.name.startswith(str(z)) for f in report.failed)


def test_every_decompression_error_is_a_corrupt_file_error(tmp_path: Path) -> None:
    z = tmp_path / "d.zip"
    _damaged_deflate_zip(z, {}, "x.bin")
    with pytest.raises(CorruptFileError, match="damaged zip member"):
        list(iter_archive(z))
    ref = MemberRef(str(z), 0, "x.bin")
    with pytest.raises(CorruptFileError) as info:
        load_input(SampleInput(name=f"{z}:x.bin", member=ref))
    assert "zlib" in info.value.reason or "Error" in info.value.reason


# ---- item 4: bounded memory, overlapping entries, bombs ----------------------------------


def test_members_are_lazy_references(tmp_path: Path, good: dict[str, bytes]) -> None:
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good.items():
            zf.writestr(name, data)
    items = [i for i in expand([z], Labels()) if isinstance(i, SampleInput)]
    assert len(items) == 2
    for item in items:
        assert isinstance(item.member, MemberRef) and item.data is None  # no bytes held
        ref = pickle.loads(pickle.dumps(item.member))  # what a -j N worker receives
        assert isinstance(ref, MemberRef) and ref == item.member
        assert len(pickle.dumps(item)) < 1024
    by_name = {i.name.rsplit(":", 1)[1]: i for i in items}
    ref = by_name["a/netsh_x86.exe"].member
    assert ref is not None and read_member(ref) == good["a/netsh_x86.exe"]
    assert load_input(by_name["other_elf64"]).format.value == "elf"


def test_members_read_by_worker_processes(tmp_path: Path, good: dict[str, bytes]) -> None:
    """-j 2: each worker receives a MemberRef and reads its member itself."""
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in good.items():
            zf.writestr(name, data)
    report = add_inputs(MemoryStore(), expand([z], Labels()), jobs=2)
    assert sorted(a.name for a in report.added) == [f"{z}:a/netsh_x86.exe", f"{z}:other_elf64"]
    assert all(a.n_functions > 0 for a in report.added)


def test_overlapping_entries_rejected(tmp_path: Path) -> None:
    z = tmp_path / "overlap.zip"
    _overlap_bomb(z, 2, 1000)
    with pytest.raises(FileTooLargeError, match="overlap") as info:
        list_archive(z)
    assert info.value.path == str(z) and "zip bomb" in info.value.reason
    # quoted overlap: the second local header lies inside the first entry's data
    q = tmp_path / "quoted.zip"
    inner = _local(b"b", 0, zlib.crc32(b"y"), 1, 1) + b"y"
    first = _local(b"a", 0, zlib.crc32(inner), len(inner), len(inner))
    cd = (_central(b"a", 0, zlib.crc32(inner), len(inner), len(inner), 0)
          + _central(b"b", 0, zlib.crc32(b"y"), 1, 1, len(first)))
    q.write_bytes(first + inner + cd + _end(2, len(cd), len(first) + len(inner)))
    with pytest.raises(FileTooLargeError, match="overlap"):
        list_archive(q)
    report = _report(expand([z, q], Labels()))
    assert sorted(f.name for f in report.failed) == sorted([str(z), str(q)])
    assert all("zip bomb" in f.reason for f in report.failed)


def test_overlap_bomb_memory(tmp_path: Path) -> None:
    """~200 KB of zip whose 4,000 entries share one deflate stream of 1 MiB of zeros (each
    member under the ratio check's minimum size, 4,000 MiB in all: inflating every member
    first took gigabytes): refused from the layout, nothing inflated."""
    z = tmp_path / "overlap.zip"
    _overlap_bomb(z, 4000, 1024 * 1024)
    assert z.stat().st_size < 250_000
    growth, out = _rss_growth_mib(z)
    assert "zip bomb" in out and "overlap" in out
    assert growth < 50, growth


@pytest.mark.parametrize("lie", [False, True])
def test_many_tiny_members_memory(tmp_path: Path, lie: bool) -> None:
    """500,000 one-byte members (43 MB of zip; the end record truthful, or claiming one entry):
    refused from the end record before the central directory is parsed (parsing it first
    cost ~250 MiB and seconds)."""
    z = tmp_path / "many.zip"
    _many_members(z, 500_000, lie=lie)
    growth, out = _rss_growth_mib(z)
    assert ("MAX_ZIP_DIRECTORY" if lie else "members, limit is") in out
    assert growth < 50, growth


def test_member_count_and_total_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    z = tmp_path / "many.zip"
    _many_members(z, 50, lie=True)
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBERS", 20)
    monkeypatch.setattr(limits, "MAX_ZIP_DIRECTORY", 10**9)
    with pytest.raises(FileTooLargeError, match="members, limit is 20"):
        list_archive(z)  # the lying end record passes; the parsed directory does not


def test_gigabyte_bomb_says_bomb(tmp_path: Path) -> None:
    """A 1 GiB member of zeros (~1 MB of zip) is a failure 'rejected as a zip bomb', not
    'nothing to add'. Built by streaming, never in memory."""
    z = tmp_path / "bomb.zip"
    chunk = bytes(16 * 1024 * 1024)
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("zeros.bin", "w", force_zip64=True) as fh:
        for _ in range(64):
            fh.write(chunk)
    report = _report(expand([z], Labels()))
    assert report.added == []
    [failure] = report.failed
    assert failure.name == f"{z}:zeros.bin" and failure.error == "FileTooLargeError"
    assert "rejected as a zip bomb" in failure.reason
    runner = CliRunner()
    res = runner.invoke(main, ["add", str(z), "--db", str(tmp_path / "k.db")])
    assert res.exit_code == 3 and "zip bomb" in res.output, res.output
    assert "nothing to add" not in res.output


def test_ratio_enforced_on_inflated_bytes(tmp_path: Path) -> None:
    """A member whose header understates its size: the ratio is checked while inflating."""
    z = tmp_path / "liar.zip"
    data = bytes(8 * 1024 * 1024)
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z", data)
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("z")
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<L", raw, cd + 24, 1000)  # central directory: file_size 1000
    struct.pack_into("<L", raw, info.header_offset + 22, 1000)
    z.write_bytes(bytes(raw))
    [item] = list(expand([z], Labels()))
    assert isinstance(item, SampleInput)  # 1000 bytes declared: looks harmless
    assert isinstance(item.member, MemberRef)
    inflated = 0
    with pytest.raises(CorruptFileError, match="CRC"):  # the cut stream fails its CRC ...
        for chunk in archive.member_chunks(item.member):
            inflated += len(chunk)
    assert inflated <= 1000  # ... after no more than the declared bytes were inflated


def test_unsafe_member_names_are_reported(tmp_path: Path, good: dict[str, bytes]) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../x.exe", b"MZ")
        zf.writestr("/etc/passwd", b"root")
        zf.writestr("ok/other_elf64", good["other_elf64"])
    report = _report(expand([z], Labels()))
    assert [a.name for a in report.added] == [f"{z}:ok/other_elf64"]
    assert sorted(w.name for w in report.warnings) == sorted(
        [f"{z}:../../x.exe", f"{z}:/etc/passwd"])
    assert all(w.error == "unsafe_name" for w in report.warnings)
    as_json = report.to_dict()
    assert as_json["n_warnings"] == 2 and as_json["warnings"][0]["reason"]
    assert report.partial


# ---- item 6: FIFOs, devices, sockets never hang ------------------------------------------


def _run_cli(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kinship.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "socket", "/dev/null"])
def test_special_files_refused_without_opening(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif kind == "socket":
        target = tmp_path / "sock"
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(target))  # the socket file stays
    else:
        target = Path(kind)
        if not target.exists():
            pytest.skip(f"no {kind}")
    items = list(expand([target], Labels()))
    [failure] = items
    assert isinstance(failure, Failure) and "not a regular file" in failure.reason
    with pytest.raises(InputError, match="not a regular file"):
        load_file(target)
    runner = CliRunner()
    res = runner.invoke(main, ["add", str(target), "--db", str(tmp_path / "k.db")])
    assert res.exit_code == 3, res.output
    assert "not a regular file" in res.output


def test_fifo_cli_subprocess_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    res = _run_cli(["add", str(fifo), "--db", str(tmp_path / "k.db")], timeout=60)
    assert res.returncode == 3 and "not a regular file" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


# ---- item 7 --------------------------------------------------------------------------------


def test_truncated_pe_named_like_a_dump(tmp_path: Path, bins: dict[str, Path]) -> None:
    dump = tmp_path / "sample_0x400000"
    data = bins["netsh_x86.exe"].read_bytes()
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    dump.write_bytes(data[:e_lfanew])  # cut before the PE header: MZ, then nothing usable
    with pytest.raises(CorruptFileError, match="truncated"):
        load_file(dump)
    report = _report(expand([dump], Labels()))
    assert report.added == [] and report.failed[0].error == "CorruptFileError"


def test_pe_cut_inside_its_code_is_stored_with_a_warning(tmp_path: Path,
                                                         bins: dict[str, Path]) -> None:
    """Headers whole, sections cut short (a partial download, a carved file): the code that
    is there is evidence, so it is stored, and the report says it is truncated."""
    whole = bins["netsh_x86.exe"]
    cut = tmp_path / "sample_0x400000"
    cut.write_bytes(whole.read_bytes()[:3000])
    report = _report(expand([cut, whole], Labels()))
    assert {a.name for a in report.added} == {cut.name, whole.name}
    [notice] = report.warnings
    assert notice.name == str(cut) and "truncated" in notice.reason
    assert "3000" in notice.reason


def test_raw_dump_without_functions_is_not_stored(tmp_path: Path) -> None:
    dump = tmp_path / "zeros_0x400000"
    dump.write_bytes(bytes(4096))
    report = _report(expand([dump], Labels()))
    assert report.added == []
    [failure] = report.failed
    assert "no functions" in failure.reason


def _unreadable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``folder`` unreadable: chmod 000, and (as root, where chmod stops nothing) os.scandir
    refusing it the way the kernel would."""
    folder.chmod(0)
    if os.geteuid() == 0:
        real = os.scandir

        def scandir(path: str | os.PathLike[str]) -> object:
            if Path(path) == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr("kinship.ingest.os.scandir", scandir)


def test_unreadable_subfolder_reported(tmp_path: Path, bins: dict[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "refs"
    (root / "fam" / "locked").mkdir(parents=True)
    (root / "fam" / "locked" / "x.exe").write_bytes(bins["netsh_x86.exe"].read_bytes())
    (root / "fam" / "ok.exe").write_bytes(bins["checksum_x64.exe"].read_bytes())
    _unreadable(root / "fam" / "locked", monkeypatch)
    try:
        report = _report(expand([root], Labels()))
    finally:
        (root / "fam" / "locked").chmod(0o755)
    assert [a.name for a in report.added] == ["ok.exe"]
    [failure] = report.failed
    assert failure.name == str(root / "fam" / "locked") and "cannot read folder" in failure.reason


def test_symlinks_out_of_the_folder(tmp_path: Path, bins: dict[str, Path]) -> None:
    outside = tmp_path / "outside.exe"
    outside.write_bytes(bins["netsh_x86.exe"].read_bytes())
    root = tmp_path / "refs"
    root.mkdir()
    (root / "inside.exe").write_bytes(bins["checksum_x64.exe"].read_bytes())
    (root / "link.exe").symlink_to(outside)
    (root / "inner_link.exe").symlink_to(root / "inside.exe")
    (root / "loop").symlink_to(root)
    report = _report(expand([root], Labels()))
    # a link inside the folder is followed (the same bytes twice: one duplicate)
    assert [a.name for a in report.added] == ["inner_link.exe"]
    assert report.duplicates == [str(root / "inside.exe")]
    assert [w.name for w in report.warnings] == [str(root / "link.exe")]
    [w] = report.warnings
    assert w.error == "symlink" and "--follow-symlinks" in w.reason
    followed = _report(expand([root], Labels(), follow_symlinks=True))
    assert sorted(a.name for a in followed.added) == ["inner_link.exe", "link.exe"]
    res = CliRunner().invoke(main, ["add", str(root), "--follow-symlinks", "--json",
                                    "--db", str(tmp_path / "k.db")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_added"] == 2


class _RacingStore(MemoryStore):
    """A store where another run stores each sample (with its own labels) between this run's
    duplicate check and its write."""

    def __init__(self, other: MemoryStore) -> None:
        super().__init__()
        self.other = other

    def has_sample(self, sha256: str) -> bool:
        return False

    def add_sample(self, rec, functions, *, replace=False, strings=()):  # type: ignore[no-untyped-def]
        if not super().has_sample(rec.sha256):
            theirs = type(rec)(**{**rec.__dict__, "family": "theirs", "name": "their.exe"})
            super().add_sample(theirs, functions, strings=strings)
        return super().add_sample(rec, functions, replace=replace, strings=strings)


def test_concurrent_add_reports_the_other_run(bins: dict[str, Path]) -> None:
    store = _RacingStore(MemoryStore())
    item = SampleInput(name="mine.exe", path=bins["netsh_x86.exe"], labels=Labels(family="mine"))
    report = add_inputs(store, [item])
    assert report.added == []
    assert report.duplicates == ["mine.exe"]
    [w] = report.warnings
    assert w.error == "other_run" and "labels were not applied" in w.reason
    assert store.get_sample(store.samples()[0].sha256).family == "theirs"


# ---- item 5: one folder of everything, end to end -----------------------------------------


def test_add_folder_of_hostile_files_end_to_end(
        tmp_path: Path, bins: dict[str, Path], good: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "drop"
    fam = root / "fam" / "2020"
    fam.mkdir(parents=True)
    goods = ["netsh_x86.exe", "other_elf64", "checksum_x64.exe"]
    for name in goods:
        (fam / name).write_bytes(bins[name].read_bytes())
    _damaged_deflate_zip(root / "damaged.zip", {"m/crt_x64.exe": bins["crt_x64.exe"].read_bytes()})
    _overlap_bomb(root / "overlap.zip", 500, 1024 * 1024)
    (root / "truncated.zip").write_bytes((root / "damaged.zip").read_bytes()[:300])
    with zipfile.ZipFile(root / "names.zip", "w") as zf:
        zf.writestr("../../x.exe", b"MZ")
        zf.writestr("[/]\x1b]0;pwned\x07.exe", b"MZ\x00")
    os.mkfifo(root / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    (root / "tiny_0x400000").write_bytes(bins["netsh_x86.exe"].read_bytes()[:100])
    (root / "empty.exe").write_bytes(b"")
    (root / "[bold]x\x1b[2J.exe").write_bytes(b"MZ" + os.urandom(30))
    outside = tmp_path / "secret.exe"
    outside.write_bytes(bins["other_x64.exe"].read_bytes())
    (root / "out.exe").symlink_to(outside)
    (root / "locked").mkdir()
    (root / "locked" / "y.exe").write_bytes(bins["crt_elf64"].read_bytes())
    _unreadable(root / "locked", monkeypatch)
    try:
        res = CliRunner().invoke(main, ["add", str(root), "--db", str(tmp_path / "k.db")])
        js = CliRunner().invoke(main, ["add", str(root), "--json",
                                       "--db", str(tmp_path / "k2.db")])
    finally:
        (root / "locked").chmod(0o755)
    assert res.exit_code == 7, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert "\x1b" not in res.output and "\\x1b" in res.output  # escapes shown, not sent
    data = json.loads(js.output)
    assert js.exit_code == 7
    added = sorted(a["name"] for a in data["added"])
    assert added == sorted([f"{root / 'damaged.zip'}:m/crt_x64.exe", *goods])
    failed = {Path(f["name"]).name: f["reason"] for f in data["failed"]}
    for bad in ("damaged.zip:bad.exe", "overlap.zip", "truncated.zip", "pipe", "sock",
                "tiny_0x400000", "empty.exe", "[bold]x\x1b[2J.exe", "locked"):
        assert bad in failed, (bad, sorted(failed))
        assert failed[bad]
    warned = {w["name"]: w["reason"] for w in data["warnings"]}
    assert str(root / "out.exe") in warned
    assert f"{root / 'names.zip'}:../../x.exe" in warned
    assert "secret.exe" not in added
    assert data["n_failed"] == len(data["failed"]) and "n_warnings" in data


def test_report_json_backward_compatible() -> None:
    r = AddReport(failed=[Failure("a", "b", "InputError")],
                  warnings=[Notice("c", "d", "symlink")])
    d = r.to_dict()
    for key in ("added", "duplicates", "failed", "n_added", "n_duplicates", "n_failed",
                "n_functions", "n_instructions", "seconds", "instructions_per_second"):
        assert key in d
    assert d["failed"] == [{"name": "a", "reason": "b", "error": "InputError"}]
    assert d["warnings"] == [{"name": "c", "reason": "d", "error": "symlink"}]


def test_archive_cache_survives_changes(tmp_path: Path, good: dict[str, bytes]) -> None:
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("one", good["other_elf64"])
    assert read_member(MemberRef(str(z), 0, "one")) == good["other_elf64"]
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("two", b"MZ")
    with pytest.raises(CorruptFileError, match="changed"):
        read_member(MemberRef(str(z), 0, "one"))
    archive.close_archives()
