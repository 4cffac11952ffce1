"""Per-family YARA rules from what a family's samples share and nobody else has.

    family files ──> candidate strings and code patterns of each sample (below)
                 ──> minus every item any other stored sample contains (one YARA probe scan)
                 ──> groups: samples linked by >= group_min_strings distinctive strings or
                     >= min_code_patterns code patterns (connected components, split greedily
                     while a component has too little in common)
        -> one rule per group: (K of ($s*)) or (all of ($c_<arch>*) for some arch), made of the
           items every sample of the group has; "kinship_<family>" for a one-group family,
           "kinship_<family>_<k>" otherwise
        -> validate on the store (the group's samples; FPR 0 on every other family's samples)
        -> leave-one-out: for each sample, the rules made from the family's n-1 others must
           match it (see :class:`~kinship.rules.yara_validate.LeaveOneOut`)

What a rule never takes (an analyst writing the rule by hand would not either):

- bytes of loader tables: relocations (PE .reloc and the base-relocation directory, ELF
  .rel/.rela), import and export tables (descriptors, thunks, hint/name entries, DLL names,
  ELF .dynsym/.dynstr/.gnu.version), exception/unwind tables, notes, debug sections (DWARF
  "GNU C17 ..." producer strings), bytes outside every section (COFF symbol table, overlay);
- the names of imported functions and libraries, and a hint + name entry; toolchain banners
  ("GCC: (GNU) 12-win32", mingw-w64-crt source paths), texts every runtime has ("(null)") and
  printable noise without a word in it (:func:`is_boilerplate_text`);
- padding: code patterns stop at int3 and skip alignment NOPs with a YARA jump
  (``[0-15]``), so no byte of 0x00/0xCC/0x90 filler is part of a pattern;
- library and runtime code: functions whose VAs ``library`` returns (the store's library
  corpus and compiler-runtime baseline, :meth:`kinship.api.Kinship.library_functions`) give no
  code patterns, and strings referenced only by such functions (directly, or through a table
  of pointers that only they reference) are not used.

Export names of the family's own functions stay candidates (a DLL's API is part of what it
is), minus the names every DLL or shared object exports (``DllMain``, ``_init``...).

Wildcarding, per instruction (iced-x86 constant offsets): 4- and 8-byte displacements,
near-branch displacements, 4/8-byte immediates that are addresses, and every byte a PE base
relocation patches become ``??``; small immediates and constants (hash seeds, magic numbers)
stay, because they are what makes code distinctive.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import struct
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import iced_x86 as iced
import numpy as np

from kinship.binary.model import Binary, Format
from kinship.disasm.model import Flow, Function
from kinship.document import Document
from kinship.pipeline import AnalysedSample, SampleInput, analyse
from kinship.rules.yara_validate import (
    HeldOut,
    LeaveOneOut,
    Validation,
    compile_rule,
    matching_identifiers,
    matching_rules,
    validate,
)
from kinship.strings.extract import Encoding, StringTable, is_debug_section
from kinship.strings.rarity import COMMON_STRINGS, intrinsic_weight

logger = logging.getLogger(__name__)

# VAs of a sample's library/runtime functions (Kinship.library_functions has this signature).
LibraryFunctions = Callable[[AnalysedSample], Collection[int]]

# Items per YARA probe rule (YARA's default limit is 10000 strings per rule).
MAX_PROBE_ITEMS_PER_RULE = 4000
# Items probed against the other samples per family (strings and code patterns together):
# bounds the scan of a family of hundreds of samples; the most shared items go first.
MAX_PROBE_ITEMS = 12000
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


@dataclass
class YaraConfig:
    """Knobs of rule generation."""

    # Shortest string kept as a rule string, characters (3..64). Shorter ones are too common.
    min_string_len: int = 6
    # Longest string kept, characters (16..1024); longer ones are cut (YARA limit is 4096).
    max_string_len: int = 200
    # Strings per rule (1..50), longest/most specific first.
    max_strings: int = 12
    # Strings that must match: min(this, number of strings) (1..10) ...
    strings_needed: int = 2
    # ... and at least this share of the rule's strings (0..1, rounded up). Every member has
    # every string, so a high share costs little recall on the family, and it keeps a rule
    # from firing on a relative that shares a few runtime/framework strings (wine's debug
    # channel helpers, a Python extension's module boilerplate).
    strings_share: float = 0.4
    # Code patterns per architecture (0..20).
    max_code_patterns: int = 4
    # An architecture with fewer shared code patterns gets no code condition (1..20): one
    # short prologue is often a toolchain or framework stub (wine's debug-channel helpers).
    min_code_patterns: int = 2
    # Bytes of a function's start that form a code pattern (16..256).
    code_window: int = 48
    # A code pattern needs at least this many fixed (non-wildcard) bytes (8..128).
    min_fixed_bytes: int = 20
    # Functions smaller than this (bytes) are not used: stubs and thunks are shared by all.
    min_function_size: int = 24
    # Refinement rounds (drop the items that hit other samples, rebuild, revalidate) (0..5).
    max_refinements: int = 2
    # Two samples are one program (one group, one rule) when they share at least this many
    # distinctive strings, or min_code_patterns distinctive code patterns (1..50). 1: a small
    # program often has only one or two texts of its own, and what no other family has is
    # already specific; higher values split such a family into one rule per build.
    group_min_strings: int = 1
    # Samples held out one at a time for leave-one-out (0..1000; 0: none). Each costs one
    # rule build from the other n-1; a larger family is sampled evenly (sorted by sha256).
    max_leave_one_out: int = 20


@dataclass(frozen=True, slots=True)
class CodePattern:
    arch: str  # "x86" | "x64"
    hex: str  # "55 89 E5 ?? ?? ?? ?? 8B 45 08"
    function_va: int  # in the first member, for provenance
    function_name: str | None
    sample: str  # sha256 of that member


@dataclass
class FamilyRule(Document):
    """The rules of one family, or (in ``groups``) of one group of its samples. Not frozen:
    ``family_rules`` sets ``leave_one_out`` once the groups are made.

    A family whose samples are one program has one group, and ``text`` is that group's rule;
    otherwise ``text`` holds one rule per group (``groups``) and ``validation`` is of them
    all (a sample counts as matched when any of them matches it).
    """

    family: str
    name: str  # YARA rule identifier (of the family's rule set when there are several groups)
    text: str  # the rule source (every group's rule)
    strings: list[str]
    code: list[CodePattern]
    validation: Validation | None = None
    dropped: list[str] = field(default_factory=list)  # items removed while refining
    members: list[str] = field(default_factory=list)  # sha256 of the samples it covers
    leave_one_out: LeaveOneOut | None = None
    groups: list[FamilyRule] = field(default_factory=list)  # one per group of samples
    uncovered: list[str] = field(default_factory=list)  # samples in a group without a rule

    def summary(self, n_others: int) -> list[str]:
        """Lines for people: validation on the store, leave-one-out, groups, gaps."""
        out: list[str] = []
        v = self.validation
        if v is not None:
            out.append(f"TPR {v.tpr:.3f} FPR {v.fpr:.3f} on the stored samples "
                       f"({len(v.true_positives) + len(v.false_negatives)} of the family, "
                       f"{n_others} other samples)")
        loo = self.leave_one_out
        if loo is not None and loo.tpr is not None:
            n = len(loo.samples)
            out.append(f"leave-one-out TPR {loo.tpr:.3f}: {n - len(loo.missed)} of {n} samples "
                       "matched by the rules made from the family's other samples")
            out += [f"  missed {h.sample}: {h.note}" for h in loo.samples if not h.matched]
        elif loo is not None:
            out.append("leave-one-out: not measured (one sample: a rule made from it is "
                       "untested on any other build)")
        if len(self.groups) > 1:
            out.append(f"{len(self.groups)} groups of samples that share code, one rule each:")
            out += [f"  {g.name}: {len(g.members)} sample(s): {', '.join(g.members)}"
                    for g in self.groups]
        if self.uncovered:
            out.append(f"no rule covers {len(self.uncovered)} sample(s): "
                       + ", ".join(self.uncovered))
        return out


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


@dataclass
class _Items:
    """A sample's distinctive rule material (what no other family's sample contains)."""

    member: _Member
    strings: set[str]
    code: dict[str, tuple[int, Function]]  # hex -> (fixed bytes, function)

    @property
    def arch(self) -> str:
        return self.member.binary.arch.value


def rule_name(family: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", family)
    return f"kinship_{ident}"[:128]


def _group_rule_name(family: str, k: int) -> str:
    return f"{rule_name(family)[:120]}_{k}"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")


# ---- what a rule may not take ---------------------------------------------------------------
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


def _strings(m: _Member, cfg: YaraConfig) -> set[str]:
    """Candidate rule strings of ``m``: data strings outside the excluded ranges and not
    used only by library code (directly or through a table of pointers), plus the names of
    its own exports."""
    out: set[str] = set()
    imported = _imported_names(m.binary)
    starts = [r.start for r in m.excluded]
    tables: dict[int, int] = {}
    refs: dict[int, set[int]] = {}
    if m.library:
        refs = _data_refs(m.functions)
        tables = _pointer_tables(m.binary, {s.va for s in m.strings.strings
                                            if s.va is not None and not s.functions})

    def keep(t: str) -> None:
        if len(t) >= cfg.min_string_len and len(set(t)) > 3 and t not in imported and \
                not is_boilerplate_text(t):
            out.add(t[: cfg.max_string_len])

    for s in m.strings.strings:
        if s.encoding is Encoding.STACK or s.offset is None or is_table_section(s.section):
            continue
        width = 2 if s.encoding is Encoding.UTF16LE else 1
        if _in_ranges(m.excluded, starts, s.offset, s.offset + width * len(s.text)):
            continue
        users = set(s.functions)
        if not users and s.va in tables:
            users = refs.get(tables[s.va], set())
        if users and users <= m.library:
            continue
        keep(s.text.strip())
    for e in m.binary.exports:  # the module's API, whatever code is behind a name (a small
        if e.name not in _BOILERPLATE_EXPORTS:  # wrapper can look like common library code)
            keep(e.name)
    return out


def _string_rank(s: str) -> tuple[float, int, str]:
    """Most specific first: sentences and paths (intrinsic weight) before identifiers, then
    the longest."""
    return (-intrinsic_weight(s), -len(s), s)


# ---- code patterns --------------------------------------------------------------------------
def _is_padding(di: iced.Instruction, bitness: int) -> bool:
    """An alignment filler: nop (any length), int3, ``lea r, [r+0]``, ``mov r32, r32``
    (32-bit code only; in 64-bit code it clears the upper half)."""
    m = di.mnemonic
    if m in (iced.Mnemonic.NOP, iced.Mnemonic.INT3):
        return True
    if m == iced.Mnemonic.LEA and di.op1_kind == iced.OpKind.MEMORY:
        return (di.memory_base == di.op0_register and di.memory_displacement == 0
                and di.memory_index == iced.Register.NONE)
    if m == iced.Mnemonic.MOV and bitness == 32 and di.op_count == 2 and \
            di.op0_kind == iced.OpKind.REGISTER and di.op1_kind == iced.OpKind.REGISTER:
        return di.op0_register == di.op1_register
    return False


def function_pattern(binary: Binary, f: Function, window: int,
                     fixups: Collection[int] = ()) -> tuple[str, int] | None:
    """Hex pattern of the first ``window`` bytes of ``f`` (whole instructions), fixed bytes.

    Alignment padding inside the window becomes a YARA jump (``[0-15]``: its length differs
    between builds); the pattern ends at int3 and never starts with padding. Bytes whose VA
    is in ``fixups`` (patched by the loader) are wildcards.
    """
    insns = sorted(f.instructions(), key=lambda i: i.va)
    if not insns or insns[0].va != f.va:
        return None
    tokens: list[str] = []
    fixed = 0
    used = 0
    expect = f.va
    for ins in insns:
        if ins.va != expect or used + ins.size > window:
            break
        raw = binary.read(ins.va, ins.size)
        if len(raw) != ins.size:
            break
        dec = iced.Decoder(binary.bitness, raw, ip=ins.va)
        di = dec.decode()
        if _is_padding(di, binary.bitness):
            if not tokens or di.mnemonic == iced.Mnemonic.INT3:
                break
            if not tokens[-1].startswith("["):
                tokens.append(f"[0-{max(15, ins.size)}]")
            used += ins.size
            expect = ins.va + ins.size
            continue
        co = dec.get_constant_offsets(di)
        wild = [ins.va + k in fixups for k in range(ins.size)] if fixups else \
            [False] * ins.size
        if co.has_displacement and co.displacement_size >= 4:
            for k in range(co.displacement_offset, co.displacement_offset + co.displacement_size):
                wild[k] = True
        if co.has_immediate and co.immediate_size >= 4 and (
                ins.flow in (Flow.CALL, Flow.JUMP, Flow.COND) or ins.data_ref is not None
                or ins.target is not None or binary.section_for(int.from_bytes(
                    raw[co.immediate_offset:co.immediate_offset + co.immediate_size],
                    "little")) is not None):
            for k in range(co.immediate_offset, co.immediate_offset + co.immediate_size):
                wild[k] = True
        for k, byte in enumerate(raw):
            tokens.append("??" if wild[k] else f"{byte:02X}")
            fixed += 0 if wild[k] else 1
        used += ins.size
        expect = ins.va + ins.size
        if ins.flow in (Flow.RET, Flow.JUMP, Flow.INDIRECT_JUMP, Flow.INT):
            break
    # YARA hex strings may not end with a wildcard or a jump, nor start with one
    while tokens and (tokens[-1] == "??" or tokens[-1].startswith("[")):
        tokens.pop()
    if not tokens or tokens[0] == "??":
        return None
    return " ".join(tokens), fixed


def _patterns(m: _Member, cfg: YaraConfig) -> dict[str, tuple[int, Function]]:
    out: dict[str, tuple[int, Function]] = {}
    for f in m.functions:
        if f.size < cfg.min_function_size or f.va in m.library:
            continue
        p = function_pattern(m.binary, f, cfg.code_window, m.fixups)
        if p is not None and p[1] >= cfg.min_fixed_bytes:
            out.setdefault(p[0], (p[1], f))
    return out


# ---- rendering and probing ------------------------------------------------------------------
def render_rule(family: str, strings: Sequence[str], code: Sequence[CodePattern],
                cfg: YaraConfig, *, meta: dict[str, str] | None = None,
                name: str | None = None) -> str:
    """The YARA source for one family (or one group of it, named ``name``)."""
    name = name or rule_name(family)
    lines = [f"rule {name}", "{", "    meta:",
             f'        family = "{_escape(family)}"',
             '        author = "kinship (generated)"']
    for k, v in (meta or {}).items():
        lines.append(f'        {k} = "{_escape(v)}"')
    lines.append("    strings:")
    for n, s in enumerate(strings):
        lines.append(f'        $s{n} = "{_escape(s)}" ascii wide')
    by_arch: dict[str, list[CodePattern]] = {}
    for c in code:
        by_arch.setdefault(c.arch, []).append(c)
    for arch, pats in sorted(by_arch.items()):
        for n, c in enumerate(pats):
            where = c.function_name or f"0x{c.function_va:x}"
            lines.append(f"        $c_{arch}_{n} = {{ {c.hex} }}  // {where}")
    conds: list[str] = []
    if strings:
        need = max(cfg.strings_needed, math.ceil(cfg.strings_share * len(strings)))
        conds.append(f"{min(need, len(strings))} of ($s*)")
    for arch in sorted(by_arch):
        conds.append(f"all of ($c_{arch}_*)")
    lines += ["    condition:", "        " + (" or ".join(f"({c})" for c in conds) or "false"),
              "}"]
    return "\n".join(lines) + "\n"


def _drop_hitting(items: dict[str, str], others: dict[str, Path]) -> set[str]:
    """Identifiers of ``items`` (id -> yara string line) found in any other sample."""
    if not items or not others:
        return set()
    keys = list(items)
    hit: set[str] = set()
    for i in range(0, len(keys), MAX_PROBE_ITEMS_PER_RULE):
        body = "\n".join(f"        {k} = {items[k]}"
                         for k in keys[i:i + MAX_PROBE_ITEMS_PER_RULE])
        compiled = compile_rule("rule probe\n{\n    strings:\n" + body +
                                "\n    condition:\n        any of them\n}\n")
        for path in others.values():
            hit |= matching_identifiers(compiled, path)
    return hit


def _distinctive(members: list[_Member], others: dict[str, Path], cfg: YaraConfig
                 ) -> dict[str, _Items]:
    """Each member's candidate items minus those any other sample contains.

    Probed: every item two members share, and each member's best own items (what a rule
    from that member alone would use), most shared first, at most MAX_PROBE_ITEMS.
    """
    cand = {m.sha256: (_strings(m, cfg), _patterns(m, cfg)) for m in members}
    s_count: dict[str, int] = {}
    c_count: dict[str, int] = {}
    for strs, pats in cand.values():
        for s in strs:
            s_count[s] = s_count.get(s, 0) + 1
        for h in pats:
            c_count[h] = c_count.get(h, 0) + 1
    want_s = {s for s, n in s_count.items() if n >= 2}
    want_c = {h for h, n in c_count.items() if n >= 2}
    for strs, pats in cand.values():
        want_s.update(sorted(strs, key=_string_rank)[: cfg.max_strings * 20])
        want_c.update(sorted(pats, key=lambda h: (-pats[h][0], h))[: cfg.max_code_patterns * 8])
    ranked_s = sorted(want_s, key=lambda s: (-s_count[s], _string_rank(s)))
    ranked_c = sorted(want_c, key=lambda h: (-c_count[h], h))
    budget = MAX_PROBE_ITEMS
    ranked_s = ranked_s[:budget * 2 // 3]
    ranked_c = ranked_c[:budget - len(ranked_s)]
    probe = {f"$s{n}": f'"{_escape(s)}" ascii wide' for n, s in enumerate(ranked_s)}
    probe.update({f"$c{n}": f"{{ {h} }}" for n, h in enumerate(ranked_c)})
    hit = _drop_hitting(probe, others)
    good_s = {s for n, s in enumerate(ranked_s) if f"$s{n}" not in hit}
    good_c = {h for n, h in enumerate(ranked_c) if f"$c{n}" not in hit}
    return {m.sha256: _Items(m, cand[m.sha256][0] & good_s,
                             {h: v for h, v in cand[m.sha256][1].items() if h in good_c})
            for m in members}


# ---- groups ---------------------------------------------------------------------------------
def _common(group: Sequence[_Items]) -> tuple[set[str], dict[str, set[str]]]:
    """Strings every sample of ``group`` has, and per architecture the code patterns every
    sample of that architecture has."""
    strings = set.intersection(*(g.strings for g in group))
    code: dict[str, set[str]] = {}
    for g in group:
        code[g.arch] = set(g.code) if g.arch not in code else code[g.arch] & set(g.code)
    return strings, code


def _enough(group: Sequence[_Items], cfg: YaraConfig) -> bool:
    """Whether ``group`` has enough in common for one rule to cover it."""
    strings, code = _common(group)
    if len(strings) >= (1 if len(group) == 1 else cfg.group_min_strings):
        return True
    return all(len(c) >= cfg.min_code_patterns for c in code.values())


def group_samples(items: dict[str, _Items], cfg: YaraConfig) -> list[list[str]]:
    """Groups of samples (sha256) that share code or strings, largest first.

    Connected components of the graph "shares >= group_min_strings distinctive strings or
    >= min_code_patterns distinctive code patterns"; a component whose samples have too
    little in common all together (a chain A-B-C where A and C share nothing) is split
    greedily, in sha256 order, into groups that do.
    """
    keys = sorted(items)
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if find(a) == find(b):
                continue
            ia, ib = items[a], items[b]
            if len(ia.strings & ib.strings) >= cfg.group_min_strings or (
                    ia.arch == ib.arch
                    and len(set(ia.code) & set(ib.code)) >= cfg.min_code_patterns):
                parent[find(b)] = find(a)
    comps: dict[str, list[str]] = {}
    for k in keys:
        comps.setdefault(find(k), []).append(k)
    groups: list[list[str]] = []
    for comp in comps.values():
        rest = list(comp)
        while rest:
            group = [rest.pop(0)]
            if not _enough([items[k] for k in group + rest], cfg):
                for k in list(rest):
                    if _enough([items[g] for g in [*group, k]], cfg):
                        group.append(k)
                        rest.remove(k)
            else:
                group += rest
                rest = []
            groups.append(group)
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _group_rule(family: str, name: str, group: Sequence[_Items], files: dict[str, Path],
                others: dict[str, Path], cfg: YaraConfig, *, check: bool) -> FamilyRule | None:
    """The rule for one group, validated on the store when ``check``."""
    common_strings, common_code = _common(group)
    strings = sorted(common_strings, key=_string_rank)[: cfg.max_strings]
    code: list[CodePattern] = []
    for arch in sorted(common_code):
        first = next(g for g in group if g.arch == arch)
        ranked = sorted(common_code[arch], key=lambda h: (-first.code[h][0], h))
        if len(ranked) < cfg.min_code_patterns:
            continue
        for h in ranked[: cfg.max_code_patterns]:
            f = first.code[h][1]
            code.append(CodePattern(arch, h, f.va, f.name, first.member.sha256))
    members = sorted(g.member.sha256 for g in group)
    meta = {"members": str(len(members)), "generator": "kinship.rules.yara_gen"}
    dropped: list[str] = []
    for _ in range(cfg.max_refinements + 1):
        if not strings and not code:
            logger.info("%s: nothing shared by every sample of %s and absent elsewhere",
                        family, name)
            return None
        text = render_rule(family, strings, code, cfg, meta=meta, name=name)
        if not check:
            return FamilyRule(family, name, text, strings, code, members=members)
        group_files = {k: files[k] for k in members}
        v = validate(text, group_files, others)
        if v.ok:
            return FamilyRule(family, name, text, strings, code, v, dropped, members=members)
        # refine: a condition too weak for the others -> require more strings; code missing in
        # some member -> drop the code patterns
        if v.false_positives and cfg.strings_needed < len(strings):
            cfg = YaraConfig(**{**cfg.__dict__, "strings_needed": cfg.strings_needed + 1})
            continue
        if v.false_negatives and code:
            dropped += [c.hex for c in code]
            code = []
            continue
        break
    logger.info("%s: no rule for %s passes validation (TPR 1, FPR 0)", family, name)
    return None


def _family_rules(family: str, items: dict[str, _Items], files: dict[str, Path],
                  others: dict[str, Path], cfg: YaraConfig, *, check: bool
                  ) -> tuple[list[FamilyRule], list[str]]:
    """One rule per group of ``items``' samples, and the samples no rule covers."""
    groups = group_samples(items, cfg)
    rules: list[FamilyRule] = []
    uncovered: list[str] = []
    for k, group in enumerate(groups, 1):
        name = rule_name(family) if len(groups) == 1 else _group_rule_name(family, k)
        r = _group_rule(family, name, [items[h] for h in group], files, others, cfg,
                        check=check)
        if r is None:
            uncovered += group
        else:
            rules.append(r)
    return rules, sorted(uncovered)


def _leave_one_out(family: str, items: dict[str, _Items], files: dict[str, Path],
                   cfg: YaraConfig) -> LeaveOneOut:
    """For each sample (at most max_leave_one_out), the rules from the others must match it."""
    keys = sorted(items)
    if len(keys) < 2 or cfg.max_leave_one_out <= 0:
        return LeaveOneOut(skipped=len(keys))
    n_held = min(len(keys), cfg.max_leave_one_out)
    held = [keys[i * len(keys) // n_held] for i in range(n_held)]
    out = LeaveOneOut(skipped=len(keys) - n_held)
    for h in held:
        rest = {k: v for k, v in items.items() if k != h}
        rules, _ = _family_rules(family, rest, files, {}, cfg, check=False)
        if not rules:
            out.samples.append(HeldOut(h, False, None, len(rest),
                                       f"no rule from the other {len(rest)} samples"))
            continue
        names = matching_rules(compile_rule("\n".join(r.text for r in rules)), files[h])
        out.samples.append(HeldOut(
            h, bool(names), names[0] if names else None, len(rest),
            "" if names else f"the rules from the other {len(rest)} samples do not match"))
    return out


def generate_family_rule(
    family: str,
    members: dict[str, Path],
    others: dict[str, Path],
    config: YaraConfig | None = None,
    *,
    library: LibraryFunctions | None = None,
) -> FamilyRule | None:
    """Validated rules for ``family`` (sha256 -> file of each member), or None if none holds.

    ``others`` are every other stored sample's files; no rule may hit any of them.
    ``library`` gives the VAs of a sample's library/runtime functions
    (:meth:`kinship.api.Kinship.library_functions`); their code and the strings only they use
    are never rule material. The result has one rule per group of samples that share code
    (``groups``), its validation on the store, and leave-one-out over the family.
    """
    cfg = config or YaraConfig()
    if not members:
        return None
    loaded = [_load(p, library) for _, p in sorted(members.items())]
    items = _distinctive(loaded, others, cfg)
    rules, uncovered = _family_rules(family, items, members, others, cfg, check=True)
    if not rules:
        logger.info("%s: no group of its samples has a rule", family)
        return None
    loo = _leave_one_out(family, items, members, cfg)
    for r in rules:
        r.leave_one_out = LeaveOneOut([h for h in loo.samples if h.sample in r.members])
    if len(rules) == 1 and not uncovered:
        top = rules[0]
        return FamilyRule(top.family, top.name, top.text, top.strings, top.code,
                          top.validation, top.dropped, list(top.members), loo, rules, [])
    text = "\n".join(r.text for r in rules)
    strings = list(dict.fromkeys(s for r in rules for s in r.strings))
    return FamilyRule(family, rule_name(family), text, strings,
                      [c for r in rules for c in r.code], validate(text, members, others),
                      [d for r in rules for d in r.dropped], sorted(members), loo, rules,
                      uncovered)
