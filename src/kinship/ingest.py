"""Batch ingest: expand arguments into samples, analyse them (in parallel), store each one.

Inputs a user can give ``kinship add``:

* files (executables, memory dumps with a base, zip archives with password "infected");
* a folder laid out ``<family>/<version or date>/<sample>`` (Malpedia style) — labels come from
  the path unless ``--family`` is given;
* a manifest (CSV with a header, JSON list or JSON Lines) with columns
  ``path,family,actor,source,first_seen,version,library``; relative paths are relative to the
  manifest's folder.

Every sample is stored in its own transaction. A bad file is recorded in the report and skipped;
the rest of the batch completes.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kinship.binary import limits
from kinship.binary.archive import iter_archive
from kinship.binary.load import is_archive
from kinship.exceptions import InputError, KinshipError, UsageError
from kinship.pipeline import AnalysedSample, Labels, SampleInput, analyse, feature_params
from kinship.store.base import Store
from kinship.store.files import SampleFiles, sha256_file
from kinship.strings.similarity import to_stored

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]  # (done, total, current name)

_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
# First-seen dates before this year are typos (no sample kinship reads is older).
MIN_FIRST_SEEN_YEAR = 1970
_DUMP_RE = re.compile(r"_(?:dump_)?0x([0-9a-fA-F]+)$")
MANIFEST_FIELDS = ("path", "family", "actor", "source", "first_seen", "version", "library")


@dataclass
class Failure:
    name: str
    reason: str
    error: str  # exception class name

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason, "error": self.error}


@dataclass
class Added:
    sha256: str
    name: str
    family: str | None
    n_functions: int
    n_instructions: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AddReport:
    added: list[Added] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # names of samples already stored
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # summed analysis time in workers

    @property
    def n_functions(self) -> int:
        return sum(a.n_functions for a in self.added)

    @property
    def n_instructions(self) -> int:
        return sum(a.n_instructions for a in self.added)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [a.to_dict() for a in self.added],
            "duplicates": self.duplicates,
            "failed": [f.to_dict() for f in self.failed],
            "n_added": len(self.added),
            "n_duplicates": len(self.duplicates),
            "n_failed": len(self.failed),
            "n_functions": self.n_functions,
            "n_instructions": self.n_instructions,
            "seconds": round(self.seconds, 3),
            "instructions_per_second": round(self.n_instructions / self.seconds, 1)
            if self.seconds
            else None,
        }


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


def _tree_labels(root: Path, file: Path) -> Labels:
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


def expand(
    paths: Sequence[Path], labels: Labels, *, base: int | None = None, use_tree: bool = True
) -> Iterator[SampleInput | Failure]:
    """Turn command-line paths into samples; unreadable entries become Failures."""
    for p in paths:
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                tree = _tree_labels(p, f) if use_tree and not labels.family else Labels()
                yield from _expand_file(f, labels.merged(tree), base)
        elif p.exists():
            yield from _expand_file(p, labels, base)
        else:
            yield Failure(str(p), "no such file or directory", "InputError")


def _expand_file(path: Path, labels: Labels, base: int | None) -> Iterator[SampleInput | Failure]:
    try:
        if is_archive(path):
            for member, data in iter_archive(path):
                yield SampleInput(name=f"{path}:{member}", data=data, labels=labels, base=base)
            return
    except InputError as e:
        yield Failure(str(path), e.reason, type(e).__name__)
        return
    yield SampleInput(name=str(path), path=path, labels=labels, base=base)


def _sha256_of(item: SampleInput) -> str | None:
    """SHA-256 of the input, streamed; None when unreadable or over the size limit (the
    analysis then reports the real error)."""
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest()
    assert item.path is not None
    try:
        if item.path.stat().st_size > limits.MAX_FILE_SIZE:
            return None
        return sha256_file(item.path)
    except OSError:
        return None


def _analyse_safely(item: SampleInput) -> AnalysedSample | Failure:
    """Worker entry point: never raises for a bad sample."""
    try:
        return analyse(item)
    except KinshipError as e:
        reason = e.reason if isinstance(e, InputError) else str(e)
        return Failure(item.name, reason, type(e).__name__)
    except (ValueError, IndexError, KeyError, OverflowError, MemoryError, RecursionError) as e:
        # A parser bug on hostile input must not end the batch; keep the reason for the report.
        logger.debug("unexpected error on %s", item.name, exc_info=True)
        return Failure(item.name, f"internal error while analysing: {type(e).__name__}: {e}",
                       type(e).__name__)


def _results(
    items: list[SampleInput], jobs: int
) -> Iterable[tuple[SampleInput, AnalysedSample | Failure]]:
    if jobs <= 1 or len(items) <= 1:
        for it in items:
            yield it, _analyse_safely(it)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures: list[tuple[SampleInput, Future[AnalysedSample | Failure]]] = [
            (it, pool.submit(_analyse_safely, it)) for it in items
        ]
        for it, fut in futures:
            try:
                yield it, fut.result()
            except Exception as e:  # a worker died (e.g. killed by the OOM killer)
                yield it, Failure(it.name, f"analysis worker failed: {e}", type(e).__name__)


def _keep(files: SampleFiles, item: SampleInput) -> None:
    try:
        if item.data is not None:
            files.keep_bytes(item.data)
        elif item.path is not None:
            files.keep(item.path)
    except (OSError, InputError) as e:  # the sample is stored; only the copy is missing
        logger.warning("%s: stored, but its file could not be kept: %s", item.name, e)


def add_inputs(
    store: Store,
    inputs: Iterable[SampleInput | Failure],
    *,
    jobs: int = 1,
    replace: bool = False,
    progress: ProgressFn | None = None,
    files: SampleFiles | None = None,
) -> AddReport:
    """Analyse and store every input; one transaction per sample.

    With ``files``, each stored sample's bytes are also kept there (for evidence and rules).
    """
    t0 = time.perf_counter()
    report = AddReport()
    todo: list[SampleInput] = []
    for item in inputs:
        if isinstance(item, Failure):
            report.failed.append(item)
            continue
        sha = _sha256_of(item)
        if sha and not replace and store.has_sample(sha):
            report.duplicates.append(item.name)
            continue
        todo.append(item)
    total = len(todo)
    if total == 0 and not report.failed and not report.duplicates:
        raise UsageError("nothing to add: no files found")
    if todo:
        store.bind_feature_params(feature_params())
    for done, (item, res) in enumerate(_results(todo, jobs), 1):
        if progress:
            progress(done, total, item.name)
        if isinstance(res, Failure):
            logger.warning("skipped %s: %s", res.name, res.reason)
            report.failed.append(res)
            continue
        report.cpu_seconds += sum(res.seconds.values())
        if not replace and store.has_sample(res.record.sha256):
            report.duplicates.append(item.name)  # same bytes twice in one batch
            continue
        try:
            store.add_sample(res.record, res.features, replace=replace,
                             strings=to_stored(res.strings.strings))
        except KinshipError as e:
            report.failed.append(Failure(item.name, str(e), type(e).__name__))
            continue
        r = res.record
        if files is not None:
            _keep(files, item)
        report.added.append(Added(r.sha256, r.name, r.family, r.n_functions, r.n_instructions))
    report.seconds = time.perf_counter() - t0
    return report
