"""The report renders (en and ja) and loads in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kinship.report.build import ReportOptions, build_report, write_report

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
    if rules is not None and rules.is_dir():
        assert "T1562.004" in html and "T1562.004" in md
    heading = "戦術インテリジェンスレポート" if lang == "ja" else "Tactical intelligence report"
    assert heading in html
    for k in ("stix", "misp", "navigator", "csv", "json"):
        assert files[k].stat().st_size > 0
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         files["html"].resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'id="techniques"' in proc.stdout and heading in proc.stdout
