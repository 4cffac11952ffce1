"""Terminal view (rich) of an :class:`~kinship.artifacts.model.ArtifactResult` tree, beside the
other renderers in :mod:`kinship.render.terminal`. JSON goes through ``to_dict`` instead.

Every string from the artifact is hostile: it goes through :func:`_s`
(:func:`kinship.render.safe.markup`: control and format characters such as ESC and RTLO
shown escaped, then rich markup escaped), never raw, header names and kinds included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.tree import Tree

from kinship.artifacts.filenames import printable
from kinship.artifacts.model import ArchiveInfo, ArtifactResult
from kinship.render.safe import markup
from kinship.render.verdict import confidence_text

# IOCs listed per node in the terminal view (--json has them all).
MAX_IOCS_SHOWN = 20
# Zip members listed per archive in the terminal view (--json has the whole listing).
MAX_MEMBERS_SHOWN = 50


def _s(text: object) -> str:
    """A hostile string made safe for rich markup and the terminal."""
    return markup(text)


def render_artifact(console: Console, result: ArtifactResult) -> None:
    tree = Tree(_label(result))
    _fill(tree, result)
    console.print(tree)
    techniques = result.all_techniques()
    if techniques:
        console.print("[bold]ATT&CK[/]")
        for t in techniques:
            console.print(f"  {_s(t.id)} {_s(t.name)}")
            for e in t.evidence:
                console.print(f"    - {_s(e)}")


def _label(n: ArtifactResult) -> str:
    text = (f"[bold]{_s(n.name)}[/] [dim]{_s(n.kind)}, {_s(n.location)}, {n.size} bytes[/]\n"
            f"sha256 {_s(n.sha256)}  md5 {_s(n.md5)}")
    if n.error:
        text += f"\n[red]error:[/] {_s(n.error)}"
    return text


def _fill(tree: Tree, n: ArtifactResult) -> None:
    if n.email is not None:
        e = n.email
        for key, value in (("From", e.from_), ("Reply-To", e.reply_to),
                           ("Return-Path", e.return_path), ("Sender", e.sender),
                           ("To", e.to), ("Subject", e.subject), ("Date", e.date),
                           ("Message-ID", e.message_id), ("X-Mailer", e.x_mailer)):
            if value:
                tree.add(f"{key}: {_s(value)}")
        if e.auth:
            tree.add("auth: " + _s(", ".join(f"{k}={v}" for k, v in sorted(e.auth.items()))))
        if e.received:
            hops = tree.add(f"Received ({len(e.received)} hops, top = nearest recipient)")
            for h in e.received:
                hops.add(_s(f"{h.index}: from {h.from_host or '?'} by {h.by_host or '?'} "
                                f"[{', '.join(h.ips)}] {h.date}"))
        for m in e.mismatches:
            tree.add(f"[yellow]mismatch:[/] {_s(m)}")
        for lk in e.links:
            flag = " [yellow](text/href mismatch)[/]" if lk.mismatch else ""
            shown = f" shown as {_s(repr(lk.text))}" if lk.text else ""
            tree.add(f"link {_s(lk.url)}{shown}{flag}")
    if n.office is not None:
        o = n.office
        for k, v in sorted(o.metadata.items()):
            tree.add(f"{_s(k)}: {_s(v)}")
        for r in o.external_relationships:
            tree.add(f"[yellow]external {_s(r.kind)}[/] -> {_s(r.target)} "
                     f"[dim]({_s(r.part)})[/]")
        if o.has_macros:
            macros = tree.add(f"[red]VBA macros[/] ({len(o.macros)} modules)")
            for f in o.macro_findings:
                macros.add(_s(f"{f.kind}: {f.keyword} - {f.description}"))
    if n.archive is not None:
        _archive(tree, n.archive)
    if n.attribution is not None:
        a = n.attribution
        if a.status == "matched":
            tree.add(f"[green]attributed:[/] {_s(a.family or '')} "
                     f"(actor {_s(a.actor or '-')}, confidence "
                     f"{confidence_text(a.confidence) if a.confidence is not None else 'n/a'})")
        else:
            tree.add(f"attribution {_s(a.status)}: {_s(a.reason)}")
    for ioc in n.iocs[:MAX_IOCS_SHOWN]:
        where = ", ".join(dict.fromkeys(s.sample for s in ioc.sources))
        tree.add(f"ioc {_s(ioc.type)} {_s(ioc.defanged)} [dim]({_s(where)})[/]")
    if len(n.iocs) > MAX_IOCS_SHOWN:
        tree.add(f"... {len(n.iocs) - MAX_IOCS_SHOWN} more IOCs (--json)")
    for w in n.warnings:
        tree.add(f"[dim]warning: {_s(w)}[/]")
    for c in n.children:
        _fill(tree.add(_label(c)), c)


def _archive(tree: Tree, a: ArchiveInfo) -> None:
    if a.encrypted and a.password is not None:
        tree.add(f"[yellow]encrypted zip[/], opened with password "
                 f"{_s(repr(a.password.password))} "
                 f"[dim](from {_s(a.password.source)}; {_s(a.tried)} tried)[/]")
    elif a.encrypted:
        tree.add(f"[red]encrypted zip: content could not be opened[/] - {_s(a.note)}")
    if a.opened:  # the members are the children below; --json has the listing
        return
    members = tree.add(f"members ({len(a.members)} listed from the central directory)")
    for m in a.members[:MAX_MEMBERS_SHOWN]:
        lock = f", {_s(m.encryption)}" if m.encryption else ""
        members.add(f"{_s(m.name)} [dim]({m.size} bytes{lock})[/]")
    if len(a.members) > MAX_MEMBERS_SHOWN:
        members.add(f"... {len(a.members) - MAX_MEMBERS_SHOWN} more (--json)")


def render_failed(failed: Sequence[Mapping[str, Any]]) -> None:
    """Files that could not be read, one ``error: PATH: REASON`` line each on stderr (plain
    text, no markup; a name may hold ESC: shown as ``\x1b``)."""
    for d in failed:
        click.echo(f"error: {printable(d['path'])}: {printable(d['reason'])}", err=True)
