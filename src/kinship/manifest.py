"""Where a sample's labels come from when the command line does not give them: a manifest
(CSV with a header, JSON list or JSON Lines) with columns
``path,family,actor,source,first_seen,version,library``, a folder laid out
``<family>/<version or date>/<sample>`` (Malpedia style), a Malpedia dump name
(``sample_dump_0x00400000``); and what a first-seen date may be.

Relative manifest paths are relative to the manifest's folder. Actor labels are stored under
the MISP galaxy's name for the actor. :mod:`kinship.ingest` turns these into samples.
"""

from __future__ import annotations

import csv
import datetime
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from kinship.exceptions import InputError
from kinship.pipeline import Labels

_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
# First-seen dates before this year are typos (no sample kinship reads is older).
MIN_FIRST_SEEN_YEAR = 1970
_DUMP_RE = re.compile(r"_(?:dump_)?0x([0-9a-fA-F]+)$")
MANIFEST_FIELDS = ("path", "family", "actor", "source", "first_seen", "version", "library")


def is_first_seen(text: str) -> bool:
    """True for a real date written ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (2016-02-30 and
    2016-13 are not; nor are years before :data:`MIN_FIRST_SEEN_YEAR`)."""
    text = text.strip()
    if not _DATE_RE.match(text):
        return False
    parts = [int(x) for x in text.split("-")] + [1, 1]
    try:
        datetime.date(parts[0], parts[1], parts[2])
    except ValueError:
        return False
    return parts[0] >= MIN_FIRST_SEEN_YEAR


def _bool(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y", "library")


def _labels_from_row(row: dict[str, Any]) -> Labels:
    def get(k: str) -> str | None:
        v = row.get(k)
        return str(v).strip() or None if v not in (None, "") else None

    return Labels(
        family=get("family"),
        actor=get("actor"),
        source=get("source"),
        first_seen=get("first_seen"),
        version=get("version"),
        is_library=_bool(row.get("library", row.get("is_library", ""))),
    )


def read_manifest(path: Path) -> list[tuple[Path, Labels]]:
    """Rows of a CSV/JSON/JSONL manifest as (absolute path, labels)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(str(path), f"cannot read manifest: {e.strerror or e}") from e
    rows: list[dict[str, Any]]
    stripped = text.lstrip()
    try:
        if path.suffix.lower() == ".json" or stripped.startswith("["):
            data = json.loads(text)
            if not isinstance(data, list):
                raise InputError(str(path), "a JSON manifest must be a list of objects")
            rows = data
        elif path.suffix.lower() == ".jsonl" or stripped.startswith("{"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(text.splitlines()))
    except (json.JSONDecodeError, csv.Error) as e:
        raise InputError(str(path), f"malformed manifest: {e}") from e
    out = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("path"):
            raise InputError(str(path), f"row {i} has no 'path'")
        p = Path(str(row["path"]))
        if not p.is_absolute():
            p = path.parent / p
        labels = _labels_from_row(row)
        if labels.first_seen is not None and not is_first_seen(labels.first_seen):
            raise InputError(str(path), f"row {i}: first_seen {labels.first_seen!r} is not a "
                             "date (use YYYY, YYYY-MM or YYYY-MM-DD)")
        out.append((p, labels))
    return _canonical_actors(out)


def _canonical_actors(rows: list[tuple[Path, Labels]]) -> list[tuple[Path, Labels]]:
    """Actor labels as the MISP galaxy names them ("Hidden Cobra" -> "Lazarus Group"), so one
    actor is stored under one name; names the galaxies do not know are kept as given."""
    if not any(labels.actor for _, labels in rows):
        return rows
    from kinship.intel.actors import canonical_actor

    names = {labels.actor: canonical_actor(labels.actor) for _, labels in rows if labels.actor}
    return [(p, replace(labels, actor=names[labels.actor]) if labels.actor else labels)
            for p, labels in rows]


def tree_labels(root: Path, file: Path) -> Labels:
    """Labels from a ``<family>/<version or date>/<sample>`` layout under ``root``."""
    parts = file.relative_to(root).parts
    if len(parts) < 2:
        return Labels()
    family = parts[0]
    version = parts[1] if len(parts) >= 3 else None
    first_seen = version if version and _DATE_RE.match(version) else None
    return Labels(family=family, version=version, first_seen=first_seen)


def dump_base_from_name(name: str) -> int | None:
    """Base address encoded in a Malpedia-style dump name (``sample_dump_0x00400000``)."""
    m = _DUMP_RE.search(Path(name).name)
    return int(m.group(1), 16) if m else None
