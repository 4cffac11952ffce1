"""EVTX parsing speed, PyPI ``evtx`` (Rust, what ``kinship logs`` uses) vs ``python-evtx``
(pure Python), and ``kinship logs`` cold vs with its Sigma rule cache.

``python -m bench.logs_bench [--samples DIR] [--rules DIR] [--out FILE]``

1. Parsers, same process, one after the other, over every ``*.evtx`` under ``--samples``
   (default ../shared/data/evtx-attack-samples): every record rendered as XML by both
   (``PyEvtxParser(path, number_of_threads=1).records()`` / ``Evtx.Evtx.Evtx(path).records()``
   + ``.xml()``), and the ``evtx`` JSON records kinship itself reads; each repeated in whole
   passes for at least :data:`MIN_SECONDS`. Both run on one thread (``evtx`` would use every
   core by default): events per CPU second is events/s per core. A file a parser cannot read
   is counted, never fatal.
2. With ``--rules`` (default ../shared/data/sigma-rules/rules/windows, skipped when absent):
   ``kinship logs SAMPLES --sigma-rules RULES --json`` twice in fresh processes with an empty
   ``KINSHIP_HOME`` (cold: every rule parsed and converted; then from the cache); wall seconds
   of each and whether the two JSON outputs are identical.

Writes ``bench/results/<date>-logs.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
MIN_SECONDS = 2.0  # each parser is timed over at least this long (whole passes)


def _evtx_xml(path: Path) -> Iterator[str]:
    from evtx import PyEvtxParser

    for rec in PyEvtxParser(str(path), number_of_threads=1).records():
        yield str(rec["data"])  # type: ignore[index,unused-ignore]


def _evtx_json(path: Path) -> Iterator[str]:
    from evtx import PyEvtxParser

    for rec in PyEvtxParser(str(path), number_of_threads=1).records_json():
        yield str(rec["data"])  # type: ignore[index,unused-ignore]


def _python_evtx_xml(path: Path) -> Iterator[str]:
    import Evtx.Evtx  # type: ignore[import-not-found,import-untyped,unused-ignore]

    with Evtx.Evtx.Evtx(str(path)) as log:
        for rec in log.records():
            yield rec.xml()


PARSERS: dict[str, Callable[[Path], Iterator[str]]] = {
    "evtx (Rust) XML": _evtx_xml,
    "evtx (Rust) JSON, as kinship reads": _evtx_json,
    "python-evtx XML": _python_evtx_xml,
}


def time_parser(parse: Callable[[Path], Iterator[str]], files: list[Path],
                min_seconds: float = MIN_SECONDS) -> dict[str, Any]:
    """Every file parsed, again until ``min_seconds`` have passed (a fast parser reads the
    data set in milliseconds); events, seconds and rates per pass."""
    passes = 0
    events = chars = 0
    errors: dict[str, str] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    while passes == 0 or time.perf_counter() - wall < min_seconds:
        passes += 1
        events = chars = 0
        for f in files:
            try:
                for text in parse(f):
                    events += 1
                    chars += len(text)
            except Exception as e:  # a parser that stops on a file: counted, the rest read
                errors[f.name] = f"{type(e).__name__}: {e}"[:200]
    wall = (time.perf_counter() - wall) / passes
    cpu = (time.process_time() - cpu) / passes
    return {"events": events, "chars": chars, "passes": passes, "seconds": round(wall, 4),
            "cpu_seconds": round(cpu, 4), "events_per_s": round(events / wall, 1),
            "events_per_cpu_s": round(events / cpu, 1) if cpu else None,
            "files_failed": len(errors), "errors": errors}


def time_cli(samples: Path, rules: Path) -> dict[str, Any]:
    """``kinship logs`` twice on an empty data home: cold, then from the rule cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    runs: list[dict[str, Any]] = []
    outputs: list[bytes] = []
    with tempfile.TemporaryDirectory() as home:
        env["KINSHIP_HOME"] = home
        for name in ("cold", "cached"):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "kinship.cli", "logs", str(samples),
                                "--sigma-rules", str(rules), "--json"],
                               env=env, capture_output=True, check=False)
            secs = time.perf_counter() - t
            outputs.append(p.stdout)
            doc = json.loads(p.stdout)
            runs.append({"run": name, "seconds": round(secs, 3), "exit": p.returncode,
                         "events": doc["events"], "detections": len(doc["detections"]),
                         "rules_loaded": doc["rules"]["loaded"],
                         "rules_evaluated": doc["rules"]["evaluated"]})
        entries = len(list((Path(home) / "cache" / "sigma").glob("*.json")))
    return {"runs": runs, "identical_json": outputs[0] == outputs[1],
            "cache_entries": entries,
            "speedup": round(runs[0]["seconds"] / runs[1]["seconds"], 2)}


def run(samples: Path, rules: Path | None) -> dict[str, Any]:
    files = sorted(samples.rglob("*.evtx"))
    parsers = {name: time_parser(fn, files) for name, fn in PARSERS.items()}
    rust, py = parsers["evtx (Rust) XML"], parsers["python-evtx XML"]
    res: dict[str, Any] = {
        "date": dt.date.today().isoformat(), "host": platform.node(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "samples": str(samples), "files": len(files), "parsers": parsers,
        "ratio_events_per_cpu_s": round(rust["events_per_cpu_s"] / py["events_per_cpu_s"], 1)
        if rust["events_per_cpu_s"] and py["events_per_cpu_s"] else None,
    }
    if rules is not None and rules.is_dir():
        res["rules"] = str(rules)
        res["kinship_logs"] = time_cli(samples, rules)
    return res


def render(res: dict[str, Any]) -> str:
    rows = [f"{res['files']} .evtx files ({res['samples']})", "",
            f"{'parser':<36} {'events':>7} {'seconds':>8} {'events/s':>9} "
            f"{'ev/CPU-s':>9} {'failed':>6}"]
    for name, p in res["parsers"].items():
        rows.append(f"{name:<36} {p['events']:>7} {p['seconds']:>8.3f} "
                    f"{p['events_per_s']:>9.0f} {p['events_per_cpu_s'] or 0:>9.0f} "
                    f"{p['files_failed']:>6}")
    rows.append(f"evtx / python-evtx (events per CPU second): {res['ratio_events_per_cpu_s']}x")
    cli = res.get("kinship_logs")
    if cli:
        rows.append("")
        for r in cli["runs"]:
            rows.append(f"kinship logs, {r['run']:<6}: {r['seconds']:.2f} s "
                        f"({r['events']} events, {r['rules_loaded']} rules, "
                        f"{r['detections']} detections, exit {r['exit']})")
        rows.append(f"speed-up {cli['speedup']}x, identical JSON: {cli['identical_json']}, "
                    f"{cli['cache_entries']} cache entries")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.logs_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=Path, default=SHARED / "evtx-attack-samples")
    p.add_argument("--rules", type=Path, default=SHARED / "sigma-rules" / "rules" / "windows",
                   help="Sigma rules for the cold/cached kinship logs runs (absent: skipped)")
    p.add_argument("--no-cli", action="store_true", help="parsers only")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default bench/results/<date>-logs.json)")
    a = p.parse_args(argv)
    if not a.samples.is_dir():
        print(f"{a.samples}: not a folder of .evtx files", file=sys.stderr)
        return 2
    res = run(a.samples, None if a.no_cli else a.rules)
    out = a.out or REPO / "bench" / "results" / f"{res['date']}-logs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(render(res))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
