"""The function-scope features of :class:`kinship.intel.capa_extractor.KinshipCapaExtractor`:
what capa's vivisect backend finds in a function, a basic block and an instruction
(``capa/features/extractors/viv/{function,basicblock,insn}.py``):

    function   loop (calls to: the extractor's call graph)
    bb         tight loop, stack string
    insn       api, string, bytes, number, offset, operand[i].number/offset, mnemonic,
               nzxor, peb access, fs/gs access, cross section flow, calls from,
               recursive call, indirect call, call $+5

Instruction features come from small pure handlers (``INSN_HANDLERS``, capa-style registry)
over a :class:`DecodedInsn`: kinship's :class:`Instruction` with its iced-x86 decoding, for
the operands kinship does not keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import capa.features.extractors.helpers as capa_helpers
from capa.features.address import AbsoluteVirtualAddress, Address
from capa.features.common import Bytes, Characteristic, Feature, String
from capa.features.insn import API, Mnemonic, Number, Offset, OperandNumber, OperandOffset
from iced_x86 import OpKind, Register

from kinship.binary.model import Binary
from kinship.disasm.model import BasicBlock, Flow, Function, Instruction

Found = Iterator[tuple[Feature, Address]]

# capa's own limits, repeated so our features equal the vivisect backend's.
MAX_BYTES_FEATURE_SIZE = 0x100  # bytes read at a data reference (capa.features.common)
MAX_STRUCTURE_SIZE = 0x10000  # "add reg, imm" below this is also a structure offset
MIN_STACKSTRING_LEN = 8  # printable immediates moved to the stack that make a stack string
SECURITY_COOKIE_BYTES_DELTA = 0x40  # xor near function start/end with a frame reg = cookie
MIN_STRING_LEN = 4  # shortest string feature (capa's default)
# Below this, an immediate is a number even if an image mapped at 0 (PIE ELF) contains it
# (the same threshold as kinship.disasm.decoder.MIN_ABSOLUTE_ADDRESS).
MIN_ABSOLUTE_ADDRESS = 0x10000

_STACK_REGS = {Register.ESP, Register.EBP, Register.RSP, Register.RBP}
_IMM_KINDS = {OpKind.IMMEDIATE8, OpKind.IMMEDIATE8_2ND, OpKind.IMMEDIATE16, OpKind.IMMEDIATE32,
              OpKind.IMMEDIATE64, OpKind.IMMEDIATE8TO16, OpKind.IMMEDIATE8TO32,
              OpKind.IMMEDIATE8TO64, OpKind.IMMEDIATE32TO64}
_IMM32_KINDS = {OpKind.IMMEDIATE32, OpKind.IMMEDIATE8TO32}
_IMM16_KINDS = {OpKind.IMMEDIATE16, OpKind.IMMEDIATE8TO16}


@dataclass(slots=True)
class DecodedInsn:
    """One kinship instruction with its iced-x86 decoding (for operand features)."""

    insn: Instruction
    iced: Any  # iced_x86.Instruction, or None when the bytes could not be re-read
    block: BasicBlock
    first_block: bool


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def api_names(api: str) -> list[str]:
    """``"kernel32.dll!CreateProcessA"`` -> capa's api spellings (CreateProcessA, CreateProcess)."""
    lib, _, sym = api.rpartition("!")
    names = list(capa_helpers.generate_symbols(lib or "", sym, include_dll=False))
    if sym.startswith("_"):
        names.append(sym.lstrip("_"))
    return list(dict.fromkeys(n for n in names if n))


# ---- function / basic-block helpers --------------------------------------------------------
def has_loop(f: Function) -> bool:
    """A strongly connected component of >= 2 blocks (capa's ``loops.has_loop``)."""
    graph = {b.va: [s for s in b.successors] for b in f.blocks}
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            v, k = work.pop()
            if k == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = [s for s in graph.get(v, []) if s in graph]
            if k < len(succ):
                work.append((v, k + 1))
                w = succ[k]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            for w in succ:
                if w in on_stack:
                    low[v] = min(low[v], low[w])
            if low[v] == index[v]:
                size = 0
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    size += 1
                    if w == v:
                        break
                if size >= 2:
                    return True
    return False


def _printable_len(value: int, size: int) -> int:
    """Characters in an immediate if all its bytes are printable ASCII (or UTF-16LE)."""
    raw = value.to_bytes(8, "little")[:size]
    if all(0x20 <= c < 0x7F for c in raw):
        return size
    if size % 2 == 0 and all((c == 0 if k % 2 else 0x20 <= c < 0x7F) for k, c in enumerate(raw)):
        return size // 2
    return 0


def stackstring_len(decoded: list[DecodedInsn]) -> int:
    total = 0
    for d in decoded:
        ins = d.iced
        if ins is None or d.insn.mnemonic != "mov" or ins.op_count != 2:
            continue
        if ins.op0_kind != OpKind.MEMORY or ins.memory_base not in _STACK_REGS:
            continue
        if ins.op1_kind not in _IMM_KINDS:
            continue
        size = {OpKind.IMMEDIATE8: 1}.get(ins.op1_kind, 2 if ins.op1_kind in _IMM16_KINDS else 4)
        total += _printable_len(ins.immediate(1), size)
    return total


def _is_address(b: Binary, v: int, insn: Instruction) -> bool:
    """``v`` points into the image. Small values in low-mapped images (PIE at 0) are numbers
    unless the decoder already took them for a data reference."""
    if insn.data_ref is not None and v == insn.data_ref:
        return True
    return v >= MIN_ABSOLUTE_ADDRESS and b.section_for(v) is not None


# ---- instruction handlers -----------------------------------------------------------------
InsnHandler = Callable[[Binary, Function, DecodedInsn, Address], Found]


def insn_api(_b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    if d.insn.api:
        for name in api_names(d.insn.api):
            yield API(name), at


def insn_string(b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    s = d.insn.string
    ref = d.insn.data_ref
    if s is None and ref is not None and d.insn.flow != Flow.CALL:
        # one level of indirection: a pointer to a string (capa's derefs)
        ptr = b.read(ref, b.bitness // 8)
        if len(ptr) == b.bitness // 8:
            s = b.string_at(int.from_bytes(ptr, "little"), 1024)
    if s is not None and len(s.rstrip("\x00")) >= MIN_STRING_LEN:
        yield String(s.rstrip("\x00")), at


def insn_bytes(b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    i = d.insn
    if i.mnemonic == "call" or i.data_ref is None or i.string is not None or i.api:
        return
    if i.flow in (Flow.JUMP, Flow.COND, Flow.INDIRECT_JUMP):
        return
    buf = b.read(i.data_ref, MAX_BYTES_FEATURE_SIZE)
    if buf and any(buf) and b.string_at(i.data_ref) is None:
        yield Bytes(buf), at


def insn_mnemonic(_b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    yield Mnemonic(d.insn.mnemonic), at


def _same_operand(ins: Any) -> bool:
    if ins.op0_kind != ins.op1_kind:
        return False
    if ins.op0_kind == OpKind.REGISTER:
        return bool(ins.op0_register == ins.op1_register)
    return False


def insn_nzxor(_b: Binary, f: Function, d: DecodedInsn, at: Address) -> Found:
    ins = d.iced
    if d.insn.mnemonic not in ("xor", "xorpd", "xorps", "pxor") or ins is None:
        return
    if ins.op_count < 2 or _same_operand(ins):
        return
    # security cookie: xor with the frame register at the start or end of the function
    if ins.op1_kind == OpKind.REGISTER and ins.op1_register in _STACK_REGS:
        if d.first_block and d.insn.va < d.block.va + SECURITY_COOKIE_BYTES_DELTA:
            return
        last = d.block.instructions[-1]
        if last.flow == Flow.RET and d.insn.va > d.block.end - SECURITY_COOKIE_BYTES_DELTA:
            return
    yield Characteristic("nzxor"), at


def insn_segment(_b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    ins = d.iced
    if ins is None:
        return
    seg = ins.segment_prefix
    if seg == Register.FS:
        yield Characteristic("fs access"), at
    elif seg == Register.GS:
        yield Characteristic("gs access"), at
    else:
        return
    if d.insn.mnemonic not in ("mov", "push"):
        return
    for k in range(ins.op_count):
        if ins.op_kind(k) == OpKind.MEMORY:
            disp = ins.memory_displacement
            if (seg == Register.FS and disp == 0x30) or (seg == Register.GS and disp == 0x60):
                yield Characteristic("peb access"), at


def insn_calls(b: Binary, f: Function, d: DecodedInsn, at: Address) -> Found:
    i, ins = d.insn, d.iced
    if i.flow != Flow.CALL:
        return
    target = i.target if i.target is not None else (i.data_ref if i.api else None)
    if target is not None:
        yield Characteristic("calls from"), AbsoluteVirtualAddress(target)
        if target == f.va:
            yield Characteristic("recursive call"), AbsoluteVirtualAddress(target)
        if target == i.va + 5 and i.size == 5:
            yield Characteristic("call $+5"), at
    if ins is not None and ins.op_count == 1:
        k = ins.op0_kind
        if k == OpKind.REGISTER or (k == OpKind.MEMORY and ins.memory_base not in
                                    (Register.NONE, Register.RIP, Register.EIP)):
            yield Characteristic("indirect call"), at


def insn_cross_section(b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    i = d.insn
    if i.target is None or i.api or i.flow not in (Flow.CALL, Flow.JUMP, Flow.COND):
        return
    here, there = b.section_for(i.va), b.section_for(i.target)
    if here is not None and there is not None and here != there:
        yield Characteristic("cross section flow"), at


def insn_operands(b: Binary, _f: Function, d: DecodedInsn, at: Address) -> Found:
    ins = d.iced
    if ins is None:
        return
    mnem = d.insn.mnemonic
    for k in range(ins.op_count):
        kind = ins.op_kind(k)
        if kind in _IMM_KINDS:
            v = ins.immediate(k)
            if kind in _IMM32_KINDS:
                v &= 0xFFFFFFFF
            elif kind in _IMM16_KINDS:
                v &= 0xFFFF
            if _is_address(b, v, d.insn):  # an address, not a number
                continue
            if mnem == "add" and ins.op0_kind == OpKind.REGISTER and \
                    ins.op0_register in (Register.ESP, Register.RSP):
                continue
            yield Number(v), at
            yield OperandNumber(k, v), at
            if mnem == "add" and 0 < v < MAX_STRUCTURE_SIZE:
                yield Offset(v), at
                yield OperandOffset(k, v), at
        elif kind == OpKind.MEMORY:
            base, index = ins.memory_base, ins.memory_index
            if base in (Register.RIP, Register.EIP) or (base == Register.NONE and
                                                       index == Register.NONE):
                continue  # absolute / RIP-relative: an address, handled as data_ref
            if index == Register.NONE and base in _STACK_REGS:
                continue  # locals and arguments
            disp = _signed(ins.memory_displacement, 64 if b.bitness == 64 else 32)
            yield Offset(disp), at
            yield OperandOffset(k, disp), at
            if mnem == "lea" and k == 1 and index == Register.NONE and \
                    not _is_address(b, disp, d.insn):
                yield Number(disp), at
                yield OperandNumber(k, disp), at


INSN_HANDLERS: tuple[InsnHandler, ...] = (
    insn_api, insn_string, insn_bytes, insn_mnemonic, insn_nzxor, insn_segment, insn_calls,
    insn_cross_section, insn_operands,
)
