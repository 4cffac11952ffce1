"""Terminal rendering of the threat-intelligence commands: ``actor``, ``capabilities``,
``iocs``, ``rules yara``/``keep``, ``export`` and ``report``.

Plain lines (``click.echo``). Names, labels, rule names and paths come from samples, stores
and rule folders, so every line goes through :func:`kinship.render.safe.plain`: control
characters are shown (``\\x1b``), never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from kinship.render.safe import json_text, plain, plain_lines

if TYPE_CHECKING:  # the commands import these lazily (yara, capa rules): so does this module
    from kinship.intel.actors import ActorProfile
    from kinship.intel.capabilities import CapabilitiesResult
    from kinship.intel.iocs import IOCResult
    from kinship.rules.yara_gen import FamilyRule


def _echo(line: object, file: TextIO | None = None, err: bool = False) -> None:
    """One line of terminal output, inert (to ``file``; else stdout, or stderr with ``err``)."""
    click.echo(plain(line), file=file, err=err)


def label_line(labels: Mapping[str, Any] | None) -> str:
    """``stored as family=..., actor=...`` (the labels the store holds), or that it holds none."""
    if not labels:
        return "not in the store"
    return "stored as " + ", ".join(f"{k}={plain(v)}" for k, v in labels.items()
                                    if v not in (None, False))


def render_actor(p: ActorProfile, stored: Sequence[Mapping[str, Any]],
                 file: TextIO | None = None) -> None:
    """An actor profile and the stored samples labelled with it (any alias)."""
    _echo(f"{p.name}  (query: {p.query}; ATT&CK {p.attack_id or '-'}; "
          f"country {p.country or '-'})", file)
    _echo(f"aliases: {', '.join(p.aliases)}", file)
    _echo(f"techniques ({len(p.techniques)}): {', '.join(t.id for t in p.techniques)}", file)
    _echo(f"software ({len(p.software)}): {', '.join(s.name for s in p.software)}", file)
    for ref in p.references[:10]:
        _echo(f"  {ref}", file)
    _echo(f"source: {p.provenance}", file)
    if stored:
        _echo(f"stored samples ({len(stored)}):", file)
        for r in stored:
            _echo(f"  {r['sha256'][:16]}  {r['name']}  family={r['family']} "
                  f"label={r['actor_label']!r} source={r['source']}", file)


def render_capabilities(path: Path, sha256: str, labels: Mapping[str, Any] | None,
                        res: CapabilitiesResult, file: TextIO | None = None) -> None:
    """Techniques, capabilities with evidence addresses, the rule sets used and the library
    code left out of the search."""
    _echo(f"{path}  {sha256[:16]}  ({label_line(labels)})", file)
    for t in res.techniques:
        where = ", ".join(f"0x{v:x}" for v in t.function_vas)
        _echo(f"{t.id:<10} {t.name or '':<55} {where}  [{', '.join(t.rules)}]", file)
    _echo(f"-- {len(res.capabilities)} capabilities, {res.n_rules} rules, "
          f"{res.seconds:.2f} s", file)
    for c in res.capabilities:
        _echo(f"  {c.rule}  " + " ".join(f"0x{e.va:x}" for e in c.evidence[:5]), file)
    _echo("rule sets:", file)
    for rs in res.rule_sets:
        _echo(f"  {rs.describe()}", file)
    _echo(f"library code: {res.n_library_functions} of {res.n_functions} functions "
          "recognised as library code (compiler runtime, library corpus), not searched"
          + (f"; {res.library_note}" if res.library_note else ""), file)


def render_iocs(path: Path, sha256: str | None, labels: Mapping[str, Any] | None,
                r: IOCResult, file: TextIO | None = None) -> None:
    """The IOCs of one file (defanged, with where each was found); ``sha256`` None for a
    text document (no store labels line)."""
    _echo(f"{path}:" + (f"  ({label_line(labels)})" if sha256 else ""), file)
    for i in r.iocs:
        src = i.sources[0]
        at = f" offset 0x{src.offset:x}" if src.offset is not None else ""
        _echo(f"  {i.type:<13} {i.defanged}  ({src.kind}{at})", file)
    if r.filtered:
        _echo(f"  filtered: {', '.join(i.defanged for i in r.filtered)}", file)


def render_yara(rule: FamilyRule, n_others: int, file: TextIO | None = None) -> None:
    """The rule's text, then its validation summary as YARA comments."""
    click.echo(plain_lines(rule.text), file=file)
    for line in rule.summary(n_others):
        _echo(f"// {line}", file)


def render_kept(kept: Mapping[str, str], file: TextIO | None = None) -> None:
    """``sha256  path`` per file kept by ``rules keep``."""
    for f, h in kept.items():
        _echo(f"{h}  {f}", file)


def render_export(text: str, *, csv: bool, file: TextIO | None = None) -> None:
    """An export artefact on stdout: CSV (fields hold sample names and strings) as inert
    lines, JSON with invisible characters escaped."""
    click.echo(plain_lines(text) if csv else json_text(text), file=file)


def render_report_files(files: Mapping[str, Path], rule_sets: Sequence[Mapping[str, Any]],
                        warnings: Sequence[str], file: TextIO | None = None,
                        err_file: TextIO | None = None) -> None:
    """The files ``report`` wrote (stdout), then the rule sets used and the warnings
    (stderr)."""
    for k, v in files.items():
        _echo(f"{k:<10} {v}", file)
    for rs in rule_sets:
        used = (f"{rs['n_rules']} rules from {rs['path']}" if rs["used"]
                else f"not used: {rs['reason']}")
        _echo(f"rule set {rs['name']}: {used}", err_file, err=True)
    for w in warnings:
        _echo(f"warning: {w}", err_file, err=True)
