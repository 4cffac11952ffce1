"""Which baseline packs a store uses, and how they join the reference index.

Packs are found in two places, built-in first:

1. ``kinship/baseline/data/*.kbl.npz``, shipped with the package (``tools/baseline/`` in the
   repository builds them from registry packages: Debian's MinGW-w64, GCC and clang, and
   MSVC-built wheels from PyPI);
2. the user's folder: ``$KINSHIP_BASELINES`` (folders separated by ``os.pathsep``), else
   ``$KINSHIP_HOME/baselines`` (``kinship baseline add`` copies packs there).

``$KINSHIP_BASELINE=off`` turns every pack off (a measurement of the engine without them).

In the index every library of a pack becomes one *library* pseudo-sample with a negative id
(``-1, -2, ...``) and its functions get negative function ids, so they never collide with a
store's rows; matches against them are reported as library code with the library's label.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kinship.baseline.pack import PACK_SUFFIX, BaselinePack
from kinship.exceptions import InputError
from kinship.store.base import FunctionArrays, SampleSummary
from kinship.store.paths import default_home

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent / "data"
BASELINES_ENV = "KINSHIP_BASELINES"
SWITCH_ENV = "KINSHIP_BASELINE"
BASELINE_SHA_PREFIX = "baseline:"  # SampleSummary.sha256 of a pack's pseudo-samples


@dataclass(frozen=True, slots=True)
class PackEntry:
    """A pack file as found, loaded or not (``error`` says why not)."""

    path: Path
    builtin: bool
    pack: BaselinePack | None
    error: str = ""


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def user_dirs() -> list[Path]:
    env = os.environ.get(BASELINES_ENV, "").strip()
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [default_home() / "baselines"]


def pack_files() -> list[tuple[Path, bool]]:
    """Every pack file, built-in ones first, each folder's in name order."""
    found: list[tuple[Path, bool]] = []
    for folder, builtin in [(BUILTIN_DIR, True)] + [(d, False) for d in user_dirs()]:
        if folder.is_dir():
            found.extend((p, builtin) for p in sorted(folder.glob(f"*{PACK_SUFFIX}")))
    return found


def discover(params: dict[str, Any]) -> list[PackEntry]:
    """Every pack file with its loaded pack, or why it is not used (damaged, made with other
    feature parameters, a name already taken by an earlier pack)."""
    out: list[PackEntry] = []
    names: set[str] = set()
    for path, builtin in pack_files():
        try:
            pack = _load_cached(path, path.stat().st_mtime_ns, path.stat().st_size)
        except (InputError, OSError) as e:
            out.append(PackEntry(path, builtin, None, str(e)))
            continue
        if not pack.compatible(params):
            out.append(PackEntry(path, builtin, None,
                                 "made with other feature parameters; rebuild it"))
        elif pack.name in names:
            out.append(PackEntry(path, builtin, None, f"a pack named {pack.name!r} came first"))
        else:
            names.add(pack.name)
            out.append(PackEntry(path, builtin, pack))
    return out


def active_packs(params: dict[str, Any]) -> list[BaselinePack]:
    """The packs a store uses now (none when ``$KINSHIP_BASELINE=off``); unusable files are
    logged once per process and skipped."""
    if not enabled():
        return []
    packs = []
    for e in discover(params):
        if e.pack is None:
            _warn_once(f"baseline pack {e.path} not used: {e.error}")
        else:
            packs.append(e.pack)
    return packs


def packs_digest(packs: list[BaselinePack]) -> str:
    """One token for a set of packs: a saved index built with other packs is stale."""
    if not packs:
        return "none"
    h = hashlib.blake2b(digest_size=8)
    for p in packs:
        h.update(p.digest().encode())
    return h.hexdigest()


def with_baseline(arrays: FunctionArrays, packs: list[BaselinePack]
                  ) -> tuple[FunctionArrays, dict[int, str]]:
    """``arrays`` plus every pack's functions as library rows, and the names of those rows
    (function id -> name). Packs whose sketch width differs from the store's are skipped."""
    packs = [p for p in packs if len(p)]
    width = (arrays.code_sig.shape[1] if arrays.code_sig.ndim == 2 and len(arrays)
             else packs[0].num_perm if packs else 0)
    packs = [p for p in packs if p.num_perm == width]
    if not packs:
        return arrays, {}
    samples = dict(arrays.samples)
    names: dict[int, str] = {}
    parts: dict[str, list[Any]] = {k: [] for k in (
        "function_id", "sample_id", "va", "n_instructions", "exact_hash", "code_sig",
        "sem_sig", "n_code_tokens", "n_sem_tokens", "size")}
    next_sample, next_fid = -1, -1
    for pack in packs:
        sid_of = np.zeros(len(pack.libraries), dtype=np.int32)
        for i, lib in enumerate(pack.libraries):
            sid_of[i] = next_sample
            samples[next_sample] = SampleSummary(
                sha256=f"{BASELINE_SHA_PREFIX}{pack.name}:{i}", name=lib.label, family=None,
                actor=None, is_library=True)
            next_sample -= 1
        n = len(pack)
        fids = np.arange(next_fid, next_fid - n, -1, dtype=np.int64)
        next_fid -= n
        names.update({int(f): nm for f, nm in zip(fids, pack.names, strict=True) if nm})
        parts["function_id"].append(fids)
        parts["sample_id"].append(sid_of[pack.library.astype(np.int64)])
        parts["va"].append(np.zeros(n, np.uint64))
        parts["n_instructions"].append(pack.n_instructions)
        parts["exact_hash"].append(pack.exact_hash)
        parts["code_sig"].append(pack.code_sig)
        parts["sem_sig"].append(pack.sem_sig)
        parts["n_code_tokens"].append(np.ones(n, np.int32))
        parts["n_sem_tokens"].append(pack.n_sem_tokens)
        parts["size"].append(np.zeros(n, np.int32))
    merged: dict[str, Any] = {}
    for key, extra in parts.items():
        base = getattr(arrays, key)
        if key in ("code_sig", "sem_sig") and base.shape[0] == 0:
            base = np.zeros((0, width), np.uint32)
        merged[key] = np.concatenate([base, *extra]).astype(base.dtype, copy=False)
    return replace(arrays, samples=samples, **merged), names


def runtime_strings(packs: list[BaselinePack]) -> frozenset[str]:
    """Texts of the packs' runtime strings (the C runtime's messages and formats)."""
    return frozenset(t for p in packs for t in p.strings)


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning("%s", msg)


@lru_cache(maxsize=64)
def _load_cached(path: Path, mtime_ns: int, size: int) -> BaselinePack:
    """Packs are loaded once per process (keyed by file identity)."""
    del mtime_ns, size  # part of the cache key only
    return BaselinePack.load(path)
