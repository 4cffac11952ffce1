"""Code reuse + string reuse -> one family ranking, verdict and confidence.

Per family, with the code score ``C`` (aggregate.py) and the string score ``S`` (0..1,
strings/similarity.py), the combined score is a noisy-or in which strings count at most
``string_weight``::

    score(F) = 1 - (1 - C) * (1 - string_weight * S)

so that shared distinctive strings raise a family's score, a family with no shared code can
still be named by strings alone (at most ``string_weight``), and strings never lower a score.
The verdict and the confidence then follow the same rule as code-only attribution
(match/verdict.py ``conclude``; kinship.api builds the result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kinship.match.config import MatchConfig
from kinship.match.result import FamilyScore
from kinship.strings.similarity import StringReuse


@dataclass(frozen=True, slots=True)
class CombineConfig:
    """Knobs of the code + string combination."""

    # Largest score strings alone can give a family (the noisy-or weight). Range 0 (strings are
    # evidence only, never score) .. 1. At 0.5 a family sharing every distinctive string of the
    # query but no code scores 0.5.
    string_weight: float = 0.5


def combine_families(
    code: Sequence[FamilyScore],
    reuse: StringReuse,
    match_config: MatchConfig | None = None,
    config: CombineConfig | None = None,
) -> list[FamilyScore]:
    """The family ranking of code reuse (``code``, best first; its first ``max_families`` are
    combined) with string reuse folded in, best first, at most ``max_families``. The verdict
    and the actors follow from it by :func:`kinship.match.verdict.conclude`."""
    mcfg = match_config or MatchConfig()
    cfg = config or CombineConfig()
    by_name = {f.family: f for f in code[: mcfg.max_families]}
    names = list(by_name) + [f for f in reuse.family_scores if f not in by_name]
    families: list[FamilyScore] = []
    for name in names:
        known = by_name.get(name)
        s = reuse.family_scores.get(name, 0.0)
        c = known.score if known is not None else 0.0
        combined = 1.0 - (1.0 - c) * (1.0 - cfg.string_weight * s)
        families.append(FamilyScore(
            family=name,
            actor=known.actor if known is not None else reuse.family_actor.get(name),
            score=combined,
            n_functions_matched=known.n_functions_matched if known is not None else 0,
            coverage=known.coverage if known is not None else 0.0,
            code_score=c,
            string_score=s,
            n_strings_shared=reuse.family_strings.get(name, 0),
            matched_instructions=known.matched_instructions if known is not None else 0,
        ))
    families.sort(key=lambda f: (-f.score, f.family))
    return families[: mcfg.max_families]
