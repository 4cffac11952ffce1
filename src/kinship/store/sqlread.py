"""The read queries of the :class:`kinship.store.base.Store` protocol that both SQL stores
share (:class:`SQLReads`, a base of :class:`kinship.store.sqlcommon.SQLStore`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from kinship.exceptions import StoreError
from kinship.features.model import FunctionFeatures
from kinship.store.base import (
    MAX_TEXTS_PER_QUERY,
    FamilyRecord,
    StoredString,
    StringPosting,
    aggregate_families,
)
from kinship.store.model import SampleRecord
from kinship.store.sqlbase import SQLBase
from kinship.store.sqlrows import (
    EFFECTIVE_ACTOR,
    FAMILIES_SQL,
    FUNCTION_COLUMNS,
    SAMPLE_COLUMNS,
    SAMPLE_FROM,
    function_features,
    sample_record,
    stored_string,
    string_posting,
    va_from_db,
)


class SQLReads(SQLBase):
    """Lookups, listings, string postings and meta values: the Store methods that only read."""

    # -- backend hook ---------------------------------------------------------------------

    def _postings_query(self, texts: list[str]) -> tuple[str, Sequence[Any]]:
        """string_postings' query for ``texts`` (at most MAX_TEXTS_PER_QUERY) and its params:
        ``POSTING_COLUMNS`` rows, ordered by sample."""
        raise NotImplementedError

    # -- Store protocol -------------------------------------------------------------------

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
