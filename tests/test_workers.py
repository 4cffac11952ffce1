"""kinship.workers.map_resilient: a worker killed by a signal (as the OOM killer does) costs only
its item, which is retried once in a fresh worker; workers exit with their parent, even after
``kill -9``; none is left behind after an early stop or an exception."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from kinship.exceptions import KinshipError
from kinship.workers import lost_reason, map_resilient

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

POISON = 13


def _square(x: int) -> int:
    return x * x


def _square_unless_poisoned(arg: tuple[int, str]) -> int:
    """Kills its own process (SIGKILL, as the OOM killer would) on the poisoned item; each
    attempt at that item leaves a line in the log file."""
    x, log = arg
    if x == POISON:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def _dies_first_time(arg: tuple[int, str]) -> int:
    """Kills its process the first time it sees item 3 (a marker file remembers)."""
    x, marker = arg
    if x == 3 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 100


def _raise_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five is right out")
    return x


def _pid_then_sleep(x: int) -> int:
    if x == 0:
        return os.getpid()
    time.sleep(30)
    return x


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _lost(item: object, reason: str) -> int:
    raise AssertionError(f"{item} lost: {reason}")


def test_same_results_as_serial_map_in_order() -> None:
    items = list(range(40))
    out = list(map_resilient(_square, items, 3, on_lost=_lost))
    assert out == [(x, _square(x)) for x in items]
    assert multiprocessing.active_children() == []  # all joined on normal exit


def test_unordered_has_the_same_contents() -> None:
    items = list(range(40))
    out = list(map_resilient(_square, items, 2, on_lost=_lost, ordered=False))
    assert sorted(out) == [(x, _square(x)) for x in items]


def test_poisoned_item_is_retried_once_then_lost_others_complete(tmp_path: Path) -> None:
    log = str(tmp_path / "attempts")
    items = [(x, log) for x in range(20)]
    lost: list[tuple[tuple[int, str], str]] = []

    def on_lost(item: tuple[int, str], reason: str) -> int:
        lost.append((item, reason))
        return -1

    out = list(map_resilient(_square_unless_poisoned, items, 2, on_lost=on_lost))

    assert [item for item, _ in out] == items  # every item, once, in order
    assert {x: r for (x, _), r in out} == {x: (-1 if x == POISON else x * x) for x in range(20)}
    assert lost == [((POISON, log), "worker died (killed by signal 9, SIGKILL) twice")]
    attempts = Path(log).read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # one retry, in a fresh process


def test_no_retry_when_retries_is_zero(tmp_path: Path) -> None:
    log = str(tmp_path / "attempts")
    out = dict(map_resilient(_square_unless_poisoned, [(POISON, log), (2, log)], 2,
                             on_lost=lambda item, reason: -1, retries=0))
    assert out == {(POISON, log): -1, (2, log): 4}
    assert len(Path(log).read_text().split()) == 1


def test_item_that_kills_its_worker_once_succeeds_on_retry(tmp_path: Path) -> None:
    marker = str(tmp_path / "died-once")
    items = [(x, marker) for x in range(8)]
    out = list(map_resilient(_dies_first_time, items, 2, on_lost=_lost))
    assert out == [((x, marker), x + 100) for x in range(8)]
    assert Path(marker).exists()  # it did die once


def test_exception_in_fn_is_raised_and_workers_stop() -> None:
    gen = map_resilient(_raise_on_five, range(10), 2, on_lost=_lost)
    with pytest.raises(ValueError, match="five is right out"):
        list(gen)


def test_consumer_stopping_early_leaves_no_worker() -> None:
    gen = map_resilient(_pid_then_sleep, range(4), 2, on_lost=_lost)
    _, pid = next(gen)  # item 0 returns its worker's pid; the other worker sleeps on item 1
    t0 = time.monotonic()
    gen.close()
    assert time.monotonic() - t0 < 5  # the busy worker was killed, not waited for
    assert _wait_gone([pid], 5) == []
    assert multiprocessing.active_children() == []


def test_exception_in_consumer_leaves_no_worker() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="consumer failed"), \
            closing(map_resilient(_pid_then_sleep, range(4), 2, on_lost=_lost)) as results:
        for _, pid in results:
            pids.append(pid)
            raise RuntimeError("consumer failed")
    assert _wait_gone(pids, 5) == []
    assert multiprocessing.active_children() == []


_POOL_SCRIPT = """
import os, sys, time
from kinship.workers import map_resilient

def slow(x):
    print(os.getpid(), flush=True)
    time.sleep(60)
    return x

if __name__ == "__main__":
    for _ in map_resilient(slow, range(4), 2, on_lost=lambda i, r: None):
        pass
"""


def _start_pool_process(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A process running a pool on two slow items; its two workers' pids."""
    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert parent.stdout is not None
    pids = [int(parent.stdout.readline()) for _ in range(2)]
    assert all(_alive(p) for p in pids)
    return parent, pids


def _reap(parent: subprocess.Popen[str]) -> None:
    if parent.poll() is None:
        parent.kill()
    parent.communicate()


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    parent, pids = _start_pool_process(tmp_path)
    try:
        parent.kill()  # kill -9: no cleanup code runs in the parent
        parent.wait()
        assert _wait_gone(pids, 5) == []
    finally:
        _reap(parent)


def test_ctrl_c_stops_parent_and_workers(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as Ctrl-C in a terminal: the parent ends with
    KeyboardInterrupt at once (busy workers are killed, not waited for) and no worker
    prints a traceback."""
    parent, pids = _start_pool_process(tmp_path)
    try:
        os.killpg(parent.pid, signal.SIGINT)
        _, err = parent.communicate(timeout=10)
        assert parent.returncode != 0
        assert err.count("Traceback") == 1 and "KeyboardInterrupt" in err, err
        assert _wait_gone(pids, 5) == []
    finally:
        _reap(parent)


def test_workers_that_cannot_start_end_the_iteration(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A function whose module the workers cannot import: a KinshipError after a few starts,
    not an endless loop of new workers, nor every item "lost"."""
    (tmp_path / "vanishing_module.py").write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing_module

    (tmp_path / "vanishing_module.py").unlink()
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
    with pytest.raises(KinshipError, match="could not start"):
        list(map_resilient(vanishing_module.f, range(5), 2, on_lost=_lost))
    assert multiprocessing.active_children() == []
    monkeypatch.delitem(sys.modules, "vanishing_module")


def test_lost_reason_wording() -> None:
    assert lost_reason(["exit status 3"]) == "worker died (exit status 3) once"
    assert lost_reason(["killed by signal 9, SIGKILL"] * 3) == (
        "worker died (killed by signal 9, SIGKILL) 3 times")
    assert lost_reason(["exit status 3", "killed by signal 9, SIGKILL"]) == (
        "worker died (exit status 3), then (killed by signal 9, SIGKILL)")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(map_resilient(_square, [1], 0, on_lost=_lost))
