"""Operand and template tables of the decoder (:mod:`kinship.disasm.decoder`).

iced-x86 enum values -> names (mnemonics, register classes, full registers), iced flow
controls -> :class:`~kinship.disasm.model.Flow`, operand-kind sets, and the layout of a
decoder template (:data:`Template`: the cached analysis of one instruction encoding) with its
position-dependence (``DEP_*``) and per-occurrence work (``K_*``) codes; and the pure
per-encoding helpers of the cache-miss path (control flow, position-independent bytes).
"""

from __future__ import annotations

import iced_x86 as iced
from iced_x86 import FlowControl, Mnemonic, OpKind, Register, RegisterExt

from kinship.disasm.model import Flow


def _enum_names(enum_module: object) -> dict[int, str]:
    return {
        getattr(enum_module, n): n
        for n in dir(enum_module)
        if n.isupper() and isinstance(getattr(enum_module, n), int)
    }


MNEMONICS: list[str] = [""] * (max(_enum_names(Mnemonic)) + 1)
for _v, _n in _enum_names(Mnemonic).items():
    MNEMONICS[_v] = _n.lower()


def _register_class(reg: int) -> str:
    checks = (
        (RegisterExt.is_gpr, "reg"),
        (RegisterExt.is_xmm, "xmm"),
        (RegisterExt.is_ymm, "ymm"),
        (RegisterExt.is_zmm, "zmm"),
        (RegisterExt.is_st, "st"),
        (RegisterExt.is_mm, "mm"),
        (RegisterExt.is_k, "k"),
        (RegisterExt.is_segment_register, "seg"),
        (RegisterExt.is_cr, "cr"),
        (RegisterExt.is_dr, "dr"),
        (RegisterExt.is_bnd, "bnd"),
        (RegisterExt.is_tmm, "tmm"),
        (RegisterExt.is_ip, "ip"),
    )
    for check, name in checks:
        if check(reg):  # type: ignore[arg-type]
            return name
    return "reg"


_N_REGISTERS = max(_enum_names(Register)) + 1
REGISTER_CLASS: list[str] = [_register_class(r) for r in range(_N_REGISTERS)]
FULL_REGISTER: list[int] = [
    RegisterExt.full_register(r) if r != Register.NONE else Register.NONE  # type: ignore[arg-type]
    for r in range(_N_REGISTERS)
]
REGISTER_NAMES: dict[int, str] = {v: n.lower() for v, n in _enum_names(Register).items()}
STACK_REGISTERS = frozenset(
    {Register.ESP, Register.RSP, Register.EBP, Register.RBP, Register.SP, Register.BP}
)

FLOW_OF: dict[int, Flow] = {
    FlowControl.NEXT: Flow.NEXT,
    FlowControl.UNCONDITIONAL_BRANCH: Flow.JUMP,
    FlowControl.INDIRECT_BRANCH: Flow.INDIRECT_JUMP,
    FlowControl.CONDITIONAL_BRANCH: Flow.COND,
    FlowControl.RETURN: Flow.RET,
    FlowControl.CALL: Flow.CALL,
    FlowControl.INDIRECT_CALL: Flow.CALL,
    FlowControl.INTERRUPT: Flow.INT,
    FlowControl.XBEGIN_XABORT_XEND: Flow.NEXT,
    FlowControl.EXCEPTION: Flow.INT,
}
BLOCK_ENDING_INTERRUPTS = frozenset({"int3", "int1", "ud0", "ud1", "ud2", "hlt"})
# `int 0x29` is Windows __fastfail (never returns); other `int n` are system calls.
FASTFAIL_VECTOR = 0x29

IMM_KINDS: dict[int, int] = {  # op kind -> width in bits of the (sign-extended) value
    OpKind.IMMEDIATE8: 0,  # unsigned
    OpKind.IMMEDIATE8_2ND: 0,
    OpKind.IMMEDIATE16: 16,
    OpKind.IMMEDIATE32: 32,
    OpKind.IMMEDIATE64: 64,
    OpKind.IMMEDIATE8TO16: 16,
    OpKind.IMMEDIATE8TO32: 32,
    OpKind.IMMEDIATE8TO64: 64,
    OpKind.IMMEDIATE32TO64: 64,
}
NEAR_BRANCH_KINDS = frozenset({OpKind.NEAR_BRANCH16, OpKind.NEAR_BRANCH32, OpKind.NEAR_BRANCH64})
FAR_BRANCH_KINDS = frozenset({OpKind.FAR_BRANCH16, OpKind.FAR_BRANCH32})

# Position dependence of a cached template.
DEP_NONE = 0
DEP_BRANCH = 1  # near branch: target = ip + displacement
DEP_RIPREL = 2  # RIP-relative memory operand

# decode_block's return value for a run that ended without a control-flow instruction.
STOPPED = -2

# Template fields, cached per raw encoding:
# (mnemonic, norm, flow, pic_bytes, data_ref, imm, api, string, dependence, register,
#  code_pointer: data_ref is an executable address taken by a non-branch instruction,
#  id: index in the owning decoder's ``tlist``; -1 in the process-wide shared cache,
#  kind: what decode_block must do per occurrence, one of the K_* below)
Template = tuple[
    str, str, Flow, bytes, int | None, int | None, str | None, str | None, int, int, bool, int,
    int,
]
K_PLAIN = 0  # nothing: every field is in the template
K_POINTER = 1  # record data_ref as a code pointer
K_BRANCH = 2  # record the branch target
K_RIPREL = 3  # record the RIP-relative address (and its API/string)


def instruction_flow(ins: iced.Instruction, mnem: str) -> Flow:
    """The control flow of ``ins``: interrupts end a block only when they never return
    (int3, ud2, hlt, ``int 0x29`` __fastfail); other ``int n`` are system calls."""
    flow = FLOW_OF.get(ins.flow_control, Flow.NEXT)
    if flow is Flow.INT and mnem not in BLOCK_ENDING_INTERRUPTS:
        if not (mnem == "int" and ins.immediate8 == FASTFAIL_VECTOR):
            flow = Flow.NEXT
    elif mnem == "hlt":
        flow = Flow.INT
    return flow


def pic_bytes(
    dec: iced.Decoder, ins: iced.Instruction, raw: bytes, zero_disp: bool, zero_imm: bool
) -> bytes:
    """``raw`` with its displacement and/or immediate zeroed as asked (position-independent
    bytes)."""
    if not (zero_disp or zero_imm):
        return raw
    co = dec.get_constant_offsets(ins)
    buf = bytearray(raw)
    if zero_disp and co.has_displacement:
        o = co.displacement_offset
        buf[o : o + co.displacement_size] = bytes(co.displacement_size)
    if zero_imm and co.has_immediate:
        o = co.immediate_offset
        buf[o : o + co.immediate_size] = bytes(co.immediate_size)
    return bytes(buf)


def pic_key(dec: iced.Decoder, ins: iced.Instruction, raw: bytes) -> bytes | None:
    """``raw`` with its branch/RIP-relative displacement zeroed, or None if it has none."""
    if ins.op0_kind in NEAR_BRANCH_KINDS:
        co = dec.get_constant_offsets(ins)
        if not co.has_immediate:
            return None
        o = co.immediate_offset
        return raw[:o] + bytes(co.immediate_size) + raw[o + co.immediate_size :]
    if ins.is_ip_rel_memory_operand:
        co = dec.get_constant_offsets(ins)
        if not co.has_displacement:
            return None
        o = co.displacement_offset
        return raw[:o] + bytes(co.displacement_size) + raw[o + co.displacement_size :]
    return None
