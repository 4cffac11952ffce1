"""From ranked families to a verdict: attributed (with a calibrated confidence), weak, unknown.

The rule, in order (knobs in :class:`kinship.match.config.MatchConfig`):

1. nothing scores at least ``unknown_threshold``                     -> unknown;
2. the runner-up, a different family of another (or no) actor, scores within ``tie_margin``
   of the top (relative)                                             -> unknown ("tie");
   (a tie between two families of the *same* actor names the actor and says in ``reason``
   that the family is uncertain);
3. the top family's distinctive evidence is thin -> weak (the leading family is named as
   ``candidate``, never as the verdict): fewer than ``min_evidence_strings`` distinctive
   strings shared, and the non-library functions matched are one, or fewer than
   ``min_evidence_functions`` without proportionally more code (:func:`needed_instructions`:
   3 functions need 120 instructions, 2 need 240, 1 is never enough);
4. otherwise                                                          -> attributed, with

       confidence = 1 / (1 + exp(-z)),
       z = c0 + c_score * (score - unknown_threshold) + c_margin * (score - runner_up)
              + c_evidence * log2(1 + n_functions + n_strings)

   a logistic (Platt) model of "the named family is right" fitted on the bench's tuning
   queries (``bench/attribution.py fit_confidence``; the coefficients and their provenance are
   in MatchConfig). It is a probability: on the bench, among verdicts given confidence ~0.9,
   about 9 in 10 are right (expected calibration error in docs/BENCHMARKS.md).

Library code (baseline packs, ``--library`` samples) never counts as evidence: the family
scores and function counts this module reads are computed without it (aggregate.py).

:func:`conclude` is the one place a family ranking becomes the listed families, the actors
and the verdict, for code-only results (aggregate.py) and code + strings (combine.py) alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kinship.match.config import MatchConfig
from kinship.match.result import ActorScore, FamilyScore, Verdict, VerdictStatus


@dataclass(frozen=True, slots=True)
class Conclusion:
    """A ranking's listed families, its actors and the verdict."""

    families: tuple[FamilyScore, ...]  # best first, at most max_families
    actors: tuple[ActorScore, ...]  # best first
    verdict: Verdict


def conclude(ranked: Sequence[FamilyScore], cfg: MatchConfig) -> Conclusion:
    """The result of ``ranked`` (every family scored, best first, library code excluded):
    the first ``max_families`` families are listed and decide the verdict; each actor scores
    as its best family among ``ranked``."""
    families = tuple(ranked[: cfg.max_families])
    return Conclusion(families, rank_actors(ranked), decide(families, cfg))


def rank_actors(ranked: Sequence[FamilyScore]) -> tuple[ActorScore, ...]:
    """One :class:`ActorScore` per actor of ``ranked`` (best first): its best family's score
    and its families in ranking order."""
    actor_fams: dict[str, list[FamilyScore]] = {}
    for f in ranked:
        if f.actor:
            actor_fams.setdefault(f.actor, []).append(f)
    return tuple(sorted(
        (ActorScore(a, fs[0].score, tuple(x.family for x in fs)) for a, fs in actor_fams.items()),
        key=lambda a: -a.score,
    ))


def confidence(score: float, runner_up: float, n_evidence: int, cfg: MatchConfig) -> float:
    """Calibrated probability that an attributed verdict is right (see module docstring)."""
    z = (
        cfg.confidence_intercept
        + cfg.confidence_score_slope * (score - cfg.unknown_threshold)
        + cfg.confidence_margin_slope * (score - runner_up)
        + cfg.confidence_evidence_slope * math.log2(1 + max(0, n_evidence))
    )
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def needed_instructions(n_functions: int, cfg: MatchConfig) -> int | None:
    """Matched instructions that make ``n_functions`` matched functions enough evidence:
    ``min_evidence_instructions`` from ``min_evidence_functions`` functions on, twice that
    with one function fewer, and so on; never for a single function (None)."""
    if n_functions < 2:
        return None
    short = max(0, cfg.min_evidence_functions - n_functions)
    return cfg.min_evidence_instructions * (1 + short)


def decide(families: Sequence[FamilyScore], cfg: MatchConfig) -> Verdict:
    """The verdict for ``families`` (ranked best first, library code already excluded)."""
    if not families:
        return Verdict(None, None, None, 0.0, VerdictStatus.UNKNOWN,
                       "no stored family shares code or distinctive strings with the sample")
    top = families[0]
    runner = families[1] if len(families) > 1 else None
    runner_score = runner.score if runner is not None else 0.0
    if top.score < cfg.unknown_threshold:
        return Verdict(
            None, None, None, top.score, VerdictStatus.UNKNOWN,
            f"the best family ({top.family}) explains too little of the sample: score "
            f"{top.score:.2f} < {cfg.unknown_threshold:.2f}",
            top.family, top.actor,
        )
    if (runner is not None and runner_score >= top.score * (1.0 - cfg.tie_margin)
            and not (top.actor and runner.actor == top.actor)):
        return Verdict(
            None, None, None, top.score, VerdictStatus.UNKNOWN,
            f"tie: {top.family} ({top.score:.2f}) and {runner.family} ({runner_score:.2f}) "
            "explain the sample about equally",
            top.family, top.actor,
        )
    n_fn, n_instr, n_str = top.n_functions_matched, top.matched_instructions, top.n_strings_shared
    need = needed_instructions(n_fn, cfg)
    code_ok = need is not None and n_instr >= need
    strings_ok = n_str >= cfg.min_evidence_strings
    if not (code_ok or strings_ok):
        return Verdict(
            None, None, None, top.score, VerdictStatus.WEAK,
            f"thin evidence for {top.family}: {n_fn} non-library function(s), {n_instr} "
            f"instructions and {n_str} distinctive string(s) shared (needs "
            f"{cfg.min_evidence_functions} functions of {cfg.min_evidence_instructions}+ "
            f"instructions, 2 of {2 * cfg.min_evidence_instructions}+, or "
            f"{cfg.min_evidence_strings} strings)",
            top.family, top.actor,
        )
    conf = confidence(top.score, runner_score, n_fn + n_str, cfg)
    why = f"{n_fn} non-library function(s) ({n_instr} instructions)"
    if n_str:
        why += f" and {n_str} distinctive string(s)"
    why += f" shared with {top.family}"
    if runner is not None and runner_score >= top.score * (1.0 - cfg.tie_margin):
        # a tie inside one actor: the actor is clear, the family is not
        why += (f"; {runner.family}, of the same actor, scores about the same "
                f"({runner_score:.2f}): the family is uncertain, the actor is not")
    return Verdict(top.family, top.actor, conf, top.score, VerdictStatus.ATTRIBUTED, why)
