"""Control-flow recovery: global code exploration (phase 1) and per-function CFGs (phase 2).

Phase 1 (:class:`CodeGraph.explore`) decodes every byte range reachable from the function
starts exactly once, recording block leaders (branch targets, fall-throughs of conditional
branches), jump tables, direct call targets and code pointers. Phase 2
(:meth:`CodeGraph.build_function`) cuts the decoded instructions into basic blocks per
function, never crossing into another function's start (tail calls).

Jump tables recognised (the bound comes from a preceding ``cmp idx, N`` + ``ja``/``jae`` when
there is one, else entries are read until one is not executable, at most
``max_jump_table_entries``)::

    jmp [idx*4 + table]                      x86, x64 non-PIC (entries are absolute VAs)
    lea rB, [rip+T]                          GCC/clang PIC   (entry: int32 relative to T)
    movsxd rX, dword [rB + idx*4]
    add rX, rB ; jmp rX
    lea rB, [__ImageBase]                    MSVC x64        (entry: uint32 RVA, T=image base)
    mov eX, dword [rB + idx*4 + tableRVA]
    add rX, rB ; jmp rX
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import iced_x86 as iced
from iced_x86 import Code, FlowControl, OpKind, Register

from kinship.disasm.columns import BlockSpan, FunctionBlocks
from kinship.disasm.config import DisasmConfig
from kinship.disasm.decoder import CodeDecoder
from kinship.disasm.discovery import is_noreturn_name
from kinship.disasm.encoding import FULL_REGISTER, MNEMONICS, STOPPED
from kinship.disasm.model import Discovery, Flow

log = logging.getLogger(__name__)

# How many instructions before an indirect jump are searched for the table set-up.
JUMP_TABLE_LOOKBACK = 12

_COND_UPPER_BOUND = {"ja": 1, "jbe": 1, "jae": 0, "jb": 0, "jg": 1, "jle": 1, "jge": 0, "jl": 0}


@dataclass(slots=True, eq=False)
class RunSpan:
    """A linear run decoded by :meth:`CodeGraph.explore`: instruction indexes start..end-1,
    and the indexes of its direct internal calls."""

    start: int
    end: int
    calls: list[int]


@dataclass
class CodeGraph:
    """Everything phase 1 learnt about the code of one binary."""

    decoder: CodeDecoder
    config: DisasmConfig
    names: dict[int, str]  # function VA -> symbol/export name
    insns: dict[int, int] = field(init=False)  # VA -> instruction index (the decoder's)
    leaders: set[int] = field(default_factory=set)
    jump_tables: dict[int, list[int]] = field(default_factory=dict)
    call_targets: list[int] = field(default_factory=list)
    # import stubs (``jmp [IAT]`` outside ELF .plt) reached by a direct call or jump
    thunk_starts: list[int] = field(default_factory=list)
    # direct unconditional jumps to code: (VA, target)
    jumps: list[tuple[int, int]] = field(default_factory=list)
    code_pointers: list[int] = field(default_factory=list)
    noreturn_calls: set[int] = field(default_factory=set)
    runs: list[RunSpan] = field(default_factory=list)  # linear runs decoded by explore()
    blocks: dict[int, BlockSpan] = field(default_factory=dict)
    _block_calls: dict[int, list[int]] = field(default_factory=dict)
    _raw_successors: dict[int, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stub_ranges: list[tuple[int, int]] = field(default_factory=list)
    _thunks: dict[int, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.insns = self.decoder.at
        self.stub_ranges = [
            (s.va, s.va + s.virtual_size)
            for s in self.decoder.binary.sections
            if s.executable and s.name.startswith(".plt")
        ]

    # -- phase 1 -------------------------------------------------------------------------

    def explore(self, roots: list[int]) -> None:
        """Decode everything reachable from ``roots`` (calls, branches, jump tables)."""
        insns = self.insns
        limit = self.config.max_instructions
        vas = self.decoder.vas
        explore_run = self._explore_run
        work = list(reversed(roots))
        while work:
            start = work.pop()
            if start in insns:
                continue
            if len(insns) >= limit:
                self.warnings.append(f"instruction limit {limit} reached; disassembly partial")
                return
            first = len(vas)
            run = RunSpan(first, first, [])
            self.runs.append(run)
            explore_run(start, run.calls, work)
            run.end = len(vas)

    def _explore_run(self, va: int, calls: list[int], work: list[int]) -> None:
        """Decode one linear run from ``va`` block by block (see :meth:`explore`): through
        calls and conditional branches, up to a jump, return, non-returning call or known code.
        Direct internal calls are appended to ``calls``, code to explore to ``work``."""
        dec = self.decoder
        leaders = self.leaders
        executable = dec.addresses.executable
        decode_block = dec.decode_block
        pointers = self.code_pointers
        vas = dec.vas
        tids = dec.tids
        tlist = dec.tlist
        x_target = dec.x_target
        x_api = dec.x_api
        x_norm = dec.x_norm
        api_of = dec.api
        first = len(vas)
        api_regs: dict[int, str] = {}
        while True:
            reg = decode_block(va, api_regs, pointers)
            if reg == STOPPED:
                # the run fell into known code or stopped at undecodable bytes
                if len(vas) > first:
                    leaders.add(vas[-1] + len(tlist[tids[-1]][3]))
                return
            i = len(vas) - 1
            t = tlist[tids[i]]
            va = vas[i] + len(t[3])
            flow = t[2]
            if flow is Flow.CALL:
                target = x_target.get(i)
                if target is not None:
                    if target == va:
                        continue  # call $+5; pop reg: reads EIP (32-bit PIC), not a call
                    api = self._thunk_api(target)
                    if api is not None:
                        self._record_thunk(i, target, api, "call api")
                    elif executable(target) and not self.in_stub_section(target):
                        self.call_targets.append(target)
                        calls.append(i)
                        work.append(target)
                        if is_noreturn_name(self.names.get(target, "")):
                            self.noreturn_calls.add(vas[i])
                            return
                elif api_of(i) is None and reg in api_regs:
                    x_api[i] = api_regs[reg]
                    x_norm[i] = "call api"
                api = api_of(i)
                if api is not None and is_noreturn_name(api):
                    self.noreturn_calls.add(vas[i])
                    return
                continue
            if flow is Flow.COND:
                target = x_target.get(i)
                leaders.add(va)
                if target is not None and executable(target):
                    leaders.add(target)
                    work.append(target)
                continue
            if flow is Flow.JUMP:
                self._explore_jump(i, work)
            elif flow is Flow.INDIRECT_JUMP:
                self._explore_indirect_jump(i, reg, api_regs, first, work)
            return  # JUMP, INDIRECT_JUMP, RET, INT

    def _record_thunk(self, i: int, target: int, api: str, norm: str) -> None:
        """The direct call/jump at index ``i`` reaches ``api`` through the import stub at
        ``target``: ``i`` is normalised as ``norm``, the stub is recorded."""
        self.decoder.x_api[i] = api
        self.decoder.x_norm[i] = norm
        if target not in self.decoder.api_thunks and not self.in_stub_section(target):
            self.thunk_starts.append(target)

    def _explore_jump(self, i: int, work: list[int]) -> None:
        """The direct jump at instruction index ``i``: an import stub or code to explore."""
        target = self.decoder.x_target.get(i)
        if target is None:
            return
        api = self._thunk_api(target)
        if api is not None:
            self._record_thunk(i, target, api, "jmp api")
        elif self.decoder.addresses.executable(target) and not self.in_stub_section(target):
            self.leaders.add(target)
            work.append(target)
            self.jumps.append((self.decoder.vas[i], target))

    def _explore_indirect_jump(
        self, i: int, reg: int, api_regs: dict[int, str], first: int, work: list[int]
    ) -> None:
        """``jmp reg`` loaded from an import slot, or a jump table (run starts at ``first``)."""
        dec = self.decoder
        if dec.api(i) is None and reg in api_regs:
            dec.x_api[i] = api_regs[reg]
            dec.x_norm[i] = "jmp api"
        if dec.api(i) is None and self.config.resolve_jump_tables:
            targets = self._jump_table(i, first)
            if targets:
                self.jump_tables[dec.vas[i]] = targets
                self.leaders.update(targets)
                work.extend(targets)

    def spans(self) -> list[tuple[int, int]]:
        """(start VA, end VA) of every non-empty linear run decoded so far."""
        vas = self.decoder.vas
        size = self.decoder.size
        return [
            (vas[r.start], vas[r.end - 1] + size(r.end - 1)) for r in self.runs if r.end > r.start
        ]

    def in_stub_section(self, va: int) -> bool:
        """True inside ELF .plt/.plt.sec/.plt.got: import stubs, not functions."""
        return any(lo <= va < hi for lo, hi in self.stub_ranges)

    def _thunk_api(self, target: int) -> str | None:
        """The import reached through ``target`` when it is an import stub (PLT, jmp [IAT])."""
        thunks = self.decoder.api_thunks
        api = thunks.get(target)
        if api is not None:
            return api
        try:
            return self._thunks[target]
        except KeyError:
            pass
        ins = self.decoder.decode_one(target)
        if ins is not None and ins.code in (Code.ENDBR64, Code.ENDBR32):
            ins = self.decoder.decode_one(target + ins.len)
        if (
            ins is not None
            and ins.flow_control == FlowControl.INDIRECT_BRANCH
            and ins.op0_kind == OpKind.MEMORY
        ):
            if ins.is_ip_rel_memory_operand:
                api = thunks.get(ins.ip_rel_memory_address)
            elif ins.memory_base == Register.NONE and ins.memory_index == Register.NONE:
                api = thunks.get(ins.memory_displacement)
        self._thunks[target] = api
        return api

    # -- jump tables ---------------------------------------------------------------------

    def _jump_table(self, jmp: int, first: int) -> list[int]:
        """Targets of the indirect jump at instruction index ``jmp`` (its run starts at
        ``first``)."""
        dec = self.decoder
        ins = dec.decode_one(dec.vas[jmp])
        if ins is None:
            return []
        window = dec.vas[max(first, jmp - JUMP_TABLE_LOOKBACK + 1) : jmp]
        decoded = [d for d in (dec.decode_one(v) for v in window) if d is not None]
        bound = _table_bound(decoded)
        ptr = dec.bitness // 8
        if ins.op0_kind == OpKind.MEMORY:
            if (
                ins.memory_base == Register.NONE
                and ins.memory_index != Register.NONE
                and ins.memory_index_scale == ptr
            ):
                table = ins.memory_displacement & ((1 << dec.bitness) - 1)
                return self._read_table(table, ptr, None, False, bound)
            return []
        if ins.op0_kind != OpKind.REGISTER:
            return []
        # jmp reg: find "load dword [rB + idx*4 + D]" and "lea rB, [T]" in the window.
        lea_values: dict[int, int] = {}
        for d in decoded:
            mnem = MNEMONICS[d.mnemonic]
            if mnem == "lea" and d.op0_kind == OpKind.REGISTER and d.op1_kind == OpKind.MEMORY:
                if d.is_ip_rel_memory_operand:
                    lea_values[FULL_REGISTER[d.op0_register]] = d.ip_rel_memory_address
                elif d.memory_base == Register.NONE and d.memory_index == Register.NONE:
                    lea_values[FULL_REGISTER[d.op0_register]] = d.memory_displacement
        for d in reversed(decoded):
            mnem = MNEMONICS[d.mnemonic]
            if mnem not in ("movsxd", "mov", "movsx", "add") or d.op1_kind != OpKind.MEMORY:
                continue
            if d.memory_index == Register.NONE or d.memory_index_scale != 4:
                continue
            base = FULL_REGISTER[d.memory_base] if d.memory_base != Register.NONE else -1
            if base not in lea_values and base != -1 and dec.pic_base is not None:
                # 32-bit PIC: [got + idx*4 + off] with entries relative to the GOT (gcc:
                # add eax, [eax+edx*4+off]; clang: mov eax, [ebx+eax*4+off]; add eax, ebx)
                lea_values[base] = dec.pic_base
            if base not in lea_values:
                if base == -1 and ptr == 8 and dec.absolute_ok:
                    # mov rax, [idx*8 + table]; jmp rax (non-PIC x64) uses scale 8: not here
                    continue
                continue
            origin = lea_values[base]
            disp = d.memory_displacement
            if dec.bitness == 32:
                table = (origin + disp) & 0xFFFF_FFFF
            else:
                table = origin + (disp if disp < 1 << 31 else 0)
            signed = mnem != "mov"
            return self._read_table(table, 4, origin, signed, bound)
        for d in reversed(decoded):  # mov reg, [idx*ptr + table]; jmp reg
            if (
                MNEMONICS[d.mnemonic] == "mov"
                and d.op1_kind == OpKind.MEMORY
                and d.memory_base == Register.NONE
                and d.memory_index != Register.NONE
                and d.memory_index_scale == ptr
            ):
                table = d.memory_displacement & ((1 << dec.bitness) - 1)
                return self._read_table(table, ptr, None, False, bound)
        return []

    def _read_table(
        self, table: int, width: int, origin: int | None, signed: bool, bound: int | None
    ) -> list[int]:
        limit = self.config.max_jump_table_entries
        count = min(bound, limit) if bound else limit
        data = self.decoder.binary.read(table, count * width)
        executable = self.decoder.addresses.executable
        mask = (1 << self.decoder.bitness) - 1
        targets: list[int] = []
        for i in range(len(data) // width):
            value = int.from_bytes(data[i * width : (i + 1) * width], "little", signed=signed)
            target = value if origin is None else (origin + value) & mask
            if not executable(target):
                break
            targets.append(target)
        return list(dict.fromkeys(targets))

    # -- phase 2 -------------------------------------------------------------------------

    def cut_blocks(self, starts: dict[int, Discovery]) -> None:
        """Split every decoded run into basic blocks at leaders and function starts."""
        dec = self.decoder
        insns = self.insns
        boundaries = self.leaders | starts.keys()
        noreturn = self.noreturn_calls
        tables = self.jump_tables
        blocks = self.blocks
        is_boundary = boundaries.__contains__
        vas = dec.vas
        tids = dec.tids
        tlist = dec.tlist
        x_target = dec.x_target
        x_norm = dec.x_norm
        api_of = dec.api
        raw_successors = self._raw_successors
        f_next, f_call, f_cond = Flow.NEXT, Flow.CALL, Flow.COND
        f_jump, f_indirect = Flow.JUMP, Flow.INDIRECT_JUMP
        for run in self.runs:
            first, end, calls = run.start, run.end, run.calls
            if first == end:
                continue
            cuts = list(itertools.compress(range(first, end), map(is_boundary, vas[first:end])))
            if not cuts or cuts[0] != first:
                cuts.insert(0, first)
            cuts.append(end)
            ci = 0
            n_calls = len(calls)
            for a, b in itertools.pairwise(cuts):
                last = b - 1
                t = tlist[tids[last]]
                flow = t[2]
                last_va = vas[last]
                nxt = last_va + len(t[3])
                if flow is f_next:
                    raw = [nxt]
                elif flow is f_call:
                    raw = [] if last_va in noreturn else [nxt]
                elif flow is f_cond:
                    target = x_target.get(last)
                    raw = [nxt] if target is None else [nxt, target]
                elif flow is f_jump:
                    target = x_target.get(last)
                    no_api = api_of(last) is None
                    raw = [target] if target is not None and no_api else []
                    if target is not None and target in starts and no_api:
                        x_norm[last] = t[0] + " func"
                elif flow is f_indirect:
                    raw = tables.get(last_va, [])
                else:
                    raw = []
                va = vas[a]
                if len(raw) == 1:
                    x = raw[0]
                    succ = [x] if x in insns and x not in starts else []
                else:
                    succ = [x for x in raw if x in insns and x not in starts]
                if len(succ) != len(raw):
                    raw_successors[va] = raw
                blocks[va] = BlockSpan(va, a, b, succ)
                if ci < n_calls and calls[ci] < b:
                    block_calls = []
                    while ci < n_calls and calls[ci] < b:
                        block_calls.append(x_target.get(calls[ci]) or 0)
                        ci += 1
                    self._block_calls[va] = block_calls

    def build_function(self, start: int, discovery: Discovery) -> FunctionBlocks | None:
        """The basic blocks reachable from ``start`` without entering other functions.

        Blocks are shared between functions that reach the same code; :meth:`cut_blocks`
        must have run with the final set of starts.
        """
        blocks = self.blocks
        entry = blocks.get(start)
        if entry is None:
            return None
        budget = self.config.max_function_instructions
        found: dict[int, BlockSpan] = {start: entry}
        work = [entry]
        count = 0
        while work:
            block = work.pop()
            count += block.end - block.start
            if count >= budget:
                self.warnings.append(f"function {start:#x} truncated at {budget} instructions")
                break
            for s in block.successors:
                if s not in found:
                    nb = blocks.get(s)
                    if nb is not None:
                        found[s] = nb
                        work.append(nb)
        extra: dict[int, list[int]] = {}
        raw = self._raw_successors
        if raw:  # loops back to the function's own entry (self tail recursion)
            for va in found.keys() & raw.keys():
                if start in raw[va]:
                    extra[va] = [*found[va].successors, start]
        ordered = [start] + [v for v in sorted(found) if v != start]
        block_calls = self._block_calls
        calls = [t for v in ordered for t in block_calls.get(v, ())]
        return FunctionBlocks(start, ordered, discovery, self.names.get(start), calls, extra)


def _table_bound(decoded: list[iced.Instruction]) -> int | None:
    """Entry count from the last ``cmp reg, N`` followed by an unsigned/signed bound check."""
    for i in range(len(decoded) - 1, 0, -1):
        mnem = MNEMONICS[decoded[i].mnemonic]
        if mnem not in _COND_UPPER_BOUND:
            continue
        for j in range(i - 1, max(i - 3, -1), -1):
            cmp = decoded[j]
            if MNEMONICS[cmp.mnemonic] == "cmp" and cmp.op_count == 2 and cmp.op1_kind not in (
                OpKind.REGISTER,
                OpKind.MEMORY,
            ):
                n = cmp.immediate(1) + _COND_UPPER_BOUND[mnem]
                return n if 0 < n <= 1 << 16 else None
        return None
    return None
