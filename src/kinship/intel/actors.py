"""Offline actor knowledge base: any alias -> one actor, with techniques, software, references.

Data: the MISP galaxy clusters shipped inside PyPI ``pymispgalaxies`` (CC0/BSD-2):

    threat-actor            names, synonyms (aliases), country, references
    mitre-intrusion-set     the ATT&CK group (G0032 ...), its "uses" relations ->
    mitre-attack-pattern    techniques (T1562.004 ...)
    mitre-malware / -tool   software (S0xxx)

Nothing is fetched. Description text is taken only from the ATT&CK intrusion set (MITRE's terms
allow reuse with attribution); threat-actor descriptions are not copied because some of them
come from Malpedia, whose text may not be redistributed.

Resolution order for a query: exact actor name, exact alias, exact ATT&CK group name or id,
then the galaxy's own fuzzy search. Ties (an alias shared by two actors, e.g. "ZINC") go to the
actor linked to an ATT&CK group, then to the one with the most aliases.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kinship.exceptions import NotFoundError

logger = logging.getLogger(__name__)

_GROUP_ID = re.compile(r"\bG\d{4}\b")
_TECH_ID = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")
_SOFT_ID = re.compile(r"\bS\d{4}\b")
# An actor profile lists at most this many references (some actors carry hundreds of links).
MAX_REFERENCES = 50


@dataclass(frozen=True, slots=True)
class Technique:
    """An ATT&CK technique: ``id`` "T1562.004", ``name`` without the id suffix."""

    id: str
    name: str
    tactics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Software:
    """ATT&CK software: ``kind`` "malware" or "tool"."""

    id: str
    name: str
    kind: str


@dataclass
class ActorProfile:
    """One actor as the galaxies describe it. ``query`` is the name that resolved to it."""

    name: str
    query: str
    aliases: list[str]
    country: str | None = None
    attack_id: str | None = None  # ATT&CK group id, e.g. "G0032"
    attack_name: str | None = None  # "Lazarus Group"
    description: str | None = None  # ATT&CK intrusion-set description (MITRE, reusable)
    techniques: list[Technique] = field(default_factory=list)
    software: list[Software] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    galaxy_uuid: str | None = None
    provenance: str = "MISP galaxy clusters (pymispgalaxies): threat-actor, mitre-intrusion-set"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "query": self.query,
            "aliases": list(self.aliases),
            "country": self.country,
            "attack_id": self.attack_id,
            "attack_name": self.attack_name,
            "description": self.description,
            "techniques": [
                {"id": t.id, "name": t.name, "tactics": list(t.tactics)} for t in self.techniques
            ],
            "software": [{"id": s.id, "name": s.name, "kind": s.kind} for s in self.software],
            "references": list(self.references),
            "galaxy_uuid": self.galaxy_uuid,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorProfile:
        return cls(
            name=d["name"], query=d.get("query", d["name"]), aliases=list(d.get("aliases", [])),
            country=d.get("country"), attack_id=d.get("attack_id"),
            attack_name=d.get("attack_name"), description=d.get("description"),
            techniques=[Technique(t["id"], t["name"], tuple(t.get("tactics", [])))
                        for t in d.get("techniques", [])],
            software=[Software(x["id"], x["name"], x["kind"]) for x in d.get("software", [])],
            references=list(d.get("references", [])), galaxy_uuid=d.get("galaxy_uuid"),
            provenance=d.get("provenance", cls.provenance),
        )


def _meta(value: Any) -> dict[str, Any]:
    meta = getattr(value, "meta", None)
    if meta is None:
        return {}
    d = meta.to_dict()
    return d if isinstance(d, dict) else {}


def _strip_id(value: str) -> str:
    """"Disable or Modify System Firewall - T1562.004" -> "Disable or Modify System Firewall"."""
    return re.sub(r"\s+-\s+[GSTM]\d{4}(?:\.\d{3})?$", "", value)


class ActorKB:
    """The galaxies, loaded once (about 2 s) and indexed by name, alias and uuid."""

    def __init__(self) -> None:
        from pymispgalaxies.api import Clusters

        clusters = Clusters()
        self._actors = clusters["threat-actor"]
        self._sets = clusters["mitre-intrusion-set"]
        self._by_uuid: dict[str, tuple[str, Any]] = {}
        for kind in ("mitre-attack-pattern", "mitre-malware", "mitre-tool",
                     "mitre-intrusion-set", "threat-actor"):
            for v in clusters[kind].values():
                self._by_uuid[v.uuid] = (kind, v)
        self._sets_by_gid: dict[str, Any] = {}
        self._sets_by_name: dict[str, Any] = {}
        for v in self._sets.values():
            gid = _meta(v).get("external_id")
            if gid:
                self._sets_by_gid[str(gid)] = v
            self._sets_by_name[_strip_id(v.value).lower()] = v
            for syn in _meta(v).get("synonyms", []):
                self._sets_by_name.setdefault(str(syn).lower(), v)
        self._names: dict[str, list[Any]] = {}
        for v in self._actors.values():
            self._names.setdefault(v.value.lower(), []).insert(0, v)
            for syn in _meta(v).get("synonyms", []):
                self._names.setdefault(str(syn).lower(), []).append(v)

    # ---- lookup ---------------------------------------------------------------------------
    def resolve(self, query: str) -> ActorProfile:
        """The actor ``query`` names (name, alias, ATT&CK group name or id).

        Raises NotFoundError when nothing matches.
        """
        q = query.strip()
        if not q:
            raise NotFoundError("empty actor name")
        actor = self._find_actor(q)
        if actor is not None:
            return self._profile(actor, q)
        iset = self._sets_by_gid.get(q.upper()) or self._sets_by_name.get(q.lower())
        if iset is not None:
            return self._profile_from_set(iset, q)
        raise NotFoundError(f"no actor named {query!r} in the MISP galaxies")

    def _find_actor(self, q: str) -> Any | None:
        exact = self._names.get(q.lower(), [])
        if q.upper() in self._sets_by_gid:  # "G0032": the actor whose refs name that group
            gid = q.upper()
            exact = exact + [v for v in self._actors.values() if gid in self._group_ids(v)]
        if not exact:
            exact = list(self._actors.search(q) or [])
        if not exact:
            return None
        lower = q.lower()

        def rank(v: Any) -> tuple[int, int, int]:
            return (0 if v.value.lower() == lower else 1,
                    0 if self._group_ids(v) else 1,
                    -len(_meta(v).get("synonyms", [])))

        return sorted(exact, key=rank)[0]

    def _group_ids(self, actor: Any) -> list[str]:
        meta = _meta(actor)
        ids: list[str] = []
        for text in [*meta.get("synonyms", []), *meta.get("refs", [])]:
            for gid in _GROUP_ID.findall(str(text)):
                if gid in self._sets_by_gid and gid not in ids:
                    ids.append(gid)
        return ids

    def _intrusion_set(self, actor: Any) -> Any | None:
        for rel in getattr(actor, "related", None) or []:
            hit = self._by_uuid.get(str(rel.get("dest-uuid", "")))
            if hit is not None and hit[0] == "mitre-intrusion-set":
                return hit[1]
        ids = self._group_ids(actor)
        if ids:
            return self._sets_by_gid[ids[0]]
        return self._sets_by_name.get(actor.value.lower())

    def _profile(self, actor: Any, query: str) -> ActorProfile:
        meta = _meta(actor)
        refs = [str(r) for r in meta.get("refs", [])]
        prof = ActorProfile(
            name=actor.value,
            query=query,
            aliases=sorted({str(s) for s in meta.get("synonyms", [])} - {actor.value}),
            country=meta.get("country"),
            galaxy_uuid=actor.uuid,
        )
        iset = self._intrusion_set(actor)
        if iset is not None:
            self._add_set(prof, iset)
        prof.references = list(dict.fromkeys(refs + prof.references))[:MAX_REFERENCES]
        return prof

    def _profile_from_set(self, iset: Any, query: str) -> ActorProfile:
        name = _strip_id(iset.value)
        prof = ActorProfile(name=name, query=query,
                            aliases=sorted({str(s) for s in _meta(iset).get("synonyms", [])}
                                           - {name}),
                            galaxy_uuid=iset.uuid,
                            provenance="MISP galaxy cluster mitre-intrusion-set")
        self._add_set(prof, iset)
        return prof

    def _add_set(self, prof: ActorProfile, iset: Any) -> None:
        meta = _meta(iset)
        prof.attack_id = meta.get("external_id")
        prof.attack_name = _strip_id(iset.value)
        prof.description = iset.description
        prof.references = prof.references + [str(r) for r in meta.get("refs", [])]
        techniques: dict[str, Technique] = {}
        software: dict[str, Software] = {}
        for rel in getattr(iset, "related", None) or []:
            if rel.get("type") != "uses":
                continue
            hit = self._by_uuid.get(str(rel.get("dest-uuid", "")))
            if hit is None:
                continue
            kind, v = hit
            vmeta = _meta(v)
            ext = str(vmeta.get("external_id", ""))
            if kind == "mitre-attack-pattern" and _TECH_ID.fullmatch(ext):
                tactics = tuple(str(k).split(":", 1)[-1] for k in vmeta.get("kill_chain", []))
                techniques[ext] = Technique(ext, _strip_id(v.value), tactics)
            elif kind in ("mitre-malware", "mitre-tool") and _SOFT_ID.fullmatch(ext):
                software[ext] = Software(ext, _strip_id(v.value), kind.split("-", 1)[1])
        prof.techniques = sorted(techniques.values(), key=lambda t: t.id)
        prof.software = sorted(software.values(), key=lambda s: s.name.lower())


@lru_cache(maxsize=1)
def knowledge_base() -> ActorKB:
    """The process-wide knowledge base (loaded on first use)."""
    return ActorKB()


def resolve_actor(name: str) -> ActorProfile:
    """``resolve_actor("Hidden Cobra").name == "Lazarus Group"``."""
    return knowledge_base().resolve(name)
