"""IOC CSV: one row per IOC and source (type, value, defanged, sample, offset, va, function)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kinship.report.model import IntelReport

COLUMNS = ("type", "value", "defanged", "sample_sha256", "source_kind", "file_offset", "va",
           "function_va", "context")


def _hex(v: int | None) -> str:
    return f"0x{v:x}" if v is not None else ""


def _rows(report: IntelReport) -> list[tuple[str, ...]]:
    return [(ioc.type, ioc.value, ioc.defanged, src.sample, src.kind, _hex(src.offset),
             _hex(src.va), _hex(src.function_va), src.context or "")
            for ioc in report.iocs for src in ioc.sources or []]


def to_csv(report: IntelReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(_rows(report))
    return buf.getvalue()


def to_records(report: IntelReport) -> list[dict[str, str]]:
    """The CSV rows as a JSON-ready list of objects keyed by :data:`COLUMNS`."""
    return [dict(zip(COLUMNS, row, strict=True)) for row in _rows(report)]


def write_csv(report: IntelReport, path: Path) -> None:
    path.write_text(to_csv(report), encoding="utf-8")
