"""Loaders: PE/ELF/dump parsing, zip archives and hostile input (src/kinship/binary/)."""

from __future__ import annotations

import os
import struct
import time
import zipfile
from pathlib import Path

import pefile
import pytest
import pyzipper
from iced_x86 import Decoder, FlowControl, OpKind

from kinship.binary import limits
from kinship.binary.archive import iter_archive
from kinship.binary.load import is_archive, load_bytes, load_file
from kinship.binary.model import Arch, Binary, Format
from kinship.exceptions import (
    CorruptFileError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)

FORMATS = [
    ("netsh_x86.exe", Format.PE, Arch.X86),
    ("netsh_x64.exe", Format.PE, Arch.X64),
    ("netsh_v2_x64.exe", Format.PE, Arch.X64),
    ("netsh_x64_dll.dll", Format.PE, Arch.X64),
    ("other_x86.exe", Format.PE, Arch.X86),
    ("netsh_elf64", Format.ELF, Arch.X64),
    ("netsh_elf32", Format.ELF, Arch.X86),
    ("netsh_elf64_stripped", Format.ELF, Arch.X64),
    ("other_elf64", Format.ELF, Arch.X64),
]


def _thunk_names(binary: Binary) -> set[str]:
    return set(binary.api_thunks.values())


def _call_targets(binary: Binary, start: int, size: int) -> list[int]:
    code = binary.read(start, size)
    return [
        ins.near_branch_target
        for ins in Decoder(binary.bitness, code, ip=start)
        if (ins.flow_control == FlowControl.CALL and ins.op0_kind == OpKind.NEAR_BRANCH64)
        or (ins.flow_control == FlowControl.CALL and ins.op0_kind == OpKind.NEAR_BRANCH32)
    ]


@pytest.mark.parametrize(("name", "fmt", "arch"), FORMATS)
def test_formats_and_arches(bins: dict[str, Path], name: str, fmt: Format, arch: Arch) -> None:
    b = load_file(bins[name])
    assert (b.format, b.arch) == (fmt, arch)
    assert (b.entry_point is not None and b.is_executable(b.entry_point)) or name.endswith(".dll")
    assert any(s.executable for s in b.sections)
    assert all(0.0 <= s.entropy <= 8.0 for s in b.sections)
    assert len(b.hashes.sha256) == 64
    assert b.imports and b.api_thunks
    assert not any("possibly packed" in w for w in b.warnings)


def test_pe_imports_iat_slots(bins: dict[str, Path]) -> None:
    for name in ("netsh_x86.exe", "netsh_x64.exe"):
        b = load_file(bins[name])
        pe = pefile.PE(str(bins[name]), fast_load=True)
        iat = pe.OPTIONAL_HEADER.DATA_DIRECTORY[12]
        iat_start = b.image_base + iat.VirtualAddress
        create = [i for i in b.imports if (i.library, i.name) == ("kernel32.dll", "CreateProcessA")]
        assert len(create) == 1
        assert iat_start <= create[0].slot < iat_start + iat.Size
        assert b.api_thunks[create[0].slot] == "kernel32.dll!CreateProcessA"
        assert {"kernel32.dll!WaitForSingleObject", "kernel32.dll!Sleep"} <= _thunk_names(b)
        assert b.imphash == pefile.PE(str(bins[name])).get_imphash()
        # the fixtures are reproducible builds (TimeDateStamp 0 -> None)
        assert b.compile_time is None or b.compile_time.tzinfo is not None
        # mingw keeps a COFF symbol table
        assert "run_command" in {s.name.lstrip("_") for s in b.symbols}


def test_pe_exports_of_dll(bins: dict[str, Path]) -> None:
    b = load_file(bins["netsh_x64_dll.dll"])
    names = {e.name: e.va for e in b.exports}
    assert {"run_command", "decode_config", "compute_jitter", "hash_api_name"} <= set(names)
    assert all(b.is_executable(va) for va in names.values())


def test_pdata_hints_on_x64_pe(bins: dict[str, Path]) -> None:
    b = load_file(bins["netsh_x64.exe"])
    assert len(b.function_hints) > 20
    assert all(b.is_executable(va) for va in b.function_hints)
    run = next(s.va for s in b.symbols if s.name == "run_command")
    assert run in b.function_hints
    assert load_file(bins["netsh_x86.exe"]).function_hints == []  # no .pdata in PE32


def test_elf_symbols_and_eh_frame_hints(bins: dict[str, Path]) -> None:
    b = load_file(bins["netsh_elf64"])
    syms = {s.name: s for s in b.symbols}
    assert syms["main"].size > 0 and syms["run_command"].size > 0
    assert syms["main"].va in b.function_hints
    assert syms["run_command"].va in b.function_hints
    stripped = load_file(bins["netsh_elf64_stripped"])
    assert stripped.symbols == []
    assert stripped.function_hints == b.function_hints


@pytest.mark.parametrize("name", ["netsh_elf64", "netsh_elf32", "netsh_elf64_stripped"])
def test_elf_plt_stubs_resolve(bins: dict[str, Path], name: str) -> None:
    b = load_file(bins[name])
    imports = {i.slot: i for i in b.imports}
    assert all(b.api_thunks[slot].endswith("!" + i.name) for slot, i in imports.items())
    stubs = {va: n for va, n in b.api_thunks.items() if b.is_executable(va)}
    assert stubs, "no PLT stub resolved"
    assert all(n.startswith("libc.so.6!") for n in stubs.values())
    text = next(s for s in b.sections if s.name == ".text")
    called = {b.api_thunks[t] for t in _call_targets(b, text.va, text.raw_size) if t in stubs}
    assert any("printf" in n for n in called), called


def test_elf_main_calls_reach_imports(bins: dict[str, Path]) -> None:
    b = load_file(bins["netsh_elf64"])
    main = next(s for s in b.symbols if s.name == "main")
    targets = _call_targets(b, main.va, main.size)
    assert any(t in b.api_thunks for t in targets)


def test_lua_libraries(lua_libs: dict[str, Path]) -> None:
    for version, path in sorted(lua_libs.items()):
        start = time.perf_counter()
        b = load_file(path)
        elapsed = time.perf_counter() - start
        assert (b.format, b.arch) == (Format.ELF, Arch.X64)
        exports = {e.name for e in b.exports}
        assert {"lua_pushnumber", "luaL_newstate"} <= exports, version
        assert len(b.function_hints) > 300
        assert any(n.endswith("!malloc") or n.endswith("!realloc") for n in _thunk_names(b))
        assert elapsed < 1.0  # typically ~5 ms; generous for loaded CI machines


def _mapped_image(exe: Path) -> tuple[bytes, int]:
    """The PE file laid out as the Windows loader maps it (headers + sections at their RVAs)."""
    pe = pefile.PE(str(exe), fast_load=True)
    raw = exe.read_bytes()
    image = bytearray(pe.OPTIONAL_HEADER.SizeOfImage)
    image[: pe.OPTIONAL_HEADER.SizeOfHeaders] = raw[: pe.OPTIONAL_HEADER.SizeOfHeaders]
    for s in pe.sections:
        size = min(s.SizeOfRawData, s.Misc_VirtualSize or s.SizeOfRawData)
        image[s.VirtualAddress : s.VirtualAddress + size] = raw[
            s.PointerToRawData : s.PointerToRawData + size
        ]
    return bytes(image), pe.OPTIONAL_HEADER.ImageBase


def test_mapped_pe_dump(bins: dict[str, Path], tmp_path: Path) -> None:
    exe = bins["netsh_x86.exe"]
    image, base = _mapped_image(exe)
    ref = load_file(exe)
    by_base = load_bytes(image, "netsh.bin", base=base)
    dump_file = tmp_path / f"{'a' * 64}_dump_0x{base:08x}"
    dump_file.write_bytes(image)
    by_name = load_file(dump_file)
    for b in (by_base, by_name):
        assert (b.format, b.arch, b.image_base) == (Format.DUMP, Arch.X86, base)
        assert b.entry_point == ref.entry_point
        assert b.api_thunks == ref.api_thunks
        assert b.read(ref.entry_point or 0, 32) == ref.read(ref.entry_point or 0, 32)
        assert all(s.offset == s.va - base for s in b.sections)


def test_mapped_pe_dump_rebased(bins: dict[str, Path]) -> None:
    image, base = _mapped_image(bins["netsh_x64.exe"])
    ref = load_file(bins["netsh_x64.exe"])
    b = load_bytes(image, "x64.dmp", base=0x10000000)
    assert b.image_base == 0x10000000 and b.arch is Arch.X64
    slot = next(i.slot for i in b.imports if i.name == "CreateProcessA")
    ref_slot = next(i.slot for i in ref.imports if i.name == "CreateProcessA")
    assert slot - 0x10000000 == ref_slot - base
    assert len(b.function_hints) == len(ref.function_hints)


def test_headerless_dump(tmp_path: Path) -> None:
    code = bytes.fromhex("558bec83ec10c9c3") * 64
    b = load_bytes(code, "shellcode.bin", base=0x1000)
    assert (b.format, b.arch, b.image_base) == (Format.DUMP, Arch.X86, 0x1000)
    assert len(b.sections) == 1 and b.sections[0].executable and b.sections[0].writable
    assert b.read(0x1000, 3) == b"\x55\x8b\xec"
    x64 = load_bytes(code, "sc.bin", base=0, arch=Arch.X64)
    assert x64.arch is Arch.X64
    path = tmp_path / "region_0x7ff00000"
    path.write_bytes(code)
    assert load_file(path).image_base == 0x7FF00000
    with pytest.raises(UnsupportedFormatError, match="not a PE or ELF"):
        load_bytes(code, "shellcode.bin")


def test_archive_plain_and_infected(bins: dict[str, Path], tmp_path: Path) -> None:
    exe = bins["netsh_x86.exe"].read_bytes()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dir/", b"")
        zf.writestr("dir/netsh.exe", exe)
        zf.writestr("../evil.exe", b"MZ")
    locked = tmp_path / "locked.zip"
    with pyzipper.AESZipFile(
        locked, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(b"infected")
        zf.writestr("netsh.exe", exe)
    assert is_archive(plain) and is_archive(locked) and not is_archive(bins["netsh_x86.exe"])
    assert list(iter_archive(plain)) == [("dir/netsh.exe", exe)]
    assert list(iter_archive(locked)) == [("netsh.exe", exe)]
    name, data = next(iter_archive(locked))
    assert load_bytes(data, name).arch is Arch.X86

    secret = tmp_path / "secret.zip"
    with pyzipper.AESZipFile(secret, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"not-infected")
        zf.writestr("a.exe", exe)
    with pytest.raises(InputError, match="unknown password"):
        list(iter_archive(secret))


def test_archive_zip_bomb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.bin", bytes(16 * 1024 * 1024))
    with pytest.raises(FileTooLargeError, match="zip bomb"):
        list(iter_archive(bomb))


def test_archive_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}", os.urandom(100))
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBERS", 4)
    with pytest.raises(FileTooLargeError, match="members"):
        list(iter_archive(many))
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBERS", 100)
    monkeypatch.setattr(limits, "MAX_ZIP_TOTAL", 250)
    with pytest.raises(FileTooLargeError, match="MAX_ZIP_TOTAL"):
        list(iter_archive(many))
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"PK\x03\x04" + b"\xff" * 50)
    with pytest.raises(CorruptFileError):
        list(iter_archive(not_zip))


def test_bad_inputs(bins: dict[str, Path], tmp_path: Path) -> None:
    cases: list[tuple[bytes, type[InputError], str]] = [
        (b"", CorruptFileError, "empty"),
        (bins["netsh_x86.exe"].read_bytes()[:200], CorruptFileError, "truncated"),
        (bins["netsh_x64.exe"].read_bytes()[:0x3C], CorruptFileError, "truncated"),
        (bins["netsh_elf64"].read_bytes()[:40], CorruptFileError, "truncated"),
        (os.urandom(4096).replace(b"MZ", b"mz"), UnsupportedFormatError, "not a PE or ELF"),
        (b"hello, this is a text file\n" * 20, UnsupportedFormatError, "text"),
    ]
    for i, (data, error, reason) in enumerate(cases):
        path = tmp_path / f"bad{i}"
        path.write_bytes(data)
        with pytest.raises(error, match=reason) as info:
            load_file(path)
        assert "\n" not in str(info.value) and info.value.path == str(path)
    with pytest.raises(InputError, match="directory"):
        load_file(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load_file(tmp_path / "missing.exe")


def test_corrupt_import_table_is_a_warning(bins: dict[str, Path]) -> None:
    data = bytearray(bins["netsh_x86.exe"].read_bytes())
    pe = pefile.PE(data=bytes(data), fast_load=True)
    entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[1]  # import directory -> past the end of file
    struct.pack_into("<I", data, entry.get_file_offset(), 0x7FFF0000)
    b = load_bytes(bytes(data), "broken.exe")
    assert b.arch is Arch.X86 and b.sections and b.imports == []
    assert b.warnings


def test_oversized_file(bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_FILE_SIZE", 1000)
    with pytest.raises(FileTooLargeError, match="MAX_FILE_SIZE"):
        load_file(bins["netsh_x86.exe"])
    with pytest.raises(FileTooLargeError):
        load_bytes(b"\0" * 2000, "big.bin", base=0)


def test_packed_section_warning(bins: dict[str, Path]) -> None:
    data = bytearray(bins["netsh_x86.exe"].read_bytes())
    b = load_bytes(bytes(data), "x.exe")
    text = next(s for s in b.sections if s.name == ".text")
    data[text.offset : text.offset + text.raw_size] = os.urandom(text.raw_size)
    packed = load_bytes(bytes(data), "packed.exe")
    assert any("possibly packed" in w for w in packed.warnings)
