"""``kinship compare A B``: matched function pairs with aligned side-by-side listings.

The figure an analyst puts in a report ("the same CreateProcess / CloseHandle / Sleep logic in
the 2016 32-bit sample and the 2019 64-bit sample") is one :class:`FunctionPair` rendered with
its :class:`ListingRow` list.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field

from kinship.binary.model import Binary
from kinship.disasm.listing import ListingLine, listing
from kinship.disasm.model import Function
from kinship.document import Document, Meta, MetaFn
from kinship.evidence.align import align, identity
from kinship.exceptions import UsageError
from kinship.match.aggregate import ReferenceIndex, attribute
from kinship.match.config import MatchConfig
from kinship.match.result import FunctionMatch
from kinship.pipeline import AnalysedSample

# A compare shows at most this many pairs with full listings (the rest are listed without).
MAX_LISTED_PAIRS = 50


@dataclass(frozen=True)
class Side:
    va: int | None
    text: str  # "mnemonic operands" in Intel syntax, annotated with API / string
    bytes_hex: str = ""
    api: str | None = None
    string: str | None = None


@dataclass(frozen=True)
class ListingRow:
    kind: str  # same | api | similar | diff | gap
    left: Side | None
    right: Side | None


@dataclass
class FunctionPair:  # not frozen: compare_samples sets rows and identity
    left_va: int
    right_va: int
    left_name: str | None
    right_name: str | None
    score: float
    kind: str  # exact | code | sem
    left_instructions: int
    right_instructions: int
    apis: list[str] = field(default_factory=list)  # APIs both sides call
    strings: list[str] = field(default_factory=list)  # strings both sides reference
    identity: float = 0.0  # fraction of aligned rows that agree
    is_library: bool = False  # the left function is library/runtime code (baseline, corpus)
    library: str | None = None  # which library (baseline pack label or library sample)
    rows: list[ListingRow] = field(default_factory=list)


@dataclass(frozen=True)
class SampleRef:
    sha256: str
    name: str
    format: str
    arch: str
    n_functions: int
    family: str | None = None
    source: str | None = None
    actor: str | None = None
    first_seen: str | None = None


@dataclass(frozen=True)
class CompareResult(Document):
    left: SampleRef
    right: SampleRef
    pairs: list[FunctionPair]
    similarity: float  # fraction of the left sample's (non-trivial) code matched in the right
    seconds: float = 0.0
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)


def _side(line: ListingLine) -> Side:
    text = f"{line.mnemonic} {line.operands}".strip()
    return Side(va=line.va, text=text, bytes_hex=line.bytes_hex, api=line.api, string=line.string)


def aligned_rows(
    left_bin: Binary, left_fn: Function, right_bin: Binary, right_fn: Function
) -> tuple[list[ListingRow], float]:
    """Side-by-side rows of two functions, and their alignment identity."""
    ll = listing(left_bin, left_fn)
    rl = listing(right_bin, right_fn)
    rows = align(ll, rl)
    out = [
        ListingRow(
            r.kind,
            _side(ll[r.left]) if r.left is not None else None,
            _side(rl[r.right]) if r.right is not None else None,
        )
        for r in rows
    ]
    return out, identity(rows)


def _short_api(api: str) -> str:
    return api.split("!", 1)[-1]


def shared(a: list[str], b: list[str]) -> list[str]:
    """Items of ``a`` also in ``b``, first-occurrence order, no repeats."""
    bs = set(b)
    seen: set[str] = set()
    out = []
    for x in a:
        if x in bs and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def shared_apis(a: Function, b: Function) -> list[str]:
    return shared([_short_api(x) for x in a.apis], [_short_api(x) for x in b.apis])


# Imports from the C library (msvcrt, UCRT api-ms-win-crt-*, glibc): strlen or calloc in both
# functions of a pair says little about shared authorship; CreateProcessA does.
_CRT_API = re.compile(r"(?i)(msvcr\w*|ucrtbased?|api-ms-win-crt-[\w-]+|libc\.so[.\d]*)(\.dll)?!")


def _ref(s: AnalysedSample) -> SampleRef:
    r = s.record
    return SampleRef(r.sha256, r.name, r.format, r.arch, r.n_functions, r.family, r.source,
                     r.actor, r.first_seen)


def compare_samples(
    left: AnalysedSample, right: AnalysedSample, *, max_listed: int = MAX_LISTED_PAIRS,
    t0: float | None = None, library: dict[int, str] | None = None,
    config: MatchConfig | None = None, meta: MetaFn | None = None,
) -> CompareResult:
    """Pairs of ``left``'s functions with their best match in ``right``.

    Pairs are ranked by score times log size, weighted up by the strings and the
    non-C-library APIs both sides share (what an analyst shows first: the CreateProcess/Sleep
    routine, the netsh command builder), with library code (``library``: VA -> label of
    ``left``'s functions recognised as compiler runtime or library code) after everything else
    and out of the similarity. ``config`` gives ``min_instructions`` (default MatchConfig).
    """
    library = library or {}
    library_vas = set(library)
    t0 = t0 if t0 is not None else time.perf_counter()
    if left.disassembly is None or right.disassembly is None:
        raise UsageError("compare needs samples analysed with keep=True")
    assert left.binary is not None and right.binary is not None
    lfun = {f.va: f for f in left.disassembly.functions}
    rfun = {f.va: f for f in right.disassembly.functions}
    pairs: list[FunctionPair] = []
    for k, m in enumerate(_ranked_matches(left, right, library_vas)):
        lf, rf = lfun.get(m.query_va), rfun.get(m.ref_va)
        if lf is None or rf is None:
            continue
        pair = FunctionPair(
            left_va=lf.va, right_va=rf.va, left_name=lf.name, right_name=rf.name,
            score=round(float(m.score), 4), kind=m.kind.value,
            left_instructions=lf.n_instructions, right_instructions=rf.n_instructions,
            apis=shared_apis(lf, rf), strings=shared(lf.strings, rf.strings),
            is_library=lf.va in library_vas, library=library.get(lf.va),
        )
        if k < max_listed:
            pair.rows, pair.identity = aligned_rows(left.binary, lf, right.binary, rf)
            pair.identity = round(pair.identity, 4)
        pairs.append(pair)
    # similarity = the share of the left sample's own (non-library) instructions, in functions
    # of >= min_instructions, that have a match in the right one: the definition of a family's
    # coverage in `kinship match` (FamilyScore.coverage), so the two views agree
    min_ins = (config or MatchConfig()).min_instructions
    own = [f for f in left.features if f.va not in library_vas and f.n_instructions >= min_ins]
    matched = {p.left_va for p in pairs}
    total = sum(f.n_instructions for f in own) or 1
    covered = sum(f.n_instructions for f in own if f.va in matched)
    seconds = time.perf_counter() - t0
    return CompareResult(
        left=_ref(left), right=_ref(right), pairs=pairs,
        similarity=round(covered / total, 4), seconds=round(seconds, 3),
        meta=meta(seconds) if meta is not None else None,
    )


def _ranked_matches(left: AnalysedSample, right: AnalysedSample, library_vas: set[int]
                    ) -> list[FunctionMatch]:
    """The best match in ``right`` of each of ``left``'s functions, best evidence first and
    library code last (see :func:`compare_samples`)."""
    # Attribution lists function evidence per family, so the right sample becomes its own
    # one-sample "family" here.
    ref = dataclasses.replace(right.record, family=right.record.family or right.record.name,
                              is_library=False)
    index = ReferenceIndex.from_features([(ref, right.features)])
    res = attribute(left.features, index, sample_sha256=left.record.sha256, exclude_sha256=None)
    lfeat = {f.va: f for f in left.features}
    right_feat = {f.va: f for f in right.features}
    best: dict[int, FunctionMatch] = {}
    for m in res.function_matches:
        if m.query_va not in best or m.score > best[m.query_va].score:
            best[m.query_va] = m

    def rank(m: FunctionMatch) -> tuple[bool, float]:
        f, r = lfeat.get(m.query_va), right_feat.get(m.ref_va)
        size = f.n_instructions if f is not None else 1
        shared_ev = 0
        if f is not None and r is not None:  # shared strings count double; C library calls not
            shared_ev = 2 * len(set(f.strings) & set(r.strings)) + len(
                {a for a in set(f.apis) & set(r.apis) if not _CRT_API.match(a)})
        return (m.query_va in library_vas, -m.score * math.log1p(size) * (1 + shared_ev))

    return sorted(best.values(), key=rank)
