"""Saved results re-rendered without the store or the sample: ``kinship render`` and
``kinship report --from`` (issue #11: every renderer takes a document)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kinship.cli import main


def _run(*args: object) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                    catch_exceptions=False)


@pytest.fixture(scope="module")
def saved(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """match/compare JSON documents from a small store; the store is removed afterwards."""
    d = tmp_path_factory.mktemp("saved")
    db = d / "k.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KINSHIP_HOME", str(d / "home"))
        assert _run("add", bins["netsh_x86.exe"], "--family", "netsh-backdoor", "--actor",
                    "Hidden Cobra", "--db", db).exit_code == 0
        assert _run("add", bins["other_x86.exe"], "--family", "other", "--db",
                    db).exit_code == 0
        m = _run("match", bins["netsh_x64.exe"], "--json", "--db", db)
        c = _run("compare", bins["netsh_x86.exe"], bins["netsh_x64.exe"], "--json", "--db", db)
    assert m.exit_code == 0 and c.exit_code == 0
    (d / "m.json").write_text(m.output, encoding="utf-8")
    (d / "c.json").write_text(c.output, encoding="utf-8")
    for p in d.glob("k.db*"):  # re-rendering must not need the store
        if p.is_file():
            p.unlink()
    return {"match": d / "m.json", "compare": d / "c.json"}


def test_render_match_terminal_html_and_json(saved: dict[str, Path], tmp_path: Path) -> None:
    doc = json.loads(saved["match"].read_text())
    r = _run("render", saved["match"])
    assert r.exit_code == 0, r.output
    assert "netsh-backdoor" in r.output and "Lazarus Group" in r.output
    page = tmp_path / "m.html"
    assert _run("render", saved["match"], "--html", page).exit_code == 0
    html = page.read_text()
    assert "netsh-backdoor" in html and doc["sample"]["sha256"] in html
    again = _run("render", saved["match"], "--json")
    assert json.loads(again.output) == doc  # the document round-trips


def test_render_compare(saved: dict[str, Path], tmp_path: Path) -> None:
    r = _run("render", saved["compare"])
    assert r.exit_code == 0 and "netsh_x64.exe" in r.output
    page = tmp_path / "c.html"
    assert _run("render", saved["compare"], "--html", page).exit_code == 0
    assert "netsh_x86.exe" in page.read_text()


def test_report_from_a_saved_match_and_from_its_intel_json(saved: dict[str, Path],
                                                           tmp_path: Path) -> None:
    out = tmp_path / "case"
    r = _run("report", "--from", saved["match"], "--out", out)
    assert r.exit_code == 0, r.output
    intel = json.loads((out / "intel.json").read_text())
    assert intel["samples"][0]["verdict"]["family"] == "netsh-backdoor"
    assert "netsh-backdoor" in (out / "report.md").read_text()
    ja = tmp_path / "case-ja"
    assert _run("report", "--from", out / "intel.json", "--out", ja,
                "--lang", "ja").exit_code == 0
    assert json.loads((ja / "intel.json").read_text())["lang"] == "ja"
    md = tmp_path / "again.md"
    assert _run("render", out / "intel.json", "--md", md).exit_code == 0
    assert "netsh-backdoor" in md.read_text()


def test_render_refuses_what_is_not_a_document(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    r = CliRunner().invoke(main, ["render", str(bad)])
    assert r.exit_code == 3 and "not a kinship document" in r.output
    bad.write_text("{")
    r = CliRunner().invoke(main, ["render", str(bad)])
    assert r.exit_code == 3 and "not JSON" in r.output
    r = CliRunner().invoke(main, ["report", "--from", str(bad), str(bad), "--out",
                                  str(tmp_path / "o")])
    assert r.exit_code == 2 and "not both" in r.output


def test_documents_carry_a_filled_meta_block(bins: dict[str, Path], tmp_path: Path) -> None:
    """add, match, compare and info results say which kinship, features and store made them."""
    from kinship.api import Kinship
    from kinship.pipeline import Labels, feature_params

    with Kinship(tmp_path / "k.db") as k:
        added = k.add([bins["netsh_x86.exe"]], Labels(family="netsh"))
        docs = {"add": added, "match": k.match(bins["netsh_x64.exe"]),
                "compare": k.compare(bins["netsh_x86.exe"], bins["netsh_x64.exe"]),
                "info": k.info(bins["netsh_x64.exe"])}
        store_id = k.store.store_id()
    for name, doc in docs.items():
        meta = doc.meta
        assert meta is not None, name
        assert meta.store_id == store_id and meta.feature_params == feature_params(), name
        assert meta.kinship_version and meta.query_time is not None, name
        assert doc.to_dict()["meta"]["store_id"] == store_id, name
    assert docs["match"].meta is not None and docs["match"].meta.store_generation >= 1
