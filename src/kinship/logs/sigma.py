"""Sigma rules over flat events, the Zircolite way: the events in an in-memory SQLite table
(one column per field, case-insensitive like Sigma), each rule converted once by pySigma's
sqlite backend to a query, run over the events of its log source only.

Rules come from a folder the analyst gives (``--sigma-rules DIR`` or ``$KINSHIP_SIGMA_RULES``);
kinship bundles none. A rule that does not parse or convert is counted and named with its
reason (:class:`~kinship.logs.model.RuleFailure`), never dropped silently.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from kinship.exceptions import StoreError
from kinship.logs.cache import RuleCache
from kinship.logs.evtx_read import FlatEvent
from kinship.logs.model import RuleFailure, RuleRef
from kinship.logs.sources import Source, sources

logger = logging.getLogger(__name__)

TABLE = "logs"  # the sqlite backend's table name
ROW = "_row"  # the event's index in the run, a column of the table
_TECHNIQUE_TAG = re.compile(r"^t\d{4}(\.\d{3})?$", re.IGNORECASE)
# A rule file larger than this is not a rule (the biggest SigmaHQ rule is a few KiB).
MAX_RULE_FILE_SIZE = 1 << 20
# Fields a rule names that no event has, added as empty columns one by one (a rule names tens).
MAX_MISSING_COLUMNS = 256
_MISSING = re.compile(r"no such column: (.+)$")


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """One parsed rule: where it came from, where it applies, and its query (``sql``) or why
    it does not convert (``error``); both None when its log source is not mapped."""

    ref: RuleRef
    techniques: tuple[str, ...]
    sources: tuple[Source, ...] | None  # None: log source not mapped
    sql: str | None = None
    error: str | None = None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _techniques(rule: Any) -> tuple[str, ...]:
    return tuple(str(t.name).upper() for t in rule.tags
                 if t.namespace == "attack" and _TECHNIQUE_TAG.match(str(t.name)))


def _level(rule: Any) -> str | None:
    level = getattr(rule, "level", None)
    return str(level.name).lower() if level is not None else None


def _conversion_error(e: Exception) -> str:
    if isinstance(e, (sqlite3.Error, ValueError)):
        return f"{type(e).__name__}: {e}"
    # pySigma raises its own errors on conversions it lacks
    return f"does not convert: {type(e).__name__}: {e}"


def _parse_file(data: bytes) -> list[dict[str, Any]]:
    """The cache entry of one rule file's bytes: one item per rule, ``{"failure": reason}``
    for a file (or rule) that does not parse or cannot run. Raises what parsing raises."""
    from sigma.collection import SigmaCollection
    from sigma.rule import SigmaRule

    coll = SigmaCollection.from_yaml(data.decode("utf-8"), collect_errors=True)
    errors = list(coll.errors) + [e for r in coll.rules for e in r.errors]
    if errors:
        raise ValueError("; ".join(str(e) for e in errors))
    if not coll.rules:
        raise ValueError("no rule in the file")
    items: list[dict[str, Any]] = []
    for rule in coll.rules:
        if not isinstance(rule, SigmaRule):  # a correlation rule: over rules, not events
            items.append({"failure": "correlation rules are not run yet"})
            continue
        ls = rule.logsource
        item: dict[str, Any] = {
            "id": _text(rule.id), "title": str(rule.title), "level": _level(rule),
            "author": _text(rule.author), "techniques": list(_techniques(rule)),
            "product": ls.product, "service": ls.service, "category": ls.category,
            "sql": None, "error": None}
        if sources(ls.product, ls.service, ls.category) is not None:
            try:
                item["sql"] = to_sql(rule)
            except Exception as e:  # named on the rule, never raised
                item["error"] = _conversion_error(e)
        items.append(item)
    return items


def _parse_or_failure(data: bytes) -> list[dict[str, Any]]:
    """:func:`_parse_file`, or the one-line reason the file does not parse."""
    from sigma.exceptions import SigmaError

    try:
        return _parse_file(data)
    except (SigmaError, yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        # one line (YAML errors quote the rule over several)
        return [{"failure": " ".join(str(e).split()) or type(e).__name__}]


def _loaded(item: dict[str, Any], path: str) -> LoadedRule:
    """A cache item as a rule; KeyError/TypeError/ValueError on an item of the wrong shape."""
    def opt(key: str) -> str | None:
        value = item[key]
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{key}: {value!r}")
        return value

    techniques = item["techniques"]
    if not isinstance(techniques, list) or not all(isinstance(t, str) for t in techniques):
        raise TypeError("techniques")
    title = item["title"]
    if not isinstance(title, str):
        raise TypeError("title")
    ref = RuleRef(opt("id"), title, opt("level"), opt("author"), path)
    return LoadedRule(ref, tuple(techniques),
                      sources(opt("product"), opt("service"), opt("category")),
                      opt("sql"), opt("error"))


def _from_items(items: Any, path: str) -> tuple[list[LoadedRule], list[RuleFailure]]:
    if not isinstance(items, list) or not items:
        raise TypeError("not a list of rules")
    loaded: list[LoadedRule] = []
    failed: list[RuleFailure] = []
    for item in items:
        if not isinstance(item, dict):
            raise TypeError("not a rule")
        if "failure" in item:
            if not isinstance(item["failure"], str):
                raise TypeError("failure")
            failed.append(RuleFailure(path, item["failure"]))
        else:
            loaded.append(_loaded(item, path))
    return loaded, failed


def load_rules(folder: Path, cache: RuleCache | bool | None = True
               ) -> tuple[list[LoadedRule], list[RuleFailure]]:
    """Every ``*.yml``/``*.yaml`` rule under ``folder`` (parsed and converted to SQL), and the
    files that did not parse. ``cache``: True (default) for the :class:`RuleCache` of the
    kinship data home, a :class:`RuleCache`, or False/None to parse every file again."""
    store = cache if isinstance(cache, RuleCache) else None
    if cache is True:
        try:
            store = RuleCache.default()
        except StoreError as e:  # no data home: every file parsed, nothing cached
            logger.warning("sigma cache off: %s", e)
            store = None
    loaded: list[LoadedRule] = []
    failed: list[RuleFailure] = []
    paths = sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    for path in paths:
        try:
            if path.stat().st_size > MAX_RULE_FILE_SIZE:
                raise ValueError(f"over {MAX_RULE_FILE_SIZE} bytes (MAX_RULE_FILE_SIZE)")
            data = path.read_bytes()
        except (ValueError, OSError) as e:
            failed.append(RuleFailure(str(path), " ".join(str(e).split()) or type(e).__name__))
            continue
        key = store.key(data) if store is not None else ""
        if store is not None:
            cached = store.get(key)
            if cached is not None:
                try:
                    rules, fails = _from_items(cached, str(path))
                except (KeyError, TypeError, ValueError):
                    logger.info("sigma cache: bad entry %s, rebuilt", key)
                else:
                    loaded += rules
                    failed += fails
                    continue
        items = _parse_or_failure(data)
        if store is not None:
            store.put(key, items)
        rules, fails = _from_items(items, str(path))
        loaded += rules
        failed += fails
    return loaded, failed


def to_sql(rule: Any) -> str:
    """The rule's query (``SELECT * FROM logs WHERE ...``); ValueError when it does not
    convert to exactly one."""
    from sigma.backends.sqlite.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    backend = sqliteBackend()  # type: ignore[no-untyped-call]  # pySigma backend: no hints
    queries = backend.convert(SigmaCollection([rule]))
    if len(queries) != 1:
        raise ValueError(f"converts to {len(queries)} queries, expected 1")
    return str(queries[0])


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None  # a pattern Python cannot read matches nothing


def _regexp(pattern: str | None, value: str | None) -> bool:
    """SQLite's ``value REGEXP pattern`` (Sigma's ``|re``, a search, case as written)."""
    if pattern is None or value is None:
        return False
    compiled = _pattern(pattern)
    return compiled is not None and compiled.search(value) is not None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def event_table(events: Sequence[FlatEvent]) -> sqlite3.Connection:
    """The events as table :data:`TABLE`: a column per field seen (TEXT, NOCASE: Sigma
    compares case-insensitively), plus :data:`ROW`, the event's index in ``events``."""
    # SQLite column names ignore case (ProcessID and ProcessId are one column, as for Sigma).
    columns: dict[str, str] = {}
    for e in events:
        for name in e.fields:
            columns.setdefault(name.lower(), name)
    keys = [k for k in columns if k != ROW]
    con = sqlite3.connect(":memory:")
    con.create_function("REGEXP", 2, _regexp, deterministic=True)
    cols = "".join(f", {_quote(columns[k])} TEXT COLLATE NOCASE" for k in keys)
    con.execute(f"CREATE TABLE {TABLE} ({ROW} INTEGER PRIMARY KEY{cols})")
    marks = ", ".join("?" * (len(keys) + 1))
    con.executemany(f"INSERT INTO {TABLE} VALUES ({marks})",
                    ((i, *map({k.lower(): v for k, v in e.fields.items()}.get, keys))
                     for i, e in enumerate(events)))
    con.execute(f'CREATE INDEX logs_source ON {TABLE} ("Channel", "EventID")')
    return con


def _source_filter(srcs: Iterable[Source]) -> tuple[str, list[str]]:
    parts: list[str] = []
    args: list[str] = []
    for s in srcs:
        if s.event_ids:
            parts.append(f'("Channel" = ? AND "EventID" IN ({", ".join("?" * len(s.event_ids))}))')
            args += [s.channel, *(str(i) for i in s.event_ids)]
        else:
            parts.append('"Channel" = ?')
            args.append(s.channel)
    return " OR ".join(parts), args


def run_rule(con: sqlite3.Connection, sql: str, srcs: Sequence[Source]) -> list[int]:
    """Rows (indexes into the events) of ``srcs`` that the rule's query matches."""
    where, args = _source_filter(srcs)
    for _ in range(MAX_MISSING_COLUMNS):
        try:
            rows = con.execute(f"SELECT {ROW} FROM ({sql}) WHERE {where} ORDER BY {ROW}",
                               args).fetchall()
            return [int(r[0]) for r in rows]
        except sqlite3.OperationalError as e:
            missing = _MISSING.match(str(e))
            if missing is None:
                raise
            # A field no event has: an empty column (NULL matches nothing, as in Zircolite),
            # so that the rest of an OR still matches.
            con.execute(f"ALTER TABLE {TABLE} ADD COLUMN {_quote(missing.group(1))} "
                        "TEXT COLLATE NOCASE")
    raise sqlite3.OperationalError(f"over {MAX_MISSING_COLUMNS} fields missing from the logs")
