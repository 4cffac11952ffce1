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
from kinship.evidence.shared_strings import SharedStringsResult
from kinship.match.result import MatchResult, Verdict
from kinship.pipeline import AnalysedSample

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
    verdict = Verdict(res.right.family or res.right.name, None, res.similarity, res.similarity)
    ctx = {
        "title": f"kinship compare: {res.left.name} vs {res.right.name}",
        "version": _version(),
        "samples": [
            {**vars(res.left), "role": "left (query)"},
            {**vars(res.right), "role": "right (reference)"},
        ],
        "verdict": verdict,
        "families": [],
        "coverage": [{"label": f"{res.left.name} in {res.right.name}: ",
                      "svg": coverage_svg(segments)}] if segments else [],
        "pairs": [
            {"qva": p.left_va, "qname": p.left_name, "rva": p.right_va, "rname": p.right_name,
             "rsha": res.right.sha256, "family": res.right.family, "library": p.is_library,
             "score": p.score, "kind": p.kind, "notes": _pair_notes(p)}
            for p in res.pairs[:MAX_TABLE_PAIRS]
        ],
        "listings": [p for p in res.pairs if p.rows],
        "left_title": f"{res.left.name} ({res.left.arch})",
        "right_title": f"{res.right.name} ({res.right.arch})",
        "strings": _strings_context(strings),
    }
    return _env().get_template("report.html.j2").render(**ctx)


def render_match_html(res: MatchResult, query: AnalysedSample) -> str:
    """The page for ``kinship match X --html``: verdict, families (code and string scores),
    a coverage map per family, the function-pair table and the shared strings with hex dumps
    (the query's from its file; the references' from the offsets and text the store keeps)."""
    feats = sorted(query.features, key=lambda f: f.va)
    lib_vas = {m.query_va for m in res.function_matches if m.is_library}
    coverage = []
    for fam in res.families[:MAX_COVERAGE_ROWS]:
        best: dict[int, float] = {}
        for m in res.function_matches:
            if m.family == fam.family:
                best[m.query_va] = max(best.get(m.query_va, 0.0), m.score)
        segs = [CoverageSegment(f.va, f.n_instructions, best.get(f.va), f.va in lib_vas,
                                f.name or "") for f in feats]
        coverage.append({"label": f"{fam.family}: ", "svg": coverage_svg(segs)})
    names: dict[int, str | None] = {f.va: f.name for f in feats}
    strings = []
    data = query.binary.data if query.binary is not None else b""
    for s in res.shared_strings:
        occs = []
        q = s.query
        qdump: HexDump | None = None
        raw = s.text.encode("utf-16-le") if q.encoding == "utf-16le" else s.text.encode(
            "latin-1", "replace")
        if data and q.offset is not None and q.encoding != "stack":
            qdump = hexdump(data, q.offset, len(raw))
        occs.append(_Occurrence(
            query.record.name, query.record.sha256, query.record.source, q.offset, q.va,
            q.section, q.encoding, [_fn_label(names, va) for va in q.functions],
            qdump.lines() if qdump else []))
        for r in s.references:
            rraw = s.text.encode("utf-16-le") if r.encoding == "utf-16le" else raw
            rdump = hexdump_of(rraw, r.offset) if r.offset is not None else None
            occs.append(_Occurrence(
                f"{r.name} [{r.family or 'unlabelled'}]", r.sha256, r.source, r.offset, r.va,
                r.section, r.encoding, [], rdump.lines() if rdump else []))
        strings.append({"text": s.text, "weight": s.weight, "families": list(s.families),
                        "occurrences": occs})
    rec = query.record
    ctx = {
        "title": f"kinship match: {rec.name}",
        "version": _version(),
        "samples": [{"role": "query", "name": rec.name, "sha256": rec.sha256,
                     "format": rec.format, "arch": rec.arch, "family": rec.family,
                     "source": rec.source}],
        "verdict": res.verdict,
        "families": res.families,
        "coverage": coverage,
        "pairs": [
            {"qva": m.query_va, "qname": m.query_name, "rva": m.ref_va, "rname": m.ref_name,
             "rsha": m.ref_sample_sha256, "family": m.family, "library": m.is_library,
             "score": m.score, "kind": m.kind.value, "notes": ""}
            for m in res.function_matches[:MAX_TABLE_PAIRS]
        ],
        "listings": [],
        "left_title": "", "right_title": "",
        "strings": strings,
    }
    return _env().get_template("report.html.j2").render(**ctx)
