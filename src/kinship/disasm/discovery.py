"""Function-start discovery: metadata seeds, prologue patterns, padding, code pointers.

Seeds come first and in this order, the first reason recorded winning: entry point, exports,
symbols, metadata hints (PE64 ``.pdata`` / ELF ``.eh_frame``). Exploration then adds direct
call targets and tail-call targets; code pointers and the prologue scan of uncovered gaps come
last and are conservative (a prologue pattern must match).
"""

from __future__ import annotations

import bisect
import logging
import struct
from collections.abc import Iterable

import iced_x86 as iced
import numpy as np
from iced_x86 import Code, FlowControl

from kinship.binary.model import Binary, Format
from kinship.disasm.config import DisasmConfig
from kinship.disasm.decoder import CodeDecoder
from kinship.disasm.encoding import MNEMONICS
from kinship.disasm.model import Discovery

log = logging.getLogger(__name__)

# Data sections larger than this are not scanned for code pointers (hostile samples pad
# sections to gigabytes; real .rdata/.data.rel.ro stay far below).
MAX_POINTER_SCAN_BYTES = 64 * 1024 * 1024
# Instructions decoded per gap by the prologue sweep (a gap can be a large data blob).
MAX_GAP_SWEEP_INSTRUCTIONS = 200_000
_END_FLOWS = frozenset(
    {
        FlowControl.RETURN,
        FlowControl.UNCONDITIONAL_BRANCH,
        FlowControl.INDIRECT_BRANCH,
        FlowControl.INTERRUPT,
    }
)
# Padding runs longer than this are treated as data, not alignment.
MAX_PADDING = 4096

NORETURN_NAMES = frozenset(
    {
        "exit", "_exit", "_Exit", "abort", "quick_exit", "__stack_chk_fail",
        "__stack_chk_fail_local", "__assert_fail", "__assert_perror_fail", "__assert_rtn",
        "__assert", "_assert", "_wassert", "err", "errx", "verr", "verrx", "longjmp",
        "_longjmp", "siglongjmp", "__longjmp_chk", "pthread_exit", "__cxa_throw",
        "__cxa_rethrow", "__cxa_bad_cast", "__cxa_bad_typeid", "__cxa_call_unexpected",
        "_Unwind_Resume", "__fortify_fail", "__chk_fail", "_ZSt9terminatev",
        "ExitProcess", "ExitThread", "FatalExit", "FatalAppExitA", "FatalAppExitW",
        "RtlExitUserThread", "RtlExitUserProcess", "_invalid_parameter_noinfo_noreturn",
        "__report_gsfailure", "_amsg_exit", "__std_terminate", "_CxxThrowException",
        "terminate", "_cexit_noreturn", "__fastfail",
    }
)

_STRONG_PROLOGUES_64 = (
    b"\xf3\x0f\x1e\xfa",  # endbr64
    b"\x55\x48\x89\xe5",  # push rbp; mov rbp, rsp
    b"\x55\x48\x8b\xec",  # push rbp; mov rbp, rsp (MSVC encoding)
    b"\x48\x89\x5c\x24",  # mov [rsp+n], rbx (MSVC home-space save)
    b"\x48\x89\x4c\x24",  # mov [rsp+n], rcx
    b"\x48\x89\x54\x24",  # mov [rsp+n], rdx
    b"\x4c\x89\x44\x24",  # mov [rsp+n], r8
    b"\x48\x89\x74\x24",  # mov [rsp+n], rsi
    b"\x48\x89\x6c\x24",  # mov [rsp+n], rbp
    b"\x48\x8b\xc4",  # mov rax, rsp (MSVC)
    b"\x40\x53\x48\x83\xec",  # push rbx; sub rsp, n (MSVC REX push)
    b"\x40\x55",  # push rbp (REX)
    b"\x40\x56",  # push rsi (REX)
    b"\x40\x57",  # push rdi (REX)
)
_WEAK_PROLOGUES_64 = (
    b"\x48\x83\xec",  # sub rsp, imm8
    b"\x48\x81\xec",  # sub rsp, imm32
    b"\x41\x57", b"\x41\x56", b"\x41\x55", b"\x41\x54",  # push r15..r12
    b"\x55", b"\x53",  # push rbp / rbx
)
_STRONG_PROLOGUES_32 = (
    b"\xf3\x0f\x1e\xfb",  # endbr32
    b"\x55\x89\xe5",  # push ebp; mov ebp, esp
    b"\x55\x8b\xec",  # push ebp; mov ebp, esp (MSVC encoding)
    b"\x8b\xff\x55\x8b\xec",  # mov edi, edi; push ebp; mov ebp, esp (hot-patch)
)
_WEAK_PROLOGUES_32 = (
    b"\x83\xec",  # sub esp, imm8
    b"\x81\xec",  # sub esp, imm32
    b"\x55", b"\x53", b"\x56", b"\x57",  # push ebp/ebx/esi/edi
)
# Weak patterns are accepted only at this alignment (compilers align function starts to 16).
WEAK_PROLOGUE_ALIGNMENT = 16
# Instructions a prologue candidate must decode validly before it is accepted.
PROLOGUE_CHECK_INSTRUCTIONS = 6


def is_noreturn_name(name: str) -> bool:
    """True for functions that never return (``exit``, ``kernel32.dll!ExitProcess`` ...)."""
    if not name:
        return False
    name = name.rpartition("!")[2].split("@", 1)[0]
    if name.startswith("__imp_"):
        name = name[6:]
    return name in NORETURN_NAMES or name.lstrip("_") in NORETURN_NAMES or "__throw_" in name


def function_names(binary: Binary) -> dict[int, str]:
    """Function VA -> name from exports and symbols (symbols win: they are usually richer)."""
    names = {e.va: e.name for e in binary.exports if e.name}
    for s in binary.symbols:
        if s.name:
            names.setdefault(s.va, s.name)
    return names


def seed_starts(binary: Binary, config: DisasmConfig, decoder: CodeDecoder) -> dict[int, Discovery]:
    """Function starts known before any code is read, with the first reason for each."""
    starts: dict[int, Discovery] = {}
    decodable = decoder.region

    def add(vas: Iterable[int], why: Discovery) -> None:
        for va in vas:
            if va not in starts and decodable(va) is not None:
                starts[va] = why

    if binary.entry_point is not None:
        add([binary.entry_point], Discovery.ENTRY)
    if config.use_exports:
        add((e.va for e in binary.exports), Discovery.EXPORT)
    if config.use_symbols:
        add((s.va for s in binary.symbols), Discovery.SYMBOL)
    if config.use_function_hints:
        why = Discovery.PDATA if binary.format is Format.PE else Discovery.EH_FRAME
        add(binary.function_hints, why)
    return starts


def looks_like_prologue(decoder: CodeDecoder, va: int, any_alignment: bool = False) -> bool:
    """A function-prologue byte pattern at ``va`` that also decodes as valid code.

    Weak patterns (a bare ``push``/``sub esp``) count only at 16-byte aligned addresses unless
    ``any_alignment`` (the caller knows ``va`` starts a gap right after other code's end).
    """
    head = decoder.read(va, 8)
    strong: tuple[bytes, ...]
    weak: tuple[bytes, ...]
    if decoder.bitness == 64:
        strong, weak = _STRONG_PROLOGUES_64, _WEAK_PROLOGUES_64
    else:
        strong, weak = _STRONG_PROLOGUES_32, _WEAK_PROLOGUES_32
    if not head.startswith(strong) and not (
        (any_alignment or va % WEAK_PROLOGUE_ALIGNMENT == 0) and head.startswith(weak)
    ):
        return False
    cur = va
    for _ in range(PROLOGUE_CHECK_INSTRUCTIONS):
        ins = decoder.decode_one(cur)
        if ins is None:
            return False
        if MNEMONICS[ins.mnemonic] in ("ret", "jmp", "int3"):
            return True
        cur += ins.len
    return True


def skip_padding(decoder: CodeDecoder, va: int, end: int) -> int:
    """First address at or after ``va`` that is not alignment padding (int3/nop/zero runs)."""
    start = va
    while va < end and va - start < MAX_PADDING:
        b = decoder.read(va, 1)
        if not b:
            return end
        if b[0] in (0xCC, 0x90, 0x00):
            va += 1
            continue
        ins = decoder.decode_one(va)
        if ins is None:
            return va
        mnem = MNEMONICS[ins.mnemonic]
        if mnem == "nop" or (
            mnem == "lea"
            and ins.op1_kind == 24  # OpKind.MEMORY: lea esi, [esi+0] filler
            and ins.memory_base == ins.op0_register
            and ins.memory_displacement == 0
            and ins.memory_index in (0, ins.op0_register)
        ):
            va += ins.len
            continue
        return va
    return va


def gap_candidates(
    decoder: CodeDecoder, covered: list[tuple[int, int]], starts: dict[int, Discovery]
) -> list[int]:
    """Prologues in the ranges no decoded code covers.

    ``covered`` holds the (start, end) VA of every decoded linear run, in any order. Each gap
    is swept linearly; its first non-padding byte and the first non-padding byte after every
    ``ret``/``jmp``/``int3`` in it are candidates (where one function ends, the next may
    begin), accepted when a prologue pattern matches there.
    """
    spans = sorted(covered)
    found: list[int] = []
    for lo, hi in decoder.regions():
        i = bisect.bisect_left(spans, (lo, lo))
        cursor = lo
        while cursor < hi:
            nxt = spans[i][0] if i < len(spans) and spans[i][0] < hi else hi
            if nxt > cursor:
                found.extend(_sweep_gap(decoder, cursor, nxt, starts))
            if nxt >= hi:
                break
            cursor = max(cursor, spans[i][1])
            i += 1
    return found


def _sweep_gap(decoder: CodeDecoder, lo: int, hi: int, starts: dict[int, Discovery]) -> list[int]:
    found: list[int] = []
    cand = skip_padding(decoder, lo, hi)
    if cand >= hi:
        return found
    data = decoder.read(cand, hi - cand)
    dec = iced.Decoder(decoder.bitness, data, ip=cand)
    base = cand
    budget = MAX_GAP_SWEEP_INSTRUCTIONS
    first = True
    while cand < hi:
        # Weak patterns at any alignment only at the gap's start and after a ret: after a jmp
        # the next bytes are as often an unreached switch case ("sub esp, 8; push esi").
        if cand not in starts and looks_like_prologue(decoder, cand, any_alignment=first):
            found.append(cand)
        dec.position = cand - base
        dec.ip = cand
        cand = hi
        for ins in dec:
            budget -= 1
            if ins.code == Code.INVALID or budget <= 0:
                return found
            if ins.flow_control in _END_FLOWS and MNEMONICS[ins.mnemonic] != "int":
                cand = skip_padding(decoder, ins.next_ip, hi)
                first = ins.flow_control == FlowControl.RETURN
                break
    return found


def data_pointer_candidates(binary: Binary, decoder: CodeDecoder) -> list[int]:
    """Aligned pointer-sized values in data sections that point into executable sections."""
    width = decoder.bitness // 8
    dtype = np.uint64 if width == 8 else np.uint32
    regions = decoder.regions()
    if not regions:
        return []
    lo = min(r[0] for r in regions)
    hi = max(r[1] for r in regions)
    out: list[int] = []
    for s in binary.sections:
        if s.executable or s.raw_size <= 0 or s.raw_size > MAX_POINTER_SCAN_BYTES:
            continue
        raw = binary.data[s.offset : s.offset + s.raw_size]
        skew = (-s.va) % width
        raw = raw[skew:]
        raw = raw[: len(raw) - len(raw) % width]
        if not raw:
            continue
        values: np.ndarray = np.frombuffer(raw, dtype=dtype)
        hits = values[(values >= lo) & (values < hi)]
        out.extend(int(v) for v in np.unique(hits))
    return out


def read_pointer(binary: Binary, va: int, width: int) -> int | None:
    raw = binary.read(va, width)
    if len(raw) != width:
        return None
    return int(struct.unpack("<Q" if width == 8 else "<I", raw)[0])


def tailcall_targets(
    decoder: CodeDecoder,
    jumps: list[tuple[int, int]],
    starts: dict[int, Discovery],
    insns: dict[int, int],
) -> list[int]:
    """Targets of direct jumps that leave the jumping function's contiguous range.

    The range of a function is approximated by [its start, the next known start): a jump
    before the start of the function that contains it, or past the next function's start,
    is a tail call when its target also looks like a prologue (GCC's ``.cold`` parts jump
    back into the middle of their hot function, which must not become a function).
    """
    ordered = sorted(starts)
    found: list[int] = []
    for j_va, t in jumps:
        if t in starts or t not in insns:
            continue
        k = bisect.bisect_right(ordered, j_va) - 1
        if k < 0:
            continue
        own = ordered[k]
        nxt = ordered[k + 1] if k + 1 < len(ordered) else None
        if (t < own or (nxt is not None and t >= nxt)) and looks_like_prologue(decoder, t):
            found.append(t)
    return list(dict.fromkeys(found))


class Coverage:
    """Membership test for "inside some decoded linear run" (runs given as (start, end))."""

    def __init__(self, covered: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(covered):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._starts = [m[0] for m in merged]
        self._ends = [m[1] for m in merged]

    def __contains__(self, va: int) -> bool:
        i = bisect.bisect_right(self._starts, va) - 1
        return i >= 0 and va < self._ends[i]


def iat_thunk_candidates(decoder: CodeDecoder) -> list[int]:
    """Every ``jmp [slot]`` (``ff 25``) in code whose slot is an import (IAT) entry.

    mingw and MSVC link one such stub per imported function; the stubs lie in a table no
    code falls into, so only this scan finds the ones nothing calls directly.
    """
    slots = decoder.api_thunks
    if not slots:
        return []
    found: list[int] = []
    x64 = decoder.bitness == 64
    for lo, hi in decoder.regions():
        data = decoder.read(lo, hi - lo)
        pos = data.find(b"\xff\x25")
        while 0 <= pos <= len(data) - 6:
            disp = int.from_bytes(data[pos + 2 : pos + 6], "little", signed=x64)
            slot = (lo + pos + 6 + disp) if x64 else disp
            if slot in slots:
                found.append(lo + pos)
            pos = data.find(b"\xff\x25", pos + 1)
    return found
