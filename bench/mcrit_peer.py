"""The peer: MCRIT (PyPI ``mcrit``) in process, SMDA as its disassembler, on the same binaries.

``pip install mcrit`` pulls in its server stack (MongoDB client, gunicorn, falcon); none of it is
needed here. We use only MCRIT's in-process classes, exactly as its indexer does:

* ``smda.Disassembler(SmdaConfig()).disassembleFile(path)`` (MCRIT's own disassembler);
* ``mcrit.minhash.MinHasher(MinHashConfig(), ShinglerConfig())`` with MCRIT's defaults
  (segmented strategy, 64 x 8-bit signature, EscapedBlockShingler + FuzzyStatPairShingler),
  ``isMinHashableFunction`` as MCRIT's size filter;
* MCRIT's function score: 100 when the PicHashes are equal (``PICHASH_IMPLIES_MINHASH_MATCH``),
  else ``MinHash.calculateMinHashScore`` (fraction of equal signature slots, x100), computed here
  vectorised over a pool with the identical formula; the match threshold is MCRIT's
  ``MINHASH_MATCHING_THRESHOLD`` (50).

Install: ``pip install --no-deps mcrit mmh3 picblocks`` (the rest it needs is already here).
Results per binary are cached under ``<cache>/mcrit/<sha256>.npz`` (MCRIT does not change while
we tune kinship).
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
MCRIT_MATCH_THRESHOLD = 50.0  # MinHashConfig.MINHASH_MATCHING_THRESHOLD (score 0..100)


@dataclass(frozen=True, slots=True, eq=False)
class McritFunctions:
    """MCRIT's view of one binary: its minhashable functions."""

    va: npt.NDArray[np.int64]  # (n,) SMDA function offsets (VAs)
    minhash: U8  # (n, 64) 8-bit signature slots
    pichash: npt.NDArray[np.uint64]  # (n,) SMDA PicHash (0: none)
    n_instructions: npt.NDArray[np.int64]  # (n,)
    n_blocks: npt.NDArray[np.int64]  # (n,)
    seconds: float  # SMDA + minhashing wall time (0 when read from the cache)
    cpu_seconds: float


def available() -> str | None:
    """MCRIT's version, or None when it is not installed."""
    try:
        import mcrit.minhash.MinHasher  # type: ignore[import-untyped]  # noqa: F401
        import smda.Disassembler  # noqa: F401
    except ImportError:
        return None
    return importlib.metadata.version("mcrit")


class McritPeer:
    """MCRIT's disassembly + MinHash pipeline, one MinHasher reused over all binaries."""

    def __init__(self, cache_dir: Path) -> None:
        # MCRIT's MinHasher module calls logging.basicConfig at import; keep its chatter down.
        from mcrit.config.MinHashConfig import MinHashConfig  # type: ignore[import-untyped]
        from mcrit.config.ShinglerConfig import ShinglerConfig  # type: ignore[import-untyped]
        from mcrit.minhash.MinHasher import MinHasher

        for name in ("mcrit", "smda"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.config = MinHashConfig()
        self.hasher = MinHasher(self.config, ShinglerConfig())
        self.cache_dir = cache_dir / "mcrit"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.version = available() or "?"

    def analyse(self, path: Path, sha256: str) -> McritFunctions:
        cached = self.cache_dir / f"{sha256}-{self.version}.npz"
        if cached.is_file():
            d = np.load(cached)
            return McritFunctions(
                d["va"], d["minhash"], d["pichash"], d["n_instructions"], d["n_blocks"],
                0.0, 0.0,
            )
        from smda.Disassembler import Disassembler
        from smda.SmdaConfig import SmdaConfig

        t0, c0 = time.perf_counter(), time.process_time()
        config = SmdaConfig()  # type: ignore[no-untyped-call]
        report = Disassembler(config).disassembleFile(str(path))
        vas: list[int] = []
        sigs: list[bytes] = []
        pics: list[int] = []
        ninsn: list[int] = []
        nblk: list[int] = []
        for k, fn in enumerate(report.getFunctions()):
            if not self.hasher.isMinHashableFunction(fn):
                continue
            mh = self.hasher.calculateMinHashFromStorage((k, fn))
            vas.append(int(fn.offset or 0))
            sigs.append(bytes(mh.minhash))
            pics.append(int(fn.pic_hash or 0))
            ninsn.append(int(fn.num_instructions))
            nblk.append(int(fn.num_blocks))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        width = self.config.MINHASH_SIGNATURE_LENGTH
        minhash = (
            np.frombuffer(b"".join(sigs), dtype=np.uint8).reshape(len(sigs), width)
            if sigs
            else np.zeros((0, width), dtype=np.uint8)
        )
        out = McritFunctions(
            np.array(vas, dtype=np.int64), minhash, np.array(pics, dtype=np.uint64),
            np.array(ninsn, dtype=np.int64), np.array(nblk, dtype=np.int64), seconds, cpu,
        )
        np.savez(
            cached, va=out.va, minhash=out.minhash, pichash=out.pichash,
            n_instructions=out.n_instructions, n_blocks=out.n_blocks,
        )
        return out


def mcrit_scores(query_sig: U8, query_pic: int, pool_sig: U8, pool_pic: npt.NDArray[np.uint64]
                 ) -> npt.NDArray[np.float64]:
    """MCRIT's function score (0..100) of one query against each pool row (vectorised
    ``MinHash.calculateMinHashScore``; equal non-zero PicHash -> 100)."""
    if len(pool_sig) == 0:
        return np.zeros(0, dtype=np.float64)
    s: npt.NDArray[np.float64] = (
        100.0 * np.count_nonzero(pool_sig == query_sig[None, :], axis=1) / pool_sig.shape[1]
    )
    if query_pic:
        s[pool_pic == np.uint64(query_pic)] = 100.0
    return s
