"""Strings of a sample: ASCII and UTF-16LE runs in the file, plus stack strings.

Every string carries its provenance: file offset, virtual address (None outside any mapped
section, e.g. the PE header or an overlay), section name, and the functions that reference it::

    offset 0x2a40  va 0x404040  .rdata  ascii  'netsh firewall add portopening TCP %d "%s"'
                                                referenced by 0x401530 (open_port)

Stack strings are built by code, one immediate at a time, and exist in no section::

    mov dword ptr [ebp-0x20], 0x7473656e   ; "nets"
    mov dword ptr [ebp-0x1c], 0x69662068   ; "h fi"     -> stack string "netsh fi..."

They are reported with the VA of their first ``mov`` and the file offset of that instruction.
"""

from __future__ import annotations

import bisect
import enum
import gc
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kinship.binary.model import Binary
from kinship.disasm.columns import CodeColumns
from kinship.disasm.decoder import DEP_NONE
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.model import Function, Instruction

log = logging.getLogger(__name__)

# Strings kept per sample (hostile samples: a packed 100 MB blob of "printable" bytes). The
# first ones in file order are kept; real programs have a few thousand.
MAX_STRINGS_PER_SAMPLE = 50_000
# Characters kept of one string (a long base64 blob is still one string, not a novel).
MAX_STRING_CHARS = 1024
# Functions listed as referencing one string (a logging format used everywhere says little more
# after the first few dozen).
MAX_REFERENCING_FUNCTIONS = 32


class Encoding(str, enum.Enum):
    ASCII = "ascii"
    UTF16LE = "utf-16le"
    STACK = "stack"  # built on the stack by mov-immediate sequences


@dataclass(frozen=True, slots=True)
class StringConfig:
    """Knobs of string extraction."""

    # Shortest string kept, in characters. Shorter runs are mostly noise in code bytes ("UWVS",
    # "tH$"). Range 3..64; 5 keeps "%s %d"-style templates and drops most code noise.
    min_chars: int = 5
    # Shortest stack string kept, in characters. Range 3..64.
    min_stack_chars: int = 5
    # Also scan executable sections. Off by default: code bytes give many short false strings,
    # and compilers keep literals in data sections.
    scan_code: bool = False
    # Also scan bytes outside every section (PE header, COFF symbol table, overlay). Off by
    # default: toolchain file names and symbol names, not the author's data.
    scan_unmapped: bool = False


# Sections that hold debug information, not program data (long PE section names such as
# "/19" point into the COFF string table and are DWARF sections in MinGW builds).
_DEBUG_PREFIXES = (".debug", ".zdebug", ".stab", ".gnu_debug", "/")


def is_debug_section(name: str | None) -> bool:
    return name is not None and name.startswith(_DEBUG_PREFIXES)


@dataclass(frozen=True, slots=True)
class SampleString:
    """One string found in a sample, with where it is and who uses it."""

    text: str
    encoding: Encoding
    offset: int | None  # file offset of the first byte (stack strings: of the first mov)
    va: int | None  # virtual address of the first byte (None when not mapped)
    section: str | None  # section name ("" for unnamed, None when outside every section)
    functions: tuple[int, ...] = ()  # VAs of the functions referencing it, ascending

    @property
    def byte_length(self) -> int:
        """Bytes the string occupies in the file (terminator excluded)."""
        if self.encoding is Encoding.UTF16LE:
            return 2 * len(self.text)
        return len(self.text.encode("latin-1", "replace"))

    def encoded(self) -> bytes:
        """The string's bytes as they are in the file (stack strings: as built)."""
        if self.encoding is Encoding.UTF16LE:
            return self.text.encode("utf-16-le")
        return self.text.encode("latin-1", "replace")


@dataclass
class StringTable:
    """All strings of one sample, in file order (stack strings last)."""

    strings: list[SampleString] = field(default_factory=list)
    truncated: bool = False  # MAX_STRINGS_PER_SAMPLE was reached

    def by_text(self) -> dict[str, list[SampleString]]:
        out: dict[str, list[SampleString]] = {}
        for s in self.strings:
            out.setdefault(s.text, []).append(s)
        return out

    def texts(self) -> set[str]:
        return {s.text for s in self.strings}


_PRINTABLE = rb"\t\x20-\x7e"


def _ascii_re(min_chars: int) -> re.Pattern[bytes]:
    return re.compile(rb"[%s]{%d,}" % (_PRINTABLE, min_chars))


def _utf16_re(min_chars: int) -> re.Pattern[bytes]:
    return re.compile(rb"(?:[%s]\x00){%d,}" % (_PRINTABLE, min_chars))


class _SectionMap:
    """File offset -> (section, va), by bisection over sections sorted by offset."""

    def __init__(self, binary: Binary, scan_code: bool) -> None:
        """Sections sorted by offset; ``ranges`` are the file ranges of the sections to scan
        (data sections, and code sections when ``scan_code``; never debug sections)."""
        secs = sorted(
            (s for s in binary.sections if s.raw_size > 0), key=lambda s: (s.offset, s.va)
        )
        self._sections = secs
        self._starts = [s.offset for s in secs]
        self.ranges = [
            (s.offset, s.offset + s.raw_size)
            for s in secs
            if (scan_code or not s.executable) and not is_debug_section(s.name)
        ]

    def locate(self, offset: int) -> tuple[str | None, int | None]:
        i = bisect.bisect_right(self._starts, offset) - 1
        while i >= 0:
            s = self._sections[i]
            if s.offset <= offset < s.offset + s.raw_size:
                return s.name, s.va + (offset - s.offset)
            i -= 1
            if i >= 0 and self._sections[i].offset + self._sections[i].raw_size <= offset:
                break
        return None, None


def _scan_ranges(binary: Binary, smap: _SectionMap, unmapped: bool) -> list[tuple[int, int]]:
    """File ranges to scan: non-code, non-debug sections, plus (``unmapped``) the bytes outside
    every section (headers, overlay), merged."""
    size = len(binary.data)
    covered = sorted(
        (s.offset, min(size, s.offset + s.raw_size)) for s in binary.sections if s.raw_size > 0
    )
    outside: list[tuple[int, int]] = []
    pos = 0
    for a, b in covered:
        if a > pos:
            outside.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        outside.append((pos, size))
    ranges = sorted([(a, min(b, size)) for a, b in smap.ranges] + (outside if unmapped else []))
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def _references(dis: Disassembly | None) -> dict[int, list[int]]:
    """String VA -> VAs of the functions whose instructions reference it."""
    refs: dict[int, list[int]] = {}
    if dis is None:
        return refs
    if dis.lazy and dis.columns is not None:
        return _column_references(dis.columns)
    for fn in dis.functions:
        seen: set[int] = set()
        for block in fn.blocks:
            for ins in block.instructions:
                if ins.string and ins.data_ref is not None and ins.data_ref not in seen:
                    seen.add(ins.data_ref)
                    lst = refs.setdefault(ins.data_ref, [])
                    if len(lst) < MAX_REFERENCING_FUNCTIONS:
                        lst.append(fn.va)
    return refs


def extract_strings(
    binary: Binary, disassembly: Disassembly | None = None, config: StringConfig | None = None
) -> StringTable:
    """ASCII and UTF-16LE strings of ``binary`` (data sections, headers, overlay) and the stack
    strings of ``disassembly``'s functions, each with offset, VA, section and referencing
    functions (functions only when ``disassembly`` is given)."""
    # Only acyclic objects are made here; with a large disassembly alive, the cyclic collector
    # would rescan it for every few hundred strings: pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _extract_strings(binary, disassembly, config or StringConfig())
    finally:
        if gc_was_enabled:
            gc.enable()


def _extract_strings(
    binary: Binary, disassembly: Disassembly | None, cfg: StringConfig
) -> StringTable:
    smap = _SectionMap(binary, cfg.scan_code)
    refs = _references(disassembly)
    data = binary.data
    table = StringTable()
    found: list[tuple[int, SampleString]] = []
    budget = MAX_STRINGS_PER_SAMPLE
    patterns = ((Encoding.ASCII, _ascii_re(cfg.min_chars)),
                (Encoding.UTF16LE, _utf16_re(cfg.min_chars)))
    for start, end in _scan_ranges(binary, smap, cfg.scan_unmapped):
        for enc, pattern in patterns:
            # one byte per character (ASCII) or two (UTF-16LE of ASCII): decode only the
            # bytes of the MAX_STRING_CHARS characters kept (a blob can be megabytes long)
            width = 1 if enc is Encoding.ASCII else 2
            codec = "ascii" if enc is Encoding.ASCII else "utf-16-le"
            for m in pattern.finditer(data, start, end):
                at = m.start()
                text = data[at : min(m.end(), at + width * MAX_STRING_CHARS)].decode(codec)
                section, va = smap.locate(at)
                funcs = tuple(sorted(set(refs.get(va, ())))) if va is not None else ()
                found.append((at, SampleString(text, enc, at, va, section, funcs)))
                budget -= 1
                if budget <= 0:
                    break
            if budget <= 0:
                break
        if budget <= 0:
            table.truncated = True
            log.info("%s: more than %d strings, the rest ignored", binary.path,
                     MAX_STRINGS_PER_SAMPLE)
            break
    found.sort(key=lambda x: (x[0], x[1].encoding.value))
    table.strings = [s for _, s in found]
    if disassembly is not None and not table.truncated:
        if disassembly.lazy and disassembly.columns is not None:
            table.strings.extend(
                column_stack_strings(binary, disassembly.columns, cfg.min_stack_chars)
            )
        else:
            table.strings.extend(
                stack_strings(binary, disassembly.functions, cfg.min_stack_chars)
            )
    return table


# ---- stack strings --------------------------------------------------------------------------


def _imm_chars(ins: Instruction) -> bytes | None:
    """The bytes a ``mov stk, imm`` stores, when they are printable characters (or NUL
    padding after at least one character); None otherwise. The operand width is taken from
    the instruction's length (the immediate is the trailing bytes)."""
    imm = ins.imm
    if imm is None or ins.mnemonic != "mov" or ins.data_ref is not None:
        return None
    if not ins.norm.startswith("mov stk"):
        return None
    width = 1 if imm < 0x100 else 2 if imm < 0x10000 else 4
    if ins.size >= 8 and imm >= 0x10000:  # "mov dword ptr [ebp-x], imm32" is >= 7 bytes
        width = 4
    raw = (imm & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    text = raw.rstrip(b"\x00")
    if not text or not all(0x20 <= c < 0x7F or c == 0x09 for c in text):
        return None
    return raw


def stack_strings(binary: Binary, functions: Iterable[Function], min_chars: int = 5
                  ) -> list[SampleString]:
    """Strings built by runs of consecutive ``mov [stack], printable-imm`` instructions."""
    out: list[SampleString] = []
    for fn in functions:
        for block in fn.blocks:
            _block_stack_strings(binary, fn.va, block.instructions, min_chars, out)
    return out


def _block_stack_strings(binary: Binary, fn_va: int, insns: Sequence[Instruction],
                         min_chars: int, out: list[SampleString]) -> None:
    """Append the stack strings of one basic block to ``out``."""
    run: list[tuple[Instruction, bytes]] = []
    for ins in insns:
        # most instructions carry no immediate: skip them without a call
        chars = _imm_chars(ins) if ins.imm is not None else None
        if chars is not None:
            run.append((ins, chars))
        elif run:
            _flush_run(binary, fn_va, run, min_chars, out)
            run = []
    if run:
        _flush_run(binary, fn_va, run, min_chars, out)


def _flush_run(binary: Binary, fn_va: int, run: list[tuple[Instruction, bytes]],
               min_chars: int, out: list[SampleString]) -> None:
    if len(run) >= 2:
        buf = b"".join(raw for _, raw in run)
        text = buf.split(b"\x00", 1)[0].decode("ascii")
        if len(text) >= min_chars:
            first = run[0][0]
            sec = binary.section_for(first.va)
            out.append(SampleString(text[:MAX_STRING_CHARS], Encoding.STACK,
                                    binary.va_to_offset(first.va), first.va,
                                    sec.name if sec else None, (fn_va,)))


# ---- the same two readings of a lazy (columnar) disassembly ---------------------------------


def _column_references(cols: CodeColumns) -> dict[int, list[int]]:
    """:func:`_references` computed from the columns (same result, no objects)."""
    tl = cols.tlist
    tref = [t[4] if t[8] == DEP_NONE and t[7] and t[4] is not None else None for t in tl]
    tids = cols.tids
    mask = np.array([r is not None for r in tref], dtype=np.bool_)
    # instruction index -> data_ref of its string
    hits: dict[int, int] = {
        k: tref[tids[k]] or 0 for k in np.flatnonzero(mask[cols.tid_array()]).tolist()
    }
    for k, text in cols.x_string.items():
        if text:
            hits[k] = cols.x_ref[k]
    refs: dict[int, list[int]] = {}
    if not hits:
        return refs
    order = sorted(hits)
    per_block: dict[int, list[int]] = {
        va: [hits[k] for k in order[lo:hi]] for va, lo, hi in _blocks_with_hits(cols, order, 1)
    }
    for fb in cols.functions:
        seen: set[int] = set()
        for bva in fb.blocks:
            for ref in per_block.get(bva, ()):
                if ref not in seen:
                    seen.add(ref)
                    lst = refs.setdefault(ref, [])
                    if len(lst) < MAX_REFERENCING_FUNCTIONS:
                        lst.append(fb.va)
    return refs


def column_stack_strings(
    binary: Binary, cols: CodeColumns, min_chars: int = 5
) -> list[SampleString]:
    """:func:`stack_strings` of the functions of ``cols`` (same result, no objects)."""
    tl = cols.tlist
    chars_t = [
        _imm_chars(Instruction(0, len(t[3]), t[0], t[1], t[2], t[3], None, t[4], t[5], t[6], t[7]))
        if t[8] == DEP_NONE and t[5] is not None
        else None
        for t in tl
    ]
    if not any(c is not None for c in chars_t):
        return []
    mask = np.array([c is not None for c in chars_t], dtype=np.bool_)
    hits: list[int] = np.flatnonzero(mask[cols.tid_array()]).tolist()
    found: dict[int, list[tuple[str, int]]] = {}  # block VA -> (text, VA) in block order
    for bva, lo, hi in _blocks_with_hits(cols, hits, 2):
        texts: list[tuple[str, int]] = []
        run: list[int] = []
        for k in hits[lo:hi]:
            if run and k != run[-1] + 1:
                _column_run(cols, chars_t, run, min_chars, texts)
                run = []
            run.append(k)
        _column_run(cols, chars_t, run, min_chars, texts)
        if texts:
            found[bva] = texts
    out: list[SampleString] = []
    if not found:
        return out
    for fb in cols.functions:
        for bva in fb.blocks:
            for text, va in found.get(bva, ()):
                sec = binary.section_for(va)
                out.append(SampleString(text, Encoding.STACK, binary.va_to_offset(va), va,
                                        sec.name if sec else None, (fb.va,)))
    return out


def _blocks_with_hits(
    cols: CodeColumns, hits: list[int], at_least: int
) -> list[tuple[int, int, int]]:
    """(block VA, lo, hi) of the blocks holding ``hits[lo:hi]`` (sorted instruction
    indexes), for the blocks with at least ``at_least`` hits."""
    spans = cols.blocks.values()
    n = len(spans)
    starts = np.fromiter((s.start for s in spans), dtype=np.int64, count=n)
    ends = np.fromiter((s.end for s in spans), dtype=np.int64, count=n)
    h = np.array(hits, dtype=np.int64)
    lo = np.searchsorted(h, starts)
    hi = np.searchsorted(h, ends)
    keep = np.flatnonzero(hi - lo >= at_least)
    vas = list(cols.blocks)
    return [(vas[k], lo_k, hi_k) for k, lo_k, hi_k in
            zip(keep.tolist(), lo[keep].tolist(), hi[keep].tolist(), strict=True)]


def _column_run(cols: CodeColumns, chars_t: list[bytes | None], run: list[int],
                min_chars: int, texts: list[tuple[str, int]]) -> None:
    if len(run) >= 2:
        buf = b"".join(chars_t[cols.tids[k]] or b"" for k in run)
        text = buf.split(b"\x00", 1)[0].decode("ascii")
        if len(text) >= min_chars:
            texts.append((text[:MAX_STRING_CHARS], cols.vas[run[0]]))
