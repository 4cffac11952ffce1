"""The command line: --help examples, --json contracts, exit codes, $KINSHIP_HOME, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinship.cli import main
from kinship.exceptions import EXIT_CODES

COMMANDS = [["add"], ["match"], ["compare"], ["info"], ["db", "stats"], ["db", "list"],
            ["db", "label"], ["db", "remove"], ["strings"], ["actor"], ["capabilities"],
            ["iocs"], ["rules", "yara"], ["report"], ["export", "stix"], ["export", "misp"],
            ["export", "navigator"], ["export", "csv"]]


def run(*args: str | Path) -> tuple[int, str]:
    r = CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args],
                                                 catch_exceptions=False)
    return r.exit_code, r.output


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_help_has_examples_and_common_options(cmd: list[str]) -> None:
    code, out = run(*cmd, "--help")
    assert code == 0
    assert "Example" in out
    assert "--json" in out and "--db" in out


def test_add_match_info_stats_json(tmp_home: Path, bins: dict[str, Path]) -> None:
    code, out = run("add", bins["crt_x64.exe"], bins["crt_x86.exe"], "--library", "--json")
    assert code == 0, out
    assert json.loads(out)["n_added"] == 2
    code, out = run("add", bins["netsh_x86.exe"], "--family", "netshdoor", "--actor",
                    "Lazarus Group", "--source", "Vendor report 2016", "--first-seen", "2016-03",
                    "--json")
    assert code == 0, out
    added = json.loads(out)
    assert added["n_added"] == 1 and added["added"][0]["n_functions"] > 50
    # the store lives under $KINSHIP_HOME
    assert (tmp_home / "kinship.db").exists()

    code, out = run("match", bins["netsh_x64.exe"], "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert len(doc["sample"]["sha256"]) == 64
    assert doc["verdict"]["family"] == "netshdoor"
    assert doc["verdict"]["actor"] == "Lazarus Group"
    assert 0.0 <= doc["verdict"]["confidence"] <= 1.0
    assert doc["families"][0]["family"] == "netshdoor" and doc["families"][0]["score"] > 0

    code, out = run("info", bins["netsh_x64.exe"], "--json")
    assert code == 0
    info = json.loads(out)
    assert info["format"] == "pe" and info["arch"] == "x64"
    assert "CreateProcessA" in info["imports"]["kernel32.dll"]
    assert info["n_functions"] > 50 and len(info["md5"]) == 32
    assert info["similarity_hashes"]["tlsh"] and info["similarity_hashes"]["ssdeep"]
    assert {s["name"] for s in info["similarity_hashes"]["sections"]} >= {".text", ".rdata"}

    code, out = run("db", "stats", "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["samples"] == 3 and stats["families"] == 1 and stats["library_samples"] == 2

    code, out = run("db", "list", "--family", "netshdoor", "--json")
    rows = json.loads(out)["samples"]
    assert [r["source"] for r in rows] == ["Vendor report 2016"]
    code, out = run("db", "label", rows[0]["sha256"][:12], "--actor", "APT38", "--json")
    assert code == 0 and json.loads(out)["actor"] == "Lazarus Group"  # the galaxy's name
    code, out = run("db", "label", rows[0]["sha256"][:12], "--actor", "Example Crew", "--json")
    assert code == 0 and json.loads(out)["actor"] == "Example Crew"  # unknown: as given

    # adding the same file again is a duplicate, not a new sample
    code, out = run("add", bins["netsh_x86.exe"], "--json")
    assert code == 0 and json.loads(out)["n_duplicates"] == 1


def test_terminal_output(tmp_home: Path, bins: dict[str, Path]) -> None:
    run("add", bins["netsh_x86.exe"], "--family", "netshdoor")
    code, out = run("match", bins["netsh_x64.exe"])
    assert code == 0 and "verdict: netshdoor" in out
    code, out = run("compare", bins["netsh_x86.exe"], bins["netsh_x64.exe"], "--listings", "1")
    assert code == 0 and "run_command" in out and "CreateProcessA" in out


def test_compare_json_round_trips(tmp_home: Path, bins: dict[str, Path]) -> None:
    from kinship.evidence.compare import CompareResult

    code, out = run("compare", bins["netsh_x86.exe"], bins["netsh_x64.exe"], "--json",
                    "--max-pairs", "5")
    assert code == 0
    doc = json.loads(out)
    assert CompareResult.from_dict(doc).to_dict() == doc
    assert sum(1 for p in doc["pairs"] if p["rows"]) == 5


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", EXIT_CODES["bad_input"]), (b"truncated", EXIT_CODES["bad_input"]),
     (b"MZ" + b"\0" * 100, EXIT_CODES["unsupported_format"]),
     (b"just some text\n" * 20, EXIT_CODES["unsupported_format"])],
    ids=["empty", "truncated", "dos-stub", "text"],
)
def test_single_bad_file_exit_codes(tmp_home: Path, tmp_path: Path, bins: dict[str, Path],
                                    content: bytes, code: int) -> None:
    bad = tmp_path / "sample.bin"
    if content == b"truncated":
        content = bins["netsh_x64.exe"].read_bytes()[:400]
    bad.write_bytes(content)
    for cmd in ("match", "info"):
        r = CliRunner().invoke(main, [cmd, str(bad)])
        assert r.exit_code == code, r.output
        # one line naming the file and the reason
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(bad) in lines[0], r.output
    r = CliRunner().invoke(main, ["add", str(bad), "--json"])
    assert r.exit_code == code


def test_batch_with_bad_file_is_partial(tmp_home: Path, tmp_path: Path,
                                        bins: dict[str, Path]) -> None:
    folder = tmp_path / "batch" / "fam" / "2019-05"
    folder.mkdir(parents=True)
    shutil.copy(bins["other_elf64"], folder / "good")
    (folder / "bad.exe").write_bytes(bins["other_x64.exe"].read_bytes()[:500])
    code, out = run("add", tmp_path / "batch", "--json")
    assert code == EXIT_CODES["partial_batch"]
    doc = json.loads(out)
    assert doc["n_added"] == 1 and doc["n_failed"] == 1
    assert doc["added"][0]["family"] == "fam"  # label from the <family>/<date>/ layout
    code, out = run("db", "list", "--json")
    assert json.loads(out)["samples"][0]["first_seen"] == "2019-05"


def test_manifest_csv(tmp_home: Path, tmp_path: Path, bins: dict[str, Path]) -> None:
    m = tmp_path / "refs.csv"
    m.write_text("path,family,actor,source,first_seen\n"
                 f"{bins['netsh_x86.exe']},netshdoor,Lazarus Group,Vendor A,2016\n"
                 f"{bins['other_elf64']},textstat,,Vendor B,2018-02\n")
    code, out = run("add", "--manifest", m, "--json")
    assert code == 0, out
    code, out = run("db", "list", "--json")
    fams = {r["family"]: r for r in json.loads(out)["samples"]}
    assert fams["netshdoor"]["actor"] == "Lazarus Group"
    assert fams["textstat"]["first_seen"] == "2018-02"


def test_not_found_and_usage_codes(tmp_home: Path) -> None:
    r = CliRunner().invoke(main, ["db", "remove", "deadbeefdeadbeef"])
    assert r.exit_code == EXIT_CODES["not_found"]
    r = CliRunner().invoke(main, ["add"])
    assert r.exit_code == EXIT_CODES["usage"]


def test_console_script_runs(tmp_home: Path) -> None:
    exe = shutil.which("kinship")
    cmd = [exe] if exe else [sys.executable, "-m", "kinship.cli"]
    r = subprocess.run([*cmd, "db", "stats", "--json"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 0


def _memory_image(exe: Path) -> bytes:
    """The PE as the loader maps it: each section's bytes at its RVA (an unpacked dump)."""
    import pefile

    pe = pefile.PE(str(exe))
    image = bytearray(pe.OPTIONAL_HEADER.SizeOfImage)
    image[: pe.OPTIONAL_HEADER.SizeOfHeaders] = pe.__data__[: pe.OPTIONAL_HEADER.SizeOfHeaders]
    for s in pe.sections:
        raw = s.get_data()[: max(s.Misc_VirtualSize, 0) or len(s.get_data())]
        image[s.VirtualAddress : s.VirtualAddress + len(raw)] = raw
    pe.close()
    return bytes(image)


def test_zip_and_memory_dump_inputs(tmp_home: Path, tmp_path: Path,
                                    bins: dict[str, Path]) -> None:
    import pyzipper

    archive = tmp_path / "samples.zip"
    with pyzipper.AESZipFile(archive, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        zf.write(bins["netsh_x86.exe"], "2016/implant.exe")
    code, out = run("add", archive, "--family", "netshdoor", "--json")
    assert code == 0, out
    assert json.loads(out)["added"][0]["name"].endswith("implant.exe")

    dump = tmp_path / "implant_dump_0x00400000"
    dump.write_bytes(_memory_image(bins["netsh_x86.exe"]))
    code, out = run("match", dump, "--json", "--include-self")
    assert code == 0, out
    assert json.loads(out)["verdict"]["family"] == "netshdoor"
    plain = tmp_path / "implant.bin"
    plain.write_bytes(dump.read_bytes())
    code, out = run("info", plain, "--base", "0x400000", "--json")
    assert code == 0, out
    assert json.loads(out)["n_functions"] > 50


def test_huge_file_refused_without_reading(tmp_home: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge.exe"
    with huge.open("wb") as f:  # sparse: 500 MB on paper, nothing on disk
        f.write(b"MZ")
        f.truncate(500 * 1024 * 1024)
    r = CliRunner().invoke(main, ["add", str(huge), "--json"])
    assert r.exit_code == EXIT_CODES["bad_input"]
    doc = json.loads(r.output)
    assert doc["n_failed"] == 1 and "MAX_FILE_SIZE" in doc["failed"][0]["reason"]


def test_html_options(tmp_home: Path, tmp_path: Path, bins: dict[str, Path]) -> None:
    run("add", bins["netsh_x86.exe"], "--family", "netshdoor")
    page = tmp_path / "match.html"
    code, out = run("match", bins["netsh_x64.exe"], "--html", page, "--json")
    assert code == 0 and json.loads(out)["verdict"]["family"] == "netshdoor"
    text = page.read_text()
    assert 'id="signals"' in text and "netsh_x86.exe" in text  # TLSH neighbour, weak evidence
    assert "netshdoor" in text and "<svg" in text and "http://" not in text.replace(
        "http://www.w3.org", "")
    page = tmp_path / "compare.html"
    code, _ = run("compare", bins["netsh_x86.exe"], bins["netsh_x64.exe"], "--html", page)
    assert code == 0 and "run_command" in page.read_text()


def test_samples_are_kept_next_to_the_store(tmp_home: Path, bins: dict[str, Path]) -> None:
    code, out = run("add", bins["netsh_x86.exe"], "--json")
    assert code == 0
    sha = json.loads(out)["added"][0]["sha256"]
    kept = tmp_home / "samples" / sha
    assert kept.read_bytes() == bins["netsh_x86.exe"].read_bytes()
    assert kept.stat().st_mode & 0o111 == 0  # never executable
    run("db", "remove", sha)
    assert not kept.exists()
    code, out = run("add", bins["netsh_x64.exe"], "--no-keep", "--json")
    assert code == 0
    assert not (tmp_home / "samples" / json.loads(out)["added"][0]["sha256"]).exists()


def test_unexpected_error_is_one_line(tmp_home: Path, bins: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import kinship.pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(kinship.pipeline, "disassemble", broken)
    r = CliRunner().invoke(main, ["info", str(bins["netsh_x86.exe"])])
    assert r.exit_code == EXIT_CODES["error"]
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error: RuntimeError: parser bug" in lines[0]
