"""The ``kinship`` command line: parses arguments, calls :mod:`kinship.api`, renders.

Exit codes (stable, see ``kinship.exceptions.EXIT_CODES``): 0 ok, 1 error, 2 usage, 3 bad input
file, 4 unsupported format, 5 store error, 6 not found, 7 batch finished with skipped files.

Each command module (:mod:`kinship.cli.sample`, ``db``, ``evidence``, ``intel``, ``rules``,
``artifact``, ``baseline``, ``render``) defines its click commands and groups and lists them in
``COMMANDS``; :data:`COMMANDS` here gathers them and :func:`register` is the one place that
adds commands to a group.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from kinship.cli import artifact, baseline, db, evidence, intel, logs, render, rules, sample
from kinship.cli.common import emit_ascii, err
from kinship.exceptions import KinshipError
from kinship.render.safe import InertFormatter, inert, plain_lines

# Every top-level command, in the order of the modules (``--help`` lists them sorted).
COMMANDS: tuple[click.Command, ...] = (
    *sample.COMMANDS,
    *db.COMMANDS,
    *evidence.COMMANDS,
    *intel.COMMANDS,
    *rules.COMMANDS,
    *artifact.COMMANDS,
    *baseline.COMMANDS,
    *render.COMMANDS,
    *logs.COMMANDS,
)


def _fail(e: KinshipError, as_json: bool) -> NoReturn:
    """One line for ``e`` (its message quotes names from samples: printed inert, see
    :mod:`kinship.render.safe`), then exit with its code."""
    if as_json:
        emit_ascii({"error": type(e).__name__, "message": str(e), "exit_code": e.exit_code})
    else:
        line = inert("error:", style="red")
        line.append(" ").append_text(inert(str(e)))
        err.print(line, highlight=False)
    sys.exit(e.exit_code)


class KinshipGroup(click.Group):
    """Maps KinshipError to its exit code and a one-line message (a JSON object with
    ``--json``, also when the error comes from an argument, before the command runs)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["kinship.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("kinship.json")) or "--json" in sys.argv
        try:
            return super().invoke(ctx)
        except KinshipError as e:
            _fail(e, as_json)
        except click.exceptions.ClickException as e:
            e.message = plain_lines(e.message)  # may quote a path or value given
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            # A bug (ours or a parser's) on hostile input: one line, a stable code, and the
            # traceback only when asked for (-vv).
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            _fail(KinshipError(f"internal error: {type(e).__name__}: {e} "
                               "(run with -vv for the traceback)"), as_json)


def register(group: click.Group, commands: tuple[click.Command, ...] = COMMANDS) -> None:
    """Add ``commands`` (default: every kinship command) to ``group``."""
    for command in commands:
        group.add_command(command)


@click.group(cls=KinshipGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="kinship")
def main(verbose: int) -> None:
    """kinship: whose code is this, and what else did they do?

    \b
    Index labelled reference samples, then attribute new ones by code reuse:
      kinship add refs/lua/*.so --family lua --actor "Example Actor" --source "Vendor 2016"
      kinship match suspicious.dll
      kinship compare old_x86.exe new_x64.exe
    """
    handler = logging.StreamHandler()  # stderr; log messages quote names from samples
    handler.setFormatter(InertFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), handlers=[handler])


register(main)
