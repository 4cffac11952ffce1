"""Evidence commands of the CLI: ``kinship strings ... --shared`` and the ``--html`` pages of
``compare`` and ``match`` (the ``write_*_html`` functions, which those commands call).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from kinship.api import Kinship
from kinship.binary.model import Arch
from kinship.cli.common import DB_HELP, InputPath, common_with, out
from kinship.evidence.compare import CompareResult
from kinship.evidence.shared_strings import SharedStringsResult
from kinship.exceptions import UsageError
from kinship.match.result import MatchResult
from kinship.render.html import render_compare_html, render_match_html
from kinship.render.strings import render_shared_strings


def write_compare_html(k: Kinship, a: Path, b: Path, html: Path, *, max_listed: int = 50
                       ) -> CompareResult:
    """Compare ``a`` with ``b`` (:meth:`Kinship.compare_evidence`) and write the HTML
    evidence page to ``html``."""
    res, strings, left = k.compare_evidence(a, b, max_listed=max_listed)
    html.write_text(render_compare_html(res, strings, left), encoding="utf-8")
    return res


def write_match_html(k: Kinship, file: Path, html: Path, *, base: int | None = None,
                     arch: Arch | None = None, include_self: bool = False) -> MatchResult:
    """Match ``file`` (code + strings, :meth:`Kinship.match_evidence`) and write the HTML
    evidence page to ``html``."""
    res, sample, refs = k.match_evidence(file, base=base, arch=arch, include_self=include_self)
    html.write_text(render_match_html(res, sample, refs), encoding="utf-8")
    return res


def shared_strings_of(k: Kinship | None, files: list[Path], min_samples: int | None
                      ) -> SharedStringsResult:
    """:meth:`Kinship.shared_strings` of ``files``; ``k`` None: without a store (rarity
    from the strings alone)."""
    if k is not None:
        return k.shared_strings(files, min_samples=min_samples)
    from kinship.store.memory import MemoryStore

    with Kinship(store=MemoryStore(), keep_files=False) as bare:
        return bare.shared_strings(files, min_samples=min_samples, use_store=False)


@click.command("strings")
@click.argument("files", nargs=-1, required=True, type=InputPath(dir_okay=True))
@click.option("--shared", is_flag=True,
              help="Only strings shared by the samples (the default and only mode today).")
@click.option("--min-samples", type=int, default=None,
              help="Strings found in at least N of the files (default: all of them).")
@click.option("--no-store", is_flag=True,
              help="Do not use the store's library corpus and families for rarity.")
@common_with("Store for rarity (its library strings are dropped): " + DB_HELP)
def strings_cmd(files: tuple[Path, ...], shared: bool, min_samples: int | None,
                no_store: bool, as_json: bool, db: str | Path | None) -> None:
    """Distinctive strings shared by FILES, with offsets and a hex dump per sample.

    \b
    Examples:
      kinship strings implant_2016.exe implant_2018.exe implant_2019.exe --shared
      kinship strings a.exe b.exe c.exe --shared --min-samples 2 --json
    Generic strings ("%s", API and DLL names, strings of the store's library corpus
    such as CRT messages) are left out.
    """
    if len(files) < 2:
        raise UsageError("give at least two files")
    if no_store:
        res = shared_strings_of(None, list(files), min_samples)
    else:
        with Kinship(db) as k:
            res = shared_strings_of(k, list(files), min_samples)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
    else:
        render_shared_strings(out, res)


COMMANDS: tuple[click.Command, ...] = (strings_cmd,)
