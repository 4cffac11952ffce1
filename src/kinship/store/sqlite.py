"""The default store: one SQLite file (WAL mode), no server.

Layout (schema version 2)::

    meta(key, value)                 schema_version, generation, store_id, code_sig_len,
                                     sem_sig_len, feature_params
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

The SQL that PostgreSQL runs too lives in :mod:`kinship.store.sqlcommon` (:class:`SQLStore`).
"""

from __future__ import annotations

import logging
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kinship.exceptions import StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    FunctionArrays,
    StoreConfig,
    StoredString,
    encode_info,
)
from kinship.store.model import SampleRecord, StoreStats
from kinship.store.paths import PRIVATE_FILE_MODE
from kinship.store.sqlcommon import SQLStore
from kinship.store.sqlrows import (
    ACTORS_COUNT_SQL,
    FUNCTION_COLUMNS,
    POSTING_COLUMNS,
    POSTING_FROM,
    SAMPLE_SUMMARIES_SQL,
    SIG_DTYPE,
    clean_surrogates,
    new_store_id,
    now,
    sample_summary,
    va_to_db,
)

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



# Column pickers for function_arrays' SELECT (C-level itemgetters: ~30% faster than zip(*rows)).
_INT_COLUMNS = operator.itemgetter(0, 1, 2, 3, 4, 5, 6, 7)
_CODE_COLUMN = operator.itemgetter(8)
_SEM_COLUMN = operator.itemgetter(9)


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


# --- the store -----------------------------------------------------------------------------


class SQLiteStore(SQLStore):
    """A :class:`kinship.store.base.Store` in one SQLite file (created when missing)."""

    P = "?"
    OFFSET_COLUMN = "offset"
    STRING_ORDER = "rowid"

    @staticmethod
    def _db_bool(value: bool) -> int:
        return int(value)

    def __init__(self, path: str | Path, config: StoreConfig | None = None) -> None:
        self.path = Path(path)
        self.where = str(self.path)  # for messages
        self.config = config or StoreConfig()
        self._conn: sqlite3.Connection | None = None
        _create_private(self.path)
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=self.config.busy_timeout_s, isolation_level=None
            )
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the store: {e}") from e
        self._adopt(
            conn, self._configure, sqlite3.DatabaseError,
            lambda e: f"{self.path}: not a kinship store, or the file is corrupt ({e})",
        )

    # -- plumbing -------------------------------------------------------------------------

    def _configure(self, conn: sqlite3.Connection) -> None:
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

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """Version of the file's schema; None for an empty file; StoreError for a stranger."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables:
            raise StoreError(f"{self.path}: an SQLite database, but not a kinship store")
        return self._check_version(conn)

    def _init_schema(self) -> None:
        conn = self.conn
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION and self._meta(conn, "store_id") is not None:
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
                self._set_meta(conn, "store_id", new_store_id())
                log.info("%s: created a new store (schema %d)", self.path, SCHEMA_VERSION)
            while version is not None and version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise StoreError(f"{self.path}: no migration from schema version {version}")
                for stmt in MIGRATIONS[version]:
                    conn.execute(stmt)
                version += 1
                self._set_meta(conn, "schema_version", version)
                log.info("%s: migrated the store to schema %d", self.path, version)
            self._ensure_store_id(conn)  # stores made before store ids
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _insert_id(self, conn: sqlite3.Connection, query: str, params: Sequence[Any]) -> int:
        return int(conn.execute(query, params).lastrowid or 0)

    def _insert_sample(self, conn: sqlite3.Connection, rec: SampleRecord,
                       hashes: tuple[str, str, str], family_id: int | None,
                       own_actor: str | None, old_id: int | None,
                       functions: Sequence[FunctionFeatures]) -> int:
        # n_instructions: when not given, summed while the functions stream in (one pass)
        return self._insert_id(
            conn,
            "INSERT INTO samples(id, sha256, md5, sha1, name, format, arch, size, "
            "family_id, actor, source, first_seen, version, is_library, n_functions, "
            "n_instructions, added_at, info) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                old_id,
                *hashes,
                clean_surrogates(rec.name),
                rec.format,
                rec.arch,
                rec.size,
                family_id,
                own_actor,
                rec.source,
                rec.first_seen,
                rec.version,
                int(bool(rec.is_library)),
                len(functions),
                rec.n_instructions,
                now(),
                encode_info(rec.info),
            ),
        )

    def _insert_functions(self, conn: sqlite3.Connection, rec: SampleRecord, sample_id: int,
                          functions: Sequence[FunctionFeatures], k_code: int, k_sem: int
                          ) -> None:
        counter = [0]  # instructions, summed while the rows stream in (one pass)
        conn.executemany(
            f"INSERT INTO functions(sample_id, {FUNCTION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._function_rows(sample_id, functions, k_code, k_sem, counter),
        )
        if not rec.n_instructions:
            conn.execute(
                "UPDATE samples SET n_instructions = ? WHERE id = ?", (counter[0], sample_id)
            )

    def _insert_strings(self, conn: sqlite3.Connection, sample_id: int,
                        strings: Iterable[StoredString]) -> None:
        conn.executemany(
            "INSERT INTO sample_strings(sample_id, string, offset, va, section, "
            "encoding) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (sample_id, clean_surrogates(s.text), s.offset,
                 None if s.va is None else va_to_db(s.va), s.section, s.encoding)
                for s in strings
            ),
        )

    def _postings_query(self, texts: list[str]) -> tuple[str, Sequence[Any]]:
        columns = POSTING_COLUMNS.format(offset=self.OFFSET_COLUMN)
        marks = ",".join("?" * len(texts))
        return (f"SELECT {columns} FROM {POSTING_FROM} WHERE t.string IN ({marks}) "
                "ORDER BY s.id", texts)

    # -- Store protocol (the rest is SQLStore's) --------------------------------------------

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
                    out.code_sig[sl] = np.frombuffer(code, SIG_DTYPE).reshape(m, k_code)
                    out.sem_sig[sl] = np.frombuffer(sem, SIG_DTYPE).reshape(m, k_sem)
                except ValueError as e:
                    raise StoreError(
                        f"{self.path}: stored signatures do not all have the recorded "
                        f"lengths {k_code}/{k_sem}"
                    ) from e
                i += m
            if i != n:
                raise StoreError(f"{self.path}: function count changed during the load")
            for r in conn.execute(SAMPLE_SUMMARIES_SQL):
                out.samples[int(r[0])] = sample_summary(r)
        return out

    def stats(self) -> StoreStats:
        with self._read() as conn:
            samples, functions, library = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_functions), 0), COALESCE(SUM(is_library), 0) "
                "FROM samples"
            ).fetchone()
            families = conn.execute("SELECT COUNT(*) FROM families").fetchone()[0]
            actors = conn.execute(ACTORS_COUNT_SQL).fetchone()[0]
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

    def vacuum(self) -> None:
        """Rewrite the file without free pages and fold the WAL in (after big deletes)."""
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: vacuum failed: {e}") from e

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"


def _create_private(path: Path) -> None:
    """Create a new store file readable by its owner only (SQLite gives its -wal and -shm
    files the database file's mode); an existing file keeps the mode its owner chose."""
    if str(path) == ":memory:" or path.exists():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"{path}: cannot create the store: {e.strerror or e}") from e
    os.close(fd)
