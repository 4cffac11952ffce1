"""Terminal view (rich) of an :class:`~kinship.artifacts.model.ArtifactResult` tree, beside the
other renderers in :mod:`kinship.render.terminal`. JSON goes through ``to_dict`` instead."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from kinship.artifacts.model import ArtifactResult

# IOCs listed per node in the terminal view (--json has them all).
MAX_IOCS_SHOWN = 20


def render_artifact(console: Console, result: ArtifactResult) -> None:
    tree = Tree(_label(result))
    _fill(tree, result)
    console.print(tree)
    techniques = result.all_techniques()
    if techniques:
        console.print("[bold]ATT&CK[/]")
        for t in techniques:
            console.print(f"  {t.id} {escape(t.name)}")
            for e in t.evidence:
                console.print(f"    - {escape(e)}")


def _label(n: ArtifactResult) -> str:
    text = (f"[bold]{escape(n.name)}[/] [dim]{n.kind}, {n.location}, {n.size} bytes[/]\n"
            f"sha256 {n.sha256}  md5 {n.md5}")
    if n.error:
        text += f"\n[red]error:[/] {escape(n.error)}"
    return text


def _fill(tree: Tree, n: ArtifactResult) -> None:
    if n.email is not None:
        e = n.email
        for key, value in (("From", e.from_), ("Reply-To", e.reply_to),
                           ("Return-Path", e.return_path), ("Sender", e.sender),
                           ("To", e.to), ("Subject", e.subject), ("Date", e.date),
                           ("Message-ID", e.message_id), ("X-Mailer", e.x_mailer)):
            if value:
                tree.add(f"{key}: {escape(value)}")
        if e.auth:
            tree.add("auth: " + ", ".join(f"{k}={v}" for k, v in sorted(e.auth.items())))
        if e.received:
            hops = tree.add(f"Received ({len(e.received)} hops, top = nearest recipient)")
            for h in e.received:
                hops.add(escape(f"{h.index}: from {h.from_host or '?'} by {h.by_host or '?'} "
                                f"[{', '.join(h.ips)}] {h.date}"))
        for m in e.mismatches:
            tree.add(f"[yellow]mismatch:[/] {escape(m)}")
        for lk in e.links:
            flag = " [yellow](text/href mismatch)[/]" if lk.mismatch else ""
            shown = f" shown as {escape(repr(lk.text))}" if lk.text else ""
            tree.add(f"link {escape(lk.url)}{shown}{flag}")
    if n.office is not None:
        o = n.office
        for k, v in sorted(o.metadata.items()):
            tree.add(f"{k}: {escape(v)}")
        for r in o.external_relationships:
            tree.add(f"[yellow]external {escape(r.kind)}[/] -> {escape(r.target)} "
                     f"[dim]({escape(r.part)})[/]")
        if o.has_macros:
            macros = tree.add(f"[red]VBA macros[/] ({len(o.macros)} modules)")
            for f in o.macro_findings:
                macros.add(escape(f"{f.kind}: {f.keyword} - {f.description}"))
    if n.attribution is not None:
        a = n.attribution
        if a.status == "matched":
            tree.add(f"[green]attributed:[/] {escape(a.family or '')} "
                     f"(actor {escape(a.actor or '-')}, confidence {a.confidence:.2f})")
        else:
            tree.add(f"attribution {a.status}: {escape(a.reason)}")
    for ioc in n.iocs[:MAX_IOCS_SHOWN]:
        where = ", ".join(dict.fromkeys(s.sample for s in ioc.sources))
        tree.add(f"ioc {ioc.type} {escape(ioc.defanged)} [dim]({escape(where)})[/]")
    if len(n.iocs) > MAX_IOCS_SHOWN:
        tree.add(f"... {len(n.iocs) - MAX_IOCS_SHOWN} more IOCs (--json)")
    for w in n.warnings:
        tree.add(f"[dim]warning: {escape(w)}[/]")
    for c in n.children:
        _fill(tree.add(_label(c)), c)
