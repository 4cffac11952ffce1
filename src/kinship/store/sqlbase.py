"""The base of :class:`kinship.store.sqlcommon.SQLStore`: the connection plumbing, the hooks
a backend supplies, ``meta`` rows and the sample lookups both the reads
(:mod:`kinship.store.sqlread`) and the writes (:mod:`kinship.store.sqlcommon`) use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ClassVar, Self

from kinship.exceptions import NotFoundError, StoreError
from kinship.store.base import StoreConfig, parse_ref
from kinship.store.sqlrows import SAMPLE_COLUMNS, SAMPLE_FROM, clean_surrogates, new_store_id

# A DB-API connection (sqlite3.Connection, psycopg.Connection): ``execute(query, params)``
# returning a cursor with ``fetchone``/``fetchall``. Typed loosely: the two differ in detail.
Conn = Any


class SQLBase:
    """Plumbing, backend hooks, meta rows and lookups of :class:`SQLStore` (which lists what
    a backend provides)."""

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

    # -- lookups --------------------------------------------------------------------------

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

    def _stored_id(self, conn: Conn, sha256: str) -> int | None:
        row = conn.execute(self._q("SELECT id FROM samples WHERE sha256 = ?"), (sha256,)).fetchone()
        return None if row is None else int(row[0])

    # -- closing --------------------------------------------------------------------------

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
