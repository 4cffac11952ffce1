"""The tactical intelligence report: one result model (:class:`IntelReport`) and its renderers.

    samples -> analyse (kinship) -> match verdict (store) + reference samples' provenance
            -> actor profile (galaxies)
            -> capabilities/ATT&CK (kinship rules + capa rules if given; library code skipped)
            -> IOCs -> the attributed family's validated YARA + Sigma rules (report/detection)
            -> IntelReport -> report.html / report.md (Jinja2, en|ja) + intel.json
                           -> exports: STIX 2.1, MISP event, Navigator layer, IOC CSV

Every renderer and exporter reads :class:`IntelReport`; nothing re-analyses. Each claim in the
templates names its evidence (function address, string offset, rule) and its provenance.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kinship.intel.actors import ActorProfile
from kinship.intel.capabilities import CapabilitiesResult
from kinship.intel.iocs import IOC

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ja")


@dataclass
class SampleIntel:
    """What the intel layer knows about one analysed sample."""

    sha256: str
    md5: str
    sha1: str
    name: str
    format: str
    arch: str
    size: int
    n_functions: int
    verdict: dict[str, Any] | None = None  # MatchResult.to_dict()["verdict"], if a store exists
    top_evidence: list[dict[str, Any]] = field(default_factory=list)  # shared functions
    capabilities: CapabilitiesResult | None = None
    iocs: list[IOC] = field(default_factory=list)
    filtered_iocs: list[IOC] = field(default_factory=list)
    # Evidence views (kinship.evidence), JSON-safe, when a store verdict exists:
    # shared distinctive strings with hex dumps (evidence.html.match_string_evidence)
    shared_strings: list[dict[str, Any]] = field(default_factory=list)
    # side-by-side listing of the top pair: {"reference": {...}, "pair": FunctionPair fields}
    listing: dict[str, Any] | None = None
    # coverage of the query's code per family (evidence.html.match_coverage)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    # stored samples it shares code with, with provenance (report.detection.reference_rows)
    references: list[dict[str, Any]] = field(default_factory=list)
    # its own labels when the store holds it (first seen, source ...)
    stored: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256, "md5": self.md5, "sha1": self.sha1, "name": self.name,
            "format": self.format, "arch": self.arch, "size": self.size,
            "n_functions": self.n_functions, "verdict": self.verdict,
            "top_evidence": self.top_evidence,
            "capabilities": self.capabilities.to_dict() if self.capabilities else None,
            "iocs": [i.to_dict() for i in self.iocs],
            "filtered_iocs": [i.to_dict() for i in self.filtered_iocs],
            "shared_strings": self.shared_strings, "listing": self.listing,
            "coverage": self.coverage, "references": self.references, "stored": self.stored,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleIntel:
        caps = d.get("capabilities")
        return cls(
            sha256=d["sha256"], md5=d["md5"], sha1=d["sha1"], name=d["name"],
            format=d["format"], arch=d["arch"], size=int(d["size"]),
            n_functions=int(d["n_functions"]), verdict=d.get("verdict"),
            top_evidence=list(d.get("top_evidence", [])),
            capabilities=CapabilitiesResult.from_dict(caps) if caps else None,
            iocs=[IOC.from_dict(i) for i in d.get("iocs", [])],
            filtered_iocs=[IOC.from_dict(i) for i in d.get("filtered_iocs", [])],
            shared_strings=list(d.get("shared_strings", [])), listing=d.get("listing"),
            coverage=list(d.get("coverage", [])), references=list(d.get("references", [])),
            stored=d.get("stored"),
        )


@dataclass
class IntelReport:
    title: str
    created: str  # ISO 8601 UTC
    samples: list[SampleIntel]
    family: str | None = None
    actor: ActorProfile | None = None
    yara_rules: list[dict[str, Any]] = field(default_factory=list)  # FamilyRule.to_dict()
    lang: str = "en"
    tool: str = "kinship"
    warnings: list[str] = field(default_factory=list)
    sigma_rules: list[dict[str, Any]] = field(default_factory=list)  # SigmaRule.to_dict()
    # why the family has no (or a less tested) rule: report.detection notes
    rule_notes: list[dict[str, Any]] = field(default_factory=list)
    # the family's stored samples and the others: the rules' validation sets
    n_family_samples: int = 0
    n_other_samples: int = 0

    @property
    def rule_sets(self) -> list[dict[str, Any]]:
        """The capability rule sets (used or not, and why), as the samples' runs saw them."""
        for s in self.samples:
            if s.capabilities is not None and s.capabilities.rule_sets:
                return [r.to_dict() for r in s.capabilities.rule_sets]
        return []

    @property
    def techniques(self) -> list[dict[str, Any]]:
        """ATT&CK techniques over all samples: id, name, tactics, evidence with sample."""
        merged: dict[str, dict[str, Any]] = {}
        for s in self.samples:
            if s.capabilities is None:
                continue
            for t in s.capabilities.techniques:
                row = merged.setdefault(t.id, {"id": t.id, "name": t.name,
                                               "tactics": list(t.tactics), "rules": [],
                                               "evidence": []})
                row["rules"] = sorted(set(row["rules"]) | set(t.rules))
                for e in t.evidence:
                    row["evidence"].append({"sample": s.name, "sha256": s.sha256, "va": e.va,
                                            "function_va": e.function_va,
                                            "function_name": e.function_name,
                                            "features": list(e.features)})
        return [merged[k] for k in sorted(merged)]

    @property
    def iocs(self) -> list[IOC]:
        out: dict[tuple[str, str], IOC] = {}
        for s in self.samples:
            for i in s.iocs:
                if (i.type, i.value) in out:
                    out[(i.type, i.value)].sources.extend(i.sources)
                else:
                    out[(i.type, i.value)] = IOC(i.type, i.value, list(i.sources),
                                                 list(i.warning_lists))
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "created": self.created, "lang": self.lang, "tool": self.tool,
            "family": self.family,
            "actor": self.actor.to_dict() if self.actor else None,
            "samples": [s.to_dict() for s in self.samples],
            "techniques": self.techniques,
            "yara_rules": self.yara_rules,
            "sigma_rules": self.sigma_rules,
            "rule_notes": self.rule_notes,
            "n_family_samples": self.n_family_samples,
            "n_other_samples": self.n_other_samples,
            "rule_sets": self.rule_sets,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntelReport:
        """Inverse of :meth:`to_dict` (``techniques`` and ``rule_sets`` are derived, so they
        are not read back)."""
        return cls(
            title=d["title"], created=d["created"],
            samples=[SampleIntel.from_dict(s) for s in d.get("samples", [])],
            family=d.get("family"),
            actor=ActorProfile.from_dict(d["actor"]) if d.get("actor") else None,
            yara_rules=list(d.get("yara_rules", [])), lang=d.get("lang", "en"),
            tool=d.get("tool", "kinship"), warnings=list(d.get("warnings", [])),
            sigma_rules=list(d.get("sigma_rules", [])), rule_notes=list(d.get("rule_notes", [])),
            n_family_samples=int(d.get("n_family_samples", 0)),
            n_other_samples=int(d.get("n_other_samples", 0)),
        )


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    from kinship.evidence.html import coverage_svg, hexlines, segments_of
    from kinship.intel.attack import tactic_name
    from kinship.render.safe import md_block, md_code, md_fence
    from kinship.report.verdict import confidence_text, reason_text, verdict_view

    if kind == "md":
        env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=False,
                          finalize=_md_finalize, trim_blocks=True, lstrip_blocks=True)
        env.filters["code"] = md_code
        env.filters["block"] = md_block
        env.globals["fence"] = md_fence
    else:
        env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
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


def write_report(report: IntelReport, out: Path) -> dict[str, Path]:
    """report.html, report.md, intel.json and the exports into ``out``."""
    from kinship.export.csv_iocs import write_csv
    from kinship.export.misp import to_misp_event
    from kinship.export.navigator import to_layer
    from kinship.export.stix import to_bundle

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "intel.json", "stix": out / "stix-bundle.json",
        "misp": out / "misp-event.json", "navigator": out / "attack-navigator-layer.json",
        "csv": out / "iocs.csv",
    }
    files["json"].write_text(json.dumps(report.to_dict(), indent=2, default=str),
                             encoding="utf-8")
    files["stix"].write_text(to_bundle(report).serialize(pretty=True), encoding="utf-8")
    files["misp"].write_text(to_misp_event(report).to_json(indent=2), encoding="utf-8")
    files["navigator"].write_text(json.dumps(to_layer(report), indent=2), encoding="utf-8")
    write_csv(report, files["csv"])
    for n, rule in enumerate(report.yara_rules):
        p = out / f"{rule['name']}.yar"
        p.write_text(rule["text"], encoding="utf-8")
        files[f"yara{n}"] = p
    if report.sigma_rules:
        files["sigma"] = out / "sigma-rules.yml"
        files["sigma"].write_text("---\n".join(r["text"] for r in report.sigma_rules),
                                  encoding="utf-8")
    files["html"] = out / "report.html"
    files["md"] = out / "report.md"
    files["html"].write_text(render(report, "html"), encoding="utf-8")
    files["md"].write_text(render(report, "md"), encoding="utf-8")
    logger.info("report written to %s in %.2f s", out, time.perf_counter() - t0)
    return files


# Shared-function evidence rows per sample in a report.
MAX_EVIDENCE_ROWS = 15
# Shared distinctive strings (each with hex dumps) per sample in a report: the best ones
# carry the argument; more make the report long without adding to it.
MAX_REPORT_STRINGS = 8


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


def _listing_dict(rl: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"reference": asdict(rl.reference), "pair": asdict(rl.pair)}


def _add_evidence(si: SampleIntel, k: Any, res: Any, a: Any) -> None:
    """The evidence views of a match (strings with hex dumps, top pair side by side,
    coverage) into ``si``: one reference sample re-analysed from the kept files."""
    from kinship.evidence.html import match_coverage, match_string_evidence
    from kinship.evidence.references import match_reference_evidence

    refs = match_reference_evidence(k, res, a, max_pairs=1)
    si.shared_strings = match_string_evidence(res, a, refs)[:MAX_REPORT_STRINGS]
    si.listing = _listing_dict(refs.listings[0]) if refs.listings else None
    si.coverage = match_coverage(res, a)


def build_report(paths: list[Path], options: ReportOptions | None = None, *,
                 kinship: Any = None, yara_rules: list[dict[str, Any]] | None = None,
                 title: str | None = None) -> IntelReport:
    """Analyse ``paths`` once each and gather everything the report shows.

    ``kinship`` is an open :class:`kinship.api.Kinship` (verdict, references, library code,
    the family's rules) or None. ``yara_rules`` given here replace the generated ones.
    """
    from kinship.exceptions import KinshipError, NotFoundError
    from kinship.intel.actors import resolve_actor
    from kinship.intel.capabilities import (
        CapabilitiesConfig,
        find_capabilities,
        library_code,
        load_rule_sets,
    )
    from kinship.intel.iocs import iocs_from_sample
    from kinship.pipeline import SampleInput, analyse
    from kinship.report.detection import family_rules, reference_rows, stored_labels

    opts = options or ReportOptions()
    warnings: list[str] = []
    rules = load_rule_sets(CapabilitiesConfig(rules_dir=opts.capa_rules))
    store = kinship if opts.use_store else None
    samples: list[SampleIntel] = []
    families: list[str] = []
    actors: list[str] = []
    for p in paths:
        a = analyse(SampleInput(name=str(p), path=p), keep=True)
        assert a.binary is not None and a.disassembly is not None
        r = a.record
        si = SampleIntel(r.sha256, r.md5, r.sha1, r.name, r.format, r.arch, r.size,
                         r.n_functions)
        if store is not None:
            try:
                res = store.match_features(r, a.features, strings=a.strings)
                _add_evidence(si, store, res, a)
                d = res.to_dict()
                si.verdict = d["verdict"]
                si.top_evidence = [
                    {**m, "ref_sample": m["ref_sample_sha256"][:12]}
                    for m in d["function_matches"] if not m["is_library"]
                ][:MAX_EVIDENCE_ROWS]
                si.references = reference_rows(store, d)
                si.stored = stored_labels(store, r.sha256)
                warnings += [f"{r.name}: {w}" for w in d.get("warnings", [])]
                if si.verdict.get("family"):  # set only for an attributed verdict
                    families.append(si.verdict["family"])
                if si.verdict.get("actor"):
                    actors.append(si.verdict["actor"])
            except KinshipError as e:
                warnings.append(f"{r.name}: no verdict: {e}")
        library, note = library_code(a, store)
        si.capabilities = find_capabilities(a.binary, a.disassembly, rules, name=r.name,
                                            library_vas=library, library_note=note)
        ioc = iocs_from_sample(a.binary, a.disassembly, filter_benign=opts.filter_benign)
        si.iocs, si.filtered_iocs = ioc.iocs, ioc.filtered
        samples.append(si)
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
        det = family_rules(store, family)
        if yara_rules is None:
            report.yara_rules = det.yara
            report.rule_notes = det.notes
        else:
            report.rule_notes = [n for n in det.notes if n["kind"] != "yara"]
        report.sigma_rules = det.sigma
        report.n_family_samples, report.n_other_samples = det.n_members, det.n_others
    _match_analysed(report.yara_rules, paths, samples)
    return report


def _match_analysed(rules: list[dict[str, Any]], paths: list[Path],
                    samples: list[SampleIntel]) -> None:
    """Does each YARA rule catch the analysed samples? (``analysed``: name -> bool). The
    rules are made from the stored samples only, so this is a test on unseen files."""
    from kinship.rules.yara_validate import SCAN_TIMEOUT_S, compile_rule

    for rule in rules:
        compiled = compile_rule(rule["text"])
        rule["analysed"] = {s.name: bool(compiled.match(str(p), timeout=SCAN_TIMEOUT_S))
                            for p, s in zip(paths, samples, strict=True)}
