"""The store interface: one small Protocol that every backend (SQLite, memory, later
PostgreSQL) implements, plus the value objects it returns.

Label model (the same in every backend)
---------------------------------------
A family is a row of its own (``name`` unique, ``actor``). A sample points at its family, so
the actor of a labelled sample is *the family's* actor::

    samples.family_id ──> families(name, actor)     effective actor = families.actor
    samples.actor                                   used only when the sample has no family

* ``add_sample`` with ``family=F, actor=A`` creates F with actor A when F is new, fills in A
  when F has no actor yet, and keeps F's actor (with a warning in the log) when F already has
  a different one: adding one sample never silently moves a whole family to another actor.
* ``update_labels(sha, actor=A)`` on a sample that has a family sets the *family's* actor, so
  every sample of that family follows; on an unlabelled sample it sets the sample's own actor.
* ``update_labels(sha, family=G)`` moves the sample to G (created when new, taking the actor
  given in the same call or else the sample's current actor); ``family=None`` unlabels it and
  keeps its effective actor as its own.
* A family left without samples (after a delete or a move) is dropped.

Sample references
-----------------
Methods that take a ``ref`` accept what :meth:`Store.get_sample` accepts: a full sha256, a
sha256 prefix of at least :data:`MIN_PREFIX_CHARS` hex characters, an md5 or a sha1
(case-insensitive). No match raises :class:`~kinship.exceptions.NotFoundError`, more than one
raises :class:`~kinship.exceptions.StoreError`, a ref that is not hex or is too short raises
:class:`~kinship.exceptions.UsageError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from kinship.exceptions import StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.model import SampleRecord, StoreStats

log = logging.getLogger(__name__)

MIN_PREFIX_CHARS = 8  # shorter sha256 prefixes match too many samples to be a useful reference
_HEX_RE = re.compile(r"[0-9a-f]+")
_DIGEST_LENGTHS = {"sha256": 64, "md5": 32, "sha1": 40}

# Labels update_labels accepts; anything else is a programming error.
LABEL_FIELDS = frozenset({"family", "actor", "source", "first_seen", "version", "is_library"})


@dataclass
class StoreConfig:
    """Knobs of the store subsystem (every backend reads the ones that apply to it)."""

    # Seconds a writer waits for another process's write lock before failing. Range 0..600.
    busy_timeout_s: float = 30.0
    # SQLite `synchronous` in WAL mode: "NORMAL" survives a killed process (it may lose the
    # last commits on power loss); "FULL" also survives power loss at ~2x commit cost.
    synchronous: str = "NORMAL"
    # SQLite page size in bytes for a *new* store (an existing file keeps its own). Power of
    # two, 4096..65536. Function rows are ~0.6-1.1 KiB; 16 KiB pages waste less space at the
    # end of each page than the 4 KiB default (measured at K=64: 712 B/fn with
    # 4 KiB pages, 660 with 16 KiB; at K=128: 1396 vs 1200).
    page_size: int = 16384
    # SQLite page cache per connection, KiB. Range 2_000..1_000_000. More = faster big ingests.
    cache_size_kib: int = 64_000
    # Rows fetched per round trip while loading function_arrays(); bounds the transient Python
    # objects held at once (memory ~ rows x 0.7 KiB at K=64). Range 1_000..1_000_000.
    fetch_chunk_rows: int = 65_536
    # Per-function limits (hostile samples): the store keeps the first N items, logs the cut.
    max_apis_per_function: int = 512  # called APIs kept per function. Range 1..10_000.
    max_strings_per_function: int = 512  # referenced strings kept per function. Range 1..10_000.
    max_string_chars: int = 4096  # characters kept of one string or API name. Range 16..1<<20.


@dataclass(frozen=True, slots=True)
class FamilyRecord:
    """One family with its actor and a summary of what the store holds for it."""

    name: str
    actor: str | None
    n_samples: int
    n_functions: int
    first_seen_min: str | None  # earliest first_seen of its samples (ISO strings sort)
    sources: tuple[str, ...]  # distinct sources of its samples, sorted


@dataclass(frozen=True, slots=True)
class SampleSummary:
    """What the matcher needs to know about the sample a function came from."""

    sha256: str
    name: str
    family: str | None
    actor: str | None  # effective actor (the family's when the sample has a family)
    is_library: bool


@dataclass(frozen=True, eq=False)
class FunctionArrays:
    """Every stored function as parallel numpy arrays (row i = one function), for the index.

    Rows are in function-id order. ``code_sig``/``sem_sig`` are (N, K) uint32 matrices; K is
    the store's signature length (0 when the store holds no function).
    """

    function_id: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_id: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    va: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))
    n_instructions: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    exact_hash: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    code_sig: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros((0, 0), np.uint32))
    sem_sig: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros((0, 0), np.uint32))
    n_code_tokens: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    n_sem_tokens: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    size: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))  # bytes
    samples: dict[int, SampleSummary] = field(default_factory=dict)  # sample_id -> summary
    generation: int = 0  # Store.generation() when loaded: a cached index is stale if it moved

    def __len__(self) -> int:
        return int(self.function_id.shape[0])


@dataclass(frozen=True, slots=True)
class StoredString:
    """One string of a sample as the store keeps it (see ``kinship.strings.extract``)."""

    text: str
    encoding: str  # "ascii" | "utf-16le" | "stack"
    offset: int | None  # file offset (None: not backed by file bytes)
    va: int | None  # virtual address (None: not mapped)
    section: str | None


@dataclass(frozen=True, slots=True)
class StringPosting:
    """A stored string and the sample it was found in (for rarity and string reuse)."""

    string: StoredString
    sample_id: int
    sha256: str
    name: str
    family: str | None
    actor: str | None  # effective actor
    source: str | None
    first_seen: str | None
    is_library: bool


# Stored strings per sample (hostile samples; real programs keep a few hundred distinctive
# ones once ``kinship.strings.rarity`` has dropped the generic ones).
MAX_STORED_STRINGS = 20_000
# Texts looked up per round trip in ``string_postings`` (SQLite's host-parameter limit is 32766).
MAX_TEXTS_PER_QUERY = 500


@runtime_checkable
class Store(Protocol):
    """A corpus of samples and their functions. Writes are atomic per call."""

    def has_sample(self, sha256: str) -> bool:
        """True when a sample with this exact sha256 is stored."""
        ...

    def add_sample(
        self,
        rec: SampleRecord,
        functions: Sequence[FunctionFeatures],
        *,
        replace: bool = False,
        strings: Sequence[StoredString] = (),
    ) -> int:
        """Store a sample, all its functions and its ``strings`` (the first
        :data:`MAX_STORED_STRINGS`, one row per distinct text) in one transaction; return the
        sample id.

        A sample whose sha256 is already stored is left alone (its id is returned) unless
        ``replace`` is True, in which case it is replaced under the same id. If anything fails
        nothing is written. ``added_at``, ``id`` and ``n_functions`` of ``rec`` are set by the
        store (``n_instructions`` too when it is 0); ``rec`` itself is not modified.
        """
        ...

    def get_sample(self, ref: str) -> SampleRecord:
        """The sample a reference names (see the module docstring for what a ref is)."""
        ...

    def samples(
        self,
        family: str | None = None,
        actor: str | None = None,
        library: bool | None = None,
    ) -> list[SampleRecord]:
        """Stored samples, in id order, filtered by family, effective actor and library flag."""
        ...

    def update_labels(self, ref: str, **labels: str | bool | None) -> SampleRecord:
        """Change labels (:data:`LABEL_FIELDS`) of a sample; return the updated record."""
        ...

    def delete_sample(self, ref: str) -> None:
        """Remove a sample and its functions."""
        ...

    def functions(self, ref: str) -> list[FunctionFeatures]:
        """The functions of a sample, in the order they were added."""
        ...

    def function_names(self, ref: str) -> dict[int, str]:
        """VA -> name of a sample's named functions (cheap: no sketches are read)."""
        ...

    def function_arrays(self) -> FunctionArrays:
        """All functions of all samples as numpy arrays (one pass over the store)."""
        ...

    def sample_strings(self, ref: str) -> list[StoredString]:
        """The stored strings of a sample, in the order they were added."""
        ...

    def string_postings(self, texts: Iterable[str]) -> dict[str, list[StringPosting]]:
        """For each of ``texts`` that any stored sample has: where it was found (sample id
        order). Texts no sample has are absent from the result."""
        ...

    def families(self) -> list[FamilyRecord]:
        """Every family that has samples, sorted by name."""
        ...

    def stats(self) -> StoreStats:
        """Counts and size of the store."""
        ...

    def bind_feature_params(self, params: Mapping[str, Any]) -> None:
        """Record the feature parameters the store's sketches are made with (e.g. FeatureConfig
        ``num_perm``, ``seed``); StoreError if the store already holds functions made with
        other ones. A store without functions takes the new ones."""
        ...

    def feature_params(self) -> dict[str, Any] | None:
        """The parameters last bound (JSON values), None when never bound."""
        ...

    def generation(self) -> int:
        """A counter that increases on every change (to invalidate cached indexes)."""
        ...

    def store_id(self) -> str:
        """A random id the store got when it was made (kept with it, never changed): a
        store wiped and made again at the same place gets another, so a cached index stamped
        with ``(store_id, generation)`` is never mistaken for the new store's."""
        ...

    def close(self) -> None:
        """Release the store; further calls are errors."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --- helpers shared by the backends ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefQuery:
    """A parsed sample reference: which digest columns to try, and how."""

    ref: str  # lower-case hex
    exact_columns: tuple[str, ...]  # columns compared for equality ("sha256", "md5", "sha1")
    sha256_prefix: bool  # also match sha256 values starting with ref


def parse_ref(ref: str) -> RefQuery:
    """Parse a user-given sample reference; raise UsageError when it cannot name a sample."""
    r = ref.strip().lower()
    if not _HEX_RE.fullmatch(r):
        raise UsageError(f"{ref!r} is not a sample reference (expected a hex sha256/md5/sha1)")
    if len(r) < MIN_PREFIX_CHARS:
        raise UsageError(
            f"{ref!r} is too short: give at least {MIN_PREFIX_CHARS} hex digits of the sha256"
        )
    exact = tuple(col for col, n in _DIGEST_LENGTHS.items() if len(r) == n)
    return RefQuery(ref=r, exact_columns=exact, sha256_prefix=len(r) < 64)


def normalise_record(rec: SampleRecord) -> tuple[str, str, str]:
    """Lower-cased (sha256, md5, sha1) of ``rec``; StoreError when one is not a digest."""
    out = []
    for col, n in _DIGEST_LENGTHS.items():
        value = str(getattr(rec, col)).strip().lower()
        if len(value) != n or not _HEX_RE.fullmatch(value):
            raise StoreError(f"sample record has an invalid {col}: {getattr(rec, col)!r}")
        out.append(value)
    return out[0], out[1], out[2]


def distinct_strings(strings: Sequence[StoredString]) -> list[StoredString]:
    """The first occurrence of each text, at most :data:`MAX_STORED_STRINGS` (logs the cut)."""
    seen: set[str] = set()
    out: list[StoredString] = []
    for s in strings:
        if s.text in seen:
            continue
        seen.add(s.text)
        out.append(s)
        if len(out) >= MAX_STORED_STRINGS:
            log.info("sample strings cut to the store's limit of %d", MAX_STORED_STRINGS)
            break
    return out


def check_labels(labels: dict[str, str | bool | None]) -> None:
    """Raise UsageError for label names update_labels does not know."""
    unknown = sorted(set(labels) - LABEL_FIELDS)
    if unknown:
        raise UsageError(
            f"unknown label(s) {', '.join(unknown)}; expected {', '.join(sorted(LABEL_FIELDS))}"
        )
    if "is_library" in labels and not isinstance(labels["is_library"], bool):
        raise UsageError("is_library must be True or False")


def check_signature_lengths(f: FunctionFeatures, k_code: int, k_sem: int) -> None:
    """Raise StoreError when a function's sketches do not have the store's lengths."""
    if f.code_sig.shape != (k_code,) or f.sem_sig.shape != (k_sem,):
        raise StoreError(
            f"function at {f.va:#x}: signatures of length {f.code_sig.shape}/{f.sem_sig.shape}, "
            f"the store holds {k_code}/{k_sem} (all samples must use one MinHash config)"
        )


def clip_texts(
    items: tuple[str, ...], max_items: int, max_chars: int, what: str, va: int
) -> tuple[str, ...]:
    """``items`` cut to the configured limits (hostile samples); logs when it cuts."""
    if len(items) <= max_items and all(len(s) <= max_chars for s in items):
        return items
    log.info("function at %#x: %d %s cut to the store's limits", va, len(items), what)
    return tuple(s[:max_chars] for s in items[:max_items])


def aggregate_families(rows: Sequence[Sequence[Any]]) -> list[FamilyRecord]:
    """FamilyRecords from (family, actor, source, first_seen, n_functions) rows, one per
    sample, sorted by family name (shared with the memory backend)."""
    acc: dict[str, FamilyRecord] = {}
    sources: dict[str, set[str]] = {}
    for name, actor, source, first_seen, n_functions in rows:
        prev = acc.get(name) or FamilyRecord(name, actor, 0, 0, None, ())
        earliest = prev.first_seen_min
        if first_seen and (earliest is None or first_seen < earliest):
            earliest = first_seen
        acc[name] = dc_replace(
            prev,
            n_samples=prev.n_samples + 1,
            n_functions=prev.n_functions + int(n_functions),
            first_seen_min=earliest,
        )
        if source:
            sources.setdefault(name, set()).add(source)
    return [
        dc_replace(acc[name], sources=tuple(sorted(sources.get(name, ())))) for name in sorted(acc)
    ]


def _json_default(obj: object) -> object:
    if isinstance(obj, bytes | bytearray):
        return obj.hex()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def encode_info(info: dict[str, Any]) -> str:
    """``SampleRecord.info`` as JSON text: bytes become hex, sets sorted lists, other
    non-JSON values their ``str``; so what a store returns is what JSON can hold."""
    return json.dumps(info, default=_json_default, sort_keys=True)


def params_conflict(stored: dict[str, Any], given: dict[str, Any]) -> str:
    """Human-readable differences between two parameter sets ('' when equal)."""
    keys = sorted(set(stored) | set(given))
    return ", ".join(
        f"{k}: store {stored.get(k)!r} vs {given.get(k)!r}"
        for k in keys
        if stored.get(k) != given.get(k)
    )


def normalise_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as the JSON round trip gives them back (tuples become lists, ...)."""
    loaded: dict[str, Any] = json.loads(json.dumps(dict(params), default=_json_default))
    return loaded
