"""Content-addressed copies of ingested sample files, next to the store: ``<dir>/samples/<sha256>``.

The database keeps features; evidence that needs the original bytes (side-by-side listings of a
reference function in a match, YARA validation against every stored sample, hex dumps) reads
them from here. Copies are written once (same hash, same bytes), atomically (temp file +
rename) and without execute permission: they are malware and only ever read as data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from kinship.binary.regular import open_regular
from kinship.exceptions import InputError

logger = logging.getLogger(__name__)

SAMPLES_DIR_NAME = "samples"
FILE_MODE = 0o600  # readable by the analyst only, never executable
DIR_MODE = 0o700  # the samples folder: the analyst only


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SampleFiles:
    """``root/<sha256>`` files. ``root`` is created on first write."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls, db_path: Path | None = None) -> SampleFiles:
        """Next to the store: ``<store dir>/samples`` (``$KINSHIP_HOME/samples`` by default)."""
        if db_path is None:
            from kinship.store.paths import default_home

            return cls(default_home() / SAMPLES_DIR_NAME)
        return cls(Path(db_path).parent / SAMPLES_DIR_NAME)

    def keep(self, path: Path) -> str:
        """Copy ``path`` in (once) and return its sha256."""
        if not path.exists():
            raise InputError(str(path), "no such file")
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        h = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=self.root, suffix=".part")  # created 0600
        tmp = Path(name)
        try:
            with open_regular(path) as src, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            dest = self.root / h.hexdigest()
            if dest.exists():
                tmp.unlink()
            else:
                os.chmod(tmp, FILE_MODE)
                tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return h.hexdigest()

    def keep_bytes(self, data: bytes) -> str:
        """Store ``data`` (e.g. a zip member) once and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        dest = self.root / digest
        if not dest.exists():
            self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(data)
            os.chmod(tmp, FILE_MODE)
            tmp.replace(dest)
        return digest

    def path_for(self, sha256: str) -> Path | None:
        p = self.root / sha256
        return p if p.is_file() else None

    def remove(self, sha256: str) -> None:
        p = self.root / sha256
        if p.is_file():
            p.unlink()
