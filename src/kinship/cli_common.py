"""Options shared by every ``kinship`` command (``--db``, ``--json``) and JSON output.

Lives apart from :mod:`kinship.cli` so that the command modules it imports (cli_intel,
cli_evidence) can use the same decorator without an import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = "Store file (default: $KINSHIP_HOME/kinship.db, else the user data dir)."


def common(f: F, *, db_help: str = DB_HELP) -> F:
    """--db and --json on every command."""
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)
    f = click.option(
        "--db", type=click.Path(dir_okay=False, path_type=Path), envvar="KINSHIP_DB",
        help=db_help,
    )(f)
    return f


def common_with(db_help: str) -> Callable[[F], F]:
    """:func:`common` with a command-specific description of what ``--db`` is used for."""

    def deco(f: F) -> F:
        return common(f, db_help=db_help)

    return deco


def emit(obj: Any) -> None:
    """Print ``obj`` as indented JSON (non-ASCII kept, unknown types via ``str``)."""
    click.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
