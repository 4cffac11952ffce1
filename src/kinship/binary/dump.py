"""Raw memory dumps -> :class:`Binary`.

Two kinds of dump are understood:

* a PE image as mapped in memory (MZ at offset 0, each section at its RVA): parsed with its
  headers in the memory layout, so imports, exports and ``.pdata`` still work;
* anything else (shellcode, a headerless region): one RWX section at ``base``.

Malpedia names dumps ``<sha256>_dump_0x00400000`` (or ``..._0x00400000``); the suffix gives
the base address when the caller does not.
"""

from __future__ import annotations

import logging
import re

from kinship.binary.measure import (
    check_address_space,
    compute_hashes,
    packed_warnings,
    shannon_entropy,
)
from kinship.binary.model import Arch, Binary, Format, Section
from kinship.binary.pe import looks_mapped, parse_pe, pe_header_offset

logger = logging.getLogger(__name__)

# "<sha256>_dump_0x00400000", "dump7_0x10000000", optionally with a short extension.
_BASE_SUFFIX = re.compile(r"_0x([0-9a-fA-F]{1,16})(?:\.[A-Za-z0-9]{1,8})?$")

# Byte patterns typical of compiled function prologues, for guessing the bitness of raw code.
_X64_PATTERNS = (b"\x48\x83\xec", b"\x48\x89\x5c\x24", b"\x55\x48\x89\xe5", b"\x48\x8b\x05")
_X86_PATTERNS = (b"\x55\x8b\xec", b"\x55\x89\xe5", b"\x8b\xff\x55")


def base_from_name(name: str) -> int | None:
    """The base address encoded in a Malpedia-style dump file name, if any."""
    m = _BASE_SUFFIX.search(name.replace("\\", "/").rsplit("/", 1)[-1])
    return int(m.group(1), 16) if m else None


def guess_arch(data: bytes) -> Arch | None:
    """x64 when 64-bit prologue patterns clearly dominate, x86 when 32-bit ones do, else None."""
    x64 = sum(data.count(p) for p in _X64_PATTERNS)
    x86 = sum(data.count(p) for p in _X86_PATTERNS)
    if x64 >= 4 and x64 > 2 * x86:
        return Arch.X64
    if x86 >= 4 and x86 > 2 * x64:
        return Arch.X86
    return None


def parse_dump(data: bytes, path: str, *, base: int, arch: Arch | None = None) -> Binary:
    """Load a memory dump mapped at ``base``. A mapped PE image keeps its headers' structure."""
    if pe_header_offset(data) is not None:
        mapped = looks_mapped(data)
        binary = parse_pe(data, path, mapped=mapped, base=base if mapped else None)
        if mapped:
            binary.format = Format.DUMP
        else:
            binary.warnings.append("dump holds a PE file in its on-disk layout; loaded as a PE")
        if arch is not None and arch is not binary.arch:
            binary.warnings.append(f"arch {arch.value} given, PE header says {binary.arch.value}")
        return binary

    warnings: list[str] = []
    if arch is None:
        guessed = guess_arch(data)
        arch = guessed or Arch.X86
        warnings.append(
            f"architecture guessed as {arch.value}"
            + ("" if guessed else " (default; pass arch= to choose)")
        )
    section = Section(
        name="dump",
        va=base,
        virtual_size=len(data),
        offset=0,
        raw_size=len(data),
        executable=True,
        writable=True,
        entropy=shannon_entropy(data),
    )
    check_address_space(path, [section], arch.bitness, base)
    warnings.extend(packed_warnings([section]))
    return Binary(
        path=path,
        data=data,
        format=Format.DUMP,
        arch=arch,
        image_base=base,
        hashes=compute_hashes(data),
        sections=[section],
        warnings=warnings,
    )
