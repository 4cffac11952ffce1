"""``kinship compare A B``: matched function pairs with aligned side-by-side listings.

The figure an analyst puts in a report ("the same CreateProcess / CloseHandle / Sleep logic in
the 2016 32-bit sample and the 2019 64-bit sample") is one :class:`FunctionPair` rendered with
its :class:`ListingRow` list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kinship.binary.model import Binary
from kinship.disasm.listing import ListingLine, listing
from kinship.disasm.model import Function
from kinship.evidence.align import align, identity


@dataclass
class Side:
    va: int | None
    text: str  # "mnemonic operands" in Intel syntax, annotated with API / string
    bytes_hex: str = ""
    api: str | None = None
    string: str | None = None


@dataclass
class ListingRow:
    kind: str  # same | api | similar | diff | gap
    left: Side | None
    right: Side | None


@dataclass
class FunctionPair:
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


@dataclass
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


@dataclass
class CompareResult:
    left: SampleRef
    right: SampleRef
    pairs: list[FunctionPair]
    similarity: float  # fraction of the left sample's (non-trivial) code matched in the right
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareResult:
        def side(s: dict[str, Any] | None) -> Side | None:
            return Side(**s) if s is not None else None

        pairs = []
        for p in d["pairs"]:
            rows = [ListingRow(r["kind"], side(r["left"]), side(r["right"])) for r in p["rows"]]
            pairs.append(FunctionPair(**{**p, "rows": rows}))
        return cls(
            left=SampleRef(**d["left"]),
            right=SampleRef(**d["right"]),
            pairs=pairs,
            similarity=d["similarity"],
            seconds=d.get("seconds", 0.0),
        )


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
