"""An :class:`~kinship.report.model.IntelReport` written out: every export as text
(:func:`export_text`) and the report folder (:func:`write_report`).

The HTML/Markdown renderings come in as a callable (``render(report, "html" | "md")``), so
this layer reads the report document and never the report builder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from kinship.exceptions import UsageError
from kinship.export.csv_iocs import to_csv, write_csv
from kinship.export.misp import to_misp_event
from kinship.export.navigator import to_layer
from kinship.export.stix import to_bundle
from kinship.report.model import IntelReport

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("stix", "misp", "navigator", "csv")

# report, kind ("html" or "md") -> the rendered text
Renderer = Callable[[IntelReport, str], str]


def export_text(report: IntelReport, fmt: str) -> str:
    """One export of ``report`` as text: ``fmt`` is one of :data:`EXPORT_FORMATS` (STIX
    bundle, MISP event and Navigator layer are JSON; csv is the IOC CSV)."""
    if fmt == "stix":
        return str(to_bundle(report).serialize(pretty=True))
    if fmt == "misp":
        return str(to_misp_event(report).to_json(indent=2))
    if fmt == "navigator":
        return json.dumps(to_layer(report), indent=2)
    if fmt == "csv":
        return to_csv(report)
    raise UsageError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")


def write_report(report: IntelReport, out: Path, render: Renderer) -> dict[str, Path]:
    """report.html, report.md (``render``), intel.json, the exports and the rules into
    ``out``; returns what was written, by kind."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "intel.json", "stix": out / "stix-bundle.json",
        "misp": out / "misp-event.json", "navigator": out / "attack-navigator-layer.json",
        "csv": out / "iocs.csv",
    }
    files["json"].write_text(json.dumps(report.to_dict(), indent=2, default=str),
                             encoding="utf-8")
    for fmt in ("stix", "misp", "navigator"):
        files[fmt].write_text(export_text(report, fmt), encoding="utf-8")
    write_csv(report, files["csv"])
    for n, rule in enumerate(report.yara_rules):
        p = out / f"{rule['name']}.yar"
        p.write_text(rule["text"], encoding="utf-8")
        files[f"yara{n}"] = p
    if report.sigma_rules:
        files["sigma"] = out / "sigma-rules.yml"
        files["sigma"].write_text("---\n".join(r["text"] for r in report.sigma_rules),
                                  encoding="utf-8")
    files["html"] = out / "report.html"
    files["md"] = out / "report.md"
    files["html"].write_text(render(report, "html"), encoding="utf-8")
    files["md"].write_text(render(report, "md"), encoding="utf-8")
    logger.info("report written to %s in %.2f s", out, time.perf_counter() - t0)
    return files
