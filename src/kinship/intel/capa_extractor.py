"""A capa ``StaticFeatureExtractor`` backed by kinship's own :class:`Binary` + :class:`Disassembly`.

capa's rule engine then runs over the functions kinship already found, so no second (slow,
vivisect) disassembly is needed. Features follow capa's vivisect backend
(``capa/features/extractors/viv/{file,function,basicblock,insn}.py``):

    global     format, os, arch
    file       import, export, section, string, function-name, embedded pe
    function   calls to, loop
    bb         tight loop, stack string
    insn       api, string, bytes, number, offset, operand[i].number/offset, mnemonic,
               nzxor, peb access, fs/gs access, cross section flow, calls from,
               recursive call, indirect call, call $+5

kinship's :class:`Instruction` keeps what matching needs (api, string, target, data_ref, imm)
but not every operand, so operand features come from re-decoding each basic block with
iced-x86 (the bytes are in ``Binary``; re-decoding a block costs microseconds).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import capa.features.extractors.common as capa_common
import capa.features.extractors.helpers as capa_helpers
import iced_x86 as iced
from capa.features.address import (
    NO_ADDRESS,
    AbsoluteVirtualAddress,
    Address,
    FileOffsetAddress,
)
from capa.features.basicblock import BasicBlock as CapaBasicBlock
from capa.features.common import (
    ARCH_AMD64,
    ARCH_I386,
    FORMAT_ELF,
    FORMAT_PE,
    Arch,
    Bytes,
    Characteristic,
    Feature,
    Format,
    String,
)
from capa.features.extractors.base_extractor import (
    BBHandle,
    FunctionHandle,
    InsnHandle,
    SampleHashes,
    StaticFeatureExtractor,
)
from capa.features.file import Export, FunctionName, Import, Section
from capa.features.insn import API, Mnemonic, Number, Offset, OperandNumber, OperandOffset
from iced_x86 import OpKind, Register

from kinship.binary.model import Binary
from kinship.binary.model import Format as BinFormat
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.model import BasicBlock, Flow, Function, Instruction

logger = logging.getLogger(__name__)

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


class KinshipCapaExtractor(StaticFeatureExtractor):  # type: ignore[misc]
    """Feeds capa from an already disassembled sample.

    ``library_vas``: functions recognised as library code (compiler runtime, library corpus);
    capa skips them as it skips FLIRT-recognised functions.
    """

    def __init__(self, binary: Binary, disassembly: Disassembly,
                 library_vas: frozenset[int] = frozenset()) -> None:
        super().__init__(hashes=SampleHashes(md5=binary.hashes.md5, sha1=binary.hashes.sha1,
                                             sha256=binary.hashes.sha256))
        self.binary = binary
        self.disassembly = disassembly
        self.library_vas = library_vas
        self._functions = {f.va: f for f in disassembly.functions}
        self._callers: dict[int, list[int]] = defaultdict(list)
        for f in disassembly.functions:
            for b in f.blocks:
                for i in b.instructions:
                    if i.flow == Flow.CALL and i.target is not None:
                        self._callers[i.target].append(i.va)
        self._global = list(self._global_features())

    # ---- global / file --------------------------------------------------------------------
    def _global_features(self) -> Found:
        b = self.binary
        if b.format == BinFormat.PE:
            yield Format(FORMAT_PE), NO_ADDRESS
        elif b.format == BinFormat.ELF:
            yield Format(FORMAT_ELF), NO_ADDRESS
        yield from capa_common.extract_os(b.data)
        yield Arch(ARCH_AMD64 if b.bitness == 64 else ARCH_I386), NO_ADDRESS

    def get_base_address(self) -> AbsoluteVirtualAddress:
        return AbsoluteVirtualAddress(self.binary.image_base)

    def extract_global_features(self) -> Found:
        yield from self._global

    def extract_file_features(self) -> Found:
        for handler in FILE_HANDLERS:
            yield from handler(self.binary, self.disassembly)

    # ---- functions ------------------------------------------------------------------------
    def get_functions(self) -> Iterator[FunctionHandle]:
        for f in self.disassembly.functions:
            yield FunctionHandle(address=AbsoluteVirtualAddress(f.va), inner=f)

    def is_library_function(self, addr: Address) -> bool:
        return int(addr) in self.library_vas

    def get_function_name(self, addr: Address) -> str:
        va = int(addr)
        f = self._functions.get(va)
        if f is not None and f.name:
            return f.name
        if va in self.library_vas:  # capa names every library function it skips
            return f"library_{va:x}"
        raise KeyError(addr)

    def extract_function_features(self, fh: FunctionHandle) -> Found:
        f: Function = fh.inner
        for caller in self._callers.get(f.va, []):
            yield Characteristic("calls to"), AbsoluteVirtualAddress(caller)
        if _has_loop(f):
            yield Characteristic("loop"), fh.address

    def get_basic_blocks(self, fh: FunctionHandle) -> Iterator[BBHandle]:
        f: Function = fh.inner
        for k, b in enumerate(f.blocks):
            yield BBHandle(address=AbsoluteVirtualAddress(b.va), inner=(b, k == 0))

    def extract_basic_block_features(self, fh: FunctionHandle, bbh: BBHandle) -> Found:
        b: BasicBlock = bbh.inner[0]
        if b.va in b.successors:
            yield Characteristic("tight loop"), bbh.address
        if _stackstring_len(self._decode_block(b, bbh.inner[1])) > MIN_STACKSTRING_LEN:
            yield Characteristic("stack string"), bbh.address
        # capa counts a function's blocks (``count(basic blocks): N or more``) from this
        # feature, which every capa backend yields once per block.
        yield CapaBasicBlock(), bbh.address

    def get_instructions(self, fh: FunctionHandle, bbh: BBHandle) -> Iterator[InsnHandle]:
        b, first = bbh.inner
        for d in self._decode_block(b, first):
            yield InsnHandle(address=AbsoluteVirtualAddress(d.insn.va), inner=d)

    def extract_insn_features(self, fh: FunctionHandle, bbh: BBHandle, ih: InsnHandle) -> Found:
        f: Function = fh.inner
        d: DecodedInsn = ih.inner
        for handler in INSN_HANDLERS:
            yield from handler(self.binary, f, d, ih.address)

    # ---- helpers --------------------------------------------------------------------------
    def _decode_block(self, b: BasicBlock, first: bool) -> list[DecodedInsn]:
        data = self.binary.read(b.va, b.end - b.va)
        decoder = iced.Decoder(self.binary.bitness, data, ip=b.va)
        by_va: dict[int, Any] = {}
        for ins in decoder:
            by_va[ins.ip] = ins
        return [DecodedInsn(i, by_va.get(i.va), b, first) for i in b.instructions]


# ---- file handlers (small pure functions, capa-style registry) ----------------------------
def file_imports(binary: Binary, _dis: Disassembly) -> Found:
    for imp in binary.imports:
        lib = imp.library
        sym = imp.name if not imp.name.startswith("ord_") else f"#{imp.ordinal or imp.name[4:]}"
        for name in capa_helpers.generate_symbols(lib, sym, include_dll=True):
            yield Import(name), AbsoluteVirtualAddress(imp.slot)
        if not lib:
            yield Import(sym), AbsoluteVirtualAddress(imp.slot)


def _pe_forwarders(binary: Binary) -> list[tuple[str, int]]:
    """Forwarded PE exports as (forwarder "kernel32.HeapAlloc", VA): kinship's loader keeps
    code exports only, capa also reports these (export directory only, via pefile)."""
    if binary.format != BinFormat.PE:
        return []
    import pefile

    try:
        pe = pefile.PE(data=binary.data, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
    except pefile.PEFormatError:
        return []
    out = []
    for e in getattr(getattr(pe, "DIRECTORY_ENTRY_EXPORT", None), "symbols", []):
        if not e.forwarder:
            continue
        try:
            name = e.forwarder.partition(b"\x00")[0].decode("ascii")
        except UnicodeDecodeError:
            continue
        out.append((name, binary.image_base + e.address))
    return out


def file_exports(binary: Binary, _dis: Disassembly) -> Found:
    """Exports, and forwarded exports as capa reports them: named by their target
    (``kernel32.VerLanguageNameA``), tagged ``forwarded export``."""
    for exp in binary.exports:
        yield Export(exp.name), AbsoluteVirtualAddress(exp.va)
    for name, va in _pe_forwarders(binary):
        yield Export(capa_helpers.reformat_forwarded_export_name(name)), \
            AbsoluteVirtualAddress(va)
        yield Characteristic("forwarded export"), AbsoluteVirtualAddress(va)


def file_sections(binary: Binary, _dis: Disassembly) -> Found:
    for s in binary.sections:
        if s.name:
            yield Section(s.name), AbsoluteVirtualAddress(s.va)


def file_strings(binary: Binary, _dis: Disassembly) -> Found:
    yield from capa_common.extract_file_strings(binary.data)


def file_function_names(_binary: Binary, dis: Disassembly) -> Found:
    for f in dis.functions:
        if f.name:
            yield FunctionName(f.name), AbsoluteVirtualAddress(f.va)
            if f.name.startswith("_"):  # capa also strips leading underscores
                yield FunctionName(f.name.lstrip("_")), AbsoluteVirtualAddress(f.va)


def file_embedded_pe(binary: Binary, _dis: Disassembly) -> Found:
    for offset, _ in capa_helpers.carve_pe(binary.data, 1):
        yield Characteristic("embedded pe"), FileOffsetAddress(offset)


FILE_HANDLERS: tuple[Callable[[Binary, Disassembly], Found], ...] = (
    file_imports, file_exports, file_sections, file_strings, file_function_names,
    file_embedded_pe,
)


# ---- function / basic-block helpers --------------------------------------------------------
def _has_loop(f: Function) -> bool:
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


def _stackstring_len(decoded: list[DecodedInsn]) -> int:
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
