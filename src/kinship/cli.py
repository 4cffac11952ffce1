"""The ``kinship`` command line: parses arguments, calls :mod:`kinship.api`, renders.

Exit codes (stable, see ``kinship.exceptions.EXIT_CODES``): 0 ok, 1 error, 2 usage, 3 bad input
file, 4 unsupported format, 5 store error, 6 not found, 7 batch finished with skipped files.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kinship.api import Kinship
from kinship.binary.model import Arch
from kinship.cli_artifact import register as register_artifact
from kinship.cli_baseline import register as register_baseline
from kinship.cli_common import InputPath, check_first_seen, common, store_backend
from kinship.cli_evidence import register as register_evidence
from kinship.cli_evidence import write_compare_html, write_match_html
from kinship.cli_intel import register as register_intel
from kinship.cli_sigma import register as register_sigma
from kinship.exceptions import EXIT_CODES, KinshipError, NotFoundError, UsageError
from kinship.ingest import AddReport, ProgressFn
from kinship.pipeline import Labels
from kinship.render import terminal
from kinship.render.safe import InertFormatter, inert, markup, plain, plain_lines

out = Console(highlight=False, soft_wrap=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError as e:
        raise click.BadParameter(f"not an integer: {value!r} (use 0x... for hex)") from e


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[ProgressFn | None]:
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}", markup=False), console=err,
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total,
                       description=plain(Path(name).name)[:40])

        yield update


def _fail(e: KinshipError, as_json: bool) -> None:
    """One line for ``e`` (its message quotes names from samples: printed inert, see
    :mod:`kinship.render.safe`), then exit with its code."""
    if as_json:
        _emit({"error": type(e).__name__, "message": str(e), "exit_code": e.exit_code})
    else:
        line = inert("error:", style="red")
        line.append(" ").append_text(inert(str(e)))
        err.print(line, highlight=False)
    sys.exit(e.exit_code)


class KinshipGroup(click.Group):
    """Maps KinshipError to its exit code and a one-line message (a JSON object with
    ``--json``, also when the error comes from an argument, before the command runs)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["kinship.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("kinship.json")) or "--json" in sys.argv
        try:
            return super().invoke(ctx)
        except KinshipError as e:
            _fail(e, as_json)
        except click.exceptions.ClickException as e:
            e.message = plain_lines(e.message)  # may quote a path or value given
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            # A bug (ours or a parser's) on hostile input: one line, a stable code, and the
            # traceback only when asked for (-vv).
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            _fail(KinshipError(f"internal error: {type(e).__name__}: {e} "
                               "(run with -vv for the traceback)"), as_json)


@click.group(cls=KinshipGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="kinship")
def main(verbose: int) -> None:
    """kinship: whose code is this, and what else did they do?

    \b
    Index labelled reference samples, then attribute new ones by code reuse:
      kinship add refs/lua/*.so --family lua --actor "Example Actor" --source "Vendor 2016"
      kinship match suspicious.dll
      kinship compare old_x86.exe new_x64.exe
    """
    handler = logging.StreamHandler()  # stderr; log messages quote names from samples
    handler.setFormatter(InertFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), handlers=[handler])


@main.command()
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
    labels = Labels(family, _canonical_actor(actor, as_json), source, first_seen, version_,
                    library)
    with Kinship(db, keep_files=not no_keep) as k, _progress(not as_json, "ingest") as progress:
        report = AddReport()
        if manifest:
            report = k.add_manifest(manifest, labels, jobs=jobs, replace=replace,
                                    progress=progress)
        if paths:
            r2 = k.add(list(paths), labels, base=_int(base), jobs=jobs, replace=replace,
                       progress=progress, follow_symlinks=follow_symlinks)
            report.added += r2.added
            report.duplicates += r2.duplicates
            report.failed += r2.failed
            report.warnings += r2.warnings
            report.seconds += r2.seconds
    if as_json:
        _emit(report.to_dict())
    else:
        terminal.render_add(out, report)
    if report.partial:
        single = (len(paths) == 1 and not manifest and not report.added
                  and not report.duplicates and not report.warnings)
        if single and len(report.failed) == 1:
            if not as_json:
                err.print(inert("error:", style="red"), inert(
                    f"{report.failed[0].name}: {report.failed[0].reason}"))
            sys.exit(_exit_for(report.failed[0].error))
        sys.exit(EXIT_CODES["partial_batch"])


def _canonical_actor(actor: str | None, as_json: bool = False) -> str | None:
    """The MISP galaxy's name for an actor label (any alias); unknown names as given. A
    renamed label is said on stderr (not with --json)."""
    if actor is None or not actor.strip():
        return actor
    from kinship.intel.actors import canonical_actor

    name = canonical_actor(actor)
    if name != actor.strip() and not as_json:
        err.print(inert(f"actor {actor!r} is stored as {name!r} (its MISP galaxy name)"))
    return name


def _exit_for(error_name: str) -> int:
    import kinship.exceptions as ex

    cls = getattr(ex, error_name, None)
    if isinstance(cls, type) and issubclass(cls, KinshipError):
        return cls.exit_code
    return EXIT_CODES["bad_input"]


@main.command()
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
            res = write_match_html(k, file, html, base=_int(base), arch=arch_,
                                   include_self=include_self)
        else:
            res = k.match(file, base=_int(base), arch=arch_, include_self=include_self)
    if as_json:
        _emit(res.to_dict())
    else:
        terminal.render_match(out, res, top=top)


@main.command()
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
        _emit(res.to_dict())
    else:
        terminal.render_compare(out, res, listings=listings)


@main.command()
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
        res = k.info(file, base=_int(base), arch=Arch(arch) if arch else None)
    if as_json:
        _emit(res.to_dict())
    else:
        terminal.render_info(out, res, functions=show_functions)


@main.group()
def db() -> None:
    """Inspect and edit the store (stats, list, label, remove)."""


@db.command("stats")
@common
def db_stats(db: str | Path | None, as_json: bool) -> None:
    """Samples, families, functions and size on disk.

    \b
    Example:
      kinship db stats --json
    """
    with Kinship(db) as k:
        s = k.stats()
        backend = store_backend(k.store)
    if as_json:
        _emit({"backend": backend, **s.__dict__})
    else:
        out.print(f"[bold]backend[/bold] {markup(backend)}")
        terminal.render_stats(out, s)


@db.command("list")
@click.option("--family", help="Only this family.")
@click.option("--actor", help="Only this actor, under any of its names (MISP galaxy aliases: "
                              "\"Hidden Cobra\" also lists samples labelled Lazarus Group).")
@common
def db_list(family: str | None, actor: str | None, db: str | Path | None, as_json: bool) -> None:
    """List stored samples.

    \b
    Examples:
      kinship db list --family lua
      kinship db list --actor "Hidden Cobra"    # any alias of Lazarus Group
    """
    with Kinship(db) as k:
        samples = k.store.samples(family=family)
    if actor is not None:
        from kinship.intel.actors import same_actor

        samples = [s for s in samples if same_actor(s.actor, actor)]
    if as_json:
        _emit({"samples": [{k: v for k, v in s.__dict__.items() if k != "info"}
                           for s in samples]})
    else:
        terminal.render_samples(out, samples)


@db.command("label")
@click.argument("sample")
@click.option("--family")
@click.option("--actor")
@click.option("--source")
@click.option("--first-seen", help="YYYY, YYYY-MM or YYYY-MM-DD.")
@click.option("--version", "version_")
@click.option("--library/--no-library", default=None)
@common
def db_label(sample: str, family: str | None, actor: str | None, source: str | None,
             first_seen: str | None, version_: str | None, library: bool | None,
             db: str | Path | None, as_json: bool) -> None:
    """Change the labels of SAMPLE (sha256, sha256 prefix, md5 or sha1).

    \b
    Example:
      kinship db label 3f2a9c1b --family lazarus-backdoor --actor "Lazarus Group"
    """
    first_seen = check_first_seen(first_seen)
    changes: dict[str, Any] = {k: v for k, v in (
        ("family", family), ("actor", _canonical_actor(actor, as_json)), ("source", source),
        ("first_seen", first_seen),
        ("version", version_), ("is_library", library)) if v is not None}
    if not changes:
        raise UsageError("nothing to change: give --family, --actor, ...")
    with Kinship(db) as k:
        rec = k.relabel(sample, **changes)
    if as_json:
        _emit({k: v for k, v in rec.__dict__.items() if k != "info"})
    else:
        out.print(inert(f"{rec.sha256}: family={rec.family} actor={rec.actor} "
                        f"source={rec.source}"))


@db.command("remove")
@click.argument("sample")
@common
def db_remove(sample: str, db: str | Path | None, as_json: bool) -> None:
    """Delete SAMPLE and its functions from the store.

    \b
    Example:
      kinship db remove 3f2a9c1b
    """
    with Kinship(db) as k:
        rec = k.remove(sample)
    if as_json:
        _emit({"removed": rec.sha256})
    else:
        out.print(inert(f"removed {rec.sha256} ({rec.name})"))


register_evidence(main)
register_intel(main)
register_sigma(main)  # joins the rules group made by register_intel
register_artifact(main)
register_baseline(main)

if __name__ == "__main__":
    main()
