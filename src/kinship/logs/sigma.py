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
    """One parsed rule: pySigma's object, where it came from and where it applies."""

    ref: RuleRef
    techniques: tuple[str, ...]
    sources: tuple[Source, ...] | None  # None: log source not mapped
    rule: Any  # sigma.rule.SigmaRule


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _techniques(rule: Any) -> tuple[str, ...]:
    return tuple(str(t.name).upper() for t in rule.tags
                 if t.namespace == "attack" and _TECHNIQUE_TAG.match(str(t.name)))


def _level(rule: Any) -> str | None:
    level = getattr(rule, "level", None)
    return str(level.name).lower() if level is not None else None


def load_rules(folder: Path) -> tuple[list[LoadedRule], list[RuleFailure]]:
    """Every ``*.yml``/``*.yaml`` rule under ``folder``, and the files that did not parse."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    loaded: list[LoadedRule] = []
    failed: list[RuleFailure] = []
    paths = sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    for path in paths:
        try:
            if path.stat().st_size > MAX_RULE_FILE_SIZE:
                raise ValueError(f"over {MAX_RULE_FILE_SIZE} bytes (MAX_RULE_FILE_SIZE)")
            coll = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"),
                                             collect_errors=True)
            errors = list(coll.errors) + [e for r in coll.rules for e in r.errors]
            if errors:
                raise ValueError("; ".join(str(e) for e in errors))
            if not coll.rules:
                raise ValueError("no rule in the file")
        except (SigmaError, yaml.YAMLError, ValueError, OSError, UnicodeDecodeError) as e:
            # one line (YAML errors quote the rule over several)
            failed.append(RuleFailure(str(path), " ".join(str(e).split()) or type(e).__name__))
            continue
        for rule in coll.rules:
            if not isinstance(rule, SigmaRule):  # a correlation rule: over rules, not events
                failed.append(RuleFailure(str(path), "correlation rules are not run yet"))
                continue
            ls = rule.logsource
            ref = RuleRef(_text(rule.id), str(rule.title), _level(rule),
                          _text(rule.author), str(path))
            loaded.append(LoadedRule(ref, _techniques(rule),
                                     sources(ls.product, ls.service, ls.category), rule))
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
