"""Make a baseline pack from programs built with one toolchain (``kinship baseline build``).

Which functions of the inputs are runtime code:

* every function, except those whose symbol name matches ``exclude`` (the programs' own
  functions, e.g. ``^(main|probe_.*)$``) and, for a stripped copy, every function that lies
  inside such an excluded function's bytes; and, with ``min_programs`` > 1,
* only functions whose exact hash occurs in at least ``min_programs`` distinct programs
  (``program`` key of each input: wheels of different projects, say): code that unrelated
  programs share is runtime or common static-library code (how MSVC's vcruntime/UCRT start-up
  code is found in C-extension wheels, which carry no symbols).

Inputs are analysed like any sample (hostile-input limits apply); a file that fails is
reported and skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinship.baseline.pack import BaselinePack, LibraryInfo
from kinship.exceptions import InputError, UsageError
from kinship.features.model import FunctionFeatures
from kinship.pipeline import SampleInput, analyse, feature_params
from kinship.store.files import sha256_file

log = logging.getLogger(__name__)

# Decorations stripped before a symbol is compared with ``exclude``: leading underscores of
# i386 C names, stdcall "@12" suffixes, GCC clone suffixes (".constprop.0", ".isra.0", ...).
# Longer strings are not kept in a pack (runtime messages are short; this bounds a pack built
# from a file full of text).
MAX_STRING_CHARS = 512
_DECORATION = re.compile(r"^_+|@\d+$|\.(constprop|isra|part|cold|lto_priv)(\.\d+)*$")


@dataclass(frozen=True, slots=True)
class BuildInput:
    """One file for a pack: which library group it feeds and which program it belongs to."""

    path: Path
    library: int  # index into the pack's libraries
    program: str = ""  # distinct programs count for min_programs (default: the file)
    stripped: Path | None = None  # a stripped copy: its functions are taken too


@dataclass
class BuildReport:
    pack: BaselinePack
    n_files: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    n_candidates: int = 0  # functions seen before the min_programs rule


def undecorate(name: str) -> str:
    prev = None
    while prev != name:
        prev, name = name, _DECORATION.sub("", name)
    return name


def _runtime_functions(item: BuildInput, exclude: re.Pattern[str] | None
                       ) -> tuple[list[FunctionFeatures], set[str]]:
    """The runtime functions of ``item`` and its runtime strings: every string except those
    referenced by the program's own (excluded) functions."""
    sample = analyse(SampleInput(name=str(item.path), path=item.path))
    feats = sample.features
    own = [f for f in feats if f.name and exclude and exclude.search(undecorate(f.name))]
    spans = [(f.va, f.va + max(f.size, 1)) for f in own]
    own_vas = {f.va for f in own}
    strings = {s.text for s in sample.strings.strings
               if not any(v in own_vas for v in s.functions)
               and len(s.text) <= MAX_STRING_CHARS}
    kept = [f for f in feats if f.va not in own_vas]
    if item.stripped is not None:
        seen = {f.exact_hash for f in kept}
        for f in analyse(SampleInput(name=str(item.stripped), path=item.stripped)).features:
            inside = any(lo <= f.va < hi for lo, hi in spans)
            if not inside and f.exact_hash not in seen:
                seen.add(f.exact_hash)
                kept.append(f)
    return kept, strings


def build_pack(
    name: str,
    libraries: Sequence[LibraryInfo],
    inputs: Sequence[BuildInput],
    *,
    exclude: str | None = None,
    min_programs: int = 1,
    description: str = "",
    progress: Callable[[int, int, str], None] | None = None,
) -> BuildReport:
    """Analyse ``inputs`` and keep their runtime functions (module docstring) as a pack."""
    if min_programs < 1:
        raise UsageError("min_programs must be >= 1")
    if not inputs:
        raise UsageError("a baseline pack needs at least one input file")
    try:
        pattern = re.compile(exclude) if exclude else None
    except re.error as e:
        raise UsageError(f"--exclude is not a valid regular expression: {e}") from e
    per_lib: list[dict[int, FunctionFeatures]] = [{} for _ in libraries]
    programs: dict[int, set[str]] = {}
    string_programs: dict[str, set[str]] = {}
    report_failed: list[tuple[str, str]] = []
    provenance: list[dict[str, Any]] = []
    for i, item in enumerate(inputs):
        if progress is not None:
            progress(i, len(inputs), item.path.name)
        if not 0 <= item.library < len(libraries):
            raise UsageError(f"{item.path}: library index {item.library} out of range")
        try:
            funcs, texts = _runtime_functions(item, pattern)
        except InputError as e:
            report_failed.append((str(item.path), e.reason))
            log.warning("%s", e)
            continue
        provenance.append({"file": item.path.name, "sha256": sha256_file(item.path),
                           "program": item.program or item.path.name,
                           "library": item.library})
        program = item.program or str(item.path)
        for f in funcs:
            per_lib[item.library].setdefault(f.exact_hash, f)
            programs.setdefault(f.exact_hash, set()).add(program)
        for t in texts:
            string_programs.setdefault(t, set()).add(program)
    n_candidates = sum(len(d) for d in per_lib)
    groups = [
        (lib, [f for h, f in d.items() if len(programs[h]) >= min_programs])
        for lib, d in zip(libraries, per_lib, strict=True)
    ]
    pack = BaselinePack.from_functions(name, groups, feature_params=feature_params(),
                                       description=description, inputs=provenance)
    pack.strings = sorted(t for t, progs in string_programs.items()
                          if len(progs) >= max(min_programs, 1))
    return BuildReport(pack, n_files=len(provenance), failed=report_failed,
                       n_candidates=n_candidates)
