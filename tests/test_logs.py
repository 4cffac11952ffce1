"""``kinship logs`` on real event logs (../shared/data/evtx-attack-samples, recorded during
attacks) with the SigmaHQ rules (../shared/data/sigma-rules): real detections with their
technique and record id, and bad input (0-byte, truncated, random-bytes .evtx; a malformed
rule) named in the output while the rest is still read and run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import kinship.logs.cache as cache_mod
import kinship.logs.sigma as sigma_mod
from kinship.cli import main
from kinship.logs.analyze import analyze_logs, detect
from kinship.logs.cache import RuleCache
from kinship.logs.evtx_read import FlatEvent, flatten
from kinship.logs.model import LogResult
from kinship.logs.sigma import load_rules
from kinship.logs.sources import add_aliases

CLEARED = "Defense Evasion/DE_suspicious_remote_eventlog_svc_access_5145.evtx"  # 1102 first
POWERSHELL = "Credential Access/Powershell_4104_MiniDumpWriteDump_Lsass.evtx"  # 4104 blocks
CLEARED_RULE = "builtin/security/win_security_audit_log_cleared.yml"
PS_RULE = "powershell/powershell_script/posh_ps_susp_getprocess_lsass.yml"


def _need(shared_dir: Path | None, sub: str) -> Path:
    """``../shared/data/<sub>``; skipped where absent, except under CI=true (fails)."""
    path = shared_dir / "data" / sub if shared_dir is not None else None
    if path is None or not path.exists():
        reason = f"../shared/data/{sub} is not here"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def _private_home(tmp_home: Path) -> None:
    """Every test gets its own data home: the rule cache never touches the user's."""


@pytest.fixture(scope="module")
def samples(shared_dir: Path | None) -> Path:
    return _need(shared_dir, "evtx-attack-samples")


@pytest.fixture(scope="module")
def windows_rules(shared_dir: Path | None) -> Path:
    return _need(shared_dir, "sigma-rules/rules/windows")


@pytest.fixture
def rules_dir(tmp_path: Path, windows_rules: Path) -> Path:
    """Two real SigmaHQ rules and one malformed rule file."""
    d = tmp_path / "rules"
    d.mkdir()
    for rel in (CLEARED_RULE, PS_RULE):
        shutil.copy(windows_rules / rel, d / Path(rel).name)
    (d / "broken.yml").write_text("title: broken\nlogsource: [not, a, map\ndetection: {}\n")
    return d


def _run(*args: object) -> tuple[int, dict[str, Any]]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["logs", *map(str, args), "--json"])
    return r.exit_code, json.loads(r.stdout)


def _tags(rule: Path) -> list[str]:
    tags = yaml.safe_load(rule.read_text())["tags"]
    return [t.split(".", 1)[1].upper() for t in tags
            if t.startswith("attack.t") and t[8:9].isdigit()]


def test_log_cleared_detected_with_technique_and_record(samples: Path, rules_dir: Path,
                                                        windows_rules: Path) -> None:
    code, doc = _run(samples / CLEARED, samples / POWERSHELL, "--sigma-rules", rules_dir)
    assert code == 0
    assert LogResult.from_dict(doc).to_dict() == doc  # a saved result reads back whole
    assert [f["error"] for f in doc["files"]] == [None, None]
    cleared = [d for d in doc["detections"] if d["rule"]["title"] == "Security Eventlog Cleared"]
    assert len(cleared) == 1
    d = cleared[0]
    assert d["techniques"] == _tags(windows_rules / CLEARED_RULE) and d["techniques"]
    assert d["rule"]["author"] and d["rule"]["level"] == "high"
    ev = d["event"]
    assert (ev["event_id"], ev["channel"], ev["record_id"]) == (1102, "Security", 772605)
    assert ev["computer"] == "01566s-win16-ir.threebeesco.com"
    assert ev["fields"]["SubjectUserName"] == "Administrator"
    assert ev["timestamp"].startswith("2020-09-23T16:49:41")
    ps = [d for d in doc["detections"] if d["rule"]["title"] == "PowerShell Get-Process LSASS "
          "in ScriptBlock"]
    assert ps and ps[0]["techniques"] == ["T1003.001"] and ps[0]["event"]["event_id"] == 4104
    lsass = {t["id"]: t for t in doc["techniques"]}["T1003.001"]
    assert lsass["name"] == "LSASS Memory" and "credential-access" in lsass["tactics"]
    assert lsass["count"] == len(ps) and lsass["first_seen"]
    failed = doc["rules"]["failed"]
    assert [Path(f["path"]).name for f in failed] == ["broken.yml"] and failed[0]["reason"]
    assert doc["rules"]["loaded"] == 2 and doc["rules"]["evaluated"] == 2


def test_bad_files_named_and_good_file_still_detected(tmp_path: Path, samples: Path,
                                                      rules_dir: Path) -> None:
    good = samples / CLEARED
    data = good.read_bytes()
    (tmp_path / "empty.evtx").write_bytes(b"")
    (tmp_path / "truncated.evtx").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.evtx").write_bytes(os.urandom(8192))
    shutil.copy(good, tmp_path / "good.evtx")
    code, doc = _run(tmp_path, "--sigma-rules", rules_dir)
    assert code == 7
    errors = {Path(f["path"]).name: f["error"] for f in doc["files"]}
    assert set(errors) == {"empty.evtx", "truncated.evtx", "random.evtx", "good.evtx"}
    assert errors["good.evtx"] is None
    assert "0 bytes" in errors["empty.evtx"]
    assert "truncated" in errors["truncated.evtx"]
    assert "not an EVTX" in errors["random.evtx"]
    assert [d["event"]["event_id"] for d in doc["detections"]] == [1102]


def test_time_window_and_no_rules(samples: Path) -> None:
    inside = analyze_logs([samples / CLEARED], since=None, until=None)
    assert inside.events == 8 and not inside.detections and inside.rules.loaded == 0
    assert LogResult.from_json(json.dumps(inside.to_dict())) == inside
    code, doc = _run(samples / CLEARED, "--since", "2020-09-23T16:50:00Z")
    assert code == 0 and doc["files"][0]["events"] == 7  # the 1102 record is before
    code, doc = _run(samples / CLEARED, "--until", "2019-01-01")
    assert doc["files"][0]["events"] == 0


def test_full_rule_set_on_the_attack_samples(samples: Path, windows_rules: Path) -> None:
    """Every .evtx of the data set with every SigmaHQ Windows rule: all files read, rules that
    cannot run named, and the known detections there."""
    r = analyze_logs([samples], windows_rules)
    assert r.files and not r.failed_files
    assert r.rules.loaded > 2000 and r.rules.evaluated > 1000
    assert all(f.reason for f in r.rules.failed)
    titles = {d.rule.title for d in r.detections}
    assert {"Security Eventlog Cleared", "PowerShell Get-Process LSASS in ScriptBlock"} <= titles
    channels = {d.event.channel for d in r.detections}
    assert {"Security", "Microsoft-Windows-Sysmon/Operational"} <= channels


def test_security_4688_reaches_process_creation_rules(windows_rules: Path,
                                                      tmp_path: Path) -> None:
    """A Security 4688 event (no real one in the data set has a command line) matches a
    process_creation rule through the NewProcessName -> Image mapping."""
    shutil.copy(windows_rules / "process_creation/proc_creation_win_susp_eventlog_clear.yml",
                tmp_path)
    rules, failed = load_rules(tmp_path)
    e = FlatEvent("x.evtx", 7, "2020-01-01T00:00:00Z", {
        "Channel": "Security", "EventID": "4688", "Computer": "h",
        "NewProcessName": "C:\\Windows\\System32\\WEVTUTIL.exe",
        "CommandLine": "wevtutil.exe cl Security"})
    add_aliases(e.fields)
    detections, evaluated, run_failed = detect([e], rules)
    assert (evaluated, failed, run_failed) == (1, [], [])
    assert [d.event.record_id for d in detections] == [7]
    assert e.fields["Image"].endswith("WEVTUTIL.exe")


def test_flatten_names_fields_as_sigma_does() -> None:
    record = {"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Eventlog"}},
        "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7036},
        "TimeCreated": {"#attributes": {"SystemTime": "2020-01-01T00:00:00Z"}},
        "Channel": "System", "Computer": "host\x1b[31m"},
        "EventData": {"Data": [{"#attributes": {"Name": "x"}, "#text": "1"}],
                      "param1": "svc", "Binary": None}}}
    f = flatten(record)
    assert f["Provider_Name"] == "Microsoft-Windows-Eventlog" and f["EventID"] == "7036"
    assert f["EventID_Qualifiers"] == "16384" and f["param1"] == "svc"
    assert f["TimeCreated_SystemTime"] == "2020-01-01T00:00:00Z"
    assert "Binary" not in f


def test_terminal_view_is_inert(samples: Path, rules_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.evtx").write_bytes(b"")
    r = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["logs", str(samples / CLEARED), str(tmp_path / "empty.evtx"),
               "--sigma-rules", str(rules_dir)])
    assert r.exit_code == 7
    assert "Security Eventlog Cleared" in r.stdout and "T1685.005" in r.stdout
    assert "01566s-win16-ir.threebeesco.com" in r.stdout and "broken.yml" in r.stdout
    assert "\x1b" not in r.stdout


@pytest.fixture
def counted_conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the pySigma conversion."""
    calls: list[int] = []
    real = sigma_mod.to_sql

    def counting(rule: Any) -> str:
        calls.append(1)
        return real(rule)

    monkeypatch.setattr(sigma_mod, "to_sql", counting)
    return calls


def test_rule_cache_second_run_converts_nothing(samples: Path, rules_dir: Path, tmp_home: Path,
                                                counted_conversions: list[int]) -> None:
    files = [samples / CLEARED, samples / POWERSHELL]
    first = analyze_logs(files, rules_dir)
    assert len(counted_conversions) == 2 and first.detections
    folder = tmp_home / "cache" / "sigma"
    assert folder.stat().st_mode & 0o777 == 0o700
    entries = sorted(folder.glob("*.json"))
    assert len(entries) == 3  # the broken file's failure is cached too
    assert all(e.stat().st_mode & 0o777 == 0o600 for e in entries)
    second = analyze_logs(files, rules_dir)
    assert len(counted_conversions) == 2  # all from the cache
    assert json.dumps(second.to_dict()) == json.dumps(first.to_dict())
    # the same rules elsewhere: same entries, paths of the new place
    moved = shutil.copytree(rules_dir, tmp_home / "moved")
    third = analyze_logs(files, moved)
    assert len(counted_conversions) == 2
    assert {Path(d.rule.path).parent for d in third.detections} == {moved}


def test_rule_cache_corrupt_entry_rebuilt(samples: Path, rules_dir: Path, tmp_home: Path,
                                          counted_conversions: list[int]) -> None:
    files = [samples / CLEARED, samples / POWERSHELL]
    first = analyze_logs(files, rules_dir)
    entries = sorted((tmp_home / "cache" / "sigma").glob("*.json"))
    bad = {entries[0]: b"\x00not json{", entries[1]: b'{"key": "other", "value": []}',
           entries[2]: json.dumps({"key": entries[2].stem, "value": [{"title": 3}]}).encode()}
    for path, data in bad.items():
        path.write_bytes(data)
    second = analyze_logs(files, rules_dir)
    assert second == first
    assert 2 < len(counted_conversions) <= 4  # the bad entries were converted again
    for path in entries:  # and rewritten
        assert json.loads(path.read_bytes())["key"] == path.stem
    counted_conversions.clear()
    assert analyze_logs(files, rules_dir) == first and not counted_conversions


def test_rule_cache_off_and_key_depends_on_versions(rules_dir: Path, tmp_home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rules, failed = load_rules(rules_dir, cache=False)
    assert len(rules) == 2 and len(failed) == 1 and all(r.sql for r in rules)
    assert not (tmp_home / "cache").exists()
    data = (rules_dir / "broken.yml").read_bytes()
    key = RuleCache(tmp_home).key(data)
    monkeypatch.setattr(cache_mod, "MAPPING_VERSION", 999)
    assert RuleCache(tmp_home).key(data) != key


def test_no_rules_is_said_not_silent(samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a rule folder, "no detections" must not read as "the logs are clean"."""
    monkeypatch.delenv("KINSHIP_SIGMA_RULES", raising=False)
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["logs", str(samples / CLEARED)])
    assert r.exit_code == 0
    assert "no Sigma rules given" in r.stderr and "nothing is detected" in r.stderr
