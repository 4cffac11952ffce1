"""The reference index saved next to a store (``<db>.index/``), stamped with what it was built
from (store id, generation, baseline packs), so that a later process opens it instead of
building it again.

The folder is written privately and swapped in whole: a reader never sees half of it. Saving is
an optimisation: when it fails, matching goes on with the index in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kinship.exceptions import StoreError
from kinship.index.reference import ReferenceIndex
from kinship.store.paths import PRIVATE_DIR_MODE

logger = logging.getLogger(__name__)

STAMP_FILE = "GENERATION"  # in the index folder: the stamp it was saved with


def cached_index(cache: Path | None, stamp: str,
                 build: Callable[[], ReferenceIndex]) -> ReferenceIndex:
    """The index saved in ``cache`` when it carries ``stamp`` (opened memory-mapped: a query
    reads only what it needs); otherwise ``build()``'s, saved in ``cache`` for next time.
    ``cache`` None: always ``build()``, nothing saved."""
    index: ReferenceIndex | None = None
    if cache is not None and read_stamp(cache) == stamp:
        try:
            index = ReferenceIndex.load(cache, mmap=True)
        except StoreError as e:
            logger.warning("ignoring the saved index: %s", e)
    if index is None:
        index = build()
        if cache is not None:
            save_index(index, cache, stamp)
    return index


def read_stamp(cache: Path) -> str | None:
    """The stamp the index in ``cache`` was saved with; None when there is none."""
    try:
        return (cache / STAMP_FILE).read_text(encoding="ascii").strip()
    except OSError:
        return None


def save_index(index: ReferenceIndex, cache: Path, stamp: str) -> None:
    """Write the index to a private folder, then swap it in (readers never see half of it)."""
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        index.save(tmp)
        os.chmod(tmp, PRIVATE_DIR_MODE)
        (tmp / STAMP_FILE).write_text(stamp + "\n", encoding="ascii")
        old = cache.with_name(f"{cache.name}.old{os.getpid()}")
        if cache.exists():
            cache.rename(old)
        tmp.rename(cache)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, StoreError) as e:  # the cache is an optimisation; matching goes on
        logger.warning("could not save the index next to the store: %s", e)
        shutil.rmtree(tmp, ignore_errors=True)
