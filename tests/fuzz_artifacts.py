"""Fuzz target for what ``kinship add`` and ``kinship artifact`` read: zips (plain, AES and
ZipCrypto "infected"), e-mails, OOXML and OLE documents (issue #10).

    python tests/fuzz_artifacts.py --seconds 60 --seed 1 [--json] [--findings DIR]
    python -m tests.fuzz_artifacts --seconds 60 --seed 1          (from the repository root)
    python tests/fuzz_artifacts.py --replay DIR/crash-*.eml --target artifact

Inputs come from :mod:`fuzz_inputs` (seeds built in code, a seeded mutator): input ``i`` of
seed ``S`` is the same bytes everywhere. Each runs in a long-lived child process, so a hang or
a memory blow-up costs the child, not the run:

    parent ── JSON line {path, target} ──> child (RLIMIT_AS, faulthandler on SIGUSR1)
           <── JSON line {outcome, seconds, rss_mb, error ...} ──
    over --timeout of CPU (or 3x that of wall time): SIGUSR1 (the child prints its stack),
    SIGKILL, restart: "hang"

Targets, each the library call the CLI makes (and the rendering it does after):

    add       kinship.ingest.add_inputs(MemoryStore, expand([file])), report rendered; the
              analysis's own catch-all ("internal error while analysing") is seen through, so
              a parser bug counts as a crash here even where the batch would survive it
    artifact  kinship.artifacts.analyze.analyze_file with a store attributor (one reference
              sample), then render_artifact and to_dict -> JSON

Outcomes: ok; rejected (a :class:`kinship.exceptions.KinshipError`: the expected answer to a
bad file); crash (any other exception, or the child dying of a signal), grouped by type and
the innermost kinship frame; hang (over --timeout); memory (MemoryError, the child killed, or
a peak RSS over --max-rss-mb). Peak RSS per input is VmHWM, reset before each input through
/proc/self/clear_refs. The smallest input of each crash, hang and memory signature is saved
under --findings with a findings.json beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:  # pytest and `python tests/fuzz_artifacts.py` have tests/ on sys.path
    import fuzz_inputs
except ModuleNotFoundError:  # python -m tests.fuzz_artifacts
    from tests import fuzz_inputs  # type: ignore[no-redef]

FuzzInput = fuzz_inputs.FuzzInput
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 10.0  # issue #10: no input under 2 MB may cost more than 10 s ...
WALL_FACTOR = 3.0  # ... of CPU; a child that answers nothing in 3x that wall time is hung
DEFAULT_MAX_RSS_MB = 1024  # ... or 1 GiB
DEFAULT_MEMORY_MB = 1536  # RLIMIT_AS of the child: a runaway allocation fails, not the box
RESTART_EVERY = 300  # inputs per child (bounds what leaks between inputs)
RESTART_RSS_MB = 600  # a child that stays this big after an input is replaced
START_TIMEOUT_S = 180.0  # child imports on a loaded machine
ADD_SHARE = 0.4  # of zip/OOXML inputs, the share that goes to `add` (the rest: `artifact`)
OUTCOMES = ("ok", "rejected", "crash", "hang", "memory")


# ---- results --------------------------------------------------------------------------------
@dataclass
class Finding:
    """One crash, hang or memory signature: how often, and its smallest input."""

    signature: str
    outcome: str
    error_type: str
    place: str  # innermost kinship frame ("kinship/binary/archive.py:97 in iter_archive")
    last_frame: str  # innermost frame of all (often the standard library)
    message: str
    count: int = 0
    size: int = 0  # of the smallest input seen
    saved: str = ""
    target: str = ""
    kind: str = ""
    name: str = ""
    input_id: str = ""  # "seed S input I" or the replayed file
    recipe: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_mb: float = 0.0
    traceback: str = ""


@dataclass
class Summary:
    seed: int | None = None
    inputs: int = 0
    ok: int = 0
    rejected: int = 0
    crashes: int = 0
    hangs: int = 0
    over_memory: int = 0
    max_rss_mb: float = 0.0
    max_rss_input: str = ""
    max_seconds: float = 0.0
    max_seconds_input: str = ""
    inputs_per_second: float = 0.0
    seconds: float = 0.0
    child_starts: int = 0
    rss_method: str = ""
    findings_dir: str = ""
    by_target: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected_by_type: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.crashes or self.hangs or self.over_memory)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crash_types"] = {f.signature: f.count for f in self.findings if f.outcome == "crash"}
        d["clean"] = self.clean
        return d

    def report(self) -> str:
        """Counts, then one block per finding (type, place, count, smallest saved input)."""
        lines = [f"{self.inputs} inputs in {self.seconds:.0f} s ({self.inputs_per_second:.1f}/s,"
                 f" seed {self.seed}): {self.ok} ok, {self.rejected} rejected, {self.crashes} "
                 f"crashes, {self.hangs} hangs, {self.over_memory} over memory; peak RSS "
                 f"{self.max_rss_mb:.0f} MB ({self.rss_method}), slowest "
                 f"{self.max_seconds:.2f} s; findings in {self.findings_dir}"]
        for f in self.findings:
            lines.append(f"  {f.outcome.upper()} x{f.count} {f.signature}\n"
                         f"      {f.message[:200]}\n"
                         f"      smallest: {f.size} bytes, {f.kind} via {f.target}: {f.saved}"
                         f"  ({f.input_id}; {' > '.join(f.recipe)})")
        return "\n".join(lines)


# ---- the child ------------------------------------------------------------------------------
def _short(filename: str) -> str:
    """A frame's file without the machine: ``kinship/...``, ``zipfile.py``, ``pkg/...``."""
    for marker in ("/src/kinship/", "/site-packages/kinship/"):
        if marker in filename:
            return "kinship/" + filename.split(marker, 1)[1]
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1]
    return Path(filename).name


def _frames(tb: list[traceback.FrameSummary]) -> tuple[str, str]:
    """(innermost kinship frame, innermost frame), each "file:line in function"."""
    places = [f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in tb]
    own = [p for p in places if p.startswith("kinship/")]
    return (own[-1] if own else "", places[-1] if places else "")


def _error(outcome: str, e: BaseException) -> dict[str, Any]:
    place, last = _frames(traceback.extract_tb(e.__traceback__))
    kind = type(e)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    return {"outcome": outcome, "error_type": name, "message": repr(str(e))[:500],
            "place": place, "last_frame": last,
            "traceback": "".join(traceback.format_exception(e))[-6000:]}


class _Targets:
    """The library calls the CLI makes, set up once per child."""

    def __init__(self, db: str) -> None:
        self._db = db
        self._stack = contextlib.ExitStack()
        self._attributor: Any = None
        self._internal: list[BaseException] = []
        import kinship.ingest as ingest

        real = ingest.analyse  # type: ignore[attr-defined]

        def recording(item: Any, **kw: Any) -> Any:
            # add_inputs turns a parser bug into a Failure ("internal error while analysing");
            # remember it so that the fuzz counts it as the crash it is.
            try:
                return real(item, **kw)
            except Exception as e:
                from kinship.exceptions import KinshipError

                if not isinstance(e, KinshipError):
                    self._internal.append(e)
                raise

        ingest.analyse = recording  # type: ignore[attr-defined]

    def call(self, target: str, path: Path) -> str | None:
        """Run ``target`` on ``path``; the first rejection's type, or None when all was ok."""
        if target == "add":
            return self.add(path)
        if target == "artifact":
            return self.artifact(path)
        if target == "selftest":
            return selftest(path)
        module, _, func = target.partition(":")
        fn: Callable[[Path], str | None] = getattr(__import__(module, fromlist=[func]), func)
        return fn(path)

    def add(self, path: Path) -> str | None:
        import io

        from rich.console import Console

        from kinship.ingest import add_inputs, expand
        from kinship.pipeline import Labels
        from kinship.render import terminal
        from kinship.store.memory import MemoryStore

        self._internal.clear()
        report = add_inputs(MemoryStore(), expand([path], Labels(family="fuzz")))
        if self._internal:
            raise self._internal[0]
        terminal.render_add(Console(file=io.StringIO(), force_terminal=True, width=120),
                            report)
        json.dumps(report.to_dict())
        # a batch that stored something is a result (exit 7 lists the rest), not a rejection
        return report.failed[0].error if report.failed and not report.added else None

    def artifact(self, path: Path) -> str | None:
        import io

        from rich.console import Console

        from kinship.api import open_attributor
        from kinship.artifacts.analyze import analyze_file
        from kinship.render.artifact import render_artifact

        if self._attributor is None:
            self._attributor = self._stack.enter_context(open_attributor(self._db or None))
        result = analyze_file(path, attributor=self._attributor)
        render_artifact(Console(file=io.StringIO(), force_terminal=True, width=120,
                                highlight=False, soft_wrap=False), result)
        json.dumps(result.to_dict())
        errors = [n.error for n in result.walk() if n.error]
        return "nested: " + errors[0][:80] if errors else None


def selftest(path: Path) -> str | None:
    """A target that misbehaves on request, to prove the harness notices: the input's bytes
    say CRASH (ValueError), HANG (sleeps), BALLOON (allocates 8 GiB: MemoryError under the
    RLIMIT_AS), GROW (touches 400 MiB), REJECT (InputError) or SEGV (dies of a signal)."""
    from kinship.exceptions import InputError

    data = path.read_bytes()
    if b"CRASH" in data:
        raise ValueError("selftest crash")
    if b"HANG" in data:
        time.sleep(3600)
    if b"BALLOON" in data:
        balloon = bytearray(8 << 30)
        return str(len(balloon))
    if b"GROW" in data:
        grown = b"\x01" * (400 << 20)
        return None if grown else "empty"
    if b"REJECT" in data:
        raise InputError(str(path), "selftest rejection")
    if b"SEGV" in data:
        os.kill(os.getpid(), signal.SIGSEGV)
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_main(db: str, memory_mb: int) -> None:
    """Serve requests on stdin, answer on the original stdout (kinship's own prints and logs
    go to stderr, the child's log file)."""
    import faulthandler
    import logging
    import resource
    import warnings

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    faulthandler.enable(file=sys.stderr)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    logging.getLogger().addHandler(logging.NullHandler())  # no lastResort spam on stderr
    warnings.simplefilter("ignore")
    targets = _Targets(db)
    peak_ok = _reset_peak()
    proto.write(json.dumps({"ready": os.getpid(),
                            "rss_method": "VmHWM" if peak_ok else "ru_maxrss"}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        print(f"=== input {req['id']}", file=sys.stderr, flush=True)
        if peak_ok:
            peak_ok = _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        out: dict[str, Any] = {"outcome": "ok"}
        try:
            rejected = targets.call(req["target"], Path(req["path"]))
            if rejected:
                out = {"outcome": "rejected", "error_type": rejected}
        except MemoryError as e:
            out = _error("memory", e)
        except Exception as e:
            from kinship.exceptions import KinshipError

            out = ({"outcome": "rejected", "error_type": type(e).__name__}
                   if isinstance(e, KinshipError) else _error("crash", e))
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        if peak_ok:
            out["rss_mb"] = _status_mb("VmHWM")
        else:
            out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["rss_now_mb"] = _status_mb("VmRSS")
        proto.write(json.dumps(out) + "\n")


# ---- the parent -----------------------------------------------------------------------------
class _Child:
    """One child process and its line protocol; restarted after a hang, a death or a while."""

    def __init__(self, workdir: Path, db: str, memory_mb: int) -> None:
        self.workdir, self.db, self.memory_mb = workdir, db, memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.served = 0
        self.starts = 0
        self.rss_method = ""
        self._buf = b""
        self.log_path = workdir / "child.log"

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
                   KINSHIP_HOME=str(self.workdir / "home"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", "--db", self.db,
                 "--memory-mb", str(self.memory_mb)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT,
                env=env)
        self._buf = b""
        self.served = 0
        self.starts += 1
        hello = self._read_line(START_TIMEOUT_S)
        if hello is None or "ready" not in hello:
            self.stop()
            raise RuntimeError(f"fuzz child did not start: {self._log_tail(0)[-2000:]}")
        self.rss_method = str(hello["rss_method"])

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line; None on timeout; {"died": returncode} when the child exits."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"died": self.proc.wait()}
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def _cpu_seconds(self) -> float:
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def _log_tail(self, start: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                return fh.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def run(self, input_id: str, path: Path, target: str, timeout: float) -> dict[str, Any]:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        log_at = self.log_path.stat().st_size
        cpu0 = self._cpu_seconds()
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"id": input_id, "path": str(path),
                                          "target": target}).encode() + b"\n")
        self.proc.stdin.flush()
        # The budget is CPU time (a loaded CI box stretches wall time), with a wall-clock
        # backstop for inputs that block without computing.
        res = None
        while res is None:
            res = self._read_line(0.5)
            cpu = self._cpu_seconds() - cpu0
            if res is None and (cpu >= timeout
                                or time.perf_counter() - t0 >= WALL_FACTOR * timeout):
                break
        self.served += 1
        if res is None:  # hang: ask for its stack, then kill it
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            self.stop()
            stack = self._log_tail(log_at)
            return {"outcome": "hang", "error_type": "Timeout", "seconds":
                    time.perf_counter() - t0, "cpu_seconds": cpu, "place": _stack_place(stack),
                    "last_frame": "", "message": f"no answer after {cpu:.1f} s CPU, "
                    f"{time.perf_counter() - t0:.0f} s wall", "traceback": stack[-6000:]}
        if "died" in res:
            rc = int(res["died"])
            self.stop()
            stack = self._log_tail(log_at)
            sig = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else ""
            killed = rc == -signal.SIGKILL  # the out-of-memory killer's signal
            return {"outcome": "memory" if killed else "crash",
                    "error_type": f"ChildDied({sig or rc})", "seconds": time.perf_counter() - t0,
                    "place": _stack_place(stack), "last_frame": "",
                    "message": f"child exited with {sig or rc}", "traceback": stack[-6000:]}
        if (res["outcome"] == "memory" or self.served >= RESTART_EVERY
                or float(res.get("rss_now_mb", 0)) > RESTART_RSS_MB):
            self.stop()
        return res


def _stack_place(stack: str) -> str:
    """Innermost kinship frame of a faulthandler dump (it lists the innermost first), else
    its innermost frame."""
    frames = [f"{_short(m.group(1))}:{m.group(2)} in {m.group(3)}"
              for m in re.finditer(r'File "([^"]+)", line (\d+) in (\S+)', stack)]
    own = [f for f in frames if f.startswith("kinship/")]
    return own[0] if own else frames[0] if frames else ""


def _disk_name(name: str) -> str:
    """The input's name as a file name (hostile characters kept: they are under test),
    without '/' and NUL, at most ~150 bytes, suffix kept (detect_kind reads it)."""
    clean = name.replace("/", "_").replace("\0", "_") or "input"
    suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(clean).suffix)[:8]
    stem = clean[: len(clean) - len(Path(clean).suffix)] if suffix else clean
    stem = stem.encode("utf-8", "replace")[:140].decode("utf-8", "ignore") or "input"
    return stem + suffix if stem not in (".", "..") else "input" + suffix


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:70]


def classify(res: dict[str, Any], max_rss_mb: float) -> dict[str, Any]:
    """``res`` with a finished input over ``max_rss_mb`` peak RSS turned into "memory"."""
    rss = float(res.get("rss_mb", 0.0))
    if res["outcome"] in ("ok", "rejected") and rss > max_rss_mb:
        return {**res, "outcome": "memory", "error_type": "PeakRSS", "place": "",
                "last_frame": "", "message": f"peak RSS {rss:.0f} MB > {max_rss_mb:.0f} MB"}
    return res


def signature(res: dict[str, Any], inp: FuzzInput, target: str) -> tuple[str, str]:
    """("<error type> @ <place>", place): what makes two findings the same one."""
    place = str(res.get("place") or res.get("last_frame") or "")
    if res["outcome"] == "memory" and not place:
        place = f"{inp.kind} via {target}"
    return f"{res.get('error_type', '?')} @ {place or '?'}", place


class _Recorder:
    """Counts outcomes and keeps the smallest input of each finding signature on disk."""

    def __init__(self, summary: Summary, findings_dir: Path, max_rss_mb: float) -> None:
        self.summary, self.dir, self.max_rss_mb = summary, findings_dir, max_rss_mb
        self.by_sig: dict[str, Finding] = {}
        self.rejected: Counter[str] = Counter()

    def record(self, input_id: str, inp: FuzzInput, target: str, res: dict[str, Any]) -> str:
        s = self.summary
        res = classify(res, self.max_rss_mb)
        outcome = str(res["outcome"])
        rss = float(res.get("rss_mb", 0.0))
        secs = float(res.get("seconds", 0.0))
        s.inputs += 1
        per = s.by_target.setdefault(target, dict.fromkeys(OUTCOMES, 0))
        per[outcome] += 1
        if rss > s.max_rss_mb:
            s.max_rss_mb, s.max_rss_input = rss, input_id
        if secs > s.max_seconds:
            s.max_seconds, s.max_seconds_input = secs, input_id
        if outcome == "ok":
            s.ok += 1
        elif outcome == "rejected":
            s.rejected += 1
            self.rejected[str(res.get("error_type", ""))] += 1
        else:
            if outcome == "crash":
                s.crashes += 1
            elif outcome == "hang":
                s.hangs += 1
            else:
                s.over_memory += 1
            self._finding(input_id, inp, target, outcome, res)
        s.rejected_by_type = dict(self.rejected.most_common())
        return outcome

    def _finding(self, input_id: str, inp: FuzzInput, target: str, outcome: str,
                 res: dict[str, Any]) -> None:
        sig, place = signature(res, inp, target)
        f = self.by_sig.get(sig)
        if f is None:
            f = self.by_sig[sig] = Finding(sig, outcome, str(res.get("error_type", "")), place,
                                           str(res.get("last_frame", "")),
                                           str(res.get("message", "")))
            self.summary.findings.append(f)
        f.count += 1
        if f.saved and len(inp.data) >= f.size:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if f.saved:
            with contextlib.suppress(OSError):
                Path(f.saved).unlink()
        suffix = Path(_disk_name(inp.name)).suffix
        path = self.dir / f"{outcome}-{_slug(sig)}-{len(inp.data)}{suffix}"
        path.write_bytes(inp.data)
        f.size, f.saved, f.target, f.kind, f.name = len(inp.data), str(path), target, inp.kind, \
            inp.name
        f.input_id, f.recipe, f.message = input_id, list(inp.recipe), str(res.get("message", ""))
        f.seconds, f.rss_mb = float(res.get("seconds", 0.0)), float(res.get("rss_mb", 0.0))
        f.traceback = str(res.get("traceback", ""))
        self.save()

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "findings.json").write_text(json.dumps(self.summary.to_dict(), indent=1))


class Session:
    """A work folder and a child process that inputs are run in, one at a time."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB, db: str = "") -> None:
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="kinship-fuzz-")
        self.work = Path(self._tmp.name)
        (self.work / "home").mkdir()
        (self.work / "in").mkdir()
        self.child = _Child(self.work, db, memory_mb)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.child.stop()
        self._tmp.cleanup()

    def run(self, input_id: str, inp: FuzzInput, target: str) -> dict[str, Any]:
        for old in (self.work / "in").iterdir():
            old.unlink()
        path = self.work / "in" / _disk_name(inp.name)
        path.write_bytes(inp.data)
        return self.child.run(input_id, path, target, self.timeout)


def run_inputs(inputs: Iterable[tuple[str, FuzzInput, str]], *, findings_dir: Path,
               timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
               max_rss_mb: float = DEFAULT_MAX_RSS_MB, db: str = "",
               deadline: float | None = None, seed: int | None = None,
               progress: Callable[[str], None] | None = None) -> Summary:
    """Run each ``(input id, input, target)`` in the child until ``inputs`` ends or
    ``deadline`` (time.monotonic()) passes; ``target`` is "add", "artifact", "selftest" or
    "module:function" (a function of a Path, importable in the child)."""
    summary = Summary(seed=seed, findings_dir=str(findings_dir))
    recorder = _Recorder(summary, findings_dir, max_rss_mb)
    t0 = time.monotonic()
    with Session(timeout=timeout, memory_mb=memory_mb, db=db) as session:
        for input_id, inp, target in inputs:
            if deadline is not None and time.monotonic() > deadline:
                break
            res = session.run(input_id, inp, target)
            outcome = recorder.record(input_id, inp, target, res)
            if progress and outcome not in ("ok", "rejected"):
                progress(f"{input_id}: {outcome} {res.get('error_type')} "
                         f"{res.get('place') or res.get('last_frame')}")
        summary.child_starts = session.child.starts
        summary.rss_method = session.child.rss_method
    summary.seconds = time.monotonic() - t0
    summary.inputs_per_second = summary.inputs / summary.seconds if summary.seconds else 0.0
    recorder.save()
    return summary


def minimize(session: Session, inp: FuzzInput, target: str, *, seconds: float = 60.0,
             max_rss_mb: float = DEFAULT_MAX_RSS_MB) -> tuple[FuzzInput, str]:
    """The smallest input found by cutting chunks out of ``inp`` (halving their size) that
    still fails with the same signature; with that signature ("" when ``inp`` is fine)."""
    def sig_of(candidate: FuzzInput) -> str:
        res = classify(session.run("minimize", candidate, target), max_rss_mb)
        return signature(res, candidate, target)[0] if res["outcome"] in OUTCOMES[2:] else ""

    wanted = sig_of(inp)
    if not wanted:
        return inp, ""
    end = time.monotonic() + seconds
    data, chunk = inp.data, max(1, len(inp.data) // 2)
    while chunk >= 1 and time.monotonic() < end:
        at = 0
        while at < len(data) and time.monotonic() < end:
            cut = inp.derive("minimized", data[:at] + data[at + chunk:])
            if cut.data and sig_of(cut) == wanted:
                data = cut.data
            else:
                at += chunk
        chunk //= 2
    return inp.derive("minimized", data), wanted


# ---- fuzzing --------------------------------------------------------------------------------
def fixture_binaries() -> list[Path]:
    """Two small test executables (ELF, PE) from tests/fixtures, built if need be."""
    import importlib.util

    name = "kinship_tests_fixtures_build"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests/fixtures/build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    built = module.build_all(module.default_cache_dir())
    return [p for p in (built.get("netsh_elf64"), built.get("netsh_x86.exe")) if p]


def reference_store(binary: Path, where: Path) -> str:
    """An SQLite store holding ``binary`` (family "fuzz-ref"): executables found in the
    artifacts are then matched, as `kinship artifact --db` does."""
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    db = where / "ref.db"
    with Kinship(db, keep_files=False) as k:
        k.add([binary], Labels(family="fuzz-ref"))
    return str(db)


def pick_target(seed: int, index: int, inp: FuzzInput, target: str) -> str:
    """``target`` unless "auto": zips and OOXML go to `add` ADD_SHARE of the time (a docx
    given to `add` is a zip of non-executables), everything else to `artifact`."""
    if target != "auto":
        return target
    import random

    share = random.Random(f"kinship-fuzz-target:{seed}:{index}").random()
    return "add" if inp.kind in ("zip", "ooxml") and share < ADD_SHARE else "artifact"


def fuzz(seconds: float, seed: int, *, binaries: Sequence[Path] = (),
         findings_dir: Path | None = None, target: str = "auto",
         timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
         max_rss_mb: float = DEFAULT_MAX_RSS_MB, max_inputs: int | None = None,
         progress: Callable[[str], None] | None = None) -> Summary:
    """The seeds as they are, then mutants ``0, 1, 2, ...`` of ``seed``, for ``seconds``."""
    findings = findings_dir or Path(tempfile.mkdtemp(prefix="kinship-fuzz-findings-"))
    seeds = fuzz_inputs.build_seeds(binaries)
    deadline = time.monotonic() + seconds

    def inputs() -> Iterator[tuple[str, FuzzInput, str]]:
        n = 0
        for s in seeds:
            for t in (("add", "artifact") if s.kind in ("zip", "ooxml") else ("artifact",)):
                yield f"seed input {s.name}", s, t if target == "auto" else target
        index = 0
        while max_inputs is None or n < max_inputs:
            inp = fuzz_inputs.generate(seed, index, seeds)
            yield f"seed {seed} input {index}", inp, pick_target(seed, index, inp, target)
            index += 1
            n += 1

    with tempfile.TemporaryDirectory(prefix="kinship-fuzz-ref-") as tmp:
        db = reference_store(binaries[0], Path(tmp)) if binaries else ""
        return run_inputs(inputs(), findings_dir=findings, timeout=timeout,
                          memory_mb=memory_mb, max_rss_mb=max_rss_mb, db=db,
                          deadline=deadline, seed=seed, progress=progress)


def replay(files: Sequence[Path], target: str, *, findings_dir: Path,
           timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
           binaries: Sequence[Path] = ()) -> Summary:
    """Run saved inputs again (``target`` "auto": by their findings.json entry, else by
    their kind: zip-like to `add` and `artifact`, the rest to `artifact`)."""

    def inputs() -> Iterator[tuple[str, FuzzInput, str]]:
        for f, inp, targets in _saved(files, target):
            for t in targets:
                yield str(f), inp, t

    with tempfile.TemporaryDirectory(prefix="kinship-fuzz-ref-") as tmp:
        db = reference_store(binaries[0], Path(tmp)) if binaries else ""
        return run_inputs(inputs(), findings_dir=findings_dir, timeout=timeout,
                          memory_mb=memory_mb, db=db)


def _saved(files: Sequence[Path], target: str
           ) -> Iterator[tuple[Path, FuzzInput, list[str]]]:
    """Saved inputs with the targets to run them through (see :func:`replay`)."""
    known: dict[str, str] = {}
    for index in {f.parent / "findings.json" for f in files}:
        if index.is_file():
            for entry in json.loads(index.read_text()).get("findings", []):
                known[Path(entry["saved"]).name] = entry["target"]
    for f in files:
        data = f.read_bytes()
        inp = FuzzInput(f.name, data, "zip" if data.startswith(b"PK") else "file")
        yield f, inp, ([target] if target != "auto" else [known[f.name]] if f.name in known
                       else ["add", "artifact"] if inp.kind == "zip" else ["artifact"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    ap.add_argument("--seed", type=int, default=1, help="mutator seed (reproducible)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--findings", type=Path, help="where crashing inputs go (default: tmp)")
    ap.add_argument("--target", default="auto",
                    help="auto | add | artifact | selftest | module:function")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                    help="CPU seconds per input before it counts as a hang")
    ap.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                    help="RLIMIT_AS of the child, MiB (0: none)")
    ap.add_argument("--max-rss-mb", type=float, default=DEFAULT_MAX_RSS_MB,
                    help="peak RSS over this counts as over memory")
    ap.add_argument("--max-inputs", type=int, help="stop after this many mutants")
    ap.add_argument("--binary", type=Path, action="append",
                    help="executable to put in the seeds (default: tests/fixtures builds)")
    ap.add_argument("--replay", type=Path, nargs="+", help="run these saved inputs instead")
    ap.add_argument("--minimize", type=float, metavar="SECONDS",
                    help="with --replay: shrink each failing file, for SECONDS each")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.db, args.memory_mb)
        return 0
    binaries = args.binary if args.binary is not None else fixture_binaries()
    findings = args.findings or Path(tempfile.mkdtemp(prefix="kinship-fuzz-findings-"))
    if args.replay and args.minimize:
        return _minimize_files(args.replay, args.target, findings, args, binaries)
    if args.replay:
        summary = replay(args.replay, args.target, findings_dir=findings,
                         timeout=args.timeout, memory_mb=args.memory_mb, binaries=binaries)
    else:
        summary = fuzz(args.seconds, args.seed, binaries=binaries, findings_dir=findings,
                       target=args.target, timeout=args.timeout, memory_mb=args.memory_mb,
                       max_rss_mb=args.max_rss_mb, max_inputs=args.max_inputs,
                       progress=None if args.json else
                       lambda line: print(ascii(line), file=sys.stderr))
    print(json.dumps(summary.to_dict(), indent=1) if args.json else summary.report())
    return 0 if summary.clean else 1


def _minimize_files(files: Sequence[Path], target: str, out_dir: Path, args: Any,
                    binaries: Sequence[Path]) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kinship-fuzz-ref-") as tmp:
        db = reference_store(binaries[0], Path(tmp)) if binaries else ""
        with Session(timeout=args.timeout, memory_mb=args.memory_mb, db=db) as session:
            for f, inp, targets in _saved(files, target):
                small, sig = minimize(session, inp, targets[-1], seconds=args.minimize,
                                      max_rss_mb=args.max_rss_mb)
                dest = out_dir / f"min-{f.name}"
                if sig:
                    dest.write_bytes(small.data)
                print(ascii(f"{f} via {targets[-1]}: {sig or 'no finding'}: {len(inp.data)} "
                            f"-> {len(small.data)} bytes" + (f" {dest}" if sig else "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
