"""Candidate rule material of one family member: its strings (outside the excluded ranges,
not used only by library code) and code patterns (function starts, addresses wildcarded).
"""

from __future__ import annotations

from collections.abc import Collection

import iced_x86 as iced

from kinship.binary.model import Binary
from kinship.disasm.model import Flow, Function
from kinship.rules.yara_exclude import (
    _BOILERPLATE_EXPORTS,
    _data_refs,
    _imported_names,
    _in_ranges,
    _Member,
    _pointer_tables,
    is_boilerplate_text,
    is_table_section,
)
from kinship.rules.yara_model import YaraConfig
from kinship.strings.extract import Encoding
from kinship.strings.rarity import intrinsic_weight


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

