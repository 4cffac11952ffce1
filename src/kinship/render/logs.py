"""Terminal view of a :class:`~kinship.logs.model.LogResult`: a timeline of detections (like
Hayabusa's), a summary per technique and per host, the files and the rules that failed.

Every value from a log or a rule file is hostile: printed through :func:`inert` (a rich Text,
never markup, control characters shown escaped).
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kinship.logs.model import LogResult
from kinship.render.safe import inert

LEVEL_STYLES = {"critical": "bold white on red", "high": "red", "medium": "yellow",
                "low": "green", "informational": "dim"}
# Rows of the timeline and of the failed rules in the terminal (--json has them all).
MAX_TIMELINE_ROWS = 500
MAX_FAILED_SHOWN = 20


def _timeline(console: Console, result: LogResult) -> None:
    table = Table(title="Timeline", title_justify="left")
    for name in ("time", "computer", "level", "rule", "event id", "techniques"):
        table.add_column(name, no_wrap=name in ("time", "level", "event id"))
    for d in result.detections[:MAX_TIMELINE_ROWS]:
        level = d.rule.level or ""
        when = (d.event.timestamp or "")[:19].replace("T", " ")
        table.add_row(inert(when), inert(d.event.computer),
                      inert(level, LEVEL_STYLES.get(level, "")), inert(d.rule.title),
                      inert(d.event.event_id), inert(", ".join(d.techniques)))
    console.print(table)
    if len(result.detections) > MAX_TIMELINE_ROWS:
        console.print(f"... {len(result.detections) - MAX_TIMELINE_ROWS} more (--json)")


def _techniques(console: Console, result: LogResult) -> None:
    table = Table(title="ATT&CK techniques", title_justify="left")
    for name in ("technique", "name", "tactics", "count", "first seen", "last seen"):
        table.add_column(name)
    for t in result.techniques:
        table.add_row(inert(t.id), inert(t.name), inert(", ".join(t.tactics)),
                      str(t.count), inert(t.first_seen), inert(t.last_seen))
    console.print(table)


def _hosts(console: Console, result: LogResult) -> None:
    per_host: dict[str, Counter[str]] = {}
    for d in result.detections:
        per_host.setdefault(d.event.computer or "?", Counter())[d.rule.level or "?"] += 1
    table = Table(title="Hosts", title_justify="left")
    table.add_column("computer")
    table.add_column("detections")
    table.add_column("by level")
    for host, levels in sorted(per_host.items(), key=lambda kv: -sum(kv[1].values())):
        by_level = Text()
        for level, n in levels.most_common():
            by_level.append_text(inert(f"{level} {n}  ", LEVEL_STYLES.get(level, "")))
        table.add_row(inert(host), str(sum(levels.values())), by_level)
    console.print(table)


def _footer(console: Console, result: LogResult) -> None:
    r = result.rules
    console.print(f"{len(result.files)} files, {result.events} events, "
                  f"{len(result.detections)} detections; rules: {r.loaded} loaded, "
                  f"{r.evaluated} run, {r.unsupported_logsource} with a log source not "
                  f"mapped, {len(r.failed)} failed")
    for f in result.failed_files:
        line = inert("error: ", "red")
        line.append_text(inert(f"{f.path}: {f.error}"))
        console.print(line)
    for failure in r.failed[:MAX_FAILED_SHOWN]:
        line = inert("rule failed: ", "yellow")
        line.append_text(inert(f"{failure.path}: {failure.reason}"))
        console.print(line)
    if len(r.failed) > MAX_FAILED_SHOWN:
        console.print(f"... {len(r.failed) - MAX_FAILED_SHOWN} more failed rules (--json)")


def render_logs(console: Console, result: LogResult) -> None:
    if result.detections:
        _timeline(console, result)
        _techniques(console, result)
        _hosts(console, result)
    else:
        console.print("no detections")
    _footer(console, result)
