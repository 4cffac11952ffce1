"""``python -m bench all|matching|attribution|scale [--quick]``: run, write JSON, tables, PNGs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from datetime import date
from typing import Any

from bench.gt import REPO_ROOT, ensure_corpus, load_manifest

BENCH_MARKER = "<!-- bench:tables -->"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def git_head() -> str:
    """Short hash of the checkout's HEAD, "?" without git (recorded in every result)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def run_suite(command: str, *, quick: bool, with_peer: bool,
              sizes: tuple[int, ...] | None = None) -> int:
    from bench.attribution import run_attribution
    from bench.matching import run_matching
    from bench.mcrit_peer import available
    from bench.plots import write_plots
    from bench.report import render
    from bench.scale import run_scale

    t0 = time.perf_counter()
    dev = ensure_corpus()
    entries = load_manifest(dev)
    if with_peer and available() is None:
        _progress("MCRIT not installed (pip install --no-deps mcrit mmh3 picblocks): no peer")
        with_peer = False
    results: dict[str, Any] = {
        "command": "python -m bench " + command + (" --quick" if quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "date": date.today().isoformat(),
        "git": git_head(),
        "mcrit": available(),
    }
    if command in ("all", "matching"):
        res, _ = run_matching(dev, entries, quick=quick, with_peer=with_peer, progress=_progress)
        results["matching"] = res.to_dict()
    samples = None
    if command in ("all", "attribution", "scale"):
        ares, samples = run_attribution(dev, entries, quick=quick, progress=_progress,
                                         with_peer=with_peer and command != "scale")
        if command != "scale":
            results["attribution"] = ares.to_dict()
    if command in ("all", "scale") and samples:
        pts = run_scale([(s.record, s.features) for s in samples], quick=quick, sizes=sizes,
                        progress=_progress)
        results["scale"] = [p.__dict__ for p in pts]
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out = REPO_ROOT / "bench" / "results" / (
        f"{results['date']}-{command}{'-quick' if quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    text = render(results)
    print(text)
    if command == "all":
        write_plots(results, REPO_ROOT / "docs" / "img")
        (REPO_ROOT / "bench" / "results" / "latest-tables.md").write_text(text + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0
