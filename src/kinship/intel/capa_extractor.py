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

This module holds the extractor and the global and file features; the function, basic-block
and instruction features are in :mod:`kinship.intel.capa_function`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
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
    Characteristic,
    Format,
)
from capa.features.extractors.base_extractor import (
    BBHandle,
    FunctionHandle,
    InsnHandle,
    SampleHashes,
    StaticFeatureExtractor,
)
from capa.features.file import Export, FunctionName, Import, Section

from kinship.binary.model import Binary
from kinship.binary.model import Format as BinFormat
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.model import BasicBlock, Flow, Function
from kinship.intel.capa_function import (
    INSN_HANDLERS,
    MIN_STACKSTRING_LEN,
    DecodedInsn,
    Found,
    has_loop,
    stackstring_len,
)

logger = logging.getLogger(__name__)


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
        if has_loop(f):
            yield Characteristic("loop"), fh.address

    def get_basic_blocks(self, fh: FunctionHandle) -> Iterator[BBHandle]:
        f: Function = fh.inner
        for k, b in enumerate(f.blocks):
            yield BBHandle(address=AbsoluteVirtualAddress(b.va), inner=(b, k == 0))

    def extract_basic_block_features(self, fh: FunctionHandle, bbh: BBHandle) -> Found:
        b: BasicBlock = bbh.inner[0]
        if b.va in b.successors:
            yield Characteristic("tight loop"), bbh.address
        if stackstring_len(self._decode_block(b, bbh.inner[1])) > MIN_STACKSTRING_LEN:
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
