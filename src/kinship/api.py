"""kinship's Python API. The CLI is a thin layer over :class:`Kinship`.

    from kinship.api import Kinship
    from kinship.pipeline import Labels

    with Kinship("refs.db") as k:
        k.add(["refs/lua"], Labels(family="lua", actor="Example Actor"))
        result = k.match("suspicious.dll")
        print(result.verdict.family, result.verdict.confidence)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kinship.baseline.registry import (
    BASELINE_SHA_PREFIX,
    active_packs,
    packs_digest,
    runtime_strings,
    with_baseline,
)
from kinship.binary.model import Arch
from kinship.document import Meta, MetaFn, kinship_version, utc_now
from kinship.evidence.compare import MAX_LISTED_PAIRS, CompareResult, compare_samples
from kinship.evidence.references import (
    MAX_REFERENCE_PAIRS,
    ReferenceEvidence,
    match_reference_evidence,
)
from kinship.exceptions import InputError, KinshipError, StoreError
from kinship.features.model import FunctionFeatures
from kinship.index.cache import cached_index
from kinship.index.reference import ReferenceIndex
from kinship.info import InfoResult, build_info
from kinship.ingest import (
    AddReport,
    Failure,
    ProgressFn,
    add_inputs,
    expand,
)
from kinship.manifest import dump_base_from_name
from kinship.manifest import read_manifest as _read_manifest
from kinship.match.aggregate import code_reuse
from kinship.match.assemble import match_warnings, name_references, without_library_strings
from kinship.match.combine import combine_families
from kinship.match.config import MatchConfig
from kinship.match.result import FamilyScore, MatchResult, QuerySample
from kinship.match.sample_signals import sample_signals
from kinship.match.verdict import conclude
from kinship.pipeline import AnalysedSample, Labels, SampleInput, analyse, feature_params
from kinship.store.base import Store
from kinship.store.files import SAMPLES_DIR_NAME, SampleFiles
from kinship.store.memory import MemoryStore
from kinship.store.model import SampleRecord, StoreStats
from kinship.store.paths import default_db, is_postgres_url, pg_data_dir
from kinship.store.sqlite import SQLiteStore
from kinship.strings.extract import StringTable
from kinship.strings.similarity import SharedString, string_reuse
from kinship.workflows import Workflows

if TYPE_CHECKING:  # the intel/report/artifact workflows import these when they run
    from kinship.artifacts.attribution import Attributor
    from kinship.intel.capabilities import CapabilitiesResult
    from kinship.report.build import ReportOptions
    from kinship.report.model import IntelReport

logger = logging.getLogger(__name__)

def sample_input(path: str | Path, *, base: int | None = None, arch: Arch | None = None
                 ) -> SampleInput:
    """A single file to analyse (query side). Dump bases come from ``base`` or the file name."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "no such file")
    if p.is_dir():
        raise InputError(str(p), "is a directory (give a file)")
    if base is None:
        base = dump_base_from_name(p.name)
    return SampleInput(name=str(p), path=p, base=base, arch=arch)


def store_data_dirs(db: str | Path | None, files_dir: Path | None = None) -> tuple[Path, Path]:
    """``(sample files folder, saved index folder)`` of the store ``db`` (default:
    :func:`default_db`), without opening it.

    A file store keeps them beside the file (``<dir>/samples``, ``<db>.index``); a PostgreSQL
    store in its data folder (``files_dir`` or :func:`pg_data_dir`: ``samples/``, ``index/``).
    ``files_dir`` moves a file store's samples only.
    """
    target = db if db else default_db()
    if is_postgres_url(target):
        data_dir = files_dir or pg_data_dir(str(target).strip())
        return data_dir / SAMPLES_DIR_NAME, data_dir / "index"
    db_path = Path(target)
    root = files_dir / SAMPLES_DIR_NAME if files_dir else SampleFiles.default(db_path).root
    return root, Path(f"{db_path}.index")


class Kinship(Workflows):
    """A store plus the operations on it. Thread-unsafe; one per thread/process.

    The intel, rules, report and artifact workflows come from :class:`Workflows`."""

    def __init__(self, db: str | Path | None = None, *, store: Store | None = None,
                 keep_files: bool = True, files_dir: Path | None = None,
                 baseline: bool = True, match_config: MatchConfig | None = None) -> None:
        """Open the store ``db``, or use ``store``.

        ``db`` is an SQLite file, or a PostgreSQL URL (``postgresql://user@host/dbname`` or
        ``postgres://...``: the team store, :class:`kinship.store.postgres.PostgresStore`).
        Default: ``$KINSHIP_DB`` when set, else ``$KINSHIP_HOME/kinship.db``.

        ``keep_files``: keep a copy of every ingested sample (``<store dir>/samples/<sha256>``
        for a file store) so that evidence views can show reference code and YARA rules can
        be validated. Off for an in-memory ``store``. A PostgreSQL store has no directory of
        its own: the copies and the saved index go to ``files_dir`` (default
        ``$KINSHIP_HOME/pg-<hash of host:port/dbname>/``), as ``samples/`` and ``index/``.

        ``baseline``: load the compiler-runtime baseline packs (kinship.baseline) as library
        code. Off only to measure the engine without them.

        ``match_config``: the attribution knobs (default :class:`MatchConfig`), kept as
        :attr:`match_config`.
        """
        self._index_dir: Path | None = None
        files_root: Path | None = None
        if store is None:
            target = db if db else default_db()
            files_root, self._index_dir = store_data_dirs(target, files_dir)
            if is_postgres_url(target):
                from kinship.store.postgres import PostgresStore

                store = PostgresStore(str(target).strip())
            else:
                store = SQLiteStore(Path(target))
        else:  # a store made by the caller: a file store keeps its index beside it, as above
            path = getattr(store, "path", None)
            self._index_dir = Path(f"{path}.index") if path else None
            if db and not is_postgres_url(db):
                files_root = SampleFiles.default(Path(db)).root
        self.store: Store = store
        self.files: SampleFiles | None = (
            SampleFiles(files_root) if keep_files and files_root is not None else None
        )
        self._index: ReferenceIndex | None = None
        self._index_key: tuple[int, str] = (-1, "")
        self._runtime: frozenset[str] = frozenset()  # the index's packs' runtime strings
        # Compiler-runtime baseline packs (kinship.baseline) join the index as library code
        # unless turned off here or by $KINSHIP_BASELINE=off.
        self.use_baseline = baseline
        self.match_config = match_config or MatchConfig()

    def __enter__(self) -> Kinship:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    # ---- ingest ---------------------------------------------------------------------------
    def add(
        self,
        paths: Sequence[str | Path],
        labels: Labels | None = None,
        *,
        base: int | None = None,
        jobs: int = 1,
        replace: bool = False,
        progress: ProgressFn | None = None,
        follow_symlinks: bool = False,
    ) -> AddReport:
        """Add files, folders (``<family>/<version>/<sample>``) and zip archives. An actor
        label is stored under its MISP galaxy name (any alias: "Fancy Bear" -> "APT28").

        Symbolic links inside a folder that lead out of it are skipped and reported unless
        ``follow_symlinks``; a bad file is recorded in the report and the rest is added."""
        items = expand([Path(p) for p in paths], _canonical(labels or Labels()), base=base,
                       follow_symlinks=follow_symlinks)
        return add_inputs(self.store, items, jobs=jobs, replace=replace, progress=progress,
                          files=self.files, meta=self.meta_for())

    def add_manifest(
        self,
        manifest: str | Path,
        defaults: Labels | None = None,
        *,
        jobs: int = 1,
        replace: bool = False,
        progress: ProgressFn | None = None,
    ) -> AddReport:
        """Add the files listed in a CSV/JSON manifest with their labels."""
        base = defaults or Labels()
        rows = _read_manifest(Path(manifest))

        def items() -> Iterator[SampleInput | Failure]:
            for path, labels in rows:
                yield from expand([path], base.merged(labels), use_tree=False)

        return add_inputs(self.store, items(), jobs=jobs, replace=replace, progress=progress,
                          files=self.files, meta=self.meta_for())

    # ---- labels / inventory ---------------------------------------------------------------
    def relabel(self, ref: str, **labels: Any) -> SampleRecord:
        if labels.get("actor"):
            from kinship.intel.actors import canonical_actor

            labels["actor"] = canonical_actor(str(labels["actor"]))
        rec = self.store.get_sample(ref)
        self.store.update_labels(rec.sha256, **labels)
        return self.store.get_sample(rec.sha256)

    def remove(self, ref: str) -> SampleRecord:
        """Delete a sample, its functions and its kept file."""
        rec = self.store.get_sample(ref)
        self.store.delete_sample(rec.sha256)
        if self.files is not None:
            self.files.remove(rec.sha256)
        return rec

    def sample_file(self, sha256: str) -> Path | None:
        """The kept copy of a stored sample, if any."""
        return self.files.path_for(sha256) if self.files is not None else None

    def stats(self) -> StoreStats:
        return self.store.stats()

    # ---- analysis -------------------------------------------------------------------------
    def analyse(self, path: str | Path, *, base: int | None = None, arch: Arch | None = None,
                keep: bool = True) -> AnalysedSample:
        return analyse(sample_input(path, base=base, arch=arch), keep=keep)

    def reference_index(self) -> ReferenceIndex:
        """The index over everything stored, rebuilt only when the store changed.

        For a file store the index is also saved next to it (``<db>.index/``, stamped with
        the store's id and generation) and opened by later processes without loading it: the LSH
        tables and sketches stay on disk and a query reads only the key blocks, bucket rows
        and candidate sketches it needs (``ReferenceIndex.load``), so a ``kinship match`` does
        not pay for reading every sketch and building the LSH tables again.
        """
        gen = self.store.generation()
        packs = active_packs(feature_params()) if self.use_baseline else []
        key = (gen, packs_digest(packs))
        if self._index is not None and key == self._index_key:
            return self._index
        self._runtime = runtime_strings(packs)
        stored = self.store.feature_params()
        if stored is not None and stored != feature_params():
            raise StoreError(
                "the store's sketches were made with other feature parameters than this "
                "kinship version uses; re-ingest the samples into a new store"
            )
        cache = self._index_cache_dir()
        # The store's id as well as its generation: a store wiped and refilled to the same
        # generation must not find the old store's index.
        # And the baseline packs: a pack added, removed or rebuilt changes the index.
        stamp = f"{self.store.store_id()} {gen} {key[1]}"

        def build() -> ReferenceIndex:
            arrays, names = with_baseline(self.store.function_arrays(), packs)
            return ReferenceIndex.from_arrays(arrays, baseline_names=names)

        index = cached_index(cache, stamp, build)
        self._index, self._index_key = index, key
        return index

    def _index_cache_dir(self) -> Path | None:
        """``<db>.index/`` for a file store, ``<data dir>/index/`` for PostgreSQL."""
        return self._index_dir

    def match(
        self,
        path: str | Path,
        *,
        base: int | None = None,
        arch: Arch | None = None,
        include_self: bool = False,
    ) -> MatchResult:
        """Rank stored families/actors/samples by code shared with the file at ``path``."""
        t0 = time.perf_counter()
        sample = self.analyse(path, base=base, arch=arch, keep=False)
        return self.match_analysed(sample, include_self=include_self, t0=t0)

    def match_analysed(self, sample: AnalysedSample, *, include_self: bool = False,
                       t0: float | None = None) -> MatchResult:
        """Code + string reuse, plus the sample-level signals, for an analysed sample."""
        return self.match_features(sample.record, sample.features, include_self=include_self,
                                   t0=t0, strings=sample.strings, signals=True)

    def match_features(
        self,
        record: SampleRecord,
        features: list[FunctionFeatures],
        *,
        include_self: bool = False,
        t0: float | None = None,
        strings: StringTable | None = None,
        signals: bool = False,
    ) -> MatchResult:
        """Code-reuse attribution, combined with string reuse when ``strings`` is given and
        with the sample-level signals (imphash, TLSH, ...) when ``signals``; ``t0``: when the
        query started (``time.perf_counter()``), for its seconds. The result is assembled
        first and built once, complete, with its meta block."""
        t0 = t0 if t0 is not None else time.perf_counter()
        started = utc_now() - timedelta(seconds=time.perf_counter() - t0)
        cfg = self.match_config
        index = self.reference_index()
        exclude = None if include_self else record.sha256
        code = code_reuse(features, index, cfg, exclude_sha256=exclude)
        ranked: Sequence[FamilyScore] = code.families
        shared: tuple[SharedString, ...] = ()
        if strings is not None:
            strings = without_library_strings(strings, code.library_vas, self._runtime)
            reuse = string_reuse(strings, self.store.string_postings,
                                 sample_sha256=record.sha256, sample_name=record.name,
                                 exclude_sha256=exclude)
            ranked = combine_families(code.families, reuse, cfg)
            shared = tuple(reuse.shared)
        ranking = conclude(ranked, cfg)
        found = tuple(sample_signals(record, self.store.samples())) if signals else ()
        matches = name_references(code.function_matches, self.store.function_names,
                                  unstored_prefix=BASELINE_SHA_PREFIX)
        seconds = time.perf_counter() - t0
        meta = Meta(kinship_version(), feature_params(), self.store.store_id(),
                    self._index_key[0], started, seconds)
        return MatchResult(
            sample=QuerySample(record.sha256), verdict=ranking.verdict,
            families=ranking.families, actors=ranking.actors, samples=code.samples,
            function_matches=matches, n_query_functions=code.n_query_functions,
            n_considered_functions=code.n_considered_functions,
            n_library_functions=len(code.library_functions), seconds=seconds,
            shared_strings=shared, sample_signals=found,
            warnings=match_warnings(index, code, record),
            library_functions=code.library_functions, meta=meta,
        )

    def compare(self, a: str | Path, b: str | Path, *, max_listed: int = MAX_LISTED_PAIRS
                ) -> CompareResult:
        """Matched function pairs between two files, with aligned listings."""
        t0 = time.perf_counter()
        return self.compare_analysed(self.analyse(a), self.analyse(b), max_listed=max_listed,
                                     t0=t0)

    def compare_analysed(self, left: AnalysedSample, right: AnalysedSample, *,
                         max_listed: int = MAX_LISTED_PAIRS, t0: float | None = None
                         ) -> CompareResult:
        """:meth:`compare` of two samples analysed with ``keep=True``: the stored labels of
        either side, and the left side's library/runtime functions ranked last."""
        left = self._with_stored_labels(left)
        right = self._with_stored_labels(right)
        return compare_samples(left, right, max_listed=max_listed, t0=t0,
                               library=self.library_labels(left), config=self.match_config,
                               meta=self.meta_for())

    def _with_stored_labels(self, sample: AnalysedSample) -> AnalysedSample:
        """``sample`` with the labels (family, actor, source, first seen) of its stored copy,
        when the store has one: a compare page shows the reference's provenance."""
        try:
            rec = self.store.get_sample(sample.record.sha256)
        except KinshipError:
            return sample
        sample.record = dataclasses.replace(
            sample.record, family=rec.family, actor=rec.actor, source=rec.source,
            first_seen=rec.first_seen, version=rec.version)
        return sample

    def meta_for(self) -> MetaFn:
        """The ``meta`` block maker for a document this store answers now: kinship version,
        feature parameters, store id and generation, the time the query started (UTC); the
        builder gives its wall time."""
        started = utc_now()

        def meta(seconds: float) -> Meta:
            return Meta(kinship_version(), feature_params(), self.store.store_id(),
                        self.store.generation(), started, seconds)

        return meta

    def library_functions(self, sample: AnalysedSample) -> set[int]:
        """VAs of ``sample``'s functions recognised as library code: compiler runtimes of the
        baseline packs and the store's ``--library`` samples."""
        return set(self.library_labels(sample))

    def library_labels(self, sample: AnalysedSample) -> dict[int, str]:
        """VA -> library label of ``sample``'s functions recognised as library code."""
        res = self.match_features(sample.record, sample.features, include_self=True)
        return {h.va: h.library for h in res.library_functions}

    def info(self, path: str | Path, *, base: int | None = None, arch: Arch | None = None
             ) -> InfoResult:
        return build_info(self.analyse(path, base=base, arch=arch), meta=self.meta_for())

    def match_bytes(self, data: bytes, name: str, *, base: int | None = None,
                    arch: Arch | None = None, include_self: bool = False) -> MatchResult:
        """:meth:`match` of an executable held in memory (an e-mail attachment, a zip
        member); ``name`` is its display name, ``base`` a raw dump's load address."""
        t0 = time.perf_counter()
        sample = analyse(SampleInput(name=name, data=data, base=base, arch=arch), keep=False)
        return self.match_analysed(sample, include_self=include_self, t0=t0)

    def reference_evidence(self, result: MatchResult, sample: AnalysedSample,
                           max_pairs: int = MAX_REFERENCE_PAIRS) -> ReferenceEvidence:
        """Listings and hex dumps of ``result``'s best pairs from the kept reference files."""
        return match_reference_evidence(result, sample, self.sample_file, self._record,
                                        max_pairs=max_pairs)

    def baseline_library(self, sample: AnalysedSample) -> set[int]:
        """:func:`baseline_library_functions`: library code without this store."""
        return baseline_library_functions(sample)

    def _record(self, sha256: str) -> SampleRecord | None:
        try:
            return self.store.get_sample(sha256)
        except KinshipError:
            return None


def baseline_library_functions(sample: AnalysedSample) -> set[int]:
    """:meth:`Kinship.library_functions` without a store: the compiler-runtime baseline
    packs kinship ships or the user installed."""
    with Kinship(store=MemoryStore(), keep_files=False) as k:
        return k.library_functions(sample)


def report(paths: Sequence[Path], options: ReportOptions | None = None, *,
           yara_rules: list[dict[str, Any]] | None = None, title: str | None = None
           ) -> IntelReport:
    """A store-less :meth:`Kinship.report` (no verdict; library code from the baseline)."""
    from kinship.report.build import ReportOptions

    opts = dataclasses.replace(options or ReportOptions(), use_store=False)
    with Kinship(store=MemoryStore(), keep_files=False) as k:
        return k.report(paths, opts, yara_rules=yara_rules, title=title)


def capabilities(path: str | Path, *, capa_rules: Path | None = None
                 ) -> tuple[AnalysedSample, CapabilitiesResult]:
    """A store-less :meth:`Kinship.capabilities` (library code from the baseline)."""
    from kinship.intel.capabilities import sample_capabilities

    return sample_capabilities(analyse(sample_input(path), keep=True),
                               baseline_library_functions, capa_rules)


def write_report(report: IntelReport, out: Path) -> dict[str, Path]:
    """report.html, report.md, intel.json, the exports and the rules into ``out``."""
    from kinship.export.files import write_report as write_files
    from kinship.report.build import render

    return write_files(report, out, render)


@contextmanager
def open_attributor(db: str | Path | None) -> Iterator[Attributor]:
    """An attributor over the store ``db`` (default store when None); one that skips, and
    says why, when there is no store file or the store is empty (never creates one)."""
    from kinship.artifacts.attribution import skipped

    target = db if db else default_db()
    if not is_postgres_url(target) and not Path(target).is_file():
        yield skipped(f"no store at {target}: executables not attributed")
        return
    with Kinship(target, keep_files=False) as k:
        if k.stats().samples == 0:
            yield skipped(f"store {target} is empty: executables not attributed")
            return
        yield k.attributor()


def _canonical(labels: Labels) -> Labels:
    """``labels`` with the actor under its MISP galaxy name (unknown names as given)."""
    if not labels.actor or not labels.actor.strip():
        return labels
    from kinship.intel.actors import canonical_actor

    return dataclasses.replace(labels, actor=canonical_actor(labels.actor))
