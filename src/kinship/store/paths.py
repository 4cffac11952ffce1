"""Where kinship keeps its data when the user does not say (``--db``), and how a PostgreSQL
store URL is told apart from a file, shown without its password and given a data folder."""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from pathlib import Path

import platformdirs

from kinship.exceptions import StoreError

HOME_ENV = "KINSHIP_HOME"  # environment variable that overrides the data directory
DB_FILE_NAME = "kinship.db"
DB_ENV = "KINSHIP_DB"  # environment variable: the store (file or URL) when --db is not given
PRIVATE_DIR_MODE = 0o700  # folders kinship creates: samples are malware, names are case data
PRIVATE_FILE_MODE = 0o600  # the store file it creates


def default_home() -> Path:
    """``$KINSHIP_HOME`` when set, else the platform's user data dir; created if missing."""
    env = os.environ.get(HOME_ENV, "").strip()
    home = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("kinship"))
    try:
        home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    except OSError as e:
        raise StoreError(f"cannot create the kinship data directory {home}: {e}") from e
    return home


def default_db() -> str | Path:
    """The store when none is given: ``$KINSHIP_DB`` (a file or a PostgreSQL URL) when set,
    else :func:`default_db_path`."""
    env = os.environ.get(DB_ENV, "").strip()
    return env if env else default_db_path()


def default_db_path() -> Path:
    """The default SQLite store: ``default_home() / "kinship.db"``."""
    return default_home() / DB_FILE_NAME


# --- PostgreSQL stores (``postgresql://user@host/dbname``) ----------------------------------

PG_URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: object) -> bool:
    """True when ``db`` names a PostgreSQL database (a ``postgresql://`` or ``postgres://``
    URL) rather than an SQLite file."""
    return isinstance(db, str) and db.strip().lower().startswith(PG_URL_SCHEMES)


def _split_url(url: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(url.strip())


def url_password(url: str) -> str:
    """The password in ``url`` ('' when none), to keep it out of messages."""
    try:
        parts = _split_url(url)
    except ValueError:
        return ""
    in_query = urllib.parse.parse_qs(parts.query).get("password", [""])[0]
    return urllib.parse.unquote(parts.password or "") or in_query


def redact_url(url: str) -> str:
    """``url`` without its password and query (``postgresql://user@host:port/dbname``), for
    messages and ``kinship db stats``."""
    try:
        parts = _split_url(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
    except ValueError:
        return "postgresql://<unparsable URL>"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def pg_data_dir(url: str) -> Path:
    """Where kinship keeps, for the PostgreSQL store at ``url``, what lives next to an SQLite
    file: ``default_home() / "pg-<12 hex of sha256(host:port/dbname)>"`` (``samples/`` and
    ``index/`` inside). User and password do not enter the hash: one database, one folder."""
    try:
        parts = _split_url(url)
        key = f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"
    except ValueError as e:
        raise StoreError(f"not a PostgreSQL URL: {redact_url(url)}") from e
    return default_home() / f"pg-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
