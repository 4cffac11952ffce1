"""Pieces of a match result that :meth:`kinship.api.Kinship.match_features` assembles around
the code-reuse ranking: the strings that may count as evidence, the reference functions'
names, and the warnings an analyst needs to read the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from kinship.index.reference import ReferenceIndex
from kinship.match.aggregate import CodeReuse
from kinship.match.result import FunctionMatch
from kinship.store.model import SampleRecord
from kinship.strings.extract import StringTable


def without_library_strings(strings: StringTable, library_vas: set[int],
                            runtime: frozenset[str] = frozenset()) -> StringTable:
    """``strings`` less those referenced only by library code and those a baseline pack lists
    as runtime strings (MinGW's "Unknown pseudo relocation protocol version %d.", the math
    error messages of its _matherr table): they are not family evidence."""
    if not library_vas and not runtime:
        return strings
    kept = [s for s in strings.strings
            if s.text not in runtime
            and not (s.functions and all(f in library_vas for f in s.functions))]
    return StringTable(kept, strings.truncated)


def name_references(matches: Sequence[FunctionMatch],
                    function_names: Callable[[str], dict[int, str]], *,
                    unstored_prefix: str) -> tuple[FunctionMatch, ...]:
    """``matches`` with reference function names (the in-memory index keeps none) from
    ``function_names(sha256)`` (the store's ``va -> name`` of a sample); references whose
    sha256 starts with ``unstored_prefix`` (baseline pack functions, not in the store) are not
    looked up."""
    wanted: dict[str, set[int]] = {}
    for m in matches:
        if m.ref_name is None and not m.ref_sample_sha256.startswith(unstored_prefix):
            wanted.setdefault(m.ref_sample_sha256, set()).add(m.ref_va)
    names: dict[tuple[str, int], str] = {}
    for sha, vas in wanted.items():
        known = function_names(sha)
        names.update({(sha, va): known[va] for va in vas if va in known})
    return tuple(
        dataclasses.replace(m, ref_name=names.get((m.ref_sample_sha256, m.ref_va)))
        if m.ref_name is None else m
        for m in matches
    )


def match_warnings(index: ReferenceIndex, code: CodeReuse, record: SampleRecord
                   ) -> tuple[str, ...]:
    """What the analyst must know to read this result: an empty store, or a sample none of
    whose code is known runtime/library code (its toolchain probably has no baseline, so
    runtime functions it shares with stored samples count as family evidence)."""
    out: list[str] = []
    if not index.families:
        out.append("the store holds no labelled (non-library) samples: there is nothing to "
                   "attribute to; add references with `kinship add FILE --family NAME`")
    if code.n_considered_functions >= 10 and not code.library_functions:
        what = " ".join(x for x in ((record.format or "").upper(), record.arch or "") if x)
        out.append(f"none of this {what} sample's functions "
                   "matched a compiler-runtime baseline or a library sample: its toolchain may "
                   "have no baseline here, so runtime code it shares with stored samples can "
                   "count as family evidence (see `kinship baseline list`; `kinship baseline "
                   "build` makes one from programs built with that toolchain)")
    return tuple(out)
