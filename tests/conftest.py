"""Session-wide pytest fixtures: test binaries built from source, Debian's Lua libraries, a
private ``KINSHIP_HOME`` and a PostgreSQL test database (``pg_url``, ``pg_schema``).

``bins["netsh_x64.exe"]`` and ``lua_libs["5.4"]`` are :class:`pathlib.Path` objects. When a
fixture cannot be made here (no mingw-w64, no apt), looking it up skips the test with the
reason; under ``CI=true`` it fails instead, because .ci/run installs every tool.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_build_module() -> ModuleType:
    """Import tests/fixtures/build.py by path, whatever sys.path and rootdir pytest chose."""
    name = "kinship_tests_fixtures_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests/fixtures/build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


@pytest.fixture(scope="session")
def fixture_cache() -> Path:
    """The fixture cache directory ($KINSHIP_TEST_CACHE, else ~/.cache/kinship-tests)."""
    cache: Path = build.default_cache_dir()
    return cache


@pytest.fixture(scope="session")
def bins(fixture_cache: Path) -> dict[str, Path]:
    """Test binaries built from tests/fixtures/src (names in tests/fixtures/MANIFEST.md)."""
    built: dict[str, Path] = build.build_all(fixture_cache)
    return built


@pytest.fixture(scope="session")
def lua_libs(fixture_cache: Path) -> dict[str, Path]:
    """``{"5.1": Path, ..., "5.4": Path}``: Debian's amd64 liblua5.X.so, real files."""
    fetched: dict[str, Path] = build.fetch_lua(fixture_cache)
    return fetched


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``KINSHIP_HOME`` for one test."""
    home = tmp_path / "kinship-home"
    home.mkdir()
    monkeypatch.setenv("KINSHIP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_dir() -> Path | None:
    """``../shared`` next to the repository (corpus scripts, data), or None where absent."""
    shared = REPO_ROOT.parent / "shared"
    return shared if shared.is_dir() else None


PG_URL_ENV = "KINSHIP_TEST_PG_URL"


def skip_or_fail(reason: str) -> None:
    """Skip where a tool or data set is missing; under ``CI=true`` (which installs every tool
    and has ``../shared``) fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """``$KINSHIP_TEST_PG_URL``: a PostgreSQL database the tests may wipe (.ci/postgres.sh
    starts one). Unset: the test is skipped, except under ``CI=true`` where it fails."""
    url = os.environ.get(PG_URL_ENV, "").strip()
    if not url:
        reason = f"{PG_URL_ENV} is not set (no PostgreSQL server for the tests; .ci/postgres.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped (with its tables) afterwards."""
    import psycopg
    from psycopg import sql

    name = f"kt_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_default_schema(pg_url: str) -> Iterator[str]:
    """``pg_url`` with kinship's default schema (the one the CLI uses) wiped before and after
    the test; yields the URL."""
    import psycopg
    from psycopg import sql

    from kinship.store.postgres import DEFAULT_SCHEMA

    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(DEFAULT_SCHEMA))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(drop)
    yield pg_url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(drop)
