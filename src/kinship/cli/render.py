"""``kinship render``: a saved result document shown again, without the store or the sample.

The documents are what ``--json`` printed: ``kinship match X --json`` (a match),
``kinship compare A B --json`` (a comparison) and the ``intel.json`` that ``kinship report``
writes (a report). Re-rendering reads only the document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kinship.cli.common import InputPath, emit_ascii, out
from kinship.exceptions import InputError
from kinship.match.result import MatchResult

# The keys that tell one kind of document from another (each kind's own top-level keys).
_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("match", frozenset({"verdict", "families", "function_matches"})),
    ("compare", frozenset({"left", "right", "pairs", "similarity"})),
    ("report", frozenset({"title", "created", "samples", "lang"})),
)


def read_document(path: Path) -> tuple[str, dict[str, Any]]:
    """The kind ("match", "compare", "report") and data of the JSON document at ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"cannot read: {e}") from e
    except ValueError as e:
        raise InputError(str(path), f"not JSON: {e}") from e
    if isinstance(data, dict):
        for kind, keys in _KINDS:
            if keys <= data.keys():
                return kind, data
    raise InputError(str(path), "not a kinship document (the --json of match or compare, "
                     "or a report's intel.json)")


def load_match(path: Path) -> MatchResult:
    kind, data = read_document(path)
    if kind != "match":
        raise InputError(str(path), f"a {kind} document, not a match")
    return MatchResult.from_dict(data, str(path))


def report_from_match(res: MatchResult, title: str | None = None) -> Any:
    """An :class:`~kinship.report.model.IntelReport` around a saved match: its verdict and
    evidence, no IOCs or capabilities (those need the sample)."""
    from kinship.report.model import IntelReport, SampleIntel, now_iso

    sha = res.sample_sha256
    sample = SampleIntel(sha256=sha, md5="", sha1="", name=sha[:12], format="", arch="",
                         size=0, n_functions=res.n_query_functions, match=res)
    return IntelReport(
        title=title or f"kinship report: {sha[:12]}",
        created=now_iso(),
        samples=[sample], family=res.verdict.family,
        warnings=["made from a saved match result: no IOCs, capabilities or listings "
                  "(they need the sample)"])


def load_report(path: Path) -> Any:
    """The report in ``path``: a report's ``intel.json``, or a saved match made into one."""
    from kinship.report.model import IntelReport

    kind, data = read_document(path)
    if kind == "report":
        return IntelReport.from_dict(data, str(path))
    if kind == "match":
        return report_from_match(MatchResult.from_dict(data, str(path)))
    raise InputError(str(path), f"a {kind} document: a report is made from a match or a "
                     "report's intel.json")


@click.command("render")
@click.argument("document", type=InputPath())
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML page (evidence page of a match, or the report) here.")
@click.option("--md", "md", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown report here (reports and matches).")
@click.option("--top", default=10, show_default=True, help="Rows per table (terminal).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the document again, as read (checks it round-trips).")
def render_cmd(document: Path, html: Path | None, md: Path | None, top: int,
               as_json: bool) -> None:
    """Show a saved result DOCUMENT again: terminal, HTML or Markdown; no store needed.

    \b
    Examples:
      kinship match implant.exe --json > m.json
      kinship render m.json                     # the terminal view, from the file
      kinship render m.json --html m.html       # the evidence page
      kinship compare a.exe b.exe --json > c.json && kinship render c.json
      kinship render case42/intel.json --md report.md --html report.html
    """
    kind, data = read_document(document)
    if kind == "match":
        _render_match(MatchResult.from_dict(data, str(document)), html, md, top, as_json)
    elif kind == "compare":
        _render_compare(document, data, html, md, as_json)
    else:
        _render_report(load_report(document), html, md, as_json)


def _render_match(res: MatchResult, html: Path | None, md: Path | None, top: int,
                  as_json: bool) -> None:
    from kinship.render import terminal
    from kinship.render.html import render_match_html

    if html is not None:
        html.write_text(render_match_html(res, None), encoding="utf-8")
    if md is not None:
        from kinship.report.build import render

        md.write_text(render(report_from_match(res), "md"), encoding="utf-8")
    if as_json:
        emit_ascii(res.to_dict())
    elif html is None and md is None:
        terminal.render_match(out, res, top=top)


def _render_compare(document: Path, data: dict[str, Any], html: Path | None, md: Path | None,
                    as_json: bool) -> None:
    from kinship.evidence.compare import CompareResult
    from kinship.render import terminal
    from kinship.render.html import render_compare_html

    if md is not None:
        raise InputError(str(document), "a comparison has no Markdown view (use --html)")
    res = CompareResult.from_dict(data, str(document))
    if html is not None:
        html.write_text(render_compare_html(res), encoding="utf-8")
    if as_json:
        emit_ascii(res.to_dict())
    elif html is None:
        terminal.render_compare(out, res)


def _render_report(report: Any, html: Path | None, md: Path | None, as_json: bool) -> None:
    from kinship.render.safe import plain_lines
    from kinship.report.build import render

    if html is not None:
        html.write_text(render(report, "html"), encoding="utf-8")
    if md is not None:
        md.write_text(render(report, "md"), encoding="utf-8")
    if as_json:
        emit_ascii(report.to_dict())
    elif html is None and md is None:
        click.echo(plain_lines(render(report, "md")))


COMMANDS: tuple[click.Command, ...] = (render_cmd,)
