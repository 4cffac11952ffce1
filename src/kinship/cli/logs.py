"""``kinship logs``: Windows event logs with Sigma rules (see :mod:`kinship.logs`)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from kinship.cli.common import InputPath, emit, err, out
from kinship.exceptions import EXIT_CODES, UsageError
from kinship.render.safe import inert


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when no offset is given); UsageError otherwise."""
    from datetime import UTC

    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"{option} {value!r}: not an ISO 8601 date or time") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@click.command("logs")
@click.argument("paths", nargs=-1, type=InputPath(dir_okay=True))
@click.option("--sigma-rules", "sigma_rules", type=click.Path(exists=True, file_okay=False,
                                                              path_type=Path),
              help="Folder of Sigma rules (e.g. SigmaHQ's rules/windows). Default: "
                   "$KINSHIP_SIGMA_RULES; kinship bundles none.")
@click.option("--since", metavar="ISO", help="Only events at or after this time (UTC).")
@click.option("--until", metavar="ISO", help="Only events at or before this time (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def logs_cmd(paths: tuple[Path, ...], sigma_rules: Path | None, since: str | None,
             until: str | None, as_json: bool) -> None:
    """Read Windows event logs (.evtx, recursively in folders) and run Sigma rules over them.

    \b
    Rules are converted once to SQL (pySigma's sqlite backend) and run over the events of
    their log source (Security, System, Sysmon, PowerShell, Defender, ...; process_creation
    also over Security 4688). Rules that do not parse or convert are counted and named.
    A file that cannot be read (0 bytes, truncated, not EVTX, over a limit) is listed with
    its reason and the others are still read (exit 7).
    Examples:
      kinship logs Security.evtx --sigma-rules sigma/rules/windows
      kinship logs logs/ --json --since 2020-09-01 --until 2020-10-01
    """
    from kinship.logs.analyze import analyze_logs, rules_folder
    from kinship.render.logs import render_logs

    if not paths:
        raise UsageError("give .evtx files or folders to read")
    rules = rules_folder(sigma_rules)
    if rules is None:  # a quiet "no detections" would read as "the logs are clean"
        err.print(inert("warning: no Sigma rules given (--sigma-rules DIR or "
                        "$KINSHIP_SIGMA_RULES; kinship bundles none): events are read, "
                        "nothing is detected", style="yellow"))
    result = analyze_logs(list(paths), rules, _when(since, "--since"), _when(until, "--until"))
    if as_json:
        emit(result.to_dict())
    else:
        render_logs(out, result)
    if result.failed_files:
        sys.exit(EXIT_CODES["partial_batch"])


COMMANDS: tuple[click.Command, ...] = (logs_cmd,)
