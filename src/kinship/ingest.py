"""Batch ingest: expand arguments into samples, analyse them (in parallel), store each one.

Inputs a user can give ``kinship add``:

* files (executables, memory dumps with a base, zip archives with password "infected");
* a folder laid out ``<family>/<version or date>/<sample>`` (Malpedia style) — labels come from
  the path unless ``--family`` is given;
* a manifest (CSV with a header, JSON list or JSON Lines) with columns
  ``path,family,actor,source,first_seen,version,library``; relative paths are relative to the
  manifest's folder (:mod:`kinship.manifest` reads it and the folder layout's labels).

Every sample is stored in its own transaction. A bad file is recorded in the report and skipped;
the rest of the batch completes. Hostile inputs end as report entries, never as an aborted batch:

    damaged zip, zip bomb          -> failed (the archive, or the one member)
    FIFO, socket, device           -> failed ("not a regular file"), never opened
    unreadable subfolder           -> failed (the folder, with the OS's reason)
    unsafe zip member name         -> warnings (skipped)
    symlink out of a folder        -> warnings (not followed unless follow_symlinks)
    raw dump with no functions     -> failed (not stored)
    stored by a concurrent run     -> duplicates + warnings (this run's labels not applied)

Zip members travel as :class:`~kinship.binary.archive.MemberRef` (archive, member): the process
that analyses a member reads it, so one member's bytes are in memory at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import computed_field, field_serializer

from kinship.binary import limits
from kinship.binary.archive import MemberRef, close_archives, list_archive, member_chunks
from kinship.binary.load import is_archive
from kinship.binary.regular import file_kind, open_regular
from kinship.document import Document, Meta, MetaFn
from kinship.exceptions import InputError, KinshipError, UsageError
from kinship.manifest import tree_labels
from kinship.pipeline import AnalysedSample, Labels, SampleInput, analyse, feature_params
from kinship.store.base import Store
from kinship.store.files import SampleFiles
from kinship.store.model import SampleRecord
from kinship.strings.similarity import to_stored
from kinship.workers import map_resilient

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]  # (done, total, current name)

@dataclass(frozen=True)
class Failure(Document):
    name: str
    reason: str
    error: str  # exception class name


@dataclass(frozen=True)
class Notice(Failure):
    """Not a failure: something left out on purpose or worth a word, shown in the report's
    ``warnings`` (an unsafe zip member name, a symlink out of the folder, a sample another run
    stored first). ``error`` says which kind: :data:`NOTICE_KINDS`."""


# Notice kinds that mean an input was left out (the batch is then partial, like a failure).
SKIPPING_NOTICES = frozenset({"unsafe_name", "symlink"})

NOTICE_KINDS = {
    "unsafe_name": "zip member name is absolute or climbs out with '..'",
    "symlink": "symbolic link not followed",
    "other_run": "stored by another run first; this run's labels were not applied",
    "no_functions": "stored with no functions found",
}


@dataclass(frozen=True)
class Added(Document):
    sha256: str
    name: str
    family: str | None
    n_functions: int
    n_instructions: int


@dataclass
class AddReport(Document):
    """What one ``add`` did. Not frozen: ``add_inputs`` appends to it as the batch goes.

    Its JSON adds counts (``n_added`` ...) and the throughput to the fields."""

    added: list[Added] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # names of samples already stored
    failed: list[Failure] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)  # skipped on purpose, or a caveat
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # summed analysis time in workers
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_added(self) -> int:
        return len(self.added)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_duplicates(self) -> int:
        return len(self.duplicates)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_failed(self) -> int:
        return len(self.failed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_warnings(self) -> int:
        return len(self.warnings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_functions(self) -> int:
        return sum(a.n_functions for a in self.added)

    @property
    def partial(self) -> bool:
        """Some input was not stored: it failed, or was skipped on purpose (exit code 7)."""
        return bool(self.failed) or any(w.error in SKIPPING_NOTICES for w in self.warnings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_instructions(self) -> int:
        return sum(a.n_instructions for a in self.added)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def instructions_per_second(self) -> float | None:
        """Throughput of the batch (None when it took no measurable time)."""
        return round(self.n_instructions / self.seconds, 1) if self.seconds else None

    @field_serializer("seconds")
    def _seconds_json(self, seconds: float) -> float:
        return round(seconds, 3)


def expand(
    paths: Sequence[Path],
    labels: Labels,
    *,
    base: int | None = None,
    use_tree: bool = True,
    follow_symlinks: bool = False,
) -> Iterator[SampleInput | Failure]:
    """Turn command-line paths into samples; unreadable entries become Failures, entries left
    out on purpose :class:`Notice` s. Paths given are followed when they are symlinks; inside a
    folder, a symlink that leads out of it is not, unless ``follow_symlinks``."""
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            yield Failure(str(p), "no such file or directory", "InputError")
            continue
        except OSError as e:
            yield Failure(str(p), f"cannot access: {e.strerror or e}", "InputError")
            continue
        if stat.S_ISDIR(st.st_mode):
            files, problems = _walk(p, follow_symlinks)
            yield from problems
            for f in files:
                tree = tree_labels(p, f) if use_tree and not labels.family else Labels()
                yield from _expand_file(f, labels.merged(tree), base)
        else:
            yield from _expand_file(p, labels, base)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(root: Path, follow_symlinks: bool) -> tuple[list[Path], list[Failure]]:
    """Files under ``root`` (sorted) and what was not taken: unreadable folders (failures),
    symlinks out of ``root`` (notices), FIFOs, sockets and devices (failures). A folder is
    entered once, so symlink loops end."""
    real_root = os.path.realpath(root)
    files: list[Path] = []
    problems: list[Failure] = []
    try:
        st = root.stat()
        seen = {(st.st_dev, st.st_ino)}
    except OSError:
        seen = set()
    todo = [root]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(Failure(
                str(folder), f"cannot read folder: {e.strerror or e}; nothing in it was added",
                "InputError"))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    target = os.path.realpath(path)
                    if not follow_symlinks and not _within(target, real_root):
                        problems.append(Notice(
                            str(path), f"symbolic link to {target}, outside {root}: not followed"
                            " (--follow-symlinks follows it)", "symlink"))
                        continue
                st = path.stat()
            except OSError as e:
                problems.append(Failure(str(path), f"cannot access: {e.strerror or e}",
                                        "InputError"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    todo.append(path)
            elif stat.S_ISREG(st.st_mode):
                files.append(path)
            else:
                problems.append(Failure(
                    str(path), f"not a regular file ({file_kind(st.st_mode)})",
                    "InputError"))
    return sorted(files), problems


def _expand_file(path: Path, labels: Labels, base: int | None) -> Iterator[SampleInput | Failure]:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        yield Failure(str(path), f"cannot access: {e.strerror or e}", "InputError")
        return
    if not stat.S_ISREG(mode):
        # A FIFO would block the open, /dev/zero would hash forever: refused unopened.
        yield Failure(str(path), f"not a regular file ({file_kind(mode)}): refused",
                      "InputError")
        return
    if not is_archive(path):
        yield SampleInput(name=str(path), path=path, labels=labels, base=base)
        return
    try:
        listing = list_archive(path)
    except InputError as e:
        yield Failure(str(path), e.reason, type(e).__name__)
        return
    for m in listing.members:
        if m.name is None:
            yield Notice(f"{path}:{m.filename}", "unsafe zip member name (absolute, or climbs"
                         " out with '..'): skipped", "unsafe_name")
            continue
        name = f"{path}:{m.name}"
        problem = listing.problems.get(m.index)
        if problem is not None:
            yield Failure(name, problem.reason, type(problem).__name__)
            continue
        yield SampleInput(name=name, member=MemberRef(str(path), m.index, m.filename),
                          labels=labels, base=base)


def _sha256_of(item: SampleInput) -> str | None:
    """SHA-256 of the input, streamed; None when unreadable or over the size limit (the
    analysis then reports the real error)."""
    h = hashlib.sha256()
    if item.member is not None:
        try:
            for chunk in member_chunks(item.member):
                h.update(chunk)
        except InputError:
            return None
        return h.hexdigest()
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest()
    assert item.path is not None
    try:
        # only a regular file is hashed (a FIFO or /dev/zero put in its place since the
        # listing would block or never end)
        with open_regular(item.path) as fh:
            if os.fstat(fh.fileno()).st_size > limits.MAX_FILE_SIZE:
                return None
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except (OSError, InputError):
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


def _lost_to_worker_death(item: SampleInput, reason: str) -> AnalysedSample | Failure:
    """The result of a sample whose analysis killed its worker process each time it ran (out
    of memory, a crash in a native library)."""
    return Failure(item.name, f"analysis {reason}: file recorded and skipped", "WorkerDied")


def _results(
    items: list[SampleInput], jobs: int
) -> Generator[tuple[SampleInput, AnalysedSample | Failure], None, None]:
    """(item, analysis) in input order; with ``jobs`` > 1 in worker processes, where a
    worker that dies costs only its sample (retried once in a fresh worker) and workers die
    with the process that started them."""
    if jobs <= 1 or len(items) <= 1:
        for it in items:
            yield it, _analyse_safely(it)
        return
    yield from map_resilient(_analyse_safely, items, jobs, on_lost=_lost_to_worker_death)


def _keep(files: SampleFiles, item: SampleInput) -> None:
    try:
        if item.member is not None:
            files.keep_bytes(b"".join(member_chunks(item.member)))
        elif item.data is not None:
            files.keep_bytes(item.data)
        elif item.path is not None:
            files.keep(item.path)
    except (OSError, InputError) as e:  # the sample is stored; only the copy is missing
        logger.warning("%s: stored, but its file could not be kept: %s", item.name, e)


_LABELS = ("family", "source", "first_seen", "version", "is_library")


def _stored_elsewhere(store: Store, rec: SampleRecord) -> SampleRecord | None:
    """The stored record when another run stored ``rec``'s sample first with other labels or
    under another name (add_sample then keeps that one); None when the stored one is ours."""
    try:
        stored = store.get_sample(rec.sha256)
    except KinshipError:
        return None
    mine = [getattr(rec, k) or None for k in _LABELS] + [rec.name]
    theirs = [getattr(stored, k) or None for k in _LABELS] + [stored.name]
    return stored if mine != theirs else None


def add_inputs(
    store: Store,
    inputs: Iterable[SampleInput | Failure],
    *,
    jobs: int = 1,
    replace: bool = False,
    progress: ProgressFn | None = None,
    files: SampleFiles | None = None,
    meta: MetaFn | None = None,
) -> AddReport:
    """Analyse and store every input; one transaction per sample.

    With ``files``, each stored sample's bytes are also kept there (for evidence and rules).
    :class:`Notice` inputs go to the report's warnings, other Failures to ``failed``.
    """
    try:
        report = _add_inputs(store, inputs, jobs=jobs, replace=replace, progress=progress,
                             files=files)
    finally:
        close_archives()
    report.meta = meta(report.seconds) if meta is not None else None
    return report


def _add_inputs(
    store: Store,
    inputs: Iterable[SampleInput | Failure],
    *,
    jobs: int,
    replace: bool,
    progress: ProgressFn | None,
    files: SampleFiles | None,
) -> AddReport:
    t0 = time.perf_counter()
    report = AddReport()
    todo: list[SampleInput] = []
    for item in inputs:
        if isinstance(item, Notice):
            report.warnings.append(item)
            continue
        if isinstance(item, Failure):
            report.failed.append(item)
            continue
        sha = _sha256_of(item)
        if sha and not replace and store.has_sample(sha):
            report.duplicates.append(item.name)
            continue
        todo.append(item)
    total = len(todo)
    if total == 0 and not report.failed and not report.duplicates and not report.warnings:
        raise UsageError("nothing to add: no files found")
    if todo:
        store.bind_feature_params(feature_params())
    # closing: the workers stop at once when storing raises (not at interpreter exit)
    with contextlib.closing(_results(todo, jobs)) as results:
        for done, (item, res) in enumerate(results, 1):
            if progress:
                progress(done, total, item.name)
            if isinstance(res, Failure):
                logger.info("skipped %s: %s", res.name, res.reason)  # the report lists it
                report.failed.append(res)
                continue
            report.cpu_seconds += sum(res.seconds.values())
            r = res.record
            if r.format == "dump" and r.n_functions == 0:
                # A raw dump where no code was found is noise in the store (wrong base, or data).
                report.failed.append(Failure(
                    item.name, f"raw memory dump (base {r.info.get('image_base') or 0:#x}):"
                    " no functions found, not stored (is it code? is the base right?)",
                    "CorruptFileError"))
                continue
            if not replace and store.has_sample(r.sha256):
                report.duplicates.append(item.name)  # same bytes twice in one batch
                continue
            try:
                store.add_sample(r, res.features, replace=replace,
                                 strings=to_stored(res.strings.strings))
            except KinshipError as e:
                report.failed.append(Failure(item.name, str(e), type(e).__name__))
                continue
            other = None if replace else _stored_elsewhere(store, r)
            if other is not None:
                # A concurrent run stored the same bytes between our check and our write.
                report.duplicates.append(item.name)
                report.warnings.append(Notice(
                    item.name, f"stored by another run first (as {other.name!r}, family"
                    f" {other.family or '-'}): this run's labels were not applied", "other_run"))
                continue
            if files is not None:
                _keep(files, item)
            if r.n_functions == 0:
                report.warnings.append(Notice(item.name, "stored, but no functions were found",
                                              "no_functions"))
            damaged = [w for w in r.info.get("warnings", []) if str(w).startswith("truncated")]
            if damaged:  # kept (a partial sample still carries evidence), but said
                report.warnings.append(Notice(item.name, f"stored, but {damaged[0]}",
                                              "truncated"))
            report.added.append(Added(r.sha256, r.name, r.family, r.n_functions, r.n_instructions))
    report.seconds = time.perf_counter() - t0
    return report
