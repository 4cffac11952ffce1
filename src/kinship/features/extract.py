"""FunctionFeatures from the columnar disassembly: the one featuriser.

Every feature is computed from the decoder's columns (:mod:`kinship.disasm.columns`), never from
Instruction objects: per-instruction values are looked up in per-template tables with numpy,
code tokens and MinHash are vectorised over batches of MAX_BATCH_FUNCTIONS, and only sparse
hits (APIs, strings, distinctive constants) are touched in Python. The sem sketches are made
last, over all functions, because they carry call-graph context
(:mod:`kinship.features.context`). Function objects made by hand go through
:meth:`CodeColumns.from_functions` (:func:`extract_functions`). ``tests/test_perf_equivalence.py``
checks the values against a plain-Python reference and against digests of every fixture.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.disasm.columns import CodeColumns, FunctionBlocks
from kinship.disasm.decoder import DEP_BRANCH, DEP_NONE
from kinship.disasm.model import Flow, Function
from kinship.features.config import FeatureConfig
from kinship.features.context import sem_sketches
from kinship.features.minhash import I64, get_hasher
from kinship.features.model import FunctionFeatures
from kinship.features.tokens import (
    canonical_constant,
    code_tokens_from_ids,
    mnemonic_ids,
    norm_ids,
    sem_specific_tokens,
    shape_values,
)

log = logging.getLogger(__name__)

# Functions processed per vectorised batch: large enough to amortise numpy call overhead,
# small enough to keep the temporary token arrays to a few MiB.
MAX_BATCH_FUNCTIONS = 2048

_B = np.bool_
_GET_VA = operator.attrgetter("va")
_GET_START = operator.attrgetter("start")
_GET_END = operator.attrgetter("end")
_GET_SUCC = operator.attrgetter("successors")


@dataclass(slots=True, eq=False)
class _Tables:
    """Per-instruction columns of one CodeColumns, derived once."""

    nid: np.ndarray  # norm token id (uint64)
    mid: np.ndarray  # mnemonic id (uint64)
    size: I64
    is_call: np.ndarray  # bool
    has_api: np.ndarray  # bool
    has_str: np.ndarray  # bool
    has_const: np.ndarray  # bool: a non-address immediate that is a distinctive constant
    pic_off: I64  # offset of the instruction's pic bytes in pic_buf
    pic_buf: np.ndarray  # uint8, every template's pic bytes
    api_t: list[str | None]  # by template id
    str_t: list[str | None]
    imm_t: list[int | None]
    block_index: dict[int, int]  # block VA -> row of the block arrays below
    b_start: I64
    b_len: I64
    b_succ: I64
    b_back: I64


def _tables(cols: CodeColumns, cfg: FeatureConfig) -> _Tables:
    tl = cols.tlist
    fields = list(zip(*tl, strict=True)) if tl else [()] * 13
    norms: list[str] = list(fields[1])
    pics: tuple[bytes, ...] = fields[3]
    dep = np.array(fields[8], dtype=np.int64)
    plain = dep == DEP_NONE
    tnorm = np.array(norm_ids(norms, cfg), dtype=np.uint64)
    tmid = np.array(mnemonic_ids(norms), dtype=np.uint64)
    tsize = np.fromiter(map(len, pics), dtype=np.int64, count=len(pics))
    api_t: list[str | None] = list(fields[6])  # None for branches and RIP-relative ones
    str_t: list[str | None] = list(fields[7])  # (their values are in x_api / x_string)
    imm_t: list[int | None] = [
        None if d == DEP_BRANCH else v for d, v in zip(fields[8], fields[5], strict=True)
    ]
    tcall = np.array(fields[2], dtype=np.int64) == int(Flow.CALL)
    tapi = np.fromiter(map(bool, api_t), dtype=_B, count=len(tl)) & plain
    tstr = np.fromiter(map(bool, str_t), dtype=_B, count=len(tl)) & plain
    consts: dict[int, bool] = {}
    for v in imm_t:
        if v is not None and v not in consts:
            consts[v] = canonical_constant(v) is not None
    tconst = np.fromiter(
        (v is not None and consts[v] for v in imm_t), dtype=_B, count=len(tl)
    )
    toff = np.zeros(len(tl), dtype=np.int64)
    if len(tl) > 1:
        np.cumsum(tsize[:-1], out=toff[1:])
    pic_buf = np.frombuffer(b"".join(pics), dtype=np.uint8)
    tid = cols.tid_array()
    nid = tnorm[tid]
    if cols.x_norm:
        idx = np.fromiter(cols.x_norm.keys(), dtype=np.int64, count=len(cols.x_norm))
        nid[idx] = np.array(norm_ids(list(cols.x_norm.values()), cfg), dtype=np.uint64)
    has_api = tapi[tid]
    if cols.x_api:
        keys = [k for k, v in cols.x_api.items() if v]
        has_api[np.array(keys, dtype=np.int64)] = True
    has_str = tstr[tid]
    if cols.x_string:
        keys = [k for k, v in cols.x_string.items() if v]
        has_str[np.array(keys, dtype=np.int64)] = True
    spans = list(cols.blocks.values())
    nb = len(spans)
    block_index = dict(zip(cols.blocks, range(nb), strict=True))
    # Addresses as uint64: x64 kernel images and dumps live at 0xffff8000_00000000 and above,
    # past int64 (the loaders reject anything beyond 2**64).
    b_va = np.fromiter(map(_GET_VA, spans), dtype=np.uint64, count=nb)
    b_start = np.fromiter(map(_GET_START, spans), dtype=np.int64, count=nb)
    b_len = np.fromiter(map(_GET_END, spans), dtype=np.int64, count=nb) - b_start
    succs = list(map(_GET_SUCC, spans))
    b_succ = np.fromiter(map(len, succs), dtype=np.int64, count=nb)
    flat = np.fromiter(itertools.chain.from_iterable(succs), dtype=np.uint64,
                       count=int(b_succ.sum()))
    back = flat <= np.repeat(b_va, b_succ)
    b_back = np.bincount(
        np.repeat(np.arange(nb, dtype=np.int64), b_succ)[back], minlength=nb
    ).astype(np.int64)
    return _Tables(
        nid, tmid[tid], tsize[tid], tcall[tid], has_api, has_str, tconst[tid], toff[tid],
        pic_buf, api_t, str_t, imm_t, block_index, b_start, b_len, b_succ, b_back,
    )


@dataclass(slots=True, eq=False)
class _Partial:
    """One function's features but the sem sketch."""

    fb: FunctionBlocks
    n_instructions: int
    n_blocks: int
    n_edges: int
    size: int
    exact_hash: int
    code_sig: np.ndarray
    n_code_tokens: int
    apis: tuple[str, ...]
    strings: tuple[str, ...]


def _gather(starts: I64, lens: I64) -> I64:
    """Concatenated ``arange(starts[k], starts[k] + lens[k])``."""
    total = int(lens.sum())
    offs = np.zeros(len(lens), dtype=np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1], out=offs[1:])
    out: I64 = np.repeat(starts - offs, lens) + np.arange(total, dtype=np.int64)
    return out


def _reduce(ufunc: np.ufunc, values: I64, starts: I64, counts: I64) -> I64:
    """``ufunc`` over each run of ``counts[k]`` values from ``starts[k]`` (consecutive runs of
    non-negative values); 0 for an empty run, where ``reduceat`` alone would give a neighbour's
    value (a Function made by hand may have no blocks)."""
    if counts.all():
        out: I64 = ufunc.reduceat(values, starts)
        return out
    padded = np.append(values, np.zeros(1, dtype=values.dtype))
    out = ufunc.reduceat(padded, starts)
    out[counts == 0] = 0
    return out


def _edge_counts(cols: CodeColumns, fb: FunctionBlocks) -> tuple[int, int, int]:
    """Edges, largest out-degree and back edges (successor VA <= block VA: a loop) of ``fb``,
    counted in Python with its own successor lists (a shared block that loops back to this
    function's entry has one more edge here than in the other functions)."""
    edges = max_out = loops = 0
    for bva in fb.blocks:
        succ = fb.successors.get(bva)
        if succ is None:
            succ = cols.blocks[bva].successors
        edges += len(succ)
        max_out = max(max_out, len(succ))
        loops += sum(1 for s in succ if s <= bva)
    return edges, max_out, loops


def _hits(mask: np.ndarray, idx: I64, ends: list[int]) -> tuple[list[int], list[int]]:
    """Instruction indexes (in batch order) where ``mask`` holds, and the hit count before
    each function end."""
    pos = np.flatnonzero(mask[idx])
    bounds: list[int] = np.searchsorted(pos, np.array(ends, dtype=np.int64)).tolist()
    found: list[int] = idx[pos].tolist()
    return found, bounds


def _block_rows(
    fns: Sequence[FunctionBlocks], block_index: dict[int, int]
) -> tuple[list[int], list[int], list[int]]:
    """Block-array rows of a batch's functions in function order, the same in address order
    (the exact hash's order: the entry block may not be the lowest), and block counts."""
    fblk: list[int] = []
    hblk: list[int] = []
    nblocks: list[int] = []
    for fb in fns:
        rows = [block_index[v] for v in fb.blocks]
        fblk += rows
        nblocks.append(len(rows))
        if len(rows) > 1 and fb.blocks[0] > fb.blocks[1]:
            hblk += [block_index[v] for v in sorted(fb.blocks)]
        else:
            hblk += rows
    return fblk, hblk, nblocks


def _batch(
    cols: CodeColumns, fns: Sequence[FunctionBlocks], tb: _Tables, cfg: FeatureConfig,
    own: list[list[int]], shapes: list[list[int]],
) -> list[_Partial]:
    """Everything but the sem sketches of a batch; appends each function's own sem tokens
    and shape tokens to ``own`` / ``shapes`` (the sem sketches need the whole call graph)."""
    n = len(fns)
    fblk_list, hblk_list, nblocks = _block_rows(fns, tb.block_index)
    fblk = np.array(fblk_list, dtype=np.int64)
    nb = np.array(nblocks, dtype=np.int64)
    block_fn = np.repeat(np.arange(n, dtype=np.int64), nb)
    lens = tb.b_len[fblk]
    idx = _gather(tb.b_start[fblk], lens)
    fb_starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(nb[:-1], out=fb_starts[1:])
    n_ins = _reduce(np.add, lens, fb_starts, nb)
    ends_arr = np.cumsum(n_ins)
    ends: list[int] = ends_arr.tolist()
    istarts = ends_arr - n_ins
    size = _reduce(np.add, tb.size[idx], istarts, n_ins)
    n_calls = _reduce(np.add, tb.is_call[idx].astype(np.int64), istarts, n_ins)
    b_succ = tb.b_succ[fblk]
    n_edges = _reduce(np.add, b_succ, fb_starts, nb)
    max_out = _reduce(np.maximum, b_succ, fb_starts, nb)
    n_loops = _reduce(np.add, tb.b_back[fblk], fb_starts, nb)
    # code tokens
    code = code_tokens_from_ids(tb.nid[idx], tb.mid[idx], lens, block_fn, n, cfg)
    # exact hash: pic bytes of the blocks in address order
    hblk = np.array(hblk_list, dtype=np.int64)
    hidx = _gather(tb.b_start[hblk], tb.b_len[hblk])
    pic = tb.pic_buf[_gather(tb.pic_off[hidx], tb.size[hidx])].tobytes()
    # sparse fields
    api_at, api_end = _hits(tb.has_api, idx, ends)
    str_at, str_end = _hits(tb.has_str, idx, ends)
    con_at, con_end = _hits(tb.has_const, idx, ends)
    tids = cols.tids
    x_api, x_string = cols.x_api, cols.x_string
    api_t, str_t, imm_t = tb.api_t, tb.str_t, tb.imm_t
    apis_all = [x_api.get(g) or api_t[tids[g]] or "" for g in api_at]
    strs_all = [x_string.get(g) or str_t[tids[g]] or "" for g in str_at]
    cons_all = [imm_t[tids[g]] or 0 for g in con_at]
    n_ins_l: list[int] = n_ins.tolist()
    size_l: list[int] = size.tolist()
    n_calls_l: list[int] = n_calls.tolist()
    n_edges_l: list[int] = n_edges.tolist()
    max_out_l: list[int] = max_out.tolist()
    n_loops_l: list[int] = n_loops.tolist()
    per: list[tuple[tuple[str, ...], tuple[str, ...], int]] = []
    a0 = s0 = c0 = p0 = 0
    for k, fb in enumerate(fns):
        if fb.successors:  # this function's own successors of a shared block (rare)
            n_edges_l[k], max_out_l[k], n_loops_l[k] = _edge_counts(cols, fb)
        a1, s1, c1 = api_end[k], str_end[k], con_end[k]
        apis = tuple(apis_all[a0:a1])
        strings = tuple(strs_all[s0:s1])
        p1 = p0 + size_l[k]
        per.append((apis, strings, _hash_pic(pic, p0, p1)))
        own.append(sem_specific_tokens(apis, strings, cons_all[c0:c1], cfg))
        shapes.append(
            shape_values(nblocks[k], n_edges_l[k], n_loops_l[k], max_out_l[k], n_calls_l[k])
        )
        a0, s0, c0, p0 = a1, s1, c1, p1
    hasher = get_hasher(cfg.num_perm, cfg.seed)
    code_sigs, code_counts = hasher.sketch_segments(code.tokens, code.segment, n)
    code_n = code_counts.tolist()
    out: list[_Partial] = []
    for k, fb in enumerate(fns):
        apis, strings, exact = per[k]
        out.append(
            _Partial(
                fb, n_ins_l[k], nblocks[k], n_edges_l[k], size_l[k], exact, code_sigs[k],
                code_n[k], apis, strings,
            )
        )
    return out


def _hash_pic(buf: bytes, a: int, b: int) -> int:
    """The exact hash: signed 64-bit blake2b of ``buf[a:b]`` (a function's pic bytes in address
    order), so it fits an SQLite INTEGER."""
    digest = hashlib.blake2b(memoryview(buf)[a:b], digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def extract_columns(
    cols: CodeColumns, config: FeatureConfig | None = None
) -> list[FunctionFeatures]:
    """Features of every function of ``cols``, in function order. Sem sketches carry the
    call-graph context among these functions (features.context)."""
    cfg = config or FeatureConfig()
    if not cols.functions:
        return []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        tb = _tables(cols, cfg)
        own: list[list[int]] = []
        shapes: list[list[int]] = []
        parts: list[_Partial] = []
        for start in range(0, len(cols.functions), MAX_BATCH_FUNCTIONS):
            batch = cols.functions[start : start + MAX_BATCH_FUNCTIONS]
            parts += _batch(cols, batch, tb, cfg, own, shapes)
        sem_sigs, sem_n = sem_sketches(
            [fb.va for fb in cols.functions], [fb.calls for fb in cols.functions], own, shapes,
            cfg,
        )
        out = [
            FunctionFeatures(
                va=p.fb.va,
                name=p.fb.name,
                n_instructions=p.n_instructions,
                n_blocks=p.n_blocks,
                n_edges=p.n_edges,
                size=p.size,
                exact_hash=p.exact_hash,
                code_sig=p.code_sig,
                sem_sig=sem_sigs[k],
                n_code_tokens=p.n_code_tokens,
                n_sem_tokens=sem_n[k],
                apis=p.apis,
                strings=p.strings,
                discovery=str(p.fb.discovery.value),
            )
            for k, p in enumerate(parts)
        ]
    finally:
        if gc_was_enabled:
            gc.enable()
    log.debug("extracted features of %d functions", len(out))
    return out


def extract_functions(
    functions: Sequence[Function], config: FeatureConfig | None = None
) -> list[FunctionFeatures]:
    """Features of Function objects (made by hand: tests, tools), in input order, through
    their columns (:meth:`CodeColumns.from_functions`); context among ``functions``."""
    if not functions:
        return []
    feats = extract_columns(CodeColumns.from_functions(functions), config)
    by_va = {f.va: f for f in feats}
    return [by_va[fn.va] for fn in functions]


def extract_features(fn: Function, config: FeatureConfig | None = None) -> FunctionFeatures:
    """Features of one function alone: its sem sketch has no call-graph context (the other
    functions of its binary are not known here)."""
    return extract_functions([fn], config)[0]
