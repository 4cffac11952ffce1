"""Reference-side evidence of a match, from the sample files kept next to the store.

The store keeps features, not code, so a match alone names reference functions but cannot show
them. When the reference files are kept (``<store dir>/samples/<sha256>``), each referenced
sample is re-analysed once and the top matched pairs get an aligned side-by-side listing
(query left, reference right), and the shared strings get hex dumps of the reference file's
real bytes at the stored offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kinship.evidence.compare import FunctionPair, aligned_rows, shared, shared_apis
from kinship.evidence.hexdump import LINE_WIDTH, HexDump, hexdump
from kinship.match.result import FunctionMatch, MatchResult
from kinship.pipeline import AnalysedSample, SampleInput, analyse
from kinship.store.model import SampleRecord

logger = logging.getLogger(__name__)

# Pairs that get a side-by-side listing on a match page: each costs an alignment (ms) and the
# page stays readable.
MAX_REFERENCE_PAIRS = 10
# Distinct reference samples re-analysed for listings: each costs one full analysis
# (0.1-2 s for typical samples), the dominant cost of the evidence views.
MAX_REFERENCE_SAMPLES = 4

# sha256 -> the kept copy of a stored sample, if any (Kinship.sample_file)
FileLocator = Callable[[str], Path | None]
# sha256 -> the stored sample's record, if the store holds it
RecordLookup = Callable[[str], SampleRecord | None]


@dataclass
class ReferenceSample:
    """Provenance of one reference sample shown in the evidence."""

    sha256: str
    name: str
    arch: str
    family: str | None = None
    source: str | None = None


@dataclass
class ReferenceListing:
    """One query/reference function pair with its aligned rows (``pair.rows``)."""

    reference: ReferenceSample
    pair: FunctionPair


@dataclass
class ReferenceEvidence:
    listings: list[ReferenceListing] = field(default_factory=list)
    # (reference sha256, file offset) -> hex dump of the kept file's bytes there
    dumps: dict[tuple[str, int], HexDump] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)  # referenced, but no kept file
    seconds: float = 0.0  # wall time spent here (re-analysis, alignment, dumps)


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16le":
        return text.encode("utf-16-le")
    return text.encode("latin-1", "replace")


def _ranked_pairs(res: MatchResult, query: AnalysedSample) -> list[FunctionMatch]:
    """Non-library matches, best per query function: verdict family first, then by the
    weight of the most distinctive shared string the function references (code and string
    evidence agree: the routine that builds the netsh command before a runtime function that
    the library corpus happens to lack, whose strings other families share), then by score x
    size (a big exact match is better evidence than
    a small one)."""
    sizes = {f.va: f.n_instructions for f in query.features}
    string_weight: dict[int, float] = {}
    for s in res.shared_strings:
        for va in s.query.functions:
            string_weight[va] = max(string_weight.get(va, 0.0), s.weight)
    best: dict[int, FunctionMatch] = {}
    for m in res.function_matches:
        if m.is_library:
            continue
        if m.query_va not in best or m.score > best[m.query_va].score:
            best[m.query_va] = m
    fam = res.verdict.family

    def rank(m: FunctionMatch) -> tuple[bool, float, float]:
        return (fam is not None and m.family != fam, -string_weight.get(m.query_va, 0.0),
                -m.score * sizes.get(m.query_va, 1))

    return sorted(best.values(), key=rank)


def reference_evidence(
    res: MatchResult,
    query: AnalysedSample,
    locate: FileLocator,
    *,
    max_pairs: int = MAX_REFERENCE_PAIRS,
    max_samples: int = MAX_REFERENCE_SAMPLES,
    describe: Callable[[str], ReferenceSample | None] | None = None,
) -> ReferenceEvidence:
    """Listings of the top matched pairs and hex dumps of the shared strings, reading each
    referenced sample's kept file (``locate(sha256)``) and analysing it at most once.

    ``describe(sha256)`` gives a reference's provenance (name, family, source); by default it
    comes from the re-analysed file.
    """
    t0 = time.perf_counter()
    out = ReferenceEvidence()
    if query.binary is None or query.disassembly is None:
        return out
    qfun = {f.va: f for f in query.disassembly.functions}
    analysed: dict[str, AnalysedSample | None] = {}

    def load(sha: str) -> AnalysedSample | None:
        if sha not in analysed:
            path = locate(sha)
            if path is None:
                out.missing_files.append(sha)
                analysed[sha] = None
            elif len([a for a in analysed.values() if a is not None]) >= max_samples:
                return None
            else:
                analysed[sha] = analyse(SampleInput(name=str(path), path=path), keep=True)
        return analysed[sha]

    for m in _ranked_pairs(res, query):
        if len(out.listings) >= max_pairs:
            break
        ref = load(m.ref_sample_sha256)
        qf = qfun.get(m.query_va)
        if ref is None or ref.binary is None or ref.disassembly is None or qf is None:
            continue
        rf = next((f for f in ref.disassembly.functions if f.va == m.ref_va), None)
        if rf is None:
            continue
        rows, ident = aligned_rows(query.binary, qf, ref.binary, rf)
        pair = FunctionPair(
            left_va=qf.va, right_va=rf.va, left_name=qf.name, right_name=m.ref_name or rf.name,
            score=round(float(m.score), 4), kind=m.kind.value,
            left_instructions=qf.n_instructions, right_instructions=rf.n_instructions,
            apis=shared_apis(qf, rf), strings=shared(qf.strings, rf.strings),
            identity=round(ident, 4), rows=rows,
        )
        info = describe(m.ref_sample_sha256) if describe else None
        if info is None:
            rec = ref.record
            info = ReferenceSample(rec.sha256, Path(rec.name).name, rec.arch, m.family,
                                   rec.source)
        out.listings.append(ReferenceListing(info, pair))

    _add_dumps(out, res, analysed, locate)
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def _add_dumps(out: ReferenceEvidence, res: MatchResult,
               analysed: dict[str, AnalysedSample | None], locate: FileLocator) -> None:
    """Hex dumps of the shared strings at their stored offsets into ``out.dumps``: from the
    re-analysed files in memory, else read from the kept file (only the window needed)."""
    for s in res.shared_strings:
        for r in s.references:
            if r.offset is None or r.encoding == "stack" or (r.sha256, r.offset) in out.dumps:
                continue
            raw = _encode(s.text, r.encoding)
            a = analysed.get(r.sha256)
            data = a.binary.data if a is not None and a.binary is not None else None
            if data is None:
                path = locate(r.sha256)
                if path is None:
                    if r.sha256 not in out.missing_files:
                        out.missing_files.append(r.sha256)
                    continue
                with path.open("rb") as fh:
                    fh.seek(r.offset)
                    if fh.read(len(raw)) != raw:
                        logger.info("%s: %r not at offset %#x", r.sha256[:12], s.text, r.offset)
                        continue
                    lo = max(0, r.offset - 4 * LINE_WIDTH)
                    lo -= lo % LINE_WIDTH
                    fh.seek(lo)
                    window = fh.read(r.offset - lo + len(raw) + 4 * LINE_WIDTH)
                d = hexdump(window, r.offset - lo, len(raw))
                out.dumps[(r.sha256, r.offset)] = HexDump(
                    d.start + lo, d.data_hex, d.highlight_start + lo, d.highlight_end + lo)
                continue
            if bytes(data[r.offset:r.offset + len(raw)]) != raw:
                continue
            out.dumps[(r.sha256, r.offset)] = hexdump(bytes(data), r.offset, len(raw))


def match_reference_evidence(res: MatchResult, sample: AnalysedSample, locate: FileLocator,
                             lookup: RecordLookup, max_pairs: int = MAX_REFERENCE_PAIRS
                             ) -> ReferenceEvidence:
    """:func:`reference_evidence` from the kept files (``locate``), each reference described
    by its stored labels (``lookup``: name, family, source)."""

    def describe(sha: str) -> ReferenceSample | None:
        r = lookup(sha)
        if r is None:
            return None
        return ReferenceSample(r.sha256, Path(r.name).name, r.arch, r.family, r.source)

    return reference_evidence(res, sample, locate, max_pairs=max_pairs, describe=describe)
