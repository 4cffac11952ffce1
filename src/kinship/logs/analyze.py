"""``kinship logs``: files in, :class:`~kinship.logs.model.LogResult` out.

    paths ─> expand (folders, recursively) ─> read_evtx (limits, per-file errors) ─> events
    rules folder ─> load_rules (parsed and converted once: logs/cache.py) ─> rules whose log
                   source is in the events
    events ─> SQLite table ─> each query over its log source ─> detections ─> techniques
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from kinship.exceptions import InputError, UsageError
from kinship.logs.evtx_read import FlatEvent, read_evtx
from kinship.logs.model import (
    Detection,
    EventRef,
    LogFile,
    LogResult,
    RuleFailure,
    RuleStats,
    TechniqueSummary,
)
from kinship.logs.sigma import LoadedRule, event_table, load_rules, run_rule
from kinship.logs.sources import add_aliases

logger = logging.getLogger(__name__)

RULES_ENV = "KINSHIP_SIGMA_RULES"
LOG_SUFFIXES = (".evtx",)


def rules_folder(given: Path | None) -> Path | None:
    """``--sigma-rules DIR``, else ``$KINSHIP_SIGMA_RULES``, else None (no rules: events are
    read and counted, nothing is detected)."""
    if given is not None:
        return given
    env = os.environ.get(RULES_ENV, "").strip()
    if not env:
        return None
    if not Path(env).is_dir():
        raise UsageError(f"${RULES_ENV}={env!r} is not a folder")
    return Path(env)


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files given, and the .evtx files under folders given (sorted, recursively)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in LOG_SUFFIXES
                          and f.is_file())
        else:
            out.append(p)
    return out


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.now().astimezone().tzinfo)


def _in_window(e: FlatEvent, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    t = _parse_time(e.timestamp)
    if t is None:
        return False
    return (since is None or t >= since) and (until is None or t <= until)


def read_files(files: Sequence[Path], since: datetime | None = None,
               until: datetime | None = None) -> tuple[list[FlatEvent], list[LogFile]]:
    """Events of every file (in the time window), and one :class:`LogFile` per file."""
    events: list[FlatEvent] = []
    report: list[LogFile] = []
    for path in files:
        n = 0
        error = None
        try:
            for e in read_evtx(path):
                if _in_window(e, since, until):
                    add_aliases(e.fields)
                    events.append(e)
                    n += 1
        except InputError as e:
            error = e.reason
            logger.warning("%s: %s", path, e.reason)
        report.append(LogFile(str(path), n, error))
    return events, report


def _event_ref(e: FlatEvent) -> EventRef:
    return EventRef(e.file, e.record_id, e.timestamp, e.channel, e.event_id,
                    e.fields.get("Computer"), dict(e.fields))


def detect(events: Sequence[FlatEvent], rules: Sequence[LoadedRule]
           ) -> tuple[list[Detection], int, list[RuleFailure]]:
    """Detections of ``rules`` over ``events``; the number of rules run and those that did not
    convert or run. A rule runs only when a channel of its log source is in ``events``."""
    channels = {(e.channel or "").lower() for e in events}
    todo = [r for r in rules if r.sources is not None
            and any(s.channel.lower() in channels for s in r.sources)]
    if not todo:
        return [], 0, []
    con = event_table(events)
    found: list[Detection] = []
    failed: list[RuleFailure] = []
    evaluated = 0
    for r in todo:
        assert r.sources is not None
        if r.sql is None:
            failed.append(RuleFailure(r.ref.path, r.error or "does not convert"))
            continue
        try:
            rows = run_rule(con, r.sql, r.sources)
        except (sqlite3.Error, ValueError) as e:
            failed.append(RuleFailure(r.ref.path, f"{type(e).__name__}: {e}"))
            continue
        evaluated += 1
        found += [Detection(r.ref, r.techniques, _event_ref(events[i])) for i in rows]
    con.close()
    found.sort(key=lambda d: (d.event.timestamp or "", d.event.file, d.event.record_id or 0))
    return found, evaluated, failed


def summarise(detections: Sequence[Detection]) -> list[TechniqueSummary]:
    """One row per technique: ATT&CK name and tactics (offline data), count, first/last seen."""
    from kinship.intel.attack import technique

    seen: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for d in detections:
        for t in d.techniques:
            counts[t] = counts.get(t, 0) + 1
            if d.event.timestamp:
                seen.setdefault(t, []).append(d.event.timestamp)
    out = []
    for tid in sorted(counts):
        info = technique(tid)
        times = sorted(seen.get(tid, []))
        out.append(TechniqueSummary(tid, info.name, info.tactics, counts[tid],
                                    times[0] if times else None, times[-1] if times else None))
    return out


def analyze_logs(paths: Sequence[Path], rules_dir: Path | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> LogResult:
    """Read the logs under ``paths`` and run the Sigma rules of ``rules_dir`` over them."""
    events, files = read_files(expand(paths), since, until)
    loaded: list[LoadedRule] = []
    failed: list[RuleFailure] = []
    if rules_dir is not None:
        if not rules_dir.is_dir():
            raise UsageError(f"{rules_dir}: not a folder of Sigma rules")
        loaded, failed = load_rules(rules_dir)
    detections, evaluated, run_failed = detect(events, loaded)
    stats = RuleStats(loaded=len(loaded), evaluated=evaluated,
                      unsupported_logsource=sum(r.sources is None for r in loaded),
                      failed=tuple(failed + run_failed))
    return LogResult(tuple(files), tuple(detections), tuple(summarise(detections)), stats,
                     len(events))
