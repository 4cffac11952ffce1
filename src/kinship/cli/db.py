"""``kinship db``: inspect and edit the store (stats, list, label, remove)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kinship.api import Kinship
from kinship.cli.common import (
    canonical_actor,
    check_first_seen,
    common,
    emit_ascii,
    out,
    store_backend,
)
from kinship.exceptions import UsageError
from kinship.render import terminal


@click.group()
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
        emit_ascii({"backend": backend, **s.__dict__})
    else:
        terminal.render_stats(out, s, backend)


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
        emit_ascii({"samples": [{k: v for k, v in s.__dict__.items() if k != "info"}
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
        ("family", family), ("actor", canonical_actor(actor, as_json)), ("source", source),
        ("first_seen", first_seen),
        ("version", version_), ("is_library", library)) if v is not None}
    if not changes:
        raise UsageError("nothing to change: give --family, --actor, ...")
    with Kinship(db) as k:
        rec = k.relabel(sample, **changes)
    if as_json:
        emit_ascii({k: v for k, v in rec.__dict__.items() if k != "info"})
    else:
        terminal.render_relabelled(out, rec)


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
        emit_ascii({"removed": rec.sha256})
    else:
        terminal.render_removed(out, rec)


COMMANDS: tuple[click.Command, ...] = (db,)
