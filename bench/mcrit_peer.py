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

Family attribution (:class:`McritIndex`, :func:`match_query`, :func:`family_ranking`): MCRIT's
sample matcher cannot run here in process: ``mcrit.storage.MemoryStorage`` imports
``mcrit.config.McritConfig``, whose ``StorageConfig`` imports ``StorageFactory`` ->
``MongoDbStorage`` -> ``pymongo`` (its server stack, not installed). So its query matcher
(``mcrit/matchers/MatcherQuery.py`` + ``MatcherInterface.py``, MCRIT 1.9.0) is reproduced,
vectorised, from the per-binary cache of *all* SMDA functions (:meth:`McritPeer.analyse_all`),
with MCRIT's own code for the parts that decide matches (``MinHasher.isMinHashableFunction``,
``MinHasher.calculateMinHashFromStorage``, ``StorageInterface.createBandhashProjection``,
``MinHash.hashData`` for the LSH band hashes). Step by step, as MCRIT does it for a query
sample against its storage:

1. PicHash (``MatcherQuery._getPicHashMatches`` + ``MatcherInterface._harmonizePicHashMatches``):
   a query function with a non-zero PicHash and ``num_instructions >= PICHASH_SIZE`` (10)
   matches *every* indexed function with the same PicHash, score 100.
2. MinHash candidates (``MemoryStorage.getCandidatesForMinHash``): indexed minhashable functions
   sharing at least ``BAND_MATCHES_REQUIRED`` (2) of the 20 random 4-slot band hashes
   (``STORAGE_BANDS = {4: 20}``, ``STORAGE_BAND_SEED = 0xDEADBEEF``); candidates in a sample
   that already PicHash-matched the function are dropped (``PICHASH_IMPLIES_MINHASH_MATCH``,
   ``filter_pichashes_from_candidate_groups``).
3. MinHash score = 100 x equal slots / 64, kept when ``> MINHASH_MATCHING_THRESHOLD`` (50), i.e.
   >= 33 equal slots (``_minMatchesForThreshold``); per (query function, foreign sample) the
   best score (``_performMinHashMatchingVectorized``).
4. Sample score (``_aggregateMatchSampleSummary``): for each foreign sample,
   ``percent.frequency_weighted = 100 * sum(binweight_f * max_score_f,s / 100 / adj_f) /
   matchable_bytes`` over the query functions f matched in that sample; ``adj_f`` =
   ``_get_family_adjustment``: 1 when f matched < 3 families (library families included), else
   ``1 + int(log2(n_families))``; ``matchable_bytes`` = binweight of the query functions
   ``_isMatchableFunction`` accepts (``num_instructions >= 10``).
5. Family ranking (``MatchingResult.getBestSampleMatchesPerFamily(malware_only=True)``): each
   family scores its best sample's ``matched_percent_frequency_weighted``; library samples
   (``SampleEntry.is_library``) are left out of the ranking but, as in MCRIT, still count as
   families in step 4.

Not reproduced: nothing that changes a score. Band hash collisions are MCRIT's own (its band
hash is ``mmh3`` of the concatenated decimal slot values, computed here with its code).
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
MCRIT_MATCH_THRESHOLD = 50.0  # MinHashConfig.MINHASH_MATCHING_THRESHOLD (score 0..100)
SIGNATURE_LENGTH = 64  # MinHashConfig.MINHASH_SIGNATURE_LENGTH
PICHASH_SIZE = 10  # MinHashConfig.PICHASH_SIZE
MINHASH_FN_MIN_INS = 10  # MinHashConfig.MINHASH_FN_MIN_INS (minhashable: more instructions)
BAND_MATCHES_REQUIRED = 2  # MinHashConfig.BAND_MATCHES_REQUIRED
STORAGE_BANDS = {4: 20}  # StorageConfig.STORAGE_BANDS (default)
STORAGE_BAND_SEED = 0xDEADBEEF  # StorageConfig.STORAGE_BAND_SEED (default)


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
        self.projection = band_projection()

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


# ---- family attribution (module docstring, steps 1-5) -----------------------------------------
def min_matches_for_threshold(threshold: float = MCRIT_MATCH_THRESHOLD,
                              length: int = SIGNATURE_LENGTH) -> int:
    """Fewest equal slots with ``100 * m / length > threshold`` (MCRIT's
    ``MatcherInterface._minMatchesForThreshold``): 33 of 64 at threshold 50."""
    for m in range(length + 1):
        if 100.0 * m / length > threshold:
            return m
    return length + 1


def family_adjustment(n_families: npt.NDArray[np.int64]) -> F64:
    """MCRIT's ``_get_family_adjustment``: 1 below 3 families, else ``1 + int(log2(n))``."""
    n = np.maximum(n_families, 1)
    return np.where(n < 3, 1.0, 1.0 + np.floor(np.log2(n)))


def band_projection() -> list[list[int]]:
    """MCRIT's band projection (``StorageInterface.createBandhashProjection``, default
    ``random`` strategy, its default seed and ``{4: 20}`` bands)."""
    from types import SimpleNamespace

    from mcrit.minhash.MinHash import MinHash  # type: ignore[import-untyped]
    from mcrit.storage.StorageInterface import StorageInterface  # type: ignore[import-untyped]

    ns = SimpleNamespace(_storage_config=SimpleNamespace(
        STORAGE_BAND_STRATEGY="random", STORAGE_BAND_SEED=STORAGE_BAND_SEED,
        STORAGE_BANDS=dict(STORAGE_BANDS)))
    ref = MinHash(minhash_signature=list(range(SIGNATURE_LENGTH)), minhash_bits=8)
    proj = StorageInterface.createBandhashProjection(ns, ref)
    return [list(proj[k]) for k in sorted(proj)]


def band_hashes(minhash: U8, projection: list[list[int]]) -> npt.NDArray[np.uint32]:
    """(n, n_bands) MCRIT band hashes (``StorageInterface.getBandHashesForMinHash``)."""
    from mcrit.minhash.MinHash import MinHash

    out = np.zeros((len(minhash), len(projection)), dtype=np.uint32)
    rows = minhash.tolist()
    for r, sig in enumerate(rows):
        for b, perm in enumerate(projection):
            out[r, b] = MinHash.hashData([sig[i] for i in perm], 0)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class McritBinary:
    """All SMDA functions of one binary as MCRIT stores them (``FunctionEntry``)."""

    va: I64
    pichash: npt.NDArray[np.uint64]  # 0: none
    n_instructions: I64
    n_blocks: I64
    binweight: F64  # FunctionEntry.binweight (instruction bytes)
    hashable: npt.NDArray[np.bool_]  # MinHasher.isMinHashableFunction
    minhash: U8  # (n, 64); zero rows where not hashable
    bands: npt.NDArray[np.uint32]  # (n, 20) band hashes; zero rows where not hashable
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _analyse_all(peer: McritPeer, path: Path, sha256: str) -> McritBinary:
    from smda.Disassembler import Disassembler
    from smda.SmdaConfig import SmdaConfig

    t0, c0 = time.perf_counter(), time.process_time()
    old = peer.cache_dir / f"{sha256}-{peer.version}.npz"
    known: dict[int, bytes] = {}
    if old.is_file():  # minhashes of analyse(): reuse by VA (SMDA is deterministic)
        d = np.load(old)
        known = {int(v): bytes(m) for v, m in zip(d["va"].tolist(), d["minhash"], strict=True)}
    report = Disassembler(SmdaConfig()).disassembleFile(str(path))  # type: ignore[no-untyped-call]
    fns = list(report.getFunctions())
    n = len(fns)
    width = SIGNATURE_LENGTH
    minhash = np.zeros((n, width), dtype=np.uint8)
    hashable = np.zeros(n, dtype=bool)
    for k, fn in enumerate(fns):
        if not peer.hasher.isMinHashableFunction(fn):
            continue
        hashable[k] = True
        sig = known.get(int(fn.offset or 0))
        if sig is None:
            sig = bytes(peer.hasher.calculateMinHashFromStorage((k, fn)).minhash)
        minhash[k] = np.frombuffer(sig, dtype=np.uint8)
    bands = np.zeros((n, sum(STORAGE_BANDS.values())), dtype=np.uint32)
    if hashable.any():
        bands[hashable] = band_hashes(minhash[hashable], peer.projection)
    return McritBinary(
        np.array([int(f.offset or 0) for f in fns], dtype=np.int64),
        np.array([int(f.pic_hash or 0) for f in fns], dtype=np.uint64),
        np.array([int(f.num_instructions) for f in fns], dtype=np.int64),
        np.array([int(f.num_blocks) for f in fns], dtype=np.int64),
        np.array([float(f.binweight or 0) for f in fns], dtype=np.float64),
        hashable, minhash, bands, time.perf_counter() - t0, time.process_time() - c0,
    )


def analyse_all(peer: McritPeer, path: Path, sha256: str) -> McritBinary:
    """Every SMDA function of ``path`` with MCRIT's minhash and band hashes, cached as
    ``<cache>/mcrit/<sha256>-<version>-all.npz``."""
    cached = peer.cache_dir / f"{sha256}-{peer.version}-all.npz"
    if cached.is_file():
        d = np.load(cached)
        return McritBinary(d["va"], d["pichash"], d["n_instructions"], d["n_blocks"],
                           d["binweight"], d["hashable"], d["minhash"], d["bands"])
    out = _analyse_all(peer, path, sha256)
    np.savez(cached, va=out.va, pichash=out.pichash, n_instructions=out.n_instructions,
             n_blocks=out.n_blocks, binweight=out.binweight, hashable=out.hashable,
             minhash=out.minhash, bands=out.bands)
    return out


class McritIndex:
    """MCRIT's storage of the indexed samples, as sorted arrays (PicHash and band lookups)."""

    def __init__(self, binaries: list[McritBinary], families: list[str],
                 is_library: list[bool], sha256: list[str] | None = None) -> None:
        self.sample_sha = np.array(sha256 if sha256 is not None else [""] * len(binaries))
        self.families = sorted(set(families))
        fam_id = {f: i for i, f in enumerate(self.families)}
        self.sample_family = np.array([fam_id[f] for f in families], dtype=np.int64)
        self.sample_is_library = np.array(is_library, dtype=bool)
        self.n_samples = len(binaries)
        sizes = [len(b.va) for b in binaries]
        self.row_sample = np.repeat(np.arange(len(binaries), dtype=np.int64), sizes)
        nb = sum(STORAGE_BANDS.values())
        pich = (np.concatenate([b.pichash for b in binaries]) if binaries
                else np.zeros(0, dtype=np.uint64))
        hashable = (np.concatenate([b.hashable for b in binaries]) if binaries
                    else np.zeros(0, dtype=bool))
        self.minhash = (np.concatenate([b.minhash for b in binaries]) if binaries
                        else np.zeros((0, SIGNATURE_LENGTH), dtype=np.uint8))
        bands = (np.concatenate([b.bands for b in binaries]) if binaries
                 else np.zeros((0, nb), dtype=np.uint32))
        pic_rows = np.flatnonzero(pich != 0)
        order = np.argsort(pich[pic_rows], kind="stable")
        self.pic_rows = pic_rows[order]
        self.pic_keys = pich[self.pic_rows]
        h_rows = np.flatnonzero(hashable)
        self.band_rows: list[I64] = []
        self.band_keys: list[npt.NDArray[np.uint32]] = []
        for b in range(nb):
            o = np.argsort(bands[h_rows, b], kind="stable")
            self.band_rows.append(h_rows[o])
            self.band_keys.append(bands[h_rows[o], b])


def _expand(keys: npt.NDArray[Any], sorted_keys: npt.NDArray[Any], sorted_rows: I64,
            owners: I64) -> tuple[I64, I64]:
    """All (owner, row) with ``sorted_keys[row] == keys[owner-slot]`` (vectorised join)."""
    lo = np.searchsorted(sorted_keys, keys, side="left")
    hi = np.searchsorted(sorted_keys, keys, side="right")
    cnt = hi - lo
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    own = np.repeat(owners, cnt)
    starts = np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
    pos = np.arange(total, dtype=np.int64) + starts
    return own, sorted_rows[pos]


def match_query(q: McritBinary, index: McritIndex,
                exclude_samples: npt.NDArray[np.int64] | None = None) -> F64:
    """Per indexed sample, MCRIT's ``matched.percent.frequency_weighted`` (0..100) of the query
    sample ``q`` (MatcherQuery; module docstring steps 1-4). ``exclude_samples``: indexed
    samples treated as absent (e.g. a byte-identical copy of the query)."""
    n_s = index.n_samples
    out = np.zeros(n_s, dtype=np.float64)
    if n_s == 0 or len(q.va) == 0:
        return out
    keep_s = np.ones(n_s, dtype=bool)
    if exclude_samples is not None and len(exclude_samples):
        keep_s[exclude_samples] = False
    # 1. PicHash matches
    own = np.flatnonzero((q.pichash != 0) & (q.n_instructions >= PICHASH_SIZE))
    pi, prow = _expand(q.pichash[own], index.pic_keys, index.pic_rows, own)
    ps = index.row_sample[prow]
    ok = keep_s[ps]
    pic_key = np.unique(pi[ok] * n_s + ps[ok])
    # 2. MinHash candidates: >= BAND_MATCHES_REQUIRED equal band hashes
    hq = np.flatnonzero(q.hashable)
    parts = [_expand(q.bands[hq, b], index.band_keys[b], index.band_rows[b], hq)
             for b in range(len(index.band_keys))]
    n_rows = len(index.row_sample)
    codes = (np.concatenate([i * n_rows + r for i, r in parts]) if parts
             else np.zeros(0, dtype=np.int64))
    uniq, counts = np.unique(codes, return_counts=True)
    cand = uniq[counts >= BAND_MATCHES_REQUIRED]
    ci, crow = cand // n_rows, cand % n_rows
    cs = index.row_sample[crow]
    ok = keep_s[cs] & ~np.isin(ci * n_s + cs, pic_key)  # PICHASH_IMPLIES_MINHASH_MATCH
    ci, crow, cs = ci[ok], crow[ok], cs[ok]
    # 3. score > 50 (>= 33 of 64 equal slots)
    eq = np.count_nonzero(q.minhash[ci] == index.minhash[crow], axis=1)
    ok = eq >= min_matches_for_threshold()
    mh_key = ci[ok] * n_s + cs[ok]
    mh_score = 100.0 * eq[ok] / SIGNATURE_LENGTH
    # best score per (query function, foreign sample); PicHash matches score 100
    keys = np.r_[pic_key, mh_key]
    scores = np.r_[np.full(len(pic_key), 100.0), mh_score]
    if len(keys) == 0:
        return out
    order = np.lexsort((-scores, keys))
    keys, scores = keys[order], scores[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    keys, scores = keys[first], scores[first]
    fi, fs = keys // n_s, keys % n_s
    # 4. family adjustment (distinct families per query function) and weighted bytes
    fam_pairs = np.unique(fi * len(index.families) + index.sample_family[fs])
    n_fam = np.bincount(fam_pairs // len(index.families), minlength=len(q.va))
    adj = family_adjustment(n_fam)
    matchable = float(q.binweight[(q.n_instructions >= PICHASH_SIZE)
                                  | (q.n_instructions > MINHASH_FN_MIN_INS)].sum())
    if matchable <= 0:
        return out
    w = q.binweight[fi] * scores / 100.0 / adj[fi]
    out += np.bincount(fs, weights=w, minlength=n_s)
    return 100.0 * out / matchable


def family_ranking(sample_scores: F64, index: McritIndex) -> list[tuple[str, float]]:
    """MCRIT's ``getBestSampleMatchesPerFamily(malware_only=True)``: families by their best
    sample's score, library samples left out, only samples with a match (score > 0)."""
    best: dict[int, float] = {}
    for s in np.flatnonzero((sample_scores > 0) & ~index.sample_is_library).tolist():
        f = int(index.sample_family[s])
        if sample_scores[s] > best.get(f, -1.0):
            best[f] = float(sample_scores[s])
    return [(index.families[f], v) for f, v in sorted(best.items(), key=lambda e: -e[1])]


# ---- ingest throughput on equal function counts ----------------------------------------------
def _per(n: float, cpu: float) -> float:
    return round(n / cpu, 1) if cpu > 0 else 0.0


def ingest_rates(pairs: Sequence[tuple[float, Sequence[int], float, McritBinary]]
                 ) -> dict[str, Any]:
    """Ingest throughput of kinship and MCRIT over the same binaries, per CPU-second.

    ``pairs``: per binary (kinship CPU s, kinship function VAs, MCRIT CPU s, MCRIT's view);
    only binaries both tools analysed in this run (CPU > 0) belong here. MCRIT's per-function
    rate as ``bench.matching.speed_of`` reports it counts only its *minhashable* functions
    (``isMinHashableFunction``: more than 10 instructions), while kinship's counts all of its
    own functions, so the ratio of the two rates mixes speed with two different counts
    (``ratio_own_counts``, kept for comparison). The ``equal_counts`` rows divide one and the
    same function count by each tool's CPU time: MCRIT's minhashable functions, every SMDA
    function, and the functions both tools found at the same VA. Over an equal count the ratio
    is the CPU-time ratio, whichever count is used; the rows differ in the rates shown."""
    k_cpu = sum(p[0] for p in pairs)
    m_cpu = sum(p[2] for p in pairs)
    k_fn = sum(len(p[1]) for p in pairs)
    m_all = sum(len(p[3].va) for p in pairs)
    m_hash = sum(int(np.count_nonzero(p[3].hashable)) for p in pairs)
    common = sum(len(set(map(int, p[1])) & set(p[3].va.tolist())) for p in pairs)
    common_hash = sum(len(set(map(int, p[1])) & set(p[3].va[p[3].hashable].tolist()))
                      for p in pairs)
    k_rate, m_rate = _per(k_fn, k_cpu), _per(m_hash, m_cpu)
    eq = {}
    for name, n in (("mcrit_minhashable", m_hash), ("smda_all", m_all),
                    ("found_by_both", common), ("minhashable_found_by_both", common_hash)):
        eq[name] = {"functions": n, "kinship_per_cpu_s": _per(n, k_cpu),
                    "mcrit_per_cpu_s": _per(n, m_cpu),
                    "ratio": round(m_cpu / k_cpu, 3) if k_cpu > 0 else 0.0}
    return {
        "binaries": len(pairs),
        "kinship": {"cpu_s": round(k_cpu, 2), "functions": k_fn, "functions_per_cpu_s": k_rate},
        "mcrit": {"cpu_s": round(m_cpu, 2), "functions_minhashable": m_hash,
                  "functions_smda_all": m_all, "functions_per_cpu_s": m_rate,
                  "functions_smda_all_per_cpu_s": _per(m_all, m_cpu)},
        "ratio_own_counts": round(k_rate / m_rate, 3) if m_rate > 0 else 0.0,
        "equal_counts": eq,
    }


# ---- fidelity check against MCRIT's own matcher ------------------------------------------------
def reference_scores(index: list[tuple[Path, str, bool]], queries: list[Path]
                     ) -> list[list[float]]:
    """MCRIT's own ``MatcherQuery`` on its ``MemoryStorage`` (``pymongo``, needed only by its
    MongoDB backend, replaced by an empty stub module): for each query, per indexed sample
    (path, family, is_library) in order, ``matched.percent.frequency_weighted`` (0 when
    unmatched). Slow (re-disassembles and minhashes everything): used to check
    :func:`match_query` on a few binaries (``python -m bench.mcrit_peer verify``)."""
    import sys
    import types

    if "pymongo" not in sys.modules:
        stub = types.ModuleType("pymongo")
        stub.MongoClient = stub.UpdateOne = object  # type: ignore[attr-defined]
        stub.__path__ = []  # a package, with an empty pymongo.errors
        sys.modules["pymongo"] = stub
        sys.modules["pymongo.errors"] = types.ModuleType("pymongo.errors")
    from mcrit.config.McritConfig import McritConfig  # type: ignore[import-untyped]
    from mcrit.matchers.MatcherQuery import MatcherQuery  # type: ignore[import-untyped]
    from mcrit.storage.MemoryStorage import MemoryStorage  # type: ignore[import-untyped]
    from smda.Disassembler import Disassembler
    from smda.SmdaConfig import SmdaConfig

    config = McritConfig()
    config.MINHASH_CONFIG.MINHASH_POOL_INDEXING = False
    config.MINHASH_CONFIG.MINHASH_POOL_MATCHING = False
    storage = MemoryStorage(config)

    worker = in_process_worker(config, storage)
    ids = []
    for path, family, is_library in index:
        report = Disassembler(SmdaConfig()).disassembleFile(str(path))  # type: ignore[no-untyped-call]
        report.family, report.is_library, report.version = family, is_library, ""
        entry = storage.addSmdaReport(report)
        storage.addMinHashes(worker.calculateMinHashes(
            storage.getFunctionsBySampleId(entry.sample_id)))
        ids.append(entry.sample_id)
    out = []
    for query in queries:
        report = Disassembler(SmdaConfig()).disassembleFile(str(query))  # type: ignore[no-untyped-call]
        result = MatcherQuery(worker).getMatchesForSmdaReport(report)
        by_id = {s["sample_id"]: float(s["matched"]["percent"]["frequency_weighted"])
                 for s in result["matches"]["samples"]}
        out.append([by_id.get(i, 0.0) for i in ids])
    return out


def in_process_worker(config: Any, storage: Any, minhash_s: list[float] | None = None) -> Any:
    """What MCRIT's matchers use of ``mcrit.Worker.Worker`` (which imports its job queue):
    ``config``, ``getStorage()`` and ``calculateMinHashes`` without its process pool. With
    ``minhash_s``, the seconds spent minhashing are added to ``minhash_s[0]``."""
    from mcrit.minhash.MinHasher import MinHasher  # type: ignore[import-untyped]
    from smda.common.BinaryInfo import BinaryInfo
    from smda.common.SmdaFunction import SmdaFunction

    class _Worker:
        def __init__(self) -> None:
            self.config = config
            self._minhash_config = config.MINHASH_CONFIG
            self.minhasher = MinHasher(config.MINHASH_CONFIG, config.SHINGLER_CONFIG)

        def getStorage(self) -> Any:
            return storage

        def calculateMinHashes(self, entries: Any) -> list[Any]:
            """``Worker.calculateMinHashes`` without its process pool."""
            t = time.perf_counter()
            out = []
            for e in entries:
                info = BinaryInfo(b"")
                info.architecture = e.architecture
                fn = SmdaFunction.fromDict(e.xcfg, binary_info=info)
                if self.minhasher.isMinHashableFunction(fn):
                    out.append(self.minhasher.calculateMinHashFromStorage((e.function_id, fn)))
            if minhash_s is not None:
                minhash_s[0] += time.perf_counter() - t
            return out

    return _Worker()


def verify() -> dict[str, float]:
    """Compare :func:`match_query` with :func:`reference_scores` on a few binaries: an index of
    zlib/bzip2/xz (ELF) and wine-version/wine-cabinet (PE) builds with one library sample
    (py-markupsafe), queried with other versions/builds and a Lua library."""
    from bench.gt import DEFAULT_CACHE, ensure_corpus, load_manifest, stripped_copy

    dev = ensure_corpus()
    entries = load_manifest(dev)

    def pick(family: str, lo: int, hi: int) -> list[Any]:
        es = sorted((e for e in entries if e.family == family and e.size < 400_000),
                    key=lambda e: e.path)
        return es[lo:hi]

    index_e = (pick("zlib", 0, 3) + pick("bzip2", 0, 2) + pick("xz", 0, 2)
               + pick("wine-version", 0, 2) + pick("wine-cabinet", 0, 2)
               + pick("py-markupsafe", 0, 1))
    query_e = (pick("zlib", 3, 5) + pick("bzip2", 2, 3) + pick("lua5.3", 0, 1)
               + pick("wine-version", 2, 4) + pick("wine-cabinet", 2, 3))
    lib = [e.family == "py-markupsafe" for e in index_e]
    peer = McritPeer(DEFAULT_CACHE)
    paths = [stripped_copy(dev, e, DEFAULT_CACHE) for e in index_e]
    idx = McritIndex([analyse_all(peer, p, e.sha256) for p, e in zip(paths, index_e, strict=True)],
                     [e.family for e in index_e], lib)
    qpaths = [stripped_copy(dev, q, DEFAULT_CACHE) for q in query_e]
    refs = reference_scores([(p, e.family, k) for p, e, k in zip(paths, index_e, lib, strict=True)],
                            qpaths)
    worst, n, nonzero = 0.0, 0, 0
    for q, qp, ref in zip(query_e, qpaths, refs, strict=True):
        ours = match_query(analyse_all(peer, qp, q.sha256), idx)
        logger.warning("verify %s: ours %s mcrit %s", q.path, np.round(ours, 3).tolist(),
                       np.round(ref, 3).tolist())
        worst = max(worst, float(np.abs(ours - np.array(ref)).max()))
        n += len(ref)
        nonzero += sum(1 for r in ref if r > 0)
    return {"queries": len(query_e), "pairs": n, "pairs_matched": nonzero,
            "max_abs_diff_percent": worst}


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["verify"]:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        print(verify())
