"""How a verdict reads in a report: its status, the family or the candidate, a confidence
rounded for people (only for an attributed verdict) and the reason.

Reads ``MatchResult.to_dict()["verdict"]``. Older results carry no ``status``: a named family
then counts as attributed and anything else as unknown. JSON keeps the full-precision number;
only what people read is rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTRIBUTED, WEAK, UNKNOWN, NO_STORE = "attributed", "weak", "unknown", "none"
STATUSES = (ATTRIBUTED, WEAK, UNKNOWN, NO_STORE)


def confidence_text(value: float) -> str:
    """``0.93``; never ``1.00`` for a value below 1 (``>0.99``), nor ``0.00`` above 0."""
    if value >= 1.0:
        return "1.00"
    if value > 0.995:
        return ">0.99"
    if 0.0 < value < 0.005:
        return "<0.01"
    return f"{value:.2f}"


@dataclass(frozen=True, slots=True)
class VerdictView:
    status: str  # one of STATUSES
    family: str | None  # set only when attributed
    actor: str | None
    candidate: str | None  # the leading family of a weak (or tied) verdict, not a verdict
    candidate_actor: str | None
    confidence: float | None  # full precision, only when attributed
    score: float | None
    reason: str  # the engine's sentence ("" when it gave none)

    @property
    def confidence_text(self) -> str | None:
        return None if self.confidence is None else confidence_text(self.confidence)


def verdict_view(verdict: dict[str, Any] | Any | None) -> VerdictView:
    """The view of a verdict dict (or a ``Verdict``); None means "no store was used"."""
    if verdict is None:
        return VerdictView(NO_STORE, None, None, None, None, None, None, "")
    d: dict[str, Any] = verdict if isinstance(verdict, dict) else verdict.to_dict()
    raw = d.get("status")
    status = str(getattr(raw, "value", raw)) if raw else (
        ATTRIBUTED if d.get("family") else UNKNOWN)
    if status not in STATUSES:
        status = UNKNOWN
    attributed = status == ATTRIBUTED
    conf = d.get("confidence")
    score = d.get("score")
    return VerdictView(
        status=status,
        family=d.get("family") if attributed else None,
        actor=d.get("actor") if attributed else None,
        candidate=d.get("candidate") if not attributed else None,
        candidate_actor=d.get("candidate_actor") if not attributed else None,
        confidence=float(conf) if attributed and conf is not None else None,
        score=None if score is None else float(score),
        reason=str(d.get("reason") or ""),
    )
