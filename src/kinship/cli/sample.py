"""The sample commands: ``kinship add``, ``match``, ``compare`` and ``info``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from kinship.api import Kinship
from kinship.binary.model import Arch
from kinship.cli.common import (
    InputPath,
    canonical_actor,
    check_first_seen,
    common,
    emit_ascii,
    err,
    exit_code_of,
    out,
    parse_int,
    progress_bar,
)
from kinship.cli.evidence import write_compare_html, write_match_html
from kinship.exceptions import EXIT_CODES, NotFoundError, UsageError
from kinship.ingest import AddReport
from kinship.pipeline import Labels
from kinship.render import terminal


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--family", help="Family label for every sample given.")
@click.option("--actor", help="Actor (threat group) label.")
@click.option("--source", help='Who reported it, e.g. "Vendor report 2016".')
@click.option("--first-seen", help="First-seen date (YYYY, YYYY-MM or YYYY-MM-DD).")
@click.option("--version", "version_", help="Version label.")
@click.option("--library", is_flag=True,
              help="Goodware/library corpus: matches to these samples count as library code.")
@click.option("--manifest", type=InputPath(),
              help="CSV/JSON manifest: path,family,actor,source,first_seen,version,library.")
@click.option("--base", help="Base address of raw memory dumps (e.g. 0x400000).")
@click.option("--replace", is_flag=True, help="Re-analyse and overwrite samples already stored.")
@click.option("--no-keep", is_flag=True,
              help="Do not keep a copy of each sample next to the store (no reference listings "
                   "in match evidence, no YARA validation without --samples).")
@click.option("-j", "--jobs", default=1, show_default=True, help="Parallel analysis processes.")
@click.option("--follow-symlinks", is_flag=True,
              help="In folders, also follow symbolic links that lead out of the folder "
                   "(by default they are listed as skipped).")
@common
def add(paths: tuple[Path, ...], family: str | None, actor: str | None, source: str | None,
        first_seen: str | None, version_: str | None, library: bool, manifest: Path | None,
        base: str | None, replace: bool, no_keep: bool, jobs: int, follow_symlinks: bool,
        db: str | Path | None, as_json: bool) -> None:
    """Analyse samples and add them to the store with their labels.

    \b
    Examples:
      kinship add ./refs/lua/*.so --family lua --actor "Example Actor" \\
                  --source "Vendor report 2016" --first-seen 2016-03
      kinship add --manifest refs.csv -j 2
      kinship add ./malpedia-like/          # layout <family>/<version or date>/<sample>
      kinship add samples.zip               # zip members; password "infected" is tried
      kinship add dump.bin --base 0x400000  # raw memory dump
      kinship add /usr/lib/x86_64-linux-gnu/libz.so.1 --library   # library code
    """
    if not paths and not manifest:
        raise UsageError("give files/folders to add, or --manifest FILE")
    first_seen = check_first_seen(first_seen)
    missing = [p for p in paths if not p.exists()]
    if missing and len(missing) == len(paths) and not manifest:
        raise NotFoundError(f"{', '.join(map(str, missing))}: no such file")
    labels = Labels(family, canonical_actor(actor, as_json), source, first_seen, version_,
                    library)
    with Kinship(db, keep_files=not no_keep) as k, progress_bar(not as_json, "ingest") as progress:
        report = AddReport()
        if manifest:
            report = k.add_manifest(manifest, labels, jobs=jobs, replace=replace,
                                    progress=progress)
        if paths:
            r2 = k.add(list(paths), labels, base=parse_int(base), jobs=jobs, replace=replace,
                       progress=progress, follow_symlinks=follow_symlinks)
            report.added += r2.added
            report.duplicates += r2.duplicates
            report.failed += r2.failed
            report.warnings += r2.warnings
            report.seconds += r2.seconds
            report.meta = r2.meta if r2.meta is None or report.meta is None else (
                dataclasses.replace(r2.meta, seconds=report.seconds))
    if as_json:
        emit_ascii(report.to_dict())
    else:
        terminal.render_add(out, report)
    if report.partial:
        single = (len(paths) == 1 and not manifest and not report.added
                  and not report.duplicates and not report.warnings)
        if single and len(report.failed) == 1:
            if not as_json:
                terminal.render_add_error(err, report.failed[0].name, report.failed[0].reason)
            sys.exit(exit_code_of(report.failed[0].error))
        sys.exit(EXIT_CODES["partial_batch"])


@click.command()
@click.argument("file", type=InputPath(dir_okay=True))
@click.option("--base", help="Base address if FILE is a raw memory dump.")
@click.option("--arch", type=click.Choice(["x86", "x64"]), help="Architecture of a raw dump.")
@click.option("--top", default=10, show_default=True, help="Rows per table.")
@click.option("--include-self", is_flag=True, help="Also match against FILE's own stored copy.")
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML evidence page to this file.")
@common
def match(file: Path, base: str | None, arch: str | None, top: int, include_self: bool,
          html: Path | None, db: str | Path | None, as_json: bool) -> None:
    """Attribute FILE: ranked families/actors, confidence, top shared functions.

    \b
    Examples:
      kinship match suspicious.dll
      kinship match implant_dump_0x10000000 --json | jq .verdict
      kinship match suspicious.dll --html evidence.html
    A null family in the JSON verdict means no attribution: verdict.status is
    "unknown" (too little shared, or a tie) or "weak" (a candidate family on too
    little distinctive evidence); verdict.reason says why. Compiler runtime
    code (kinship baseline list) never counts as evidence.
    """
    arch_ = Arch(arch) if arch else None
    with Kinship(db) as k:
        if html:
            res = write_match_html(k, file, html, base=parse_int(base), arch=arch_,
                                   include_self=include_self)
        else:
            res = k.match(file, base=parse_int(base), arch=arch_, include_self=include_self)
    if as_json:
        emit_ascii(res.to_dict())
    else:
        terminal.render_match(out, res, top=top)


@click.command()
@click.argument("a", type=InputPath(dir_okay=True))
@click.argument("b", type=InputPath(dir_okay=True))
@click.option("--listings", default=3, show_default=True,
              help="How many pairs to show side by side in the terminal.")
@click.option("--max-pairs", default=50, show_default=True,
              help="Pairs that get a full aligned listing (JSON/HTML).")
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML evidence page to this file.")
@common
def compare(a: Path, b: Path, listings: int, max_pairs: int, html: Path | None,
            db: str | Path | None, as_json: bool) -> None:
    """Matched function pairs of A and B with aligned side-by-side disassembly.

    \b
    Examples:
      kinship compare backdoor_2016_x86.exe backdoor_2019_x64.exe
      kinship compare a.exe b.dll --json > pairs.json
      kinship compare a.exe b.dll --html compare.html
    """
    with Kinship(db) as k:
        if html:
            res = write_compare_html(k, a, b, html, max_listed=max_pairs)
        else:
            res = k.compare(a, b, max_listed=max_pairs)
    if as_json:
        emit_ascii(res.to_dict())
    else:
        terminal.render_compare(out, res, listings=listings)


@click.command()
@click.argument("file", type=InputPath(dir_okay=True))
@click.option("--base", help="Base address if FILE is a raw memory dump.")
@click.option("--arch", type=click.Choice(["x86", "x64"]), help="Architecture of a raw dump.")
@click.option("--functions", "show_functions", is_flag=True, help="List every function.")
@common
def info(file: Path, base: str | None, arch: str | None, show_functions: bool,
         db: str | Path | None, as_json: bool) -> None:
    """Format, arch, hashes, sections, imports/exports and functions of FILE.

    \b
    Examples:
      kinship info sample.exe
      kinship info sample.exe --functions --json
    """
    with Kinship(db) as k:
        res = k.info(file, base=parse_int(base), arch=Arch(arch) if arch else None)
    if as_json:
        emit_ascii(res.to_dict())
    else:
        terminal.render_info(out, res, functions=show_functions)


COMMANDS: tuple[click.Command, ...] = (add, match, compare, info)
