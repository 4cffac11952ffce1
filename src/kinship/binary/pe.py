"""PE loader: PE32/PE32+ x86/x64 files (and PE images mapped in memory) -> :class:`Binary`.

pefile parses the headers and the import/export/debug directories (``fast_load`` plus only the
directories we need); ``.pdata`` and the COFF symbol table are read here with ``struct``/numpy,
which keeps a 2 MB sample well under 10 ms.

Two layouts are supported::

    file layout (on disk)              mapped layout (memory dump)
    +---------+ 0                      +---------+ 0       (base)
    | headers |                        | headers |
    +---------+ PointerToRawData       +---------+ VirtualAddress
    | .text   |                        | .text   |  offset == RVA
    +---------+                        +---------+

In the mapped layout every section's file offset is its RVA, so the section headers are
rewritten that way (in a private copy) before pefile sees them.
"""

from __future__ import annotations

import logging
import struct
from datetime import datetime, timezone

import numpy as np
import pefile
from pefile import ordlookup

from kinship.binary import limits
from kinship.binary.measure import (
    check_address_space,
    compute_hashes,
    packed_warnings,
    shannon_entropy,
)
from kinship.binary.model import Arch, Binary, Export, Format, Import, Section, Symbol
from kinship.exceptions import CorruptFileError, UnsupportedFormatError

logger = logging.getLogger(__name__)

MACHINE_I386 = 0x14C
MACHINE_AMD64 = 0x8664

SCN_CNT_CODE = 0x00000020
SCN_MEM_EXECUTE = 0x20000000
SCN_MEM_WRITE = 0x80000000

SECTION_HEADER_SIZE = 40
COFF_SYMBOL_SIZE = 18
COFF_DT_FUNCTION = 0x20  # (Type >> 4) == IMAGE_SYM_DTYPE_FUNCTION
COFF_FUNCTION_CLASSES = (2, 3)  # IMAGE_SYM_CLASS_EXTERNAL, IMAGE_SYM_CLASS_STATIC
UNW_FLAG_CHAININFO = 0x4

_DIRECTORIES = [
    pefile.DIRECTORY_ENTRY[name]
    for name in (
        "IMAGE_DIRECTORY_ENTRY_IMPORT",
        "IMAGE_DIRECTORY_ENTRY_EXPORT",
        "IMAGE_DIRECTORY_ENTRY_DEBUG",
        "IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT",
    )
]
_DIR_EXCEPTION = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXCEPTION"]


def pe_header_offset(data: bytes) -> int | None:
    """Offset of the ``PE\\0\\0`` signature when ``data`` is an MZ file with a PE header."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return None
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if e_lfanew + 4 > len(data) or data[e_lfanew : e_lfanew + 4] != b"PE\0\0":
        return None
    return int(e_lfanew)


def check_headers_complete(data: bytes, path: str) -> None:
    """Raise :class:`CorruptFileError` when the MZ/PE headers are cut short."""
    if len(data) < 0x40:
        raise CorruptFileError(path, f"truncated MZ header ({len(data)} bytes)")
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if e_lfanew + 24 > len(data):
        raise CorruptFileError(
            path, f"truncated PE header: PE header at {e_lfanew:#x}, file has {len(data)} bytes"
        )
    (n_sections,) = struct.unpack_from("<H", data, e_lfanew + 6)
    (opt_size,) = struct.unpack_from("<H", data, e_lfanew + 20)
    need = e_lfanew + 24 + opt_size + min(n_sections, limits.MAX_SECTIONS) * SECTION_HEADER_SIZE
    if need > len(data):
        raise CorruptFileError(
            path, f"truncated PE headers: need {need} bytes, file has {len(data)}"
        )


def looks_mapped(data: bytes) -> bool:
    """True when an MZ/PE image seems to be laid out as in memory (a dump), not as on disk.

    For every section whose raw offset differs from its RVA, compare the two places: in a mapped
    image the section's bytes sit at the RVA and the raw offset usually lands in zero padding.
    """
    e = pe_header_offset(data)
    if e is None or e + 24 > len(data):
        return False
    n_sections, opt_size = struct.unpack_from("<H12xH", data, e + 6)
    table = e + 24 + opt_size
    mapped = disk = 0
    for i in range(min(n_sections, limits.MAX_SECTIONS)):
        off = table + i * SECTION_HEADER_SIZE
        if off + SECTION_HEADER_SIZE > len(data):
            break
        rva, raw_size, raw_ptr = struct.unpack_from("<III", data, off + 12)
        if raw_size == 0 or rva == raw_ptr:
            continue
        n = min(raw_size, 256)
        at_rva = data[rva : rva + n]
        at_raw = data[raw_ptr : raw_ptr + n]
        if len(at_rva) < n:
            disk += 1  # the file is too short to hold a mapped image
        elif at_rva.strip(b"\0") and not at_raw.strip(b"\0"):
            mapped += 1
        elif at_raw.strip(b"\0") and not at_rva.strip(b"\0"):
            disk += 1
    return mapped > disk


def _as_mapped(data: bytes) -> bytes:
    """A copy of ``data`` whose section headers say raw offset == RVA (memory layout)."""
    e = pe_header_offset(data)
    assert e is not None
    buf = bytearray(data)
    n_sections, opt_size = struct.unpack_from("<H12xH", buf, e + 6)
    table = e + 24 + opt_size
    for i in range(min(n_sections, limits.MAX_SECTIONS)):
        off = table + i * SECTION_HEADER_SIZE
        if off + SECTION_HEADER_SIZE > len(buf):
            break
        vsize, rva = struct.unpack_from("<II", buf, off + 8)
        raw_size = max(0, min(vsize or 0x1000, len(buf) - rva))
        struct.pack_into("<II", buf, off + 16, raw_size, rva)
    return bytes(buf)


def parse_pe(data: bytes, path: str, *, mapped: bool = False, base: int | None = None) -> Binary:
    """Parse a PE file (or, with ``mapped=True``, a PE image dumped from memory at ``base``).

    Raises :class:`CorruptFileError` for truncated/malformed headers and
    :class:`UnsupportedFormatError` for machines other than x86/x64. Problems in optional
    structures (imports, exports, debug directory, symbols) become ``Binary.warnings``.
    """
    check_headers_complete(data, path)
    parse_data = _as_mapped(data) if mapped else data
    try:
        pe = pefile.PE(data=parse_data, fast_load=True)
    except pefile.PEFormatError as e:
        raise CorruptFileError(path, f"malformed PE header: {e.value}") from e

    machine = pe.FILE_HEADER.Machine
    if machine == MACHINE_I386:
        arch = Arch.X86
    elif machine == MACHINE_AMD64:
        arch = Arch.X64
    else:
        raise UnsupportedFormatError(path, f"PE for machine {machine:#x} is not x86 or x64")

    warnings: list[str] = []
    if base is not None and base != pe.OPTIONAL_HEADER.ImageBase:
        warnings.append(
            f"image mapped at {base:#x}, header ImageBase is {pe.OPTIONAL_HEADER.ImageBase:#x}"
        )
        pe.OPTIONAL_HEADER.ImageBase = base  # pefile computes IAT slot VAs from this
    image_base = int(pe.OPTIONAL_HEADER.ImageBase)

    try:
        pe.parse_data_directories(directories=_DIRECTORIES)
    except (pefile.PEFormatError, ValueError, IndexError, struct.error) as e:
        warnings.append(f"data directories partly unreadable: {e}")

    sections = _sections(pe, data, image_base, mapped, warnings)
    if not mapped:
        need = max((int(s.PointerToRawData) + int(s.SizeOfRawData) for s in pe.sections
                    if s.SizeOfRawData), default=0)
        if need > len(data):
            warnings.append(f"truncated: the section table needs {need} bytes, the file has "
                            f"{len(data)} (code past the end is missing)")
    check_address_space(path, sections, arch.bitness, image_base)
    imports = _imports(pe, warnings)
    ep_rva = pe.OPTIONAL_HEADER.AddressOfEntryPoint
    binary = Binary(
        path=path,
        data=data,
        format=Format.PE,
        arch=arch,
        image_base=image_base,
        hashes=compute_hashes(data),
        sections=sections,
        entry_point=image_base + ep_rva if ep_rva else None,
        imports=imports,
        exports=_exports(pe, image_base, warnings),
        imphash=_imphash(pe, warnings),
        compile_time=_compile_time(pe),
        pdb_path=_pdb_path(pe),
        api_thunks={imp.slot: f"{imp.library}!{imp.name}" for imp in imports},
    )
    binary.symbols = _coff_symbols(pe, data, image_base, mapped, warnings)
    if arch is Arch.X64:
        binary.function_hints = _pdata_hints(pe, binary, warnings)
    warnings.extend(packed_warnings(sections))
    warnings.extend(f"pefile: {w}" for w in pe.get_warnings()[: limits.MAX_WARNINGS])
    binary.warnings = warnings[: limits.MAX_WARNINGS]
    return binary


def _sections(
    pe: pefile.PE, data: bytes, image_base: int, mapped: bool, warnings: list[str]
) -> list[Section]:
    file_align = pe.OPTIONAL_HEADER.FileAlignment
    out: list[Section] = []
    if len(pe.sections) > limits.MAX_SECTIONS:
        warnings.append(f"{len(pe.sections)} sections, only {limits.MAX_SECTIONS} kept")
    for s in pe.sections[: limits.MAX_SECTIONS]:
        name = s.Name.rstrip(b"\0").decode("latin-1")
        vsize = s.Misc_VirtualSize or s.SizeOfRawData
        if mapped:
            offset = s.VirtualAddress
            raw_size = min(vsize, max(0, len(data) - offset))
        else:
            # The Windows loader rounds the raw pointer down to 512 bytes when alignment >= 512.
            offset = s.PointerToRawData & ~0x1FF if file_align >= 0x200 else s.PointerToRawData
            raw_size = max(0, min(s.SizeOfRawData, len(data) - offset))
            if vsize:
                raw_size = min(raw_size, _align_up(vsize, max(file_align, 1)))
        if offset > len(data):
            warnings.append(f"section {name} raw data at {offset:#x} is past the end of file")
            raw_size = 0
        chars = s.Characteristics
        out.append(
            Section(
                name=name,
                va=image_base + s.VirtualAddress,
                virtual_size=vsize,
                offset=offset,
                raw_size=raw_size,
                executable=bool(chars & (SCN_MEM_EXECUTE | SCN_CNT_CODE)),
                writable=bool(chars & SCN_MEM_WRITE),
                entropy=shannon_entropy(memoryview(data)[offset : offset + raw_size]),
            )
        )
    return out


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _imports(pe: pefile.PE, warnings: list[str]) -> list[Import]:
    out: list[Import] = []
    entries = list(getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])) + list(
        getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])
    )
    for entry in entries:
        dll_raw = entry.dll or b""
        library = dll_raw.decode("latin-1").lower()
        for imp in entry.imports:
            if len(out) >= limits.MAX_IMPORTS:
                warnings.append(f"more than {limits.MAX_IMPORTS} imports, the rest ignored")
                return out
            if imp.address is None:
                continue
            if imp.name:
                name = imp.name.decode("latin-1")
            else:
                known = ordlookup.ordLookup(dll_raw.lower(), imp.ordinal, make_name=False)
                name = known.decode("latin-1") if known else f"ord_{imp.ordinal}"
            out.append(
                Import(library=library, name=name, slot=int(imp.address), ordinal=imp.ordinal)
            )
    return out


def _exports(pe: pefile.PE, image_base: int, warnings: list[str]) -> list[Export]:
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if directory is None:
        return []
    out: list[Export] = []
    for sym in directory.symbols:
        if len(out) >= limits.MAX_EXPORTS:
            warnings.append(f"more than {limits.MAX_EXPORTS} exports, the rest ignored")
            break
        if sym.forwarder is not None or not sym.address:
            continue
        name = sym.name.decode("latin-1") if sym.name else f"ord_{sym.ordinal}"
        out.append(Export(name=name, va=image_base + sym.address, ordinal=sym.ordinal))
    return out


def _imphash(pe: pefile.PE, warnings: list[str]) -> str | None:
    try:
        value = pe.get_imphash()
    except (pefile.PEFormatError, UnicodeDecodeError, AttributeError) as e:
        warnings.append(f"imphash not computable: {e}")
        return None
    return str(value) if value else None


def _compile_time(pe: pefile.PE) -> datetime | None:
    stamp = pe.FILE_HEADER.TimeDateStamp
    return datetime.fromtimestamp(stamp, timezone.utc) if stamp else None


def _pdb_path(pe: pefile.PE) -> str | None:
    for dbg in getattr(pe, "DIRECTORY_ENTRY_DEBUG", []):
        entry = getattr(dbg, "entry", None)
        raw = getattr(entry, "PdbFileName", None)
        if raw:
            text = bytes(raw).split(b"\0", 1)[0].decode("utf-8", errors="replace")
            if text:
                return text
    return None


def _coff_symbols(
    pe: pefile.PE, data: bytes, image_base: int, mapped: bool, warnings: list[str]
) -> list[Symbol]:
    """Function symbols from the COFF symbol table (mingw keeps one; MSVC does not)."""
    table = pe.FILE_HEADER.PointerToSymbolTable
    count = pe.FILE_HEADER.NumberOfSymbols
    if not table or not count or mapped:  # the symbol table is not mapped into memory
        return []
    end = table + count * COFF_SYMBOL_SIZE
    if end > len(data):
        warnings.append("COFF symbol table runs past the end of file; symbols ignored")
        return []
    strtab = data[end:]
    section_rvas = [s.VirtualAddress for s in pe.sections]
    out: list[Symbol] = []
    aux_left = 0
    for name8, value, secnum, typ, sclass, n_aux in struct.iter_unpack("<8sIhHBB", data[table:end]):
        if aux_left:
            aux_left -= 1
            continue
        aux_left = n_aux
        if (
            typ & 0x30 != COFF_DT_FUNCTION
            or sclass not in COFF_FUNCTION_CLASSES
            or not 1 <= secnum <= len(section_rvas)
        ):
            continue
        if name8[:4] == b"\0\0\0\0":
            (str_off,) = struct.unpack_from("<I", name8, 4)
            raw = strtab[str_off : strtab.find(b"\0", str_off)] if str_off < len(strtab) else b""
        else:
            raw = name8.rstrip(b"\0")
        out.append(
            Symbol(name=raw.decode("latin-1"), va=image_base + section_rvas[secnum - 1] + value)
        )
        if len(out) >= limits.MAX_SYMBOLS:
            warnings.append(f"more than {limits.MAX_SYMBOLS} symbols, the rest ignored")
            break
    return out


def _pdata_hints(pe: pefile.PE, binary: Binary, warnings: list[str]) -> list[int]:
    """Begin VAs of the x64 RUNTIME_FUNCTION entries that start a function (not chained)."""
    dirs = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    if len(dirs) <= _DIR_EXCEPTION:
        return []
    rva, size = dirs[_DIR_EXCEPTION].VirtualAddress, dirs[_DIR_EXCEPTION].Size
    count = min(size // 12, limits.MAX_FUNCTION_HINTS)
    raw = binary.read(binary.image_base + rva, count * 12) if count else b""
    if len(raw) < count * 12:
        warnings.append(".pdata is truncated")
        count = len(raw) // 12
    if not count:
        return []
    table = np.frombuffer(raw[: count * 12], dtype="<u4").reshape(count, 3)
    begins, unwind = table[:, 0].astype(np.int64), table[:, 2].astype(np.int64)
    keep = (begins != 0) & (unwind & 1 == 0)  # odd unwind RVA: an indirect chain entry
    hints: list[int] = []
    base = binary.image_base
    for begin, unw in zip(begins[keep].tolist(), unwind[keep].tolist(), strict=True):
        va = base + begin
        if not binary.is_executable(va):
            continue
        flags = binary.read(base + unw, 1)
        if flags and (flags[0] >> 3) & UNW_FLAG_CHAININFO:
            continue
        hints.append(va)
    return sorted(set(hints))
