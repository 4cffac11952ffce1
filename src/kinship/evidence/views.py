"""JSON-safe evidence views of a match: the coverage of the query's code per family and the
shared strings with provenance and hex dumps. The HTML page (:mod:`kinship.render.html`) and
the intelligence report draw them; computing them needs the analysed query, drawing does not.
"""

from __future__ import annotations

from typing import Any

from kinship.evidence.hexdump import HexDump, hexdump, hexdump_of
from kinship.evidence.references import ReferenceEvidence
from kinship.match.result import MatchResult
from kinship.pipeline import AnalysedSample

# Families drawn in the coverage map of a match page.
MAX_COVERAGE_ROWS = 5


def function_label(names: dict[int, str | None], va: int) -> str:
    """``0x401000 (name)``, or the address alone when the function has no name."""
    n = names.get(va)
    return f"{va:#x} ({n})" if n else f"{va:#x}"


def match_coverage(res: MatchResult, query: AnalysedSample) -> list[dict[str, Any]]:
    """Per family (first :data:`MAX_COVERAGE_ROWS`): the query's functions in address order as
    ``[va, instructions, best score or None, library]`` (JSON-safe;
    :func:`kinship.render.html.coverage_svg` of :func:`kinship.render.html.segments_of`
    draws it)."""
    feats = sorted(query.features, key=lambda f: f.va)
    lib_vas = res.library_vas | {m.query_va for m in res.function_matches if m.is_library}
    out = []
    for fam in res.families[:MAX_COVERAGE_ROWS]:
        best: dict[int, float] = {}
        for m in res.function_matches:
            if m.family == fam.family:
                best[m.query_va] = max(best.get(m.query_va, 0.0), m.score)
        # the number is the result's own (match/aggregate.py), so every view shows the same
        out.append({"family": fam.family, "covered": round(fam.coverage, 4),
                    "segments": [[f.va, f.n_instructions, best.get(f.va), f.va in lib_vas]
                                 for f in feats]})
    return out


def match_string_evidence(res: MatchResult, query: AnalysedSample | None,
                          refs: ReferenceEvidence | None = None) -> list[dict[str, Any]]:
    """The shared strings of a match, JSON-safe: per string its occurrences (query first)
    with provenance and a hex dump (``HexDump.to_dict()``: the query's and, when ``refs`` has
    it, the reference file's bytes; else the stored text at the stored offset).

    ``query`` None (a saved result re-rendered without its sample): the query's dumps show
    the string's own bytes at its offset."""
    refs = refs or ReferenceEvidence()
    names: dict[int, str | None] = (
        {f.va: f.name for f in query.features} if query is not None else {})
    data = query.binary.data if query is not None and query.binary is not None else b""
    q_name = query.record.name if query is not None else res.sample_sha256[:12]
    q_source = query.record.source if query is not None else None
    out = []
    for s in res.shared_strings:
        q = s.query
        raw = s.text.encode("utf-16-le") if q.encoding == "utf-16le" else s.text.encode(
            "latin-1", "replace")
        qdump: HexDump | None = None
        if data and q.offset is not None and q.encoding != "stack":
            qdump = hexdump(data, q.offset, len(raw))
        elif q.offset is not None and q.encoding != "stack":
            qdump = hexdump_of(raw, q.offset)
        occs: list[dict[str, Any]] = [{
            "name": q_name, "sha256": res.sample_sha256,
            "source": q_source, "offset": q.offset, "va": q.va,
            "section": q.section, "encoding": q.encoding,
            "functions": [function_label(names, va) for va in q.functions],
            "hexdump": qdump.to_dict() if qdump else None,
            "from_file": bool(data) and qdump is not None}]
        for r in s.references:
            rraw = s.text.encode("utf-16-le") if r.encoding == "utf-16le" else raw
            rdump = refs.dumps.get((r.sha256, r.offset)) if r.offset is not None else None
            from_file = rdump is not None
            if rdump is None and r.offset is not None:
                rdump = hexdump_of(rraw, r.offset)
            occs.append({
                "name": f"{r.name} [{r.family or 'unlabelled'}]", "sha256": r.sha256,
                "source": r.source, "offset": r.offset, "va": r.va, "section": r.section,
                "encoding": r.encoding, "functions": [],
                "hexdump": rdump.to_dict() if rdump else None, "from_file": from_file})
        out.append({"text": s.text, "weight": s.weight, "families": list(s.families),
                    "occurrences": occs})
    return out
