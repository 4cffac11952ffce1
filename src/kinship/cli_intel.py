"""Threat-intelligence commands: actor, capabilities, iocs, rules yara, export, report.

Wired into the main CLI by ``kinship.cli_intel.register(main)`` (see kinship/cli.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kinship.exceptions import NotFoundError, UsageError

_CAPA_HELP = "capa rules directory (default: $KINSHIP_CAPA_RULES)."


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def _db_option(f: Any) -> Any:
    return click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
                        envvar="KINSHIP_DB", help="Store file (default: $KINSHIP_HOME).")(f)


def _json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)


def _report_for(samples: tuple[Path, ...], db: Path | None, capa_rules: Path | None,
                actor: str | None, lang: str = "en", use_store: bool = True) -> Any:
    from kinship.api import Kinship
    from kinship.report.build import ReportOptions, build_report

    opts = ReportOptions(capa_rules=capa_rules, actor=actor, lang=lang, use_store=use_store)
    if not use_store:
        return build_report(list(samples), opts)
    with Kinship(db) as k:
        return build_report(list(samples), opts, kinship=k)


def actor_cmd(name: str, as_json: bool) -> None:
    """Resolve NAME (any alias) to one actor: aliases, techniques, software, references.

    \b
    Examples:
      kinship actor "Hidden Cobra"       # -> Lazarus Group
      kinship actor APT38 --json | jq .techniques
    """
    from kinship.intel.actors import resolve_actor

    p = resolve_actor(name)
    if as_json:
        _emit(p.to_dict())
        return
    click.echo(f"{p.name}  (query: {p.query}; ATT&CK {p.attack_id or '-'}; "
               f"country {p.country or '-'})")
    click.echo(f"aliases: {', '.join(p.aliases)}")
    click.echo(f"techniques ({len(p.techniques)}): {', '.join(t.id for t in p.techniques)}")
    click.echo(f"software ({len(p.software)}): {', '.join(s.name for s in p.software)}")
    for ref in p.references[:10]:
        click.echo(f"  {ref}")
    click.echo(f"source: {p.provenance}")


def capabilities_cmd(file: Path, capa_rules: Path | None, as_json: bool) -> None:
    """Capabilities and ATT&CK techniques of FILE (capa rules over kinship's disassembly).

    \b
    Examples:
      kinship capabilities implant.exe --capa-rules ~/capa-rules
      KINSHIP_CAPA_RULES=~/capa-rules kinship capabilities implant.exe --json
    """
    from kinship.intel.capabilities import CapabilitiesConfig, find_capabilities, load_rules
    from kinship.pipeline import SampleInput, analyse

    rules = load_rules(CapabilitiesConfig(rules_dir=capa_rules))
    a = analyse(SampleInput(name=str(file), path=file), keep=True)
    assert a.binary is not None and a.disassembly is not None
    res = find_capabilities(a.binary, a.disassembly, rules, name=a.record.name)
    if as_json:
        _emit(res.to_dict())
        return
    for t in res.techniques:
        where = ", ".join(f"0x{v:x}" for v in t.function_vas)
        click.echo(f"{t.id:<10} {t.name or '':<55} {where}  [{', '.join(t.rules)}]")
    click.echo(f"-- {len(res.capabilities)} capabilities, {res.n_rules} rules, "
               f"{res.seconds:.2f} s")
    for c in res.capabilities:
        click.echo(f"  {c.rule}  " + " ".join(f"0x{e.va:x}" for e in c.evidence[:5]))


def iocs_cmd(files: tuple[Path, ...], text: bool, no_filter: bool, as_json: bool) -> None:
    """IOCs in FILES (samples; or text documents with --text), each citing where it was found.

    \b
    Examples:
      kinship iocs implant.exe
      kinship iocs --text vendor_report.txt --json     # defanged IOCs are refanged
    """
    from kinship.intel.iocs import IOCResult, iocs_from_sample, iocs_from_text
    from kinship.pipeline import SampleInput, analyse

    out: list[IOCResult] = []
    for f in files:
        if text:
            out.append(iocs_from_text(f.read_text(encoding="utf-8", errors="replace"),
                                      source=f.name, filter_benign=not no_filter))
        else:
            a = analyse(SampleInput(name=str(f), path=f), keep=True)
            assert a.binary is not None
            out.append(iocs_from_sample(a.binary, a.disassembly, filter_benign=not no_filter))
    if as_json:
        _emit({"files": [{"file": str(f), **r.to_dict()} for f, r in zip(files, out,
                                                                         strict=True)]})
        return
    for f, r in zip(files, out, strict=True):
        click.echo(f"{f}:")
        for i in r.iocs:
            src = i.sources[0]
            at = f" offset 0x{src.offset:x}" if src.offset is not None else ""
            click.echo(f"  {i.type:<13} {i.defanged}  ({src.kind}{at})")
        if r.filtered:
            click.echo(f"  filtered: {', '.join(i.defanged for i in r.filtered)}")


def yara_cmd(family: str, samples: tuple[Path, ...], db: Path | None, out: Path | None,
             as_json: bool) -> None:
    """Generate and validate a YARA rule for FAMILY from the stored samples' files.

    \b
    The store keeps features only: files come from $KINSHIP_HOME/samples (see
    `kinship rules keep`) or from --samples folders, matched by SHA-256.
    Examples:
      kinship rules yara --family netsh --samples ./refs
      kinship rules yara --family netsh --out netsh.yar --json
    """
    from kinship.api import Kinship
    from kinship.rules.yara_gen import generate_family_rule
    from kinship.rules.yara_validate import locate_files
    from kinship.store.files import SampleFiles

    with Kinship(db) as k:
        records = list(k.store.samples())
        db_path = Path(getattr(k.store, "path", "")) if db else None
    fam = {r.sha256 for r in records if r.family == family}
    if not fam:
        raise NotFoundError(f"no stored samples of family {family!r}")
    files = locate_files([r.sha256 for r in records], SampleFiles.default(db_path),
                         list(samples))
    missing = [h for h in fam if h not in files]
    if missing:
        raise UsageError(f"{len(missing)} sample file(s) of {family!r} not found: give "
                         "--samples DIR or keep them with `kinship rules keep`")
    members = {h: files[h] for h in fam}
    others = {h: p for h, p in files.items() if h not in fam}
    rule = generate_family_rule(family, members, others)
    if rule is None:
        raise NotFoundError(f"no YARA rule for {family!r} matches all its samples and "
                            "none of the others")
    if out is not None:
        out.write_text(rule.text, encoding="utf-8")
    if as_json:
        _emit(rule.to_dict())
    else:
        click.echo(rule.text)
        v = rule.validation
        if v is not None:
            click.echo(f"// TPR {v.tpr:.3f} FPR {v.fpr:.3f} ({len(others)} other samples)")


def keep_cmd(files: tuple[Path, ...], db: Path | None, as_json: bool) -> None:
    """Keep copies of FILES under the store's samples/ folder (for YARA validation).

    \b
    Example:
      kinship rules keep refs/netsh/*.exe
    """
    from kinship.store.files import SampleFiles

    store = SampleFiles.default(db)
    kept = {str(f): store.keep(f) for f in files}
    if as_json:
        _emit({"kept": kept, "root": str(store.root)})
    else:
        for f, h in kept.items():
            click.echo(f"{h}  {f}")


def export_cmd(fmt: str, samples: tuple[Path, ...], db: Path | None, capa_rules: Path | None,
               actor: str | None, no_store: bool, out: Path | None) -> None:
    from kinship.export.csv_iocs import to_csv
    from kinship.export.misp import to_misp_event
    from kinship.export.navigator import to_layer
    from kinship.export.stix import to_bundle

    report = _report_for(samples, db, capa_rules, actor, use_store=not no_store)
    if fmt == "stix":
        text = to_bundle(report).serialize(pretty=True)
    elif fmt == "misp":
        text = to_misp_event(report).to_json(indent=2)
    elif fmt == "navigator":
        text = json.dumps(to_layer(report), indent=2)
    else:
        text = to_csv(report)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text)


def report_cmd(samples: tuple[Path, ...], out: Path, db: Path | None, capa_rules: Path | None,
               actor: str | None, lang: str, no_store: bool, as_json: bool) -> None:
    """Tactical intelligence report (HTML, Markdown, JSON + STIX/MISP/Navigator/CSV) in OUT.

    \b
    Examples:
      kinship report implant1.exe implant2.dll --out case42/ --capa-rules ~/capa-rules
      kinship report implant.exe --out case42/ --lang ja --actor "Hidden Cobra"
    """
    from kinship.report.build import write_report

    report = _report_for(samples, db, capa_rules, actor, lang, use_store=not no_store)
    files = write_report(report, out)
    if as_json:
        _emit({"files": {k: str(v) for k, v in files.items()}, "warnings": report.warnings})
    else:
        for k, v in files.items():
            click.echo(f"{k:<10} {v}")
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)


def register(main: click.Group) -> None:
    """Add the intel commands to ``main``."""
    samples_arg = click.argument("samples", nargs=-1, required=True,
                                 type=click.Path(exists=True, dir_okay=False, path_type=Path))
    main.command("actor")(click.argument("name")(_json_option(actor_cmd)))
    main.command("capabilities")(
        click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))(
            click.option("--capa-rules", type=click.Path(path_type=Path), help=_CAPA_HELP)(
                _json_option(capabilities_cmd))))
    main.command("iocs")(
        click.argument("files", nargs=-1, required=True,
                       type=click.Path(exists=True, dir_okay=False, path_type=Path))(
            click.option("--text", is_flag=True, help="FILES are text, not executables.")(
                click.option("--no-filter", is_flag=True,
                             help="Keep IOCs on the MISP warning lists.")(
                    _json_option(iocs_cmd)))))

    @main.group("rules")
    def rules() -> None:
        """Detection rules generated from the store (YARA)."""

    rules.command("yara")(
        click.option("--family", required=True, help="Family label in the store.")(
            click.option("--samples", multiple=True, type=click.Path(exists=True,
                         path_type=Path), help="Folder/file holding sample files.")(
                click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                             help="Write the rule here.")(
                    _db_option(_json_option(yara_cmd))))))
    rules.command("keep")(
        click.argument("files", nargs=-1, required=True,
                       type=click.Path(exists=True, dir_okay=False, path_type=Path))(
            _db_option(_json_option(keep_cmd))))

    @main.group("export")
    def export() -> None:
        """Export SAMPLES' intelligence: stix, misp, navigator, csv.

        \b
        Examples:
          kinship export stix implant.exe --out bundle.json
          kinship export navigator implant.exe --capa-rules ~/capa-rules
        """

    for fmt in ("stix", "misp", "navigator", "csv"):
        def make(fmt_: str) -> Any:
            def cmd(samples: tuple[Path, ...], db: Path | None, capa_rules: Path | None,
                    actor: str | None, no_store: bool, out: Path | None) -> None:
                export_cmd(fmt_, samples, db, capa_rules, actor, no_store, out)
            cmd.__doc__ = f"{fmt_.upper()} export of SAMPLES (see `kinship export --help`)."
            return cmd

        export.command(fmt)(samples_arg(
            click.option("--capa-rules", type=click.Path(path_type=Path), help=_CAPA_HELP)(
                click.option("--actor", help="Actor to include (any alias).")(
                    click.option("--no-store", is_flag=True, help="No verdict from the store.")(
                        click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                                     help="Output file (default: stdout).")(
                            _db_option(make(fmt))))))))

    main.command("report")(samples_arg(
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Output folder.")(
            click.option("--capa-rules", type=click.Path(path_type=Path), help=_CAPA_HELP)(
                click.option("--actor", help="Actor to profile (any alias).")(
                    click.option("--lang", type=click.Choice(["en", "ja"]), default="en",
                                 show_default=True, help="Report language.")(
                        click.option("--no-store", is_flag=True,
                                     help="No verdict from the store.")(
                            _db_option(_json_option(report_cmd)))))))))
