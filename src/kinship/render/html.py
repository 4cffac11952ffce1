"""Self-contained HTML evidence pages (``compare --html``, ``match --html``) and the HTML
pieces the intelligence report shares with them.

One file, no script, no external resource (CSS inline, coverage maps as inline SVG), so it
opens offline and can be attached to a report. Sections, each with a stable id for tests and
styling: ``#samples``, ``#verdict``, ``#families``, ``#coverage`` (``svg.coverage``),
``#pairs``, ``section.side-by-side`` (``table.listing``), ``#strings`` (``pre.hexdump``).

Templates live in :data:`TEMPLATE_DIR`; every HTML page (``evidence.html.j2`` here, the
report's ``report.html.j2``) extends ``base.html.j2`` there (head, shared CSS, footer); the
environments autoescape, so every value from a sample is escaped.
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
from kinship.evidence.hexdump import HexDump, HexLine
from kinship.evidence.references import ReferenceEvidence, ReferenceListing
from kinship.evidence.shared_strings import SharedStringsResult
from kinship.evidence.views import function_label, match_coverage, match_string_evidence
from kinship.match.result import MatchResult
from kinship.pipeline import AnalysedSample
from kinship.render.verdict import confidence_text

TEMPLATE_DIR = Path(__file__).parent / "templates"
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
                [function_label({f.va: f.name}, f.va) for f in o.functions],
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
    return _env().get_template("evidence.html.j2").render(**ctx)


def segments_of(row: dict[str, Any]) -> list[CoverageSegment]:
    return [CoverageSegment(int(va), int(n), score, bool(lib))
            for va, n, score, lib in row["segments"]]


def hexlines(d: dict[str, Any] | None) -> list[HexLine]:
    """Lines of a ``HexDump.to_dict()`` (for templates)."""
    return HexDump.from_dict(d).lines() if d else []


def listing_context(rl: ReferenceListing, query_name: str, query_arch: str) -> dict[str, Any]:
    return {"pair": rl.pair, "left_title": f"{query_name} ({query_arch})",
            "right_title": f"{rl.reference.name} ({rl.reference.arch}) "
                           f"[{rl.reference.family or 'unlabelled'}]",
            "right_sha256": rl.reference.sha256, "right_source": rl.reference.source}


def render_match_html(res: MatchResult, query: AnalysedSample | None,
                      refs: ReferenceEvidence | None = None) -> str:
    """The page for ``kinship match X --html``: verdict, families (code and string scores),
    a coverage map per family, the function-pair table, side-by-side listings of the top pairs
    and the shared strings with hex dumps.

    ``refs`` (:func:`kinship.evidence.references.reference_evidence`) brings the reference
    side from the kept sample files: listings, and hex dumps of the reference files' bytes.
    Without it (files not kept) reference dumps show the stored text at the stored offset.
    ``query`` None: a saved result re-rendered without its sample (``kinship render``): no
    coverage map (it needs the sample's functions) and no query listings."""
    refs = refs or ReferenceEvidence()
    coverage = [{"label": f"{row['family']}: ", "svg": coverage_svg(segments_of(row))}
                for row in match_coverage(res, query)] if query is not None else []
    strings = [
        {**s, "occurrences": [
            _Occurrence(o["name"], o["sha256"], o["source"], o["offset"], o["va"],
                        o["section"], o["encoding"], o["functions"], hexlines(o["hexdump"]))
            for o in s["occurrences"]]}
        for s in match_string_evidence(res, query, refs)]
    rec = query.record if query is not None else None
    name = rec.name if rec is not None else res.sample_sha256[:12]
    ctx = {
        "title": f"kinship match: {name}",
        "version": _version(),
        "samples": [{"role": "query", "name": name, "sha256": res.sample_sha256,
                     "format": rec.format if rec else "", "arch": rec.arch if rec else "",
                     "family": rec.family if rec else None,
                     "source": rec.source if rec else None}],
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
        "listings": [listing_context(rl, name, rec.arch if rec else "") for rl in refs.listings],
        "strings": strings,
        "evidence_seconds": refs.seconds if refs.listings or refs.dumps else None,
        "missing_files": refs.missing_files,
        "signals": res.sample_signals,
    }
    return _env().get_template("evidence.html.j2").render(**ctx)
