"""Function -> FunctionFeatures (exact hash, code and sem MinHash sketches).

``extract_all`` is the fast path: it walks the instructions once in Python and does all token
combination, deduplication and MinHash work vectorised over batches of MAX_BATCH_FUNCTIONS;
the sem sketches are made last, over all functions, because they carry call-graph context
(:mod:`kinship.features.context`). ``extract_features`` is the same code on one function.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.disasm.model import BasicBlock, Function
from kinship.features.config import FeatureConfig
from kinship.features.context import sem_sketches
from kinship.features.minhash import get_hasher
from kinship.features.model import FunctionFeatures
from kinship.features.tokens import (
    FunctionScan,
    code_tokens_batch,
    scan_batch,
    sem_specific_tokens,
    shape_tokens,
)

log = logging.getLogger(__name__)

# Functions processed per vectorised batch: large enough to amortise numpy call overhead,
# small enough to keep the temporary token arrays to a few MiB.
MAX_BATCH_FUNCTIONS = 2048


def exact_hash(fn: Function) -> int:
    """Signed 64-bit blake2b of the function's pic_bytes in address order (fits SQLite INTEGER)."""
    return _hash_pic(b"".join(i.pic_bytes for b in _blocks_by_va(fn) for i in b.instructions))


def _hash_pic(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def _blocks_by_va(fn: Function) -> list[BasicBlock]:
    blocks = fn.blocks
    if all(blocks[k].va <= blocks[k + 1].va for k in range(len(blocks) - 1)):
        return blocks
    return sorted(blocks, key=lambda blk: blk.va)


@dataclass(slots=True, eq=False)
class _Partial:
    """Everything of a batch but the sem sketches (they need the whole call graph)."""

    functions: Sequence[Function]
    scans: list[FunctionScan]
    code_sigs: np.ndarray
    code_n: list[int]


def _scan_batch(
    functions: Sequence[Function], config: FeatureConfig, own: list[list[int]],
    shapes: list[list[int]],
) -> _Partial:
    """Code sketches of a batch; appends each function's own sem tokens and shape tokens."""
    hasher = get_hasher(config.num_perm, config.seed)
    batch = scan_batch(functions)
    scans = batch.functions
    code = code_tokens_batch(batch, config)
    code_sigs, code_counts = hasher.sketch_segments(code.tokens, code.segment, code.n_segments)
    for fn, scan in zip(functions, scans, strict=True):
        own.append(sem_specific_tokens(scan.apis, scan.strings, scan.imms, config))
        shapes.append(shape_tokens(fn, scan.n_calls))
    return _Partial(functions, scans, code_sigs, code_counts.tolist())


def extract_all(
    functions: Sequence[Function], config: FeatureConfig | None = None
) -> list[FunctionFeatures]:
    """Features of every function, in input order (vectorised in batches). Sem sketches carry
    the call-graph context among ``functions`` (features.context)."""
    cfg = config or FeatureConfig()
    out: list[FunctionFeatures] = []
    # Only acyclic objects are made here (tuples, lists, arrays), but a million of them would
    # make the cyclic collector rescan the whole disassembly several times: pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        own: list[list[int]] = []
        shapes: list[list[int]] = []
        parts = [
            _scan_batch(functions[start : start + MAX_BATCH_FUNCTIONS], cfg, own, shapes)
            for start in range(0, len(functions), MAX_BATCH_FUNCTIONS)
        ]
        sem_sigs, sem_n = sem_sketches(
            [fn.va for fn in functions], [fn.calls for fn in functions], own, shapes, cfg
        )
        k = 0
        for part in parts:
            for j, fn in enumerate(part.functions):
                scan = part.scans[j]
                out.append(
                    FunctionFeatures(
                        va=fn.va,
                        name=fn.name,
                        n_instructions=scan.n_instructions,
                        n_blocks=len(fn.blocks),
                        n_edges=fn.n_edges,
                        size=scan.size,
                        exact_hash=_hash_pic(scan.pic) if scan.in_order else exact_hash(fn),
                        code_sig=part.code_sigs[j],
                        sem_sig=sem_sigs[k],
                        n_code_tokens=part.code_n[j],
                        n_sem_tokens=sem_n[k],
                        apis=scan.apis,
                        strings=scan.strings,
                        discovery=str(fn.discovery.value) if fn.discovery is not None else "",
                    )
                )
                k += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    log.debug("extracted features of %d functions", len(out))
    return out


def extract_features(fn: Function, config: FeatureConfig | None = None) -> FunctionFeatures:
    """Features of one function alone: ``extract_all([fn])[0]``, so its sem sketch has no
    call-graph context (the other functions of its binary are not known here)."""
    return extract_all([fn], config)[0]
