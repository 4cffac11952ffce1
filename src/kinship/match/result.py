"""The attribution result: one model for every renderer, JSON round-trip exact.

``MatchResult.to_dict()`` gives::

    {"sample": {"sha256": ...},
     "verdict": {"family", "actor", "confidence", "score", "status", "reason",
                 "candidate", "candidate_actor"},
     "families": [{"family", "actor", "score", "n_functions_matched", "coverage"}, ...],
     "actors": [{"actor", "score", "families"}, ...],
     "samples": [{"sha256", "name", "family", "score", "n_functions_matched"}, ...],
     "function_matches": [{"query_va", "query_name", "ref_sample_sha256", "ref_va", "ref_name",
                           "family", "score", "kind", "is_library", "library"}, ...],
     "n_query_functions", "n_considered_functions", "n_library_functions", "seconds",
     "shared_strings": [SharedString.to_dict(), ...],     (string reuse, match/combine.py)
     "sample_signals": [SampleSignal.to_dict(), ...],     (imphash/Rich/TLSH/PDB/exports)
     "warnings": ["...", ...],                            (empty store, no runtime baseline)
     "library_functions": [{"va", "name", "library"}, ...]}  (query code left out as library)

Family entries also carry ``code_score`` (None: not combined), ``string_score`` and
``n_strings_shared`` once string reuse is combined in; ``score`` is then the combined score.

and ``MatchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from kinship.match.sample_signals import SampleSignal
from kinship.strings.similarity import SharedString


class MatchKind(str, enum.Enum):
    """Which signal made a function pair match (the strongest one)."""

    EXACT = "exact"  # identical position-independent bytes
    CODE = "code"  # code-sketch Jaccard
    SEM = "sem"  # APIs/strings/constants/CFG-shape Jaccard


class VerdictStatus(str, enum.Enum):
    """How far the evidence goes (match/verdict.py decides)."""

    ATTRIBUTED = "attributed"  # a family is named, with a calibrated confidence
    WEAK = "weak"  # a family leads, but on too little distinctive evidence to be named
    UNKNOWN = "unknown"  # nothing explains enough of the sample, or two families tie


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer. ``family`` is set only when ``status`` is ``attributed``; a weak verdict
    names its leading family in ``candidate`` (not a verdict) and ``reason`` says why it is
    not more. ``confidence`` is the calibrated probability that the named family is right
    (match/verdict.py) and None unless attributed."""

    family: str | None  # None: no attribution ("unknown" or "weak")
    actor: str | None
    confidence: float | None  # 0..1 when attributed, else None
    score: float  # the top family's score (0..1)
    status: VerdictStatus | None = None  # None: derived (attributed iff family is set)
    reason: str = ""  # one sentence, for people
    candidate: str | None = None  # leading family of a weak/tied verdict
    candidate_actor: str | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            derived = VerdictStatus.ATTRIBUTED if self.family else VerdictStatus.UNKNOWN
            object.__setattr__(self, "status", derived)
        elif not isinstance(self.status, VerdictStatus):
            object.__setattr__(self, "status", VerdictStatus(self.status))

    @property
    def attributed(self) -> bool:
        return self.status is VerdictStatus.ATTRIBUTED

    def to_dict(self) -> dict[str, Any]:
        assert self.status is not None
        return {
            "family": self.family,
            "actor": self.actor,
            "confidence": self.confidence,
            "score": self.score,
            "status": self.status.value,
            "reason": self.reason,
            "candidate": self.candidate,
            "candidate_actor": self.candidate_actor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        conf = d.get("confidence")
        status = d.get("status")
        return cls(
            d["family"], d["actor"], None if conf is None else float(conf), float(d["score"]),
            VerdictStatus(status) if status else None, str(d.get("reason", "")),
            d.get("candidate"), d.get("candidate_actor"),
        )


@dataclass(frozen=True, slots=True)
class FamilyScore:
    family: str
    actor: str | None
    score: float  # weighted fraction of the sample's non-library code explained (0..1)
    n_functions_matched: int  # query functions with a match in this family
    coverage: float  # share of the query's non-library instructions in matched functions (0..1)
    code_score: float | None = None  # code-reuse score when ``score`` combines strings too
    string_score: float = 0.0  # string-reuse score (strings/similarity.py), 0..1
    n_strings_shared: int = 0  # distinctive strings shared with the family
    # instructions of the non-library query functions matched in this family (evidence size)
    matched_instructions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "actor": self.actor,
            "score": self.score,
            "n_functions_matched": self.n_functions_matched,
            "coverage": self.coverage,
            "code_score": self.code_score,
            "string_score": self.string_score,
            "n_strings_shared": self.n_strings_shared,
            "matched_instructions": self.matched_instructions,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilyScore:
        code = d.get("code_score")
        return cls(
            d["family"],
            d["actor"],
            float(d["score"]),
            int(d["n_functions_matched"]),
            float(d["coverage"]),
            None if code is None else float(code),
            float(d.get("string_score", 0.0)),
            int(d.get("n_strings_shared", 0)),
            int(d.get("matched_instructions", 0)),
        )


@dataclass(frozen=True, slots=True)
class ActorScore:
    actor: str
    score: float  # max over the actor's families
    families: tuple[str, ...]  # the actor's matched families, best first

    def to_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "score": self.score, "families": list(self.families)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorScore:
        return cls(d["actor"], float(d["score"]), tuple(d["families"]))


@dataclass(frozen=True, slots=True)
class SampleScore:
    sha256: str
    name: str
    family: str | None
    score: float  # like FamilyScore.score, for one reference sample
    n_functions_matched: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "name": self.name,
            "family": self.family,
            "score": self.score,
            "n_functions_matched": self.n_functions_matched,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleScore:
        return cls(
            d["sha256"], d["name"], d["family"], float(d["score"]), int(d["n_functions_matched"])
        )


@dataclass(frozen=True, slots=True)
class FunctionMatch:
    query_va: int
    query_name: str | None
    ref_sample_sha256: str
    ref_va: int
    ref_name: str | None
    family: str | None  # family of the reference sample (None: unlabelled or library)
    score: float
    kind: MatchKind
    is_library: bool  # the reference is a library sample's function
    library: str | None = None  # label of that library (a baseline pack's or the sample's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query_va": self.query_va,
            "query_name": self.query_name,
            "ref_sample_sha256": self.ref_sample_sha256,
            "ref_va": self.ref_va,
            "ref_name": self.ref_name,
            "family": self.family,
            "score": self.score,
            "kind": self.kind.value,
            "is_library": self.is_library,
            "library": self.library,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FunctionMatch:
        return cls(
            int(d["query_va"]),
            d["query_name"],
            d["ref_sample_sha256"],
            int(d["ref_va"]),
            d["ref_name"],
            d["family"],
            float(d["score"]),
            MatchKind(d["kind"]),
            bool(d["is_library"]),
            d.get("library"),
        )


@dataclass(frozen=True, slots=True)
class LibraryHit:
    """A query function recognised as library/runtime code, and which library it is."""

    va: int
    name: str | None
    library: str  # baseline pack library label, library sample, or "shared by N families"

    def to_dict(self) -> dict[str, Any]:
        return {"va": self.va, "name": self.name, "library": self.library}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryHit:
        return cls(int(d["va"]), d.get("name"), str(d["library"]))


@dataclass(slots=True)
class MatchResult:
    sample_sha256: str
    verdict: Verdict
    families: list[FamilyScore] = field(default_factory=list)  # best first
    samples: list[SampleScore] = field(default_factory=list)  # best first
    function_matches: list[FunctionMatch] = field(default_factory=list)  # best first
    n_query_functions: int = 0  # functions in the query sample
    n_library_functions: int = 0  # of those, recognised as library code and dropped
    seconds: float = 0.0
    actors: list[ActorScore] = field(default_factory=list)  # best first
    n_considered_functions: int = 0  # query functions with >= min_instructions
    shared_strings: list[SharedString] = field(default_factory=list)  # best first
    # imphash / Rich header / TLSH / PDB / exports shared with stored samples (weak evidence,
    # never scored; match/sample_signals.py)
    sample_signals: list[SampleSignal] = field(default_factory=list)
    # Things the analyst must know to read the verdict (empty store, a toolchain without a
    # runtime baseline, ...), one sentence each.
    warnings: list[str] = field(default_factory=list)
    # every query function left out as library code (n_library_functions of them), by VA
    library_functions: list[LibraryHit] = field(default_factory=list)

    @property
    def library_vas(self) -> set[int]:
        return {h.va for h in self.library_functions}

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample": {"sha256": self.sample_sha256},
            "verdict": self.verdict.to_dict(),
            "families": [f.to_dict() for f in self.families],
            "actors": [a.to_dict() for a in self.actors],
            "samples": [s.to_dict() for s in self.samples],
            "function_matches": [m.to_dict() for m in self.function_matches],
            "n_query_functions": self.n_query_functions,
            "n_considered_functions": self.n_considered_functions,
            "n_library_functions": self.n_library_functions,
            "seconds": self.seconds,
            "shared_strings": [x.to_dict() for x in self.shared_strings],
            "sample_signals": [x.to_dict() for x in self.sample_signals],
            "warnings": list(self.warnings),
            "library_functions": [h.to_dict() for h in self.library_functions],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatchResult:
        return cls(
            sample_sha256=d["sample"]["sha256"],
            verdict=Verdict.from_dict(d["verdict"]),
            families=[FamilyScore.from_dict(x) for x in d.get("families", [])],
            samples=[SampleScore.from_dict(x) for x in d.get("samples", [])],
            function_matches=[FunctionMatch.from_dict(x) for x in d.get("function_matches", [])],
            n_query_functions=int(d.get("n_query_functions", 0)),
            n_library_functions=int(d.get("n_library_functions", 0)),
            seconds=float(d.get("seconds", 0.0)),
            actors=[ActorScore.from_dict(x) for x in d.get("actors", [])],
            n_considered_functions=int(d.get("n_considered_functions", 0)),
            sample_signals=[SampleSignal.from_dict(x) for x in d.get("sample_signals", [])],
            shared_strings=[SharedString.from_dict(x) for x in d.get("shared_strings", [])],
            warnings=[str(x) for x in d.get("warnings", [])],
            library_functions=[LibraryHit.from_dict(x) for x in d.get("library_functions", [])],
        )
