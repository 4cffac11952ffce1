"""The report renders (en and ja) and loads in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import skip_or_fail
from kinship.api import report as build_report
from kinship.api import write_report
from kinship.report.build import ReportOptions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_report_renders(bins: dict[str, Path], shared_dir: Path | None, tmp_path: Path,
                        lang: str) -> None:
    rules = shared_dir / "data/capa-rules" if shared_dir is not None else None
    opts = ReportOptions(capa_rules=rules if rules and rules.is_dir() else None,
                         actor="APT38", lang=lang, use_store=False)
    report = build_report([bins["netsh_x64.exe"]], opts)
    files = write_report(report, tmp_path / "out")
    html = files["html"].read_text(encoding="utf-8")
    md = files["md"].read_text(encoding="utf-8")
    assert "Lazarus Group" in html and "Lazarus Group" in md
    # kinship's own rules run with or without the capa rule set (issue #9 section 5)
    assert "T1562.004" in html and "T1562.004" in md
    heading = "戦術インテリジェンスレポート" if lang == "ja" else "Tactical intelligence report"
    assert heading in html
    for k in ("stix", "misp", "navigator", "csv", "json"):
        assert files[k].stat().st_size > 0
    if CHROMIUM is None:
        skip_or_fail("chromium is not installed")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         files["html"].resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'id="techniques"' in proc.stdout and heading in proc.stdout


def test_report_reuses_evidence_views_and_round_trips(bins: dict[str, Path],
                                                      tmp_path: Path) -> None:
    import json

    from kinship.api import Kinship
    from kinship.pipeline import Labels
    from kinship.report.model import IntelReport

    with Kinship(tmp_path / "k.db") as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh", actor="APT38",
                                              source="Vendor 2016"))
        k.add([bins["other_x86.exe"]], Labels(family="other"))
        report = k.report([bins["netsh_x64.exe"]],
                          ReportOptions(capa_rules=None, lang="en"))
    s = report.samples[0]
    assert s.verdict is not None and s.verdict["family"] == "netsh"
    # coverage picture, top pair side by side (reference from the kept file), strings + dumps
    assert s.coverage and s.coverage[0]["family"] == "netsh" and s.coverage[0]["covered"] > 0
    assert s.listing is not None and s.listing["reference"]["family"] == "netsh"
    assert s.listing["reference"]["source"] == "Vendor 2016" and s.listing["pair"]["rows"]
    texts = [x["text"] for x in s.shared_strings]
    assert any("netsh firewall" in t for t in texts)
    occ = [o for x in s.shared_strings for o in x["occurrences"]]
    assert all(o["hexdump"] for o in occ) and any(o["from_file"] for o in occ[1:])

    d = json.loads(json.dumps(report.to_dict(), default=str))
    again = IntelReport.from_dict(d)
    assert json.loads(json.dumps(again.to_dict(), default=str)) == d

    files = write_report(report, tmp_path / "out")
    html = files["html"].read_text(encoding="utf-8")
    md = files["md"].read_text(encoding="utf-8")
    assert "netsh firewall add portopening TCP" in md and " = " in md
    assert "<script" not in html
    if CHROMIUM is None:
        skip_or_fail("chromium is not installed")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         files["html"].resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for marker in ('class="code-evidence"', 'class="side-by-side"', 'class="listing"',
                   'class="hexdump"', 'class="hl"', 'class="coverage"', "Vendor 2016"):
        assert marker in dom, marker
