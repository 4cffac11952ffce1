"""Store backends (SQLite, memory, PostgreSQL): one data-driven suite, run against each backend.

FunctionFeatures are built by hand with random sketches; no binaries needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import pytest

import kinship.store.sqlite as sqlite_mod
from kinship.exceptions import NotFoundError, StoreError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.store.base import Store, StoreConfig
from kinship.store.memory import MemoryStore
from kinship.store.model import SampleRecord
from kinship.store.paths import default_db_path, default_home
from kinship.store.sqlite import SQLiteStore

K = 64  # MinHash sketch length used by these tests

# The corpus every test starts from: key -> labels and function count.
MANIFEST: dict[str, dict[str, Any]] = {
    "a": dict(family="Turla", actor="Snake", source="Report A", first_seen="2016-03", n=6),
    "b": dict(family="Turla", actor=None, source="Report B", first_seen="2014-11", n=4),
    "c": dict(family="Emotet", actor="TA542", source="Report A", first_seen="2019", n=3),
    "d": dict(family=None, actor="APT99", source=None, first_seen=None, n=2),
    "lib": dict(family=None, actor=None, source="debian", first_seen=None, n=5, lib=True),
}


def digest(key: str, algo: str) -> str:
    return hashlib.new(algo, key.encode()).hexdigest()


def make_record(key: str, **over: Any) -> SampleRecord:
    spec = {**MANIFEST.get(key, {}), **over}
    return SampleRecord(
        sha256=digest(key, "sha256"),
        md5=digest(key, "md5"),
        sha1=digest(key, "sha1"),
        name=f"{key}.exe",
        format="pe",
        arch="x64",
        size=1000 + len(key),
        family=spec.get("family"),
        actor=spec.get("actor"),
        source=spec.get("source"),
        first_seen=spec.get("first_seen"),
        is_library=bool(spec.get("lib", False)),
        n_instructions=spec.get("n_instructions", 0),
        info={"imphash": digest(key, "md5"), "sections": [".text", ".data"], "raw": b"\x01"},
    )


def make_function(rng: np.random.Generator, i: int, k: int = K) -> FunctionFeatures:
    return FunctionFeatures(
        va=0x401000 + 0x40 * i if i % 7 else 0xFFFF_F800_0000_0000 + i,  # kernel VA > 2**63
        name=None if i % 3 == 0 else f"sub_{i:x}",
        n_instructions=10 + i,
        n_blocks=1 + i % 5,
        n_edges=i % 6,
        size=40 + i,
        exact_hash=int(rng.integers(-(2**63), 2**63 - 1)),
        code_sig=rng.integers(0, 2**32, k, dtype=np.uint32),
        sem_sig=rng.integers(0, 2**32, k, dtype=np.uint32),
        n_code_tokens=20 + i,
        n_sem_tokens=i % 4,
        apis=("kernel32.dll!Sleep", "kernel32.dll!CreateProcessA")[: i % 3],
        strings=("netsh firewall\nadd", "C:\\temp\\x", "", "tab\tend")[: i % 5],
        discovery=("call", "entry", "")[i % 3],
    )


def make_functions(key: str, n: int, k: int = K) -> list[FunctionFeatures]:
    rng = np.random.default_rng(int(digest(key, "md5")[:8], 16))
    return [make_function(rng, i, k) for i in range(n)]


class Exploding(Sequence[FunctionFeatures]):
    """Functions that raise on item ``fail_at`` (an ingest dying half-way)."""

    def __init__(self, items: list[FunctionFeatures], fail_at: int) -> None:
        self.items, self.fail_at = items, fail_at

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> FunctionFeatures: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[FunctionFeatures]: ...
    def __getitem__(self, i: int | slice) -> FunctionFeatures | Sequence[FunctionFeatures]:
        if isinstance(i, int) and i == self.fail_at:
            raise RuntimeError("disassembler crashed")
        return self.items[i]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "k.db")
    elif request.param == "memory":
        s = MemoryStore()
    else:  # a fresh schema of $KINSHIP_TEST_PG_URL (skipped when unset; see conftest)
        from kinship.store.postgres import PostgresStore

        schema = request.getfixturevalue("pg_schema")
        s = PostgresStore(request.getfixturevalue("pg_url"), schema=schema)
    with s:
        yield s


@pytest.fixture
def filled(store: Store) -> Store:
    for key, spec in MANIFEST.items():
        store.add_sample(make_record(key), make_functions(key, spec["n"]))
    return store


def test_protocol(store: Store) -> None:
    assert isinstance(store, Store)


def test_roundtrip_and_lookup(filled: Store) -> None:
    for key, spec in MANIFEST.items():
        sha = digest(key, "sha256")
        assert filled.has_sample(sha)
        for ref in (sha, sha[:8], sha[:20].upper(), digest(key, "md5"), digest(key, "sha1")):
            rec = filled.get_sample(ref)
            assert rec.sha256 == sha and rec.name == f"{key}.exe"
        assert rec.n_functions == spec["n"]
        assert rec.n_instructions == sum(10 + i for i in range(spec["n"]))
        assert rec.info == {
            "imphash": digest(key, "md5"),
            "sections": [".text", ".data"],
            "raw": "01",
        }
        assert rec.added_at and rec.id is not None
        assert filled.functions(sha) == make_functions(key, spec["n"])
    assert not filled.has_sample(digest("zz", "sha256"))


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        (digest("nope", "sha256"), NotFoundError),
        (digest("nope", "md5"), NotFoundError),
        ("abc", UsageError),  # shorter than MIN_PREFIX_CHARS
        ("not-a-hash", UsageError),
    ],
)
def test_lookup_errors(filled: Store, ref: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        filled.get_sample(ref)


def test_ambiguous_prefix(store: Store) -> None:
    # Two records whose sha256 share their first 8 hex digits.
    recs = [make_record(k) for k in ("p1", "p2")]
    recs[1].sha256 = recs[0].sha256[:8] + recs[1].sha256[8:]
    for r in recs:
        store.add_sample(r, [])
    with pytest.raises(StoreError, match="more than one"):
        store.get_sample(recs[0].sha256[:8])
    assert store.get_sample(recs[0].sha256[:9]).sha256 in {r.sha256 for r in recs}


def test_dedup_and_replace(filled: Store) -> None:
    sha = digest("a", "sha256")
    sid, gen = filled.get_sample(sha).id, filled.generation()
    assert filled.add_sample(make_record("a"), make_functions("x", 1)) == sid
    assert filled.generation() == gen and len(filled.functions(sha)) == 6
    assert filled.add_sample(make_record("a"), make_functions("x", 2), replace=True) == sid
    assert filled.generation() > gen
    assert filled.functions(sha) == make_functions("x", 2)
    assert filled.stats().functions == sum(s["n"] for s in MANIFEST.values()) - 6 + 2


def test_labels(filled: Store, caplog: pytest.LogCaptureFixture) -> None:
    sha = {k: digest(k, "sha256") for k in MANIFEST}
    # "b" came without an actor and inherits the family's; a conflicting actor is not applied.
    assert filled.get_sample(sha["b"]).actor == "Snake"
    with caplog.at_level(logging.WARNING):
        filled.add_sample(make_record("e", family="Turla", actor="Other"), [])
    assert "not applied" in caplog.text
    assert {r.actor for r in filled.samples(family="Turla")} == {"Snake"}
    # Relabelling a family's actor moves all its samples.
    gen = filled.generation()
    filled.update_labels(sha["a"], actor="Venomous Bear")
    assert filled.generation() > gen
    assert [r.actor for r in filled.samples(family="Turla")] == ["Venomous Bear"] * 3
    # Moving an unlabelled sample into a family; unlabelling keeps the effective actor.
    rec = filled.update_labels(sha["d"], family="Turla", version="2.0")
    assert (rec.family, rec.actor, rec.version) == ("Turla", "Venomous Bear", "2.0")
    rec = filled.update_labels(sha["d"], family=None)
    assert (rec.family, rec.actor) == (None, "Venomous Bear")
    # A new family takes the sample's actor; the left-behind empty family disappears.
    rec = filled.update_labels(sha["c"], family="Heodo", source="Report C", is_library=True)
    assert (rec.family, rec.actor, rec.source, rec.is_library) == (
        "Heodo",
        "TA542",
        "Report C",
        True,
    )
    fams = {f.name: f for f in filled.families()}
    assert set(fams) == {"Heodo", "Turla"}
    assert fams["Turla"].n_samples == 3 and fams["Turla"].n_functions == 10
    assert fams["Turla"].first_seen_min == "2014-11"
    assert fams["Turla"].sources == ("Report A", "Report B")
    assert [r.name for r in filled.samples(library=True)] == ["c.exe", "lib.exe"]
    assert [r.name for r in filled.samples(actor="Venomous Bear")] == [
        "a.exe",
        "b.exe",
        "d.exe",
        "e.exe",
    ]
    with pytest.raises(UsageError):
        filled.update_labels(sha["a"], colour="red")
    st = filled.stats()
    assert (st.samples, st.families, st.actors, st.library_samples) == (6, 2, 2, 2)


def test_delete(filled: Store) -> None:
    gen = filled.generation()
    filled.delete_sample(digest("c", "md5"))
    assert not filled.has_sample(digest("c", "sha256"))
    assert [f.name for f in filled.families()] == ["Turla"]
    assert filled.generation() > gen
    assert filled.stats().functions == sum(s["n"] for s in MANIFEST.values()) - 3
    with pytest.raises(NotFoundError):
        filled.delete_sample(digest("c", "sha256"))
    with pytest.raises(NotFoundError):
        filled.functions(digest("c", "sha256"))


def test_function_arrays(filled: Store) -> None:
    arr = filled.function_arrays()
    n = sum(s["n"] for s in MANIFEST.values())
    assert len(arr) == n and arr.generation == filled.generation()
    assert arr.code_sig.shape == arr.sem_sig.shape == (n, K)
    assert arr.code_sig.dtype == np.uint32 and arr.va.dtype == np.uint64
    assert arr.function_id.dtype == np.int64 and arr.sample_id.dtype == np.int32
    assert np.all(np.diff(arr.function_id) > 0)
    row = 0
    for key, spec in MANIFEST.items():
        rec = filled.get_sample(digest(key, "sha256"))
        assert rec.id is not None
        summary = arr.samples[rec.id]
        assert (summary.sha256, summary.family, summary.actor, summary.is_library) == (
            rec.sha256,
            rec.family,
            rec.actor,
            rec.is_library,
        )
        for f in make_functions(key, spec["n"]):
            assert arr.sample_id[row] == rec.id and int(arr.va[row]) == f.va
            assert int(arr.exact_hash[row]) == f.exact_hash
            assert arr.n_instructions[row] == f.n_instructions and arr.size[row] == f.size
            assert (arr.n_code_tokens[row], arr.n_sem_tokens[row]) == (
                f.n_code_tokens,
                f.n_sem_tokens,
            )
            assert np.array_equal(arr.code_sig[row], f.code_sig)
            assert np.array_equal(arr.sem_sig[row], f.sem_sig)
            row += 1


def test_function_arrays_empty(store: Store) -> None:
    arr = store.function_arrays()
    assert len(arr) == 0 and arr.code_sig.shape == (0, 0) and arr.samples == {}


def test_exception_mid_insert_writes_nothing(filled: Store) -> None:
    before, gen = filled.stats(), filled.generation()
    fns = Exploding(make_functions("new", 50), fail_at=30)
    with pytest.raises(RuntimeError, match="crashed"):
        filled.add_sample(make_record("new", family="NewFam", n_instructions=1), fns)
    with pytest.raises(RuntimeError):  # a failed replace keeps the old version
        filled.add_sample(make_record("a", family="NewFam"), fns, replace=True)
    assert not filled.has_sample(digest("new", "sha256"))
    assert filled.functions(digest("a", "sha256")) == make_functions("a", 6)
    assert filled.get_sample(digest("a", "sha256")).family == "Turla"
    assert "NewFam" not in {f.name for f in filled.families()}
    after = filled.stats()
    assert (after.samples, after.functions, after.families) == (
        before.samples,
        before.functions,
        before.families,
    )
    assert filled.generation() == gen
    assert len(filled.function_arrays()) == before.functions


def test_signature_length_mismatch(filled: Store) -> None:
    with pytest.raises(StoreError, match="one MinHash config"):
        filled.add_sample(make_record("k128"), make_functions("k128", 3, k=128))
    assert not filled.has_sample(digest("k128", "sha256"))


def test_bad_record(store: Store) -> None:
    rec = make_record("x")
    rec.sha256 = "xyz"
    with pytest.raises(StoreError, match="sha256"):
        store.add_sample(rec, [])


def test_hostile_strings_are_clipped(tmp_path: Path) -> None:
    cfg = StoreConfig(max_strings_per_function=2, max_string_chars=16)
    f = make_functions("h", 1)[0]
    hostile = FunctionFeatures(
        **{
            **{k: getattr(f, k) for k in FunctionFeatures.__slots__},
            "strings": ("x" * 100, "bad\udc80byte", "third"),
            "name": "name\udcff",
        }
    )
    for s in (SQLiteStore(tmp_path / "h.db", cfg), MemoryStore(cfg)):
        with s:
            s.add_sample(make_record("h"), [hostile])
            got = s.functions(digest("h", "sha256"))[0]
            assert len(got.strings) == 2 and got.strings[0] == "x" * 16
            assert got.strings[1].startswith("bad")


def test_feature_params(store: Store) -> None:
    assert store.feature_params() is None
    store.bind_feature_params({"num_perm": 64, "seed": 7, "ngram_sizes": (1, 2, 3)})
    store.bind_feature_params({"num_perm": 32, "seed": 7})  # no functions yet: rebinding is ok
    store.add_sample(make_record("a"), make_functions("a", 2))
    store.bind_feature_params({"num_perm": 32, "seed": 7})  # same again
    with pytest.raises(StoreError, match="seed"):
        store.bind_feature_params({"num_perm": 32, "seed": 8})
    assert store.feature_params() == {"num_perm": 32, "seed": 7}


def test_store_id(store: Store) -> None:
    sid = store.store_id()
    assert isinstance(sid, str) and len(sid) == 32 and int(sid, 16) >= 0
    store.add_sample(make_record("a"), make_functions("a", 2))
    store.delete_sample(digest("a", "sha256"))
    assert store.store_id() == sid  # writes never change it
    assert MemoryStore().store_id() != sid  # every store gets its own


def test_closed_store(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError):
        store.stats()


# --- SQLite only -------------------------------------------------------------------------


def test_sqlite_persists_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with SQLiteStore(path) as s:
        s.add_sample(make_record("a"), make_functions("a", 6))
        gen = s.generation()
    with SQLiteStore(path) as s:
        assert s.generation() == gen
        assert s.functions(digest("a", "sha256")) == make_functions("a", 6)
        st = s.stats()
        assert st.schema_version == sqlite_mod.SCHEMA_VERSION and st.size_bytes > 0
        assert st.path == str(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_sqlite_store_id_kept_and_given_to_old_stores(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with SQLiteStore(path) as s:
        s.add_sample(make_record("a"), make_functions("a", 2))
        sid, gen = s.store_id(), s.generation()
    with SQLiteStore(path) as s:
        assert s.store_id() == sid
    with SQLiteStore(tmp_path / "other.db") as s:
        assert s.store_id() != sid
    con = sqlite3.connect(path)  # a store made before store ids
    con.execute("DELETE FROM meta WHERE key = 'store_id'")
    con.commit()
    con.close()
    with SQLiteStore(path) as s:
        new = s.store_id()
        assert new != sid and s.generation() == gen  # a meta row only: nothing else changes
        assert s.stats().schema_version == 2
    with SQLiteStore(path) as s:
        assert s.store_id() == new


def test_saved_index_not_reused_by_a_refilled_store(tmp_path: Path,
                                                    bins: dict[str, Path]) -> None:
    """A store wiped and filled again to the same generation gets another store id, so the
    index saved beside the old one is rebuilt rather than mapped."""
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    db = tmp_path / "k.db"
    stamps, gens = [], []
    for family in ("first", "second"):
        with Kinship(db) as k:
            k.add([bins["netsh_x86.exe"]], Labels(family=family))
            assert k.match(bins["netsh_x64.exe"]).verdict.family == family
            gens.append(k.store.generation())
        stamps.append((Path(f"{db}.index") / "GENERATION").read_text())
        for p in tmp_path.glob("k.db*"):  # wipe the store, keep its saved index
            if p.is_file():
                p.unlink()
    assert gens[0] == gens[1] and stamps[0] != stamps[1]


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    SQLiteStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_sqlite_migrates_older_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.db"
    with SQLiteStore(path) as s:
        s.add_sample(make_record("a"), make_functions("a", 2))
    current = sqlite_mod.SCHEMA_VERSION
    monkeypatch.setattr(sqlite_mod, "SCHEMA_VERSION", current + 1)
    monkeypatch.setattr(
        sqlite_mod, "MIGRATIONS", {current: ("ALTER TABLE samples ADD COLUMN note TEXT",)}
    )
    with SQLiteStore(path) as s:
        assert s.stats().schema_version == current + 1
        assert s.functions(digest("a", "sha256")) == make_functions("a", 2)
    con = sqlite3.connect(path)
    assert "note" in {r[1] for r in con.execute("PRAGMA table_info(samples)")}
    con.close()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"MZ\x90\x00" + b"\x00" * 4000, "corrupt"),  # not an SQLite file at all
        (b"SQLite format 3\x00" + b"\xff" * 200, "corrupt"),  # truncated header
    ],
)
def test_sqlite_corrupt_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "k.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=match):
        SQLiteStore(path)


def test_sqlite_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a kinship store"):
        SQLiteStore(path)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from collections.abc import Sequence
    import numpy as np
    from kinship.features.model import FunctionFeatures
    from kinship.store.base import StoreConfig
    from kinship.store.model import SampleRecord
    from kinship.store.sqlite import SQLiteStore

    N, STOP = 40_000, 30_000
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, (2, 64), dtype=np.uint32)

    class Slow(Sequence):
        def __len__(self):
            return N
        def __getitem__(self, i):
            if i >= N:
                raise IndexError(i)
            if i == STOP:  # well inside the transaction: tell the parent, then hang
                print("MID", flush=True)
                time.sleep(120)
            return FunctionFeatures(i, None, 5, 1, 0, 20, i, sig[0], sig[1], 5, 0)

    store = SQLiteStore(sys.argv[1], StoreConfig(cache_size_kib=2000))  # small cache: spill
    rec = SampleRecord("b" * 64, "b" * 32, "b" * 40, "big.exe", "pe", "x64", 1, n_instructions=1)
    store.add_sample(rec, Slow())
    print("DONE", flush=True)
    """
)


def test_sqlite_sigkill_mid_transaction(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with SQLiteStore(path) as s:
        s.add_sample(make_record("a"), make_functions("a", 6))
        gen = s.generation()
    src = Path(sqlite_mod.__file__).parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "MID"
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1_000_000  # uncommitted pages really reached the file
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    t0 = time.monotonic()
    with SQLiteStore(path) as s:
        assert not s.has_sample("b" * 64)
        assert s.generation() == gen
        assert s.functions(digest("a", "sha256")) == make_functions("a", 6)
        assert s.stats().functions == 6 and len(s.function_arrays()) == 6
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        s.add_sample(make_record("c"), make_functions("c", 3))  # still writable
    assert time.monotonic() - t0 < 10


# --- paths -------------------------------------------------------------------------------


def test_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINSHIP_HOME", str(tmp_path / "home" / "nested"))
    assert default_home() == tmp_path / "home" / "nested" and default_home().is_dir()
    assert default_db_path() == tmp_path / "home" / "nested" / "kinship.db"
    monkeypatch.delenv("KINSHIP_HOME")
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / "pd" / app))
    assert default_home() == tmp_path / "pd" / "kinship"


def test_function_names(filled: Store) -> None:
    for key, spec in MANIFEST.items():
        sha = digest(key, "sha256")
        expected = {f.va: f.name for f in make_functions(key, spec["n"]) if f.name}
        assert filled.function_names(sha) == expected
    with pytest.raises(NotFoundError):
        filled.function_names("f" * 64)
