"""The tactical intelligence report as a document: :class:`IntelReport` and one
:class:`SampleIntel` per analysed sample.

Built complete by :func:`kinship.report.build.build_report` (through
:meth:`kinship.api.Kinship.report`) and read by every renderer and exporter (HTML/Markdown,
STIX, MISP, Navigator, CSV); nothing downstream re-analyses. ``to_dict``/``from_dict`` are the
JSON edge (``intel.json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kinship.intel.actors import ActorProfile
from kinship.intel.capabilities import CapabilitiesResult
from kinship.intel.iocs import IOC
from kinship.match.result import MatchResult, Verdict

# Shared-function evidence rows per sample in a report.
MAX_EVIDENCE_ROWS = 15


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
    match: MatchResult | None = None  # the store's match of the sample, if a store was used
    capabilities: CapabilitiesResult | None = None
    iocs: list[IOC] = field(default_factory=list)
    filtered_iocs: list[IOC] = field(default_factory=list)
    # Evidence views (kinship.evidence), JSON-safe, when a store verdict exists:
    # shared distinctive strings with hex dumps (match_string_evidence)
    shared_strings: list[dict[str, Any]] = field(default_factory=list)
    # side-by-side listing of the top pair: {"reference": {...}, "pair": FunctionPair fields}
    listing: dict[str, Any] | None = None
    # coverage of the query's code per family (match_coverage)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    # stored samples it shares code with, with provenance (report.detection.reference_rows)
    references: list[dict[str, Any]] = field(default_factory=list)
    # its own labels when the store holds it (first seen, source ...)
    stored: dict[str, Any] | None = None

    @property
    def verdict(self) -> dict[str, Any] | None:
        """``MatchResult.to_dict()["verdict"]`` of :attr:`match`; None without a store."""
        return self._match_dict()["verdict"] if self.match is not None else None

    @property
    def top_evidence(self) -> list[dict[str, Any]]:
        """The best non-library shared functions (``function_matches`` rows of the match's
        JSON, plus ``ref_sample``: the reference's short hash), at most
        :data:`MAX_EVIDENCE_ROWS`."""
        if self.match is None:
            return []
        rows = [m for m in self._match_dict()["function_matches"] if not m["is_library"]]
        return [{**m, "ref_sample": m["ref_sample_sha256"][:12]}
                for m in rows[:MAX_EVIDENCE_ROWS]]

    def _match_dict(self) -> dict[str, Any]:
        """The match's JSON (the JSON edge: the match serialises itself)."""
        assert self.match is not None
        return self.match.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256, "md5": self.md5, "sha1": self.sha1, "name": self.name,
            "format": self.format, "arch": self.arch, "size": self.size,
            "n_functions": self.n_functions, "verdict": self.verdict,
            "top_evidence": self.top_evidence,
            "match": self.match.to_dict() if self.match is not None else None,
            "capabilities": self.capabilities.to_dict() if self.capabilities else None,
            "iocs": [i.to_dict() for i in self.iocs],
            "filtered_iocs": [i.to_dict() for i in self.filtered_iocs],
            "shared_strings": self.shared_strings, "listing": self.listing,
            "coverage": self.coverage, "references": self.references, "stored": self.stored,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleIntel:
        """Inverse of :meth:`to_dict` (``verdict`` and ``top_evidence`` come from ``match``)."""
        caps = d.get("capabilities")
        return cls(
            sha256=d["sha256"], md5=d["md5"], sha1=d["sha1"], name=d["name"],
            format=d["format"], arch=d["arch"], size=int(d["size"]),
            n_functions=int(d["n_functions"]),
            match=_match_of(d),
            capabilities=CapabilitiesResult.from_dict(caps) if caps else None,
            iocs=[IOC.from_dict(i) for i in d.get("iocs", [])],
            filtered_iocs=[IOC.from_dict(i) for i in d.get("filtered_iocs", [])],
            shared_strings=list(d.get("shared_strings", [])), listing=d.get("listing"),
            coverage=list(d.get("coverage", [])), references=list(d.get("references", [])),
            stored=d.get("stored"),
        )


def _match_of(d: dict[str, Any]) -> MatchResult | None:
    """The match of a saved :class:`SampleIntel`; its ``verdict`` key is what people read
    and may edit, so it wins over the verdict inside ``match``."""
    if not d.get("match"):
        return None
    match = MatchResult.from_dict(d["match"])
    verdict = d.get("verdict")
    if verdict is None or verdict == match.to_dict()["verdict"]:
        return match
    names = {f.name for f in dataclasses.fields(Verdict)}
    return dataclasses.replace(
        match, verdict=Verdict(**{k: v for k, v in verdict.items() if k in names}))


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

