"""The SQL text and row formats both SQL stores (:mod:`kinship.store.sqlite`,
:mod:`kinship.store.postgres`) share: the column lists and fixed queries, the value
encodings, and the decoding of result rows into kinship's records.

Both stores have the same tables and value types (read :mod:`kinship.store.sqlite`'s docstring
for the encodings). The queries themselves run in :class:`kinship.store.sqlcommon.SQLStore`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from kinship.exceptions import UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import SampleSummary, StoredString, StringPosting
from kinship.store.model import SampleRecord

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

