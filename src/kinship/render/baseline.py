"""Terminal rendering of ``kinship baseline list|build|add`` (rich; pack, library and file
names may come from anyone's pack file: printed inert, see :mod:`kinship.render.safe`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kinship.baseline.registry import BASELINES_ENV
from kinship.render.safe import inert, plain

if TYPE_CHECKING:  # the build code loads with `baseline build`
    from kinship.baseline.build import BuildReport
    from kinship.baseline.registry import PackEntry


def render_packs(c: Console, entries: Sequence[PackEntry], enabled: bool,
                 user_dirs: Sequence[Path]) -> None:
    """The packs found, one row per library (a damaged or incompatible pack: why it is not
    used), and where the user's packs go."""
    if not enabled:
        c.print(Text("baseline packs are turned off ($KINSHIP_BASELINE=off)", style="yellow"))
    t = Table(title="baseline packs (compiler runtimes recognised as library code)")
    for col in ("pack", "library", "functions", "origin"):
        t.add_column(col, overflow="fold")
    for e in entries:
        if e.pack is None:
            t.add_row(inert(e.path.name), inert(f"not used: {e.error}", style="red"), "", "")
            continue
        origin = "built-in" if e.builtin else str(e.path.parent)
        for lib, n in zip(e.pack.libraries, e.pack.library_counts().values(), strict=True):
            t.add_row(inert(e.pack.name), inert(lib.label), str(n), inert(origin))
    c.print(t)
    c.print(inert(f"user packs: {', '.join(str(d) for d in user_dirs)} (${BASELINES_ENV})",
                  style="dim"))


def render_built(c: Console, dest: Path, rep: BuildReport) -> None:
    """The pack written, the files skipped and how to install it."""
    c.print(inert(f"{dest}: {len(rep.pack)} runtime functions from {rep.n_files} file(s)"))
    for f, r in rep.failed:
        c.print(inert(f"skipped {f}: {r}", style="red"))
    c.print(inert(f"use it in every store: kinship baseline add {dest}", style="dim"))


def render_added(added: Sequence[Mapping[str, Any]]) -> None:
    """One line per pack installed into the user's folder."""
    for a in added:
        click.echo(plain(f"added {a['name']} ({a['functions']} functions) -> {a['path']}"))
