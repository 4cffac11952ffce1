"""Columnar disassembly: the decoder's flat instruction columns plus blocks and functions.

The decoder (:meth:`kinship.disasm.decoder.CodeDecoder.decode_block`) records every decoded
instruction as an index ``i`` into flat columns instead of an object::

    vas[i]    VA                       tids[i]   template id -> tlist[tid] (decoder.Template:
    x_target  {i: branch target}                 mnemonic, norm, flow, pic_bytes, data_ref,
    x_ref     {i: RIP-relative address}          imm, api, string, ...)
    x_api     {i: api}   x_string {i: string}   x_norm {i: norm}   (sparse overrides)

A basic block is a half-open index range ``[start, end)`` of one linear run; a function is its
list of block VAs (entry first, the rest ascending, as in :class:`~kinship.disasm.model.Function`).
:meth:`CodeColumns.function_objects` builds the object model from this on demand (evidence
views, capa, ``pipeline.analyse(keep=True)``); :mod:`kinship.features.extract`, the one
featuriser, computes features straight from the columns. :meth:`CodeColumns.from_functions`
goes the other way, for Function objects made by hand (tests, the matcher without binaries).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kinship.disasm.encoding import DEP_BRANCH, DEP_NONE, Template
from kinship.disasm.model import BasicBlock, Discovery, Function, Instruction


@dataclass(slots=True, eq=False)
class BlockSpan:
    """One basic block: instructions ``start..end-1`` of the columns."""

    va: int
    start: int
    end: int
    successors: list[int]


@dataclass(slots=True, eq=False)
class FunctionBlocks:
    """One function as block VAs (blocks[0] is the entry, the rest ascending)."""

    va: int
    blocks: list[int]
    discovery: Discovery
    name: str | None
    calls: list[int]
    # blocks whose successors differ from the shared BlockSpan's (a loop back to the entry)
    successors: dict[int, list[int]] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class CodeColumns:
    """Everything needed to rebuild the object model or compute features (see module doc)."""

    tlist: list[Template]
    vas: list[int]
    tids: list[int]
    x_target: dict[int, int]
    x_ref: dict[int, int]
    x_api: dict[int, str]
    x_string: dict[int, str]
    x_norm: dict[int, str]
    blocks: dict[int, BlockSpan]  # by block VA
    functions: list[FunctionBlocks]  # sorted by va
    _tid_array: npt.NDArray[np.int64] | None = None

    def tid_array(self) -> npt.NDArray[np.int64]:
        """``tids`` as a numpy array (made once)."""
        if self._tid_array is None:
            self._tid_array = np.array(self.tids, dtype=np.int64)
        return self._tid_array

    def instruction(self, i: int) -> Instruction:
        """The :class:`Instruction` object of instruction index ``i``."""
        t = self.tlist[self.tids[i]]
        va = self.vas[i]
        n = len(t[3])
        norm = self.x_norm.get(i, t[1])
        dep = t[8]
        if dep == DEP_NONE:
            api = self.x_api.get(i, t[6])
            return Instruction(va, n, t[0], norm, t[2], t[3], None, t[4], t[5], api, t[7])
        if dep == DEP_BRANCH:
            return Instruction(
                va, n, t[0], norm, t[2], t[3], self.x_target[i], None, None,
                self.x_api.get(i), None,
            )
        return Instruction(
            va, n, t[0], norm, t[2], t[3], None, self.x_ref[i], t[5], self.x_api.get(i),
            self.x_string.get(i),
        )

    def function_objects(self) -> list[Function]:
        """The object model (blocks reached by several functions are shared objects).

        Same objects as :meth:`instruction` gives, made in bulk: every instruction from its
        template's plain (no position-dependent field) form, then the sparse fields patched.
        """
        # ~1 acyclic object per instruction: keep the cyclic collector from rescanning them
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._function_objects()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _function_objects(self) -> list[Function]:
        vas, tids = self.vas, self.tids
        proto = [(len(t[3]), t[0], t[1], t[2], t[3], None, t[4], t[5], t[6], t[7])
                 for t in self.tlist]
        get_proto = proto.__getitem__
        made: dict[int, BasicBlock] = {}
        objs: list[Instruction | None] = [None] * len(vas)
        for fb in self.functions:
            for bva in fb.blocks:
                if bva not in made:
                    span = self.blocks[bva]
                    a, b = span.start, span.end
                    insns = [Instruction(v, *p)
                             for v, p in zip(vas[a:b], map(get_proto, tids[a:b]), strict=True)]
                    made[bva] = BasicBlock(bva, insns, span.successors)
                    objs[span.start : span.end] = insns
        self._patch(objs)
        out: list[Function] = []
        for fb in self.functions:
            blocks: list[BasicBlock] = []
            for bva in fb.blocks:
                block = made[bva]
                extra = fb.successors.get(bva)
                if extra is not None:
                    block = BasicBlock(bva, block.instructions, extra)
                blocks.append(block)
            out.append(Function(fb.va, blocks, fb.discovery, fb.name, fb.calls))
        return out

    def _patch(self, objs: list[Instruction | None]) -> None:
        """Set the fields :meth:`function_objects` did not take from the template."""
        x_api, x_string = self.x_api, self.x_string
        for i, target in self.x_target.items():
            o = objs[i]
            if o is not None:
                o.target = target
                o.data_ref = o.imm = o.api = o.string = None
        for i, ref in self.x_ref.items():
            o = objs[i]
            if o is not None:
                o.data_ref = ref
                o.api = None
                o.string = x_string.get(i)
        for i, api in x_api.items():
            o = objs[i]
            if o is not None:
                o.api = api
        for i, norm in self.x_norm.items():
            o = objs[i]
            if o is not None:
                o.norm = norm

    @classmethod
    def from_functions(cls, functions: Sequence[Function]) -> CodeColumns:
        """The columns of Function objects (the inverse of :meth:`function_objects`).

        Every field the features read round-trips. A branch (``target`` set) keeps its target
        and API and drops ``imm``/``string``, as the decoder makes them; other instructions keep
        everything. Blocks are laid out entry first, the rest by address (the FunctionBlocks
        order). Raises ValueError for an empty block, two functions' different blocks at one
        VA, or two functions at one VA.
        """
        b = _ColumnsBuilder()
        out = [b.add_function(fn) for fn in functions]
        if len({fb.va for fb in out}) != len(out):
            raise ValueError("two functions at one VA")
        out.sort(key=lambda fb: fb.va)
        return cls(b.tlist, b.vas, b.tids, b.x_target, {}, b.x_api, {}, {}, b.blocks, out)

    def n_instructions(self) -> int:
        """Instructions of all functions (blocks shared by several counted for each)."""
        blocks = self.blocks
        return sum(
            blocks[v].end - blocks[v].start for fb in self.functions for v in fb.blocks
        )


class _ColumnsBuilder:
    """Accumulates the columns of :meth:`CodeColumns.from_functions`."""

    def __init__(self) -> None:
        self.tlist: list[Template] = []
        self.ids: dict[Template, int] = {}
        self.vas: list[int] = []
        self.tids: list[int] = []
        self.x_target: dict[int, int] = {}
        self.x_api: dict[int, str] = {}
        self.blocks: dict[int, BlockSpan] = {}
        self.made: dict[int, list[Instruction]] = {}  # block VA -> its instructions

    def template(self, i: Instruction) -> int:
        if i.target is not None:
            t: Template = (i.mnemonic, i.norm, i.flow, i.pic_bytes, None, None, None, None,
                           DEP_BRANCH, 0, False, -1, 0)
        else:
            t = (i.mnemonic, i.norm, i.flow, i.pic_bytes, i.data_ref, i.imm, i.api, i.string,
                 DEP_NONE, 0, False, -1, 0)
        tid = self.ids.get(t)
        if tid is None:
            tid = self.ids[t] = len(self.tlist)
            self.tlist.append(t)
        return tid

    def add_block(self, block: BasicBlock) -> None:
        known = self.made.get(block.va)
        if known is not None:
            if known is not block.instructions and known != block.instructions:
                raise ValueError(f"two different blocks at {block.va:#x}")
            return
        if not block.instructions:
            raise ValueError(f"empty block at {block.va:#x}")
        start = len(self.vas)
        for ins in block.instructions:
            k = len(self.vas)
            self.vas.append(ins.va)
            self.tids.append(self.template(ins))
            if ins.target is not None:
                self.x_target[k] = ins.target
                if ins.api:
                    self.x_api[k] = ins.api
        self.blocks[block.va] = BlockSpan(block.va, start, len(self.vas), list(block.successors))
        self.made[block.va] = block.instructions

    def add_function(self, fn: Function) -> FunctionBlocks:
        ordered = fn.blocks[:1] + sorted(fn.blocks[1:], key=lambda blk: blk.va)
        successors: dict[int, list[int]] = {}
        for block in ordered:
            self.add_block(block)
            if self.blocks[block.va].successors != block.successors:
                successors[block.va] = list(block.successors)
        return FunctionBlocks(
            fn.va, [blk.va for blk in ordered], fn.discovery, fn.name, list(fn.calls), successors
        )
