"""What the two SQL stores (:mod:`kinship.store.sqlite`, :mod:`kinship.store.postgres`) share:
the value encodings, the column lists, row decoding, and :class:`SQLStore`, the part of the
:class:`kinship.store.base.Store` protocol whose SQL is the same on both.

Both stores have the same tables and value types (read :mod:`kinship.store.sqlite`'s docstring
for the encodings). A backend supplies its connection, its read/write transactions, the
parameter mark (``?`` or ``%s``) and the few value conversions that differ
(:meth:`SQLStore._text`, :meth:`SQLStore._label`, :meth:`SQLStore._db_bool`,
:meth:`SQLStore._insert_id`).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, ClassVar, Self

import numpy as np

from kinship.exceptions import NotFoundError, StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    MAX_TEXTS_PER_QUERY,
    FamilyRecord,
    SampleSummary,
    StoreConfig,
    StoredString,
    StringPosting,
    aggregate_families,
    check_labels,
    check_signature_lengths,
    clip_texts,
    distinct_strings,
    normalise_params,
    normalise_record,
    params_conflict,
    parse_ref,
)
from kinship.store.model import SampleRecord

log = logging.getLogger(__name__)

# A DB-API connection (sqlite3.Connection, psycopg.Connection): ``execute(query, params)``
# returning a cursor with ``fetchone``/``fetchall``. Typed loosely: the two differ in detail.
Conn = Any

# --- columns -------------------------------------------------------------------------------

EFFECTIVE_ACTOR = "CASE WHEN s.family_id IS NULL THEN s.actor ELSE f.actor END"
SAMPLE_COLUMNS = (
    "s.id, s.sha256, s.md5, s.sha1, s.name, s.format, s.arch, s.size, f.name, "
    f"{EFFECTIVE_ACTOR}, s.source, s.first_seen, "
    "s.version, s.is_library, s.n_functions, s.n_instructions, s.added_at, s.info"
)
SAMPLE_FROM = "samples s LEFT JOIN families f ON f.id = s.family_id"
FUNCTION_COLUMNS = (
    "va, name, n_instructions, n_blocks, n_edges, size, exact_hash, code_sig, sem_sig, "
    "n_code_tokens, n_sem_tokens, apis, strings, discovery"
)
# Rows for function_arrays' sample table: decode with sample_summary().
SAMPLE_SUMMARIES_SQL = (
    f"SELECT s.id, s.sha256, s.name, f.name, {EFFECTIVE_ACTOR}, s.is_library FROM {SAMPLE_FROM}"
)
# string_postings' columns before its FROM (the string's offset column is named by the backend).
POSTING_COLUMNS = (
    "t.string, t.encoding, t.{offset}, t.va, t.section, s.id, s.sha256, s.name, f.name, "
    f"{EFFECTIVE_ACTOR}, s.source, s.first_seen, s.is_library"
)
POSTING_FROM = (
    "sample_strings t JOIN samples s ON s.id = t.sample_id "
    "LEFT JOIN families f ON f.id = s.family_id"
)
ACTORS_COUNT_SQL = f"SELECT COUNT(DISTINCT {EFFECTIVE_ACTOR}) FROM {SAMPLE_FROM}"
FAMILIES_SQL = (
    "SELECT f.name, f.actor, s.source, s.first_seen, s.n_functions "
    "FROM families f JOIN samples s ON s.family_id = f.id ORDER BY f.name"
)
DROP_ORPHAN_FAMILIES_SQL = (
    "DELETE FROM families WHERE NOT EXISTS "
    "(SELECT 1 FROM samples WHERE samples.family_id = families.id)"
)

# --- value encoding ------------------------------------------------------------------------

SIG_DTYPE = np.dtype("<u4")
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1
_ESCAPES = {"\\": "\\\\", "\n": "\\n"}
_UNESCAPES = {"\\": "\\", "n": "\n"}
_ESCAPE_RE = re.compile(r"[\\\n]")
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def clean_surrogates(text: str) -> str:
    """``text`` storable as UTF-8: lone surrogates (undecodable bytes) become U+FFFD."""
    return _SURROGATE_RE.sub("\ufffd", text)


def join_lines(items: tuple[str, ...]) -> str | None:
    """``items`` as one TEXT (``\\`` and newline escaped, newline-joined); None when empty.
    Not yet cleaned: the store passes it through its :meth:`SQLStore._text`."""
    if not items:
        return None
    return "\n".join(_ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], s) for s in items)


def split_lines(text: str | None) -> tuple[str, ...]:
    """The inverse of :func:`join_lines`."""
    if text is None:
        return ()
    if "\\" not in text:
        return tuple(text.split("\n"))
    return tuple(
        _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), s)
        for s in text.split("\n")
    )


def sig_bytes(sig: np.ndarray[Any, Any]) -> bytes:
    """A sketch as raw little-endian uint32 bytes."""
    if sig.dtype == SIG_DTYPE and sig.flags.c_contiguous:
        return sig.tobytes()
    return np.ascontiguousarray(sig, dtype=SIG_DTYPE).tobytes()


def va_to_db(va: int) -> int:
    """An unsigned 64-bit address as the signed integer with the same bits."""
    return va - _U64 if va > _I64_MAX else va


def va_from_db(va: int) -> int:
    return va + _U64 if va < 0 else va


def none_if_empty(value: str | None) -> str | None:
    return value if value else None


def now() -> str:
    """The time of a write (``added_at``), UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def as_text(value: str | bool | None) -> str | None:
    """A text label value (None stays None); UsageError for anything else."""
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"label value {value!r} must be text")


def new_store_id() -> str:
    """A random id for a new store (32 hex digits), kept in ``meta.store_id``."""
    return uuid.uuid4().hex


# --- row decoding --------------------------------------------------------------------------


def sample_record(row: Sequence[Any]) -> SampleRecord:
    """A ``SAMPLE_COLUMNS`` row -> SampleRecord."""
    return SampleRecord(
        id=row[0],
        sha256=row[1],
        md5=row[2],
        sha1=row[3],
        name=row[4],
        format=row[5],
        arch=row[6],
        size=row[7],
        family=row[8],
        actor=row[9],
        source=row[10],
        first_seen=row[11],
        version=row[12],
        is_library=bool(row[13]),
        n_functions=row[14],
        n_instructions=row[15],
        added_at=row[16],
        info=json.loads(row[17]),
    )


def function_features(r: Sequence[Any]) -> FunctionFeatures:
    """A ``FUNCTION_COLUMNS`` row -> FunctionFeatures."""
    return FunctionFeatures(
        va=va_from_db(r[0]),
        name=r[1],
        n_instructions=r[2],
        n_blocks=r[3],
        n_edges=r[4],
        size=r[5],
        exact_hash=r[6],
        code_sig=np.frombuffer(r[7], dtype=SIG_DTYPE),
        sem_sig=np.frombuffer(r[8], dtype=SIG_DTYPE),
        n_code_tokens=r[9],
        n_sem_tokens=r[10],
        apis=split_lines(r[11]),
        strings=split_lines(r[12]),
        discovery=r[13] or "",
    )


def stored_string(row: Sequence[Any]) -> StoredString:
    """(string, encoding, offset, va, section) row -> StoredString."""
    return StoredString(
        text=row[0], encoding=row[1], offset=row[2],
        va=None if row[3] is None else va_from_db(row[3]), section=row[4],
    )


def string_posting(r: Sequence[Any]) -> StringPosting:
    """A ``POSTING_COLUMNS`` row -> StringPosting."""
    return StringPosting(stored_string(r[:5]), int(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                         bool(r[12]))


def sample_summary(r: Sequence[Any]) -> SampleSummary:
    """A ``SAMPLE_SUMMARIES_SQL`` row (after its id) -> SampleSummary."""
    return SampleSummary(sha256=r[1], name=r[2], family=r[3], actor=r[4], is_library=bool(r[5]))


# --- the shared store logic ----------------------------------------------------------------


class SQLStore:
    """The Store methods whose SQL both backends share: lookups, labels, deletes, the
    ingest's control flow (:meth:`add_sample`: duplicate check, replace, family, then the
    backend's inserts), meta rows and the store id.

    Subclasses set ``P`` (the parameter mark; queries here are written with ``?`` and never
    hold a literal ``?``), ``OFFSET_COLUMN``, ``STRING_ORDER``, ``config`` and ``where``
    (the store's name in messages), open their connection through :meth:`_adopt`, and
    provide ``_init_schema``, ``_read``, ``_write`` (one transaction that bumps
    ``meta.generation``), ``_insert_id``, ``_insert_sample``, ``_insert_functions``,
    ``_insert_strings`` and ``_postings_query``."""

    P: ClassVar[str]  # "?" (sqlite3) or "%s" (psycopg)
    OFFSET_COLUMN: ClassVar[str]  # sample_strings' file offset column
    STRING_ORDER: ClassVar[str]  # sample_strings' insertion order
    config: StoreConfig
    where: str
    _conn: Any

    # -- plumbing -------------------------------------------------------------------------

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            raise StoreError(f"{self.where}: the store is closed")
        return self._conn

    def _adopt(self, conn: Conn, setup: Callable[[Conn], object],
               error: type[Exception], message: Callable[[Exception], str]) -> None:
        """Configure a new connection (``setup``), make it the store's and create or check
        the schema (``_init_schema``). On any failure the connection is closed; ``error``s
        become StoreError(``message(e)``)."""
        try:
            setup(conn)
            self._conn = conn
            self._init_schema()
        except error as e:
            conn.close()
            self._conn = None
            raise StoreError(message(e)) from e
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _init_schema(self) -> None:
        raise NotImplementedError

    # -- backend hooks --------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _insert_id(self, conn: Conn, query: str, params: Sequence[Any]) -> int:
        """Run an INSERT of one row and return the row's id."""
        raise NotImplementedError

    @staticmethod
    def _text(text: str) -> str:
        """``text`` as the backend can store it (names, strings)."""
        return clean_surrogates(text)

    @staticmethod
    def _label(value: str | None) -> str | None:
        """A label (source, first seen, version) as the backend stores it."""
        return value

    @staticmethod
    def _db_bool(value: bool) -> Any:
        """A boolean column value."""
        return value

    def _q(self, query: str) -> str:
        """``query`` with ``?`` marks turned into the backend's."""
        return query if self.P == "?" else query.replace("?", self.P)

    # -- meta -----------------------------------------------------------------------------

    def _meta(self, conn: Conn, key: str) -> str | None:
        row = conn.execute(self._q("SELECT value FROM meta WHERE key = ?"), (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, conn: Conn, key: str, value: object) -> None:
        conn.execute(
            self._q("INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
            (key, str(value)),
        )

    def _ensure_store_id(self, conn: Conn) -> None:
        """Give a store made before store ids one (a concurrent opener may win; that is fine)."""
        if self._meta(conn, "store_id") is None:
            conn.execute(
                self._q("INSERT INTO meta(key, value) VALUES ('store_id', ?) "
                        "ON CONFLICT (key) DO NOTHING"),
                (new_store_id(),),
            )

    def _check_version(self, conn: Conn) -> int:
        """``meta.schema_version`` of a kinship store; StoreError when missing or invalid."""
        value = self._meta(conn, "schema_version")
        if value is None or not value.isdigit():
            raise StoreError(f"{self.where}: kinship store without a valid schema_version")
        return int(value)

    # -- helpers of the writes ------------------------------------------------------------

    def _resolve(self, conn: Conn, ref: str) -> tuple[Any, ...]:
        """The sample row (``SAMPLE_COLUMNS``) a reference names."""
        q = parse_ref(ref)
        conds = [f"s.{col} = ?" for col in q.exact_columns]
        params: list[str] = [q.ref] * len(q.exact_columns)
        if q.sha256_prefix:
            conds.append("(s.sha256 >= ? AND s.sha256 < ?)")
            params += [q.ref, q.ref + "g"]  # 'g' sorts after every hex digit
        rows = conn.execute(
            self._q(f"SELECT {SAMPLE_COLUMNS} FROM {SAMPLE_FROM} WHERE {' OR '.join(conds)} "
                    "LIMIT 2"),
            params,
        ).fetchall()
        if not rows:
            raise NotFoundError(f"no sample matches {ref!r}")
        if len(rows) > 1:
            raise StoreError(f"{ref!r} matches more than one sample; give more of the sha256")
        return tuple(rows[0])

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

    def _stored_id(self, conn: Conn, sha256: str) -> int | None:
        row = conn.execute(self._q("SELECT id FROM samples WHERE sha256 = ?"), (sha256,)).fetchone()
        return None if row is None else int(row[0])

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

    def _postings_query(self, texts: list[str]) -> tuple[str, Sequence[Any]]:
        """string_postings' query for ``texts`` (at most MAX_TEXTS_PER_QUERY) and its params:
        ``POSTING_COLUMNS`` rows, ordered by sample."""
        raise NotImplementedError

    # -- Store protocol -------------------------------------------------------------------

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

    def string_postings(self, texts: Iterable[str]) -> dict[str, list[StringPosting]]:
        wanted = sorted(set(texts))
        out: dict[str, list[StringPosting]] = {}
        with self._read() as conn:
            for k in range(0, len(wanted), MAX_TEXTS_PER_QUERY):
                query, params = self._postings_query(wanted[k : k + MAX_TEXTS_PER_QUERY])
                for r in conn.execute(query, params).fetchall():
                    out.setdefault(r[0], []).append(string_posting(r))
        return out

    def has_sample(self, sha256: str) -> bool:
        with self._read() as conn:
            return self._stored_id(conn, sha256.strip().lower()) is not None

    def get_sample(self, ref: str) -> SampleRecord:
        with self._read() as conn:
            return sample_record(self._resolve(conn, ref))

    def samples(
        self,
        family: str | None = None,
        actor: str | None = None,
        library: bool | None = None,
    ) -> list[SampleRecord]:
        conds: list[str] = ["1 = 1"]
        params: list[Any] = []
        if family is not None:
            conds.append("f.name = ?")
            params.append(family)
        if actor is not None:
            conds.append(f"({EFFECTIVE_ACTOR}) = ?")
            params.append(actor)
        if library is not None:
            conds.append("s.is_library = ?")
            params.append(self._db_bool(bool(library)))
        with self._read() as conn:
            rows = conn.execute(
                self._q(f"SELECT {SAMPLE_COLUMNS} FROM {SAMPLE_FROM} "
                        f"WHERE {' AND '.join(conds)} ORDER BY s.id"),
                params,
            ).fetchall()
        return [sample_record(r) for r in rows]

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

    def functions(self, ref: str) -> list[FunctionFeatures]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                self._q(f"SELECT {FUNCTION_COLUMNS} FROM functions WHERE sample_id = ? "
                        "ORDER BY id"),
                (sample_id,),
            ).fetchall()
        return [function_features(r) for r in rows]

    def function_names(self, ref: str) -> dict[int, str]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                self._q("SELECT va, name FROM functions WHERE sample_id = ? "
                        "AND name IS NOT NULL"),
                (sample_id,),
            ).fetchall()
        return {va_from_db(va): name for va, name in rows}

    def sample_strings(self, ref: str) -> list[StoredString]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                self._q(f"SELECT string, encoding, {self.OFFSET_COLUMN}, va, section "
                        f"FROM sample_strings WHERE sample_id = ? ORDER BY {self.STRING_ORDER}"),
                (sample_id,),
            ).fetchall()
        return [stored_string(r) for r in rows]

    def families(self) -> list[FamilyRecord]:
        with self._read() as conn:
            rows = conn.execute(FAMILIES_SQL).fetchall()
        return aggregate_families(rows)

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

    def feature_params(self) -> dict[str, Any] | None:
        with self._read() as conn:
            raw = self._meta(conn, "feature_params")
        return None if raw is None else dict(json.loads(raw))

    def generation(self) -> int:
        with self._read() as conn:
            return int(self._meta(conn, "generation") or 0)

    def store_id(self) -> str:
        with self._read() as conn:
            value = self._meta(conn, "store_id")
        if value is None:  # only while another process is creating the store
            raise StoreError(f"{self.where}: the store has no store_id")
        return value

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
