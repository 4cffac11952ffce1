"""The fixtures are what MANIFEST.md says they are: format and machine read from the header
bytes, the netsh strings only in the netsh builds, Debian's Lua libraries for each version."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PE_MACHINE_I386 = 0x014C
PE_MACHINE_AMD64 = 0x8664
PE_OPT_MAGIC_PE32 = 0x10B
PE_OPT_MAGIC_PE32PLUS = 0x20B
PE_FILE_DLL = 0x2000
ELF_MACHINE_386 = 3
ELF_MACHINE_X86_64 = 62
ELF_TYPE_DYN = 3

NETSH_OPEN = b'netsh firewall add portopening TCP %d "%s"'
NETSH_CLOSE = b"netsh firewall delete portopening TCP %d"
NETSH_MARKERS = (b"netsh", b"portopening", b"CreateProcessA")


@dataclass(frozen=True)
class Header:
    """What the first bytes of an executable say about it."""

    format: str  # "PE32", "PE32+", "ELF32", "ELF64"
    machine: int
    is_dll: bool = False
    elf_type: int = 0


@dataclass(frozen=True)
class Expected:
    format: str
    machine: int
    is_dll: bool = False
    has_symtab: bool | None = None  # ELF only: .symtab present?


EXPECTED: dict[str, Expected] = {
    "netsh_x86.exe": Expected("PE32", PE_MACHINE_I386),
    "netsh_x64.exe": Expected("PE32+", PE_MACHINE_AMD64),
    "netsh_v2_x64.exe": Expected("PE32+", PE_MACHINE_AMD64),
    "netsh_x64_dll.dll": Expected("PE32+", PE_MACHINE_AMD64, is_dll=True),
    "netsh_elf64": Expected("ELF64", ELF_MACHINE_X86_64, has_symtab=True),
    "netsh_elf32": Expected("ELF32", ELF_MACHINE_386, has_symtab=True),
    "netsh_elf64_stripped": Expected("ELF64", ELF_MACHINE_X86_64, has_symtab=False),
    "netsh_v2_elf64": Expected("ELF64", ELF_MACHINE_X86_64, has_symtab=True),
    "netsh_elf64_clang": Expected("ELF64", ELF_MACHINE_X86_64, has_symtab=True),
    "other_x86.exe": Expected("PE32", PE_MACHINE_I386),
    "other_x64.exe": Expected("PE32+", PE_MACHINE_AMD64),
    "other_elf64": Expected("ELF64", ELF_MACHINE_X86_64, has_symtab=True),
}


def read_header(data: bytes) -> Header:
    """Parse just enough of a PE or ELF header to say what the file is."""
    if data[:2] == b"MZ":
        (pe_off,) = struct.unpack_from("<I", data, 0x3C)
        assert data[pe_off : pe_off + 4] == b"PE\0\0", "MZ without a PE signature"
        machine, _, _, _, _, _, characteristics = struct.unpack_from("<HHIIIHH", data, pe_off + 4)
        (opt_magic,) = struct.unpack_from("<H", data, pe_off + 24)
        kinds = {PE_OPT_MAGIC_PE32: "PE32", PE_OPT_MAGIC_PE32PLUS: "PE32+"}
        return Header(kinds[opt_magic], machine, bool(characteristics & PE_FILE_DLL))
    if data[:4] == b"\x7fELF":
        ei_class, ei_data = data[4], data[5]
        assert ei_data == 1, "expected little-endian ELF"
        e_type, e_machine = struct.unpack_from("<HH", data, 16)
        return Header({1: "ELF32", 2: "ELF64"}[ei_class], e_machine, elf_type=e_type)
    raise AssertionError(f"neither PE nor ELF: {data[:4]!r}")


def elf_section_names(data: bytes) -> set[str]:
    """Section names from the ELF section header string table."""
    is64 = data[4] == 2
    if is64:
        e_shoff, = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        name_fmt, off_fmt, off_at = "<I", "<Q", 0x18
    else:
        e_shoff, = struct.unpack_from("<I", data, 0x20)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x2E)
        name_fmt, off_fmt, off_at = "<I", "<I", 0x10
    str_hdr = e_shoff + e_shstrndx * e_shentsize
    (strtab_off,) = struct.unpack_from(off_fmt, data, str_hdr + off_at)
    names = set()
    for i in range(e_shnum):
        (name_off,) = struct.unpack_from(name_fmt, data, e_shoff + i * e_shentsize)
        start = strtab_off + name_off
        names.add(data[start : data.index(b"\0", start)].decode())
    return names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_format_and_machine(bins: dict[str, Path], name: str) -> None:
    data = bins[name].read_bytes()
    header = read_header(data)
    want = EXPECTED[name]
    assert (header.format, header.machine, header.is_dll) == (want.format, want.machine,
                                                              want.is_dll)
    if want.has_symtab is not None:
        assert header.elf_type == ELF_TYPE_DYN  # Debian gcc builds PIE by default
        assert (".symtab" in elf_section_names(data)) is want.has_symtab


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("netsh")))
def test_netsh_strings_present(bins: dict[str, Path], name: str) -> None:
    data = bins[name].read_bytes()
    assert NETSH_OPEN in data
    assert NETSH_CLOSE in data


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("other")))
def test_netsh_strings_absent_from_other(bins: dict[str, Path], name: str) -> None:
    data = bins[name].read_bytes()
    for marker in NETSH_MARKERS:
        assert marker not in data, marker


def test_v2_is_a_different_version(bins: dict[str, Path]) -> None:
    v1 = bins["netsh_x64.exe"].read_bytes()
    v2 = bins["netsh_v2_x64.exe"].read_bytes()
    assert b"schtasks /create" in v2 and b"schtasks /create" not in v1
    assert b"2.1.7" in v2 and b"1.4.2" in v1


def test_pe_imports_name_the_process_apis(bins: dict[str, Path]) -> None:
    for name in ("netsh_x86.exe", "netsh_x64.exe", "netsh_x64_dll.dll"):
        data = bins[name].read_bytes()
        for api in (b"CreateProcessA", b"WaitForSingleObject", b"CloseHandle", b"Sleep"):
            assert api in data, (name, api)
    dll = bins["netsh_x64_dll.dll"].read_bytes()
    for export in (b"open_port", b"close_port", b"run_command", b"dispatch_command"):
        assert export + b"\0" in dll


def test_manifest_hashes_match(bins: dict[str, Path]) -> None:
    directory = bins["netsh_elf64"].parent
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == set(bins)
    for name, info in manifest["files"].items():
        assert hashlib.sha256(bins[name].read_bytes()).hexdigest() == info["sha256"]
        assert "source" in info or "stripped_from" in info


def test_second_build_uses_the_cache(bins: dict[str, Path], fixture_cache: Path) -> None:
    build = sys.modules["kinship_tests_fixtures_build"]  # loaded by conftest.py
    before = {name: path.stat().st_mtime_ns for name, path in bins.items()}
    again = build.build_all(fixture_cache)
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == before


@pytest.mark.slow
@pytest.mark.parametrize("version", ["5.1", "5.2", "5.3", "5.4"])
def test_lua_libs_are_debian_amd64_shared_objects(lua_libs: dict[str, Path],
                                                  version: str) -> None:
    path = lua_libs[version]
    assert not path.is_symlink()
    assert path.name.startswith(f"liblua{version}.so.")
    data = path.read_bytes()
    header = read_header(data)
    assert (header.format, header.machine, header.elf_type) == ("ELF64", ELF_MACHINE_X86_64,
                                                                ELF_TYPE_DYN)
    assert b"lua_newstate\0" in data
    assert f"Lua {version}".encode() in data


def test_missing_tools_are_listed_and_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = sys.modules["kinship_tests_fixtures_build"]
    monkeypatch.setattr(build.shutil, "which", lambda _tool: None)
    built = build.build_all(tmp_path)
    assert dict(built) == {}
    assert "x86_64-w64-mingw32-gcc not installed" in built.missing["netsh_x64.exe"]
    assert "netsh_elf64 missing" in built.missing["netsh_elf64_stripped"]

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        _ = built["netsh_x64.exe"]
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs"):
        _ = built["netsh_x64.exe"]
    with pytest.raises(KeyError):
        _ = built["no_such_fixture"]
