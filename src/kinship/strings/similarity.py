"""String reuse: the second attribution signal beside code reuse.

For a query sample ``Q`` and a family ``F``::

    S_str(F) = sum_{s in Q and F} w(s)  /  max(sum_{s in Q} intrinsic(s), min_total_weight)

with ``w(s) = intrinsic(s) / n_families(s)`` (0 for strings of library samples; see rarity.py).
The denominator is the query's own distinctive-string mass, floored so that one shared string
in a sample with almost no strings cannot explain it entirely. ``S_str`` is 0..1.

Every shared string becomes a :class:`SharedString`: the text, its weight, where it is in the
query (offset, VA, section, referencing functions) and where it is in each reference sample
(sha256, name, family, source, offset, VA, section), so that a report can cite it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kinship.document import Document
from kinship.store.base import StoredString, StringPosting
from kinship.strings.extract import SampleString, StringTable
from kinship.strings.rarity import RarityConfig, corpus_rarity, intrinsic_weight

# Shared strings listed as evidence in a result (best first); the score uses all of them.
MAX_SHARED_STRINGS = 100
# Reference samples listed per shared string (the evidence view needs a few, not thousands).
MAX_OCCURRENCES_PER_STRING = 12


@dataclass(frozen=True, slots=True)
class StringReuseConfig:
    """Knobs of string-reuse scoring."""

    # Floor of the denominator of S_str, in intrinsic-weight units (one long distinctive string
    # = 1). Range 1..100; at 4, one shared template explains at most a quarter of a sample.
    min_total_weight: float = 4.0
    rarity: RarityConfig = field(default_factory=RarityConfig)


@dataclass(frozen=True, slots=True)
class StringOccurrence(Document):
    """Where one string is in one sample (provenance for a report)."""

    sha256: str
    name: str
    family: str | None
    source: str | None
    offset: int | None
    va: int | None
    section: str | None
    encoding: str
    functions: tuple[int, ...] = ()  # referencing functions (known for the query side only)


@dataclass(frozen=True, slots=True)
class SharedString(Document):
    """A distinctive string of the query also found in reference samples."""

    text: str
    weight: float  # intrinsic x rarity, 0..1
    query: StringOccurrence
    families: tuple[str, ...]  # labelled families that contain it, sorted
    references: tuple[StringOccurrence, ...]  # reference samples that contain it


@dataclass
class StringReuse:
    """String-reuse scores of one query against the store."""

    family_scores: dict[str, float]  # S_str per family, 0..1
    family_strings: dict[str, int]  # shared strings with positive weight, per family
    family_actor: dict[str, str | None]  # actor of each family seen (from the postings)
    shared: list[SharedString]  # best first (weight, then length)
    query_weight: float  # sum of the query's intrinsic weights (the denominator before the floor)


def to_stored(strings: Sequence[SampleString], config: RarityConfig | None = None
              ) -> list[StoredString]:
    """What the store keeps of a sample's strings: those with a positive intrinsic weight."""
    return [
        StoredString(s.text, s.encoding.value, s.offset, s.va, s.section)
        for s in strings
        if intrinsic_weight(s.text, config) > 0.0
    ]


def _first_by_text(table: StringTable) -> dict[str, SampleString]:
    out: dict[str, SampleString] = {}
    for s in table.strings:
        prev = out.get(s.text)
        if prev is None:
            out[s.text] = s
        elif not prev.functions and s.functions:
            out[s.text] = s  # prefer an occurrence code refers to
    return out


def string_reuse(
    query: StringTable,
    postings_of: Any,
    *,
    sample_sha256: str = "",
    sample_name: str = "",
    exclude_sha256: str | None = None,
    config: StringReuseConfig | None = None,
) -> StringReuse:
    """Score ``query``'s strings against the store.

    ``postings_of`` is ``Store.string_postings`` (or any callable with its signature): it is
    asked only for the query's distinctive texts. Postings of ``exclude_sha256`` are ignored.
    """
    cfg = config or StringReuseConfig()
    first = _first_by_text(query)
    intrinsic = {t: intrinsic_weight(t, cfg.rarity) for t in first}
    texts = [t for t, w in intrinsic.items() if w > 0.0]
    postings: dict[str, list[StringPosting]] = {
        t: [p for p in plist if p.sha256 != exclude_sha256]
        for t, plist in postings_of(texts).items()
    }
    rarity = corpus_rarity(texts, postings, cfg.rarity)
    total = sum(intrinsic[t] for t in texts)
    denom = max(total, cfg.min_total_weight)
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    actors: dict[str, str | None] = {}
    shared: list[SharedString] = []
    for t in texts:
        plist = postings.get(t)
        if not plist:
            continue
        r = rarity[t]
        families = tuple(sorted({p.family for p in plist if p.family and not p.is_library}))
        for p in plist:
            if p.family and not p.is_library:
                actors.setdefault(p.family, p.actor)
        w = r.weight
        if w > 0.0:
            for fam in families:
                scores[fam] = scores.get(fam, 0.0) + w / denom
                counts[fam] = counts.get(fam, 0) + 1
        q = first[t]
        shared.append(SharedString(
            text=t, weight=round(w, 6),
            query=StringOccurrence(sample_sha256, sample_name, None, None, q.offset, q.va,
                                   q.section, q.encoding.value, q.functions),
            families=families,
            references=tuple(
                StringOccurrence(p.sha256, p.name, p.family, p.source, p.string.offset,
                                 p.string.va, p.string.section, p.string.encoding)
                for p in plist[:MAX_OCCURRENCES_PER_STRING]
            ),
        ))
    shared.sort(key=lambda s: (-s.weight, -len(s.text), s.text))
    return StringReuse(
        family_scores={f: min(1.0, round(v, 6)) for f, v in scores.items()},
        family_strings=counts,
        family_actor=actors,
        shared=[s for s in shared if s.weight > 0.0][:MAX_SHARED_STRINGS],
        query_weight=round(total, 6),
    )
