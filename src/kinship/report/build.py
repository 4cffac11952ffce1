"""The tactical intelligence report: built from the samples (:func:`build_report`, the
document is :class:`kinship.report.model.IntelReport`) and rendered to HTML/Markdown.

    samples -> analyse (kinship) -> match verdict (store) + reference samples' provenance
            -> actor profile (galaxies)
            -> capabilities/ATT&CK (kinship rules + capa rules if given; library code skipped)
            -> IOCs -> the attributed family's validated YARA + Sigma rules (report/detection)
            -> IntelReport -> report.html / report.md (Jinja2, en|ja) + intel.json
                           -> exports (kinship.export): STIX 2.1, MISP, Navigator, IOC CSV

The store is read through :class:`ReportStore` (narrow callables the facade builds), never
through the facade itself.

Every renderer and exporter reads :class:`IntelReport`; nothing re-analyses. Each claim in the
templates names its evidence (function address, string offset, rule) and its provenance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kinship.document import MetaFn
from kinship.evidence.references import ReferenceEvidence, ReferenceListing
from kinship.exceptions import KinshipError, NotFoundError
from kinship.intel.actors import resolve_actor
from kinship.intel.capabilities import (
    CapabilitiesConfig,
    find_capabilities,
    library_code,
    load_rule_sets,
)
from kinship.intel.iocs import iocs_from_sample
from kinship.match.result import MatchResult
from kinship.pipeline import AnalysedSample, SampleInput, analyse
from kinship.report.detection import DetectionRules, reference_rows, stored_labels
from kinship.report.model import IntelReport, SampleIntel, now_iso
from kinship.store.model import SampleRecord

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ja")


# Width of the left column of a plain-text side-by-side listing (Markdown report).
LISTING_COLUMN = 60
_MARK = {"same": "=", "api": "=", "similar": "~", "diff": "!", "gap": " "}


def side_by_side_text(pair: dict[str, Any]) -> str:
    """A ``FunctionPair`` (as a dict) as two plain-text columns, marks between them."""
    def cell(side: dict[str, Any] | None) -> str:
        return f"{side['va']:08x}  {side['text']}" if side else ""

    return "\n".join(f"{cell(r['left'])[:LISTING_COLUMN]:<{LISTING_COLUMN}} "
                     f"{_MARK.get(r['kind'], '?')} {cell(r['right'])}".rstrip()
                     for r in pair["rows"])


def _md_finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` of the Markdown template: data becomes inert Markdown text
    (:func:`kinship.render.safe.md`); what the template marks as Markdown it wrote itself
    (``|safe`` macros, ``md_code`` spans, ``md_fence`` blocks: :class:`Markup`) is kept."""
    from markupsafe import Markup

    from kinship.render.safe import md

    return value if isinstance(value, Markup) else md(value)


def _env(lang: str, kind: str = "html") -> Any:
    """The Jinja environment of a ``kind`` ("html": autoescaped; "md": every value through
    :func:`_md_finalize`, code through the ``code``/``block`` filters and ``fence``)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from kinship.intel.attack import tactic_name
    from kinship.render.html import TEMPLATE_DIR, coverage_svg, hexlines, segments_of
    from kinship.render.safe import md_block, md_code, md_fence
    from kinship.render.verdict import confidence_text, reason_text, verdict_view

    if kind == "md":
        env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=False,
                          finalize=_md_finalize, trim_blocks=True, lstrip_blocks=True)
        env.filters["code"] = md_code
        env.filters["block"] = md_block
        env.globals["fence"] = md_fence
    else:
        env = Environment(loader=FileSystemLoader([str(TEMPLATES), str(TEMPLATE_DIR)]),
                          autoescape=select_autoescape(["html", "j2"]),
                          trim_blocks=True, lstrip_blocks=True)
    env.filters["hex"] = lambda v: f"0x{v:x}" if isinstance(v, int) else "-"
    env.filters["tactic"] = lambda v: tactic_name(str(v), lang)
    env.filters["conf"] = confidence_text
    env.filters["reason"] = lambda v: reason_text(str(v or ""), lang)
    env.filters["num"] = lambda v, n=3: f"{float(v):.{n}f}" if v is not None else "-"
    env.filters["verdict_view"] = verdict_view
    env.globals["hexlines"] = hexlines
    env.globals["side_by_side_text"] = side_by_side_text
    env.globals["printable"] = lambda b: chr(b) if 0x20 <= b < 0x7F else "."
    env.globals["coverage_svg"] = lambda row: coverage_svg(segments_of(row))
    return env


def render(report: IntelReport, kind: str) -> str:
    """``kind`` "html" or "md"; the language is ``report.lang``."""
    lang = report.lang if report.lang in LANGUAGES else "en"
    env = _env(lang, kind)
    with (TEMPLATES / f"strings_{lang}.json").open(encoding="utf-8") as fh:
        text = json.load(fh)
    tmpl = env.get_template(f"report.{kind}.j2")
    return str(tmpl.render(r=report, d=report.to_dict(), t=text, lang=lang))


# Shared distinctive strings (each with hex dumps) per sample in a report: the best ones
# carry the argument; more make the report long without adding to it.
MAX_REPORT_STRINGS = 8

# VAs of a sample's functions recognised as library code (Kinship.library_functions).
LibraryFn = Callable[[AnalysedSample], set[int]]


@dataclass
class ReportOptions:
    """What ``build_report`` does beyond analysing the samples."""

    # capa rules directory (None: $KINSHIP_CAPA_RULES; neither: kinship's own rules only).
    capa_rules: Path | None = None
    # Attribute against the store (the verdict); False for a store-less report.
    use_store: bool = True
    # Actor to profile when the verdict names none (alias accepted), e.g. "Hidden Cobra".
    actor: str | None = None
    # Report language: "en" or "ja".
    lang: str = "en"
    # Drop IOCs on the MISP warning lists (kept in the report's "filtered" list).
    filter_benign: bool = True
    # Generate and validate the attributed family's YARA and Sigma rules from the store
    # (validation scans every kept sample file: off for a quick look at a large store).
    detection_rules: bool = True


@dataclass(frozen=True)
class ReportStore:
    """What a report reads from an open store, as narrow callables (built by
    :meth:`kinship.api.Kinship.report`; a test can give plain functions)."""

    # code + string match of an analysed sample against the store
    match: Callable[[AnalysedSample], MatchResult]
    # listings of the top ``max_pairs`` pairs and hex dumps, from the kept reference files
    reference_evidence: Callable[[MatchResult, AnalysedSample, int], ReferenceEvidence]
    # every stored sample's record (labels, provenance)
    samples: Callable[[], list[SampleRecord]]
    # the family's validated YARA and Sigma rules (report.detection.family_rules)
    family_rules: Callable[[str], DetectionRules]


def _listing_dict(rl: ReferenceListing) -> dict[str, Any]:
    return {"reference": asdict(rl.reference), "pair": asdict(rl.pair)}


def _add_match(si: SampleIntel, store: ReportStore, a: AnalysedSample,
               records: list[SampleRecord]) -> None:
    """The store's match of ``a`` and its evidence views (strings with hex dumps, top pair
    side by side, coverage, references) into ``si``: one reference sample re-analysed from
    the kept files."""
    from kinship.evidence.views import match_coverage, match_string_evidence

    res = store.match(a)
    refs = store.reference_evidence(res, a, 1)
    si.shared_strings = match_string_evidence(res, a, refs)[:MAX_REPORT_STRINGS]
    si.listing = _listing_dict(refs.listings[0]) if refs.listings else None
    si.coverage = match_coverage(res, a)
    si.match = res
    si.references = reference_rows(records, res)
    si.stored = stored_labels(records, a.record.sha256)


def _analyse_one(path: Path, store: ReportStore | None, library: LibraryFn, rules: Any,
                 opts: ReportOptions, warnings: list[str]) -> SampleIntel:
    """Analyse one sample: the store's verdict and evidence, capabilities and IOCs."""
    a = analyse(SampleInput(name=str(path), path=path), keep=True)
    assert a.binary is not None and a.disassembly is not None
    r = a.record
    si = SampleIntel(r.sha256, r.md5, r.sha1, r.name, r.format, r.arch, r.size, r.n_functions)
    if store is not None:
        try:
            _add_match(si, store, a, store.samples())
            assert si.match is not None
            warnings += [f"{r.name}: {w}" for w in si.match.warnings]
        except KinshipError as e:
            warnings.append(f"{r.name}: no verdict: {e}")
    library_vas, note = library_code(a, library)
    si.capabilities = find_capabilities(a.binary, a.disassembly, rules, name=r.name,
                                        library_vas=library_vas, library_note=note)
    ioc = iocs_from_sample(a.binary, a.disassembly, filter_benign=opts.filter_benign)
    si.iocs, si.filtered_iocs = ioc.iocs, ioc.filtered
    return si


def build_report(paths: list[Path], options: ReportOptions | None = None, *,
                 store: ReportStore | None = None, library: LibraryFn,
                 yara_rules: list[dict[str, Any]] | None = None,
                 title: str | None = None, meta: MetaFn | None = None) -> IntelReport:
    """Analyse ``paths`` once each and gather everything the report shows.

    ``store`` reads the open store (verdict, references, the family's rules), None for a
    store-less report (also when ``options.use_store`` is off); ``library`` recognises library
    code. ``yara_rules`` given here replace the generated ones. ``meta`` makes the report's
    meta block from the wall time of the whole build (None: left empty).
    """
    t0 = time.perf_counter()
    opts = options or ReportOptions()
    store = store if opts.use_store else None
    warnings: list[str] = []
    rules = load_rule_sets(CapabilitiesConfig(rules_dir=opts.capa_rules))
    samples = [_analyse_one(p, store, library, rules, opts, warnings) for p in paths]
    verdicts = [s.verdict for s in samples if s.verdict is not None]
    families = [str(v["family"]) for v in verdicts if v.get("family")]  # attributed only
    actors = [str(v["actor"]) for v in verdicts if v.get("actor")]
    actor = None
    actor_name = opts.actor or (max(set(actors), key=actors.count) if actors else None)
    if actor_name:
        try:
            actor = resolve_actor(actor_name)
        except NotFoundError as e:
            warnings.append(str(e))
    family = max(set(families), key=families.count) if families else None
    report = IntelReport(
        title=title or (family or ", ".join(s.name for s in samples)),
        created=now_iso(), samples=samples, family=family, actor=actor,
        yara_rules=list(yara_rules or []), lang=opts.lang, warnings=warnings,
    )
    if store is not None and family is not None and opts.detection_rules:
        det = store.family_rules(family)
        if yara_rules is None:
            report.yara_rules = det.yara
            report.rule_notes = det.notes
        else:
            report.rule_notes = [n for n in det.notes if n["kind"] != "yara"]
        report.sigma_rules = det.sigma
        report.n_family_samples, report.n_other_samples = det.n_members, det.n_others
    _match_analysed(report.yara_rules, paths, samples)
    if meta is None:
        return report
    return dataclasses.replace(report, meta=meta(time.perf_counter() - t0))


def _match_analysed(rules: list[dict[str, Any]], paths: list[Path],
                    samples: list[SampleIntel]) -> None:
    """Does each YARA rule catch the analysed samples? (``analysed``: name -> bool). The
    rules are made from the stored samples only, so this is a test on unseen files."""
    from kinship.rules.yara_validate import SCAN_TIMEOUT_S, compile_rule

    for rule in rules:
        compiled = compile_rule(rule["text"])
        rule["analysed"] = {s.name: bool(compiled.match(str(p), timeout=SCAN_TIMEOUT_S))
                            for p, s in zip(paths, samples, strict=True)}
