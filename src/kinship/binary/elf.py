"""ELF loader: ELF32 i386 / ELF64 x86-64 executables and shared objects -> :class:`Binary`.

LIEF parses headers, sections, symbols and relocations (about 3 ms for a 2 MB libc). Two things
are done here because they must be fast and bounded on hostile input:

* function hints from ``.eh_frame`` (via the sorted table in ``.eh_frame_hdr`` when it uses the
  usual ``datarel|sdata4`` encoding, otherwise by walking the CIE/FDE records);
* PLT stub resolution: each stub in ``.plt``/``.plt.sec``/``.plt.got`` is decoded with iced-x86
  and its ``jmp [slot]`` is mapped to the GOT slot's import::

      .plt.sec:  endbr64 ; bnd jmp [rip+X]     -> slot = next_ip + X
      .plt (PIC i386):    jmp [ebx+X]          -> slot = .got.plt + X  (ebx holds the GOT base)
      .plt (non-PIC):     jmp [X]              -> slot = X
"""

from __future__ import annotations

import logging
import struct
import warnings as warnings_
from collections.abc import Callable
from typing import TypeVar

import lief
import numpy as np
from iced_x86 import Decoder, Instruction, Mnemonic, OpKind, Register

from kinship.binary import limits
from kinship.binary.measure import (
    check_address_space,
    compute_hashes,
    in_sections,
    packed_warnings,
    shannon_entropy,
)
from kinship.binary.model import Arch, Binary, Export, Format, Import, Section, Symbol
from kinship.exceptions import CorruptFileError, UnsupportedFormatError

T = TypeVar("T")

logger = logging.getLogger(__name__)

# LIEF logs every oddity of a malformed file to stderr; the loader reports problems itself.
lief.logging.disable()

SHF_WRITE = 0x1
SHF_EXECINSTR = 0x4
PF_X = 0x1
PF_W = 0x2

_IMPORT_RELOCS = {
    lief.ELF.Relocation.TYPE.X86_64_JUMP_SLOT,
    lief.ELF.Relocation.TYPE.X86_64_GLOB_DAT,
    lief.ELF.Relocation.TYPE.X86_JUMP_SLOT,
    lief.ELF.Relocation.TYPE.X86_GLOB_DAT,
}
_PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
# Instructions that pad between PLT stubs and are skipped when finding a stub's start.
_PADDING = {Mnemonic.NOP, Mnemonic.INT3}

# DWARF pointer encodings (DW_EH_PE_*) used by .eh_frame and .eh_frame_hdr.
DW_EH_PE_OMIT = 0xFF
DW_EH_PE_PCREL = 0x10
DW_EH_PE_DATAREL = 0x30
DW_EH_PE_DATAREL_SDATA4 = 0x3B


def parse_elf(data: bytes, path: str) -> Binary:
    """Parse an x86/x64 ELF file. Raises Corrupt/UnsupportedFormatError on unusable headers."""
    if len(data) < 52:
        raise CorruptFileError(path, f"truncated ELF header ({len(data)} bytes)")
    elf_class = data[4]
    if elf_class not in (1, 2):
        raise CorruptFileError(path, f"bad ELF class byte {elf_class}")
    if data[5] != 1:
        raise UnsupportedFormatError(path, "big-endian ELF is not supported")
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine == 3:
        arch = Arch.X86
    elif machine == 62:
        arch = Arch.X64
    else:
        raise UnsupportedFormatError(path, f"ELF for machine {machine} is not x86 or x64")
    if elf_class == 2 and len(data) < 64:
        raise CorruptFileError(path, f"truncated ELF64 header ({len(data)} bytes)")

    # LIEF emits a RuntimeWarning for every out-of-range enum value (section/segment/relocation
    # types) of a malformed file; those values simply do not match what we look for.
    with warnings_.catch_warnings():
        warnings_.simplefilter("ignore", RuntimeWarning)
        return _parse(data, path, arch)


def _parse(data: bytes, path: str, arch: Arch) -> Binary:
    elf = lief.ELF.parse(data)
    if elf is None:
        raise CorruptFileError(path, "malformed ELF headers (LIEF could not parse them)")

    warnings: list[str] = []
    sections = _sections(elf, data, warnings)
    if not sections:
        raise CorruptFileError(path, "ELF has no loadable sections or segments")
    check_address_space(path, sections, arch.bitness)
    binary = Binary(
        path=path,
        data=data,
        format=Format.ELF,
        arch=arch,
        image_base=int(elf.imagebase),
        hashes=compute_hashes(data),
        sections=sections,
        entry_point=int(elf.entrypoint) or None,
    )
    # Each table below is optional: a damaged one (LIEF raises UnicodeDecodeError on some
    # mangled names) costs that table and a warning, not the whole sample.
    binary.symbols = _optional("symbols", lambda: _symbols(elf, warnings), [], warnings)
    binary.exports = _optional("exports", lambda: _exports(elf, warnings), [], warnings)
    binary.imports = _optional("imports", lambda: _imports(elf, warnings), [], warnings)
    binary.api_thunks = {imp.slot: _thunk_name(imp) for imp in binary.imports}
    no_stubs: dict[int, str] = {}
    binary.api_thunks.update(
        _optional("PLT stubs", lambda: _plt_stubs(binary, elf, warnings), no_stubs, warnings))
    binary.function_hints = _optional(
        "eh_frame", lambda: _eh_frame_hints(binary, elf, warnings), [], warnings)
    warnings.extend(packed_warnings(sections))
    binary.warnings = warnings[: limits.MAX_WARNINGS]
    return binary


def _optional(what: str, parse: Callable[[], T], default: T, warnings: list[str]) -> T:
    try:
        return parse()
    except (UnicodeDecodeError, ValueError, IndexError, OverflowError) as e:
        warnings.append(f"damaged ELF {what} ignored ({type(e).__name__}: {e})")
        return default


def _text(value: str | bytes) -> str:
    """LIEF returns bytes for names that are not valid UTF-8 (common in hostile files)."""
    return value if isinstance(value, str) else value.decode("latin-1")


def _thunk_name(imp: Import) -> str:
    return f"{imp.library}!{imp.name}"


def _sections(elf: lief.ELF.Binary, data: bytes, warnings: list[str]) -> list[Section]:
    """SHF_ALLOC sections; PT_LOAD segments when the section headers are stripped."""
    out: list[Section] = []
    for s in elf.sections:
        if not s.has(lief.ELF.Section.FLAGS.ALLOC) or s.size == 0:
            continue
        if len(out) >= limits.MAX_SECTIONS:
            warnings.append(f"more than {limits.MAX_SECTIONS} sections, the rest ignored")
            break
        nobits = s.type == lief.ELF.Section.TYPE.NOBITS
        offset = int(s.offset)
        raw_size = 0 if nobits else max(0, min(int(s.size), len(data) - offset))
        flags = int(s.flags)
        out.append(
            Section(
                name=_text(s.name),
                va=int(s.virtual_address),
                virtual_size=int(s.size),
                offset=offset,
                raw_size=raw_size,
                executable=bool(flags & SHF_EXECINSTR),
                writable=bool(flags & SHF_WRITE),
                entropy=shannon_entropy(memoryview(data)[offset : offset + raw_size]),
            )
        )
    if out:
        return out
    for i, seg in enumerate(elf.segments):
        if seg.type != lief.ELF.Segment.TYPE.LOAD or seg.virtual_size == 0:
            continue
        if len(out) >= limits.MAX_SECTIONS:
            break
        offset = int(seg.file_offset)
        raw_size = max(0, min(int(seg.physical_size), len(data) - offset))
        flags = int(seg.flags)
        out.append(
            Section(
                name=f"seg{i}",
                va=int(seg.virtual_address),
                virtual_size=int(seg.virtual_size),
                offset=offset,
                raw_size=raw_size,
                executable=bool(flags & PF_X),
                writable=bool(flags & PF_W),
                entropy=shannon_entropy(memoryview(data)[offset : offset + raw_size]),
            )
        )
    if out:
        warnings.append("no section headers; using program segments")
    return out


def _symbols(elf: lief.ELF.Binary, warnings: list[str]) -> list[Symbol]:
    seen: set[tuple[str, int]] = set()
    out: list[Symbol] = []
    for table in (elf.symtab_symbols, elf.dynamic_symbols):
        for s in table:
            if s.type != lief.ELF.Symbol.TYPE.FUNC or s.shndx == 0 or s.value == 0:
                continue
            key = (_text(s.name), int(s.value))
            if key in seen:
                continue
            seen.add(key)
            out.append(Symbol(name=key[0], va=key[1], size=int(s.size)))
            if len(out) >= limits.MAX_SYMBOLS:
                warnings.append(f"more than {limits.MAX_SYMBOLS} symbols, the rest ignored")
                return out
    return out


def _exports(elf: lief.ELF.Binary, warnings: list[str]) -> list[Export]:
    out: list[Export] = []
    seen: set[str] = set()
    for s in elf.dynamic_symbols:
        if s.type != lief.ELF.Symbol.TYPE.FUNC or s.shndx == 0 or s.value == 0:
            continue
        name = _text(s.name)
        if s.binding == lief.ELF.Symbol.BINDING.LOCAL or name in seen:
            continue
        seen.add(name)
        out.append(Export(name=name, va=int(s.value)))
        if len(out) >= limits.MAX_EXPORTS:
            warnings.append(f"more than {limits.MAX_EXPORTS} exports, the rest ignored")
            break
    return out


def _version_libraries(elf: lief.ELF.Binary) -> dict[str, str]:
    """Symbol version name ("GLIBC_2.2.5") -> the library that defines it ("libc.so.6")."""
    out: dict[str, str] = {}
    for req in elf.symbols_version_requirement:
        for aux in req.get_auxiliary_symbols():
            out[_text(aux.name)] = _text(req.name)
    return out


def _imports(elf: lief.ELF.Binary, warnings: list[str]) -> list[Import]:
    """Imports from JUMP_SLOT/GLOB_DAT relocations of undefined symbols; slot = GOT entry VA."""
    by_version = _version_libraries(elf)
    needed = [_text(lib) for lib in elf.libraries]
    default_lib = needed[0] if len(needed) == 1 else ""
    out: list[Import] = []
    for r in elf.relocations:
        if r.type not in _IMPORT_RELOCS or not r.has_symbol:
            continue
        sym = r.symbol
        if sym is None or not sym.name or sym.shndx != 0:
            continue
        library = default_lib
        version = sym.symbol_version if sym.has_version else None
        aux = version.symbol_version_auxiliary if version is not None else None
        if aux is not None:
            library = by_version.get(_text(aux.name), default_lib)
        out.append(Import(library=library, name=_text(sym.name), slot=int(r.address)))
        if len(out) >= limits.MAX_IMPORTS:
            warnings.append(f"more than {limits.MAX_IMPORTS} imports, the rest ignored")
            break
    return out


def _plt_stubs(binary: Binary, elf: lief.ELF.Binary, warnings: list[str]) -> dict[int, str]:
    """PLT stub VA -> "library!name", by decoding each stub's indirect jump to its GOT slot."""
    slots = {imp.slot: _thunk_name(imp) for imp in binary.imports}
    if not slots:
        return {}
    # i386 PIC stubs address slots relative to the GOT base (the start of .got.plt).
    got = elf.get_section(".got.plt") or elf.get_section(".got")
    got_base = int(got.virtual_address) if got is not None else None
    out: dict[int, str] = {}
    for sec in binary.sections:
        if sec.name not in _PLT_SECTIONS or not sec.executable:
            continue
        code = binary.read(sec.va, min(sec.raw_size, limits.MAX_PLT_BYTES))
        stub_start: int | None = None
        instr = Instruction()
        decoder = Decoder(binary.bitness, code, ip=sec.va)
        while decoder.can_decode:
            decoder.decode_out(instr)
            if instr.is_invalid:
                stub_start = None
                continue
            if stub_start is None:
                if instr.mnemonic in _PADDING or _all_zero(code, instr.ip - sec.va, instr.len):
                    continue
                stub_start = instr.ip
            if instr.mnemonic != Mnemonic.JMP:
                continue
            slot = _jump_slot(instr, got_base)
            if slot is not None and slot in slots:
                out[stub_start] = slots[slot]
            stub_start = None
    if not out:
        warnings.append("no PLT stub could be resolved to an import")
    return out


def _all_zero(code: bytes, offset: int, length: int) -> bool:
    """True for `add [eax], al` (00 00) padding that i386 linkers put between PLT stubs."""
    return not code[offset : offset + length].strip(b"\0")


def _jump_slot(instr: Instruction, got_base: int | None) -> int | None:
    if instr.op0_kind != OpKind.MEMORY or instr.memory_index != Register.NONE:
        return None
    base = instr.memory_base
    if base in (Register.RIP, Register.EIP, Register.NONE):
        return int(instr.memory_displacement)  # iced resolves rip-relative to the target VA
    if base == Register.EBX and got_base is not None:
        disp = int(instr.memory_displacement)
        if disp >= 0x80000000:
            disp -= 0x100000000
        return (got_base + disp) & 0xFFFFFFFF
    return None


# ---------------------------------------------------------------------------------------------
# .eh_frame function hints
# ---------------------------------------------------------------------------------------------


def _eh_frame_hints(binary: Binary, elf: lief.ELF.Binary, warnings: list[str]) -> list[int]:
    hints: list[int] = []
    hdr = next((s for s in binary.sections if s.name == ".eh_frame_hdr"), None)
    if hdr is not None:
        hints = _hints_from_hdr(binary, hdr)
    if not hints:
        frame = next((s for s in binary.sections if s.name == ".eh_frame"), None)
        if frame is not None:
            try:
                hints = _hints_from_eh_frame(binary, frame)
            except (struct.error, IndexError, ValueError) as e:
                warnings.append(f".eh_frame unreadable: {e}")
    # PLT sections have FDEs of their own; their stubs are api_thunks, not functions.
    code = [s for s in binary.sections if s.name not in _PLT_SECTIONS]
    return in_sections(code, hints)


def _hints_from_hdr(binary: Binary, hdr: Section) -> list[int]:
    """Initial locations from the .eh_frame_hdr binary-search table (datarel sdata4 only)."""
    raw = binary.read(hdr.va, hdr.raw_size)
    if len(raw) < 12 or raw[0] != 1:
        return []
    ptr_enc, count_enc, table_enc = raw[1], raw[2], raw[3]
    if count_enc != 0x03 or table_enc != DW_EH_PE_DATAREL_SDATA4 or ptr_enc & 0x0F != 0x0B:
        return []
    (count,) = struct.unpack_from("<I", raw, 8)
    count = min(count, (len(raw) - 12) // 8, limits.MAX_FUNCTION_HINTS)
    table = np.frombuffer(raw[12 : 12 + count * 8], dtype="<i4").reshape(count, 2)
    return [int(hdr.va + x) for x in table[:, 0].astype(np.int64).tolist()]


def _hints_from_eh_frame(binary: Binary, frame: Section) -> list[int]:
    """pc_begin of every FDE, walking the CIE/FDE records of .eh_frame."""
    raw = binary.read(frame.va, frame.raw_size)
    cie_encodings: dict[int, int] = {}
    hints: list[int] = []
    pos = 0
    while pos + 8 <= len(raw) and len(hints) < limits.MAX_FUNCTION_HINTS:
        (length,) = struct.unpack_from("<I", raw, pos)
        if length == 0:
            break  # terminator
        header = 4
        if length == 0xFFFFFFFF:
            (length,) = struct.unpack_from("<Q", raw, pos + 4)
            header = 12
        body = pos + header
        end = body + length
        if end > len(raw) or length < 4:
            break
        (cie_id,) = struct.unpack_from("<I", raw, body)
        if cie_id == 0:
            cie_encodings[pos] = _cie_fde_encoding(raw, body + 4, end)
        else:
            cie_pos = body - cie_id
            enc = cie_encodings.get(cie_pos)
            if enc is None and 0 <= cie_pos < len(raw):
                enc = _cie_fde_encoding(raw, cie_pos + 8, len(raw))
            field = body + 4
            value = _read_encoded(raw, field, enc or 0, binary.bitness)
            if value is not None:
                if (enc or 0) & 0x70 == DW_EH_PE_PCREL:
                    value += frame.va + field
                hints.append(value & ((1 << binary.bitness) - 1))
        pos = end
    return hints


def _cie_fde_encoding(raw: bytes, pos: int, end: int) -> int:
    """The FDE pointer encoding ('R' augmentation) of the CIE whose body starts at ``pos``."""
    version = raw[pos]
    aug_end = raw.index(b"\0", pos + 1, end)
    aug = raw[pos + 1 : aug_end]
    p = aug_end + 1
    if b"eh" in aug:
        return 0  # ancient GCC augmentation; no 'R' record
    _, p = _uleb(raw, p)  # code alignment
    _, p = _uleb(raw, p)  # data alignment (sleb; only skipped)
    if version == 1:
        p += 1
    else:
        _, p = _uleb(raw, p)
    if not aug.startswith(b"z"):
        return 0
    _, p = _uleb(raw, p)  # augmentation data length
    for ch in aug[1:]:
        if ch == ord("R"):
            return raw[p]
        if ch == ord("P"):
            enc = raw[p]
            p += 1 + _encoded_size(enc)
        elif ch == ord("L"):
            p += 1
    return 0


def _uleb(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = raw[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80 or shift > 63:
            return value, pos


def _encoded_size(enc: int) -> int:
    return {0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}.get(enc & 0x0F, 8)


def _read_encoded(raw: bytes, pos: int, enc: int, bitness: int) -> int | None:
    fmt = {
        0x00: "<Q" if bitness == 64 else "<I",
        0x02: "<H",
        0x03: "<I",
        0x04: "<Q",
        0x0A: "<h",
        0x0B: "<i",
        0x0C: "<q",
    }.get(enc & 0x0F)
    if fmt is None or pos + struct.calcsize(fmt) > len(raw):
        return None
    return int(struct.unpack_from(fmt, raw, pos)[0])
