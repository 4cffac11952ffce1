"""``kinship strings A B C --shared``: the distinctive strings several samples share, with an
aligned hex dump per sample (the report figure of byte-identical command templates at the same
offsets in the 2016, 2018 and 2019 samples).

Generic strings are left out: those with no intrinsic weight (``%s``, ``kernel32.dll``,
``GetProcAddress``) and, when a store is given, those its library corpus contains (CRT
messages).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kinship.document import Document
from kinship.evidence.hexdump import HexDump, hexdump
from kinship.pipeline import AnalysedSample
from kinship.store.base import StringPosting
from kinship.strings.extract import SampleString
from kinship.strings.rarity import RarityConfig, corpus_rarity, intrinsic_weight

# Strings listed at most (best first).
MAX_LISTED_STRINGS = 200

PostingsFn = Callable[[Iterable[str]], Mapping[str, Sequence[StringPosting]]]


@dataclass(frozen=True)
class StringSample:
    """A sample of the view, with its provenance."""

    sha256: str
    name: str
    format: str
    arch: str
    family: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class FunctionRef:
    va: int
    name: str | None = None


@dataclass(frozen=True)
class StringInSample:
    """Where a shared string is in one sample."""

    sha256: str
    offset: int | None
    va: int | None
    section: str | None
    encoding: str
    functions: list[FunctionRef] = field(default_factory=list)
    hexdump: HexDump | None = None


@dataclass(frozen=True)
class SharedStringRow:
    text: str
    weight: float  # intrinsic x rarity (rarity 1 when no store was given)
    occurrences: list[StringInSample]  # one per sample that has it, in sample order
    same_offset: bool = False  # every occurrence at the same file offset


@dataclass(frozen=True)
class SharedStringsResult(Document):
    samples: list[StringSample]
    strings: list[SharedStringRow]
    min_samples: int
    seconds: float = 0.0


def _sample_ref(s: AnalysedSample) -> StringSample:
    r = s.record
    return StringSample(r.sha256, r.name, r.format, r.arch, r.family, r.source)


def _first(strings: Iterable[SampleString]) -> dict[str, SampleString]:
    out: dict[str, SampleString] = {}
    for s in strings:
        if s.text not in out or (not out[s.text].functions and s.functions):
            out[s.text] = s
    return out


def shared_strings(
    samples: Sequence[AnalysedSample],
    *,
    min_samples: int | None = None,
    postings: PostingsFn | None = None,
    config: RarityConfig | None = None,
    max_listed: int = MAX_LISTED_STRINGS,
) -> SharedStringsResult:
    """Distinctive strings found in at least ``min_samples`` of ``samples`` (default: all).

    ``postings`` (``Store.string_postings``) adds corpus rarity: strings of library samples are
    dropped and the weight divides by the number of families that have the string.
    """
    t0 = time.perf_counter()
    need = len(samples) if min_samples is None else max(1, min(min_samples, len(samples)))
    firsts = [_first(s.strings.strings) for s in samples]
    count: dict[str, int] = {}
    for f in firsts:
        for t in f:
            count[t] = count.get(t, 0) + 1
    texts = [t for t, n in count.items() if n >= need and intrinsic_weight(t, config) > 0.0]
    if postings is not None:
        own = {s.record.sha256 for s in samples}
        found = {t: [p for p in pl if p.sha256 not in own]
                 for t, pl in postings(texts).items()}
        rarity = corpus_rarity(texts, found, config)
        weights = {t: r.weight for t, r in rarity.items()}
    else:
        weights = {t: intrinsic_weight(t, config) for t in texts}
    rows: list[SharedStringRow] = []
    for t in texts:
        if weights[t] <= 0.0:
            continue
        occ: list[StringInSample] = []
        for sample, f in zip(samples, firsts, strict=True):
            s = f.get(t)
            if s is None:
                continue
            names = {}
            if sample.disassembly is not None:
                names = {fn.va: fn.name for fn in sample.disassembly.functions}
            dump = None
            if sample.binary is not None and s.offset is not None and s.encoding.value != "stack":
                dump = hexdump(sample.binary.data, s.offset, s.byte_length)
            occ.append(StringInSample(
                sample.record.sha256, s.offset, s.va, s.section, s.encoding.value,
                [FunctionRef(va, names.get(va)) for va in s.functions], dump,
            ))
        offsets = {o.offset for o in occ}
        rows.append(SharedStringRow(t, round(weights[t], 6), occ,
                                    len(offsets) == 1 and len(occ) > 1))
    rows.sort(key=lambda r: (-len(r.occurrences), -r.weight, -len(r.text), r.text))
    return SharedStringsResult(
        samples=[_sample_ref(s) for s in samples], strings=rows[:max_listed],
        min_samples=need, seconds=round(time.perf_counter() - t0, 4),
    )
