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

from kinship.store.paths import DB_ENV, is_postgres_url

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = (
    "Store: an SQLite file, or a PostgreSQL URL postgresql://user@host/dbname (team store). "
    "Default: $KINSHIP_DB, else $KINSHIP_HOME/kinship.db, else the user data dir."
)


class StoreParam(click.ParamType):  # type: ignore[type-arg]
    """``--db``: a PostgreSQL URL stays a string (a Path would fold its ``//``), anything
    else is a file path."""

    name = "FILE|URL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str | Path:
        if isinstance(value, Path):
            return value
        text = str(value)
        if is_postgres_url(text):
            return text.strip()
        if Path(text).is_dir():
            self.fail(f"{text!r} is a directory (give a store file or a postgresql:// URL)",
                      param, ctx)
        return Path(text)


def common(f: F, *, db_help: str = DB_HELP) -> F:
    """--db and --json on every command."""
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)
    f = click.option(
        "--db", type=StoreParam(), envvar=DB_ENV,
        help=db_help,
    )(f)
    return f


def common_with(db_help: str) -> Callable[[F], F]:
    """:func:`common` with a command-specific description of what ``--db`` is used for."""

    def deco(f: F) -> F:
        return common(f, db_help=db_help)

    return deco


_BACKENDS = {"SQLiteStore": "sqlite", "PostgresStore": "postgresql", "MemoryStore": "memory"}


def store_backend(store: object) -> str:
    """The backend's name for ``kinship db stats`` (by class, so psycopg is not imported)."""
    name = type(store).__name__
    return _BACKENDS.get(name, name)


def emit(obj: Any) -> None:
    """Print ``obj`` as indented JSON (non-ASCII kept, unknown types via ``str``)."""
    click.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
