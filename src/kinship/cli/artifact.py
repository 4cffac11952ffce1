"""``kinship artifact``: analyse phishing e-mails (.eml) and Office documents."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kinship.cli.common import InputPath, common_with, emit, out
from kinship.exceptions import EXIT_CODES, InputError, UsageError

if TYPE_CHECKING:
    from kinship.artifacts.model import ArtifactResult


@contextmanager
def _analyser(db: str | Path | None, passwords: Sequence[str]
              ) -> Iterator[Callable[[Path], ArtifactResult]]:
    """:meth:`Kinship.artifact` over the store ``db`` when it exists and holds samples;
    otherwise the store-less analysis, executables skipped with the reason
    :func:`~kinship.api.open_attributor` gives (a missing store file is never created)."""
    from kinship.api import Kinship, open_attributor
    from kinship.artifacts.analyze import analyze_file
    from kinship.cli.intel import _existing_store

    target = _existing_store(db)
    if target is not None:
        with Kinship(target, keep_files=False) as k:
            if k.stats().samples:
                yield lambda f: k.artifact(f, passwords=passwords)
                return
    with open_attributor(db) as attributor:  # skips, and says why
        yield lambda f: analyze_file(f, attributor=attributor, passwords=passwords)


@click.command("artifact")
@click.argument("files", nargs=-1, type=InputPath(dir_okay=True))
@click.option("--password", "passwords", multiple=True, metavar="PW",
              help="Password to try on encrypted zips, after \"infected\" and before those the "
                   "mail states (repeatable).")
@common_with("Store used to attribute executables found in the artifacts (skipped when it "
             "does not exist or is empty).")
def artifact_cmd(files: tuple[Path, ...], db: str | Path | None, as_json: bool,
                 passwords: tuple[str, ...] = ()) -> None:
    """Analyse e-mails (.eml) and Office documents, recursively through their attachments.

    \b
    Reports sender mismatches, Received hops, SPF/DKIM/DMARC results, links (display text vs
    href), attachments with hashes, Office metadata, VBA macros (olevba), external
    relationships (template injection), embedded objects, IOCs with where each was seen and
    ATT&CK techniques with their evidence. Executables found inside are attributed with the
    store; with no store (or an empty one) that step is skipped and said so.
    Encrypted zips are tried with "infected", each --password, then every password the mail
    states ("The password is: ..."); the one that opened a zip is shown with the line it came
    from. Member names of a zip that stays locked are listed all the same.
    A file that cannot be read is listed with its reason and the others are still analysed
    (exit 7); a damaged or oversized part inside a file is a warning on that file.
    Examples:
      kinship artifact invoice.eml
      kinship artifact offer.docx report.xlsm --json
      kinship artifact mails/*.eml --db refs.db
      kinship artifact locked.eml --password Offer2018
    """
    from kinship.render.artifact import (  # every sample string escaped there
        render_artifact,
        render_failed,
    )

    if not files:
        raise UsageError("give .eml or Office files to analyse")
    results: list[ArtifactResult] = []
    failed: list[dict[str, Any]] = []
    with _analyser(db, passwords) as analyse_artifact:
        for f in files:
            try:
                results.append(analyse_artifact(f))
            except InputError as e:
                if len(files) == 1:
                    raise
                failed.append({"path": str(f), "error": type(e).__name__, "reason": e.reason,
                               "exit_code": e.exit_code})
    if as_json:
        emit({"artifacts": [r.to_dict() for r in results],
              "techniques": [t.to_dict() for r in results for t in r.all_techniques()],
              "failed": failed})
    else:
        for r in results:
            render_artifact(out, r)
        render_failed(failed)
    if failed:
        sys.exit(EXIT_CODES["partial_batch"])


COMMANDS: tuple[click.Command, ...] = (artifact_cmd,)
