"""``kinship add -j 2`` end to end with workers killed: a worker killed mid-batch (as the OOM
killer would) costs nothing (its sample is retried in a fresh worker), and ``kill -9`` of the
main process leaves no worker behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")

N_SAMPLES = 40


def _samples(tmp_path: Path, bins: dict[str, Path]) -> Path:
    """N distinct samples: fixture binaries with a different overlay byte each (distinct
    SHA-256, the same code)."""
    d = tmp_path / "in"
    d.mkdir()
    names = ["netsh_x86.exe", "netsh_x64.exe", "other_x64.exe", "netsh_elf64"]
    for i in range(N_SAMPLES):
        src = bins[names[i % len(names)]]
        (d / f"s{i:02d}_{src.name}").write_bytes(src.read_bytes() + bytes([i]) * 16)
    return d


def _workers(parent: int) -> list[int]:
    """Pids of the worker processes whose parent is ``parent`` (any child but
    multiprocessing's resource tracker)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"resource_tracker" not in cmd:
            out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_add(tmp_path: Path, src: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, KINSHIP_HOME=str(tmp_path / "home"))
    return subprocess.Popen(
        [sys.executable, "-m", "kinship", "add", str(src), "--family", "f", "-j", "2",
         "--json", "--db", str(tmp_path / "k.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True)


def _wait_workers(proc: subprocess.Popen[str], n: int = 2, timeout: float = 60) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = _workers(proc.pid)
        if len(pids) >= n:
            return pids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no workers started")


def test_a_killed_worker_costs_nothing(tmp_path: Path, bins: dict[str, Path]) -> None:
    src = _samples(tmp_path, bins)
    proc = _start_add(tmp_path, src)
    try:
        victim = _wait_workers(proc)[0]
        time.sleep(0.5)  # let it take a sample
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["n_failed"] == 0, report["failed"]
    assert report["n_added"] == N_SAMPLES


def test_kill_9_of_add_leaves_no_worker(tmp_path: Path, bins: dict[str, Path]) -> None:
    src = _samples(tmp_path, bins)
    proc = _start_add(tmp_path, src)
    try:
        pids = _wait_workers(proc)
        proc.kill()
        proc.communicate()
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
