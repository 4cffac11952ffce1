"""A store kinship creates is private: malware samples and case names are the analyst's only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kinship.api import Kinship
from kinship.pipeline import Labels


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, under which files come out 0644
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_store_file_and_folders_are_private(tmp_path: Path, bins: dict[str, Path],
                                                umask_022: None) -> None:
    db = tmp_path / "case" / "kinship.db"
    db.parent.mkdir()
    with Kinship(db) as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh"))
        k.match(bins["netsh_x64.exe"])  # builds and saves the index next to the store
    assert _mode(db) == 0o600
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        assert _mode(wal) == 0o600
    assert _mode(db.parent / "samples") == 0o700
    assert [_mode(p) for p in db.parent.iterdir() if p.is_dir()] == [0o700] * len(
        [p for p in db.parent.iterdir() if p.is_dir()])
    index = db.with_name(db.name + ".index")
    assert index.is_dir() and _mode(index) == 0o700


def test_default_home_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 umask_022: None) -> None:
    from kinship.store.paths import default_db_path

    home = tmp_path / "home" / "kinship"
    monkeypatch.setenv("KINSHIP_HOME", str(home))
    db = default_db_path()
    assert _mode(home) == 0o700
    with Kinship(db):
        pass
    assert _mode(db) == 0o600


def test_existing_store_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "shared.db"
    with Kinship(db):
        pass
    os.chmod(db, 0o640)  # a team chose to share it read-only with a group
    with Kinship(db):
        pass
    assert _mode(db) == 0o640


def test_sample_copy_refuses_a_fifo_in_place_of_a_file(tmp_path: Path) -> None:
    """A sample swapped for a FIFO between listing and keeping: refused, never blocks."""
    import signal

    from kinship.exceptions import InputError
    from kinship.store.files import SampleFiles, sha256_file

    fifo = tmp_path / "sample.exe"
    os.mkfifo(fifo)
    files = SampleFiles(tmp_path / "samples")
    signal.alarm(10)  # a blocking open() would hang the test run: fail it instead
    try:
        with pytest.raises(InputError, match="not a regular file"):
            files.keep(fifo)
        with pytest.raises(InputError, match="not a regular file"):
            sha256_file(fifo)
    finally:
        signal.alarm(0)
    assert not list((tmp_path / "samples").glob("*"))  # no partial copy left behind


def test_sample_copy_is_private_and_content_addressed(tmp_path: Path, umask_022: None) -> None:
    import hashlib

    from kinship.store.files import SampleFiles

    src = tmp_path / "x.bin"
    src.write_bytes(b"MZ" + b"\0" * 100)
    files = SampleFiles(tmp_path / "samples")
    digest = files.keep(src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert files.keep(src) == digest  # twice: one copy
    assert [p.name for p in (tmp_path / "samples").iterdir()] == [digest]
    assert _mode(tmp_path / "samples" / digest) == 0o600
