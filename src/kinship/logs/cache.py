"""A cache of Sigma rules parsed and converted to SQL (pySigma costs seconds per thousand
rules; the rules change seldom).

One JSON file per rule file, named by the SHA-256 of the rule file's bytes, the pySigma and
sqlite-backend versions and kinship's log-source mapping version, under
``default_home() / "cache" / "sigma"`` (created 0700). JSON, never pickle: an entry is data,
read back and checked; one that does not read (corrupt, truncated, of another shape) is
ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from kinship.logs.sources import MAPPING_VERSION
from kinship.store.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, default_home

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # of the entries' JSON
# An entry larger than this is not one of ours (a rule's entry is a few KiB).
MAX_ENTRY_SIZE = 4 << 20


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def versions() -> str:
    """What a converted rule depends on besides its bytes."""
    return (f"kinship-sigma-cache/{FORMAT_VERSION} pysigma/{_version('pysigma')} "
            f"pysigma-backend-sqlite/{_version('pysigma-backend-sqlite')} "
            f"mapping/{MAPPING_VERSION}")


class RuleCache:
    """Entries (JSON values) by key, as files ``<key>.json`` in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._salt = versions().encode() + b"\0"
        self._made = False

    @classmethod
    def default(cls) -> RuleCache:
        return cls(default_home() / "cache" / "sigma")

    def key(self, data: bytes) -> str:
        return hashlib.sha256(self._salt + data).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The entry, or None when missing or unreadable."""
        path = self.path(key)
        try:
            if path.stat().st_size > MAX_ENTRY_SIZE:
                return None
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # corrupt: rebuilt by the caller
            logger.info("sigma cache: %s unreadable (%s)", path, e)
            return None
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None
        return doc.get("value")

    def put(self, key: str, value: Any) -> None:
        """Store an entry (atomically); a cache that cannot be written is only logged."""
        try:
            if not self._made:
                self.folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
                self._made = True
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"key": key, "value": value}, f, separators=(",", ":"))
                os.chmod(tmp, PRIVATE_FILE_MODE)
                os.replace(tmp, self.path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            logger.warning("sigma cache: cannot write %s: %s", self.folder, e)
