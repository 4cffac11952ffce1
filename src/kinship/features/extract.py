"""Function -> FunctionFeatures (exact hash, code and sem MinHash sketches).

``extract_all`` is the fast path: it walks the instructions once in Python and does all token
combination, deduplication and MinHash work vectorised over batches of MAX_BATCH_FUNCTIONS.
``extract_features`` is the same code on a batch of one.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Sequence

from kinship.disasm.model import BasicBlock, Function
from kinship.features.config import FeatureConfig
from kinship.features.minhash import get_hasher
from kinship.features.model import FunctionFeatures
from kinship.features.tokens import code_tokens_batch, scan_batch, sem_tokens_batch

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


def _extract_batch(functions: Sequence[Function], config: FeatureConfig) -> list[FunctionFeatures]:
    hasher = get_hasher(config.num_perm, config.seed)
    batch = scan_batch(functions)
    scans = batch.functions
    code = code_tokens_batch(batch, config)
    sem = sem_tokens_batch(functions, config, scans)
    code_sigs, code_counts = hasher.sketch_segments(code.tokens, code.segment, code.n_segments)
    sem_sigs, sem_counts = hasher.sketch_segments(sem.tokens, sem.segment, sem.n_segments)
    code_n = code_counts.tolist()
    sem_n = sem_counts.tolist()
    out: list[FunctionFeatures] = []
    for k, fn in enumerate(functions):
        scan = scans[k]
        out.append(
            FunctionFeatures(
                va=fn.va,
                name=fn.name,
                n_instructions=scan.n_instructions,
                n_blocks=len(fn.blocks),
                n_edges=fn.n_edges,
                size=scan.size,
                exact_hash=_hash_pic(scan.pic) if scan.in_order else exact_hash(fn),
                code_sig=code_sigs[k],
                sem_sig=sem_sigs[k],
                n_code_tokens=code_n[k],
                n_sem_tokens=sem_n[k],
                apis=scan.apis,
                strings=scan.strings,
                discovery=str(fn.discovery.value) if fn.discovery is not None else "",
            )
        )
    return out


def extract_all(
    functions: Sequence[Function], config: FeatureConfig | None = None
) -> list[FunctionFeatures]:
    """Features of every function, in input order (vectorised in batches)."""
    cfg = config or FeatureConfig()
    out: list[FunctionFeatures] = []
    # Only acyclic objects are made here (tuples, lists, arrays), but a million of them would
    # make the cyclic collector rescan the whole disassembly several times: pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, len(functions), MAX_BATCH_FUNCTIONS):
            out.extend(_extract_batch(functions[start : start + MAX_BATCH_FUNCTIONS], cfg))
    finally:
        if gc_was_enabled:
            gc.enable()
    log.debug("extracted features of %d functions", len(out))
    return out


def extract_features(fn: Function, config: FeatureConfig | None = None) -> FunctionFeatures:
    """Features of one function (same values as ``extract_all([fn])[0]``)."""
    return _extract_batch([fn], config or FeatureConfig())[0]
