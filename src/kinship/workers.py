"""A process pool that survives dead workers and dies with its parent.

:func:`map_resilient` runs ``fn`` over items in ``jobs`` worker processes. Unlike
:class:`concurrent.futures.ProcessPoolExecutor`, whose whole pool breaks when one worker is killed
(every pending item then fails with ``BrokenProcessPool``), a worker that dies here costs only the
item it was running:

* the item is run again in another worker (a fresh process replaces the dead one), up to
  ``retries`` times; if it kills a worker every time, ``on_lost(item, reason)`` gives its result;
* every other item completes normally;
* workers exit when their parent dies, even while busy or after ``kill -9`` of the parent
  (Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere, and as a back-up, a thread in each
  worker that watches ``os.getppid()``);
* no worker is left behind when the iteration ends, normally, by an exception, by
  ``KeyboardInterrupt`` or by ``close()`` of the generator.

One parent, one pipe per worker, one item in flight per worker::

    parent ──(seq, item)──▶ worker 1 ──(seq, "ok", result)──▶ parent
           ──(seq, item)──▶ worker 2 ──(seq, "raised", exc)─▶ parent   (fn raised: re-raised)
                              ✝ worker 2 dies: its sentinel fires; item seq goes back to the
                                front of the queue with one death recorded

Workers are started with the ``spawn`` method: a fresh interpreter shares no locks, threads or
open files (a store connection) with the parent, and holds only its own end of its own pipe, so
it sees end-of-file when the parent goes away.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from kinship.exceptions import KinshipError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# A worker that dies before it was given an item did not fail on one (it could not start: an
# import error, no memory). After this many in a row, with no item finished between them, the
# pool gives up instead of starting workers forever.
MAX_START_FAILURES = 3
# How often (seconds) a worker checks that its parent is still alive when PR_SET_PDEATHSIG is
# not available; also bounds how long an orphaned worker outlives its parent there.
PARENT_POLL_SECONDS = 0.5
# How long (seconds) close() waits for idle workers to exit on their own before killing them.
SHUTDOWN_GRACE_SECONDS = 2.0
# In ordered mode, at most this many items per worker are dispatched but not yet yielded
# (results waiting behind a slow earlier item are held in memory).
ORDERED_WINDOW_PER_JOB = 2

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


# ---------------------------------------------------------------------------------------------
# worker side


def _die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` (the pool's parent) is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl (e.g. a static musl build)
            logger.debug("prctl(PR_SET_PDEATHSIG) unavailable; watching the parent pid")
    # The parent may have died before prctl ran (the signal is then never sent); the watcher
    # also covers systems without prctl. A changed ppid means we were re-parented.
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="kinship-parent-watch",
                     daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)


def _portable_exception(e: Exception) -> Exception:
    """``e`` if it survives pickling, else a RuntimeError that says what it was (exceptions
    with a custom ``__init__`` often cannot be rebuilt from their args)."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")
    return e


def _worker_main(conn: Connection, fn: Callable[[Any], Any], parent_pid: int) -> None:
    """Worker loop: receive ``(seq, item)``, send back ``(seq, "ok", result)`` or
    ``(seq, "raised", exception)``; exit on end-of-file (the parent closed the pipe or died)."""
    _die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent decides; a worker prints nothing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready",))
    while True:
        try:
            seq, item = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[Any, ...] = (seq, "ok", fn(item))
        except Exception as e:
            reply = (seq, "raised", _portable_exception(e))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as e:  # the result could not be pickled
            conn.send((seq, "raised", RuntimeError(
                f"result of the worker function could not be sent: {type(e).__name__}: {e}")))


# ---------------------------------------------------------------------------------------------
# parent side


@dataclass
class _Task(Generic[T]):
    seq: int
    item: T
    deaths: list[str] = field(default_factory=list)  # how each worker that ran it died


@dataclass
class _Worker(Generic[T]):
    process: BaseProcess
    conn: Connection
    ready: bool = False  # said "ready": it started and waits for its first task
    task: _Task[T] | None = None
    sent: bool = False  # the task went down the pipe: a death now is the task's doing
    completed: int = 0  # tasks it finished


def _death_cause(exitcode: int | None) -> str:
    """``killed by signal 9, SIGKILL`` / ``exit status 1``."""
    if exitcode is None:
        return "unknown cause"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        return f"killed by signal {-exitcode}, {name}"
    return f"exit status {exitcode}"


def lost_reason(deaths: list[str]) -> str:
    """One line for an item that killed a worker every time it ran, e.g.
    ``worker died (killed by signal 9, SIGKILL) twice``."""
    if len(set(deaths)) == 1:
        times = {1: "once", 2: "twice"}.get(len(deaths), f"{len(deaths)} times")
        return f"worker died ({deaths[0]}) {times}"
    return "worker died " + ", then ".join(f"({d})" for d in deaths)


class _Pool(Generic[T, R]):
    def __init__(self, fn: Callable[[T], R], jobs: int) -> None:
        self.fn = fn
        self.jobs = jobs
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[_Worker[T]] = []
        self.start_failures = 0  # deaths of workers never given a task, since the last result

    def start_worker(self) -> _Worker[T]:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(target=_worker_main, args=(child_conn, self.fn, os.getpid()),
                                   name="kinship-worker", daemon=True)
        try:
            process.start()
        finally:
            child_conn.close()  # the worker's end lives in the worker only: EOF when it dies
        worker: _Worker[T] = _Worker(process, parent_conn)
        self.workers.append(worker)
        return worker

    def reap(self, worker: _Worker[T]) -> str:
        """Forget a dead worker; how it died."""
        self.workers.remove(worker)
        worker.conn.close()
        worker.process.join(timeout=SHUTDOWN_GRACE_SECONDS)
        if worker.process.is_alive():  # its pipe broke but it runs on: do not leave it behind
            worker.process.kill()
            worker.process.join()
        cause = _death_cause(worker.process.exitcode)
        worker.process.close()
        if not worker.sent and worker.completed == 0:
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                raise KinshipError(f"worker processes could not start ({cause}, "
                                   f"{self.start_failures} times in a row)")
        return cause

    def close(self) -> None:
        """Stop every worker: idle ones see end-of-file and exit, busy ones are killed."""
        for w in self.workers:
            w.conn.close()
            if w.task is not None:
                w.process.kill()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.process.close()
        self.workers.clear()


def map_resilient(
    fn: Callable[[T], R],
    items: Iterable[T],
    jobs: int,
    *,
    on_lost: Callable[[T, str], R],
    retries: int = 1,
    ordered: bool = True,
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, computed in up to ``jobs`` worker processes.

    ``fn`` must be picklable (a module-level function); so must items and results. ``items`` is
    consumed lazily: at most ``jobs`` items are in the workers at a time (in ordered mode at most
    ``ORDERED_WINDOW_PER_JOB * jobs`` are taken from ``items`` and not yet yielded), so large
    items (byte strings) are not all held at once.

    With ``ordered`` (the default) results come in input order, like the built-in ``map``;
    otherwise in completion order.

    A worker process that dies while running an item (killed by a signal, ``os._exit``) costs
    that item one attempt; the item is run again in another worker up to ``retries`` times, and
    after that ``on_lost(item, reason)`` is its result, with ``reason`` like ``worker died
    (killed by signal 9, SIGKILL) twice``. An exception raised by ``fn`` is not a death: it is
    re-raised here (after the workers are stopped), as ``map`` would. Workers that cannot start
    at all end the iteration with :class:`KinshipError`.

    Workers are stopped when the iteration ends for any reason; a consumer that stops early
    should ``close()`` the generator (``contextlib.closing``) rather than wait for garbage
    collection. Workers also exit when this process dies, even by ``kill -9``.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that started a worker exits: consume the
    generator from one thread.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if retries < 0:
        raise ValueError(f"retries must be at least 0, not {retries}")
    pool: _Pool[T, R] = _Pool(fn, jobs)
    try:
        yield from _run(pool, iter(items), on_lost, retries, ordered)
    finally:
        pool.close()


def _run(
    pool: _Pool[T, R],
    source: Iterator[T],
    on_lost: Callable[[T, str], R],
    retries: int,
    ordered: bool,
) -> Iterator[tuple[T, R]]:
    """The scheduling loop: yield what is ready, feed idle workers, wait for a reply or a
    death; until the source is exhausted and every result is yielded."""
    run = _Schedule(pool, source, on_lost, retries, ordered)
    while True:
        yield from run.ready_results()  # 1. yield what is ready
        run.dispatch()  # 2. give every idle (or not yet started) worker a task
        if not any(w.task is not None for w in pool.workers):
            if run.all_done():
                return
            continue
        run.bury(run.collect())  # 3. wait for a reply or a death


class _Schedule(Generic[T, R]):
    """The state of one :func:`map_resilient` run: items taken from the source and not yet
    sent, results not yet yielded, and where the ordered output stands."""

    def __init__(self, pool: _Pool[T, R], source: Iterator[T],
                 on_lost: Callable[[T, str], R], retries: int, ordered: bool) -> None:
        self.pool = pool
        self.source = source
        self.on_lost = on_lost
        self.retries = retries
        self.ordered = ordered
        # ordered: items taken but not yet yielded; unordered, the workers bound what is in
        # flight
        self.window = ORDERED_WINDOW_PER_JOB * pool.jobs
        # taken from source (or back from a dead worker), not sent
        self.queue: deque[_Task[T]] = deque()
        self.finished: dict[int, tuple[T, R]] = {}  # seq -> result, not yet yielded
        self.next_seq = 0  # seq of the next item taken from source
        self.next_out = 0  # ordered: seq of the next result to yield
        self.exhausted = False

    def all_done(self) -> bool:
        return self.exhausted and not self.queue and not self.finished

    def ready_results(self) -> Iterator[tuple[T, R]]:
        """Results that may be yielded now (in input order when ordered)."""
        if self.ordered:
            while self.next_out in self.finished:
                yield self.finished.pop(self.next_out)
                self.next_out += 1
        else:
            while self.finished:
                yield self.finished.pop(next(iter(self.finished)))

    def dispatch(self) -> None:
        """Give every idle worker a task, starting workers up to ``jobs``."""
        pool = self.pool
        while True:
            idle = next((w for w in pool.workers if w.task is None), None)
            if idle is None and len(pool.workers) >= pool.jobs:
                break
            if not self.queue and not self.exhausted and (
                    not self.ordered or self.next_seq - self.next_out < self.window):
                try:
                    self.queue.append(_Task(self.next_seq, next(self.source)))
                    self.next_seq += 1
                except StopIteration:
                    self.exhausted = True
            if not self.queue:
                break
            worker = idle or pool.start_worker()
            worker.task = self.queue.popleft()
            if worker.ready:  # a new worker gets its task when it says it is ready
                _send_task(worker)

    def collect(self) -> list[_Worker[T]]:
        """Wait for replies or deaths; record the replies; the workers that died."""
        by_handle: dict[Any, _Worker[T]] = {}
        for w in self.pool.workers:
            by_handle[w.conn] = w
            by_handle[w.process.sentinel] = w
        ready = wait(list(by_handle))
        dead: list[_Worker[T]] = []
        for handle in ready:
            w = by_handle[handle]
            if w in dead:
                continue
            if handle is not w.conn:
                dead.append(w)
                continue
            try:
                message = w.conn.recv()
            except (EOFError, OSError):
                dead.append(w)
                continue
            if message == ("ready",):
                w.ready = True
                _send_task(w)
                continue
            seq, status, value = message
            assert w.task is not None and w.task.seq == seq, "reply for a task the worker lacks"
            self._finish(w, status, value)
        return dead

    def bury(self, dead: list[_Worker[T]]) -> None:
        """Read what dead workers sent before they died, forget them, and give their tasks
        back to the queue (or up, with ``on_lost``, after ``retries`` deaths)."""
        for w in dead:
            # a reply (or "ready") may still sit in the pipe of a worker that exited after it
            while w.task is not None and _poll(w.conn):
                try:
                    message = w.conn.recv()
                except (EOFError, OSError):
                    break
                if message == ("ready",):
                    w.ready = True
                    continue
                _seq, status, value = message
                self._finish(w, status, value)
            task, sent = w.task, w.sent
            cause = self.pool.reap(w)
            if task is None:
                continue
            if not sent:  # it died before it got the task: not the task's fault
                self.queue.appendleft(task)
                continue
            task.deaths.append(cause)
            retry = len(task.deaths) <= self.retries
            logger.warning("a worker died (%s) on input item %d; %s", cause, task.seq,
                           "retrying it in a fresh worker" if retry else "giving it up")
            if retry:
                self.queue.appendleft(task)
            else:
                self.finished[task.seq] = (task.item,
                                           self.on_lost(task.item, lost_reason(task.deaths)))

    def _finish(self, w: _Worker[T], status: str, value: Any) -> None:
        """``w`` replied for its task: free it; re-raise what ``fn`` raised."""
        task = w.task
        assert task is not None
        w.task, w.sent = None, False
        w.completed += 1
        self.pool.start_failures = 0
        if status == "raised":
            raise value
        self.finished[task.seq] = (task.item, value)


def _send_task(worker: _Worker[T]) -> None:
    assert worker.task is not None
    # a send to a worker that just died fails: the wait in _run sees its sentinel and
    # gives the task back
    # counted as sent even if the worker dies while reading it (an item too big for its
    # memory must not be handed to fresh workers forever)
    worker.sent = True
    with contextlib.suppress(EOFError, OSError):
        worker.conn.send((worker.task.seq, worker.task.item))


def _poll(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False
