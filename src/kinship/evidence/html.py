"""Self-contained HTML evidence pages (``compare --html``, ``match --html``).

One file, no script, no external resource (CSS inline, coverage maps as inline SVG), so it
opens offline and can be attached to a report. Sections, each with a stable id for tests and
styling: ``#samples``, ``#verdict``, ``#families``, ``#coverage`` (``svg.coverage``),
``#pairs``, ``section.side-by-side`` (``table.listing``), ``#strings`` (``pre.hexdump``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from kinship.evidence.compare import CompareResult, FunctionPair
from kinship.evidence.hexdump import HexDump, HexLine, hexdump, hexdump_of
from kinship.evidence.references import ReferenceEvidence, ReferenceListing
from kinship.evidence.shared_strings import SharedStringsResult
from kinship.match.result import MatchResult
from kinship.pipeline import AnalysedSample
from kinship.report.verdict import confidence_text

TEMPLATE_DIR = Path(__file__).parent / "templates"
# Families drawn in the coverage map of a match page.
MAX_COVERAGE_ROWS = 5
# Function pairs listed in the pair table.
MAX_TABLE_PAIRS = 200
# Pixel width of a coverage bar.
COVERAGE_WIDTH = 900


@dataclass(frozen=True, slots=True)
class CoverageSegment:
    va: int
    size: int  # instructions (bar width)
    score: float | None  # best match score, None when unmatched
    library: bool = False
    label: str = ""


@dataclass
class _Occurrence:
    name: str
    sha256: str
    source: str | None
    offset: int | None
    va: int | None
    section: str | None
    encoding: str
    functions: list[str] = field(default_factory=list)
    lines: list[HexLine] = field(default_factory=list)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.globals["printable"] = lambda b: chr(b) if 0x20 <= b < 0x7F else "."
    env.filters["confidence"] = confidence_text
    return env


def _version() -> str:
    try:
        return pkg_version("kinship")
    except PackageNotFoundError:
        return "dev"


def coverage_svg(segments: Sequence[CoverageSegment], width: int = COVERAGE_WIDTH,
                 height: int = 18) -> Markup:
    """A horizontal bar: one rectangle per function, width by size, colour by score."""
    total = sum(max(1, s.size) for s in segments) or 1
    x = 0.0
    rects = []
    for s in segments:
        w = width * max(1, s.size) / total
        if s.library:
            colour = "#b0b0b0"
        elif s.score is None:
            colour = "#f2f2f2"
        else:  # light to dark green with the score
            g = int(200 - 120 * max(0.0, min(1.0, s.score)))
            colour = f"rgb(40,{g},70)"
        title = f"{s.va:#x} {s.label} " + (
            "library" if s.library else "no match" if s.score is None else f"{s.score:.2f}"
        )
        rects.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{colour}">'
            f"<title>{escape(title)}</title></rect>"
        )
        x += w
    return Markup(
        f'<svg class="coverage" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
        + "".join(rects)
        + f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#888"/>'
        "</svg>"
    )


def _fn_label(names: dict[int, str | None], va: int) -> str:
    n = names.get(va)
    return f"{va:#x} ({n})" if n else f"{va:#x}"


def _strings_context(strings: SharedStringsResult | None) -> list[dict[str, Any]]:
    if strings is None:
        return []
    samples = {s.sha256: s for s in strings.samples}
    out = []
    for row in strings.strings:
        occs = []
        for o in row.occurrences:
            s = samples[o.sha256]
            occs.append(_Occurrence(
                s.name, s.sha256, s.source, o.offset, o.va, o.section, o.encoding,
                [_fn_label({f.va: f.name}, f.va) for f in o.functions],
                o.hexdump.lines() if o.hexdump else [],
            ))
        out.append({"text": row.text, "weight": row.weight, "families": [],
                    "occurrences": occs})
    return out


def _pair_notes(p: FunctionPair) -> str:
    parts = list(p.apis[:6]) + [repr(s)[:60] for s in p.strings[:3]]
    return ", ".join(parts)


def render_compare_html(
    res: CompareResult,
    strings: SharedStringsResult | None = None,
    left: AnalysedSample | None = None,
) -> str:
    """The page for ``kinship compare A B --html``."""
    segments: list[CoverageSegment] = []
    if left is not None:
        best = {p.left_va: p for p in res.pairs}
        for f in sorted(left.features, key=lambda f: f.va):
            p = best.get(f.va)
            segments.append(CoverageSegment(
                f.va, f.n_instructions, p.score if p else None, bool(p and p.is_library),
                f.name or ""))
    ctx = {
        "title": f"kinship compare: {res.left.name} vs {res.right.name}",
        "version": _version(),
        "samples": [
            {**vars(res.left), "role": "left (query)"},
            {**vars(res.right), "role": "right (reference)"},
        ],
        "verdict": None,
        "comparison": {"similarity": res.similarity,
                       "n_library": sum(1 for p in res.pairs if p.is_library)},
        "families": [],
        "coverage": [{"label": f"{res.left.name} in {res.right.name}: ",
                      "svg": coverage_svg(segments)}] if segments else [],
        "pairs": [
            {"qva": p.left_va, "qname": p.left_name, "rva": p.right_va, "rname": p.right_name,
             "rsha": res.right.sha256, "family": res.right.family, "library": p.is_library,
             "library_label": p.library, "score": p.score, "kind": p.kind,
             "notes": _pair_notes(p)}
            for p in res.pairs[:MAX_TABLE_PAIRS]
        ],
        "listings": [
            {"pair": p, "left_title": f"{res.left.name} ({res.left.arch})",
             "right_title": f"{res.right.name} ({res.right.arch})",
             "right_sha256": res.right.sha256, "right_source": res.right.source}
            for p in res.pairs if p.rows],
        "strings": _strings_context(strings),
        "evidence_seconds": None,
        "missing_files": [],
        "signals": [],
    }
    return _env().get_template("report.html.j2").render(**ctx)


def match_coverage(res: MatchResult, query: AnalysedSample) -> list[dict[str, Any]]:
    """Per family (first :data:`MAX_COVERAGE_ROWS`): the query's functions in address order as
    ``[va, instructions, best score or None, library]`` (JSON-safe; :func:`coverage_svg` of
    :func:`segments_of` draws it)."""
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


def segments_of(row: dict[str, Any]) -> list[CoverageSegment]:
    return [CoverageSegment(int(va), int(n), score, bool(lib))
            for va, n, score, lib in row["segments"]]


def match_string_evidence(res: MatchResult, query: AnalysedSample,
                          refs: ReferenceEvidence | None = None) -> list[dict[str, Any]]:
    """The shared strings of a match, JSON-safe: per string its occurrences (query first)
    with provenance and a hex dump (``HexDump.to_dict()``: the query's and, when ``refs`` has
    it, the reference file's bytes; else the stored text at the stored offset)."""
    refs = refs or ReferenceEvidence()
    names: dict[int, str | None] = {f.va: f.name for f in query.features}
    data = query.binary.data if query.binary is not None else b""
    out = []
    for s in res.shared_strings:
        q = s.query
        raw = s.text.encode("utf-16-le") if q.encoding == "utf-16le" else s.text.encode(
            "latin-1", "replace")
        qdump: HexDump | None = None
        if data and q.offset is not None and q.encoding != "stack":
            qdump = hexdump(data, q.offset, len(raw))
        occs: list[dict[str, Any]] = [{
            "name": query.record.name, "sha256": query.record.sha256,
            "source": query.record.source, "offset": q.offset, "va": q.va,
            "section": q.section, "encoding": q.encoding,
            "functions": [_fn_label(names, va) for va in q.functions],
            "hexdump": qdump.to_dict() if qdump else None, "from_file": qdump is not None}]
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


def hexlines(d: dict[str, Any] | None) -> list[HexLine]:
    """Lines of a ``HexDump.to_dict()`` (for templates)."""
    return HexDump.from_dict(d).lines() if d else []


def listing_context(rl: ReferenceListing, query_name: str, query_arch: str) -> dict[str, Any]:
    return {"pair": rl.pair, "left_title": f"{query_name} ({query_arch})",
            "right_title": f"{rl.reference.name} ({rl.reference.arch}) "
                           f"[{rl.reference.family or 'unlabelled'}]",
            "right_sha256": rl.reference.sha256, "right_source": rl.reference.source}


def render_match_html(res: MatchResult, query: AnalysedSample,
                      refs: ReferenceEvidence | None = None) -> str:
    """The page for ``kinship match X --html``: verdict, families (code and string scores),
    a coverage map per family, the function-pair table, side-by-side listings of the top pairs
    and the shared strings with hex dumps.

    ``refs`` (:func:`kinship.evidence.references.reference_evidence`) brings the reference
    side from the kept sample files: listings, and hex dumps of the reference files' bytes.
    Without it (files not kept) reference dumps show the stored text at the stored offset."""
    refs = refs or ReferenceEvidence()
    coverage = [{"label": f"{row['family']}: ", "svg": coverage_svg(segments_of(row))}
                for row in match_coverage(res, query)]
    strings = [
        {**s, "occurrences": [
            _Occurrence(o["name"], o["sha256"], o["source"], o["offset"], o["va"],
                        o["section"], o["encoding"], o["functions"], hexlines(o["hexdump"]))
            for o in s["occurrences"]]}
        for s in match_string_evidence(res, query, refs)]
    rec = query.record
    ctx = {
        "title": f"kinship match: {rec.name}",
        "version": _version(),
        "samples": [{"role": "query", "name": rec.name, "sha256": rec.sha256,
                     "format": rec.format, "arch": rec.arch, "family": rec.family,
                     "source": rec.source}],
        "verdict": res.verdict,
        "warnings": res.warnings,
        "comparison": None,
        "families": res.families,
        "coverage": coverage,
        "pairs": [
            {"qva": m.query_va, "qname": m.query_name, "rva": m.ref_va, "rname": m.ref_name,
             "rsha": m.ref_sample_sha256, "family": m.family, "library": m.is_library,
             "library_label": m.library, "score": m.score, "kind": m.kind.value, "notes": ""}
            for m in res.function_matches[:MAX_TABLE_PAIRS]
        ],
        "listings": [listing_context(rl, rec.name, rec.arch) for rl in refs.listings],
        "strings": strings,
        "evidence_seconds": refs.seconds if refs.listings or refs.dumps else None,
        "missing_files": refs.missing_files,
        "signals": res.sample_signals,
    }
    return _env().get_template("report.html.j2").render(**ctx)
