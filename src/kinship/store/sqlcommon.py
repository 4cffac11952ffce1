"""What the two SQL stores (:mod:`kinship.store.sqlite`, :mod:`kinship.store.postgres`) share:
:class:`SQLStore`, the part of the :class:`kinship.store.base.Store` protocol whose SQL is the
same on both. It is built in layers:

- :mod:`kinship.store.sqlrows`: the value encodings, the column lists and fixed queries, row
  decoding;
- :mod:`kinship.store.sqlbase`: connection plumbing, backend hooks, ``meta`` rows, lookups;
- :mod:`kinship.store.sqlread`: the read queries;
- this module: the write path (ingest, labels, deletes, feature parameters).

Both stores have the same tables and value types (read :mod:`kinship.store.sqlite`'s docstring
for the encodings). A backend supplies its connection, its read/write transactions, the
parameter mark (``?`` or ``%s``) and the few value conversions that differ
(:meth:`SQLStore._text`, :meth:`SQLStore._label`, :meth:`SQLStore._db_bool`,
:meth:`SQLStore._insert_id`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from kinship.exceptions import StoreError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    StoredString,
    check_labels,
    check_signature_lengths,
    clip_texts,
    distinct_strings,
    normalise_params,
    normalise_record,
    params_conflict,
)
from kinship.store.model import SampleRecord
from kinship.store.sqlbase import Conn
from kinship.store.sqlread import SQLReads
from kinship.store.sqlrows import (
    DROP_ORPHAN_FAMILIES_SQL,
    SAMPLE_COLUMNS,
    SAMPLE_FROM,
    as_text,
    join_lines,
    none_if_empty,
    sample_record,
    sig_bytes,
    va_to_db,
)

log = logging.getLogger(__name__)


class SQLStore(SQLReads):
    """The Store methods whose SQL both backends share: lookups, labels, deletes, the
    ingest's control flow (:meth:`add_sample`: duplicate check, replace, family, then the
    backend's inserts), meta rows and the store id. The reads come from
    :class:`~kinship.store.sqlread.SQLReads`, the plumbing from
    :class:`~kinship.store.sqlbase.SQLBase`; the writes are here.

    Subclasses set ``P`` (the parameter mark; queries here are written with ``?`` and never
    hold a literal ``?``), ``OFFSET_COLUMN``, ``STRING_ORDER``, ``config`` and ``where``
    (the store's name in messages), open their connection through :meth:`_adopt`, and
    provide ``_init_schema``, ``_read``, ``_write`` (one transaction that bumps
    ``meta.generation``), ``_insert_id``, ``_insert_sample``, ``_insert_functions``,
    ``_insert_strings`` and ``_postings_query``."""

    # -- backend hooks of the writes ------------------------------------------------------

    def _insert_sample(self, conn: Conn, rec: SampleRecord, hashes: tuple[str, str, str],
                       family_id: int | None, own_actor: str | None, old_id: int | None,
                       functions: Sequence[FunctionFeatures]) -> int:
        """Insert ``rec``'s samples row (under ``old_id`` when it replaces that sample)."""
        raise NotImplementedError

    def _insert_functions(self, conn: Conn, rec: SampleRecord, sample_id: int,
                          functions: Sequence[FunctionFeatures], k_code: int, k_sem: int
                          ) -> None:
        """Insert the functions rows of sample ``sample_id``."""
        raise NotImplementedError

    def _insert_strings(self, conn: Conn, sample_id: int, strings: Iterable[StoredString]
                        ) -> None:
        """Insert the sample_strings rows of sample ``sample_id``."""
        raise NotImplementedError

    # -- helpers of the writes ------------------------------------------------------------

    def _family_id(self, conn: Conn, name: str, actor: str | None, *, force_actor: bool) -> int:
        """Id of family ``name`` (created when new). ``actor`` fills in a missing actor, or
        overrides the family's when ``force_actor``; a conflicting actor is otherwise logged."""
        row = conn.execute(
            self._q("SELECT id, actor FROM families WHERE name = ?"), (name,)
        ).fetchone()
        if row is None:
            return self._insert_id(
                conn, self._q("INSERT INTO families(name, actor) VALUES (?, ?)"), (name, actor)
            )
        fid, current = int(row[0]), row[1]
        if actor is not None and actor != current:
            if force_actor or current is None:
                conn.execute(self._q("UPDATE families SET actor = ? WHERE id = ?"), (actor, fid))
            else:
                log.warning(
                    "family %s is attributed to %s; the sample's actor %s is not applied "
                    "(relabel the family to change it)", name, current, actor,
                )
        return fid

    @staticmethod
    def _drop_orphan_families(conn: Conn) -> None:
        conn.execute(DROP_ORPHAN_FAMILIES_SQL)

    def _signature_lengths(self, conn: Conn, first: FunctionFeatures) -> tuple[int, int]:
        """The store's (code, sem) sketch lengths; a store without functions takes ``first``'s."""
        kc, ks = self._meta(conn, "code_sig_len"), self._meta(conn, "sem_sig_len")
        has_functions = conn.execute("SELECT 1 FROM functions LIMIT 1").fetchone() is not None
        if kc is not None and ks is not None and has_functions:
            return int(kc), int(ks)
        k_code, k_sem = int(first.code_sig.shape[0]), int(first.sem_sig.shape[0])
        self._set_meta(conn, "code_sig_len", k_code)
        self._set_meta(conn, "sem_sig_len", k_sem)
        return k_code, k_sem

    def _function_rows(
        self,
        sample_id: int,
        functions: Sequence[FunctionFeatures],
        k_code: int,
        k_sem: int,
        n_instructions: list[int] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """``(sample_id, *FUNCTION_COLUMNS)`` rows; ``n_instructions[0]`` sums the functions'
        instructions while the rows stream in, when given."""
        cfg = self.config
        text = self._text
        for f in functions:
            if n_instructions is not None:
                n_instructions[0] += f.n_instructions
            check_signature_lengths(f, k_code, k_sem)
            apis = clip_texts(f.apis, cfg.max_apis_per_function, cfg.max_string_chars, "APIs", f.va)
            strings = clip_texts(
                f.strings, cfg.max_strings_per_function, cfg.max_string_chars, "strings", f.va
            )
            joined_apis, joined_strings = join_lines(apis), join_lines(strings)
            yield (
                sample_id, va_to_db(f.va), text(f.name) if f.name else None,
                f.n_instructions, f.n_blocks, f.n_edges, f.size, f.exact_hash,
                sig_bytes(f.code_sig), sig_bytes(f.sem_sig), f.n_code_tokens, f.n_sem_tokens,
                None if joined_apis is None else text(joined_apis),
                None if joined_strings is None else text(joined_strings),
                f.discovery or None,
            )

    # -- Store protocol: writes -----------------------------------------------------------

    def add_sample(
        self,
        rec: SampleRecord,
        functions: Sequence[FunctionFeatures],
        *,
        replace: bool = False,
        strings: Sequence[StoredString] = (),
    ) -> int:
        hashes = normalise_record(rec)
        sha256 = hashes[0]
        family = none_if_empty(rec.family)
        actor = none_if_empty(rec.actor)
        if not replace:  # fast path, no write lock and no generation bump for a duplicate
            with self._read() as conn:
                stored = self._stored_id(conn, sha256)
            if stored is not None:
                log.debug("sample %s already stored (id %d)", sha256, stored)
                return stored
        with self._write() as conn:  # holds the writers' lock: sees every earlier commit
            old_id = self._stored_id(conn, sha256)
            if old_id is not None:
                if not replace:  # another process stored it since the fast path looked
                    return old_id
                conn.execute(self._q("DELETE FROM samples WHERE id = ?"), (old_id,))
            family_id = self._family_id(conn, family, actor, force_actor=False) if family else None
            sample_id = self._insert_sample(
                conn, rec, hashes, family_id, None if family_id is not None else actor, old_id,
                functions,
            )
            if len(functions):
                k_code, k_sem = self._signature_lengths(conn, functions[0])
                self._insert_functions(conn, rec, sample_id, functions, k_code, k_sem)
            if strings:
                self._insert_strings(conn, sample_id, distinct_strings(strings))
            if replace:
                self._drop_orphan_families(conn)
        log.debug("stored sample %s (id %d, %d functions)", sha256, sample_id, len(functions))
        return sample_id

    def update_labels(self, ref: str, **labels: str | bool | None) -> SampleRecord:
        check_labels(labels)
        with self._write() as conn:
            row = self._resolve(conn, ref)
            sample_id, family, effective_actor = row[0], row[8], row[9]
            got = conn.execute(
                self._q("SELECT family_id FROM samples WHERE id = ?"), (sample_id,)
            ).fetchone()
            assert got is not None
            family_id: int | None = got[0]
            own_actor = None if family_id is not None else effective_actor
            actor_given = "actor" in labels
            new_actor = none_if_empty(as_text(labels.get("actor")))
            set_family_actor = self._q("UPDATE families SET actor = ? WHERE id = ?")
            if "family" in labels:
                new_family = none_if_empty(as_text(labels["family"]))
                if new_family is None:
                    family_id = None
                    own_actor = new_actor if actor_given else effective_actor
                elif new_family != family:
                    family_id = self._family_id(
                        conn, new_family, new_actor if actor_given else effective_actor,
                        force_actor=actor_given,
                    )
                    own_actor = None
                elif actor_given and family_id is not None:
                    conn.execute(set_family_actor, (new_actor, family_id))
            elif actor_given:
                if family_id is not None:
                    conn.execute(set_family_actor, (new_actor, family_id))
                else:
                    own_actor = new_actor
            sets: dict[str, Any] = {"family_id": family_id, "actor": own_actor}
            for key in ("source", "first_seen", "version"):
                if key in labels:
                    sets[key] = self._label(none_if_empty(as_text(labels[key])))
            if "is_library" in labels:
                sets["is_library"] = self._db_bool(bool(labels["is_library"]))
            assignments = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(
                self._q(f"UPDATE samples SET {assignments} WHERE id = ?"),
                [*sets.values(), sample_id],
            )
            self._drop_orphan_families(conn)
            updated = conn.execute(
                self._q(f"SELECT {SAMPLE_COLUMNS} FROM {SAMPLE_FROM} WHERE s.id = ?"),
                (sample_id,),
            ).fetchone()
        assert updated is not None
        return sample_record(updated)

    def delete_sample(self, ref: str) -> None:
        with self._write() as conn:
            sample_id = self._resolve(conn, ref)[0]
            conn.execute(self._q("DELETE FROM samples WHERE id = ?"), (sample_id,))
            self._drop_orphan_families(conn)

    def bind_feature_params(self, params: Mapping[str, Any]) -> None:
        given = normalise_params(params)
        with self._write() as conn:
            raw = self._meta(conn, "feature_params")
            stored = None if raw is None else json.loads(raw)
            if stored == given:
                return
            has_functions = conn.execute("SELECT 1 FROM functions LIMIT 1").fetchone()
            if stored is not None and has_functions:
                raise StoreError(
                    f"{self.where}: the store's sketches were made with other feature "
                    f"parameters ({params_conflict(stored, given)}); use another store or "
                    "the same configuration"
                )
            self._set_meta(conn, "feature_params", json.dumps(given, sort_keys=True))
