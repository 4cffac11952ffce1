"""Disassembly throughput and function-start accuracy: kinship vs SMDA on the dev corpus.

For every selected binary (see :func:`bench.gt.select_subset`) both tools analyse the same fully
stripped copy, in this process, one after the other (kinship first), each timed with
``time.perf_counter`` (wall) and ``time.process_time`` (CPU of this process; both tools are
single-threaded, so CPU seconds are core-seconds and ``x / cpu_s`` is a per-core rate)::

    kinship: load_file(path) + disassemble(binary)        (end to end, loader included)
    SMDA:    Disassembler(config).disassembleFile(path)   (end to end, loader included)

Peak memory is measured separately: each tool analyses the binary once more in a fresh
``multiprocessing`` *spawn* child, which reads its kernel RSS high-water mark (``VmHWM`` in
``/proc/self/status``) after importing the tool (baseline) and after the analysis (peak).
Kernel max-RSS, not tracemalloc: it includes native allocations (capstone, iced-x86, LIEF).
Not ``getrusage(...).ru_maxrss``: Linux carries that across fork+exec, so a spawn child would
report the parent's peak whenever the parent is larger.

Bytes stored per function: when ``kinship.api`` and ``kinship.store.sqlite`` exist, the stripped
copies are ingested into a fresh SQLite store and (store size - empty store size) / functions is
reported; otherwise the result says so.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.gt import (
    DEFAULT_ARCHIVE,
    DEFAULT_CACHE,
    DEFAULT_SUBSET,
    REPO_ROOT,
    CorpusEntry,
    GroundTruth,
    StartScore,
    SubsetSpec,
    elf_stub_ranges,
    ensure_corpus,
    load_ground_truth,
    load_manifest,
    score_starts,
    select_subset,
    stripped_copy,
)

logger = logging.getLogger(__name__)

TOOLS = ("kinship", "smda")
MAX_MEMORY_CHILD_SECONDS = 900  # a memory child that runs longer than this is killed
JSON_SCHEMA = 1
MAX_EXAMPLES = 12  # missed labels / extra starts listed per tool and binary (JSON stays small)


@dataclass
class BenchConfig:
    """Knobs of the disassembly benchmark."""

    subset: SubsetSpec = field(default_factory=lambda: DEFAULT_SUBSET)
    # Cache directory for the unpacked corpus and the stripped copies.
    cache_dir: Path = DEFAULT_CACHE
    # The corpus archive (unpacked once into cache_dir).
    archive: Path = DEFAULT_ARCHIVE
    # Measure peak RSS per tool and binary in spawn children (roughly doubles the run time).
    measure_memory: bool = True
    # Ingest the stripped set into a temporary SQLite store for bytes/function.
    measure_store: bool = True
    # SMDA's own cooperative analysis budget per binary, seconds (SmdaConfig.TIMEOUT). 1..3600.
    smda_timeout_s: int = 300
    # Analyse the smallest selected binary once with each tool before timing (imports, caches).
    warmup: bool = True
    tools: tuple[str, ...] = TOOLS


@dataclass
class ToolRun:
    """One tool on one binary. ``starts`` (function VAs) is kept out of the JSON."""

    tool: str
    status: str  # "ok" | "timeout" | "error" | "unavailable"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    n_functions: int = 0
    n_instructions: int = 0
    load_s: float | None = None  # kinship: loader share of wall_s
    # kinship: CPU seconds of features.extract_columns on the result, timed after (not in) cpu_s;
    # cpu_s + features_cpu_s is the whole ingest pipeline (kinship.pipeline.analyse's work)
    features_cpu_s: float | None = None
    # kinship: CPU seconds of strings.extract_strings (file strings + stack strings), timed
    # after features; cpu_s + features_cpu_s + strings_cpu_s is what pipeline.analyse does
    # short of the sample-level hashes
    strings_cpu_s: float | None = None
    # kinship: CPU seconds of one kinship.pipeline.analyse call on the file (load, disassemble,
    # features, strings, sample hashes: all an ingest does per sample but the store write),
    # run separately after the rows above
    analyse_cpu_s: float | None = None
    message: str | None = None
    score: StartScore | None = None
    peak_rss_mib: float | None = None  # spawn child, after the analysis
    base_rss_mib: float | None = None  # spawn child, after imports, before the analysis
    starts: list[int] = field(default_factory=list, repr=False)
    missed_examples: list[str] = field(default_factory=list)  # "name@va" of missed labels
    extra_examples: list[str] = field(default_factory=list)  # starts no label has (complete gt)

    @property
    def insn_per_cpu_s(self) -> float | None:
        return self.n_instructions / self.cpu_s if self.cpu_s > 0 else None

    @property
    def func_per_cpu_s(self) -> float | None:
        return self.n_functions / self.cpu_s if self.cpu_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("starts", "score")}
        d["insn_per_cpu_s"] = _round(self.insn_per_cpu_s)
        d["func_per_cpu_s"] = _round(self.func_per_cpu_s)
        for k in ("wall_s", "cpu_s", "load_s", "features_cpu_s", "strings_cpu_s", "analyse_cpu_s"):
            d[k] = _round(d[k], 4)
        if self.score is not None:
            s = self.score
            d["starts"] = {
                "tp": s.true_positives,
                "fn": s.false_negatives,
                "fp": s.false_positives,
                "recall": _round(s.recall, 4),
                "precision": _round(s.precision, 4),
                "shift": s.shift,
            }
        return d


@dataclass
class BinaryResult:
    entry: CorpusEntry
    stripped_path: str
    stripped_size: int
    gt_source: str
    gt_starts: int  # scored labels
    gt_ignored: int  # CRT/startup labels left out
    runs: dict[str, ToolRun] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "name": e.name,
            "sha256": e.sha256,
            "family": e.family,
            "version": e.version,
            "variant": e.variant,
            "fmt": e.fmt,
            "arch": e.arch,
            "size": e.size,
            "stripped_size": self.stripped_size,
            "gt_source": self.gt_source,
            "gt_starts": self.gt_starts,
            "gt_ignored": self.gt_ignored,
            "runs": {k: r.to_dict() for k, r in self.runs.items()},
        }


@dataclass
class ToolTotals:
    """Sums over the binaries where *every* tool finished with status ok."""

    tool: str
    n_binaries: int
    wall_s: float
    cpu_s: float
    n_functions: int
    n_instructions: int
    tp: int
    fn: int
    tp_complete: int  # over complete-label binaries only (precision's denominator set)
    fp_complete: int
    fn_complete: int
    max_peak_rss_mib: float | None
    features_cpu_s: float | None = None  # kinship: features CPU s (pipeline = cpu_s + this)
    strings_cpu_s: float | None = None  # kinship: extract_strings CPU s (ingest = pipeline + this)
    analyse_cpu_s: float | None = None  # kinship: pipeline.analyse CPU s (measured on its own)
    # Functions both tools found at the same start (after each tool's label shift), summed over
    # the binaries: the same count for every tool, so rates over it compare equal work.
    n_common_functions: int | None = None

    @property
    def common_func_per_cpu_s(self) -> float | None:
        """Functions found by both tools per CPU-second of this tool's load + disassemble."""
        if self.n_common_functions is None or self.cpu_s <= 0:
            return None
        return self.n_common_functions / self.cpu_s

    @property
    def common_func_per_analyse_cpu_s(self) -> float | None:
        """Functions found by both tools per CPU-second of kinship.pipeline.analyse."""
        if self.n_common_functions is None or not self.analyse_cpu_s:
            return None
        return self.n_common_functions / self.analyse_cpu_s

    @property
    def pipeline_insn_per_cpu_s(self) -> float | None:
        """Instructions per CPU-second of load + disassemble + features (kinship)."""
        if self.features_cpu_s is None:
            return None
        cpu = self.cpu_s + self.features_cpu_s
        return self.n_instructions / cpu if cpu > 0 else None

    @property
    def analyse_insn_per_cpu_s(self) -> float | None:
        """Instructions per CPU-second of kinship.pipeline.analyse (the real ingest path)."""
        if not self.analyse_cpu_s:
            return None
        return self.n_instructions / self.analyse_cpu_s

    @property
    def ingest_insn_per_cpu_s(self) -> float | None:
        """Instructions per CPU-second of the pipeline plus strings.extract_strings (kinship)."""
        if self.features_cpu_s is None or self.strings_cpu_s is None:
            return None
        cpu = self.cpu_s + self.features_cpu_s + self.strings_cpu_s
        return self.n_instructions / cpu if cpu > 0 else None

    @property
    def insn_per_cpu_s(self) -> float | None:
        return self.n_instructions / self.cpu_s if self.cpu_s > 0 else None

    @property
    def func_per_cpu_s(self) -> float | None:
        return self.n_functions / self.cpu_s if self.cpu_s > 0 else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def recall_complete(self) -> float | None:
        n = self.tp_complete + self.fn_complete
        return self.tp_complete / n if n else None

    @property
    def precision_complete(self) -> float | None:
        n = self.tp_complete + self.fp_complete
        return self.tp_complete / n if n else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall_s"], d["cpu_s"] = _round(self.wall_s, 3), _round(self.cpu_s, 3)
        d["insn_per_cpu_s"] = _round(self.insn_per_cpu_s)
        d["func_per_cpu_s"] = _round(self.func_per_cpu_s)
        d["features_cpu_s"] = _round(self.features_cpu_s, 3)
        d["strings_cpu_s"] = _round(self.strings_cpu_s, 3)
        d["ingest_insn_per_cpu_s"] = _round(self.ingest_insn_per_cpu_s)
        d["analyse_cpu_s"] = _round(self.analyse_cpu_s, 3)
        d["analyse_insn_per_cpu_s"] = _round(self.analyse_insn_per_cpu_s)
        d["pipeline_insn_per_cpu_s"] = _round(self.pipeline_insn_per_cpu_s)
        d["common_func_per_cpu_s"] = _round(self.common_func_per_cpu_s)
        d["common_func_per_analyse_cpu_s"] = _round(self.common_func_per_analyse_cpu_s)
        d["recall_all_labels"] = _round(self.recall, 4)
        d["recall_complete_labels"] = _round(self.recall_complete, 4)
        d["precision_complete_labels"] = _round(self.precision_complete, 4)
        return d


@dataclass
class StoreMeasurement:
    """Bytes a SQLite store grows by per ingested function (None fields = not measured)."""

    status: str  # "ok" | "todo" | "error"
    message: str
    n_samples: int = 0
    n_functions: int = 0
    empty_bytes: int = 0
    full_bytes: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_function(self) -> float | None:
        if self.n_functions <= 0:
            return None
        return (self.full_bytes - self.empty_bytes) / self.n_functions

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bytes_per_function"] = _round(self.bytes_per_function, 1)
        d["seconds"] = _round(self.seconds, 3)
        return d


@dataclass
class BenchResult:
    config: dict[str, Any]
    environment: dict[str, Any]
    binaries: list[BinaryResult]
    totals: dict[str, ToolTotals]
    store: StoreMeasurement
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": JSON_SCHEMA,
            "benchmark": "disasm_vs_smda",
            "config": self.config,
            "environment": self.environment,
            "binaries": [b.to_dict() for b in self.binaries],
            "totals": {k: t.to_dict() for k, t in self.totals.items()},
            "store": self.store.to_dict(),
            "seconds": round(self.seconds, 1),
        }


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


# ---- tool adapters ---------------------------------------------------------------------------


def ensure_kinship_importable() -> bool:
    """Put ``<repo>/src`` on sys.path when kinship is not installed; True if importable."""
    src = str(REPO_ROOT / "src")
    if importlib.util.find_spec("kinship") is None and src not in sys.path:
        sys.path.insert(0, src)
    try:
        return (
            importlib.util.find_spec("kinship.binary.load") is not None
            and importlib.util.find_spec("kinship.disasm.disassemble") is not None
        )
    except ModuleNotFoundError:
        return False


def _import_tool(tool: str) -> None:
    """Import what a tool needs (so that a memory baseline excludes import costs)."""
    if tool == "kinship":
        importlib.import_module("kinship.binary.load")
        importlib.import_module("kinship.disasm.disassemble")
    else:
        importlib.import_module("smda.Disassembler")


def run_kinship(path: Path, cfg: BenchConfig) -> ToolRun:
    """kinship end to end on ``path``: loader plus disassembler."""
    if not ensure_kinship_importable():
        return ToolRun(
            "kinship",
            "unavailable",
            message="kinship.binary.load / kinship.disasm.disassemble not present yet",
        )
    from kinship.binary.load import load_file
    from kinship.disasm.disassemble import disassemble
    # Both tools run in this process, alternately: free the other tool's cyclic garbage
    # first, so that neither pays for a collection the other caused.
    gc.collect()
    shared = _shared_templates_snapshot()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        binary = load_file(path)
        w1 = time.perf_counter()
        # the ingest path: the decoder's columns, no Instruction objects (those are built
        # from the columns only when a caller keeps the disassembly)
        dis = disassemble(binary, lazy=True)
    except Exception as e:  # a per-sample failure is a result, not an aborted batch
        return ToolRun(
            "kinship",
            "error",
            time.perf_counter() - w0,
            time.process_time() - c0,
            message=f"{type(e).__name__}: {e}",
        )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    features_cpu: float | None = None
    try:
        from kinship.features.extract import extract_columns

        f0 = time.process_time()
        assert dis.columns is not None
        extract_columns(dis.columns)
        features_cpu = time.process_time() - f0
    except Exception as e:  # features are measured when they work; the disasm row stands
        logger.warning("features on %s: %s", path, e)
    strings_cpu: float | None = None
    try:
        from kinship.strings.extract import extract_strings

        s0 = time.process_time()
        extract_strings(binary, dis)
        strings_cpu = time.process_time() - s0
    except Exception as e:  # as for features
        logger.warning("strings on %s: %s", path, e)
    starts = [f.va for f in dis.columns.functions] if dis.columns is not None else []
    run = ToolRun(
        "kinship",
        "ok",
        wall,
        cpu,
        n_functions=len(starts),
        n_instructions=dis.n_instructions,
        load_s=w1 - w0,
        features_cpu_s=features_cpu,
        strings_cpu_s=strings_cpu,
        message="; ".join(dis.warnings[:3]) or None,
        starts=starts,
    )
    del binary, dis  # freed before the separate pipeline.analyse run
    try:
        import kinship.pipeline as pipeline

        _shared_templates_restore(shared)  # no head start from the run above on this file
        gc.collect()
        a0 = time.process_time()
        pipeline.analyse(pipeline.SampleInput(name=str(path), path=path))
        run.analyse_cpu_s = time.process_time() - a0
    except Exception as e:  # as for features
        logger.warning("pipeline.analyse on %s: %s", path, e)
    return run


def _shared_templates_snapshot() -> dict[Any, dict[Any, Any]] | None:
    """A copy of the decoder's process-wide template cache (earlier files may warm it, as in
    an ingest worker; a second run on the same file must not)."""
    try:
        from kinship.disasm.decoder import _SHARED_TEMPLATES
    except ImportError:
        return None
    return {k: dict(v) for k, v in _SHARED_TEMPLATES.items()}


def _shared_templates_restore(snapshot: dict[Any, dict[Any, Any]] | None) -> None:
    if snapshot is None:
        return
    from kinship.disasm.decoder import _SHARED_TEMPLATES

    for key, cache in _SHARED_TEMPLATES.items():
        cache.clear()
        cache.update(snapshot.get(key, {}))


def run_smda(path: Path, cfg: BenchConfig) -> ToolRun:
    """SMDA's default configuration end to end on ``path`` (its own loader included)."""
    from smda.Disassembler import Disassembler
    from smda.SmdaConfig import SmdaConfig

    config = SmdaConfig()  # type: ignore[no-untyped-call]
    config.TIMEOUT = cfg.smda_timeout_s
    # Both tools run in this process, alternately: free the other tool's cyclic garbage
    # first, so that neither pays for a collection the other caused.
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        report = Disassembler(config).disassembleFile(str(path))
    except Exception as e:
        return ToolRun(
            "smda",
            "error",
            time.perf_counter() - w0,
            time.process_time() - c0,
            message=f"{type(e).__name__}: {e}",
        )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    status = str(report.status)
    if status != "ok":
        return ToolRun(
            "smda",
            "timeout" if status == "timeout" else "error",
            wall,
            cpu,
            message=str(report.message),
        )
    return ToolRun(
        "smda",
        "ok",
        wall,
        cpu,
        n_functions=int(report.num_functions),
        n_instructions=int(report.num_instructions),
        starts=[int(f.offset) for f in report.getFunctions() if f.offset is not None],
    )


TOOL_RUNNERS: dict[str, Callable[[Path, BenchConfig], ToolRun]] = {
    "kinship": run_kinship,
    "smda": run_smda,
}


# ---- peak memory in spawn children -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryReading:
    base_kib: int
    peak_kib: int
    status: str


def _rss_high_water_kib() -> int:
    """This process's peak RSS in KiB since its last exec (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _memory_child(
    tool: str, path: str, cfg: BenchConfig, conn: multiprocessing.connection.Connection
) -> None:
    """Spawn-child body: import the tool, read max RSS, analyse, read max RSS again."""
    try:
        if tool == "kinship":
            ensure_kinship_importable()
        _import_tool(tool)
        base = _rss_high_water_kib()
        run = TOOL_RUNNERS[tool](Path(path), cfg)
        peak = _rss_high_water_kib()
        conn.send(MemoryReading(base, peak, run.status))
    except Exception as e:
        conn.send(MemoryReading(0, 0, f"error: {type(e).__name__}: {e}"))
    finally:
        conn.close()


def measure_peak_rss(tool: str, path: Path, cfg: BenchConfig) -> MemoryReading:
    """Max RSS of a fresh spawn child that analyses ``path`` with ``tool``."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_memory_child, args=(tool, str(path), cfg, child), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(MAX_MEMORY_CHILD_SECONDS):
            reading: MemoryReading = parent.recv()
        else:
            reading = MemoryReading(0, 0, "timeout")
    except EOFError:
        reading = MemoryReading(0, 0, "child died")
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return reading


# ---- bytes per stored function ---------------------------------------------------------------


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def measure_store(paths: Sequence[Path]) -> StoreMeasurement:
    """Ingest ``paths`` into a fresh SQLite store; bytes it grows by per function."""
    ensure_kinship_importable()
    missing = [
        m for m in ("kinship.api", "kinship.store.sqlite") if importlib.util.find_spec(m) is None
    ]
    if missing:
        return StoreMeasurement(
            "todo", f"TODO: bytes/function needs {', '.join(missing)} (not in the tree yet)"
        )
    try:
        from kinship.api import Kinship

        with tempfile.TemporaryDirectory(prefix="kinship-bench-") as tmp:
            db = Path(tmp) / "bench.db"
            with Kinship(db):
                pass
            empty = _db_bytes(db)
            t0 = time.perf_counter()
            with Kinship(db) as k:
                report = k.add(list(paths))
                stats = k.stats()
            seconds = time.perf_counter() - t0
            full = _db_bytes(db)  # after close: WAL checkpointed (if the store does that)
            return StoreMeasurement(
                "ok",
                f"SQLite file(s) after close; stats.size_bytes={stats.size_bytes}, "
                f"failed={len(report.failed)}",
                n_samples=stats.samples,
                n_functions=stats.functions,
                empty_bytes=empty,
                full_bytes=full,
                seconds=seconds,
            )
    except Exception as e:
        return StoreMeasurement("error", f"{type(e).__name__}: {e}")


# ---- the benchmark ---------------------------------------------------------------------------


def _environment() -> dict[str, Any]:
    def version(mod: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(mod)
        except Exception:
            return None

    try:
        rev = (
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        rev = None
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": multiprocessing.cpu_count(),
        "smda": version("smda"),
        "capstone": version("capstone"),
        "iced_x86": version("iced-x86"),
        "lief": version("lief"),
        "kinship_git": rev,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _score(run: ToolRun, gt: GroundTruth, path: Path, base: int) -> None:
    if run.status == "ok":
        stubs = elf_stub_ranges(path)
        shifts = (0, base, -base) if base else (0,)
        run.score = score_starts(run.starts, gt, stubs, shifts)
        found = {va + run.score.shift for va in run.starts}
        missed = sorted(gt.starts - found)
        run.missed_examples = [f"{gt.names.get(va, '?')}@{va:#x}" for va in missed[:MAX_EXAMPLES]]
        if gt.complete:
            extra = sorted(
                va
                for va in found - gt.starts - gt.ignored
                if not any(r.contains(va) for r in stubs)
            )
            run.extra_examples = [f"{va:#x}" for va in extra[:MAX_EXAMPLES]]


def _image_base(path: Path) -> int:
    """PE ImageBase (0 for ELF): the shift tried when a tool reports RVAs."""
    data = path.read_bytes()[:4096]
    if data[:2] != b"MZ" or len(data) < 0x40:
        return 0
    pe = int.from_bytes(data[0x3C:0x40], "little")
    opt = pe + 24
    if opt + 32 > len(data):
        return 0
    magic = int.from_bytes(data[opt : opt + 2], "little")
    if magic == 0x20B:
        return int.from_bytes(data[opt + 24 : opt + 32], "little")
    return int.from_bytes(data[opt + 28 : opt + 32], "little")


def _sum_if_all(runs: Sequence[ToolRun], attr: str) -> float | None:
    """Sum of an optional per-run timing, or None unless every run has it."""
    values = [getattr(r, attr) for r in runs]
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def common_starts(runs: Sequence[ToolRun]) -> int:
    """Function starts every run found (each run's starts moved by its label shift, so an RVA
    and a VA of one function agree)."""
    sets = [{va + (r.score.shift if r.score else 0) for va in r.starts} for r in runs]
    return len(set.intersection(*sets)) if sets else 0


def totals(binaries: Sequence[BinaryResult], tools: Sequence[str]) -> dict[str, ToolTotals]:
    """Per-tool sums over the binaries where every tool succeeded (a like-for-like set)."""
    common = [b for b in binaries if all(t in b.runs and b.runs[t].status == "ok" for t in tools)]
    n_common = sum(common_starts([b.runs[t] for t in tools]) for b in common)
    out: dict[str, ToolTotals] = {}
    for t in tools:
        runs = [b.runs[t] for b in common]
        scores = [r.score for r in runs if r.score is not None]
        complete = [s for s in scores if s.false_positives is not None]
        peaks = [r.peak_rss_mib for r in runs if r.peak_rss_mib is not None]
        out[t] = ToolTotals(
            tool=t,
            n_binaries=len(common),
            wall_s=sum(r.wall_s for r in runs),
            cpu_s=sum(r.cpu_s for r in runs),
            n_functions=sum(r.n_functions for r in runs),
            n_instructions=sum(r.n_instructions for r in runs),
            tp=sum(s.true_positives for s in scores),
            fn=sum(s.false_negatives for s in scores),
            tp_complete=sum(s.true_positives for s in complete),
            fp_complete=sum(s.false_positives or 0 for s in complete),
            fn_complete=sum(s.false_negatives for s in complete),
            max_peak_rss_mib=max(peaks) if peaks else None,
            features_cpu_s=_sum_if_all(runs, "features_cpu_s"),
            strings_cpu_s=_sum_if_all(runs, "strings_cpu_s"),
            analyse_cpu_s=_sum_if_all(runs, "analyse_cpu_s"),
            n_common_functions=n_common if len(tools) > 1 else None,
        )
    return out


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Select, strip, analyse with every tool, score, measure memory and store size."""
    t_start = time.perf_counter()
    say = progress or (lambda _msg: None)
    ensure_kinship_importable()
    dev = ensure_corpus(cfg.cache_dir, cfg.archive)
    entries = select_subset(load_manifest(dev), cfg.subset)
    if not entries:
        raise ValueError("the subset selection is empty (check --max-size / --family)")
    stripped = [stripped_copy(dev, e, cfg.cache_dir) for e in entries]

    if cfg.warmup:
        smallest = min(stripped, key=lambda p: p.stat().st_size)
        for tool in cfg.tools:
            say(f"warm-up {tool} on {smallest.name}")
            TOOL_RUNNERS[tool](smallest, cfg)
        _shared_templates_restore({})  # timed runs start from a cold template cache

    results: list[BinaryResult] = []
    for i, (entry, path) in enumerate(zip(entries, stripped, strict=True), 1):
        gt = load_ground_truth(dev, entry)
        br = BinaryResult(
            entry, str(path), path.stat().st_size, gt.source, len(gt.starts), len(gt.ignored)
        )
        base = _image_base(path)
        for tool in cfg.tools:
            say(f"[{i}/{len(entries)}] {tool:8s} {entry.cell} {entry.family} {entry.name}")
            run = TOOL_RUNNERS[tool](path, cfg)
            _score(run, gt, path, base)
            if cfg.measure_memory and run.status == "ok":
                m = measure_peak_rss(tool, path, cfg)
                if m.status == "ok":
                    run.base_rss_mib = round(m.base_kib / 1024, 1)
                    run.peak_rss_mib = round(m.peak_kib / 1024, 1)
            br.runs[tool] = run
        results.append(br)

    if cfg.measure_store and "kinship" in cfg.tools:
        say("store: ingesting stripped copies into a temporary SQLite store")
        store = measure_store(stripped)
    else:
        store = StoreMeasurement("todo", "not measured (--no-store or kinship not selected)")

    config = {
        "subset": asdict(cfg.subset),
        "measure_memory": cfg.measure_memory,
        "memory_method": "spawn child, /proc/self/status VmHWM (kernel peak RSS) after the run",
        "smda_timeout_s": cfg.smda_timeout_s,
        "warmup": cfg.warmup,
        "tools": list(cfg.tools),
        "smda_config": "SmdaConfig() defaults, TIMEOUT overridden",
        "timing": "same process, sequential, kinship then SMDA; cpu = time.process_time()",
    }
    return BenchResult(
        config,
        _environment(),
        results,
        totals(results, cfg.tools),
        store,
        time.perf_counter() - t_start,
    )


# ---- report ----------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = ".0f", pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:.1f}" if pct else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def render_table(result: BenchResult, console: Any = None) -> None:
    """Print per-binary rows and totals (kinship vs SMDA, with ratios) with rich."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    if console is None and not con.is_terminal:
        con = Console(width=190)  # files and pipes: wide enough for one row per binary
    tools = list(result.config["tools"])
    table = Table(title="disassembly: kinship vs SMDA (stripped copies)", show_lines=False)
    table.add_column("binary", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("cell", no_wrap=True)
    table.add_column("gt", justify="right")
    for t in tools:
        for head in ("cpu s", "kinsn/s", "funcs", "R %", "P %", "MiB"):
            table.add_column(f"{t[:4]}\n{head}", justify="right", no_wrap=True)
    if tools == ["kinship", "smda"]:
        table.add_column("speed\nk/s", justify="right", no_wrap=True)

    def cells(r: ToolRun | None) -> list[str]:
        if r is None or r.status != "ok":
            return [r.status if r else "-", "", "", "", "", ""]
        s = r.score
        return [
            _fmt(r.cpu_s, ".2f"),
            _fmt(r.insn_per_cpu_s / 1000 if r.insn_per_cpu_s else None, ".1f"),
            str(r.n_functions),
            _fmt(s.recall if s else None, pct=True),
            _fmt(s.precision if s else None, pct=True),
            _fmt(r.peak_rss_mib, ".0f"),
        ]

    for b in result.binaries:
        row = [f"{b.entry.family}/{b.entry.name}", b.entry.cell, f"{b.gt_starts}{b.gt_source[0]}"]
        for t in tools:
            row += cells(b.runs.get(t))
        if tools == ["kinship", "smda"]:
            k, s = b.runs.get("kinship"), b.runs.get("smda")
            ok = k and s and k.status == s.status == "ok"
            row.append(_ratio(k.insn_per_cpu_s, s.insn_per_cpu_s) if ok and k and s else "-")
        table.add_row(*row)
    table.add_section()
    row = ["TOTAL (all ok)", "", ""]
    for t in tools:
        tt = result.totals[t]
        row += [
            _fmt(tt.cpu_s, ".2f"),
            _fmt(tt.insn_per_cpu_s / 1000 if tt.insn_per_cpu_s else None, ".1f"),
            str(tt.n_functions),
            _fmt(tt.recall, pct=True),
            _fmt(tt.precision_complete, pct=True),
            _fmt(tt.max_peak_rss_mib, ".0f"),
        ]
    if tools == ["kinship", "smda"]:
        row.append(
            _ratio(result.totals["kinship"].insn_per_cpu_s, result.totals["smda"].insn_per_cpu_s)
        )
    table.add_row(*row)
    con.print(table)
    con.print(
        "gt: scored labels (s=symtab, c=COFF: complete, precision scored; d=dynsym, e=exports: "
        "exported subset, recall only). R/P: function-start recall/precision, CRT/startup "
        "labels and ELF PLT stubs left out. kinsn/s: thousand instructions per CPU-second "
        "(one core). MiB: peak RSS of a spawn child. TOTAL over binaries where all tools "
        "succeeded; P over complete-label binaries only; MiB = max."
    )
    for t in tools:
        tt = result.totals[t]
        con.print(
            f"{t:8s} {tt.n_binaries} binaries  {tt.n_instructions} insns  "
            f"{tt.n_functions} funcs  wall {tt.wall_s:.2f}s  cpu {tt.cpu_s:.2f}s  "
            f"{_fmt(tt.insn_per_cpu_s)} insn/cpu-s  {_fmt(tt.func_per_cpu_s)} func/cpu-s  "
            f"recall {_fmt(tt.recall, pct=True)}% (complete labels "
            f"{_fmt(tt.recall_complete, pct=True)}%)  precision "
            f"{_fmt(tt.precision_complete, pct=True)}%"
        )
    for line in equal_count_lines(result):
        con.print(line)
    if "kinship" in result.totals:
        kt = result.totals["kinship"]
        if kt.pipeline_insn_per_cpu_s is not None and kt.features_cpu_s is not None:
            line = (
                f"pipeline (kinship load + disassemble + features): "
                f"cpu {kt.cpu_s + kt.features_cpu_s:.2f}s (features {kt.features_cpu_s:.2f}s)  "
                f"{_fmt(kt.pipeline_insn_per_cpu_s)} insn/cpu-s"
            )
            st_smda = result.totals.get("smda")
            if st_smda is not None:
                line += (
                    f"  = {_ratio(kt.pipeline_insn_per_cpu_s, st_smda.insn_per_cpu_s)} "
                    "SMDA disassembleFile"
                )
            con.print(line)
            if kt.ingest_insn_per_cpu_s is not None and kt.strings_cpu_s is not None:
                con.print(
                    f"  + strings.extract_strings: cpu {kt.strings_cpu_s:.2f}s  "
                    f"{_fmt(kt.ingest_insn_per_cpu_s)} insn/cpu-s"
                    + (
                        f"  = {_ratio(kt.ingest_insn_per_cpu_s, st_smda.insn_per_cpu_s)} SMDA"
                        if st_smda is not None
                        else ""
                    )
                )
            if kt.analyse_insn_per_cpu_s is not None and kt.analyse_cpu_s is not None:
                con.print(
                    f"kinship.pipeline.analyse (whole per-sample ingest work, measured on its "
                    f"own): cpu {kt.analyse_cpu_s:.2f}s  {_fmt(kt.analyse_insn_per_cpu_s)} "
                    "insn/cpu-s"
                    + (
                        f"  = {_ratio(kt.analyse_insn_per_cpu_s, st_smda.insn_per_cpu_s)} SMDA"
                        if st_smda is not None
                        else ""
                    )
                )
            for cell_line in _pipeline_per_cell(result):
                con.print(cell_line)
    st = result.store
    if st.status == "ok":
        con.print(
            f"store: {_fmt(st.bytes_per_function)} bytes/function "
            f"({st.n_functions} functions, {st.n_samples} samples; {st.message})"
        )
    else:
        con.print(f"store: {st.message}")


def equal_count_lines(result: BenchResult) -> list[str]:
    """Throughput over equal function counts: each tool's own function count differs (SMDA and
    kinship find different sets), so func/cpu-s above mixes speed with coverage. Here one
    count, the functions both found at the same start, is divided by each tool's CPU time."""
    kt, st = result.totals.get("kinship"), result.totals.get("smda")
    if kt is None or st is None or kt.n_common_functions is None:
        return []
    line = (f"equal function counts ({kt.n_common_functions} functions found by both at the "
            f"same start): kinship load + disassemble {_fmt(kt.common_func_per_cpu_s)} "
            f"func/cpu-s, SMDA {_fmt(st.common_func_per_cpu_s)} func/cpu-s = "
            f"{_ratio(kt.common_func_per_cpu_s, st.common_func_per_cpu_s)}")
    if kt.common_func_per_analyse_cpu_s is not None:
        ratio = _ratio(kt.common_func_per_analyse_cpu_s, st.common_func_per_cpu_s)
        line += (f"; kinship pipeline.analyse {_fmt(kt.common_func_per_analyse_cpu_s)} "
                 f"func/cpu-s = {ratio} SMDA")
    own = _ratio(kt.func_per_cpu_s, st.func_per_cpu_s)
    return [line, f"  (own function counts: {kt.n_functions} vs {st.n_functions}, "
                  f"func/cpu-s ratio {own})"]


def _pipeline_per_cell(result: BenchResult) -> list[str]:
    """One line per {ELF,PE}x{x86,x64} cell: kinship disasm / pipeline / +strings vs SMDA."""
    cells: dict[str, list[float]] = {}
    for b in result.binaries:
        k, sm = b.runs.get("kinship"), b.runs.get("smda")
        if not (k and sm and k.status == "ok" and sm.status == "ok"):
            continue
        if k.features_cpu_s is None or k.strings_cpu_s is None:
            continue
        acc = cells.setdefault(b.entry.cell, [0.0] * 7)
        values = (k.n_instructions, k.cpu_s, k.features_cpu_s, k.strings_cpu_s,
                  sm.n_instructions, sm.cpu_s, k.analyse_cpu_s or 0.0)
        for i, v in enumerate(values):
            acc[i] += v
    lines = []
    for cell, (kn, kc, kf, ks, sn, sc, ka) in sorted(cells.items()):
        smda = sn / sc if sc > 0 else None
        lines.append(
            f"  {cell:8s} kinship/SMDA insn per cpu-s: disasm "
            f"{_ratio(kn / kc if kc else None, smda)}  pipeline "
            f"{_ratio(kn / (kc + kf) if kc + kf else None, smda)}  + strings "
            f"{_ratio(kn / (kc + kf + ks) if kc + kf + ks else None, smda)}  analyse "
            f"{_ratio(kn / ka if ka else None, smda)}"
        )
    return lines


def default_out_path(quick: bool) -> Path:
    day = datetime.now().strftime("%Y-%m-%d")
    return REPO_ROOT / "bench" / "results" / f"{day}-disasm{'-quick' if quick else ''}.json"


def have_strip_tools() -> list[str]:
    """Names of the strip binaries that are missing on this machine."""
    return [
        t
        for t in ("strip", "i686-w64-mingw32-strip", "x86_64-w64-mingw32-strip")
        if shutil.which(t) is None
    ]
