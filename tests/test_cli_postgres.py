"""Every command that takes ``--db`` (or ``$KINSHIP_DB``) with a PostgreSQL URL, against a
store filled from the compiled fixtures: strings, compare --html, iocs, actor, rules keep/yara,
report. Needs ``$KINSHIP_TEST_PG_URL`` (skipped without it, failed under ``CI=true``; see
conftest.pg_url). The store's own behaviour is tested in test_store_postgres.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinship.cli import main
from kinship.store.paths import pg_data_dir

pytest.importorskip("psycopg")


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200", "KINSHIP_DB": "", **(env or {})}).invoke(
        main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture
def pg_store(pg_default_schema: str, bins: dict[str, Path], tmp_home: Path) -> str:
    """The default-schema store at ``$KINSHIP_TEST_PG_URL`` holding netsh (actor Lazarus
    Group) and other (x86 + x64 each); the URL."""
    url = pg_default_schema
    for fam, actor in (("netsh", "Lazarus Group"), ("other", None)):
        labels = ["--family", fam] + (["--actor", actor] if actor else [])
        code, out = run("add", bins[f"{fam}_x86.exe"], bins[f"{fam}_x64.exe"], *labels,
                        "--db", url, "--json")
        assert code == 0, out
        assert json.loads(out)["n_added"] == 2
    assert not (tmp_home / "kinship.db").exists()
    return url


def test_strings_and_compare_with_pg_store(pg_store: str, bins: dict[str, Path],
                                           tmp_path: Path, tmp_home: Path) -> None:
    files = [bins["netsh_x86.exe"], bins["netsh_v2_x64.exe"]]
    code, out = run("strings", *files, "--shared", "--json", "--db", pg_store)
    assert code == 0, out
    assert any("portopening" in s["text"] for s in json.loads(out)["strings"])
    html = tmp_path / "compare.html"
    code, out = run("compare", *files, "--html", html, "--json",
                    env={"KINSHIP_DB": pg_store})  # the URL from the environment
    assert code == 0, out
    assert json.loads(out)["pairs"] and html.read_text(encoding="utf-8").startswith("<!")
    assert not (tmp_home / "kinship.db").exists()


def test_intel_commands_with_pg_store(pg_store: str, bins: dict[str, Path],
                                      tmp_path: Path, tmp_home: Path) -> None:
    code, out = run("iocs", bins["netsh_x64.exe"], "--json", "--db", pg_store)
    assert code == 0, out
    labels = json.loads(out)["files"][0]["stored_labels"]
    assert labels["family"] == "netsh" and labels["actor"] == "Lazarus Group"

    code, out = run("actor", "Hidden Cobra", "--json", env={"KINSHIP_DB": pg_store})
    assert code == 0, out
    stored = json.loads(out)["stored_samples"]
    assert len(stored) == 2 and {s["family"] for s in stored} == {"netsh"}

    # add kept the files in the store's data folder; rules keep/yara use the same folder
    samples = pg_data_dir(pg_store) / "samples"
    assert len(list(samples.iterdir())) == 4
    code, out = run("rules", "keep", bins["netsh_v2_x64.exe"], "--json", "--db", pg_store)
    assert code == 0, out
    assert json.loads(out)["root"] == str(samples) and len(list(samples.iterdir())) == 5
    code, out = run("rules", "yara", "--family", "netsh", "--json", "--db", pg_store)
    assert code == 0, out
    assert json.loads(out)["validation"]["tpr"] == 1.0

    code, out = run("report", bins["netsh_v2_x64.exe"], "--out", tmp_path / "case", "--json",
                    "--db", pg_store)
    assert code == 0, out
    files = json.loads(out)["files"]
    report = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    assert '"netsh"' in json.dumps(report)  # the store's verdict
    assert not (tmp_home / "kinship.db").exists()
