"""Where kinship keeps its data when the user does not say (``--db``)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from kinship.exceptions import StoreError

HOME_ENV = "KINSHIP_HOME"  # environment variable that overrides the data directory
DB_FILE_NAME = "kinship.db"


def default_home() -> Path:
    """``$KINSHIP_HOME`` when set, else the platform's user data dir; created if missing."""
    env = os.environ.get(HOME_ENV, "").strip()
    home = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("kinship"))
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the kinship data directory {home}: {e}") from e
    return home


def default_db_path() -> Path:
    """The default SQLite store: ``default_home() / "kinship.db"``."""
    return default_home() / DB_FILE_NAME
