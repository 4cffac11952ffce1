"""The format-independent model of a loaded executable (PE, ELF or raw memory dump).

Loaders (``pe.py``, ``elf.py``, ``dump.py``) fill a :class:`Binary`; everything downstream
(disassembler, features, evidence) reads only this model, never LIEF/pefile objects.

Addresses: every ``va`` field is an absolute virtual address in the loaded image (image base
included). File offsets are named ``offset``. Use :meth:`Binary.va_to_offset` to convert.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Format(str, enum.Enum):
    PE = "pe"
    ELF = "elf"
    DUMP = "dump"


class Arch(str, enum.Enum):
    X86 = "x86"
    X64 = "x64"

    @property
    def bitness(self) -> int:
        return 64 if self is Arch.X64 else 32


@dataclass(frozen=True, slots=True)
class Hashes:
    md5: str
    sha1: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Section:
    """One mapped section (PE section, ELF section with SHF_ALLOC, or a dump region)."""

    name: str
    va: int
    virtual_size: int
    offset: int  # file offset of the raw data
    raw_size: int  # bytes present in the file (the rest up to virtual_size is zero-filled)
    executable: bool
    writable: bool
    entropy: float = 0.0

    def contains(self, va: int) -> bool:
        return self.va <= va < self.va + max(self.virtual_size, self.raw_size)


@dataclass(frozen=True, slots=True)
class Import:
    """An imported function. ``slot`` is the VA of the IAT entry (PE) or GOT entry (ELF)."""

    library: str  # "kernel32.dll", "libc.so.6" (may be "" when unknown, e.g. ELF)
    name: str  # "CreateProcessA", or "ord_123" for ordinal-only imports
    slot: int
    ordinal: int | None = None


@dataclass(frozen=True, slots=True)
class Export:
    name: str
    va: int
    ordinal: int | None = None


@dataclass(frozen=True, slots=True)
class Symbol:
    """A function symbol from .symtab/.dynsym/COFF symbols (absent in stripped samples)."""

    name: str
    va: int
    size: int = 0


@dataclass
class Binary:
    """A parsed executable image. Immutable after loading by convention."""

    path: str
    data: bytes  # the raw file bytes (for dumps: the memory image)
    format: Format
    arch: Arch
    image_base: int
    hashes: Hashes
    sections: list[Section]
    entry_point: int | None = None
    imports: list[Import] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    # Function starts known from metadata: PE64 .pdata RUNTIME_FUNCTION.BeginAddress,
    # ELF .eh_frame FDE initial locations.
    function_hints: list[int] = field(default_factory=list)
    # VA -> "library!name" for every address through which code reaches an import:
    # PE IAT slots, ELF GOT slots and PLT/PLT.sec stubs.
    api_thunks: dict[int, str] = field(default_factory=dict)
    imphash: str | None = None
    compile_time: datetime | None = None
    pdb_path: str | None = None
    # Non-fatal oddities found while parsing (overlapping sections, bad timestamps ...).
    warnings: list[str] = field(default_factory=list)

    @property
    def bitness(self) -> int:
        return self.arch.bitness

    @property
    def size(self) -> int:
        return len(self.data)

    def section_for(self, va: int) -> Section | None:
        for s in self.sections:
            if s.contains(va):
                return s
        return None

    def is_executable(self, va: int) -> bool:
        s = self.section_for(va)
        return s is not None and s.executable

    def va_to_offset(self, va: int) -> int | None:
        """File offset of ``va``, or None when it is not backed by file bytes."""
        s = self.section_for(va)
        if s is None:
            return None
        delta = va - s.va
        if delta >= s.raw_size:
            return None
        return s.offset + delta

    def offset_to_va(self, offset: int) -> int | None:
        for s in self.sections:
            if s.offset <= offset < s.offset + s.raw_size:
                return s.va + (offset - s.offset)
        return None

    def read(self, va: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``va`` (shorter at the end of a section; b"" if unmapped).

        Bytes past the section's raw data but inside its virtual size read as zeros.
        """
        s = self.section_for(va)
        if s is None or size <= 0:
            return b""
        delta = va - s.va
        end = min(delta + size, max(s.virtual_size, s.raw_size))
        raw_end = min(end, s.raw_size)
        out = self.data[s.offset + delta : s.offset + raw_end] if delta < raw_end else b""
        if end > max(delta, raw_end):
            out += b"\x00" * (end - max(delta, raw_end))
        return out

    def string_at(self, va: int, max_len: int = 256) -> str | None:
        """A printable ASCII or UTF-16LE string of at least 4 characters at ``va``, else None."""
        buf = self.read(va, max_len * 2)
        if len(buf) < 4:
            return None
        # ASCII
        limit = min(len(buf), max_len)
        n = 0
        while n < limit and (0x20 <= buf[n] < 0x7F or buf[n] in (0x09, 0x0A, 0x0D)):
            n += 1
        if n >= 4 and (n == limit or buf[n] == 0):
            return buf[:n].decode("ascii")
        # UTF-16LE
        n = 0
        while n + 1 < len(buf) and n // 2 < max_len and buf[n + 1] == 0 and (
            0x20 <= buf[n] < 0x7F or buf[n] in (0x09, 0x0A, 0x0D)
        ):
            n += 2
        if n >= 8 and (n + 1 >= len(buf) or (buf[n] == 0 and buf[n + 1] == 0)):
            return buf[:n].decode("utf-16-le")
        return None
