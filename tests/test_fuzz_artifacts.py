"""The artifact fuzz target (tests/fuzz_artifacts.py) in CI: a bounded, seeded run over zips,
e-mails, OOXML and OLE documents must find no crash, hang or memory blow-up (issue #10), and
the harness must be able to see each of those (else a clean run proves nothing).

Run time: ``$KINSHIP_FUZZ_SECONDS``, else 45 s under ``CI=true`` and 15 s without. A failure
prints each finding with its type, place and the saved input (rerun it with
``python tests/fuzz_artifacts.py --replay PATH``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fuzz_artifacts
import fuzz_inputs

FUZZ_SEED = 10
FUZZ_SECONDS = float(os.environ.get("KINSHIP_FUZZ_SECONDS")
                     or (45 if os.environ.get("CI") == "true" else 15))


@pytest.fixture(scope="module")
def exes(bins: dict[str, Path]) -> list[Path]:
    return [bins["netsh_elf64"], bins["netsh_x86.exe"]]


def test_fuzz_finds_no_crash_hang_or_memory_blowup(exes: list[Path], tmp_path: Path) -> None:
    summary = fuzz_artifacts.fuzz(FUZZ_SECONDS, FUZZ_SEED, binaries=exes,
                                  findings_dir=tmp_path / "findings")
    print(summary.report())
    assert summary.inputs > len(fuzz_inputs.build_seeds(exes)), "the mutants never ran"
    assert summary.clean, "fuzz findings:\n" + summary.report()


def test_seeds_are_valid_and_reach_every_parser(exes: list[Path], tmp_path: Path) -> None:
    """Unmutated, every seed is analysed without an error (the text lures are not artifacts:
    rejected), so the mutants start from inputs that go deep."""
    seeds = fuzz_inputs.build_seeds(exes)
    assert {s.kind for s in seeds} == {"zip", "email", "ooxml", "ole", "text"}
    runs = [(s.name, s, "artifact") for s in seeds]
    runs += [(s.name, s, "add") for s in seeds if s.kind == "zip"]
    summary = fuzz_artifacts.run_inputs(runs, findings_dir=tmp_path)
    n_text = sum(s.kind == "text" for s in seeds)
    assert summary.clean, summary.report()
    assert summary.by_target["artifact"]["ok"] == len(seeds) - n_text, summary.to_dict()
    assert summary.by_target["artifact"]["rejected"] == n_text
    # plain (deflated, stored), AES and ZipCrypto zips: add stores the executable from each;
    # nested.zip and names.zip hold no executable at their top level
    assert summary.by_target["add"] == {"ok": 4, "rejected": 2, "crash": 0, "hang": 0,
                                        "memory": 0}


def test_harness_detects_crash_hang_memory_and_death(tmp_path: Path) -> None:
    """The selftest target misbehaves on request; each misbehaviour is counted, the child is
    replaced after a hang or a death, and the inputs after it still run."""
    cases = {"fine": b"ok", "crash": b"CRASH", "hang": b"HANG", "balloon": b"BALLOON",
             "grow": b"GROW", "reject": b"REJECT", "segv": b"SEGV", "after": b"ok"}
    inputs = [(k, fuzz_inputs.FuzzInput(f"{k}.bin", v, "text"), "selftest")
              for k, v in cases.items()]
    summary = fuzz_artifacts.run_inputs(inputs, findings_dir=tmp_path, timeout=3,
                                        max_rss_mb=300)
    assert (summary.inputs, summary.ok, summary.rejected) == (8, 2, 1), summary.report()
    assert (summary.crashes, summary.hangs, summary.over_memory) == (2, 1, 2), summary.report()
    assert not summary.clean
    by_type = {f.error_type: f for f in summary.findings}
    assert set(by_type) == {"ValueError", "Timeout", "MemoryError", "PeakRSS",
                            "ChildDied(SIGSEGV)"}
    crash = by_type["ValueError"]
    assert "fuzz_artifacts.py" in crash.place and "in selftest" in crash.last_frame
    assert "in selftest" in by_type["Timeout"].place  # the stack the hung child printed
    for f in summary.findings:  # each finding's input saved, byte for byte
        assert Path(f.saved).read_bytes() == cases[f.input_id]
    assert (tmp_path / "findings.json").is_file()
    assert "ValueError" in summary.report() and str(tmp_path) in summary.report()


def test_mutants_are_reproducible_and_varied(exes: list[Path]) -> None:
    seeds = fuzz_inputs.build_seeds(exes)
    first = [fuzz_inputs.generate(3, i, seeds) for i in range(60)]
    again = [fuzz_inputs.generate(3, i, seeds) for i in range(60)]
    assert first == again
    assert [m.data for m in first] != [fuzz_inputs.generate(4, i, seeds).data
                                       for i in range(60)]
    ops = {op.split(":")[0].split("=")[0].split("*")[0]
           for i in range(400) for op in fuzz_inputs.generate(3, i, seeds).recipe}
    for wanted in ("flip", "truncate", "zip_field", "deflate_damage", "overlap", "wrap_zip",
                   "wrap_mail", "deep_mail", "mail_header", "boundary", "xml_damage",
                   "cfb_field", "huge_size", "method"):
        assert wanted in ops
    assert all(len(m.data) <= fuzz_inputs.MAX_INPUT_BYTES for m in first)


def test_minimize_keeps_the_failure_and_drops_the_rest(tmp_path: Path) -> None:
    padded = fuzz_inputs.FuzzInput("x.bin", b"a" * 300 + b"CRASH" + b"b" * 200, "text")
    with fuzz_artifacts.Session(timeout=5) as session:
        small, sig = fuzz_artifacts.minimize(session, padded, "selftest", seconds=120)
        assert sig.startswith("ValueError @ ") and small.data == b"CRASH"
        fine = fuzz_inputs.FuzzInput("y.bin", b"fine", "text")
        assert fuzz_artifacts.minimize(session, fine, "selftest") == (fine, "")
