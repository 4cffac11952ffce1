"""Knobs and results of YARA rule generation (:mod:`kinship.rules.yara_gen`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from kinship.document import Document
from kinship.pipeline import AnalysedSample
from kinship.rules.yara_validate import LeaveOneOut, Validation

# VAs of a sample's library/runtime functions (Kinship.library_functions has this signature).
LibraryFunctions = Callable[[AnalysedSample], Collection[int]]


@dataclass
class YaraConfig:
    """Knobs of rule generation."""

    # Shortest string kept as a rule string, characters (3..64). Shorter ones are too common.
    min_string_len: int = 6
    # Longest string kept, characters (16..1024); longer ones are cut (YARA limit is 4096).
    max_string_len: int = 200
    # Strings per rule (1..50), longest/most specific first.
    max_strings: int = 12
    # Strings that must match: min(this, number of strings) (1..10) ...
    strings_needed: int = 2
    # ... and at least this share of the rule's strings (0..1, rounded up). Every member has
    # every string, so a high share costs little recall on the family, and it keeps a rule
    # from firing on a relative that shares a few runtime/framework strings (wine's debug
    # channel helpers, a Python extension's module boilerplate).
    strings_share: float = 0.4
    # Code patterns per architecture (0..20).
    max_code_patterns: int = 4
    # An architecture with fewer shared code patterns gets no code condition (1..20): one
    # short prologue is often a toolchain or framework stub (wine's debug-channel helpers).
    min_code_patterns: int = 2
    # Bytes of a function's start that form a code pattern (16..256).
    code_window: int = 48
    # A code pattern needs at least this many fixed (non-wildcard) bytes (8..128).
    min_fixed_bytes: int = 20
    # Functions smaller than this (bytes) are not used: stubs and thunks are shared by all.
    min_function_size: int = 24
    # Refinement rounds (drop the items that hit other samples, rebuild, revalidate) (0..5).
    max_refinements: int = 2
    # Two samples are one program (one group, one rule) when they share at least this many
    # distinctive strings, or min_code_patterns distinctive code patterns (1..50). 1: a small
    # program often has only one or two texts of its own, and what no other family has is
    # already specific; higher values split such a family into one rule per build.
    group_min_strings: int = 1
    # Samples held out one at a time for leave-one-out (0..1000; 0: none). Each costs one
    # rule build from the other n-1; a larger family is sampled evenly (sorted by sha256).
    max_leave_one_out: int = 20


@dataclass(frozen=True, slots=True)
class CodePattern:
    arch: str  # "x86" | "x64"
    hex: str  # "55 89 E5 ?? ?? ?? ?? 8B 45 08"
    function_va: int  # in the first member, for provenance
    function_name: str | None
    sample: str  # sha256 of that member


@dataclass
class FamilyRule(Document):
    """The rules of one family, or (in ``groups``) of one group of its samples. Not frozen:
    ``family_rules`` sets ``leave_one_out`` once the groups are made.

    A family whose samples are one program has one group, and ``text`` is that group's rule;
    otherwise ``text`` holds one rule per group (``groups``) and ``validation`` is of them
    all (a sample counts as matched when any of them matches it).
    """

    family: str
    name: str  # YARA rule identifier (of the family's rule set when there are several groups)
    text: str  # the rule source (every group's rule)
    strings: list[str]
    code: list[CodePattern]
    validation: Validation | None = None
    dropped: list[str] = field(default_factory=list)  # items removed while refining
    members: list[str] = field(default_factory=list)  # sha256 of the samples it covers
    leave_one_out: LeaveOneOut | None = None
    groups: list[FamilyRule] = field(default_factory=list)  # one per group of samples
    uncovered: list[str] = field(default_factory=list)  # samples in a group without a rule

    def summary(self, n_others: int) -> list[str]:
        """Lines for people: validation on the store, leave-one-out, groups, gaps."""
        out: list[str] = []
        v = self.validation
        if v is not None:
            out.append(f"TPR {v.tpr:.3f} FPR {v.fpr:.3f} on the stored samples "
                       f"({len(v.true_positives) + len(v.false_negatives)} of the family, "
                       f"{n_others} other samples)")
        loo = self.leave_one_out
        if loo is not None and loo.tpr is not None:
            n = len(loo.samples)
            out.append(f"leave-one-out TPR {loo.tpr:.3f}: {n - len(loo.missed)} of {n} samples "
                       "matched by the rules made from the family's other samples")
            out += [f"  missed {h.sample}: {h.note}" for h in loo.samples if not h.matched]
        elif loo is not None:
            out.append("leave-one-out: not measured (one sample: a rule made from it is "
                       "untested on any other build)")
        if len(self.groups) > 1:
            out.append(f"{len(self.groups)} groups of samples that share code, one rule each:")
            out += [f"  {g.name}: {len(g.members)} sample(s): {', '.join(g.members)}"
                    for g in self.groups]
        if self.uncovered:
            out.append(f"no rule covers {len(self.uncovered)} sample(s): "
                       + ", ".join(self.uncovered))
        return out
