"""What a YARA rule may not take: loader tables, debug sections, bytes outside every section,
toolchain and runtime texts, and the code and data of library functions (see
:mod:`kinship.rules.yara_gen`). A family member is loaded here with those ranges marked.
"""

from __future__ import annotations

import bisect
import logging
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinship.binary.model import Binary, Format
from kinship.disasm.model import Function
from kinship.pipeline import SampleInput, analyse
from kinship.rules.yara_model import LibraryFunctions
from kinship.strings.extract import StringTable, is_debug_section
from kinship.strings.rarity import COMMON_STRINGS

logger = logging.getLogger(__name__)

# Entries of one pointer table followed back to its start (a string table of a runtime has a
# few dozen; a longer run of pointer-like words is not one table).
MAX_POINTER_TABLE = 4096
# PE base-relocation entries read per sample (pefile makes one object per entry; a hostile
# file can declare millions): past this, code bytes are wildcarded by the other rules only.
MAX_RELOCATIONS = 200_000

# Sections that are loader tables, not program data: exact names, then name prefixes.
_TABLE_SECTIONS = frozenset({".reloc", ".idata", ".edata", ".pdata", ".xdata", ".CRT", ".tls",
                             ".dynsym", ".dynstr", ".gnu.hash", ".hash", ".interp", ".dynamic",
                             ".gcc_except_table", ".init_array", ".fini_array",
                             ".preinit_array", ".comment", ".symtab", ".strtab", ".shstrtab"})
_TABLE_PREFIXES = (".rel.", ".rela.", ".gnu.version", ".note", ".got", ".plt", ".eh_frame")
# Names every DLL / shared object exports: they say what kind of module it is, not whose.
_BOILERPLATE_EXPORTS = frozenset({
    "DllMain", "DllEntryPoint", "DllRegisterServer", "DllUnregisterServer",
    "DllGetClassObject", "DllCanUnloadNow", "DllInstall", "DllGetVersion", "ServiceMain",
    "_init", "_fini", "_start", "main", "__bss_start", "_edata", "_end", "__data_start",
    "data_start", "_IO_stdin_used", "__dso_handle", "__libc_csu_init", "__libc_csu_fini"})
# Toolchain identification every program of a compiler carries (.comment, .rdata$zzz,
# runtime error banners): "GCC: (GNU) 12-win32", "clang version 14.0.6".
_TOOLCHAIN_TEXT = re.compile(
    r"(GCC: \(|(Debian |Ubuntu )?clang version |Microsoft \(R\) |Mingw-w64 runtime failure"
    r"|Linker: |GNU (C|C\+\+|AS|ld) ?\d|\.?/?mingw-w64-crt/|\.\./\.\./\.\./)")
_WORD = re.compile(r"[A-Za-z]{3,}")
# A string with less than this share of letters, digits and blanks is printable noise (bytes
# of a table that happen to be printable, "M'(:fjgl4"): its bytes are not a text the program
# uses, and they change with any table layout change (0..1).
MIN_ALNUM_SHARE = 0.6


def is_boilerplate_text(text: str) -> bool:
    """True for a text that says nothing about who wrote the program: toolchain banners,
    texts every runtime carries ("(null)"), printable noise without a word in it."""
    t = text.strip()
    if t in COMMON_STRINGS or _TOOLCHAIN_TEXT.match(t) or not _WORD.search(t):
        return True
    return sum(1 for c in t if c.isalnum() or c == " ") < MIN_ALNUM_SHARE * len(t)


def is_table_section(name: str | None) -> bool:
    """True for a section of loader tables or debug information, or no section (never rule
    material)."""
    if name is None:
        return True
    return (is_debug_section(name) or name in _TABLE_SECTIONS
            or name.startswith(_TABLE_PREFIXES))



@dataclass(frozen=True, slots=True)
class _Range:
    """File bytes [start, end) that no rule string may come from."""

    start: int
    end: int


@dataclass
class _Member:
    sha256: str
    path: Path
    binary: Binary
    functions: list[Function]
    strings: StringTable
    library: set[int]  # VAs of library/runtime functions
    excluded: list[_Range]  # sorted, merged
    fixups: set[int]  # VAs of bytes patched by base relocations (PE)



def _merge(ranges: list[_Range]) -> list[_Range]:
    out: list[_Range] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        if out and r.start <= out[-1].end:
            out[-1] = _Range(out[-1].start, max(out[-1].end, r.end))
        elif r.end > r.start:
            out.append(r)
    return out


def _in_ranges(ranges: list[_Range], starts: list[int], start: int, end: int) -> bool:
    """True when [start, end) overlaps any of the sorted, merged ``ranges`` (``starts``: their
    start offsets)."""
    i = bisect.bisect_right(starts, end - 1) - 1
    return i >= 0 and ranges[i].end > start


def _pe_tables(b: Binary) -> tuple[list[_Range], set[int]]:
    """File ranges of a PE's loader tables (data directories, import hint/name entries,
    DLL names, thunk arrays), and the VAs of the bytes its base relocations patch."""
    import pefile

    ranges: list[_Range] = []
    fixups: set[int] = set()

    def add_rva(rva: int, size: int) -> None:
        off = b.va_to_offset(b.image_base + rva) if rva else None
        if off is not None and size > 0:
            ranges.append(_Range(off, off + size))

    try:
        pe = pefile.PE(data=b.data, fast_load=True)
        dirs = pe.OPTIONAL_HEADER.DATA_DIRECTORY
        names = ("IMAGE_DIRECTORY_ENTRY_EXPORT", "IMAGE_DIRECTORY_ENTRY_IMPORT",
                 "IMAGE_DIRECTORY_ENTRY_EXCEPTION", "IMAGE_DIRECTORY_ENTRY_BASERELOC",
                 "IMAGE_DIRECTORY_ENTRY_DEBUG", "IMAGE_DIRECTORY_ENTRY_TLS",
                 "IMAGE_DIRECTORY_ENTRY_LOAD_CONFIG", "IMAGE_DIRECTORY_ENTRY_BOUND_IMPORT",
                 "IMAGE_DIRECTORY_ENTRY_IAT", "IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT")
        for d in dirs:
            if d.name in names:
                add_rva(d.VirtualAddress, d.Size)
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_BASERELOC"]])
        ptr = 8 if b.bitness == 64 else 4
        for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
            add_rva(entry.struct.Name, len(entry.dll or b"") + 1)
            for thunk in (entry.struct.OriginalFirstThunk, entry.struct.FirstThunk):
                add_rva(thunk, (len(entry.imports) + 1) * ptr)
            for imp in entry.imports:
                if imp.name and imp.hint_name_table_rva:
                    add_rva(imp.hint_name_table_rva, 2 + len(imp.name) + 1)
        n = 0
        for block in getattr(pe, "DIRECTORY_ENTRY_BASERELOC", []):
            for e in block.entries:
                width = {3: 4, 10: 8}.get(e.type, 0)  # HIGHLOW, DIR64
                fixups.update(range(b.image_base + e.rva, b.image_base + e.rva + width))
                n += 1
                if n >= MAX_RELOCATIONS:
                    logger.info("%s: more than %d relocations, the rest not read", b.path,
                                MAX_RELOCATIONS)
                    return ranges, fixups
    except (pefile.PEFormatError, AttributeError, ValueError, IndexError, struct.error) as e:
        logger.info("%s: PE tables not read (%s); sections only", b.path, e)
    return ranges, fixups


def _excluded(b: Binary, functions: Sequence[Function], library: set[int]
              ) -> tuple[list[_Range], set[int]]:
    """Sorted, merged file ranges no rule string comes from, and the PE fixup VAs."""
    ranges = [_Range(s.offset, s.offset + s.raw_size) for s in b.sections
              if s.raw_size > 0 and is_table_section(s.name)]
    fixups: set[int] = set()
    if b.format is Format.PE:
        r, fixups = _pe_tables(b)
        ranges += r
    for f in functions:
        if f.va in library:
            for blk in f.blocks:
                off = b.va_to_offset(blk.va)
                if off is not None:
                    ranges.append(_Range(off, off + (blk.end - blk.va)))
    return _merge(ranges), fixups


def _imported_names(b: Binary) -> set[str]:
    """Names of imported functions and libraries: they say which API or runtime a sample
    uses (every Python extension imports ``PyObject_GetAttr``), not which family it is."""
    out: set[str] = set()
    for i in b.imports:
        out.add(i.name)
        if i.library:
            out.add(i.library)
            out.add(i.library.rsplit(".", 1)[0])
    return out


def _load(path: Path, library: LibraryFunctions | None) -> _Member:
    s = analyse(SampleInput(name=str(path), path=path), keep=True)
    assert s.binary is not None and s.disassembly is not None
    lib = set(library(s)) if library is not None else set()
    excluded, fixups = _excluded(s.binary, s.disassembly.functions, lib)
    return _Member(s.record.sha256, path, s.binary, s.disassembly.functions, s.strings, lib,
                   excluded, fixups)


def _data_refs(functions: Sequence[Function]) -> dict[int, set[int]]:
    """Data VA -> VAs of the functions whose instructions reference it."""
    refs: dict[int, set[int]] = {}
    for f in functions:
        for blk in f.blocks:
            for i in blk.instructions:
                if i.data_ref is not None:
                    refs.setdefault(i.data_ref, set()).add(f.va)
    return refs


def _pointer_tables(b: Binary, targets: set[int]) -> dict[int, int]:
    """Target VA -> VA of the start of a table of pointers holding a pointer to it.

    A runtime keeps some messages in a table that code indexes (mingw-w64's ``_matherr``
    names its error kinds through one): the code references the table, not the message.
    """
    if not targets:
        return {}
    ptr = 8 if b.bitness == 64 else 4
    dtype = np.dtype("<u8" if ptr == 8 else "<u4")
    want = np.array(sorted(targets), dtype=dtype)
    out: dict[int, int] = {}
    for sec in b.sections:
        if sec.executable or sec.raw_size < ptr or is_table_section(sec.name):
            continue
        n = sec.raw_size // ptr
        words = np.frombuffer(b.data, dtype=dtype, count=n, offset=sec.offset) \
            if sec.offset + n * ptr <= len(b.data) else np.zeros(0, dtype)
        for i in np.flatnonzero(np.isin(words, want)).tolist():
            j = i
            while j > 0 and i - j < MAX_POINTER_TABLE and \
                    b.section_for(int(words[j - 1])) is not None:
                j -= 1
            out.setdefault(int(words[i]), sec.va + j * ptr)
    return out
