"""Reference data shipped inside PyPI packages (MISP galaxies, MISP warning lists), read fast.

``pymispgalaxies`` builds objects for all ~100 galaxy clusters (about 3 s) and
``pymispwarninglists`` imports jsonschema and builds 2.5 million-entry sets (about 2 s) on every
call; a command that only needs five clusters or one set lookup per IOC should not pay that.
This module finds a package's data folder without importing the package and keys derived
("pre-digested") files on what was read::

    key = sha256(distribution version, name/size/mtime of every data file read)[:16]
    <cache dir>/<what>-<key>/...      built once, atomically (tmp folder + rename)

The cache dir is ``$KINSHIP_CACHE`` when set, else the platform's user cache dir. A cache that
cannot be written (read-only home) is not an error: the data is derived in memory each time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

CACHE_ENV = "KINSHIP_CACHE"  # environment variable that overrides the cache directory
# Bumped when the layout of a derived file changes, so that old caches are not read.
CACHE_FORMAT = 1


def cache_dir() -> Path:
    """``$KINSHIP_CACHE`` when set, else the platform's user cache dir for kinship."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("kinship"))


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def data_key(distribution: str, files: Iterable[Path]) -> str:
    """A key that changes when the distribution's version or any of ``files`` changes."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{distribution}\0{version}".encode())
    for f in sorted(files):
        st = f.stat()
        h.update(f"\0{f}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_folder(name: str, key: str, build: Callable[[Path], None]) -> Path | None:
    """``<cache dir>/<name>-<key>``, made by ``build(folder)`` when missing.

    Returns None when the cache cannot be written (the caller then derives in memory).
    Once the new one is in place, only the newest :data:`MAX_KEPT_VERSIONS` folders of the
    same ``name`` are kept.
    """
    root = cache_dir()
    final = root / f"{name}-{key}"
    if (final / "complete").is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    except OSError as e:
        logger.debug("cache %s not writable: %s", root, e)
        return None
    try:
        build(tmp)
        (tmp / "complete").write_text(key, encoding="ascii")
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return final if (final / "complete").is_file() else None
    except OSError as e:
        logger.debug("cannot write the cache %s: %s", final, e)
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    _prune(root, name, keep=final)
    return final


# Derived folders of one kind kept side by side: two environments (a venv and the system
# Python) with different package versions must not rebuild each other's cache on every call.
MAX_KEPT_VERSIONS = 3
# A build folder (".<name>-*") older than this was left by a killed process.
STALE_BUILD_SECONDS = 3600


def _prune(root: Path, name: str, keep: Path) -> None:
    """Remove all but the :data:`MAX_KEPT_VERSIONS` newest ``<name>-*`` folders (never
    ``keep``) and abandoned build folders."""
    import time

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    done = sorted((p for p in root.glob(f"{name}-*") if p.is_dir() and p != keep),
                  key=mtime, reverse=True)
    for old in done[MAX_KEPT_VERSIONS - 1:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(f".{name}-*"):
        if time.time() - mtime(tmp) > STALE_BUILD_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)


# pymisp imports these at import time, only for helpers kinship never calls (galaxy and
# taxonomy tag look-ups, warning-list checks); each pulls jsonschema, whose IRI grammars
# (rfc3987_syntax) take about 1 s to compile: the better part of a ``kinship export misp``.
PYMISP_OPTIONAL_IMPORTS = ("pymispgalaxies", "pytaxonomies", "pymispwarninglists")


def import_pymisp() -> ModuleType:
    """``import pymisp`` without its optional look-up helpers (see
    :data:`PYMISP_OPTIONAL_IMPORTS`): MISPEvent and MISPObject work the same."""
    if "pymisp" in sys.modules:
        return sys.modules["pymisp"]
    hidden = [m for m in PYMISP_OPTIONAL_IMPORTS if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes "import m" raise ImportError
    try:
        import pymisp
    finally:
        for m in hidden:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]
    return pymisp
