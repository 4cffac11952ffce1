"""Query latency and memory vs index size (kinship only).

The dev machine cannot ingest 10^6-10^7 distinct real functions (the corpus holds about 10^5),
so large indexes are *replayed*: the real signatures of the analysed corpus are copied, and copy
``c`` has every sketch slot and exact hash remapped by a copy-specific bijection
(``x -> (x * odd_c + c) mod 2^32``). Within a copy the Jaccard structure of the real data is
kept; across copies nothing collides, as between unrelated families. The JSON says, per size,
how many functions are real and how many replayed.

Measured per size: index build seconds, index bytes (``ReferenceIndex.nbytes``), RSS growth of
this process while building (``VmRSS``; the replayed input sketches are freed before it is read,
so it is what the in-RAM index keeps), and the wall time of ``attribute`` for one query sample
of about 5,000 real functions (median of ``repeats``). Then the same query in a fresh process
on the index saved to disk and opened with ``ReferenceIndex.load(mmap=True)``: its latency, its
peak RSS (VmHWM: everything it ever had resident, mapped page cache included) and its private
(anonymous) memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]

QUICK_SIZES = (10_000, 100_000)
FULL_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
# 10^7 replayed functions hold about 10^7 * (2 * 64 * 2 + 2 * 16 * 12 + 65) bytes = 6.2 GiB of
# 16-bit sketches, LSH tables and row scalars in this process (build ~60-100 s on the 2-core
# dev box, 2026-11-26): it fits the 24 GiB machine, not the 2 GiB target; the querying process
# on the saved index (mmap_* fields) is what meets it.
QUERY_FUNCTIONS = 5000


@dataclass
class ScalePoint:
    n_functions: int
    n_real: int
    n_replayed: int
    build_s: float
    index_mib: float
    rss_growth_mib: float
    query_s: float
    query_functions: int
    peak_rss_mib: float = 0.0  # peak RSS of this (benchmark) process so far (ru_maxrss)
    # The same query in a fresh process on the index saved to disk and opened with
    # ReferenceIndex.load(mmap=True) (large arrays read by positional reads, small ones
    # memory-mapped), page cache warm: what a query costs when the index is not held in RAM.
    # Peak RSS (VmHWM) of that process, interpreter ~60 MiB and mapped page cache included.
    mmap_query_s: float = 0.0
    mmap_peak_rss_mib: float = 0.0
    # Private (anonymous) RSS of that process, sampled after candidate generation and after
    # each query (max): the memory the query needs of its own. The rest of its peak RSS is
    # page cache of the still memory-mapped files (per-function scalars), which this kernel
    # maps in large folios (touching one 4 KiB page maps up to 2 MiB).
    mmap_private_mib: float = 0.0
    # The same disk query with every query function remapped into a random replayed copy
    # (spread_query): its candidates spread over the whole index instead of sitting in copy 0.
    # 0 where nothing is replayed.
    spread_query_s: float = 0.0
    spread_peak_rss_mib: float = 0.0


_CHILD = """
import json, pickle, sys, time
from pathlib import Path
from kinship.index.reference import ReferenceIndex
from kinship.match.aggregate import attribute


def status(key):
    return int([ln for ln in open("/proc/self/status") if ln.startswith(key)][0].split()[1])


anon = [status("RssAnon:")]
candidates = ReferenceIndex.candidates


def sampled(self, *args, **kwargs):  # sample private memory at its peak (pairs alive)
    out = candidates(self, *args, **kwargs)
    anon.append(status("RssAnon:"))
    return out


ReferenceIndex.candidates = sampled
d = Path(sys.argv[1])
query = pickle.loads((d / "query.pkl").read_bytes())
index = ReferenceIndex.load(d / "index", mmap=True)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    attribute(query, index, sample_sha256="q")
    times.append(time.perf_counter() - t)
    anon.append(status("RssAnon:"))
times.sort()
# VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak.
print(json.dumps({"query_s": times[len(times) // 2], "peak_rss_mib": status("VmHWM:") / 1024,
                  "anon_mib": max(anon) / 1024}))
"""


def _mmap_query(index: Any, query: Sequence[Any], repeats: int) -> tuple[float, float, float]:
    """(median query seconds, peak RSS MiB, private RSS MiB) of a child process querying
    ``index`` from disk."""
    import json
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="kinship-scale-") as tmp:
        d = Path(tmp)
        index.save(d / "index")
        (d / "query.pkl").write_bytes(pickle.dumps(list(query)))
        out = subprocess.run([sys.executable, "-c", _CHILD, str(d), str(repeats)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return float(r["query_s"]), float(r["peak_rss_mib"]), float(r["anon_mib"])


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _remap(code: Any, sem: Any, exact: Any, c: int) -> tuple[Any, Any, Any]:
    """Copy ``c``'s bijection (copy 0 = identity) of sketch slots and exact hashes."""
    if c == 0:
        return code, sem, exact
    odd = np.uint32((2 * c + 1) * 0x9E3779B1 & 0xFFFFFFFF | 1)
    empty = np.uint32(0xFFFFFFFF)
    cs = code * odd + np.uint32(c)
    ss = sem * odd + np.uint32(c)
    cs[code == empty] = empty
    ss[sem == empty] = empty
    return cs, ss, exact ^ np.int64(c * 0x5BD1E995)


def spread_query(query: Sequence[Any], copies: int, seed: int = 7) -> list[Any]:
    """The query with each function remapped into a random replayed copy, so that its
    candidates lie all over a replayed index (the worst case for reads from disk), instead of
    all in copy 0 next to each other."""
    import dataclasses

    rng = np.random.default_rng(seed)
    out = []
    for f, c in zip(query, rng.integers(0, max(1, copies), size=len(query)).tolist(),
                    strict=True):
        cs, ss, ex = _remap(f.code_sig, f.sem_sig, np.int64(f.exact_hash), int(c))
        out.append(dataclasses.replace(f, code_sig=cs, sem_sig=ss, exact_hash=int(ex)))
    return out


def _replay(base: Any, n: int) -> Any:
    """SketchRows of ``n`` rows: copies of ``base`` remapped per copy (see module docstring)."""
    from kinship.match.score import SketchRows

    copies = -(-n // len(base))
    code, sem, ex, ni, ns = [], [], [], [], []
    for c in range(copies):
        cs, ss, ex_c = _remap(base.code_sig, base.sem_sig, base.exact_hash, c)
        code.append(cs)
        sem.append(ss)
        ex.append(ex_c)
        ni.append(base.n_instructions)
        ns.append(base.n_sem_tokens)
    return SketchRows(np.concatenate(code)[:n], np.concatenate(sem)[:n],
                      np.concatenate(ex)[:n], np.concatenate(ni)[:n], np.concatenate(ns)[:n])


def run_scale(feature_sets: Sequence[tuple[Any, Sequence[Any]]], *, quick: bool,
              progress: ProgressFn | None = None, repeats: int = 3,
              sizes: Sequence[int] | None = None) -> list[ScalePoint]:
    """``feature_sets``: (SampleRecord, features) of analysed real binaries."""
    from kinship.index.reference import ReferenceIndex, SampleLabel
    from kinship.match.aggregate import attribute
    from kinship.match.score import SketchRows

    feats = [f for _, fs in feature_sets for f in fs]
    base = SketchRows.from_features(feats)
    # Query: the functions of the largest real samples, up to QUERY_FUNCTIONS.
    query: list[Any] = []
    for _, fs in sorted(feature_sets, key=lambda p: -len(p[1])):
        if len(query) >= QUERY_FUNCTIONS:
            break
        query += list(fs)
    query = query[:QUERY_FUNCTIONS]
    out = []
    for n in sizes or (QUICK_SIZES if quick else FULL_SIZES):
        rss0 = _rss_mib()
        t0 = time.perf_counter()
        rows = _replay(base, n)
        n_samples = max(1, n // 500)  # about 500 functions per reference sample
        sid = (np.arange(n, dtype=np.int64) * n_samples) // n
        labels = {i: SampleLabel(f"{i:064x}", f"s{i}", f"fam{i % 997}", None, False)
                  for i in range(n_samples)}
        index = ReferenceIndex(
            function_id=np.arange(n, dtype=np.int64), sample_id=sid,
            n_instructions=rows.n_instructions, exact_hash=rows.exact_hash,
            code_sig=rows.code_sig, sem_sig=rows.sem_sig, samples=labels,
            n_sem_tokens=rows.n_sem_tokens, function_va=np.zeros(n, dtype=np.int64),
        )
        build = time.perf_counter() - t0
        del rows  # the index keeps its own (16-bit) sketches
        growth = _rss_mib() - rss0
        times = []
        for _ in range(repeats):
            t1 = time.perf_counter()
            attribute(query, index, sample_sha256="q")
            times.append(time.perf_counter() - t1)
        mq, mrss, manon = _mmap_query(index, query, repeats)
        sq = srss = 0.0
        if n > len(feats):  # replayed: also the worst case, candidates spread over all copies
            spread = spread_query(query, min(-(-n // len(feats)), n // len(feats)))
            sq, srss, _ = _mmap_query(index, spread, repeats)
        p = ScalePoint(n, min(n, len(feats)), max(0, n - len(feats)), round(build, 2),
                       round(index.nbytes / 2**20, 1), round(growth, 1),
                       round(float(np.median(times)), 3), len(query), round(_peak_rss_mib(), 1),
                       round(mq, 3), round(mrss, 1), round(manon, 1), round(sq, 3),
                       round(srss, 1))
        out.append(p)
        if progress:
            progress(f"  scale: {p}")
        del index
    return out
