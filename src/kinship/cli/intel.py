"""Threat-intelligence commands: ``actor``, ``capabilities``, ``iocs``, ``export`` and
``report`` (rendered by :mod:`kinship.render.intel`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kinship.cli.common import InputPath, common_with, emit
from kinship.render import intel as render

if TYPE_CHECKING:
    from kinship.api import Kinship
    from kinship.report.model import IntelReport

_CAPA_HELP = ("capa rules directory (default: $KINSHIP_CAPA_RULES; neither: kinship's own "
              "rules only).")
_DB_LABELS = ("Store (SQLite file or postgresql:// URL) whose labels (family, actor, source, "
              "first seen) annotate the sample when it is stored there (default: $KINSHIP_DB, "
              "else $KINSHIP_HOME/kinship.db; a missing file is never created).")
_DB_ACTOR = ("Store (SQLite file or postgresql:// URL): also list its samples whose actor label "
             "resolves to the same actor (default: $KINSHIP_DB, else $KINSHIP_HOME/kinship.db; "
             "a missing file is never created).")
_DB_REPORT = ("Store (SQLite file or postgresql:// URL): verdict, code/string evidence and "
              "reference listings (default: $KINSHIP_DB, else $KINSHIP_HOME/kinship.db).")


def _existing_store(db: str | Path | None) -> str | Path | None:
    """``db`` or the default store (:func:`~kinship.store.paths.default_db`), when it is a
    PostgreSQL URL or an existing file (read-only uses never create a store file)."""
    from kinship.store.paths import default_db, is_postgres_url

    target = db or default_db()
    if is_postgres_url(target):
        return str(target).strip()
    path = Path(target)
    return path if path.is_file() else None


@contextmanager
def _existing(db: str | Path | None) -> Iterator[Kinship | None]:
    """The facade over the store ``db`` when it exists (see :func:`_existing_store`), else
    None; no sample files kept."""
    from kinship.api import Kinship

    path = _existing_store(db)
    if path is None:
        yield None
        return
    with Kinship(path, keep_files=False) as k:
        yield k


@contextmanager
def _or_bare(k: Kinship | None) -> Iterator[Kinship]:
    """``k``, or (None) the facade over an empty in-memory store: for a workflow that reads
    no store, where none exists (nothing is created)."""
    if k is not None:
        yield k
        return
    from kinship.api import Kinship
    from kinship.store.memory import MemoryStore

    with Kinship(store=MemoryStore(), keep_files=False) as bare:
        yield bare


def _report_for(samples: tuple[Path, ...], db: str | Path | None, capa_rules: Path | None,
                actor: str | None, lang: str = "en", use_store: bool = True) -> IntelReport:
    from kinship.api import Kinship, report
    from kinship.report.build import ReportOptions

    opts = ReportOptions(capa_rules=capa_rules, actor=actor, lang=lang, use_store=use_store)
    if not use_store:
        return report(list(samples), opts)
    with Kinship(db) as k:
        return k.report(list(samples), opts)


# a missing file is "not found" (exit code 6, one line), see cli.common.InputPath
_samples_arg = click.argument("samples", nargs=-1, required=True, type=InputPath())
_capa_opt = click.option("--capa-rules", type=click.Path(path_type=Path), help=_CAPA_HELP)


@click.command("actor")
@click.argument("name")
@common_with(_DB_ACTOR)
def actor_cmd(name: str, db: str | Path | None, as_json: bool) -> None:
    """Resolve NAME (any alias) to one actor: aliases, techniques, software, references.

    \b
    Also lists the store's samples labelled with that actor under any alias.
    Examples:
      kinship actor "Hidden Cobra"       # -> Lazarus Group
      kinship actor APT38 --json | jq .techniques
      kinship actor ZINC --db cases.db   # + stored samples of Lazarus Group
    """
    from kinship.intel.actors import resolve_actor

    p = resolve_actor(name)
    with _existing(db) as k:
        records = k.samples_of_actor(p.name) if k is not None else []
    stored = [{"sha256": r.sha256, "name": r.name, "family": r.family, "actor_label": r.actor,
               "source": r.source, "first_seen": r.first_seen} for r in records]
    if as_json:
        emit({**p.to_dict(), "stored_samples": stored})
        return
    render.render_actor(p, stored)


@click.command("capabilities")
@click.argument("file", type=InputPath())
@_capa_opt
@common_with(_DB_LABELS)
def capabilities_cmd(file: Path, capa_rules: Path | None, db: str | Path | None,
                     as_json: bool) -> None:
    """Capabilities and ATT&CK techniques of FILE (rules over kinship's disassembly).

    \b
    kinship's own rules always run; capa rules run too when given (--capa-rules or
    $KINSHIP_CAPA_RULES). The output names the rule sets used and those not available.
    Functions recognised as library code (compiler runtime, the store's library corpus) are
    not searched. FILE is annotated with its labels when the store holds it.
    Examples:
      kinship capabilities implant.exe
      kinship capabilities implant.exe --capa-rules ~/capa-rules
      KINSHIP_CAPA_RULES=~/capa-rules kinship capabilities implant.exe --json
    """
    from kinship.api import capabilities

    with _existing(db) as k:
        if k is None:
            a, res = capabilities(file, capa_rules=capa_rules)
            labels = None
        else:
            a, res = k.capabilities(file, capa_rules=capa_rules)
            labels = k.stored_labels([a.record.sha256]).get(a.record.sha256)
    if as_json:
        emit({**res.to_dict(), "sha256": a.record.sha256, "stored_labels": labels})
        return
    render.render_capabilities(file, a.record.sha256, labels, res)


@click.command("iocs")
@click.argument("files", nargs=-1, required=True, type=InputPath())
@click.option("--text", is_flag=True, help="FILES are text, not executables.")
@click.option("--no-filter", is_flag=True, help="Keep IOCs on the MISP warning lists.")
@common_with(_DB_LABELS)
def iocs_cmd(files: tuple[Path, ...], text: bool, no_filter: bool, db: str | Path | None,
             as_json: bool) -> None:
    """IOCs in FILES (samples; or text documents with --text), each citing where it was found.

    \b
    Samples are annotated with their labels when the store holds them.
    Examples:
      kinship iocs implant.exe
      kinship iocs --text vendor_report.txt --json     # defanged IOCs are refanged
    """
    from kinship.intel.iocs import IOCResult, iocs_from_text

    out: list[IOCResult] = []
    hashes: list[str | None] = []
    labels: dict[str, dict[str, Any]] = {}
    if text:
        for f in files:
            out.append(iocs_from_text(f.read_text(encoding="utf-8", errors="replace"),
                                      source=f.name, filter_benign=not no_filter))
            hashes.append(None)
    else:
        with _existing(db) as stored, _or_bare(stored) as k:
            for f in files:
                a, found = k.iocs(f, filter_benign=not no_filter)
                out.append(found)
                hashes.append(a.record.sha256)
            labels = k.stored_labels([h for h in hashes if h])
    if as_json:
        emit({"files": [{"file": str(f), "sha256": h,
                         "stored_labels": labels.get(h) if h else None, **r.to_dict()}
                        for f, h, r in zip(files, hashes, out, strict=True)]})
        return
    for f, h, r in zip(files, hashes, out, strict=True):
        render.render_iocs(f, h, labels.get(h) if h else None, r)


def export_cmd(fmt: str, samples: tuple[Path, ...], db: str | Path | None, capa_rules: Path | None,
               actor: str | None, no_store: bool, out: Path | None, as_json: bool = False
               ) -> None:
    """Write one export artefact to OUT or stdout.

    STIX, MISP and Navigator artefacts are JSON in either case (``--json`` prints them
    compactly parsed-and-reindented, like every ``--json`` output); CSV with ``--json`` is a
    JSON list of row objects.
    """
    from kinship.export.csv_iocs import to_records
    from kinship.export.files import export_text

    report = _report_for(samples, db, capa_rules, actor, use_store=not no_store)
    if fmt == "csv" and as_json:
        text = json.dumps(to_records(report), indent=2, ensure_ascii=False)
    else:
        text = export_text(report, fmt)
    if as_json and fmt != "csv":
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        render.render_export(text, csv=fmt == "csv" and not as_json)


@click.command("report")
@click.argument("samples", nargs=-1, type=InputPath())
@click.option("--from", "from_doc", type=InputPath(),
              help="Make the report from a saved document instead of SAMPLES: a report's "
                   "intel.json, or the --json of kinship match (no store, no sample).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder.")
@_capa_opt
@click.option("--actor", help="Actor to profile (any alias).")
@click.option("--lang", type=click.Choice(["en", "ja"]), default="en", show_default=True,
              help="Report language.")
@click.option("--no-store", is_flag=True, help="No verdict from the store.")
@common_with(_DB_REPORT)
def report_cmd(samples: tuple[Path, ...], from_doc: Path | None, out: Path,
               db: str | Path | None, capa_rules: Path | None, actor: str | None, lang: str,
               no_store: bool, as_json: bool) -> None:
    """Tactical intelligence report (HTML, Markdown, JSON + STIX/MISP/Navigator/CSV) in OUT.

    \b
    Examples:
      kinship report implant1.exe implant2.dll --out case42/ --capa-rules ~/capa-rules
      kinship report implant.exe --out case42/ --lang ja --actor "Hidden Cobra"
      kinship match implant.exe --json > m.json; kinship report --from m.json --out case42/
      kinship report --from case42/intel.json --out case42-ja/ --lang ja
    """
    from kinship.api import write_report
    from kinship.exceptions import UsageError

    if from_doc is not None:
        if samples:
            raise UsageError("give SAMPLES or --from DOCUMENT, not both")
        from kinship.cli.render import load_report

        report = load_report(from_doc)
        source = click.get_current_context().get_parameter_source("lang")
        if source is not click.core.ParameterSource.DEFAULT and lang != report.lang:
            import dataclasses

            report = dataclasses.replace(report, lang=lang)
    elif not samples:
        raise UsageError("give the samples to report on, or --from DOCUMENT")
    else:
        report = _report_for(samples, db, capa_rules, actor, lang, use_store=not no_store)
    files = write_report(report, out)
    if as_json:
        emit({"files": {k: str(v) for k, v in files.items()}, "warnings": report.warnings,
              "rule_sets": report.rule_sets})
    else:
        render.render_report_files(files, report.rule_sets, report.warnings)


_EXPORT_EXAMPLES = {
    "stix": "kinship export stix implant.exe --out bundle.json\n"
            "  kinship export stix implant.exe --json | jq '.objects[].type'",
    "misp": "kinship export misp implant.exe --out event.json\n"
            "  kinship export misp implant.exe --actor APT38 --json",
    "navigator": "kinship export navigator implant.exe --capa-rules ~/capa-rules "
                 "--out layer.json",
    "csv": "kinship export csv implant.exe --out iocs.csv\n"
           "  kinship export csv implant.exe --json     # a JSON list of rows",
}


def _export_command(fmt: str) -> click.Command:
    """``kinship export FMT``."""

    def cmd(samples: tuple[Path, ...], capa_rules: Path | None, actor: str | None,
            no_store: bool, out: Path | None, db: str | Path | None, as_json: bool) -> None:
        export_cmd(fmt, samples, db, capa_rules, actor, no_store, out, as_json)

    what = "IOC CSV" if fmt == "csv" else f"{fmt.upper()} JSON"
    cmd.__doc__ = (f"{what} export of SAMPLES (verdict from the store, capabilities, IOCs).\n\n"
                   f"\b\nExamples:\n  {_EXPORT_EXAMPLES[fmt]}\n")
    return click.command(fmt)(_samples_arg(_capa_opt(
        click.option("--actor", help="Actor to include (any alias).")(
            click.option("--no-store", is_flag=True, help="No verdict from the store.")(
                click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                             help="Output file (default: stdout).")(
                    common_with(_DB_REPORT)(cmd)))))))


@click.group("export")
def export() -> None:
    """Export SAMPLES' intelligence: stix, misp, navigator, csv.

    \b
    Examples:
      kinship export stix implant.exe --out bundle.json
      kinship export navigator implant.exe --capa-rules ~/capa-rules
    """


for _fmt in ("stix", "misp", "navigator", "csv"):
    export.add_command(_export_command(_fmt))


COMMANDS: tuple[click.Command, ...] = (actor_cmd, capabilities_cmd, iocs_cmd, export, report_cmd)
