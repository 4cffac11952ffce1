"""PostgreSQL-only behaviour, against a real server ($KINSHIP_TEST_PG_URL; see conftest.pg_url):
concurrent ingest from two processes, a connection killed mid-insert, schema versions,
connection errors, and the CLI end to end. The shared Store contract runs in test_store.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np
import pytest

from kinship.exceptions import StoreError
from kinship.features.model import FunctionFeatures
from kinship.store.model import SampleRecord
from kinship.store.paths import pg_data_dir, redact_url
from test_store import digest, make_functions, make_record

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

from kinship.store.postgres import PostgresStore  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([SRC, TESTS, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture
def pg(pg_url: str, pg_schema: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_url, schema=pg_schema) as s:
        yield s


def _sql(url: str, query: sql.Composable | str, *params: object) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query if not isinstance(query, str) else query.encode(), params)


# --- concurrency -------------------------------------------------------------------------

_INGEST_CHILD = textwrap.dedent(
    """
    import sys
    from kinship.store.postgres import PostgresStore
    from test_store import make_functions, make_record

    url, schema, key = sys.argv[1:4]
    with PostgresStore(url, schema=schema) as s:
        print("READY", flush=True)
        sys.stdin.readline()  # both children start writing at once
        for k in (key, "shared"):
            s.add_sample(make_record(k, family="Fam" + k[-1]), make_functions(k, 400))
    print("DONE", flush=True)
    """
)


def test_concurrent_ingest_two_processes(pg: PostgresStore, pg_url: str) -> None:
    gen0 = pg.generation()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _INGEST_CHILD, pg_url, pg.schema, key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_env(), text=True,
        )
        for key in ("one", "two")
    ]
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == "READY"
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        results = [c.communicate(timeout=120) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    for c, (out, err) in zip(children, results, strict=True):
        assert c.returncode == 0, err
        assert "DONE" in out
    shas = [r.sha256 for r in pg.samples()]
    assert sorted(shas) == sorted(digest(k, "sha256") for k in ("one", "two", "shared"))
    assert pg.stats().functions == 3 * 400 and len(pg.function_arrays()) == 3 * 400
    # one bump per stored sample; the loser of the "shared" race may bump once more
    assert pg.generation() >= gen0 + 3
    assert pg.functions(digest("shared", "sha256")) == make_functions("shared", 400)


# --- failures mid-insert -----------------------------------------------------------------

_SLOW_CHILD = textwrap.dedent(
    """
    import sys, time
    from collections.abc import Sequence
    from kinship.store.postgres import PostgresStore
    from test_store import make_functions, make_record

    class Slow(Sequence):
        def __init__(self): self.items = make_functions("big", 2000)
        def __len__(self): return len(self.items)
        def __getitem__(self, i):
            if i == 1500:
                print("MID", flush=True)
                time.sleep(120)
            return self.items[i]

    with PostgresStore(sys.argv[1], schema=sys.argv[2]) as s:
        s.add_sample(make_record("big", family="Big"), Slow())
    print("DONE", flush=True)
    """
)


def test_killed_process_mid_insert_leaves_nothing(pg: PostgresStore, pg_url: str) -> None:
    pg.add_sample(make_record("a"), make_functions("a", 6))
    gen = pg.generation()
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHILD, pg_url, pg.schema],
        stdout=subprocess.PIPE, env=_env(), text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "MID"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # the server notices the dead client and rolls back; its row lock goes with it
    pg.add_sample(make_record("c"), make_functions("c", 3))  # waits for that, then writes
    assert not pg.has_sample(digest("big", "sha256"))
    assert "Big" not in {f.name for f in pg.families()}
    assert pg.generation() == gen + 1
    assert pg.stats().functions == 9 and len(pg.function_arrays()) == 9


class _KillsConnectionAt(Sequence[FunctionFeatures]):
    """Functions whose item ``at`` first terminates the store's server connection."""

    def __init__(self, items: list[FunctionFeatures], at: int, url: str, pid: int) -> None:
        self.items, self.at, self.url, self.pid = items, at, url, pid

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> FunctionFeatures: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[FunctionFeatures]: ...
    def __getitem__(self, i: int | slice) -> FunctionFeatures | Sequence[FunctionFeatures]:
        if isinstance(i, int) and i == self.at:
            _sql(self.url, "SELECT pg_terminate_backend(%s)", self.pid)
        return self.items[i]


def test_terminated_connection_mid_insert(pg: PostgresStore, pg_url: str) -> None:
    pg.add_sample(make_record("a"), make_functions("a", 6))
    gen = pg.generation()
    fns = _KillsConnectionAt(make_functions("new", 300), 200, pg_url, pg.conn.info.backend_pid)
    with pytest.raises(StoreError) as err:
        pg.add_sample(make_record("new", n_instructions=1), fns)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("PostgreSQL postgresql://kinship@")
    assert "kinship:kinship@" not in msg  # never the password
    with PostgresStore(pg_url, schema=pg.schema) as fresh:
        assert not fresh.has_sample(digest("new", "sha256"))
        assert fresh.generation() == gen and fresh.stats().functions == 6


# --- schema, connection ------------------------------------------------------------------


def test_persists_and_refuses_newer_schema(pg: PostgresStore, pg_url: str) -> None:
    pg.add_sample(make_record("a"), make_functions("a", 6))
    with PostgresStore(pg_url, schema=pg.schema) as again:
        assert again.functions(digest("a", "sha256")) == make_functions("a", 6)
        assert again.stats().schema_version == 2
    _sql(pg_url, sql.SQL("UPDATE {}.meta SET value = '99' WHERE key = 'schema_version'").format(
        sql.Identifier(pg.schema)))
    with pytest.raises(StoreError, match="newer than this kinship"):
        PostgresStore(pg_url, schema=pg.schema)


def test_store_id_kept_and_given_to_old_stores(pg: PostgresStore, pg_url: str) -> None:
    sid, gen = pg.store_id(), pg.generation()
    with PostgresStore(pg_url, schema=pg.schema) as again:
        assert again.store_id() == sid
    _sql(pg_url, sql.SQL("DELETE FROM {}.meta WHERE key = 'store_id'").format(
        sql.Identifier(pg.schema)))  # a store made before store ids
    with PostgresStore(pg_url, schema=pg.schema) as again:
        new = again.store_id()
        assert new != sid and again.generation() == gen
    with PostgresStore(pg_url, schema=pg.schema) as again:
        assert again.store_id() == new


def test_foreign_schema(pg_url: str, pg_schema: str) -> None:
    ident = sql.Identifier(pg_schema)
    _sql(pg_url, sql.SQL("CREATE SCHEMA {}").format(ident))
    _sql(pg_url, sql.SQL("CREATE TABLE {}.other (x int)").format(ident))
    with pytest.raises(StoreError, match="not a kinship store"):
        PostgresStore(pg_url, schema=pg_schema)


@pytest.mark.parametrize("url", [
    "postgresql://kuser:hunter2secret@127.0.0.1:1/nodb",
    "postgres://127.0.0.1:1/nodb?password=hunter2secret",
])
def test_connection_error_names_server_not_password(url: str) -> None:
    with pytest.raises(StoreError) as err:
        PostgresStore(url)
    msg = str(err.value)
    assert "127.0.0.1" in msg and "hunter2secret" not in msg and "\n" not in msg


def test_redact_and_data_dir(tmp_home: Path) -> None:
    assert redact_url("postgresql://u:pw@db.example:5433/kin?sslmode=require") == (
        "postgresql://u@db.example:5433/kin")
    a = pg_data_dir("postgresql://alice:x@db.example/kin")
    assert a == pg_data_dir("postgres://bob@db.example:5432/kin")  # same database
    assert a != pg_data_dir("postgresql://db.example/other")
    assert a.parent == tmp_home and a.name.startswith("pg-")


def test_nul_and_kernel_va(pg: PostgresStore) -> None:
    f = make_functions("n", 1)[0]
    odd = FunctionFeatures(**{
        **{k: getattr(f, k) for k in FunctionFeatures.__slots__},
        "name": "a\x00b", "va": 2**64 - 16, "exact_hash": -(2**63),
        "code_sig": np.full(f.code_sig.shape, 2**32 - 1, np.uint32),
    })
    rec = SampleRecord(**{**make_record("n").__dict__, "name": "x\x00.exe"})
    pg.add_sample(rec, [odd])
    got = pg.functions(digest("n", "sha256"))[0]
    assert got.name == "a\ufffdb" and got.va == 2**64 - 16 and got.exact_hash == -(2**63)
    arr = pg.function_arrays()
    assert arr.va[0] == 2**64 - 16 and arr.code_sig[0, 0] == 2**32 - 1


# --- the CLI end to end ------------------------------------------------------------------


def _kinship(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from kinship.cli import main; main()", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_cli_add_then_match(
    pg_default_schema: str, bins: dict[str, Path], tmp_home: Path
) -> None:
    url = pg_default_schema
    env = _env(KINSHIP_HOME=str(tmp_home))
    env.pop("KINSHIP_DB", None)
    r = _kinship("add", bins["netsh_x86.exe"], "--family", "x", "--db", url, "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_added"] == 1
    assert not (tmp_home / "kinship.db").exists()  # nothing went to SQLite
    r = _kinship("match", bins["netsh_x64.exe"], "--json", env={**env, "KINSHIP_DB": url})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"]["family"] == "x"
    data = pg_data_dir(url)
    assert (data / "index").is_dir() and any((data / "samples").iterdir())
    r = _kinship("db", "stats", "--db", url, "--json", env=env)
    stats = json.loads(r.stdout)
    assert stats["backend"] == "postgresql" and stats["samples"] == 1
    assert stats["path"] == redact_url(url) and "kinship:kinship@" not in r.stdout
