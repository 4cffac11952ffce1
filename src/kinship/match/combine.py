"""Code reuse + string reuse -> one family ranking, verdict and confidence.

Per family, with the code score ``C`` (aggregate.py) and the string score ``S`` (0..1,
strings/similarity.py), the combined score is a noisy-or in which strings count at most
``string_weight``::

    score(F) = 1 - (1 - C) * (1 - string_weight * S)

so that shared distinctive strings raise a family's score, a family with no shared code can
still be named by strings alone (at most ``string_weight``), and strings never lower a score.
The verdict and the confidence then follow the same rule as code-only attribution
(match/verdict.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kinship.match.config import MatchConfig
from kinship.match.result import ActorScore, FamilyScore, MatchResult
from kinship.match.verdict import decide
from kinship.strings.similarity import StringReuse


@dataclass(frozen=True, slots=True)
class CombineConfig:
    """Knobs of the code + string combination."""

    # Largest score strings alone can give a family (the noisy-or weight). Range 0 (strings are
    # evidence only, never score) .. 1. At 0.5 a family sharing every distinctive string of the
    # query but no code scores 0.5.
    string_weight: float = 0.5


def combine(
    result: MatchResult,
    reuse: StringReuse,
    match_config: MatchConfig | None = None,
    config: CombineConfig | None = None,
) -> MatchResult:
    """A copy of the code-only ``result`` with string reuse folded into the family scores,
    the actors, the verdict and the confidence, and the shared strings as evidence."""
    mcfg = match_config or MatchConfig()
    cfg = config or CombineConfig()
    by_name = {f.family: f for f in result.families}
    names = list(by_name) + [f for f in reuse.family_scores if f not in by_name]
    families: list[FamilyScore] = []
    for name in names:
        code = by_name.get(name)
        s = reuse.family_scores.get(name, 0.0)
        c = code.score if code is not None else 0.0
        combined = 1.0 - (1.0 - c) * (1.0 - cfg.string_weight * s)
        families.append(FamilyScore(
            family=name,
            actor=code.actor if code is not None else reuse.family_actor.get(name),
            score=combined,
            n_functions_matched=code.n_functions_matched if code is not None else 0,
            coverage=code.coverage if code is not None else 0.0,
            code_score=c,
            string_score=s,
            n_strings_shared=reuse.family_strings.get(name, 0),
            matched_instructions=code.matched_instructions if code is not None else 0,
        ))
    families.sort(key=lambda f: (-f.score, f.family))
    families = families[: mcfg.max_families]
    actor_fams: dict[str, list[FamilyScore]] = {}
    for f in families:
        if f.actor:
            actor_fams.setdefault(f.actor, []).append(f)
    actors = sorted(
        (ActorScore(a, fs[0].score, tuple(x.family for x in fs)) for a, fs in actor_fams.items()),
        key=lambda a: -a.score,
    )
    verdict = decide(families, mcfg)
    return dataclasses.replace(
        result, verdict=verdict, families=families, actors=actors,
        shared_strings=list(reuse.shared),
    )
