"""The reference index: every stored function as row-aligned arrays, with its LSH and
exact-hash indexes, saved next to the store and mapped back from disk.

Built from the store's one-pass dump (``Store.function_arrays()``, plus the baseline packs'
rows), or from in-memory samples in tests. Attribution (kinship.match.aggregate) asks it for
candidate pairs (:meth:`ReferenceIndex.candidates`) and gathers the rows it scores
(:func:`ref_rows`).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from kinship.exceptions import StoreError
from kinship.features.minhash import I64, U32, U64
from kinship.features.model import FunctionFeatures
from kinship.index.config import IndexConfig
from kinship.index.diskarray import DiskArray, in_memory, take_rows
from kinship.index.lsh import (
    CandidatePairs,
    ExactIndex,
    LSHIndex,
    pack_pairs,
    sorted_unique,
    unpack_pairs,
)
from kinship.index.rows import SketchRows
from kinship.index.sketch16 import U16, to_stored, widen
from kinship.store.base import FunctionArrays
from kinship.store.model import SampleRecord

# Rows of sketches converted to their stored form at once (ReferenceIndex construction).
STACK_ROWS = 1 << 16
BoolArray = npt.NDArray[np.bool_]
# ReferenceIndex.save layout. 2: sketches stored as one (N, 2 * num_perm) matrix of
# IndexConfig.sketch_bits-bit slots (was: two uint32 matrices); an index saved by another
# version is refused by load() (StoreError), so the API rebuilds it from the store. 3: names of
# baseline-pack rows (kinship.baseline) in index.json.
_SAVE_VERSION = 3
# Saved arrays read by positional reads (DiskArray) when loaded with mmap=True, instead of
# being memory-mapped: the large ones, whose touched pages would otherwise count in the
# querying process's RSS (4.1 GiB at 10^7 functions, see bench/scale.py). The per-function
# scalars stay memory-mapped: each is <= 8 bytes per function, 80 MiB at 10^7 even if every
# page were touched.
_ON_DISK = ("sketches", "code_keys", "code_order", "sem_keys", "sem_order")


class SampleLabelLike(Protocol):
    """Anything with a sample's labels (SampleLabel, kinship.store.base.SampleSummary)."""

    @property
    def sha256(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str | None: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def is_library(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SampleLabel:
    """What attribution needs to know about one reference sample."""

    sha256: str
    name: str
    family: str | None
    actor: str | None
    is_library: bool = False


class ReferenceIndex:
    """All reference functions as row-aligned arrays, with their LSH and exact-hash indexes.

    Built from plain arrays (the store loads them) plus ``samples``: sample id -> label.
    ``family_id`` (index into ``families``, -1 = unlabelled or library) and ``is_library`` are
    derived from the labels. The code and sem sketches are kept as one (N, 2 * num_perm)
    matrix ``sketches`` of ``config.sketch_bits``-bit slots (kinship.index.sketch16); the LSH
    tables are built from the full 32-bit sketches, so candidates do not depend on it.
    Memory per function: sketches 2 * num_perm * 2 bytes, LSH (code_bands + sem_bands) * 12,
    exact index 12, scalars ~65 (~700 bytes at the defaults; 661 MiB per 10^6 replayed
    functions in bench/scale.py, 905 MiB with 32-bit sketches).
    """

    def __init__(
        self,
        *,
        function_id: I64,
        sample_id: I64,
        n_instructions: I64,
        exact_hash: I64,
        code_sig: U32,
        sem_sig: U32,
        samples: Mapping[int, SampleLabelLike],
        n_sem_tokens: I64 | None = None,
        function_va: I64 | None = None,
        function_name: Sequence[str | None] | None = None,
        config: IndexConfig | None = None,
        baseline_names: Mapping[int, str] | None = None,
    ) -> None:
        """``n_sem_tokens`` None: every sem sketch is trusted fully. ``function_va`` None:
        reported as 0. ``function_name`` None: no names. ``baseline_names``: function id ->
        name of baseline-pack rows (kinship.baseline), which have no store to name them."""
        self.config = config or IndexConfig()
        self.baseline_names: dict[int, str] = dict(baseline_names or {})
        n = len(function_id)
        self.function_id = np.asarray(function_id, dtype=np.int64)
        self.sample_id = np.asarray(sample_id, dtype=np.int64)
        self.n_instructions = np.asarray(n_instructions, dtype=np.int64)
        self.exact_hash = np.asarray(exact_hash, dtype=np.int64)
        code_sig = np.asarray(code_sig, dtype=np.uint32)
        sem_sig = np.asarray(sem_sig, dtype=np.uint32)
        if n == 0:  # an empty store may report (0, 0) sketch matrices
            width = max(
                code_sig.shape[-1] if code_sig.ndim == 2 else 0,
                self.config.code_bands * self.config.code_rows,
                self.config.sem_bands * self.config.sem_rows,
            )
            code_sig = np.zeros((0, width), dtype=np.uint32)
            sem_sig = np.zeros((0, width), dtype=np.uint32)
        self.n_sem_tokens = (
            np.full(n, 1 << 30, dtype=np.int64)
            if n_sem_tokens is None
            else np.asarray(n_sem_tokens, dtype=np.int64)
        )
        self.function_va = (
            np.zeros(n, dtype=np.int64)
            if function_va is None
            else np.asarray(function_va, np.int64)
        )
        self.function_name = function_name
        for name in ("sample_id", "n_instructions", "exact_hash", "n_sem_tokens", "function_va"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"ReferenceIndex.{name} has {len(getattr(self, name))} rows, not {n}"
                )
        if code_sig.ndim != 2 or code_sig.shape[0] != n or sem_sig.shape != code_sig.shape:
            raise ValueError("ReferenceIndex sketch matrices must be (n_functions, num_perm)")
        missing = set(np.unique(self.sample_id).tolist()) - set(samples)
        if missing:
            raise ValueError(f"ReferenceIndex: no labels for sample ids {sorted(missing)[:5]}")
        self.samples: dict[int, SampleLabelLike] = dict(samples)
        self._build_labels()
        cfg = self.config
        self.code_lsh = LSHIndex.build(code_sig, cfg.code_bands, cfg.code_rows, cfg.max_bucket)
        self.sem_lsh = LSHIndex.build(sem_sig, cfg.sem_bands, cfg.sem_rows, cfg.max_bucket)
        self.sketches: U16 | U32 | DiskArray = _stack_stored(code_sig, sem_sig, cfg.sketch_bits)
        self.exact = ExactIndex.build(self.exact_hash, cfg.max_bucket)
        self._build_rarity()

    def _build_labels(self) -> None:
        """Dense sample numbering, the families and their actors, and each row's family id
        and library flag, from :attr:`samples`."""
        n = len(self.sample_id)
        self.sample_ids = np.array(sorted(self.samples), dtype=np.int64)
        self.families = sorted(
            {s.family for s in self.samples.values() if s.family and not s.is_library}
        )
        fam_index = {f: i for i, f in enumerate(self.families)}
        actors: dict[str, Counter[str]] = {f: Counter() for f in self.families}
        for s in self.samples.values():
            if s.family in actors and s.actor:
                actors[s.family][s.actor] += 1
        self.family_actor: dict[str, str | None] = {
            f: (c.most_common(1)[0][0] if c else None) for f, c in actors.items()
        }
        s_family = np.array(
            [
                -1
                if (lab := self.samples[int(i)]).is_library or not lab.family
                else fam_index[lab.family]
                for i in self.sample_ids
            ],
            dtype=np.int64,
        )
        s_lib = np.array([self.samples[int(i)].is_library for i in self.sample_ids], dtype=bool)
        self.sample_index = np.searchsorted(self.sample_ids, self.sample_id)  # dense, per row
        self.family_id = s_family[self.sample_index] if n else np.zeros(0, np.int64)
        self.is_library = s_lib[self.sample_index] if n else np.zeros(0, bool)

    def _build_rarity(self) -> None:
        """The rarity table: each distinct exact hash of a labelled (non-library) function once,
        with the number of families it occurs in; and the exact hashes of library functions.
        Memory: 16 bytes per distinct hash."""
        labelled = self.family_id >= 0
        h = self.exact_hash[labelled]
        f = self.family_id[labelled]
        o = np.lexsort((f, h))
        h, f = h[o], f[o]
        firsts = first_of_groups([h, f])  # one per distinct (hash, family)
        hf = h[firsts]
        starts = first_of_groups([hf])
        self.rarity_hash: I64 = hf[starts]  # sorted distinct hashes of labelled functions
        self.rarity_families: I64 = np.diff(np.append(starts, len(hf))).astype(np.int64)
        self.library_hash: I64 = sorted_unique(self.exact_hash[self.is_library])

    # Row-aligned and table arrays written by save(): attribute name -> file stem.
    _ARRAYS = (
        "function_id", "sample_id", "n_instructions", "exact_hash", "sketches",
        "n_sem_tokens", "function_va", "sample_ids", "sample_index", "family_id", "is_library",
        "rarity_hash", "rarity_families", "library_hash",
    )  # fmt: skip

    def save(self, directory: Path) -> None:
        """Write the index (arrays as .npy, labels as JSON) so that :meth:`load` can map it
        from disk instead of rebuilding it. Function names are not saved."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name in self._ARRAYS:
                np.save(directory / f"{name}.npy", in_memory(getattr(self, name)))
            for name, lsh in (("code", self.code_lsh), ("sem", self.sem_lsh)):
                np.save(directory / f"{name}_keys.npy", in_memory(lsh.keys))
                np.save(directory / f"{name}_order.npy", in_memory(lsh.order))
                np.save(directory / f"{name}_fence.npy", lsh.fence)
            np.save(directory / "exact_hashes.npy", self.exact.hashes)
            np.save(directory / "exact_order.npy", self.exact.order)
            meta = {
                "version": _SAVE_VERSION,
                "config": dataclasses.asdict(self.config),
                "families": self.families,
                "family_actor": self.family_actor,
                "baseline_names": {str(k): v for k, v in self.baseline_names.items()},
                "samples": {
                    str(i): [lab.sha256, lab.name, lab.family, lab.actor, lab.is_library]
                    for i, lab in self.samples.items()
                },
            }
            (directory / "index.json").write_text(json.dumps(meta), encoding="utf-8")
        except OSError as e:
            raise StoreError(f"cannot write reference index {directory}: {e}") from e

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> ReferenceIndex:
        """Read an index written by :meth:`save`. With ``mmap`` the arrays stay on disk: the
        large ones (``_ON_DISK``) are read by positional reads of what a query needs (LSH key
        blocks and bucket rows, candidate sketches), the others are memory-mapped."""
        mode: Literal["r"] | None = "r" if mmap else None
        try:
            meta = json.loads((directory / "index.json").read_text(encoding="utf-8"))
            if meta.get("version") != _SAVE_VERSION:
                raise StoreError(f"{directory}: reference index format unsupported")
            self = cls.__new__(cls)

            def arr(stem: str) -> Any:
                if mmap and stem in _ON_DISK:
                    return DiskArray(directory / f"{stem}.npy")
                return np.load(directory / f"{stem}.npy", mmap_mode=mode)

            for name in cls._ARRAYS:
                setattr(self, name, arr(name))

            self.config = IndexConfig(**meta["config"])
            cfg = self.config
            n = len(self.function_id)
            self.code_lsh = LSHIndex(
                arr("code_keys"),
                arr("code_order"),
                n,
                cfg.code_rows,
                cfg.max_bucket,
                _fence(directory / "code_fence.npy"),
            )
            self.sem_lsh = LSHIndex(
                arr("sem_keys"),
                arr("sem_order"),
                n,
                cfg.sem_rows,
                cfg.max_bucket,
                _fence(directory / "sem_fence.npy"),
            )
            self.exact = ExactIndex(arr("exact_hashes"), arr("exact_order"), cfg.max_bucket)
            self.families = list(meta["families"])
            self.family_actor = dict(meta["family_actor"])
            self.samples = {
                int(i): SampleLabel(v[0], v[1], v[2], v[3], bool(v[4]))
                for i, v in meta["samples"].items()
            }
            self.function_name = None
            self.baseline_names = {int(k): v for k, v in meta["baseline_names"].items()}
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise StoreError(f"cannot read reference index {directory}: {e}") from e
        return self

    def exact_families(self, exact_hash: I64) -> I64:
        """Number of families whose reference functions have each of these exact hashes."""
        if len(self.rarity_hash) == 0:
            return np.zeros(len(exact_hash), dtype=np.int64)
        i = np.minimum(np.searchsorted(self.rarity_hash, exact_hash), len(self.rarity_hash) - 1)
        out: I64 = np.where(self.rarity_hash[i] == exact_hash, self.rarity_families[i], 0)
        return out

    def in_library(self, exact_hash: I64) -> BoolArray:
        """Whether a library sample has a function with each of these exact hashes."""
        if len(self.library_hash) == 0:
            return np.zeros(len(exact_hash), dtype=bool)
        i = np.minimum(np.searchsorted(self.library_hash, exact_hash), len(self.library_hash) - 1)
        out: BoolArray = self.library_hash[i] == exact_hash
        return out

    def __len__(self) -> int:
        return len(self.function_id)

    @property
    def num_perm(self) -> int:
        """Sketch length (slots) of the indexed functions."""
        return int(self.sketches.shape[1]) // 2

    @classmethod
    def from_arrays(
        cls, arrays: FunctionArrays, config: IndexConfig | None = None,
        baseline_names: Mapping[int, str] | None = None,
    ) -> ReferenceIndex:
        """Build from the store's one-pass dump (``Store.function_arrays()``), possibly with
        baseline-pack rows appended (``kinship.baseline.registry.with_baseline``)."""
        return cls(
            function_id=arrays.function_id,
            sample_id=arrays.sample_id.astype(np.int64),
            n_instructions=arrays.n_instructions.astype(np.int64),
            exact_hash=arrays.exact_hash,
            code_sig=arrays.code_sig,
            sem_sig=arrays.sem_sig,
            samples=arrays.samples,
            n_sem_tokens=arrays.n_sem_tokens.astype(np.int64),
            function_va=arrays.va.astype(np.int64),
            config=config,
            baseline_names=baseline_names,
        )

    @property
    def nbytes(self) -> int:
        arrays = (
            self.function_id,
            self.sample_id,
            self.n_instructions,
            self.exact_hash,
            self.sketches,
            self.n_sem_tokens,
            self.function_va,
            self.sample_index,
            self.family_id,
            self.is_library,
        )
        return int(
            sum(a.nbytes for a in arrays)
            + self.code_lsh.nbytes
            + self.sem_lsh.nbytes
            + self.exact.nbytes
        )

    @classmethod
    def from_features(
        cls,
        samples: Sequence[tuple[SampleRecord, Sequence[FunctionFeatures]]],
        config: IndexConfig | None = None,
        num_perm: int = 64,
    ) -> ReferenceIndex:
        """Build from in-memory samples (tests, small corpora). Samples without ``id`` are
        numbered in order; function ids are row numbers."""
        labels: dict[int, SampleLabel] = {}
        rows: list[FunctionFeatures] = []
        sids: list[int] = []
        used = {rec.id for rec, _ in samples if rec.id is not None}
        next_id = 0
        for rec, feats in samples:
            sid = rec.id
            if sid is None:
                while next_id in used:
                    next_id += 1
                sid = next_id
                used.add(sid)
            labels[sid] = SampleLabel(rec.sha256, rec.name, rec.family, rec.actor, rec.is_library)
            rows.extend(feats)
            sids.extend([sid] * len(feats))
        sk = SketchRows.from_features(rows, num_perm)
        return cls(
            function_id=np.arange(len(rows), dtype=np.int64),
            sample_id=np.array(sids, dtype=np.int64),
            n_instructions=sk.n_instructions,
            exact_hash=sk.exact_hash,
            code_sig=sk.code_sig,
            sem_sig=sk.sem_sig,
            samples=labels,
            n_sem_tokens=sk.n_sem_tokens,
            function_va=np.array([f.va for f in rows], dtype=np.int64),
            function_name=[f.name for f in rows],
            config=config,
        )

    def candidates(self, query: SketchRows, max_candidates: int | None = None) -> CandidatePairs:
        """Unique (query row, reference row) pairs from exact hash, code LSH and sem LSH, at
        most ``max_candidates`` (default ``IndexConfig.max_candidates``) per query row.

        When a query row has more, the pairs are ranked by band hits (code + sem bands that
        collide, +1 for an equal exact hash) and taken round-robin over families (each family's
        best-hit pair first), so a generic function shared by many samples still reaches every
        family it occurs in.
        """
        cap = self.config.max_candidates if max_candidates is None else max_candidates
        parts = [
            self.exact.query_batch(query.exact_hash),
            self.code_lsh.query_batch(query.code_sig, unique=False),
            self.sem_lsh.query_batch(query.sem_sig, unique=False),
        ]
        raw = np.sort(np.concatenate([pack_pairs(p.query, p.row) for p in parts]))
        if len(raw) == 0:
            return unpack_pairs(raw)
        start = first_of_groups([raw])
        packed = raw[start]
        per_q = np.bincount(packed >> np.int64(32))
        if per_q.max() <= cap:
            return unpack_pairs(packed)
        hits = np.diff(np.append(start, len(raw)))
        pairs = unpack_pairs(packed)
        over = per_q[pairs.query] > cap
        sel = np.flatnonzero(over)
        q, r, h = pairs.query[sel], pairs.row[sel], hits[sel]
        fam = self.family_id[r]
        # rank of each pair among its (query, family) group, best hits first
        o = np.lexsort((-h, fam, q))
        grp = first_of_groups([q[o], fam[o]])
        rank = np.empty(len(o), dtype=np.int64)
        rank[o] = np.arange(len(o)) - np.repeat(grp, np.diff(np.append(grp, len(o))))
        o = np.lexsort((-h, rank, q))
        qstart = first_of_groups([q[o]])
        pos = np.arange(len(o)) - np.repeat(qstart, np.diff(np.append(qstart, len(o))))
        chosen = sel[o[pos < cap]]
        keep = np.concatenate([np.flatnonzero(~over), chosen])
        return unpack_pairs(np.sort(packed[keep]))


def first_of_groups(keys: Sequence[npt.NDArray[np.generic]]) -> I64:
    """Indices of the first element of each run of equal keys (arrays already sorted)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _stack_stored(code_sig: U32, sem_sig: U32, bits: int) -> U16 | U32:
    """(N, 2 * num_perm) stored sketches [code | sem], converted STACK_ROWS rows at a time so
    that the temporaries stay small (the whole-matrix conversion needed 2.5 GiB more at 10^7)."""
    n, p = code_sig.shape
    out = np.empty((n, 2 * p), dtype=np.uint16 if bits == 16 else np.uint32)
    for s in range(0, n, STACK_ROWS):
        out[s : s + STACK_ROWS, :p] = to_stored(code_sig[s : s + STACK_ROWS], bits)
        out[s : s + STACK_ROWS, p:] = to_stored(sem_sig[s : s + STACK_ROWS], bits)
    return out


def _fence(path: Path) -> U64 | None:
    """A saved LSH fence, or None (recomputed from the keys) for indexes saved without one."""
    return np.load(path) if path.exists() else None


def ref_rows(index: ReferenceIndex, rows: I64) -> SketchRows:
    """What scoring needs of reference ``rows``; sketches widened to uint32 (sketch16)."""
    sk = widen(take_rows(index.sketches, rows))
    p = sk.shape[1] // 2
    return SketchRows(
        sk[:, :p],
        sk[:, p:],
        index.exact_hash[rows],
        index.n_instructions[rows],
        index.n_sem_tokens[rows],
    )
