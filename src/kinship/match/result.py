"""The attribution result: one frozen document for every renderer, JSON round-trip exact.

``MatchResult.to_dict()`` (kinship.document.to_jsonable: keys are the fields, in order) gives::

    {"sample": {"sha256": ...},
     "verdict": {"family", "actor", "confidence", "score", "status", "reason",
                 "candidate", "candidate_actor"},
     "families": [{"family", "actor", "score", "n_functions_matched", "coverage",
                   "code_score", "string_score", "n_strings_shared",
                   "matched_instructions"}, ...],
     "actors": [{"actor", "score", "families"}, ...],
     "samples": [{"sha256", "name", "family", "score", "n_functions_matched"}, ...],
     "function_matches": [{"query_va", "query_name", "ref_sample_sha256", "ref_va", "ref_name",
                           "family", "score", "kind", "is_library", "library"}, ...],
     "n_query_functions", "n_considered_functions", "n_library_functions", "seconds",
     "shared_strings": [SharedString, ...],     (string reuse, match/combine.py)
     "sample_signals": [SampleSignal, ...],     (imphash/Rich/TLSH/PDB/exports)
     "warnings": ["...", ...],                  (empty store, no runtime baseline)
     "library_functions": [{"va", "name", "library"}, ...],  (query code left out as library)
     "meta": Meta | null}                       (kinship.document: version, store, time)

Family entries carry ``code_score`` (None: not combined), ``string_score`` and
``n_strings_shared`` once string reuse is combined in; ``score`` is then the combined score.
``tests/data/match_contract.json`` holds this contract as it was before results became
documents; ``MatchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kinship.document import Document, Meta
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


@dataclass(frozen=True, slots=True)
class ActorScore:
    actor: str
    score: float  # max over the actor's families
    families: tuple[str, ...]  # the actor's matched families, best first


@dataclass(frozen=True, slots=True)
class SampleScore:
    sha256: str
    name: str
    family: str | None
    score: float  # like FamilyScore.score, for one reference sample
    n_functions_matched: int


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


@dataclass(frozen=True, slots=True)
class LibraryHit:
    """A query function recognised as library/runtime code, and which library it is."""

    va: int
    name: str | None
    library: str  # baseline pack library label, library sample, or "shared by N families"


@dataclass(frozen=True, slots=True)
class QuerySample:
    """The sample a result is about (``"sample"`` in the JSON)."""

    sha256: str


@dataclass(frozen=True, slots=True)
class MatchResult(Document):
    """The attribution of one query sample. Frozen: built complete, in one place (the API
    assembles code reuse, string reuse, signals, warnings and meta before constructing it)."""

    sample: QuerySample
    verdict: Verdict
    families: tuple[FamilyScore, ...] = ()  # best first
    actors: tuple[ActorScore, ...] = ()  # best first
    samples: tuple[SampleScore, ...] = ()  # best first
    function_matches: tuple[FunctionMatch, ...] = ()  # best first
    n_query_functions: int = 0  # functions in the query sample
    n_considered_functions: int = 0  # query functions with >= min_instructions
    n_library_functions: int = 0  # of those, recognised as library code and dropped
    seconds: float = 0.0  # wall time of the query
    shared_strings: tuple[SharedString, ...] = ()  # best first
    # imphash / Rich header / TLSH / PDB / exports shared with stored samples (weak evidence,
    # never scored; match/sample_signals.py)
    sample_signals: tuple[SampleSignal, ...] = ()
    # Things the analyst must know to read the verdict (empty store, a toolchain without a
    # runtime baseline, ...), one sentence each.
    warnings: tuple[str, ...] = ()
    # every query function left out as library code (n_library_functions of them), by VA
    library_functions: tuple[LibraryHit, ...] = ()
    meta: Meta | None = None  # None: made without the API (kinship.match.aggregate.attribute)

    @property
    def sample_sha256(self) -> str:
        return self.sample.sha256

    @property
    def library_vas(self) -> set[int]:
        return {h.va for h in self.library_functions}
