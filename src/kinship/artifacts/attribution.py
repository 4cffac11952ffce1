"""Attributing executables found in artifacts with the store (``Kinship.match``).

:func:`open_attributor` yields a callable ``(name, data) -> Attribution``. With no store file,
or an empty store, every executable gets ``status="skipped"`` and the reason, so a phishing
mail can be analysed on a machine without references. The executable is written to a private
temporary file only for the duration of the match (the analysers read files).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kinship.artifacts.model import Attribution
from kinship.exceptions import KinshipError
from kinship.store.paths import default_db, is_postgres_url

logger = logging.getLogger(__name__)

Attributor = Callable[[str, bytes], Attribution]


def skipped(reason: str) -> Attributor:
    """An attributor that attributes nothing and says why."""

    def attribute(name: str, data: bytes) -> Attribution:
        return Attribution("skipped", reason)

    return attribute


@contextmanager
def open_attributor(db: str | Path | None) -> Iterator[Attributor]:
    """An attributor over the store ``db`` (default store when None)."""
    target = db if db else default_db()
    if not is_postgres_url(target) and not Path(target).is_file():
        yield skipped(f"no store at {target}: executables not attributed")
        return
    from kinship.api import Kinship

    with Kinship(target, keep_files=False) as k:
        if k.stats().samples == 0:
            yield skipped(f"store {target} is empty: executables not attributed")
            return

        def attribute(name: str, data: bytes) -> Attribution:
            suffix = Path(name).suffix[:16] or ".bin"
            with tempfile.TemporaryDirectory(prefix="kinship-artifact-") as tmp:
                path = Path(tmp) / f"sample{suffix}"
                path.write_bytes(data)
                try:
                    r = k.match(path)
                except KinshipError as e:
                    return Attribution("error", str(e).replace(str(path), name))
            v = r.verdict
            return Attribution("matched" if v.family else "unknown",
                               "" if v.family else v.reason,
                               v.family, v.actor, v.confidence, v.score)

        yield attribute
