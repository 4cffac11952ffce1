"""Instruction decoding and normalisation on top of iced-x86.

:class:`CodeDecoder` turns bytes at a virtual address into instruction columns (see
:mod:`kinship.disasm.columns`; :class:`~kinship.disasm.model.Instruction` objects are made
from them only on demand). Every distinct instruction encoding is
analysed once (operand kinds, normalised token, position-independent bytes) and cached by its
raw bytes (by its bytes with the displacement zeroed for relative branches and RIP-relative
operands); only the position-dependent parts (branch target, RIP-relative address) are
recomputed per occurrence. In real code most instructions repeat an earlier encoding, so
they cost one dict lookup.

Normalised form (``Instruction.norm``): ``"mnemonic tok1, tok2"`` where each operand becomes

    reg     any general-purpose register, any width (x86 and x64 meet)
    xmm ymm zmm st mm k seg cr dr bnd tmm   other register classes
    stk     memory based on esp/rsp/ebp/rbp (locals, arguments)
    mem     any other memory operand (globals, RIP-relative, heap pointers, string ops)
    0..16   small immediates, kept literally (bit masks, counts, small enums)
    imm     other immediates
    addr    an immediate that points into the image (``push offset aString``)
    loc     jump target inside the function
    func    call target / tail-call target (a function of the same binary)
    api     call/jump that reaches an import
    far     far branch

Example: ``mov eax, dword ptr [ebp+8]`` -> ``"mov reg, stk"``; ``call [__imp_Sleep]`` ->
``"call api"``.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass

import iced_x86 as iced
from iced_x86 import Code, OpKind, Register

from kinship.binary.measure import check_address_space
from kinship.binary.model import Arch, Binary, Format
from kinship.disasm.address_space import AddressSpace, CodeRegion
from kinship.disasm.encoding import (
    DEP_BRANCH,
    DEP_NONE,
    DEP_RIPREL,
    FAR_BRANCH_KINDS,
    FULL_REGISTER,
    IMM_KINDS,
    K_BRANCH,
    K_PLAIN,
    K_POINTER,
    K_RIPREL,
    MNEMONICS,
    NEAR_BRANCH_KINDS,
    REGISTER_CLASS,
    STACK_REGISTERS,
    STOPPED,
    Template,
    instruction_flow,
    pic_bytes,
    pic_key,
)
from kinship.disasm.model import Flow

# Names imported from here by other packages (tables: see kinship.disasm.encoding).
__all__ = [
    "DEP_BRANCH", "DEP_NONE", "DEP_RIPREL", "FULL_REGISTER", "MAX_SHARED_TEMPLATES",
    "MAX_STRING_LOOKUPS", "MIN_ABSOLUTE_ADDRESS", "MIN_GOT_OFFSET", "MNEMONICS", "STOPPED",
    "AddressSpace", "CodeDecoder", "Template",
]

log = logging.getLogger(__name__)

# Images mapped below this address (PIE ELF at 0) make small struct offsets look like
# addresses; displacements/immediates are then only addresses through RIP-relative operands.
MIN_ABSOLUTE_ADDRESS = 0x10000
# ``lea reg, [ebx + off]`` in 32-bit PIC code is read as GOT-relative (an address) when the
# offset is negative (data before the GOT: .rodata, .text) or at least this large; smaller
# positive offsets are as likely struct fields.
MIN_GOT_OFFSET = 0x1000
# Context-free templates (see CodeDecoder._analyse) shared by all decoders of a process, per
# (bitness, max_literal_immediate): a worker ingesting many samples analyses a common encoding
# once. Cleared when full; ~250 bytes an entry, so at most ~50 MiB.
MAX_SHARED_TEMPLATES = 200_000
_SHARED_TEMPLATES: dict[tuple[int, int], dict[bytes, Template]] = {}
# Strings are looked up for at most this many distinct addresses per sample (the check reads
# up to 512 bytes each); beyond it operands simply carry no string.
MAX_STRING_LOOKUPS = 200_000


class CodeDecoder:
    """Decodes and normalises instructions of one binary (caches per encoding and address)."""

    def __init__(self, binary: Binary, max_literal_immediate: int = 16) -> None:
        self.binary = binary
        self.bitness = 64 if binary.arch is Arch.X64 else 32
        check_address_space(binary.path, binary.sections, self.bitness)
        self.addresses = AddressSpace(binary)
        self.max_literal = max_literal_immediate
        self.api_thunks = binary.api_thunks
        self._mask = (1 << self.bitness) - 1
        # Absolute addresses are meaningful only in images mapped high enough (see
        # MIN_ABSOLUTE_ADDRESS); PIE/shared objects at 0 use RIP-relative addressing.
        self.absolute_ok = self.addresses.low >= MIN_ABSOLUTE_ADDRESS
        # 32-bit PIC code (ELF shared objects and PIE) addresses data relative to the GOT
        # (``_GLOBAL_OFFSET_TABLE_``, the start of .got.plt), loaded into a register through
        # ``__x86.get_pc_thunk`` or ``call $+5; pop reg``, then ``add reg, GOT-here``.
        self.pic_base: int | None = None
        if self.bitness == 32 and binary.format is Format.ELF and not self.absolute_ok:
            got = {s.name: s.va for s in binary.sections}
            self.pic_base = got.get(".got.plt", got.get(".got"))
        self._templates: dict[bytes, Template] = {}
        self._shared = _SHARED_TEMPLATES.setdefault((self.bitness, self.max_literal), {})
        self._context_used = False  # set by _analyse: the template depends on this binary
        self._dep_templates: dict[bytes, Template] = {}
        # Near branches: iced Code -> size of the displacement that ends its encodings, and
        # templates keyed by the bytes before that displacement (relative branches rarely
        # repeat their raw bytes, so the raw-bytes cache would only fill up with them).
        self._branch_disp: dict[int, int] = {}
        self._branch_templates: dict[bytes, Template] = {}
        self._strings: dict[int, str | None] = {}
        self._regions: list[CodeRegion] = []
        for s in sorted(binary.sections, key=lambda s: s.va):
            if s.executable and s.raw_size > 0:
                data = binary.data[s.offset : s.offset + min(s.raw_size, max(s.virtual_size, 1))]
                if s.virtual_size == 0:
                    data = binary.data[s.offset : s.offset + s.raw_size]
                self._regions.append(CodeRegion(s.va, data, self.bitness))
        self._region_starts = [r.va for r in self._regions]
        self._last_region: CodeRegion | None = None
        # Decoded instructions as columns, index = decode order (see kinship.disasm.columns):
        self.tlist: list[Template] = []  # this decoder's templates, by id
        self.vas: list[int] = []  # instruction VA
        self.tids: list[int] = []  # template id
        self.at: dict[int, int] = {}  # VA -> instruction index (everything decoded so far)
        # Sparse per-occurrence fields (index -> value) that the template cannot hold:
        self.x_target: dict[int, int] = {}  # direct branch target
        self.x_ref: dict[int, int] = {}  # RIP-relative data_ref
        self.x_api: dict[int, str] = {}  # API (RIP-relative slot, or resolved by the CFG)
        self.x_string: dict[int, str] = {}  # string at a RIP-relative data_ref
        self.x_norm: dict[int, str] = {}  # norm when not the template's ("call api", ...)

    # -- lookups -------------------------------------------------------------------------

    def region(self, va: int) -> CodeRegion | None:
        i = bisect.bisect_right(self._region_starts, va) - 1
        if i >= 0 and va < self._regions[i].end:
            return self._regions[i]
        return None

    def regions(self) -> list[tuple[int, int]]:
        """(start, end) VA of every decodable executable range."""
        return [(r.va, r.end) for r in self._regions]

    def read(self, va: int, size: int) -> bytes:
        r = self.region(va)
        if r is None:
            return b""
        return r.data[va - r.va : va - r.va + size]

    def string(self, va: int) -> str | None:
        """The string at ``va`` (cached); cheap rejection of non-printable starts."""
        try:
            return self._strings[va]
        except KeyError:
            pass
        result: str | None = None
        if len(self._strings) < MAX_STRING_LOOKUPS and not self.addresses.executable(va):
            head = self.binary.read(va, 4)
            if len(head) == 4 and (
                all(0x20 <= c < 0x7F or c in (9, 10, 13) for c in head)
                or (head[1] == 0 and head[3] == 0 and 0x20 <= head[0] < 0x7F)
            ):
                result = self.binary.string_at(va)
        self._strings[va] = result
        return result

    def is_address(self, value: int) -> bool:
        return self.absolute_ok and self.addresses.mapped(value)

    # -- decoding ------------------------------------------------------------------------

    def decode_block(self, va: int, api_regs: dict[int, str], pointers: list[int]) -> int:
        """Decode linearly from ``va`` through the first instruction that is not ``Flow.NEXT``.

        Every instruction is appended to the decoder's columns (:attr:`vas`, :attr:`tids`,
        :attr:`at` and the sparse ``x_*`` maps; see :mod:`kinship.disasm.columns`): no
        per-instruction object is made. Returns the register of that last instruction: the
        full target register of ``call reg``/``jmp reg``, else -1 (see :meth:`_analyse`); or
        :data:`STOPPED` when the run ended without one: before an address already decoded, at
        an invalid instruction or at the end of the section. Along the way ``mov reg, [IAT
        slot]`` loads are tracked in ``api_regs`` (register -> API, for ``call reg``) and
        executable addresses taken by operands are appended to ``pointers``.

        This is the hot loop of the disassembler: one dict lookup per instruction whose
        encoding was seen before, no generator, no per-instruction attribute reads.
        """
        r = self._last_region  # consecutive blocks mostly lie in one section
        if r is None or not r.va <= va < r.end:
            r = self.region(va)
            if r is None:
                return STOPPED
            self._last_region = r
        dec = r.decoder
        pos = va - r.va
        dec.position = pos
        dec.ip = va
        data = r.data
        templates = self._templates
        stop = self.at
        add_va = self.vas.append
        add_tid = self.tids.append
        x_target = self.x_target
        i = len(self.vas)
        next_flow = Flow.NEXT
        x_api = self.x_api
        for ins in dec:
            if va in stop:
                return STOPPED
            n = ins.len
            raw = data[pos : pos + n]
            t = templates.get(raw)
            if t is None:
                if ins.code == Code.INVALID:
                    return STOPPED
                t = self._template(dec, ins, raw)
            kind = t[12]
            if kind:  # (most instructions take none of these branches)
                if kind == K_POINTER:
                    pointers.append(t[4])  # type: ignore[arg-type]
                elif kind == K_BRANCH:
                    x_target[i] = ins.near_branch_target
                else:
                    self._riprel(i, t, ins.ip_rel_memory_address, pointers)
            stop[va] = i
            add_va(va)
            add_tid(t[11])
            i += 1
            va += n
            pos += n
            reg = t[9]
            if t[2] is not next_flow:
                return reg
            if reg >= 0:
                api = x_api.get(i - 1) if kind == K_RIPREL else t[6]
                if api:
                    api_regs[reg] = api
                else:
                    api_regs.pop(reg, None)
        return STOPPED

    def _riprel(self, i: int, t: Template, ref: int, pointers: list[int]) -> str | None:
        """Record the position-dependent fields of RIP-relative instruction ``i``."""
        api = self.api_thunks.get(ref)
        self.x_ref[i] = ref
        if api is not None:
            self.x_api[i] = api
            if t[2] is Flow.CALL or t[2] is Flow.INDIRECT_JUMP:
                self.x_norm[i] = t[0] + " api"
        else:
            if t[2] is Flow.NEXT and self.addresses.executable(ref):
                pointers.append(ref)
            s = self.string(ref)
            if s is not None:
                self.x_string[i] = s
        return api

    # -- column accessors (instruction index i, see decode_block) ------------------------

    def template(self, i: int) -> Template:
        return self.tlist[self.tids[i]]

    def size(self, i: int) -> int:
        return len(self.tlist[self.tids[i]][3])

    def api(self, i: int) -> str | None:
        a = self.x_api.get(i)
        return a if a is not None else self.tlist[self.tids[i]][6]

    def _own(self, t: Template) -> Template:
        """``t`` with this decoder's template id (its index in :attr:`tlist`) as field 11."""
        own = (*t[:11], len(self.tlist), t[12])
        self.tlist.append(own)
        return own

    def _template(self, dec: iced.Decoder, ins: iced.Instruction, raw: bytes) -> Template:
        """The cached analysis of an encoding whose raw bytes are not in the raw cache."""
        common = self._shared.get(raw)
        if common is not None:  # only context-free, position-independent encodings are there
            own = self._templates[raw] = self._own(common)
            return own
        # Position-dependent encodings (relative branches, RIP-relative operands) are cached
        # by their bytes with the displacement zeroed, others by raw bytes.
        k = self._branch_disp.get(ins.code)
        if k is not None:
            key = raw[: len(raw) - k]
            t = self._branch_templates.get(key)
            if t is None:
                t = self._branch_templates[key] = self._analyse(dec, ins, raw)
            return t
        if ins.op0_kind in NEAR_BRANCH_KINDS:
            co = dec.get_constant_offsets(ins)
            k = co.immediate_size
            if co.has_immediate and k > 0 and co.immediate_offset + k == len(raw):
                # The displacement ends every near-branch encoding of this code: from now on
                # its template is found by the bytes before it (no per-target cache entry).
                self._branch_disp[ins.code] = k
                t = self._branch_templates[raw[: len(raw) - k]] = self._analyse(dec, ins, raw)
                return t
        pic = pic_key(dec, ins, raw)
        if pic is None:  # (not in the shared cache: looked up above)
            t = self._analyse(dec, ins, raw)
            if not self._context_used:
                shared = self._shared
                if len(shared) >= MAX_SHARED_TEMPLATES:
                    shared.clear()
                shared[raw] = t
            self._templates[raw] = t
            return t
        t2 = self._dep_templates.get(pic)
        if t2 is None:
            t2 = self._dep_templates[pic] = self._analyse(dec, ins, raw)
        # The template holds nothing position-dependent (targets and RIP-relative addresses
        # are recomputed per occurrence), so the raw bytes may find it directly next time.
        self._templates[raw] = t2
        return t2

    def decode_one(self, va: int) -> iced.Instruction | None:
        """The raw iced instruction at ``va`` (for jump-table and thunk analysis)."""
        r = self.region(va)
        if r is None:
            return None
        # A fresh decoder: the region's shared one may be suspended inside run().
        dec = iced.Decoder(self.bitness, r.data[va - r.va : va - r.va + 16], ip=va)
        if not dec.can_decode:
            return None
        ins = dec.decode()
        return None if ins.code == Code.INVALID else ins

    def _analyse(self, dec: iced.Decoder, ins: iced.Instruction, raw: bytes) -> Template:
        """Full operand analysis of one encoding (the cache-miss path).

        Sets ``_context_used`` when the result may depend on the binary (its address space,
        GOT, imports, strings) rather than on the bytes, bitness and max_literal alone. An
        operand value below MIN_ABSOLUTE_ADDRESS is never an address in any binary (absolute
        addresses count only in images mapped at or above it), so it leaves the flag clear.
        """
        mnem = MNEMONICS[ins.mnemonic]
        flow = instruction_flow(ins, mnem)
        ops = self._operands(ins, mnem, flow)
        tokens = ops.tokens
        dep = ops.dep
        data_ref = ops.data_ref
        register = ops.register
        if (
            mnem == "mov"
            and register == -1
            and data_ref in self.api_thunks
            and ins.op0_kind == OpKind.REGISTER
        ):
            register = FULL_REGISTER[ins.op0_register]
        if dep == DEP_RIPREL and mnem == "mov" and ins.op0_kind == OpKind.REGISTER:
            register = FULL_REGISTER[ins.op0_register]
        pic = pic_bytes(dec, ins, raw, ops.zero_disp, ops.zero_imm)
        api = self.api_thunks.get(data_ref) if data_ref is not None else None
        string = self.string(data_ref) if data_ref is not None and api is None else None
        if api is not None and flow in (Flow.CALL, Flow.INDIRECT_JUMP, Flow.JUMP):
            tokens = ["api"]
        norm = f"{mnem} {', '.join(tokens)}" if tokens else mnem
        self._context_used = ops.ctx or data_ref is not None
        code_pointer = (
            flow is Flow.NEXT
            and data_ref is not None
            and api is None
            and self.addresses.executable(data_ref)
        )
        fast = (
            K_BRANCH if dep == DEP_BRANCH
            else K_RIPREL if dep == DEP_RIPREL
            else K_POINTER if code_pointer
            else K_PLAIN
        )
        return self._own(
            (mnem, norm, flow, pic, data_ref, ops.imm, api, string, dep, register, code_pointer,
             -1, fast)
        )

    def _operands(self, ins: iced.Instruction, mnem: str, flow: Flow) -> _Operands:
        """The operand tokens of ``ins`` and what they imply (see :class:`_Operands`)."""
        tokens: list[str] = []
        dep = DEP_NONE
        data_ref: int | None = None
        imm: int | None = None
        zero_disp = zero_imm = ctx = False
        register = -1
        mask = self._mask
        for k in range(ins.op_count):
            kind = ins.op_kind(k)
            if kind == OpKind.REGISTER:
                reg = ins.op_register(k)
                tokens.append(REGISTER_CLASS[reg])
                if k == 0 and flow in (Flow.CALL, Flow.INDIRECT_JUMP):
                    register = FULL_REGISTER[reg]
            elif kind == OpKind.MEMORY:
                if ins.is_ip_rel_memory_operand:
                    dep = DEP_RIPREL
                    zero_disp = True
                    tokens.append("mem")
                    continue
                tokens.append("stk" if ins.memory_base in STACK_REGISTERS else "mem")
                ref, used = self._memory_ref(ins, mnem)
                ctx = ctx or used
                if ref is not None:
                    data_ref = ref
                    zero_disp = True
            elif kind in NEAR_BRANCH_KINDS:
                dep = DEP_BRANCH
                zero_imm = True
                tokens.append("func" if flow is Flow.CALL else "loc")
            elif kind in IMM_KINDS:
                value = ins.immediate(k)
                if value & mask >= MIN_ABSOLUTE_ADDRESS:
                    ctx = True
                if self.is_address(value & mask) and imm is None and data_ref is None:
                    data_ref = value & mask
                    zero_imm = k == 0 or not any(ins.op_kind(j) in IMM_KINDS for j in range(k))
                    tokens.append("addr")
                    continue
                width = IMM_KINDS[kind]
                if width and value >= 1 << (width - 1):
                    value -= 1 << width
                if imm is None:
                    imm = value
                tokens.append(str(value) if 0 <= value <= self.max_literal else "imm")
            elif kind in FAR_BRANCH_KINDS:
                tokens.append("far")
            else:
                tokens.append("mem")  # string-instruction memory operands
        return _Operands(tokens, dep, data_ref, imm, zero_disp, zero_imm, register, ctx)

    def _memory_ref(self, ins: iced.Instruction, mnem: str) -> tuple[int | None, bool]:
        """(address, context) of the memory operand of ``ins`` (not RIP-relative): the image
        address its displacement names, if any, and whether reading it so may depend on the
        binary (see :meth:`_analyse`)."""
        base = ins.memory_base
        disp = ins.memory_displacement & self._mask
        ctx = (
            base == Register.NONE
            or (self.bitness == 32 and disp >= MIN_ABSOLUTE_ADDRESS)
            or (mnem == "lea" and base == Register.EBX)
        )
        if base == Register.NONE and ins.memory_segment not in (Register.FS, Register.GS):
            if ins.memory_index == Register.NONE:
                # absolute address; only dismissed when the image is mapped low
                if self.addresses.mapped(disp) and (self.absolute_ok or disp > 0xFFF):
                    return disp, ctx
            elif self.is_address(disp):
                return disp, ctx  # table base, [reg*4 + table]
        elif self.bitness == 32 and self.is_address(disp):
            return disp, ctx
        elif (
            self.pic_base is not None
            and mnem == "lea"
            and base == Register.EBX
            and ins.memory_index == Register.NONE
            and (disp >= 0x8000_0000 or disp >= MIN_GOT_OFFSET)
        ):
            # lea reg, [ebx + off]: GOT-relative address of a string/global/callback
            # (small offsets are rather struct fields of a pointer in ebx)
            value = (self.pic_base + disp) & self._mask
            if self.addresses.mapped(value):
                return value, ctx
        return None, ctx


@dataclass(slots=True)
class _Operands:
    """What :meth:`CodeDecoder._operands` learnt from the operands of one encoding."""

    tokens: list[str]  # normalised operand tokens (see the module docstring)
    dep: int  # DEP_*: position dependence
    data_ref: int | None  # image address named by an operand
    imm: int | None  # first immediate that is not an address (sign-extended)
    zero_disp: bool  # the displacement is position/image dependent: zeroed in pic bytes
    zero_imm: bool  # likewise the immediate (branch displacement, address)
    register: int  # full target register of call reg / jmp reg, else -1
    ctx: bool  # the reading may depend on the binary (see CodeDecoder._analyse)
