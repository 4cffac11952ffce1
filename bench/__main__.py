"""``python -m bench disasm [--quick] [--out FILE]``: see bench/README.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from bench.disasm_vs_smda import (
    TOOLS,
    BenchConfig,
    default_out_path,
    have_strip_tools,
    render_table,
    run_benchmark,
)
from bench.gt import DEFAULT_ARCHIVE, DEFAULT_CACHE, DEFAULT_SUBSET, QUICK_SUBSET


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="kinship benchmarks")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("disasm", help="disassembly speed and function-start accuracy vs SMDA")
    d.add_argument(
        "--quick",
        action="store_true",
        help="6 binaries up to 600 KB (about a minute) instead of 24",
    )
    d.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default bench/results/<date>-disasm[-quick].json)",
    )
    d.add_argument(
        "--max-size",
        type=int,
        default=None,
        help="largest file taken, bytes (default 1500000; quick 600000)",
    )
    d.add_argument("--min-size", type=int, default=None, help="smallest file taken, bytes")
    d.add_argument(
        "--complete-per-cell",
        type=int,
        default=None,
        help="binaries with full symtab/COFF labels per {ELF,PE}x{x86,x64} cell",
    )
    d.add_argument(
        "--partial-per-cell",
        type=int,
        default=None,
        help="binaries with exported-only labels per cell",
    )
    d.add_argument(
        "--family", action="append", default=None, help="only these corpus families (repeatable)"
    )
    d.add_argument(
        "--tool",
        action="append",
        choices=TOOLS,
        default=None,
        help="only these tools (repeatable; default both)",
    )
    d.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child runs")
    d.add_argument("--no-store", action="store_true", help="skip the bytes/function ingest")
    d.add_argument("--no-warmup", action="store_true", help="time the very first call too")
    d.add_argument("--smda-timeout", type=int, default=300, help="SMDA budget per binary, s")
    d.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"corpus cache (default {DEFAULT_CACHE})",
    )
    d.add_argument(
        "--archive",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help=f"corpus archive (default {DEFAULT_ARCHIVE})",
    )
    d.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sm = sub.add_parser("small", help="small programs, no library corpus: top-1, false "
                        "attribution, calibration (issue #9)")
    sm.add_argument("--quick", action="store_true",
                    help="3 of the 7 stores, 4 toolchains, -O2/-Os (under a minute; full: a few)")
    sm.add_argument("--tag", default="", help="suffix of the output names (e.g. before)")
    sm.add_argument("--jobs", type=int, default=2, help="parallel compiles")
    sm.add_argument("--engine", default="",
                    help="label of the kinship measured (default: git rev of the working tree)")
    sm.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    for name, text in (
        ("all", "matching + attribution + scale, then docs/BENCHMARKS.md tables and PNGs"),
        ("matching", "function matching (XV/XO/XC/XB/XF/XM) kinship vs MCRIT"),
        ("attribution", "family attribution, unknown families, threshold calibration"),
        ("scale", "query latency and memory vs index size"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--quick", action="store_true", help="small subset (< 5 min)")
        sp.add_argument("--no-peer", action="store_true", help="skip MCRIT")
        sp.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
        sp.add_argument("--sizes", default=None,
                        help="scale: comma-separated index sizes (default quick 10^4,10^5; "
                             "full 10^4..10^7)")
    return p


def _config(args: argparse.Namespace) -> BenchConfig:
    subset = QUICK_SUBSET if args.quick else DEFAULT_SUBSET
    changes: dict[str, object] = {}
    for name in ("max_size", "min_size", "complete_per_cell", "partial_per_cell"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.family:
        changes["families"] = tuple(args.family)
    subset = dataclasses.replace(subset, **changes)  # type: ignore[arg-type]
    return BenchConfig(
        subset=subset,
        cache_dir=args.cache_dir,
        archive=args.archive,
        measure_memory=not args.no_memory,
        measure_store=not args.no_store,
        smda_timeout_s=args.smda_timeout,
        warmup=not args.no_warmup,
        tools=tuple(args.tool) if args.tool else TOOLS,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.command == "small":
        from bench.small_programs import SmallConfig, run_small

        run_small(SmallConfig(quick=args.quick, tag=args.tag, jobs=args.jobs,
                              engine=args.engine))
        return 0
    if args.command != "disasm":
        from bench.suite import run_suite

        sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None
        return run_suite(args.command, quick=args.quick, with_peer=not args.no_peer, sizes=sizes)
    missing = have_strip_tools()
    if missing:
        print(f"missing strip tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    cfg = _config(args)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_benchmark(cfg, progress)
    render_table(result)
    out = args.out or default_out_path(args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
