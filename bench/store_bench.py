"""``python -m bench.store_bench [--n 50] [--pg-url URL]``: SQLite vs PostgreSQL store.

The same binaries (``~/.cache/kinship-corpus/dev/bin``, else the test fixtures) are analysed
once; then, for each backend, only the store work is timed:

* ingest: ``add_sample`` of every sample (one transaction each, functions and strings);
* load: ``function_arrays()`` (what building the reference index reads), best of 3;
* size: bytes on disk per stored function, after reopening (SQLite: the file, its WAL folded
  in; PostgreSQL: tables + indexes + TOAST of the schema, as ``kinship db stats`` counts).

PostgreSQL: ``--pg-url``, else ``$KINSHIP_TEST_PG_URL`` (.ci/postgres.sh starts one); the
benchmark works in a throw-away schema it drops at the end. Results go to
``bench/results/<date>-store.json`` and a table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinship.pipeline import AnalysedSample, SampleInput, analyse, feature_params
from kinship.store.base import Store
from kinship.store.sqlite import SQLiteStore
from kinship.strings.similarity import to_stored

CORPUS = Path.home() / ".cache/kinship-corpus/dev/bin"
FIXTURES = Path.home() / ".cache/kinship-tests"
MAX_FILE_BYTES = 3_000_000  # bigger files only make the analysis (untimed) slower
RESULTS = Path(__file__).resolve().parent / "results"


def pick_files(n: int) -> list[Path]:
    """``n`` files spread evenly over the sorted corpus (all projects, both formats)."""
    root = CORPUS if CORPUS.is_dir() else FIXTURES
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and 0 < p.stat().st_size <= MAX_FILE_BYTES
        and p.suffix not in (".json", ".md", ".lock", ".txt")
    )
    step = max(1, len(files) // n)
    return files[::step][:n]


def analyse_all(files: list[Path]) -> list[AnalysedSample]:
    out = []
    for p in files:
        try:
            out.append(analyse(SampleInput(name=str(p), path=p)))
        except Exception as e:  # a file kinship cannot read is left out of the comparison
            print(f"  skip {p.name}: {e}", file=sys.stderr)
    return out


def measure(name: str, open_store: Callable[[], Store], samples: list[AnalysedSample]
            ) -> dict[str, Any]:
    with open_store() as store:
        store.bind_feature_params(feature_params())
        t0 = time.perf_counter()
        for s in samples:
            store.add_sample(s.record, s.features, strings=to_stored(s.strings.strings))
        ingest_s = time.perf_counter() - t0
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            arrays = store.function_arrays()
            loads.append(time.perf_counter() - t0)
        stats = store.stats()
    with open_store() as store:  # reopened: SQLite has folded its WAL into the file
        size = store.stats().size_bytes
    n_fn = len(arrays)
    return {
        "backend": name,
        "samples": stats.samples,
        "functions": n_fn,
        "ingest_s": round(ingest_s, 3),
        "ingest_ms_per_sample": round(1000 * ingest_s / max(1, len(samples)), 2),
        "functions_per_s": round(n_fn / ingest_s) if ingest_s else None,
        "function_arrays_s": round(min(loads), 4),
        "size_bytes_open": stats.size_bytes,  # SQLite: + the WAL not yet checkpointed
        "size_bytes": size,
        "bytes_per_function": round(size / n_fn) if n_fn else None,
    }


def render(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = [
        "| backend | samples | functions | ingest s | ms/sample | fn/s | function_arrays s "
        "| bytes/fn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['samples']} | {r['functions']} | {r['ingest_s']:.2f} "
            f"| {r['ingest_ms_per_sample']:.1f} | {r['functions_per_s']} "
            f"| {r['function_arrays_s']:.3f} | {r['bytes_per_function']} |"
        )
    for r in rows[1:]:
        lines.append(
            f"| {r['backend']} / {base['backend']} | | | "
            f"{r['ingest_s'] / base['ingest_s']:.2f}x | | | "
            f"{r['function_arrays_s'] / base['function_arrays_s']:.2f}x | "
            f"{r['bytes_per_function'] / base['bytes_per_function']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    ap.add_argument("--n", type=int, default=50, help="binaries to ingest (default 50)")
    ap.add_argument("--pg-url", default=os.environ.get("KINSHIP_TEST_PG_URL", ""),
                    help="PostgreSQL database (default $KINSHIP_TEST_PG_URL)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    files = pick_files(args.n)
    print(f"analysing {len(files)} binaries (untimed) ...", file=sys.stderr)
    t0 = time.perf_counter()
    samples = analyse_all(files)
    analyse_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "k.db"
        rows.append(measure("sqlite", lambda: SQLiteStore(db), samples))
    if args.pg_url:
        import psycopg
        from psycopg import sql

        from kinship.store.postgres import PostgresStore

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            rows.append(measure(
                "postgresql", lambda: PostgresStore(args.pg_url, schema=schema), samples))
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))
    else:
        print("no --pg-url / $KINSHIP_TEST_PG_URL: SQLite only", file=sys.stderr)
    print(render(rows))
    doc = {
        "date": dt.date.today().isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "corpus": str(CORPUS if CORPUS.is_dir() else FIXTURES),
        "n_files": len(files),
        "n_samples": len(samples),
        "analyse_s_untimed": round(analyse_s, 1),
        "results": rows,
    }
    out = args.out or RESULTS / f"{doc['date']}-store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
