"""How a verdict reads in a report: its status, the family or the candidate, a confidence
rounded for people (only for an attributed verdict) and the reason.

Reads ``MatchResult.to_dict()["verdict"]``. Older results carry no ``status``: a named family
then counts as attributed and anything else as unknown. JSON keeps the full-precision number;
only what people read is rounded.
"""

from __future__ import annotations

import re
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


# The engine's reason sentences (kinship.match.verdict.decide) in Japanese. A sentence that
# matches none of these (a newer engine's wording) is shown as the engine wrote it.
_NUM = r"[\d.]+"
_REASONS_JA: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"no stored family shares code or distinctive strings with the sample"),
     "ストア内のどのファミリーも、この検体とコードや特徴的な文字列を共有していません"),
    (re.compile(rf"the best family \((?P<f>.+)\) explains too little of the sample: score "
                rf"(?P<s>{_NUM}) < (?P<t>{_NUM})"),
     "最も近いファミリー（{f}）でも検体のごく一部しか説明できません：スコア {s} < {t}"),
    (re.compile(rf"tie: (?P<a>.+) \((?P<sa>{_NUM})\) and (?P<b>.+) \((?P<sb>{_NUM})\) "
                r"explain the sample about equally"),
     "同点：{a}（{sa}）と {b}（{sb}）が同程度に検体を説明しています"),
    (re.compile(r"thin evidence for (?P<f>.+): (?P<n>\d+) non-library function\(s\), "
                r"(?P<i>\d+) instructions and (?P<s>\d+) distinctive string\(s\) shared "
                r"\(needs (?P<nf>\d+) functions of (?P<ni>\d+)\+ instructions, 2 of "
                r"(?P<ni2>\d+)\+, or (?P<ns>\d+) strings\)"),
     "{f} の根拠が不十分です：共有しているのは非ライブラリ関数 {n} 個（{i} 命令）と特徴的な"
     "文字列 {s} 個です（必要なのは関数 {nf} 個で {ni} 命令以上、関数 2 個で {ni2} 命令以上、"
     "または文字列 {ns} 個）"),
    (re.compile(rf"(?P<n>\d+) non-library function\(s\) \((?P<i>\d+) instructions\)"
                rf"(?: and (?P<s>\d+) distinctive string\(s\))? shared with (?P<f>.+?); "
                rf"(?P<r>.+), of the same actor, scores about the same \((?P<rs>{_NUM})\): "
                r"the family is uncertain, the actor is not"),
     "{f} と非ライブラリ関数 {n} 個（{i} 命令）を共有しています。同じアクターの {r} も同程度の"
     "スコア（{rs}）です：ファミリーは不確かですが、アクターは確かです"),
    (re.compile(r"(?P<n>\d+) non-library function\(s\) \((?P<i>\d+) instructions\) and "
                r"(?P<s>\d+) distinctive string\(s\) shared with (?P<f>.+)"),
     "{f} と非ライブラリ関数 {n} 個（{i} 命令）および特徴的な文字列 {s} 個を共有しています"),
    (re.compile(r"(?P<n>\d+) non-library function\(s\) \((?P<i>\d+) instructions\) "
                r"shared with (?P<f>.+)"),
     "{f} と非ライブラリ関数 {n} 個（{i} 命令）を共有しています"),
)


def reason_text(reason: str, lang: str = "en") -> str:
    """The verdict's reason in ``lang`` (the engine writes English)."""
    if lang != "ja" or not reason:
        return reason
    for rx, ja in _REASONS_JA:
        m = rx.fullmatch(reason.strip())
        if m:
            return ja.format(**m.groupdict())
    return reason
