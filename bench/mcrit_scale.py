"""Query latency and peak memory vs index size, MCRIT's own query path vs kinship, same binaries.

``python -m bench.mcrit_scale [--sizes 10000,100000] [--repeats N]`` writes
``bench/results/<date>-mcrit-scale.json`` and prints a markdown table.

MCRIT side: MCRIT 1.9.0's real in-process classes, as its index server runs them.
``mcrit.storage.MemoryStorage`` (its ``pymongo`` import, needed only by the MongoDB backend,
is replaced by an empty stub module, as in ``bench.mcrit_peer.reference_scores``) is filled with
the SMDA reports of real corpus binaries (``MemoryStorage.addSmdaReport`` + MCRIT's
``MinHasher`` minhashes of every function + ``addMinHashes``: what ``Worker`` does for a
submitted report, without its process pool), then one query report goes through
``MatcherQuery(worker).getMatchesForSmdaReport`` (what ``Worker.getMatchesForSmdaReport`` does
for ``/query``): temporary entries for the query, its minhashes, PicHash + band-hash candidate
lookup, scoring and MCRIT's match report. The query time includes minhashing the query's
functions (part of MCRIT's query path); ``query_match_s`` leaves that part out (it keeps
MCRIT's temporary query entries, whose ``getFunctionsBySampleId`` deep-copies them, the
candidate lookup, scoring and the report). MCRIT's query can be faster on a larger index: a
profile of the 10^4 point spends most of the non-minhash time in object creation and deep copies,
where CPython's full collections run more often while few objects are long-lived (its gen-2
trigger is 25% of the long-lived objects); this is MCRIT as it runs, not corrected.

kinship side: ``ReferenceIndex.from_features`` of ``kinship.pipeline.analyse`` features of the
very same binaries (in RAM), then ``attribute`` of the query's features.

Workload. Index: real stripped corpus binaries (``bench.gt.stripped_copy``), first the other
builds of the query's families (so the query has true matches at every size), then the rest by
SHA-256, held-out families (``bench.matching.HOLDOUT_FAMILIES``) left out, added whole until
the SMDA function count reaches the size (so sizes are approximate; the JSON has the exact
counts). Query: no corpus binary has 5,000 functions (the largest, libmbedcrypto x86, has 2,422
SMDA functions), so, as ``bench/scale.py`` does for kinship, the query joins the largest real
samples: the largest ELF x86 build of each of the families with the largest such builds, until
5,000 SMDA functions (three binaries, 5,770 SMDA functions; :func:`merge_xcfg` makes them one
SMDA report for MCRIT, 5,658 functions: 112 share an offset with an earlier
binary's function). kinship queries the features of the same three binaries, whole (3,814
functions: kinship keeps fewer functions than SMDA finds), so both tools attribute the same
code. The query binaries are not in the index.

Each size and tool runs in a fresh child process (``python -m bench.mcrit_scale --child``):
ingest/build time, RSS after ingest with the inputs freed (``VmRSS``), the query wall time
(median of ``repeats``), peak RSS over the whole child (``VmHWM``: ingest included) and peak RSS
during the query only (``VmHWM`` reset through ``/proc/self/clear_refs`` after ingest: the
index held in RAM plus what the query needs). Bytes per function: kinship's
``ReferenceIndex.nbytes``; MCRIT's ``MemoryStorage`` is Python objects and cannot tell its size,
so its bytes per function are estimated from the child's RSS growth over ingest (inputs freed,
``gc.collect()`` run) divided by the functions stored.

SMDA reports are cached as gzipped JSON under ``<cache>/mcrit/smda/`` (SMDA is deterministic);
MCRIT's minhashes are recomputed at every ingest (that is MCRIT's ingest work).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (10_000, 100_000)
QUERY_FUNCTIONS = 5000


# ---- pure helpers (tested) ---------------------------------------------------------------------
def select_prefix(counts: Sequence[int], target: int) -> int:
    """Fewest leading items whose counts sum to at least ``target`` (all when they never do)."""
    total = 0
    for k, c in enumerate(counts):
        total += c
        if total >= target:
            return k + 1
    return len(counts)


def merge_xcfg(xcfgs: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """One SMDA ``xcfg`` (function offset -> function dict) from several reports, in order, at
    most ``limit`` functions. A function whose offset is already taken (the reports come from
    different binaries mapped at the same base) is skipped: SMDA keys functions by offset."""
    out: dict[str, Any] = {}
    for xcfg in xcfgs:
        for off, fn in xcfg.items():
            if len(out) >= limit:
                return out
            if off not in out:
                out[off] = fn
    return out


def ratio(a: float, b: float) -> float | None:
    """``a / b`` rounded, None when ``b`` is 0."""
    return round(a / b, 2) if b else None


def markdown_table(points: Sequence[Mapping[str, Any]]) -> str:
    head = ("| functions (MCRIT / kinship) | MCRIT ingest s "
            "| MCRIT query s (without query minhashing) | MCRIT peak RSS MiB "
            "| kinship build s | kinship query s | kinship peak RSS MiB "
            "| query time MCRIT/kinship (without minhashing) | peak RSS MCRIT/kinship |"
            "\n|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for p in points:
        m, k = p["mcrit"], p["kinship"]
        rows.append(
            f"| {m['n_functions']:,} / {k['n_functions']:,} | {m['ingest_s']} "
            f"| {m['query_s']} ({m['query_match_s']}) | {m['peak_rss_mib']} | {k['build_s']} "
            f"| {k['query_s']} | {k['peak_rss_mib']} "
            f"| {p['ratio_query_s']} ({p['ratio_query_match_s']}) | {p['ratio_peak_rss']} |")
    return "\n".join(rows)


# ---- children ----------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _stub_pymongo() -> None:
    """``mcrit.config.McritConfig`` -> StorageFactory -> MongoDbStorage imports ``pymongo``
    (not installed, not used by MemoryStorage): an empty stand-in, as bench.mcrit_peer."""
    import types

    if "pymongo" not in sys.modules:
        stub = types.ModuleType("pymongo")
        stub.MongoClient = stub.UpdateOne = object  # type: ignore[attr-defined]
        stub.__path__ = []
        sys.modules["pymongo"] = stub
        sys.modules["pymongo.errors"] = types.ModuleType("pymongo.errors")


def _load_json_gz(path: Path) -> Any:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _child_mcrit(work: Path, repeats: int) -> dict[str, Any]:
    import gc

    _stub_pymongo()
    for name in ("mcrit", "smda"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from mcrit.config.McritConfig import McritConfig  # type: ignore[import-untyped]
    from mcrit.matchers.MatcherQuery import MatcherQuery  # type: ignore[import-untyped]
    from mcrit.storage.MemoryStorage import MemoryStorage  # type: ignore[import-untyped]
    from smda.common.SmdaReport import SmdaReport

    from bench.mcrit_peer import in_process_worker

    for name in ("mcrit", "smda"):
        logging.getLogger(name).setLevel(logging.ERROR)
    spec = json.loads((work / "mcrit.json").read_text())
    config = McritConfig()
    config.MINHASH_CONFIG.MINHASH_POOL_INDEXING = False
    config.MINHASH_CONFIG.MINHASH_POOL_MATCHING = False
    storage = MemoryStorage(config)
    minhash_s = [0.0]

    worker = in_process_worker(config, storage, minhash_s)
    gc.collect()
    rss0 = _status_kib("VmRSS:")
    load_s = ingest_s = 0.0
    n_functions = 0
    for item in spec["index"]:
        t = time.perf_counter()
        report = SmdaReport.fromDict(_load_json_gz(Path(item["report"])))
        assert report is not None
        report.family, report.is_library, report.version = item["family"], False, item["version"]
        load_s += time.perf_counter() - t
        t = time.perf_counter()
        entry = storage.addSmdaReport(report)
        if entry is None:  # same stripped file as an earlier sample (MCRIT skips it)
            continue
        storage.addMinHashes(worker.calculateMinHashes(
            storage.getFunctionsBySampleId(entry.sample_id)))
        ingest_s += time.perf_counter() - t
        n_functions += len(storage.getFunctionIdsBySampleId(entry.sample_id) or [])
        del report
    ingest_minhash_s = minhash_s[0]
    gc.collect()
    rss_ingest = _status_kib("VmRSS:")
    peak_ingest = _status_kib("VmHWM:")
    query_dict = _load_json_gz(Path(spec["query"]))
    reset = _reset_peak()
    times, match_times = [], []
    n_sample_matches = 0
    for _ in range(repeats):
        report = SmdaReport.fromDict(query_dict)
        minhash_s[0] = 0.0
        t = time.perf_counter()
        result = MatcherQuery(worker).getMatchesForSmdaReport(report)
        times.append(time.perf_counter() - t)
        match_times.append(times[-1] - minhash_s[0])
        n_sample_matches = len(result["matches"]["samples"])
        del result, report
        storage._query_samples.clear()  # drop the temporary query entries between repeats
        storage._query_functions.clear()
        gc.collect()
    times.sort()
    match_times.sort()
    return {
        "n_functions": n_functions, "n_samples": len(spec["index"]),
        "n_query_functions": len(query_dict["xcfg"]),
        "report_load_s": round(load_s, 2), "ingest_s": round(ingest_s, 2),
        "ingest_minhash_s": round(ingest_minhash_s, 2),
        "rss_baseline_mib": round(rss0 / 1024, 1),
        "rss_after_ingest_mib": round(rss_ingest / 1024, 1),
        "rss_growth_mib": round((rss_ingest - rss0) / 1024, 1),
        "bytes_per_function_est": round((rss_ingest - rss0) * 1024 / max(1, n_functions)),
        "query_s": round(times[len(times) // 2], 3),
        "query_match_s": round(match_times[len(match_times) // 2], 3),
        "query_samples_matched": n_sample_matches,
        "peak_rss_mib": round(max(peak_ingest, _status_kib("VmHWM:")) / 1024, 1),
        "query_peak_rss_mib": round(_status_kib("VmHWM:") / 1024, 1) if reset else None,
    }


def _child_kinship(work: Path, repeats: int) -> dict[str, Any]:
    import gc
    import pickle

    from kinship.index.reference import ReferenceIndex
    from kinship.match.aggregate import attribute

    gc.collect()
    rss0 = _status_kib("VmRSS:")
    t = time.perf_counter()
    samples = pickle.loads((work / "kinship-index.pkl").read_bytes())
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    index = ReferenceIndex.from_features(samples)
    build_s = time.perf_counter() - t
    n_functions = sum(len(fs) for _, fs in samples)
    del samples
    gc.collect()
    rss_ingest = _status_kib("VmRSS:")
    peak_ingest = _status_kib("VmHWM:")
    query = pickle.loads((work / "kinship-query.pkl").read_bytes())
    reset = _reset_peak()
    times = []
    n_families = 0
    for _ in range(repeats):
        t = time.perf_counter()
        r = attribute(query, index, sample_sha256="q")
        times.append(time.perf_counter() - t)
        n_families = len(r.families)
    times.sort()
    return {
        "n_functions": n_functions, "n_query_functions": len(query),
        "load_s": round(load_s, 2), "build_s": round(build_s, 2),
        "index_bytes_per_function": round(index.nbytes / max(1, n_functions)),
        "rss_baseline_mib": round(rss0 / 1024, 1),
        "rss_after_ingest_mib": round(rss_ingest / 1024, 1),
        "rss_growth_mib": round((rss_ingest - rss0) / 1024, 1),
        "query_s": round(times[len(times) // 2], 3), "query_families_matched": n_families,
        "peak_rss_mib": round(max(peak_ingest, _status_kib("VmHWM:")) / 1024, 1),
        "query_peak_rss_mib": round(_status_kib("VmHWM:") / 1024, 1) if reset else None,
    }


def _run_child(tool: str, work: Path, repeats: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.mcrit_scale", "--child", tool, str(work),
                          "--repeats", str(repeats)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---- preparation (parent) ----------------------------------------------------------------------
def _smda_job(args: tuple[str, str, str]) -> tuple[str, float]:
    """Disassemble one binary with SMDA and cache its report (worker process)."""
    path, out, _ = args
    from smda.Disassembler import Disassembler
    from smda.SmdaConfig import SmdaConfig

    logging.getLogger("smda").setLevel(logging.ERROR)
    c0 = time.process_time()
    report = Disassembler(SmdaConfig()).disassembleFile(path)  # type: ignore[no-untyped-call]
    tmp = Path(out + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as f:
        json.dump(report.toDict(), f)
    tmp.rename(out)
    return out, time.process_time() - c0


def smda_reports(jobs: Sequence[tuple[Path, Path]], workers: int = 2) -> float:
    """Cache the SMDA report of each (binary, report path) not cached yet; CPU seconds spent."""
    import multiprocessing

    todo = [(str(p), str(o), "") for p, o in jobs if not o.is_file()]
    if not todo:
        return 0.0
    logger.warning("SMDA: disassembling %d binaries (%d workers)", len(todo), workers)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        cpu = 0.0
        for k, (_, c) in enumerate(pool.imap_unordered(_smda_job, todo)):
            cpu += c
            if k % 20 == 0:
                logger.warning("SMDA: %d/%d", k + 1, len(todo))
    return cpu


def _counts(cache: Path, version: str) -> dict[str, int]:
    import numpy as np

    out = {}
    for f in (cache / "mcrit").glob(f"*-{version}-all.npz"):
        out[f.name.split("-")[0]] = len(np.load(f)["va"])
    return out


def plan(sizes: Sequence[int], cache: Path) -> dict[str, Any]:
    """The query binaries and the index order (module docstring)."""
    from bench.gt import ensure_corpus, load_manifest
    from bench.matching import HOLDOUT_FAMILIES
    from bench.mcrit_peer import available

    dev = ensure_corpus()
    entries = load_manifest(dev)
    counts = _counts(cache, available() or "?")
    known = [e for e in entries if e.sha256 in counts and e.family not in HOLDOUT_FAMILIES]
    best: dict[str, Any] = {}
    for e in known:
        if e.fmt == "ELF" and e.arch == "x86" and (
                e.family not in best or counts[e.sha256] > counts[best[e.family].sha256]):
            best[e.family] = e
    ranked = sorted(best.values(), key=lambda e: -counts[e.sha256])
    query = ranked[:select_prefix([counts[e.sha256] for e in ranked], QUERY_FUNCTIONS)]
    qsha = {e.sha256 for e in query}
    qfam = {e.family for e in query}
    rest = [e for e in known if e.sha256 not in qsha]
    order = (sorted((e for e in rest if e.family in qfam), key=lambda e: e.sha256)
             + sorted((e for e in rest if e.family not in qfam), key=lambda e: e.sha256))
    n_max = select_prefix([counts[e.sha256] for e in order], max(sizes))
    return {"dev": dev, "query": query, "order": order[:n_max], "counts": counts,
            "available": sum(counts[e.sha256] for e in order)}


def run(sizes: Sequence[int], repeats: int, cache: Path) -> dict[str, Any]:
    import pickle
    import tempfile

    from bench.gt import stripped_copy
    from kinship.pipeline import SampleInput, analyse

    t_all = time.perf_counter()
    p = plan(sizes, cache)
    dev, query, order, counts = p["dev"], p["query"], p["order"], p["counts"]
    skipped = [{"target_functions": n, "reason": (
        f"the corpus binaries with SMDA function counts cached hold {p['available']:,} real "
        "SMDA functions (held-out families and the query left out); MCRIT's MemoryStorage "
        "needs real SMDA reports, replaying signatures as bench/scale.py does would need "
        "synthetic FunctionEntry objects, and MCRIT's RSS per stored function measured at the "
        "largest size run (mcrit_rss_estimate_gib) puts this size beyond a 24 GiB machine")}
        for n in sizes if n > p["available"]]
    sizes = [n for n in sizes if n <= p["available"]]
    if skipped:
        order = order[:select_prefix([counts[e.sha256] for e in order], max(sizes, default=0))]
    smda_dir = cache / "mcrit" / "smda"
    smda_dir.mkdir(parents=True, exist_ok=True)
    import smda

    smda_version = getattr(smda, "__version__", None) or __import__(
        "importlib.metadata").metadata.version("smda")

    def report_path(sha: str) -> Path:
        return smda_dir / f"{sha}-smda{smda_version}.json.gz"

    binaries = list(query) + list(order)
    paths = {e.sha256: stripped_copy(dev, e, cache) for e in binaries}
    smda_cpu = smda_reports([(paths[e.sha256], report_path(e.sha256)) for e in binaries])
    # kinship features of the same binaries (in this process, not timed as part of the query)
    feats: dict[str, Any] = {}
    for e in binaries:
        s = analyse(SampleInput(name=str(paths[e.sha256]), path=paths[e.sha256]))
        feats[e.sha256] = (dataclasses.replace(s.record, family=e.family, version=e.version),
                           list(s.features))
    kq = [f for e in query for f in feats[e.sha256][1]]
    qx = merge_xcfg([_load_json_gz(report_path(e.sha256))["xcfg"] for e in query], sys.maxsize)
    qreport = _load_json_gz(report_path(query[0].sha256))
    qreport["xcfg"] = qx
    qreport["sha256"] = hashlib.sha256("".join(e.sha256 for e in query).encode()).hexdigest()
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kinship-mcrit-scale-") as tmp:
        work = Path(tmp)
        with gzip.open(work / "query.json.gz", "wt", encoding="utf-8") as f:
            json.dump(qreport, f)
        (work / "kinship-query.pkl").write_bytes(pickle.dumps(kq))
        for n in sizes:
            k = select_prefix([counts[e.sha256] for e in order], n)
            idx = order[:k]
            (work / "mcrit.json").write_text(json.dumps({
                "query": str(work / "query.json.gz"),
                "index": [{"report": str(report_path(e.sha256)), "family": e.family,
                           "version": e.version} for e in idx]}))
            (work / "kinship-index.pkl").write_bytes(pickle.dumps([feats[e.sha256]
                                                                   for e in idx]))
            logger.warning("size %d: %d binaries; MCRIT child", n, len(idx))
            try:
                m = _run_child("mcrit", work, repeats)
                logger.warning("  MCRIT %s; kinship child", m)
                kk = _run_child("kinship", work, repeats)
            except RuntimeError as exc:
                skipped.append({"target_functions": n, "reason": f"failed: {exc}"})
                continue
            logger.warning("  kinship %s", kk)
            points.append({
                "target_functions": n, "n_binaries": len(idx), "real": True,
                "families": len({e.family for e in idx}),
                "query_family_binaries": sum(1 for e in idx if e.family in
                                             {q.family for q in query}),
                "mcrit": m, "kinship": kk,
                "ratio_query_s": ratio(m["query_s"], kk["query_s"]),
                "ratio_query_match_s": ratio(m["query_match_s"], kk["query_s"]),
                "ratio_peak_rss": ratio(m["peak_rss_mib"], kk["peak_rss_mib"]),
                "ratio_query_peak_rss": ratio(m["query_peak_rss_mib"] or 0.0,
                                              kk["query_peak_rss_mib"] or 0.0),
            })
    if points:  # MCRIT memory the skipped sizes would need, from the largest point measured
        per_fn = points[-1]["mcrit"]["bytes_per_function_est"]
        for sk in skipped:
            sk["mcrit_rss_estimate_gib"] = round(sk["target_functions"] * per_fn / 2**30, 1)
    return {
        "query": {"binaries": [e.path for e in query], "sha256": [e.sha256 for e in query],
                  "smda_functions": len(qx), "kinship_functions": len(kq),
                  "note": "largest ELF x86 builds of the families with the largest ones, "
                          "until 5,000 SMDA functions, whole; not in the index"},
        "smda_cpu_s_this_run": round(smda_cpu, 1),
        "points": points,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t_all, 1),
    }


def main(argv: list[str] | None = None) -> int:
    import platform

    from bench.gt import DEFAULT_CACHE, REPO_ROOT
    from bench.mcrit_peer import available

    ap = argparse.ArgumentParser(prog="python -m bench.mcrit_scale", description=__doc__)
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/<date>-mcrit-scale.json)")
    ap.add_argument("--child", nargs=2, metavar=("TOOL", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        tool, work = args.child
        fn = _child_mcrit if tool == "mcrit" else _child_kinship
        print(json.dumps(fn(Path(work), args.repeats)))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    res = run(sizes, args.repeats, args.cache)
    out = {
        "command": "python -m bench.mcrit_scale --sizes " + args.sizes
                   + f" --repeats {args.repeats}",
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "date": date.today().isoformat(), "mcrit": available(),
        "git": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=False).stdout.strip(),
        **res,
    }
    path = args.out or REPO_ROOT / "bench" / "results" / f"{out['date']}-mcrit-scale.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(markdown_table(res["points"]))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
