"""The default store: one SQLite file (WAL mode), no server.

Layout (schema version 2)::

    meta(key, value)                 schema_version, generation, code_sig_len, sem_sig_len
    families(id, name UNIQUE, actor)
    samples(id, sha256 UNIQUE, md5, sha1, ..., family_id -> families, actor, info JSON)
    functions(id, sample_id -> samples ON DELETE CASCADE, va, ..., code_sig BLOB, sem_sig BLOB)
    sample_strings(sample_id -> samples ON DELETE CASCADE, string, offset, va, section,
                   encoding)     one row per distinct text of a sample (version 2)

Function rows are kept lean because there are millions of them: the two MinHash sketches are
raw little-endian uint32 blobs (``K * 4`` bytes each), ``name``/``apis``/``strings``/
``discovery`` are NULL when empty, ``apis``/``strings`` are one ``\\n``-joined TEXT each
(``\\`` and newline escaped). ``va`` is stored as the signed 64-bit integer with the same bits
(SQLite integers are signed). All signatures in one store have the same lengths (recorded in
``meta`` when the first function is added).

Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction that also bumps
``meta.generation``; a process killed in the middle leaves the file as it was (WAL rollback
on the next open).
"""

from __future__ import annotations

import json
import logging
import operator
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from kinship.exceptions import NotFoundError, StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    MAX_TEXTS_PER_QUERY,
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

SCHEMA_VERSION = 2

_STRINGS_SCHEMA = """
CREATE TABLE sample_strings (
    sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    string TEXT NOT NULL,
    offset INTEGER,             -- file offset; NULL when not backed by file bytes
    va INTEGER,                 -- signed 64-bit view, as functions.va
    section TEXT,
    encoding TEXT NOT NULL      -- ascii | utf-16le | stack
);
CREATE INDEX sample_strings_string ON sample_strings(string);
CREATE INDEX sample_strings_sample ON sample_strings(sample_id);
"""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE families (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    actor TEXT
);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    md5 TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    arch TEXT NOT NULL,
    size INTEGER NOT NULL,
    family_id INTEGER REFERENCES families(id),
    actor TEXT,                 -- the sample's own actor; used only when family_id is NULL
    source TEXT,
    first_seen TEXT,
    version TEXT,
    is_library INTEGER NOT NULL DEFAULT 0,
    n_functions INTEGER NOT NULL,
    n_instructions INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    info TEXT NOT NULL          -- JSON object
);
CREATE INDEX samples_md5 ON samples(md5);
CREATE INDEX samples_sha1 ON samples(sha1);
CREATE INDEX samples_family ON samples(family_id);
CREATE TABLE functions (
    id INTEGER PRIMARY KEY,
    sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    va INTEGER NOT NULL,        -- signed 64-bit view of the unsigned address
    name TEXT,
    n_instructions INTEGER NOT NULL,
    n_blocks INTEGER NOT NULL,
    n_edges INTEGER NOT NULL,
    size INTEGER NOT NULL,
    exact_hash INTEGER NOT NULL,
    code_sig BLOB NOT NULL,     -- K little-endian uint32
    sem_sig BLOB NOT NULL,
    n_code_tokens INTEGER NOT NULL,
    n_sem_tokens INTEGER NOT NULL,
    apis TEXT,                  -- escaped, newline-joined; NULL = none
    strings TEXT,
    discovery TEXT
);
CREATE INDEX functions_sample ON functions(sample_id);
CREATE INDEX functions_exact ON functions(exact_hash);
""" + _STRINGS_SCHEMA


_SAMPLE_COLUMNS = (
    "s.id, s.sha256, s.md5, s.sha1, s.name, s.format, s.arch, s.size, f.name, "
    "CASE WHEN s.family_id IS NULL THEN s.actor ELSE f.actor END, s.source, s.first_seen, "
    "s.version, s.is_library, s.n_functions, s.n_instructions, s.added_at, s.info"
)
_SAMPLE_FROM = "samples s LEFT JOIN families f ON f.id = s.family_id"
_FUNCTION_COLUMNS = (
    "va, name, n_instructions, n_blocks, n_edges, size, exact_hash, code_sig, sem_sig, "
    "n_code_tokens, n_sem_tokens, apis, strings, discovery"
)
_SIG_DTYPE = np.dtype("<u4")
# Column pickers for function_arrays' SELECT (C-level itemgetters: ~30% faster than zip(*rows)).
_INT_COLUMNS = operator.itemgetter(0, 1, 2, 3, 4, 5, 6, 7)
_CODE_COLUMN = operator.itemgetter(8)
_SEM_COLUMN = operator.itemgetter(9)
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


# --- value encoding ------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\n": "\\n"}
_UNESCAPES = {"\\": "\\", "n": "\n"}
_ESCAPE_RE = re.compile(r"[\\\n]")
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """``text`` storable as UTF-8: lone surrogates (undecodable bytes) become U+FFFD."""
    return _SURROGATE_RE.sub("\ufffd", text)


def _join_lines(items: tuple[str, ...]) -> str | None:
    if not items:
        return None
    return _clean("\n".join(_ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], s) for s in items))


def _split_lines(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    if "\\" not in text:
        return tuple(text.split("\n"))
    return tuple(
        _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), s)
        for s in text.split("\n")
    )


def _sig_bytes(sig: np.ndarray[Any, Any]) -> bytes:
    if sig.dtype == _SIG_DTYPE and sig.flags.c_contiguous:
        return sig.tobytes()
    return np.ascontiguousarray(sig, dtype=_SIG_DTYPE).tobytes()


def _va_to_db(va: int) -> int:
    return va - _U64 if va > _I64_MAX else va


def _va_from_db(va: int) -> int:
    return va + _U64 if va < 0 else va


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one by one (``executescript`` would COMMIT)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise StoreError("internal error: incomplete statement in the schema script")


# MIGRATIONS[v] upgrades a version-v store to v+1 (statements run in one transaction).
# 1 -> 2: sample strings (samples stored before have none until re-added with --replace).
MIGRATIONS: dict[int, tuple[str, ...]] = {1: tuple(_statements(_STRINGS_SCHEMA))}


def _none_if_empty(value: str | None) -> str | None:
    return value if value else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the store -----------------------------------------------------------------------------


class SQLiteStore:
    """A :class:`kinship.store.base.Store` in one SQLite file (created when missing)."""

    def __init__(self, path: str | Path, config: StoreConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or StoreConfig()
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=self.config.busy_timeout_s, isolation_level=None
            )
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the store: {e}") from e
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # Only takes effect while the file is still empty (before WAL mode writes it).
            conn.execute(f"PRAGMA page_size = {int(self.config.page_size)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal mode is %s, not WAL", self.path, mode)
            if self.config.synchronous.upper() not in ("NORMAL", "FULL"):
                raise UsageError(
                    f"synchronous must be NORMAL or FULL, not {self.config.synchronous}"
                )
            conn.execute(f"PRAGMA synchronous = {self.config.synchronous.upper()}")
            conn.execute(f"PRAGMA cache_size = {-int(self.config.cache_size_kib)}")
            self._conn = conn
            self._init_schema()
        except sqlite3.DatabaseError as e:
            conn.close()
            self._conn = None
            raise StoreError(
                f"{self.path}: not a kinship store, or the file is corrupt ({e})"
            ) from e
        except BaseException:
            conn.close()
            self._conn = None
            raise

    # -- plumbing -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that bumps the generation; rolled back on any exception."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot start a write: {e}") from e
        try:
            yield conn
            conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self.path}: write failed: {e}") from e
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self.conn
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def _meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, conn: sqlite3.Connection, key: str, value: object) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """Version of the file's schema; None for an empty file; StoreError for a stranger."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables:
            raise StoreError(f"{self.path}: an SQLite database, but not a kinship store")
        value = self._meta(conn, "schema_version")
        if value is None or not value.isdigit():
            raise StoreError(f"{self.path}: kinship store without a valid schema_version")
        return int(value)

    def _init_schema(self) -> None:
        conn = self.conn
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {version} is newer than this kinship "
                f"supports ({SCHEMA_VERSION}); upgrade kinship"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._schema_version(conn)  # another process may have won the race
            if version is None:
                for stmt in _statements(_SCHEMA):
                    conn.execute(stmt)
                self._set_meta(conn, "schema_version", SCHEMA_VERSION)
                self._set_meta(conn, "generation", 0)
                log.info("%s: created a new store (schema %d)", self.path, SCHEMA_VERSION)
            while version is not None and version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise StoreError(f"{self.path}: no migration from schema version {version}")
                for stmt in MIGRATIONS[version]:
                    conn.execute(stmt)
                version += 1
                self._set_meta(conn, "schema_version", version)
                log.info("%s: migrated the store to schema %d", self.path, version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _resolve(self, conn: sqlite3.Connection, ref: str) -> tuple[Any, ...]:
        """The sample row (``_SAMPLE_COLUMNS``) a reference names."""
        q = parse_ref(ref)
        conds = [f"s.{col} = ?" for col in q.exact_columns]
        params: list[str] = [q.ref] * len(q.exact_columns)
        if q.sha256_prefix:
            conds.append("(s.sha256 >= ? AND s.sha256 < ?)")
            params += [q.ref, q.ref + "g"]  # 'g' sorts after every hex digit
        rows = conn.execute(
            f"SELECT {_SAMPLE_COLUMNS} FROM {_SAMPLE_FROM} WHERE {' OR '.join(conds)} LIMIT 2",
            params,
        ).fetchall()
        if not rows:
            raise NotFoundError(f"no sample matches {ref!r}")
        if len(rows) > 1:
            raise StoreError(f"{ref!r} matches more than one sample; give more of the sha256")
        return tuple(rows[0])

    @staticmethod
    def _record(row: Sequence[Any]) -> SampleRecord:
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

    def _family_id(
        self, conn: sqlite3.Connection, name: str, actor: str | None, *, force_actor: bool
    ) -> int:
        """Id of family ``name`` (created when new). ``actor`` fills in a missing actor, or
        overrides the family's when ``force_actor``; a conflicting actor is otherwise logged."""
        row = conn.execute("SELECT id, actor FROM families WHERE name = ?", (name,)).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO families(name, actor) VALUES (?, ?)", (name, actor))
            return int(cur.lastrowid or 0)
        fid, current = int(row[0]), row[1]
        if actor is not None and actor != current:
            if force_actor or current is None:
                conn.execute("UPDATE families SET actor = ? WHERE id = ?", (actor, fid))
            else:
                log.warning(
                    "family %s is attributed to %s; the sample's actor %s is not applied "
                    "(relabel the family to change it)",
                    name,
                    current,
                    actor,
                )
        return fid

    @staticmethod
    def _drop_orphan_families(conn: sqlite3.Connection) -> None:
        conn.execute(
            "DELETE FROM families WHERE NOT EXISTS "
            "(SELECT 1 FROM samples WHERE samples.family_id = families.id)"
        )

    def _signature_lengths(
        self, conn: sqlite3.Connection, first: FunctionFeatures
    ) -> tuple[int, int]:
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
        n_instructions: list[int],
    ) -> Iterator[tuple[Any, ...]]:
        cfg = self.config
        for f in functions:
            n_instructions[0] += f.n_instructions
            check_signature_lengths(f, k_code, k_sem)
            apis = clip_texts(f.apis, cfg.max_apis_per_function, cfg.max_string_chars, "APIs", f.va)
            strings = clip_texts(
                f.strings, cfg.max_strings_per_function, cfg.max_string_chars, "strings", f.va
            )
            yield (
                sample_id,
                _va_to_db(f.va),
                _clean(f.name) if f.name else None,
                f.n_instructions,
                f.n_blocks,
                f.n_edges,
                f.size,
                f.exact_hash,
                _sig_bytes(f.code_sig),
                _sig_bytes(f.sem_sig),
                f.n_code_tokens,
                f.n_sem_tokens,
                _join_lines(apis),
                _join_lines(strings),
                f.discovery or None,
            )

    # -- Store protocol -------------------------------------------------------------------

    def has_sample(self, sha256: str) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM samples WHERE sha256 = ?", (sha256.strip().lower(),)
            ).fetchone()
        return row is not None

    def add_sample(
        self,
        rec: SampleRecord,
        functions: Sequence[FunctionFeatures],
        *,
        replace: bool = False,
        strings: Sequence[StoredString] = (),
    ) -> int:
        sha256, md5, sha1 = normalise_record(rec)
        family = _none_if_empty(rec.family)
        actor = _none_if_empty(rec.actor)
        if not replace:  # fast path, no write lock and no generation bump for a duplicate
            with self._read() as conn:
                row = conn.execute("SELECT id FROM samples WHERE sha256 = ?", (sha256,)).fetchone()
            if row is not None:
                log.debug("sample %s already stored (id %d)", sha256, row[0])
                return int(row[0])
        with self._write() as conn:
            row = conn.execute("SELECT id FROM samples WHERE sha256 = ?", (sha256,)).fetchone()
            sample_id: int | None = None
            if row is not None:
                if not replace:  # another process stored it since the fast path looked
                    return int(row[0])
                sample_id = int(row[0])
                conn.execute("DELETE FROM samples WHERE id = ?", (sample_id,))
            family_id = self._family_id(conn, family, actor, force_actor=False) if family else None
            cur = conn.execute(
                "INSERT INTO samples(id, sha256, md5, sha1, name, format, arch, size, "
                "family_id, actor, source, first_seen, version, is_library, n_functions, "
                "n_instructions, added_at, info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sample_id,
                    sha256,
                    md5,
                    sha1,
                    _clean(rec.name),
                    rec.format,
                    rec.arch,
                    rec.size,
                    family_id,
                    None if family_id is not None else actor,
                    rec.source,
                    rec.first_seen,
                    rec.version,
                    int(bool(rec.is_library)),
                    len(functions),
                    rec.n_instructions,
                    _now(),
                    encode_info(rec.info),
                ),
            )
            sample_id = int(cur.lastrowid or 0)
            if len(functions):
                k_code, k_sem = self._signature_lengths(conn, functions[0])
                counter = [0]  # instructions, summed while the rows stream in (one pass)
                conn.executemany(
                    f"INSERT INTO functions(sample_id, {_FUNCTION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._function_rows(sample_id, functions, k_code, k_sem, counter),
                )
                if not rec.n_instructions:
                    conn.execute(
                        "UPDATE samples SET n_instructions = ? WHERE id = ?",
                        (counter[0], sample_id),
                    )
            if strings:
                conn.executemany(
                    "INSERT INTO sample_strings(sample_id, string, offset, va, section, "
                    "encoding) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (sample_id, _clean(s.text), s.offset,
                         None if s.va is None else _va_to_db(s.va), s.section, s.encoding)
                        for s in distinct_strings(strings)
                    ),
                )
            if replace:
                self._drop_orphan_families(conn)
        log.debug("stored sample %s (id %d, %d functions)", sha256, sample_id, len(functions))
        return sample_id

    def get_sample(self, ref: str) -> SampleRecord:
        with self._read() as conn:
            return self._record(self._resolve(conn, ref))

    def samples(
        self,
        family: str | None = None,
        actor: str | None = None,
        library: bool | None = None,
    ) -> list[SampleRecord]:
        conds: list[str] = ["1"]
        params: list[str | int] = []
        if family is not None:
            conds.append("f.name = ?")
            params.append(family)
        if actor is not None:
            conds.append("(CASE WHEN s.family_id IS NULL THEN s.actor ELSE f.actor END) = ?")
            params.append(actor)
        if library is not None:
            conds.append("s.is_library = ?")
            params.append(int(library))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM {_SAMPLE_FROM} WHERE {' AND '.join(conds)} "
                "ORDER BY s.id",
                params,
            ).fetchall()
        return [self._record(r) for r in rows]

    def update_labels(self, ref: str, **labels: str | bool | None) -> SampleRecord:
        check_labels(labels)
        with self._write() as conn:
            row = self._resolve(conn, ref)
            sample_id, family, effective_actor = row[0], row[8], row[9]
            family_id = conn.execute(
                "SELECT family_id FROM samples WHERE id = ?", (sample_id,)
            ).fetchone()[0]
            own_actor = None if family_id is not None else effective_actor
            actor_given = "actor" in labels
            new_actor = _none_if_empty(_as_text(labels.get("actor")))
            if "family" in labels:
                new_family = _none_if_empty(_as_text(labels["family"]))
                if new_family is None:
                    family_id = None
                    own_actor = new_actor if actor_given else effective_actor
                elif new_family != family:
                    family_id = self._family_id(
                        conn,
                        new_family,
                        new_actor if actor_given else effective_actor,
                        force_actor=actor_given,
                    )
                    own_actor = None
                elif actor_given and family_id is not None:
                    conn.execute(
                        "UPDATE families SET actor = ? WHERE id = ?", (new_actor, family_id)
                    )
            elif actor_given:
                if family_id is not None:
                    conn.execute(
                        "UPDATE families SET actor = ? WHERE id = ?", (new_actor, family_id)
                    )
                else:
                    own_actor = new_actor
            sets = {"family_id": family_id, "actor": own_actor}
            for key in ("source", "first_seen", "version"):
                if key in labels:
                    sets[key] = _none_if_empty(_as_text(labels[key]))
            if "is_library" in labels:
                sets["is_library"] = int(bool(labels["is_library"]))
            assignments = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(
                f"UPDATE samples SET {assignments} WHERE id = ?", [*sets.values(), sample_id]
            )
            self._drop_orphan_families(conn)
            updated = conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM {_SAMPLE_FROM} WHERE s.id = ?", (sample_id,)
            ).fetchone()
        return self._record(updated)

    def delete_sample(self, ref: str) -> None:
        with self._write() as conn:
            sample_id = self._resolve(conn, ref)[0]
            conn.execute("DELETE FROM samples WHERE id = ?", (sample_id,))
            self._drop_orphan_families(conn)

    def functions(self, ref: str) -> list[FunctionFeatures]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                f"SELECT {_FUNCTION_COLUMNS} FROM functions WHERE sample_id = ? ORDER BY id",
                (sample_id,),
            ).fetchall()
        return [
            FunctionFeatures(
                va=_va_from_db(r[0]),
                name=r[1],
                n_instructions=r[2],
                n_blocks=r[3],
                n_edges=r[4],
                size=r[5],
                exact_hash=r[6],
                code_sig=np.frombuffer(r[7], dtype=_SIG_DTYPE),
                sem_sig=np.frombuffer(r[8], dtype=_SIG_DTYPE),
                n_code_tokens=r[9],
                n_sem_tokens=r[10],
                apis=_split_lines(r[11]),
                strings=_split_lines(r[12]),
                discovery=r[13] or "",
            )
            for r in rows
        ]

    def function_names(self, ref: str) -> dict[int, str]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                "SELECT va, name FROM functions WHERE sample_id = ? AND name IS NOT NULL",
                (sample_id,),
            ).fetchall()
        return {_va_from_db(va): name for va, name in rows}

    def sample_strings(self, ref: str) -> list[StoredString]:
        with self._read() as conn:
            sample_id = self._resolve(conn, ref)[0]
            rows = conn.execute(
                "SELECT string, encoding, offset, va, section FROM sample_strings "
                "WHERE sample_id = ? ORDER BY rowid", (sample_id,)
            ).fetchall()
        return [_stored_string(r) for r in rows]

    def string_postings(self, texts: Iterable[str]) -> dict[str, list[StringPosting]]:
        wanted = sorted(set(texts))
        out: dict[str, list[StringPosting]] = {}
        with self._read() as conn:
            for k in range(0, len(wanted), MAX_TEXTS_PER_QUERY):
                chunk = wanted[k : k + MAX_TEXTS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT t.string, t.encoding, t.offset, t.va, t.section, s.id, s.sha256, "
                    "s.name, f.name, CASE WHEN s.family_id IS NULL THEN s.actor ELSE f.actor "
                    "END, s.source, s.first_seen, s.is_library "
                    "FROM sample_strings t JOIN samples s ON s.id = t.sample_id "
                    "LEFT JOIN families f ON f.id = s.family_id "
                    f"WHERE t.string IN ({marks}) ORDER BY s.id",
                    chunk,
                ).fetchall()
                for r in rows:
                    out.setdefault(r[0], []).append(StringPosting(
                        _stored_string(r[:5]), int(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                        bool(r[12])))
        return out

    def function_arrays(self) -> FunctionArrays:
        chunk = max(1, int(self.config.fetch_chunk_rows))
        with self._read() as conn:
            generation = int(self._meta(conn, "generation") or 0)
            n = int(conn.execute("SELECT COUNT(*) FROM functions").fetchone()[0])
            k_code = int(self._meta(conn, "code_sig_len") or 0) if n else 0
            k_sem = int(self._meta(conn, "sem_sig_len") or 0) if n else 0
            out = FunctionArrays(
                function_id=np.empty(n, np.int64),
                sample_id=np.empty(n, np.int32),
                va=np.empty(n, np.uint64),
                n_instructions=np.empty(n, np.int32),
                exact_hash=np.empty(n, np.int64),
                code_sig=np.empty((n, k_code), np.uint32),
                sem_sig=np.empty((n, k_sem), np.uint32),
                n_code_tokens=np.empty(n, np.int32),
                n_sem_tokens=np.empty(n, np.int32),
                size=np.empty(n, np.int32),
                samples={},
                generation=generation,
            )
            cur = conn.execute(
                "SELECT id, sample_id, va, n_instructions, exact_hash, n_code_tokens, "
                "n_sem_tokens, size, code_sig, sem_sig FROM functions ORDER BY id"
            )
            i = 0
            while rows := cur.fetchmany(chunk):
                m = len(rows)
                if i + m > n:
                    raise StoreError(f"{self.path}: function count changed during the load")
                sl = slice(i, i + m)
                ints = np.array(list(map(_INT_COLUMNS, rows)), dtype=np.int64).reshape(m, 8)
                out.function_id[sl] = ints[:, 0]
                out.sample_id[sl] = ints[:, 1]
                out.va[sl] = ints[:, 2].view(np.uint64)  # stored as the signed view
                out.n_instructions[sl] = ints[:, 3]
                out.exact_hash[sl] = ints[:, 4]
                out.n_code_tokens[sl] = ints[:, 5]
                out.n_sem_tokens[sl] = ints[:, 6]
                out.size[sl] = ints[:, 7]
                code = b"".join(map(_CODE_COLUMN, rows))
                sem = b"".join(map(_SEM_COLUMN, rows))
                try:
                    out.code_sig[sl] = np.frombuffer(code, _SIG_DTYPE).reshape(m, k_code)
                    out.sem_sig[sl] = np.frombuffer(sem, _SIG_DTYPE).reshape(m, k_sem)
                except ValueError as e:
                    raise StoreError(
                        f"{self.path}: stored signatures do not all have the recorded "
                        f"lengths {k_code}/{k_sem}"
                    ) from e
                i += m
            if i != n:
                raise StoreError(f"{self.path}: function count changed during the load")
            for r in conn.execute(
                "SELECT s.id, s.sha256, s.name, f.name, "
                "CASE WHEN s.family_id IS NULL THEN s.actor ELSE f.actor END, s.is_library "
                f"FROM {_SAMPLE_FROM}"
            ):
                out.samples[int(r[0])] = SampleSummary(
                    sha256=r[1], name=r[2], family=r[3], actor=r[4], is_library=bool(r[5])
                )
        return out

    def families(self) -> list[FamilyRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT f.name, f.actor, s.source, s.first_seen, s.n_functions "
                "FROM families f JOIN samples s ON s.family_id = f.id ORDER BY f.name"
            ).fetchall()
        return aggregate_families(rows)

    def stats(self) -> StoreStats:
        with self._read() as conn:
            samples, functions, library = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_functions), 0), COALESCE(SUM(is_library), 0) "
                "FROM samples"
            ).fetchone()
            families = conn.execute("SELECT COUNT(*) FROM families").fetchone()[0]
            actors = conn.execute(
                "SELECT COUNT(DISTINCT CASE WHEN s.family_id IS NULL THEN s.actor "
                f"ELSE f.actor END) FROM {_SAMPLE_FROM}"
            ).fetchone()[0]
            version = int(self._meta(conn, "schema_version") or 0)
        size = sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )
        return StoreStats(
            samples=int(samples),
            families=int(families),
            actors=int(actors),
            functions=int(functions),
            library_samples=int(library),
            size_bytes=size,
            schema_version=version,
            path=str(self.path),
        )

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
                    f"{self.path}: the store's sketches were made with other feature "
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

    def vacuum(self) -> None:
        """Rewrite the file without free pages and fold the WAL in (after big deletes)."""
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: vacuum failed: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"


def _stored_string(row: Sequence[Any]) -> StoredString:
    """(string, encoding, offset, va, section) row -> StoredString."""
    return StoredString(
        text=row[0], encoding=row[1], offset=row[2],
        va=None if row[3] is None else _va_from_db(row[3]), section=row[4],
    )


def _as_text(value: str | bool | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"label value {value!r} must be text")
