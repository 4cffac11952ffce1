"""An in-memory :class:`kinship.store.base.Store` for tests (same semantics as SQLite).

Writes build their result on the side and swap it in at the end, so an exception in the
middle of :meth:`MemoryStore.add_sample` leaves the store unchanged, like a rolled-back
transaction.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import numpy as np

from kinship.exceptions import NotFoundError, StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    FamilyRecord,
    FunctionArrays,
    SampleSummary,
    StoreConfig,
    StoredString,
    StringPosting,
    aggregate_families,
    check_labels,
    check_signature_lengths,
    clip_texts,
    distinct_strings,
    encode_info,
    normalise_params,
    normalise_record,
    params_conflict,
    parse_ref,
)
from kinship.store.model import SampleRecord, StoreStats

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # reported by stats(); mirrors the SQLite layout it imitates


@dataclass
class _Sample:
    """A stored sample: the record (family/actor resolved on read) and its functions."""

    rec: SampleRecord  # ``family`` is the family name; ``actor`` only the sample's own
    functions: list[FunctionFeatures]
    strings: list[StoredString] = field(default_factory=list)


class MemoryStore:
    """Dicts instead of tables. Function ids are global and never reused, as in SQLite."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self._samples: dict[int, _Sample] = {}
        self._family_actor: dict[str, str | None] = {}  # family name -> actor
        self._function_ids: dict[int, list[int]] = {}  # sample id -> its function ids
        self._next_sample_id = 1
        self._next_function_id = 1
        self._generation = 0
        self._closed = False
        self._feature_params: dict[str, Any] | None = None
        self._store_id = uuid.uuid4().hex

    # -- plumbing -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store: the store is closed")

    def _bump(self) -> None:
        self._generation += 1

    def _public(self, sample: _Sample) -> SampleRecord:
        rec = copy.deepcopy(sample.rec)
        if rec.family is not None:
            rec.actor = self._family_actor.get(rec.family)
        return rec

    def _resolve(self, ref: str) -> int:
        q = parse_ref(ref)
        hits = [
            sid
            for sid, s in self._samples.items()
            if any(getattr(s.rec, col) == q.ref for col in q.exact_columns)
            or (q.sha256_prefix and s.rec.sha256.startswith(q.ref))
        ]
        if not hits:
            raise NotFoundError(f"no sample matches {ref!r}")
        if len(hits) > 1:
            raise StoreError(f"{ref!r} matches more than one sample; give more of the sha256")
        return hits[0]

    def _signature_lengths(self) -> tuple[int, int] | None:
        for s in self._samples.values():
            if s.functions:
                f = s.functions[0]
                return int(f.code_sig.shape[0]), int(f.sem_sig.shape[0])
        return None

    def _set_family_actor(
        self, families: dict[str, str | None], name: str, actor: str | None, *, force: bool
    ) -> None:
        if name not in families:
            families[name] = actor
            return
        current = families[name]
        if actor is not None and actor != current:
            if force or current is None:
                families[name] = actor
            else:
                log.warning(
                    "family %s is attributed to %s; the sample's actor %s is not applied "
                    "(relabel the family to change it)",
                    name,
                    current,
                    actor,
                )

    def _drop_orphan_families(self) -> None:
        used = {s.rec.family for s in self._samples.values()}
        for name in [n for n in self._family_actor if n not in used]:
            del self._family_actor[name]

    def _copy_function(self, f: FunctionFeatures) -> FunctionFeatures:
        cfg = self.config
        return replace(
            f,
            code_sig=np.array(f.code_sig, dtype=np.uint32),
            sem_sig=np.array(f.sem_sig, dtype=np.uint32),
            apis=clip_texts(f.apis, cfg.max_apis_per_function, cfg.max_string_chars, "APIs", f.va),
            strings=clip_texts(
                f.strings, cfg.max_strings_per_function, cfg.max_string_chars, "strings", f.va
            ),
        )

    # -- Store protocol -------------------------------------------------------------------

    def has_sample(self, sha256: str) -> bool:
        self._check_open()
        key = sha256.strip().lower()
        return any(s.rec.sha256 == key for s in self._samples.values())

    def add_sample(
        self,
        rec: SampleRecord,
        functions: Sequence[FunctionFeatures],
        *,
        replace: bool = False,
        strings: Sequence[StoredString] = (),
    ) -> int:
        self._check_open()
        sha256, md5, sha1 = normalise_record(rec)
        existing = next((i for i, s in self._samples.items() if s.rec.sha256 == sha256), None)
        if existing is not None and not replace:
            return existing
        # Build everything first; commit by assignment at the end (atomic).
        others = [s for i, s in self._samples.items() if i != existing and s.functions]
        lengths = None
        if others:
            f0 = others[0].functions[0]
            lengths = int(f0.code_sig.shape[0]), int(f0.sem_sig.shape[0])
        stored: list[FunctionFeatures] = []
        for f in functions:
            if lengths is None:
                lengths = int(f.code_sig.shape[0]), int(f.sem_sig.shape[0])
            check_signature_lengths(f, *lengths)
            stored.append(self._copy_function(f))
        family = rec.family or None
        actor = rec.actor or None
        families = dict(self._family_actor)
        if family is not None:
            self._set_family_actor(families, family, actor, force=False)
        new = copy.deepcopy(rec)
        new.info = json.loads(encode_info(rec.info))
        new.sha256, new.md5, new.sha1 = sha256, md5, sha1
        new.family = family
        new.actor = None if family is not None else actor
        new.n_functions = len(stored)
        new.n_instructions = rec.n_instructions or sum(f.n_instructions for f in stored)
        new.added_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sample_id = existing if existing is not None else self._next_sample_id
        new.id = sample_id
        # -- commit --
        if existing is None:
            self._next_sample_id += 1
        self._family_actor = families
        self._samples[sample_id] = _Sample(new, stored, distinct_strings(strings))
        first = self._next_function_id
        self._function_ids[sample_id] = list(range(first, first + len(stored)))
        self._next_function_id += len(stored)
        self._drop_orphan_families()
        self._bump()
        return sample_id

    def get_sample(self, ref: str) -> SampleRecord:
        self._check_open()
        return self._public(self._samples[self._resolve(ref)])

    def samples(
        self,
        family: str | None = None,
        actor: str | None = None,
        library: bool | None = None,
    ) -> list[SampleRecord]:
        self._check_open()
        out = []
        for sid in sorted(self._samples):
            rec = self._public(self._samples[sid])
            if family is not None and rec.family != family:
                continue
            if actor is not None and rec.actor != actor:
                continue
            if library is not None and rec.is_library != library:
                continue
            out.append(rec)
        return out

    def update_labels(self, ref: str, **labels: str | bool | None) -> SampleRecord:
        self._check_open()
        check_labels(labels)
        sid = self._resolve(ref)
        current = self._public(self._samples[sid])
        rec = copy.deepcopy(self._samples[sid].rec)
        families = dict(self._family_actor)
        actor_given = "actor" in labels
        new_actor = _text(labels.get("actor")) or None
        if "family" in labels:
            new_family = _text(labels["family"]) or None
            if new_family is None:
                rec.family = None
                rec.actor = new_actor if actor_given else current.actor
            elif new_family != current.family:
                self._set_family_actor(
                    families,
                    new_family,
                    new_actor if actor_given else current.actor,
                    force=actor_given,
                )
                rec.family, rec.actor = new_family, None
            elif actor_given:
                families[new_family] = new_actor
        elif actor_given:
            if rec.family is not None:
                families[rec.family] = new_actor
            else:
                rec.actor = new_actor
        if "source" in labels:
            rec.source = _text(labels["source"]) or None
        if "first_seen" in labels:
            rec.first_seen = _text(labels["first_seen"]) or None
        if "version" in labels:
            rec.version = _text(labels["version"]) or None
        if "is_library" in labels:
            rec.is_library = bool(labels["is_library"])
        self._family_actor = families
        self._samples[sid].rec = rec
        self._drop_orphan_families()
        self._bump()
        return self._public(self._samples[sid])

    def delete_sample(self, ref: str) -> None:
        self._check_open()
        sid = self._resolve(ref)
        del self._samples[sid]
        del self._function_ids[sid]
        self._drop_orphan_families()
        self._bump()

    def functions(self, ref: str) -> list[FunctionFeatures]:
        self._check_open()
        return list(self._samples[self._resolve(ref)].functions)

    def function_names(self, ref: str) -> dict[int, str]:
        self._check_open()
        return {f.va: f.name for f in self._samples[self._resolve(ref)].functions if f.name}

    def sample_strings(self, ref: str) -> list[StoredString]:
        self._check_open()
        return list(self._samples[self._resolve(ref)].strings)

    def string_postings(self, texts: Iterable[str]) -> dict[str, list[StringPosting]]:
        self._check_open()
        wanted = set(texts)
        out: dict[str, list[StringPosting]] = {}
        for sid in sorted(self._samples):
            sample = self._samples[sid]
            rec = self._public(sample)
            for s in sample.strings:
                if s.text in wanted:
                    out.setdefault(s.text, []).append(StringPosting(
                        s, sid, rec.sha256, rec.name, rec.family, rec.actor, rec.source,
                        rec.first_seen, rec.is_library))
        return out

    def function_arrays(self) -> FunctionArrays:
        self._check_open()
        pairs = [
            (fid, sid, f)
            for sid in sorted(self._samples)
            for fid, f in zip(self._function_ids[sid], self._samples[sid].functions, strict=True)
        ]
        lengths = self._signature_lengths() or (0, 0)
        fs = [f for _, _, f in pairs]
        n = len(fs)
        return FunctionArrays(
            function_id=np.array([p[0] for p in pairs], dtype=np.int64),
            sample_id=np.array([p[1] for p in pairs], dtype=np.int32),
            va=np.array([f.va for f in fs], dtype=np.uint64),
            n_instructions=np.array([f.n_instructions for f in fs], dtype=np.int32),
            exact_hash=np.array([f.exact_hash for f in fs], dtype=np.int64),
            code_sig=np.array([f.code_sig for f in fs], dtype=np.uint32).reshape(n, lengths[0]),
            sem_sig=np.array([f.sem_sig for f in fs], dtype=np.uint32).reshape(n, lengths[1]),
            n_code_tokens=np.array([f.n_code_tokens for f in fs], dtype=np.int32),
            n_sem_tokens=np.array([f.n_sem_tokens for f in fs], dtype=np.int32),
            size=np.array([f.size for f in fs], dtype=np.int32),
            samples={
                sid: SampleSummary(
                    sha256=rec.sha256,
                    name=rec.name,
                    family=rec.family,
                    actor=rec.actor,
                    is_library=rec.is_library,
                )
                for sid, rec in ((i, self._public(s)) for i, s in self._samples.items())
            },
            generation=self._generation,
        )

    def families(self) -> list[FamilyRecord]:
        self._check_open()
        rows = [
            (
                s.rec.family,
                self._family_actor.get(s.rec.family),
                s.rec.source,
                s.rec.first_seen,
                s.rec.n_functions,
            )
            for s in self._samples.values()
            if s.rec.family is not None
        ]
        return aggregate_families(rows)

    def stats(self) -> StoreStats:
        self._check_open()
        recs = [self._public(s) for s in self._samples.values()]
        return StoreStats(
            samples=len(recs),
            families=len(self._family_actor),
            actors=len({r.actor for r in recs if r.actor is not None}),
            functions=sum(r.n_functions for r in recs),
            library_samples=sum(r.is_library for r in recs),
            size_bytes=0,
            schema_version=SCHEMA_VERSION,
            path=":memory:",
        )

    def bind_feature_params(self, params: Mapping[str, Any]) -> None:
        self._check_open()
        given = normalise_params(params)
        if self._feature_params == given:
            return
        has_functions = any(s.functions for s in self._samples.values())
        if self._feature_params is not None and has_functions:
            raise StoreError(
                "memory store: the store's sketches were made with other feature parameters "
                f"({params_conflict(self._feature_params, given)})"
            )
        self._feature_params = given
        self._bump()

    def feature_params(self) -> dict[str, Any] | None:
        self._check_open()
        return None if self._feature_params is None else dict(self._feature_params)

    def generation(self) -> int:
        self._check_open()
        return self._generation

    def store_id(self) -> str:
        self._check_open()
        return self._store_id

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _text(value: str | bool | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"label value {value!r} must be text")
