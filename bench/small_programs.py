"""``python -m bench small [--quick]``: small programs, no library corpus (issue #9).

The case kinship exists for, as a new user meets it: a fresh store, DEFAULT options, no
``--library`` corpus; a few small programs stored under their family and actor; rebuilds of
them and unrelated small programs ("strangers") to attribute. Most of each small binary is
compiler runtime (MinGW start-up, pseudo-relocator, ``__mingw_*`` helpers, glibc/clang start
files) and only a handful of its functions are its own, so runtime code shared by every
program is exactly what can make a stranger look like a stored family.

Protocol
--------
* Programs: ``bench/small_programs/src/*.c``, ten families of our own (100-200 lines each;
  implant-like tools that only print the commands they would run, and small utilities).
  ``-DVERSION2`` makes the "later version" of each.
* Builds: every family x version (v1, v2) x toolchain (i686/x86_64 MinGW-w64 gcc, gcc -m32/-m64,
  clang -m32/-m64) x optimisation (-O0, -O2, -Os), stripped (``strip --strip-all``,
  ``*-w64-mingw32-strip``), compiled into a cache folder outside git
  (``~/.cache/kinship-bench-small/``, one file per build, keyed by source, flags and compiler
  version). ``--quick``: MinGW x86/x64, gcc x64, clang x64 at -O2/-Os.
* Folds (:data:`FOLDS`): five stores of two families each (every family known once) and two
  of five (the halves). In a fold, the families it names are *known*: their reference builds
  (:data:`REFERENCE_BUILDS`: the "2016" v1 i686 MinGW -O2 build, and the v1 gcc x64 -O2 ELF
  build) are added to a fresh SQLite store in a temporary folder with ``Labels(family, actor,
  source, first_seen, version)``; nothing else is stored. Every other build is a query. The
  full run does every fold (each family is known twice and a stranger five times);
  ``--quick`` does two pair folds and the first half.
* Query groups (:func:`query_group`, against the nearest reference of the family): ``version``
  (same toolchain and optimisation, v2), ``opt`` (same toolchain, other optimisation),
  ``arch`` (same compiler, other word size: the 32-to-64-bit port), ``arch+opt``, ``compiler``
  (another compiler), and ``stranger`` (a family not stored in this fold: expected "unknown").
* Per group: top-1 (attributed to the right family; for strangers: "unknown"), false
  attribution (a stranger given any family, a known program given a wrong one), unknown rate,
  weak rate (``Verdict.status == "weak"`` where the verdict model has it).
* Calibration over every *attributed* verdict (family set, status "attributed" where the model
  has a status): confidence vs right/wrong, reliability bins, ECE (10 bins), Brier score
  (``bench/calibration.py``), and a reliability diagram.

Verdicts are read defensively: ``family is None`` is "unknown"; ``status`` and ``confidence``
come through ``getattr`` (the verdict model gains ``status``/``reason`` and a confidence that
is None unless attributed; both shapes are handled).

Output: a Markdown table on stdout, ``bench/results/<date>-small[-quick][-TAG].json`` and the
diagram beside it as ``.png`` (full runs also write ``docs/img/small_reliability[-TAG].png``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bench.calibration import Calibration, calibrate, plot_reliability
from bench.suite import git_head

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = Path(__file__).resolve().parent / "small_programs" / "src"
DEFAULT_CACHE = Path.home() / ".cache" / "kinship-bench-small"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOCS_IMG = REPO_ROOT / "docs" / "img"

MAX_TOOL_SECONDS = 120  # one compile takes well under 2 s; a wedged compiler must not hang us
TARGET_ECE = 0.05  # issue #9
TARGET_STRANGER_FA = 0  # issue #9: no stranger attributed to any family


@dataclass(frozen=True)
class Family:
    name: str
    actor: str  # fictional actor names: the bench must never name a real group
    sources: tuple[str, ...]  # files in SRC_DIR
    kind: str  # one line for the docs


FAMILIES: tuple[Family, ...] = (
    Family("fwgate", "ACTOR-SPRUCE", ("fwgate.c",), "netsh firewall-rule 'backdoor' (prints)"),
    Family("beacon", "ACTOR-SPRUCE", ("beacon.c",), "implant check-in line builder (prints)"),
    Family("sumtool", "ACTOR-BIRCH", ("sumtool.c",), "CRC-32/Adler-32/Fletcher checksums"),
    Family("cfgparse", "ACTOR-CEDAR", ("cfgparse.c",), "INI configuration parser"),
    Family("httpreq", "ACTOR-ASPEN", ("httpreq.c",), "HTTP/1.1 request builder (prints)"),
    Family("wordstat", "ACTOR-MAPLE", ("wordstat.c",), "word counter with top words"),
    Family("b64xor", "ACTOR-MAPLE", ("b64xor.c",), "base64 + xor encoder/decoder"),
    Family("proclist", "ACTOR-ROWAN", ("proclist.c",), "process lister (Toolhelp32 / /proc)"),
    Family("filewalk", "ACTOR-LARCH", ("filewalk.c",), "directory walker, totals per extension"),
    Family("kvstore", "ACTOR-ALDER", ("kvstore.c",), "open-addressing key-value store"),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}

# A fold stores the families it names; every other family is a stranger in it. A new user's
# store holds few families, and runtime code shared by fewer than MatchConfig.common_families
# stored families is not discounted as "common", so the small stores are the hard case; the
# halves are the easier one (runtime code matches all five stored families).
PAIR_FOLDS: tuple[tuple[str, ...], ...] = (
    ("fwgate", "beacon"),  # one actor, two tools
    ("sumtool", "cfgparse"),
    ("httpreq", "wordstat"),
    ("b64xor", "proclist"),
    ("filewalk", "kvstore"),
)
HALF_FOLDS: tuple[tuple[str, ...], ...] = (
    ("fwgate", "beacon", "sumtool", "cfgparse", "httpreq"),
    ("wordstat", "b64xor", "proclist", "filewalk", "kvstore"),
)
FOLDS: tuple[tuple[str, ...], ...] = PAIR_FOLDS + HALF_FOLDS
QUICK_FOLDS: tuple[tuple[str, ...], ...] = (PAIR_FOLDS[0], PAIR_FOLDS[1], HALF_FOLDS[0])


@dataclass(frozen=True)
class Toolchain:
    name: str  # e.g. "mingw-x86"
    compiler: str  # "mingw" | "gcc" | "clang": what "another compiler" means
    arch: str  # "x86" | "x64"
    fmt: str  # "pe" | "elf"
    cc: tuple[str, ...]  # compiler command (before flags)
    strip: tuple[str, ...]  # strip command (before the file)
    link_flags: tuple[str, ...] = ()


TOOLCHAINS: tuple[Toolchain, ...] = (
    # --no-insert-timestamp: reproducible PE files, so the cache key says everything
    Toolchain("mingw-x86", "mingw", "x86", "pe", ("i686-w64-mingw32-gcc",),
              ("i686-w64-mingw32-strip", "--strip-all"), ("-Wl,--no-insert-timestamp",)),
    Toolchain("mingw-x64", "mingw", "x64", "pe", ("x86_64-w64-mingw32-gcc",),
              ("x86_64-w64-mingw32-strip", "--strip-all"), ("-Wl,--no-insert-timestamp",)),
    Toolchain("gcc-x86", "gcc", "x86", "elf", ("gcc", "-m32"), ("strip", "--strip-all")),
    Toolchain("gcc-x64", "gcc", "x64", "elf", ("gcc", "-m64"), ("strip", "--strip-all")),
    Toolchain("clang-x86", "clang", "x86", "elf", ("clang", "-m32"), ("strip", "--strip-all")),
    Toolchain("clang-x64", "clang", "x64", "elf", ("clang", "-m64"), ("strip", "--strip-all")),
)
TOOLCHAIN_BY_NAME = {t.name: t for t in TOOLCHAINS}
OPTS: tuple[str, ...] = ("-O0", "-O2", "-Os")
VERSIONS: tuple[str, ...] = ("v1", "v2")
QUICK_TOOLCHAINS = ("mingw-x86", "mingw-x64", "gcc-x64", "clang-x64")
QUICK_OPTS = ("-O2", "-Os")

# (toolchain, opt, version) of the builds that are stored for a known family: the "2016"
# 32-bit MinGW implant, and an ELF build so that ELF queries have a same-format reference.
REFERENCE_BUILDS: tuple[tuple[str, str, str], ...] = (
    ("mingw-x86", "-O2", "v1"),
    ("gcc-x64", "-O2", "v1"),
)
REFERENCE_FIRST_SEEN = "2016-03"

GROUPS: tuple[str, ...] = ("version", "opt", "arch", "arch+opt", "compiler", "stranger")


@dataclass(frozen=True)
class Build:
    family: str
    version: str  # "v1" | "v2"
    toolchain: str  # Toolchain.name
    opt: str  # "-O0" | "-O2" | "-Os"

    @property
    def name(self) -> str:
        ext = ".exe" if TOOLCHAIN_BY_NAME[self.toolchain].fmt == "pe" else ""
        return f"{self.family}_{self.version}_{self.toolchain}_{self.opt.lstrip('-')}{ext}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.toolchain, self.opt, self.version)


@dataclass(frozen=True)
class Query:
    build: Build
    group: str  # one of GROUPS
    expected: str | None  # the family, or None for a stranger ("unknown" expected)


def all_builds(families: Iterable[str], toolchains: Iterable[str], opts: Iterable[str],
               versions: Iterable[str] = VERSIONS) -> list[Build]:
    """Every family x version x toolchain x optimisation, in a stable order."""
    tcs, os_, vs = tuple(toolchains), tuple(opts), tuple(versions)
    return [Build(f, v, t, o) for f in families for v in vs for t in tcs for o in os_]


def reference_builds(families: Iterable[str],
                     refs: Sequence[tuple[str, str, str]] = REFERENCE_BUILDS) -> list[Build]:
    """The stored builds of the known ``families``."""
    return [Build(f, v, t, o) for f in families for (t, o, v) in refs]


def _group_vs(build: Build, ref: Build) -> str:
    """How ``build`` differs from one reference build of its family."""
    a, b = TOOLCHAIN_BY_NAME[build.toolchain], TOOLCHAIN_BY_NAME[ref.toolchain]
    if a.compiler != b.compiler:
        return "compiler"
    other_arch, other_opt = a.arch != b.arch, build.opt != ref.opt
    if other_arch and other_opt:
        return "arch+opt"
    if other_arch:
        return "arch"
    if other_opt:
        return "opt"
    return "version"


def query_group(build: Build, known: Iterable[str], refs: Sequence[Build]) -> str:
    """The group of a query: ``stranger`` when its family is not stored, else how it differs
    from the nearest stored build of its family (order of :data:`GROUPS`)."""
    if build.family not in set(known):
        return "stranger"
    own = [r for r in refs if r.family == build.family]
    if not own:
        raise ValueError(f"known family {build.family} has no reference build")
    return min((_group_vs(build, r) for r in own), key=GROUPS.index)


def make_queries(builds: Iterable[Build], known: Iterable[str], refs: Sequence[Build]
                 ) -> list[Query]:
    """Every build that is not stored, with its group and expected answer."""
    known_set, stored = set(known), set(refs)
    out = []
    for b in builds:
        if b in stored:
            continue
        group = query_group(b, known_set, refs)
        out.append(Query(b, group, None if group == "stranger" else b.family))
    return out


# ---- verdicts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One query's verdict, reduced to what the metrics need (JSON: ``to_dict``)."""

    name: str
    toolchain: str  # Build.toolchain (its Toolchain says compiler, arch, format)
    fold: str  # the stored families, "+"-joined
    group: str
    expected: str | None
    family: str | None  # verdict family (None: unknown)
    actor: str | None
    status: str  # "attributed" | "weak" | "unknown"
    confidence: float | None  # the verdict's confidence (None when it has none)
    score: float
    runner_up: float  # second family's score (0 when none)
    n_functions: int  # query functions / considered / library / top family matched
    n_considered: int
    n_library: int
    n_matched: int
    seconds: float
    reason: str | None = None
    candidate: str | None = None  # the leading family of a weak or tied verdict

    @property
    def attributed(self) -> bool:
        return self.status == "attributed" and self.family is not None

    @property
    def correct(self) -> bool:
        """Right answer: the expected family attributed, or "unknown"/"weak" for a stranger."""
        if self.expected is None:
            return not self.attributed
        return self.attributed and self.family == self.expected

    @property
    def false_attribution(self) -> bool:
        return self.attributed and self.family != self.expected

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def to_row(self) -> list[Any]:
        """Values in :data:`OUTCOME_COLUMNS` order, floats to 4 decimals; the reason only for
        attributed and weak verdicts (an "unknown" reason repeats the score)."""
        row: list[Any] = []
        for k in OUTCOME_COLUMNS:
            v = getattr(self, k)
            if isinstance(v, float):
                v = round(v, 4)
            if k == "reason" and self.status == "unknown":
                v = None
            row.append(v)
        return row


OUTCOME_COLUMNS: tuple[str, ...] = tuple(Outcome.__dataclass_fields__)


def dump_results(results: dict[str, Any], rows: Sequence[list[Any]]) -> str:
    """The results as indented JSON with ``queries`` as one compact row per line."""
    head = json.dumps({**results, "query_columns": list(OUTCOME_COLUMNS), "queries": []},
                      indent=1)
    body = ",\n".join("  " + json.dumps(r) for r in rows)
    cut = head.rindex('"queries": []')
    return head[:cut] + '"queries": [\n' + body + "\n ]" + head[cut + len('"queries": []'):] + "\n"


def verdict_status(verdict: Any) -> str:
    """``attributed`` / ``weak`` / ``unknown`` from a Verdict of either shape."""
    family = getattr(verdict, "family", None)
    status = getattr(verdict, "status", None)
    status = getattr(status, "value", status)  # VerdictStatus is a str enum
    if status in ("weak", "unknown"):
        return str(status)  # a weak verdict has family None and names a ``candidate``
    return "attributed" if family is not None else "unknown"


def outcome_of(query: Query, result: Any, seconds: float, fold: str = "") -> Outcome:
    """Reduce a :class:`kinship.match.result.MatchResult` to an :class:`Outcome`."""
    v = result.verdict
    conf = getattr(v, "confidence", None)
    fams = list(getattr(result, "families", []))
    top = fams[0] if fams else None
    return Outcome(
        name=query.build.name, toolchain=query.build.toolchain, fold=fold, group=query.group,
        expected=query.expected,
        family=getattr(v, "family", None), actor=getattr(v, "actor", None),
        status=verdict_status(v),
        confidence=None if conf is None else float(conf),
        score=float(getattr(v, "score", 0.0) or 0.0),
        runner_up=float(fams[1].score) if len(fams) > 1 else 0.0,
        n_functions=int(getattr(result, "n_query_functions", 0)),
        n_considered=int(getattr(result, "n_considered_functions", 0)),
        n_library=int(getattr(result, "n_library_functions", 0)),
        n_matched=int(top.n_functions_matched) if top is not None else 0,
        seconds=round(seconds, 3),
        reason=getattr(v, "reason", None) or None,
        candidate=getattr(v, "candidate", None),
    )


# ---- metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMetrics:
    group: str
    n: int
    top1: float  # right answer (family, or "unknown" for strangers)
    false_attribution: float  # attributed to a wrong family (strangers: to any family)
    unknown: float  # verdict "unknown"
    weak: float  # verdict "weak"
    n_false: int
    weak_right: float = math.nan  # "weak" naming the expected family as its candidate

    def to_dict(self) -> dict[str, Any]:
        return {k: ((None if math.isnan(v) else round(v, 4)) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


def group_metrics(group: str, outcomes: Sequence[Outcome]) -> GroupMetrics:
    n = len(outcomes)

    def rate(k: int) -> float:
        return k / n if n else math.nan

    n_false = sum(o.false_attribution for o in outcomes)
    return GroupMetrics(
        group=group, n=n,
        top1=rate(sum(o.correct for o in outcomes)),
        false_attribution=rate(n_false),
        unknown=rate(sum(o.status == "unknown" for o in outcomes)),
        weak=rate(sum(o.status == "weak" for o in outcomes)),
        n_false=n_false,
        weak_right=rate(sum(o.status == "weak" and o.expected is not None
                            and o.candidate == o.expected for o in outcomes)),
    )


def fold_rows(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Per fold (store): known-query top-1, stranger false attributions, and the families the
    strangers were given (the shape of the failure)."""
    rows = []
    for fold in dict.fromkeys(o.fold for o in outcomes):
        mine = [o for o in outcomes if o.fold == fold]
        known = group_metrics("known", [o for o in mine if o.expected is not None])
        strangers = [o for o in mine if o.expected is None]
        given: dict[str, int] = {}
        for o in strangers:
            if o.false_attribution and o.family is not None:
                given[o.family] = given.get(o.family, 0) + 1
        rows.append({"fold": fold, "n_families": len(fold.split("+")),
                     "known_n": known.n, "known_top1": known.to_dict()["top1"],
                     "known_false": known.n_false, "strangers_n": len(strangers),
                     "strangers_false": sum(o.false_attribution for o in strangers),
                     "strangers_given": given})
    return rows


def summarise(outcomes: Sequence[Outcome]) -> tuple[list[GroupMetrics], Calibration]:
    """Per-group metrics (GROUPS order, then "known" and "all") and the calibration of the
    attributed verdicts."""
    rows = [group_metrics(g, [o for o in outcomes if o.group == g]) for g in GROUPS]
    rows = [r for r in rows if r.n]
    for fmt in ("pe", "elf"):
        mine = [o for o in outcomes if o.group == "stranger"
                and TOOLCHAIN_BY_NAME[o.toolchain].fmt == fmt]
        if mine:
            rows.append(group_metrics(f"stranger, {fmt.upper()}", mine))
    rows.append(group_metrics("known (all rebuilds)",
                              [o for o in outcomes if o.expected is not None]))
    rows.append(group_metrics("all", outcomes))
    attributed = [o for o in outcomes if o.attributed and o.confidence is not None]
    cal = calibrate([o.confidence for o in attributed if o.confidence is not None],
                    [o.family == o.expected for o in attributed])
    return rows, cal


# ---- building ---------------------------------------------------------------------------


def _run(cmd: Sequence[str], cwd: Path) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                          timeout=MAX_TOOL_SECONDS, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def tool_version(cmd: str) -> str:
    try:
        out = _run([cmd, "--version"], Path.cwd())
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return out.splitlines()[0].strip() if out else "unknown"


def available_toolchains(wanted: Iterable[str]) -> tuple[list[Toolchain], dict[str, str]]:
    """The toolchains that compile and link a probe here, and why the others do not."""
    ok: list[Toolchain] = []
    missing: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text('#include <stdio.h>\nint main(void) { return puts("x") < 0; }\n')
        for name in wanted:
            tc = TOOLCHAIN_BY_NAME[name]
            if shutil.which(tc.cc[0]) is None or shutil.which(tc.strip[0]) is None:
                missing[name] = f"{tc.cc[0]} or {tc.strip[0]} not installed"
                continue
            try:
                _run([*tc.cc, "probe.c", "-o", "probe.out", *tc.link_flags], Path(tmp))
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
                missing[name] = f"probe does not link: {str(e)[:200]}"
                continue
            ok.append(tc)
    return ok, missing


def build_flags(b: Build) -> list[str]:
    flags = [b.opt]
    if b.version == "v2":
        flags.append("-DVERSION2")
    return flags


def build_key(b: Build, versions: dict[str, str]) -> str:
    """Hash of everything a build depends on: sources, flags, compiler and strip versions."""
    tc = TOOLCHAIN_BY_NAME[b.toolchain]
    h = hashlib.sha256()
    for s in FAMILY_BY_NAME[b.family].sources:
        h.update(s.encode() + b"\0" + (SRC_DIR / s).read_bytes() + b"\0")
    for part in (*tc.cc, *build_flags(b), *tc.link_flags, *tc.strip,
                 versions.get(tc.cc[0], ""), versions.get(tc.strip[0], "")):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def compile_one(b: Build, cache: Path, versions: dict[str, str]) -> Path:
    """The stripped build ``b`` in ``cache`` (compiled and stripped unless already there)."""
    tc = TOOLCHAIN_BY_NAME[b.toolchain]
    out = cache / f"{b.name}.{build_key(b, versions)}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        raw = Path(tmp) / b.name
        srcs = [str(SRC_DIR / s) for s in FAMILY_BY_NAME[b.family].sources]
        _run([*tc.cc, *build_flags(b), *srcs, "-o", str(raw), *tc.link_flags], Path(tmp))
        stripped = Path(tmp) / "stripped"
        _run([*tc.strip, str(raw), "-o", str(stripped)], Path(tmp))
        stripped.replace(out)  # same folder: atomic, so a killed run leaves no half file
    return out


def compile_all(builds: Sequence[Build], cache: Path, jobs: int,
                progress: Callable[[str], None]) -> dict[Build, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    versions = {cmd: tool_version(cmd) for tc in TOOLCHAINS for cmd in (tc.cc[0], tc.strip[0])}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        paths = list(pool.map(lambda b: compile_one(b, cache, versions), builds))
    progress(f"{len(builds)} builds ready in {time.perf_counter() - t0:.1f} s ({cache})")
    return dict(zip(builds, paths, strict=True))


# ---- one fold ---------------------------------------------------------------------------


def analyse_all(builds: Sequence[Build], paths: dict[Build, Path],
                progress: Callable[[str], None]) -> tuple[dict[Build, Any], dict[Build, float]]:
    """Every build analysed once (``Kinship.analyse(keep=False)``, the first half of
    ``Kinship.match``; it does not depend on the store), with its analysis seconds."""
    from kinship.api import Kinship

    t0 = time.perf_counter()
    samples: dict[Build, Any] = {}
    seconds: dict[Build, float] = {}
    with tempfile.TemporaryDirectory(prefix="kinship-small-") as tmp, \
            Kinship(Path(tmp) / "kinship.db") as k:
        for b in builds:
            t1 = time.perf_counter()
            samples[b] = k.analyse(paths[b], keep=False)
            seconds[b] = time.perf_counter() - t1
    progress(f"{len(builds)} builds analysed in {time.perf_counter() - t0:.1f} s")
    return samples, seconds


def run_fold(known: Sequence[str], builds: Sequence[Build], paths: dict[Build, Path],
             progress: Callable[[str], None],
             analysed: tuple[dict[Build, Any], dict[Build, float]] | None = None,
             ) -> list[Outcome]:
    """Store the reference builds of ``known`` in a fresh store; query every other build.

    With ``analysed`` (from :func:`analyse_all`) a query is ``Kinship.match_analysed`` on the
    build's analysis (what ``Kinship.match`` does after analysing; the analysis seconds are
    added to the query's time); without it, ``Kinship.match`` on the file."""
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    available = set(builds)
    refs = [r for r in reference_builds(known) if r in available]
    queries = make_queries(builds, known, refs)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="kinship-small-") as tmp, \
            Kinship(Path(tmp) / "kinship.db") as k:
        for r in refs:
            fam = FAMILY_BY_NAME[r.family]
            rep = k.add([paths[r]], Labels(family=fam.name, actor=fam.actor,
                                           source=f"small-programs bench reference {r.name}",
                                           first_seen=REFERENCE_FIRST_SEEN,
                                           version=r.version))
            if rep.failed:
                raise RuntimeError(f"ingest of {r.name} failed: {rep.failed}")
        progress(f"fold {'/'.join(known)}: {len(refs)} references stored, "
                 f"{len(queries)} queries")
        for q in queries:
            t0 = time.perf_counter()
            if analysed is not None:
                result = k.match_analysed(analysed[0][q.build])
                extra = analysed[1][q.build]
            else:
                result, extra = k.match(paths[q.build]), 0.0
            outcomes.append(outcome_of(q, result, time.perf_counter() - t0 + extra,
                                       "+".join(known)))
    return outcomes


# ---- report -----------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def render(results: dict[str, Any]) -> str:
    lines = [f"## small programs, no library corpus ({results['date']}, "
             f"{results.get('engine', 'git ' + results['git'])}, {results['n_queries']} queries)",
             "",
             "| group | n | top-1 | false attribution | unknown | weak (right candidate) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for g in results["groups"]:
        lines.append(f"| {g['group']} | {g['n']} | {_pct(g['top1'])} | "
                     f"{_pct(g['false_attribution'])} ({g['n_false']}) | {_pct(g['unknown'])} | "
                     f"{_pct(g['weak'])} ({_pct(g.get('weak_right'))}) |")
    lines += ["", "| store (fold) | known top-1 | known wrong | strangers falsely attributed |",
              "| --- | --- | --- | --- |"]
    for f in results["folds"]:
        given = ", ".join(f"{k} {v}" for k, v in sorted(f["strangers_given"].items()))
        lines.append(f"| {f['fold']} | {_pct(f['known_top1'])} ({f['known_n']}) | "
                     f"{f['known_false']} | {f['strangers_false']}/{f['strangers_n']}"
                     f"{' (' + given + ')' if given else ''} |")
    cal = results["calibration"]
    ece = "-" if cal["ece"] is None else f"{cal['ece']:.3f}"
    brier = "-" if cal["brier"] is None else f"{cal['brier']:.3f}"
    lines += ["", f"calibration of {cal['n']} attributed verdicts: ECE (10 bins) {ece} "
              f"(target <= {TARGET_ECE}), Brier {brier}, accuracy "
              f"{'-' if cal['accuracy'] is None else format(cal['accuracy'], '.3f')}, "
              f"mean confidence "
              f"{'-' if cal['mean_confidence'] is None else format(cal['mean_confidence'], '.3f')}"]
    t = results["targets"]
    lines.append(f"targets: strangers falsely attributed {t['stranger_false_attributions']} "
                 f"(target 0: {'met' if t['stranger_fa_met'] else 'NOT met'}); ECE "
                 f"{'met' if t['ece_met'] else 'NOT met'}")
    return "\n".join(lines)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class SmallConfig:
    quick: bool = False
    tag: str = ""  # appended to the output names ("before", ...)
    engine: str = ""  # which kinship is measured, for people (default: "git <rev>")
    cache_dir: Path = DEFAULT_CACHE
    jobs: int = 2  # parallel compiles
    folds: tuple[tuple[str, ...], ...] = field(default_factory=lambda: FOLDS)
    write_docs_img: bool | None = None  # default: full runs only


def run_small(cfg: SmallConfig, progress: Callable[[str], None] = _progress) -> dict[str, Any]:
    t0 = time.perf_counter()
    wanted = QUICK_TOOLCHAINS if cfg.quick else tuple(t.name for t in TOOLCHAINS)
    toolchains, missing = available_toolchains(wanted)
    for name, why in missing.items():
        progress(f"toolchain {name} left out: {why}")
    folds = QUICK_FOLDS if cfg.quick else cfg.folds
    families = sorted({f for fold in folds for f in fold} | {f.name for f in FAMILIES})
    builds = all_builds(families, [t.name for t in toolchains],
                        QUICK_OPTS if cfg.quick else OPTS)
    paths = compile_all(builds, cfg.cache_dir, cfg.jobs, progress)
    analysed = analyse_all(builds, paths, progress)
    outcomes: list[Outcome] = []
    for known in folds:
        outcomes += run_fold(known, builds, paths, progress, analysed)
    groups, cal = summarise(outcomes)
    strangers_fa = sum(o.false_attribution for o in outcomes if o.group == "stranger")
    try:
        import kinship

        kversion = getattr(kinship, "__version__", "?")
        kpath = str(Path(kinship.__file__ or "?").parent)
    except ImportError:  # pragma: no cover - the bench needs kinship anyway
        kversion = kpath = "?"
    suffix = ("-quick" if cfg.quick else "") + (f"-{cfg.tag}" if cfg.tag else "")
    results: dict[str, Any] = {
        "command": "python -m bench small" + (" --quick" if cfg.quick else "")
                   + (f" --tag {cfg.tag}" if cfg.tag else ""),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "date": date.today().isoformat(),
        "git": git_head(),
        "kinship": kversion,
        "kinship_path": kpath,  # the engine measured (another checkout than git's: say so)
        "engine": cfg.engine or f"git {git_head()} working tree",
        "protocol": {
            "folds": [list(f) for f in folds],
            "families": {f.name: {"actor": f.actor, "kind": f.kind} for f in FAMILIES},
            "toolchains": [t.name for t in toolchains],
            "toolchains_missing": missing,
            "opts": list(QUICK_OPTS if cfg.quick else OPTS),
            "versions": list(VERSIONS),
            "reference_builds": [list(r) for r in REFERENCE_BUILDS],
            "store": "fresh SQLite store per fold, default options, no --library corpus",
        },
        "compilers": {cmd: tool_version(cmd) for tc in toolchains for cmd in (tc.cc[0],)},
        "n_builds": len(builds),
        "n_queries": len(outcomes),
        "groups": [g.to_dict() for g in groups],
        "folds": fold_rows(outcomes),
        "calibration": cal.to_dict(),
        "targets": {
            "stranger_false_attributions": strangers_fa,
            "stranger_fa_met": strangers_fa <= TARGET_STRANGER_FA,
            "ece": None if math.isnan(cal.ece) else round(cal.ece, 4),
            "ece_met": (not math.isnan(cal.ece) and cal.ece <= TARGET_ECE) or cal.n == 0,
        },
    }
    results["seconds"] = round(time.perf_counter() - t0, 1)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{results['date']}-small{suffix}.json"
    out.write_text(dump_results(results, [o.to_row() for o in outcomes]), encoding="utf-8")
    pngs = [RESULTS_DIR / f"{results['date']}-small{suffix}-reliability.png"]
    docs_img = cfg.write_docs_img if cfg.write_docs_img is not None else not cfg.quick
    if docs_img:
        pngs.append(DOCS_IMG / f"small_reliability{('-' + cfg.tag) if cfg.tag else ''}.png")
    title = (f"small programs, no library corpus ({results['date']}, "
             f"{results['engine']})")
    written = plot_reliability(cal, title, pngs)
    print(render(results))
    progress(f"wrote {out}" + "".join(f", {p}" for p in written)
             + f" ({results['seconds']} s)")
    return results
