"""A newcomer's first hour (issue #9): missing files, first-seen dates, actor aliases, the
family argument of the rule commands, and ``db list`` on an 80-column terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from kinship.api import Kinship
from kinship.cli import main
from kinship.exceptions import EXIT_CODES
from kinship.render.terminal import render_samples


def run(*args: str | Path) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ---- a missing input file: exit code 6 ("not found"), one line naming it -------------------
def _missing_commands(missing: Path, real: Path, out: Path) -> list[list[str | Path]]:
    return [
        ["add", missing], ["add", missing, "--family", "x"], ["add", "--manifest", missing],
        ["match", missing], ["compare", missing, real], ["compare", real, missing],
        ["info", missing], ["strings", real, missing], ["iocs", missing],
        ["iocs", "--text", missing], ["capabilities", missing],
        ["report", missing, "--out", out], ["export", "stix", missing],
        ["export", "misp", missing], ["export", "navigator", missing],
        ["export", "csv", missing], ["artifact", missing], ["artifact", real, missing],
        ["rules", "keep", missing],
    ]


def test_missing_input_file_is_not_found(tmp_home: Path, tmp_path: Path,
                                         bins: dict[str, Path]) -> None:
    missing = tmp_path / "no-such-sample.exe"
    for cmd in _missing_commands(missing, bins["netsh_x86.exe"], tmp_path / "case"):
        r = CliRunner().invoke(main, [str(a) for a in cmd])
        assert r.exit_code == EXIT_CODES["not_found"], (cmd, r.output)
        lines = _lines(r.output)
        assert len(lines) == 1 and str(missing) in lines[0], (cmd, r.output)
        assert "no such file" in lines[0]
        r = CliRunner().invoke(main, [*map(str, cmd), "--json"])
        assert r.exit_code == EXIT_CODES["not_found"], (cmd, r.output)
        doc = json.loads(r.output)
        assert doc["exit_code"] == EXIT_CODES["not_found"] and str(missing) in doc["message"]
    assert not (tmp_path / "case").exists()
    assert not (tmp_home / "kinship.db").exists() or run("db", "stats", "--json")[0] == 0


def test_batch_with_a_missing_file_adds_the_rest(tmp_home: Path, tmp_path: Path,
                                                 bins: dict[str, Path]) -> None:
    missing = tmp_path / "gone.exe"
    code, out = run("add", bins["netsh_x86.exe"], missing, "--json")
    assert code == EXIT_CODES["partial_batch"]
    doc = json.loads(out)
    assert doc["n_added"] == 1 and doc["failed"][0]["name"] == str(missing)


# ---- --first-seen ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2016-13", "2016-02-30", "2015-02-29", "16-03", "2016/03",
                                   "March 2016", "2016-3", "20160301", "1900", ""])
def test_bad_first_seen_is_a_usage_error(tmp_home: Path, bins: dict[str, Path],
                                         value: str) -> None:
    r = CliRunner().invoke(main, ["add", str(bins["netsh_x86.exe"]), "--first-seen", value])
    assert r.exit_code == EXIT_CODES["usage"], r.output
    lines = _lines(r.output)
    assert len(lines) == 1 and "--first-seen" in lines[0] and "YYYY-MM-DD" in lines[0]
    assert not (tmp_home / "kinship.db").exists()  # refused before anything was opened
    r = CliRunner().invoke(main, ["db", "label", "deadbeef", "--first-seen", value])
    assert r.exit_code == EXIT_CODES["usage"] and len(_lines(r.output)) == 1


def test_good_first_seen_is_stored(tmp_home: Path, tmp_path: Path, bins: dict[str, Path]) -> None:
    code, out = run("add", bins["netsh_x86.exe"], "--first-seen", "2016-02-29", "--json")
    assert code == 0, out
    sha = json.loads(out)["added"][0]["sha256"]
    for value in ("2016", "2016-03", "2019-12-31"):
        code, out = run("db", "label", sha[:12], "--first-seen", value, "--json")
        assert code == 0 and json.loads(out)["first_seen"] == value
    manifest = tmp_path / "refs.csv"
    manifest.write_text(f"path,family,first_seen\n{bins['netsh_x64.exe']},netshdoor,2019-02-30\n")
    r = CliRunner().invoke(main, ["add", "--manifest", str(manifest)])
    assert r.exit_code == EXIT_CODES["bad_input"]
    assert "row 1" in r.output and "2019-02-30" in r.output


# ---- actor aliases --------------------------------------------------------------------------
def test_actor_aliases_are_stored_canonical_and_found(tmp_home: Path, tmp_path: Path,
                                                      bins: dict[str, Path]) -> None:
    code, out = run("add", bins["netsh_x86.exe"], "--family", "netshdoor", "--actor",
                    "Hidden Cobra", "--json")
    assert code == 0, out
    code, out = run("add", bins["other_x86.exe"], "--family", "textstat", "--actor",
                    "fancy bear", "--json")
    assert code == 0, out
    manifest = tmp_path / "refs.jsonl"
    manifest.write_text(
        json.dumps({"path": str(bins["netsh_x64.exe"]), "family": "netshdoor",
                    "actor": "ZINC"}) + "\n"
        + json.dumps({"path": str(bins["other_elf64"]), "family": "wc",
                      "actor": "Example Actor"}) + "\n")
    code, out = run("add", "--manifest", manifest, "--json")
    assert code == 0, out
    code, out = run("db", "list", "--json")
    actors = {r["name"]: r["actor"] for r in json.loads(out)["samples"]}
    assert actors == {"netsh_x86.exe": "Lazarus Group", "other_x86.exe": "APT28",
                      "netsh_x64.exe": "Lazarus Group", "other_elf64": "Example Actor"}

    # a sample stored under an alias before aliases were resolved
    with Kinship() as k:
        old = k.add([bins["other_x64.exe"]]).added[0].sha256
        k.store.update_labels(old, actor="APT38")

    for query in ("Hidden Cobra", "Lazarus Group", "G0032", "apt38"):
        code, out = run("db", "list", "--actor", query, "--json")
        assert code == 0
        names = sorted(r["name"] for r in json.loads(out)["samples"])
        assert names == ["netsh_x64.exe", "netsh_x86.exe", "other_x64.exe"], query
    code, out = run("db", "list", "--actor", "Sofacy", "--family", "textstat", "--json")
    assert [r["name"] for r in json.loads(out)["samples"]] == ["other_x86.exe"]
    code, out = run("db", "list", "--actor", "Example Actor", "--json")
    assert [r["name"] for r in json.loads(out)["samples"]] == ["other_elf64"]
    code, out = run("db", "list", "--actor", "Example", "--json")  # no substring matches
    assert json.loads(out)["samples"] == []

    code, out = run("actor", "ZINC", "--json")
    stored = json.loads(out)["stored_samples"]
    assert sorted(s["name"] for s in stored) == ["netsh_x64.exe", "netsh_x86.exe",
                                                 "other_x64.exe"]
    code, out = run("db", "label", old[:12], "--actor", "Hidden Cobra", "--json")
    assert json.loads(out)["actor"] == "Lazarus Group"
    code, out = run("db", "label", old[:12], "--actor", "Some New Crew", "--json")
    assert json.loads(out)["actor"] == "Some New Crew"
    code, out = run("db", "label", old[:12], "--actor", "fancy bear")  # the user is told
    assert code == 0 and "'fancy bear' is stored as 'APT28'" in out


# ---- rules yara / rules sigma: FAMILY or --family -------------------------------------------
def test_rule_commands_take_the_family_either_way(tmp_home: Path,
                                                  bins: dict[str, Path]) -> None:
    code, out = run("add", bins["netsh_x86.exe"], bins["netsh_x64.exe"], "--family", "netsh")
    assert code == 0, out
    run("add", bins["other_x86.exe"], bins["other_x64.exe"], "--family", "other")
    for kind in ("yara", "sigma"):
        a = run("rules", kind, "netsh", "--json")
        b = run("rules", kind, "--family", "netsh", "--json")
        assert a[0] == b[0] and a[0] in (0, EXIT_CODES["not_found"]), a
        doc_a, doc_b = json.loads(a[1]), json.loads(b[1])
        assert doc_a == doc_b  # the same command, whichever way the family was given
        if a[0] == 0:
            assert doc_a["family"] == "netsh"
        code, out = run("rules", kind, "--family", "nosuchfamily")
        assert code == EXIT_CODES["not_found"] and "nosuchfamily" in out
        code, out = run("rules", kind, "nosuchfamily")
        assert code == EXIT_CODES["not_found"] and "nosuchfamily" in out
        code, out = run("rules", kind, "netsh", "--family", "other")
        assert code == EXIT_CODES["usage"] and len(_lines(out)) == 1
        code, out = run("rules", kind)
        assert code == EXIT_CODES["usage"] and "--family" in out
        code, out = run("rules", kind, "netsh", "--family", "netsh", "--json")
        assert code == a[0]


# ---- db list at 80 columns ------------------------------------------------------------------
def _store_for_listing(bins: dict[str, Path]) -> None:
    long_name = "x" * 70 + ".exe"
    code, out = run("add", bins["netsh_x86.exe"], "--family", "netshdoor", "--actor",
                    "Lazarus Group", "--source", "Vendor report 2016", "--first-seen", "2016-03",
                    "--version", "1.0")
    assert code == 0, out
    run("add", bins["other_x64.exe"], "--family", "[bold red]markup[/]", "--actor",
        "Some Very Long Actor Name Nobody Has Heard Of Before", "--source",
        "A rather long source description that cannot fit in eighty columns at all")
    with Kinship() as k:
        rec = k.add([bins["other_elf64"]], ).added[0]
        k.store.update_labels(rec.sha256, family="textstat")
    # a sample with a very long file name
    long_copy = bins["other_x86.exe"].parent.parent / long_name
    if not long_copy.exists():
        long_copy.write_bytes(bins["other_x86.exe"].read_bytes())
    run("add", long_copy, "--library")


def _check_80(text: str, shas: list[str]) -> None:
    lines = text.splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80, text
    for sha in shas:
        assert sha[:12] in text
    for label in ("netshdoor", "Lazarus Group", "Vendor report 2016", "2016-03",
                  "netsh_x86.exe", "[bold red]markup[/]", "textstat", "pe/x64", "lib"):
        assert label in text, (label, text)
    assert "…" in text  # the long name and source are cut, not wrapped over many lines
    assert len(lines) < 30


def test_db_list_fits_80_columns(tmp_home: Path, tmp_path: Path, bins: dict[str, Path]) -> None:
    _store_for_listing(bins)
    with Kinship() as k:
        samples = k.store.samples()
    assert len(samples) == 4
    shas = [s.sha256 for s in samples]
    con = Console(width=80, record=True, file=io.StringIO())
    render_samples(con, samples)
    _check_80(con.export_text(), shas)

    # the real command in an 80-column terminal
    env = {**os.environ, "COLUMNS": "80", "KINSHIP_HOME": str(tmp_home)}
    exe = [sys.executable, "-m", "kinship.cli"]
    r = subprocess.run([*exe, "db", "list"], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    _check_80(r.stdout, shas)

    # a wide terminal gets one column per label, nothing cut that fits
    con = Console(width=200, record=True, file=io.StringIO())
    render_samples(con, samples)
    wide = con.export_text()
    assert "version" in wide and "1.0" in wide and max(map(len, wide.splitlines())) <= 200
