"""The HTML evidence pages render in a real headless browser (Debian's chromium via Selenium)
with the verdict, the pair table, side-by-side listings, hex dumps and the coverage SVG."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kinship.api import Kinship, sample_input
from kinship.cli.evidence import write_compare_html, write_match_html
from kinship.evidence.references import reference_evidence
from kinship.pipeline import Labels

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("selenium not installed")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/chromium-driver not installed")
        pytest.skip("chromium/chromium-driver not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, page: Path) -> Any:
    from selenium.webdriver.common.by import By

    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return By


def test_compare_page(tmp_path: Path, bins: dict[str, Path], browser: Any) -> None:
    page = tmp_path / "compare.html"
    with Kinship(tmp_path / "k.db") as k:
        res = write_compare_html(k, bins["netsh_x86.exe"], bins["netsh_x64.exe"], page)
    html = page.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html and "https://" not in html
    by = _open(browser, page)
    assert "netsh_x86.exe" in browser.title
    assert browser.find_element(by.ID, "verdict").is_displayed()
    rows = browser.find_elements(by.CSS_SELECTOR, "table#pairs tr")
    assert len(rows) == len(res.pairs[:200]) + 1
    listings = browser.find_elements(by.CSS_SELECTOR, "section.side-by-side table.listing")
    assert listings and listings[0].is_displayed()
    # The 32-bit and 64-bit CreateProcess routine line up on their API calls.
    proc = [p for p in res.pairs if "CreateProcessA" in p.apis and p.rows]
    assert proc
    calls = [r for r in proc[0].rows if r.kind == "api"]
    assert any(r.left and r.right and "CreateProcessA" in (r.left.api or "") for r in calls)
    svg = browser.find_elements(by.CSS_SELECTOR, "#coverage svg.coverage rect")
    assert len(svg) > 10
    box = browser.find_element(by.CSS_SELECTOR, "#coverage svg.coverage").size
    assert box["width"] > 100 and box["height"] > 5
    dumps = browser.find_elements(by.CSS_SELECTOR, "#strings pre.hexdump")
    assert dumps
    text = browser.find_element(by.ID, "strings").text
    assert "netsh firewall add portopening TCP" in text
    hl = browser.find_elements(by.CSS_SELECTOR, "pre.hexdump span.hl")
    assert hl


def test_match_page(tmp_path: Path, bins: dict[str, Path], browser: Any) -> None:
    page = tmp_path / "match.html"
    with Kinship(tmp_path / "k.db") as k:
        k.add([bins["crt_x86.exe"], bins["crt_x64.exe"]], Labels(is_library=True))
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh", source="Vendor 2016"))
        k.add([bins["other_x86.exe"]], Labels(family="other"))
        res = write_match_html(k, bins["netsh_x64.exe"], page)
    assert res.verdict.family == "netsh"
    by = _open(browser, page)
    verdict = browser.find_element(by.ID, "verdict").text
    assert "netsh" in verdict and "confidence" in verdict
    fam_rows = browser.find_elements(by.CSS_SELECTOR, "table#families tr")
    assert len(fam_rows) == len(res.families) + 1
    assert browser.find_elements(by.CSS_SELECTOR, "table#pairs tr")
    assert len(browser.find_elements(by.CSS_SELECTOR, "#coverage svg.coverage")) == min(
        5, len(res.families))
    strings = browser.find_element(by.ID, "strings").text
    assert "Vendor 2016" in strings and "netsh firewall delete portopening TCP" in strings
    assert browser.find_elements(by.CSS_SELECTOR, "#strings pre.hexdump span.hl")
    # Reference side from the kept files: listings of the top pairs against netsh_x86.exe and
    # hex dumps of the reference file's real bytes (highlighted in every occurrence).
    listings = browser.find_elements(by.CSS_SELECTOR, "section.side-by-side table.listing")
    assert 1 <= len(listings) <= 10 and listings[0].is_displayed()
    first = browser.find_element(by.CSS_SELECTOR, "section.side-by-side").text
    assert "netsh_x86.exe" in first and "Vendor 2016" in first
    sections = browser.find_elements(by.CSS_SELECTOR, "section.side-by-side")
    assert any("CreateProcessA" in s.text for s in sections)
    assert browser.find_element(by.ID, "evidence-time").is_displayed()
    html = page.read_text()
    assert "<script" not in html and "https://" not in html
    n_occ = sum(1 + len(s.references) for s in res.shared_strings)
    assert len(browser.find_elements(by.CSS_SELECTOR, "#strings pre.hexdump")) == n_occ


def test_match_evidence_reads_kept_reference_files(tmp_path: Path,
                                                   bins: dict[str, Path]) -> None:
    from kinship.pipeline import analyse

    with Kinship(tmp_path / "k.db") as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh", source="Vendor 2016"))
        q = analyse(sample_input(bins["netsh_x64.exe"]), keep=True)
        res = k.match_features(q.record, q.features, strings=q.strings)
        refs = k.reference_evidence(res, q)
        ref_data = bins["netsh_x86.exe"].read_bytes()
        assert refs.listings and not refs.missing_files
        assert all(rl.reference.family == "netsh" for rl in refs.listings)
        assert any(r.kind == "api" for rl in refs.listings for r in rl.pair.rows)
        # every dump holds the reference file's bytes, the string highlighted at its offset
        assert refs.dumps
        for (_sha, off), d in refs.dumps.items():
            assert d.highlight_start == off
            assert ref_data[d.start:d.start + len(d.data)] == d.data
        # without kept files: no listings, the references are named as missing
        none = reference_evidence(res, q, lambda _sha: None)
        assert not none.listings and none.missing_files
