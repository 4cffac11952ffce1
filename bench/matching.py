"""Function matching, Marcelli et al. (USENIX Security 2022) protocol: kinship vs MCRIT.

For each query function, rank its true counterpart (same normalised symbol name in the same
project, in another binary that differs as the task says) among a pool of 1 positive + 99
negatives, and of 1 + 9,999 negatives (capped at what the task's binaries hold; the JSON
records the real pool size). Metrics: Recall@1, MRR@10 and AUC on balanced pairs (one positive
and one random negative pair per query).

Tasks (pairs of binaries of one project):

* XV cross-version: same toolchain/opt/arch/format, different version;
* XO cross-optimisation: same compiler/version/arch/format, different -O level;
* XC cross-compiler: gcc vs clang, same version/opt/arch/format;
* XB x86 <-> x64: same compiler/version/opt/format;
* XF ELF <-> PE: same version/arch/opt (gcc/clang ELF vs mingw PE; wine 5.0 ELF vs 8/10 PE);
* XM mixed: any two different binaries of the project.

Dataset rules: functions with >= 5 basic blocks (kinship's CFG), labelled in the ground truth
(CRT/startup labels left out, :func:`bench.gt.is_runtime_label`), found by *both* tools at the
labelled address (so both rank the same queries; coverage is reported); names occurring twice in
a binary are dropped; byte-identical positives (equal position-independent hash) are dropped
and byte-identical duplicates of the query are removed from its pool.

Ties are broken at random *in expectation*: with ``g`` negatives scoring above the positive and
``t`` equal to it, the positive's rank is uniform on ``g+1 .. g+t+1``; Recall@1 and MRR@10 are
the exact expectations (:func:`expected_rank_metrics`). So a tool that gives everything the same
score gets chance level, not a perfect Recall@1.

Each tool ranks with its full pair-scoring function, not its LSH candidate stage: kinship
``match.score.score_pairs``; MCRIT PicHash equality else MinHash slot agreement
(:mod:`bench.mcrit_peer`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.gt import (
    DEFAULT_CACHE,
    CorpusEntry,
    is_runtime_label,
    load_ground_truth,
    stripped_copy,
)

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
ProgressFn = Callable[[str], None]

TASKS = ("XV", "XO", "XC", "XB", "XF", "XM")
POOL_SIZES = (100, 10_000)
MIN_BLOCKS = 5  # Marcelli 2022: functions with at least 5 basic blocks
MRR_CUTOFF = 10
# Families kept out of all tuning (chosen and recorded 2026-11-26, before any tuning run):
# reported separately by every benchmark. Debian expat/jansson (ELF, dynsym), PyPI simplejson
# (manylinux + MSVC), wine winhttp/secur32 (MinGW PE + ELF).
HOLDOUT_FAMILIES = ("expat", "jansson", "py-simplejson", "wine-winhttp", "wine-secur32")

_LUA_VARIANT = re.compile(r"^(gcc|clang|mingw)-(x86|x64)-(O\d|Os)$")
_CLONE_SUFFIX = re.compile(r"\.(isra|constprop|part|cold|lto_priv|localalias)(\.\d+)*")


# ---- metrics (pure functions; tests/test_bench_metrics.py) -----------------------------------
def expected_rank_metrics(pos: float, negatives: F64, cutoff: int = MRR_CUTOFF
                          ) -> tuple[float, float]:
    """(Recall@1, reciprocal rank @cutoff) of the positive, expected over random tie-breaking."""
    greater = int(np.count_nonzero(negatives > pos))
    ties = int(np.count_nonzero(negatives == pos))
    ranks = np.arange(greater + 1, greater + ties + 2, dtype=np.float64)
    recall1 = 1.0 / (ties + 1) if greater == 0 else 0.0
    rr = float(np.where(ranks <= cutoff, 1.0 / ranks, 0.0).mean())
    return recall1, rr


def auc(pos: Sequence[float] | F64, neg: Sequence[float] | F64) -> float:
    """Area under the ROC curve = P(score(pos) > score(neg)) + 0.5 P(equal) (Mann-Whitney)."""
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    if len(p) == 0 or len(n) == 0:
        return float("nan")
    n_sorted = np.sort(n)
    below = np.searchsorted(n_sorted, p, side="left")
    not_above = np.searchsorted(n_sorted, p, side="right")
    return float((below + 0.5 * (not_above - below)).sum() / (len(p) * len(n)))


def normalise_name(name: str) -> str:
    """``foo@@VER`` / ``_foo@12`` / ``foo.isra.0`` -> ``foo`` (stdcall ``_`` dropped)."""
    n = name.split("@@")[0]
    n = n.split("@")[0] if re.search(r"@\d+$", n) else n
    n = _CLONE_SUFFIX.sub("", n)
    if n.startswith("_") and not n.startswith("__") and re.search(r"@\d+$", name):
        n = n[1:]
    return n


# ---- corpus ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BinaryMeta:
    """What the task predicates look at."""

    project: str  # lua builds of 5.1..5.4 are one project; else family/component
    version: str
    compiler: str  # gcc | clang | mingw | msvc | ...
    opt: str  # O0..O3/Os, "?" where unknown
    arch: str
    fmt: str


def binary_meta(e: CorpusEntry) -> BinaryMeta:
    m = _LUA_VARIANT.match(e.variant)
    if e.family.startswith("lua"):
        project = "lua"
        version = e.family  # lua5.1 .. lua5.4 are the versions of one code base
    else:
        project = f"{e.family}/{e.component.split('.')[0]}"
        version = e.version
    if m:
        return BinaryMeta(project, version, m.group(1), m.group(3), e.arch, e.fmt)
    compiler = e.variant.split("-")[0]
    if e.family.startswith("wine") and e.fmt == "ELF":
        compiler = "gcc"
    return BinaryMeta(project, version, compiler, "?", e.arch, e.fmt)


def task_of(a: BinaryMeta, b: BinaryMeta) -> list[str]:
    """Tasks the binary pair (a, b) belongs to (XM for every pair of one project)."""
    if a.project != b.project:
        return []
    out = ["XM"]
    same = {
        "version": a.version == b.version,
        "compiler": a.compiler == b.compiler,
        "opt": a.opt == b.opt,
        "arch": a.arch == b.arch,
        "fmt": a.fmt == b.fmt,
    }
    diff = [k for k, v in same.items() if not v]
    if diff == ["version"]:
        out.append("XV")
    if diff == ["opt"]:
        out.append("XO")
    if diff == ["compiler"] and {a.compiler, b.compiler} == {"gcc", "clang"}:
        out.append("XC")
    if diff == ["arch"]:
        out.append("XB")
    if a.fmt != b.fmt and same["version"] and same["arch"] and same["opt"]:
        out.append("XF")
    return out


def select_entries(entries: Sequence[CorpusEntry], quick: bool) -> list[CorpusEntry]:
    """Binaries of the matching benchmark (labels that list the scored functions)."""
    out = []
    for e in entries:
        if e.gt_source == "none" or e.n_funcs == 0:
            continue
        if e.family.startswith("lua"):
            if _LUA_VARIANT.match(e.variant) and (not quick or e.family in ("lua5.3", "lua5.4")):
                out.append(e)
            continue
        if quick:
            continue
        if e.family == "py-pycryptodome" or e.gt_source == "exports":
            continue  # 856 tiny modules / MSVC exports (one label each): dataset noise
        out.append(e)
    return out


# ---- analysis ----------------------------------------------------------------------------------
@dataclass
class Analysed:
    entry: CorpusEntry
    meta: BinaryMeta
    names: dict[int, str]  # VA -> normalised label
    features: dict[int, Any]  # VA -> kinship FunctionFeatures
    mcrit: Any | None  # bench.mcrit_peer.McritFunctions
    kinship_cpu_s: float
    n_instructions: int


def analyse_entries(
    dev: Path, entries: Sequence[CorpusEntry], *, peer: Any | None,
    cache_dir: Path = DEFAULT_CACHE, progress: ProgressFn | None = None,
) -> list[Analysed]:
    """kinship (and, with ``peer``, MCRIT) on the stripped copy of every entry."""
    from kinship.pipeline import SampleInput, analyse

    out: list[Analysed] = []
    for k, e in enumerate(entries):
        path = stripped_copy(dev, e, cache_dir)
        gt = load_ground_truth(dev, e)
        names = {va: normalise_name(n) for va, n in gt.names.items() if not is_runtime_label(n)}
        c0 = time.process_time()
        try:
            s = analyse(SampleInput(name=str(path), path=path))
        except Exception as exc:
            logger.warning("kinship failed on %s: %s", e.path, exc)
            continue
        cpu = time.process_time() - c0
        mc = None
        if peer is not None:
            try:
                mc = peer.analyse(path, e.sha256)
            except Exception as exc:
                logger.warning("MCRIT failed on %s: %s", e.path, exc)
                continue
        out.append(Analysed(e, binary_meta(e), names, {f.va: f for f in s.features}, mc, cpu,
                            s.record.n_instructions))
        if progress and (k % 10 == 0 or k == len(entries) - 1):
            progress(f"  analysed {k + 1}/{len(entries)} {e.path}")
    return out


@dataclass
class Dataset:
    """All eligible functions, row-aligned for both tools."""

    bin_idx: npt.NDArray[np.int64]
    key: list[str]  # project + "::" + name
    exact: npt.NDArray[np.int64]
    k_rows: Any  # kinship SketchRows
    m_sig: npt.NDArray[np.uint8] | None
    m_pic: npt.NDArray[np.uint64] | None
    coverage: dict[str, int] = field(default_factory=dict)


def build_dataset(bins: Sequence[Analysed], with_peer: bool) -> Dataset:
    from kinship.match.score import SketchRows

    bidx: list[int] = []
    keys: list[str] = []
    feats: list[Any] = []
    msig: list[npt.NDArray[np.uint8]] = []
    mpic: list[int] = []
    cov = {"labelled": 0, "kinship_found": 0, "both_found": 0}
    for i, b in enumerate(bins):
        counts: dict[str, int] = {}
        for n in b.names.values():
            counts[n] = counts.get(n, 0) + 1
        mrow: dict[int, int] = {}
        if with_peer and b.mcrit is not None:
            mrow = {int(v): r for r, v in enumerate(b.mcrit.va.tolist())}
        for va, name in b.names.items():
            if counts[name] != 1:
                continue
            f = b.features.get(va)
            if f is None or f.n_blocks < MIN_BLOCKS:
                if f is None:
                    cov["labelled"] += 1
                continue
            cov["labelled"] += 1
            cov["kinship_found"] += 1
            if with_peer:
                r = mrow.get(va)
                if r is None:
                    continue
                assert b.mcrit is not None  # with_peer: every binary has MCRIT output
                msig.append(b.mcrit.minhash[r])
                mpic.append(int(b.mcrit.pichash[r]))
            cov["both_found"] += 1
            bidx.append(i)
            keys.append(f"{b.meta.project}::{name}")
            feats.append(f)
    rows = SketchRows.from_features(feats)
    return Dataset(
        np.array(bidx, dtype=np.int64), keys, rows.exact_hash.copy(), rows,
        np.stack(msig) if msig else None,
        np.array(mpic, dtype=np.uint64) if mpic else None, cov,
    )


# ---- evaluation --------------------------------------------------------------------------------
@dataclass
class TaskResult:
    task: str
    n_queries: int = 0
    n_binary_pairs: int = 0
    pool_sizes: dict[str, float] = field(default_factory=dict)  # nominal -> mean real size
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # tool -> metric -> value


def _positives(ds: Dataset, bins: Sequence[Analysed], task: str,
               holdout: bool) -> tuple[list[tuple[int, int]], int, npt.NDArray[np.int64]]:
    """(query row, positive row) pairs, number of binary pairs, rows of the task's binaries."""
    by_bin: dict[int, dict[str, int]] = {}
    for r, (b, k) in enumerate(zip(ds.bin_idx.tolist(), ds.key, strict=True)):
        by_bin.setdefault(b, {})[k] = r
    in_holdout = [b.entry.family in HOLDOUT_FAMILIES for b in bins]
    pairs: list[tuple[int, int]] = []
    used_bins: set[int] = set()
    n_bp = 0
    ids = sorted(by_bin)
    for ia in ids:
        if in_holdout[ia] != holdout:
            continue
        for ib in ids:
            if ib == ia or task not in task_of(bins[ia].meta, bins[ib].meta):
                continue
            n_bp += 1
            used_bins.update((ia, ib))
            rb = by_bin[ib]
            for k, ra in by_bin[ia].items():
                pb = rb.get(k)
                if pb is not None and ds.exact[ra] != ds.exact[pb]:
                    pairs.append((ra, pb))
    rows = np.flatnonzero(np.isin(ds.bin_idx, np.array(sorted(used_bins), dtype=np.int64)))
    return pairs, n_bp, rows


def evaluate_task(ds: Dataset, bins: Sequence[Analysed], task: str, *, n_queries: int,
                  seed: int = 1, holdout: bool = False, config: Any | None = None
                  ) -> TaskResult:
    """Recall@1 / MRR@10 per pool size and AUC for both tools on one task."""
    from bench.mcrit_peer import mcrit_scores
    from kinship.match.score import score_pairs

    res = TaskResult(task)
    pairs, res.n_binary_pairs, rows = _positives(ds, bins, task, holdout)
    if not pairs:
        return res
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=min(n_queries, len(pairs)), replace=False)
    keys = np.array(ds.key)
    tools = ["kinship"] + (["mcrit"] if ds.m_sig is not None else [])
    acc: dict[str, dict[str, list[float]]] = {t: {} for t in tools}
    auc_pos: dict[str, list[float]] = {t: [] for t in tools}
    auc_neg: dict[str, list[float]] = {t: [] for t in tools}
    real_sizes: dict[int, list[int]] = {p: [] for p in POOL_SIZES}
    for qi in pick.tolist():
        q, p = pairs[qi]
        ok = (keys[rows] != keys[q]) & (ds.exact[rows] != ds.exact[q])
        negs_all = rows[ok]
        order = rng.permutation(len(negs_all))
        for size in POOL_SIZES:
            negs = negs_all[order[: size - 1]]
            real_sizes[size].append(len(negs) + 1)
            cand = np.r_[p, negs]
            scores: dict[str, F64] = {}
            qrows = ds.k_rows.take(np.full(len(cand), q, dtype=np.int64))
            scores["kinship"] = score_pairs(qrows, ds.k_rows.take(cand), config).score
            if ds.m_sig is not None and ds.m_pic is not None:
                scores["mcrit"] = mcrit_scores(ds.m_sig[q], int(ds.m_pic[q]), ds.m_sig[cand],
                                               ds.m_pic[cand])
            for t, s in scores.items():
                r1, rr = expected_rank_metrics(float(s[0]), s[1:])
                acc[t].setdefault(f"recall@1_{size}", []).append(r1)
                acc[t].setdefault(f"mrr@10_{size}", []).append(rr)
                if size == POOL_SIZES[0] and len(s) > 1:
                    auc_pos[t].append(float(s[0]))
                    auc_neg[t].append(float(s[1]))  # one random negative: balanced pairs
    res.n_queries = len(pick)
    res.pool_sizes = {str(k): round(float(np.mean(v)), 1) for k, v in real_sizes.items()}
    for t in tools:
        res.metrics[t] = {k: round(float(np.mean(v)), 4) for k, v in acc[t].items()}
        res.metrics[t]["auc"] = round(auc(auc_pos[t], auc_neg[t]), 4)
    return res


@dataclass
class MatchingResult:
    tasks: list[TaskResult]
    holdout: list[TaskResult]
    n_binaries: int
    n_functions: int
    coverage: dict[str, int]
    speed: dict[str, dict[str, float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        def one(t: TaskResult) -> dict[str, Any]:
            return {"task": t.task, "n_queries": t.n_queries, "n_binary_pairs": t.n_binary_pairs,
                    "pool_sizes": t.pool_sizes, "metrics": t.metrics}

        return {
            "tasks": [one(t) for t in self.tasks],
            "holdout": [one(t) for t in self.holdout],
            "n_binaries": self.n_binaries,
            "n_functions": self.n_functions,
            "coverage": self.coverage,
            "speed": self.speed,
            "seconds": round(self.seconds, 1),
        }


def speed_of(bins: Sequence[Analysed]) -> dict[str, dict[str, float]]:
    """Ingest throughput per core (CPU seconds; MCRIT only for binaries it analysed now)."""
    k_cpu = sum(b.kinship_cpu_s for b in bins)
    k_fn = sum(len(b.features) for b in bins)
    k_ins = sum(b.n_instructions for b in bins)
    out = {"kinship": {"cpu_s": round(k_cpu, 2), "functions_per_cpu_s": round(k_fn / k_cpu, 1)
                       if k_cpu else 0.0,
                       "instructions_per_cpu_s": round(k_ins / k_cpu, 1) if k_cpu else 0.0}}
    fresh = [(b, b.mcrit) for b in bins if b.mcrit is not None and b.mcrit.cpu_seconds > 0]
    if fresh:
        m_cpu = sum(m.cpu_seconds for _, m in fresh)
        m_fn = sum(len(m.va) for _, m in fresh)
        kc = sum(b.kinship_cpu_s for b, _ in fresh)
        out["mcrit"] = {"cpu_s": round(m_cpu, 2), "functions_per_cpu_s": round(m_fn / m_cpu, 1),
                        "binaries": len(fresh),
                        "kinship_cpu_s_same_binaries": round(kc, 2)}
    return out


def run_matching(dev: Path, entries: Sequence[CorpusEntry], *, quick: bool, with_peer: bool,
                 cache_dir: Path = DEFAULT_CACHE, progress: ProgressFn | None = None,
                 config: Any | None = None, bins: Sequence[Analysed] | None = None
                 ) -> tuple[MatchingResult, list[Analysed]]:
    t0 = time.perf_counter()
    if bins is None:
        peer = None
        if with_peer:
            from bench.mcrit_peer import McritPeer

            peer = McritPeer(cache_dir)
        chosen = select_entries(entries, quick)
        if progress:
            progress(f"matching: analysing {len(chosen)} binaries")
        bins = analyse_entries(dev, chosen, peer=peer, cache_dir=cache_dir, progress=progress)
    ds = build_dataset(bins, with_peer)
    nq = 200 if quick else 1000
    tasks = [evaluate_task(ds, bins, t, n_queries=nq, config=config) for t in TASKS]
    hold = [evaluate_task(ds, bins, t, n_queries=nq, holdout=True, config=config)
            for t in TASKS]
    hold = [h for h in hold if h.n_queries]
    res = MatchingResult(tasks, hold, len(bins), len(ds.key), ds.coverage, speed_of(bins),
                         time.perf_counter() - t0)
    return res, list(bins)
