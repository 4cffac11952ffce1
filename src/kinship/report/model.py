"""The tactical intelligence report as a document: :class:`IntelReport` and one
:class:`SampleIntel` per analysed sample.

Built complete by :func:`kinship.report.build.build_report` (through
:meth:`kinship.api.Kinship.report`) and read by every renderer and exporter (HTML/Markdown,
STIX, MISP, Navigator, CSV); nothing downstream re-analyses. ``to_dict``/``from_dict`` are the
JSON edge (``intel.json``), derived from the types (:mod:`kinship.document`); the keys made
from other fields (a sample's ``verdict`` and ``top_evidence``, the report's ``techniques`` and
``rule_sets``) are computed fields, listed after the fields and not read back. Both classes are
filled in place by ``build_report``, so they are not frozen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import computed_field, model_validator

from kinship.document import Document, Meta
from kinship.intel.actors import ActorProfile
from kinship.intel.capabilities import CapabilitiesResult
from kinship.intel.iocs import IOC
from kinship.match.result import MatchResult, Verdict

# Shared-function evidence rows per sample in a report.
MAX_EVIDENCE_ROWS = 15


@dataclass
class SampleIntel(Document):
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> dict[str, Any] | None:
        """``MatchResult.to_dict()["verdict"]`` of :attr:`match`; None without a store."""
        return self._match_dict()["verdict"] if self.match is not None else None

    @computed_field  # type: ignore[prop-decorator]
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

    @model_validator(mode="before")
    @classmethod
    def _edited_verdict(cls, data: Any) -> Any:
        """A saved sample's ``verdict`` key is what people read and may edit, so it wins over
        the verdict inside ``match``."""
        if not isinstance(data, dict) or not data.get("match"):
            return data
        verdict, match = data.get("verdict"), data["match"]
        if not isinstance(verdict, dict) or not isinstance(match, dict) \
                or verdict == match.get("verdict"):
            return data
        names = {f.name for f in dataclasses.fields(Verdict)}
        edited = {k: v for k, v in verdict.items() if k in names}
        return {**data, "match": {**match, "verdict": edited}}


@dataclass
class IntelReport(Document):
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
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rule_sets(self) -> list[dict[str, Any]]:
        """The capability rule sets (used or not, and why), as the samples' runs saw them."""
        for s in self.samples:
            if s.capabilities is not None and s.capabilities.rule_sets:
                return [r.to_dict() for r in s.capabilities.rule_sets]
        return []

    @computed_field  # type: ignore[prop-decorator]
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


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

