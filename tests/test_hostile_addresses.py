"""Addresses near 2**64 (issue #10 item 7): a PE ImageBase, an ELF section or segment address or
a dump base that puts the image past the end of the address space is rejected when loaded with
a one-line CorruptFileError naming the file; high addresses that fit (x64 kernel space,
0xffff8000_00000000 and up, past int64) are analysed like any other. Never OverflowError.

The inputs are fixture binaries with one header field patched (offsets from the headers with
struct).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinship.cli import main
from kinship.exceptions import CorruptFileError
from kinship.pipeline import SampleInput, analyse

# ---------------------------------------------------------------------------------------------
# header patches


def _pe_image_base(data: bytes, base: int) -> bytes:
    """Set OptionalHeader.ImageBase (64-bit in PE32+, 32-bit in PE32)."""
    b = bytearray(data)
    (e_lfanew,) = struct.unpack_from("<I", b, 0x3C)
    opt = e_lfanew + 24
    (magic,) = struct.unpack_from("<H", b, opt)
    if magic == 0x20B:
        struct.pack_into("<Q", b, opt + 24, base)
    else:
        struct.pack_into("<I", b, opt + 28, base)
    return bytes(b)


def _elf64_section_addr(data: bytes, name: str, addr: int) -> bytes:
    """Set sh_addr of the ELF64 section called ``name``."""
    b = bytearray(data)
    (shoff,) = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    (names,) = struct.unpack_from("<Q", b, shoff + shstrndx * shentsize + 24)
    for i in range(shnum):
        hdr = shoff + i * shentsize
        (sh_name,) = struct.unpack_from("<I", b, hdr)
        start = names + sh_name
        if b[start : b.index(b"\0", start)] == name.encode():
            struct.pack_into("<Q", b, hdr + 16, addr)
            return bytes(b)
    raise AssertionError(f"no section {name}")


def _elf64_code_segment_addr(data: bytes, addr: int) -> bytes:
    """Drop the section headers (so the loader maps PT_LOAD segments) and move the executable
    PT_LOAD segment (p_vaddr and p_paddr) to ``addr``."""
    b = bytearray(data)
    struct.pack_into("<Q", b, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", b, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    (phoff,) = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    for i in range(phnum):
        hdr = phoff + i * phentsize
        p_type, p_flags = struct.unpack_from("<II", b, hdr)
        if p_type == 1 and p_flags & 1:  # PT_LOAD, PF_X
            struct.pack_into("<QQ", b, hdr + 16, addr, addr)
            return bytes(b)
    raise AssertionError("no executable PT_LOAD")


_RAW_X64 = bytes.fromhex("554889e5b8010000005dc3") * 400  # push rbp; ...; ret  (4,400 bytes)
_RAW_X86 = bytes.fromhex("5589e5b8010000005dc3") * 400

Patch = Callable[[dict[str, Path]], tuple[str, bytes]]  # bins -> (file name, bytes)

OVERFLOWING: dict[str, Patch] = {
    "pe64-image-base": lambda bins: (
        "pe64.exe", _pe_image_base(bins["netsh_x64.exe"].read_bytes(), 0xFFFF_FFFF_FFFF_0000)),
    "pe32-past-4GiB": lambda bins: (
        "pe32.exe", _pe_image_base(bins["netsh_x86.exe"].read_bytes(), 0xFFFF_0000)),
    "elf64-section": lambda bins: (
        "elf64_section", _elf64_section_addr(bins["netsh_elf64"].read_bytes(), ".text",
                                             0xFFFF_FFFF_FFFF_F800)),
    "elf64-segment": lambda bins: (
        "elf64_segment", _elf64_code_segment_addr(bins["netsh_elf64"].read_bytes(),
                                                  0xFFFF_FFFF_FFFF_FF00)),
    "dump64-base": lambda bins: ("dump_0xffffffffffffff00", _RAW_X64),
    "dump32-base": lambda bins: ("dump_0xffffff00", _RAW_X86),
}

FITTING_HIGH: dict[str, Patch] = {
    "pe64-kernel-base": lambda bins: (
        "pe64.exe", _pe_image_base(bins["netsh_x64.exe"].read_bytes(), 0xFFFF_F800_0000_0000)),
    "pe64-top-64KiB-aligned": lambda bins: (
        "pe64.exe", _pe_image_base(bins["netsh_x64.exe"].read_bytes(), 0xFFFF_FFFF_FFFC_0000)),
    "elf64-kernel-text": lambda bins: (
        "elf64", _elf64_section_addr(bins["netsh_elf64"].read_bytes(), ".text",
                                     0xFFFF_FFFF_8100_0000)),
    "elf64-text-ends-at-2**64": lambda bins: (
        "elf64", _elf64_section_addr(bins["netsh_elf64"].read_bytes(), ".text",
                                     0xFFFF_FFFF_FFFF_F000)),
    "elf64-segment-high": lambda bins: (
        "elf64", _elf64_code_segment_addr(bins["netsh_elf64"].read_bytes(),
                                          0xFFFF_FFFF_FFFF_F000)),
    "dump64-kernel-base": lambda bins: ("dump_0xfffff80000000000", _RAW_X64),
}


def _write(tmp_path: Path, bins: dict[str, Path], patch: Patch) -> Path:
    name, data = patch(bins)
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("case", list(OVERFLOWING))
def test_image_past_the_address_space_is_corrupt(tmp_path: Path, bins: dict[str, Path],
                                                 case: str) -> None:
    path = _write(tmp_path, bins, OVERFLOWING[case])
    with pytest.raises(CorruptFileError, match=r"overflows the (32|64)-bit address space") as e:
        analyse(SampleInput(name=str(path), path=path))
    assert e.value.path == str(path)
    assert "\n" not in e.value.reason


@pytest.mark.parametrize("case", list(OVERFLOWING))
def test_info_on_image_past_the_address_space_is_one_line(
    tmp_home: Path, tmp_path: Path, bins: dict[str, Path], case: str
) -> None:
    path = _write(tmp_path, bins, OVERFLOWING[case])
    r = CliRunner(env={"COLUMNS": "300"}).invoke(main, ["info", str(path)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == CorruptFileError.exit_code, r.output
    assert len(lines) == 1, r.output
    assert str(path) in lines[0] and "address space" in lines[0], r.output
    assert "internal error" not in r.output


@pytest.mark.parametrize("case", list(FITTING_HIGH))
def test_high_addresses_that_fit_are_analysed(tmp_path: Path, bins: dict[str, Path],
                                              case: str) -> None:
    path = _write(tmp_path, bins, FITTING_HIGH[case])
    res = analyse(SampleInput(name=str(path), path=path))
    assert res.record.n_functions > 0
    assert all(0 <= f.va < 1 << 64 for f in res.features)


def test_kernel_space_pe_is_analysed_like_the_original(tmp_path: Path,
                                                       bins: dict[str, Path]) -> None:
    """Moving an image to 0xfffff800_00000000 (past int64) changes no function or
    instruction count: the same code is found."""
    original = analyse(SampleInput(name="netsh_x64.exe", path=bins["netsh_x64.exe"]))
    path = _write(tmp_path, bins, FITTING_HIGH["pe64-kernel-base"])
    moved = analyse(SampleInput(name=str(path), path=path))
    assert moved.record.n_functions == original.record.n_functions
    assert moved.record.n_instructions == original.record.n_instructions
    delta = 0xFFFF_F800_0000_0000 - 0x1_4000_0000
    assert sorted(f.va - delta for f in moved.features) == sorted(f.va for f in
                                                                   original.features)


def test_kernel_space_pe_is_stored_and_matched(tmp_home: Path, tmp_path: Path,
                                               bins: dict[str, Path]) -> None:
    """Function addresses past int64 go into the store and back out; the original image
    is attributed to the family of its kernel-space copy."""
    path = _write(tmp_path, bins, FITTING_HIGH["pe64-kernel-base"])
    runner = CliRunner(env={"COLUMNS": "300"})
    r = runner.invoke(main, ["add", str(path), "--family", "kernelish"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["match", str(bins["netsh_x64.exe"]), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["verdict"]["family"] == "kernelish"
