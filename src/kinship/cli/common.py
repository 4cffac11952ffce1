"""What every ``kinship`` command module shares: the ``--db``/``--json`` options, argument
types, the consoles, JSON output and a progress bar.

The command modules import this one, never :mod:`kinship.cli.app` (which imports them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kinship.exceptions import EXIT_CODES, KinshipError, NotFoundError, UsageError
from kinship.render.safe import inert, plain
from kinship.store.paths import DB_ENV, is_postgres_url

if TYPE_CHECKING:
    from kinship.ingest import ProgressFn

F = TypeVar("F", bound=Callable[..., Any])

# Terminal output of the commands (renderers in kinship.render print to these).
out = Console(highlight=False, soft_wrap=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

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


class InputPath(click.Path):
    """A file (or folder) the command reads. A missing one is "not found" (exit code 6,
    one line: ``error: PATH: no such file``), like a missing sample or store record, not a
    usage error; other problems (a folder where a file is wanted) stay usage errors."""

    def __init__(self, *, dir_okay: bool = False) -> None:
        super().__init__(exists=True, dir_okay=dir_okay, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, (str, os.PathLike)) and not os.path.exists(value):
            raise NotFoundError(f"{os.fsdecode(value)}: no such file")
        return super().convert(value, param, ctx)


def check_first_seen(value: str | None) -> str | None:
    """``value`` when it is a real date written YYYY, YYYY-MM or YYYY-MM-DD (None passes);
    else :class:`~kinship.exceptions.UsageError` (exit code 2, one line)."""
    from kinship.manifest import is_first_seen

    if value is None:
        return None
    if not is_first_seen(value):
        raise UsageError(f"--first-seen {value!r} is not a valid date: use YYYY, YYYY-MM or "
                         "YYYY-MM-DD (e.g. 2016-03)")
    return value.strip()


def family_option(f: F) -> F:
    """``--family`` for commands that also take FAMILY as an argument (``rules yara``,
    ``rules sigma``): either form, not two different families."""
    return click.option("--family", "family",
                        help="Family label in the store (or give FAMILY as an argument).")(f)


def pick_family(argument: str | None, option: str | None) -> str:
    """The family given as an argument or as ``--family`` (UsageError if none, or two that
    differ)."""
    if argument and option and argument != option:
        raise UsageError(f"two families given: {argument!r} and --family {option!r}")
    family = argument or option
    if not family:
        raise UsageError("give the family: FAMILY or --family FAMILY")
    return family


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


def emit_ascii(obj: Any) -> None:
    """Print ``obj`` as indented JSON with every non-ASCII character escaped (the output of
    ``add``, ``match``, ``compare``, ``info``, ``db`` and of errors)."""
    click.echo(json.dumps(obj, indent=2, default=str))


def emit(obj: Any) -> None:
    """Print ``obj`` as indented JSON (non-ASCII kept, unknown types via ``str``; C1
    controls, bidi overrides and other invisible characters written ``\\uXXXX``: the same
    values, nothing raw for a terminal)."""
    from kinship.render.safe import json_text

    click.echo(json_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False)))


def parse_int(value: str | None) -> int | None:
    """``--base``-style numbers: decimal or ``0x...`` (None passes)."""
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError as e:
        raise click.BadParameter(f"not an integer: {value!r} (use 0x... for hex)") from e


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[ProgressFn | None]:
    """A progress callback drawing a bar on stderr (None when off or not a terminal)."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}", markup=False), console=err,
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total,
                       description=plain(Path(name).name)[:40])

        yield update


def canonical_actor(actor: str | None, as_json: bool = False) -> str | None:
    """The MISP galaxy's name for an actor label (any alias); unknown names as given. A
    renamed label is said on stderr (not with --json)."""
    if actor is None or not actor.strip():
        return actor
    from kinship.intel.actors import canonical_actor as galaxy_name

    name = galaxy_name(actor)
    if name != actor.strip() and not as_json:
        err.print(inert(f"actor {actor!r} is stored as {name!r} (its MISP galaxy name)"))
    return name


def exit_code_of(error_name: str) -> int:
    """The exit code of the :mod:`kinship.exceptions` class named ``error_name`` (a failed
    file's record names it); "bad input" for any other name."""
    import kinship.exceptions as ex

    cls = getattr(ex, error_name, None)
    if isinstance(cls, type) and issubclass(cls, KinshipError):
        return cls.exit_code
    return EXIT_CODES["bad_input"]
