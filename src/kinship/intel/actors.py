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

import json
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kinship.document import Document
from kinship.exceptions import NotFoundError
from kinship.intel.datacache import package_dir

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
class ActorProfile(Document):
    """One actor as the galaxies describe it. ``query`` is the name that resolved to it.
    Not frozen: ``ActorKB`` merges references into it."""

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


@dataclass(frozen=True, slots=True)
class GalaxyValue:
    """One value of a MISP galaxy cluster, reduced to what the actor profiles use."""

    value: str
    uuid: str
    description: str | None = None
    synonyms: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    country: str | None = None
    external_id: str | None = None
    kill_chain: tuple[str, ...] = ()
    related: tuple[tuple[str, str], ...] = ()  # (relation type, dest-uuid)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GalaxyValue:
        """From a cluster value as the galaxy JSON files (and ``ClusterValue.to_dict``) hold it."""
        meta = d.get("meta") or {}
        ext = meta.get("external_id")
        country = meta.get("country")
        return cls(
            value=str(d["value"]),
            uuid=str(d.get("uuid") or ""),
            description=d.get("description"),
            synonyms=tuple(sorted({str(x) for x in meta.get("synonyms", [])})),
            refs=tuple(sorted({str(x) for x in meta.get("refs", [])})),
            country=str(country) if country else None,
            external_id=str(ext) if ext else None,
            kill_chain=tuple(sorted(str(x) for x in meta.get("kill_chain", []))),
            related=tuple((str(r.get("type", "")), str(r.get("dest-uuid", "")))
                          for r in d.get("related", []) or []),
        )


# The galaxy clusters the profiles are built from (pymispgalaxies holds about 100).
CLUSTERS = ("threat-actor", "mitre-intrusion-set", "mitre-attack-pattern", "mitre-malware",
            "mitre-tool")


def load_clusters(names: tuple[str, ...] = CLUSTERS) -> dict[str, list[GalaxyValue]]:
    """The values of the named clusters. Only those files are read (about 40 ms), from where
    pymispgalaxies keeps them, not the ~100 that ``pymispgalaxies.api.Clusters()`` builds
    objects for (about 3 s); through that API when the files are not where expected."""
    pkg = package_dir("pymispgalaxies")
    folder = pkg / "data" / "misp-galaxy" / "clusters" if pkg is not None else None
    if folder is not None and all((folder / f"{n}.json").is_file() for n in names):
        out: dict[str, list[GalaxyValue]] = {}
        for n in names:
            d = json.loads((folder / f"{n}.json").read_text(encoding="utf-8"))
            out[n] = [GalaxyValue.from_json(v) for v in d.get("values", []) if v.get("value")]
        return out
    from pymispgalaxies.api import Clusters

    clusters = Clusters()
    return {n: [GalaxyValue.from_json(v.to_dict()) for v in clusters[n].values()]
            for n in names}


def _strip_id(value: str) -> str:
    """"Disable or Modify System Firewall - T1562.004" -> "Disable or Modify System Firewall"."""
    return re.sub(r"\s+-\s+[GSTM]\d{4}(?:\.\d{3})?$", "", value)


class ActorKB:
    """The galaxies' actors, intrusion sets and ATT&CK objects, indexed by name, alias and
    uuid. ``clusters`` (cluster type -> values) defaults to :func:`load_clusters`."""

    def __init__(self, clusters: dict[str, list[GalaxyValue]] | None = None) -> None:
        clusters = clusters if clusters is not None else load_clusters()
        self._actors = clusters["threat-actor"]
        self._sets = clusters["mitre-intrusion-set"]
        self._by_uuid: dict[str, tuple[str, GalaxyValue]] = {}
        for kind in ("mitre-attack-pattern", "mitre-malware", "mitre-tool",
                     "mitre-intrusion-set", "threat-actor"):
            for v in clusters[kind]:
                self._by_uuid[v.uuid] = (kind, v)
        self._sets_by_gid: dict[str, GalaxyValue] = {}
        self._sets_by_name: dict[str, GalaxyValue] = {}
        for v in self._sets:
            if v.external_id:
                self._sets_by_gid[v.external_id] = v
            self._sets_by_name[_strip_id(v.value).lower()] = v
            for syn in v.synonyms:
                self._sets_by_name.setdefault(syn.lower(), v)
        self._names: dict[str, list[GalaxyValue]] = {}
        for v in self._actors:
            self._names.setdefault(v.value.lower(), []).insert(0, v)
            for syn in v.synonyms:
                self._names.setdefault(syn.lower(), []).append(v)

    # ---- lookup ---------------------------------------------------------------------------
    def resolve(self, query: str, *, fuzzy: bool = True) -> ActorProfile:
        """The actor ``query`` names (name, alias, ATT&CK group name or id; then, with
        ``fuzzy``, the galaxy's substring search).

        Raises NotFoundError when nothing matches.
        """
        q = query.strip()
        if not q:
            raise NotFoundError("empty actor name")
        actor = self._find_actor(q, fuzzy=fuzzy)
        if actor is not None:
            return self._profile(actor, q)
        iset = self._sets_by_gid.get(q.upper()) or self._sets_by_name.get(q.lower())
        if iset is not None:
            return self._profile_from_set(iset, q)
        raise NotFoundError(f"no actor named {query!r} in the MISP galaxies")

    def canonical(self, name: str) -> str | None:
        """The galaxy's name of the actor that ``name`` exactly names (no substring search),
        or None."""
        q = name.strip()
        if not q:
            return None
        actor = self._find_actor(q, fuzzy=False)
        if actor is not None:
            return actor.value
        iset = self._sets_by_gid.get(q.upper()) or self._sets_by_name.get(q.lower())
        return _strip_id(iset.value) if iset is not None else None

    def _find_actor(self, q: str, *, fuzzy: bool = True) -> GalaxyValue | None:
        exact = self._names.get(q.lower(), [])
        if q.upper() in self._sets_by_gid:  # "G0032": the actor whose refs name that group
            gid = q.upper()
            exact = exact + [v for v in self._actors if gid in self._group_ids(v)]
        if not exact and fuzzy:
            exact = self._search(q)
        if not exact:
            return None
        lower = q.lower()

        def rank(v: GalaxyValue) -> tuple[int, int, int]:
            return (0 if v.value.lower() == lower else 1,
                    0 if self._group_ids(v) else 1,
                    -len(v.synonyms))

        return sorted(exact, key=rank)[0]

    def _search(self, q: str) -> list[GalaxyValue]:
        """The galaxy's own fuzzy search: ``q`` inside the name, uuid or an alias."""
        lower = q.lower()
        return [v for v in self._actors
                if any(lower in s.lower() for s in (v.value, v.uuid, *v.synonyms))]

    def _group_ids(self, actor: GalaxyValue) -> list[str]:
        ids: list[str] = []
        for text in [*actor.synonyms, *actor.refs]:
            for gid in _GROUP_ID.findall(str(text)):
                if gid in self._sets_by_gid and gid not in ids:
                    ids.append(gid)
        return ids

    def _intrusion_set(self, actor: GalaxyValue) -> GalaxyValue | None:
        for _, dest in actor.related:
            hit = self._by_uuid.get(dest)
            if hit is not None and hit[0] == "mitre-intrusion-set":
                return hit[1]
        ids = self._group_ids(actor)
        if ids:
            return self._sets_by_gid[ids[0]]
        return self._sets_by_name.get(actor.value.lower())

    def _profile(self, actor: GalaxyValue, query: str) -> ActorProfile:
        refs = list(actor.refs)
        prof = ActorProfile(
            name=actor.value,
            query=query,
            aliases=sorted(set(actor.synonyms) - {actor.value}),
            country=actor.country,
            galaxy_uuid=actor.uuid or None,
        )
        iset = self._intrusion_set(actor)
        if iset is not None:
            self._add_set(prof, iset)
        prof.references = list(dict.fromkeys(refs + prof.references))[:MAX_REFERENCES]
        return prof

    def _profile_from_set(self, iset: GalaxyValue, query: str) -> ActorProfile:
        name = _strip_id(iset.value)
        prof = ActorProfile(name=name, query=query,
                            aliases=sorted(set(iset.synonyms) - {name}),
                            galaxy_uuid=iset.uuid or None,
                            provenance="MISP galaxy cluster mitre-intrusion-set")
        self._add_set(prof, iset)
        return prof

    def _add_set(self, prof: ActorProfile, iset: GalaxyValue) -> None:
        prof.attack_id = iset.external_id
        prof.attack_name = _strip_id(iset.value)
        prof.description = iset.description
        prof.references = prof.references + list(iset.refs)
        techniques: dict[str, Technique] = {}
        software: dict[str, Software] = {}
        for rel_type, dest in iset.related:
            if rel_type != "uses":
                continue
            hit = self._by_uuid.get(dest)
            if hit is None:
                continue
            kind, v = hit
            ext = v.external_id or ""
            if kind == "mitre-attack-pattern" and _TECH_ID.fullmatch(ext):
                tactics = tuple(k.split(":", 1)[-1] for k in v.kill_chain)
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


def canonical_actor(name: str) -> str:
    """The name to store for an actor label: the galaxy's name when ``name`` is exactly an
    actor's name or alias or an ATT&CK group's name or id (``"Hidden Cobra"`` and ``"G0032"``
    -> ``"Lazarus Group"``), else ``name`` as given (stripped). Unlike :func:`resolve_actor`
    there is no substring search: a label the galaxies do not know is never renamed."""
    return knowledge_base().canonical(name) or name.strip()


def same_actor(label: str | None, query: str) -> bool:
    """True when the stored actor ``label`` and ``query`` name the same actor (through
    :func:`canonical_actor`, so any alias finds a sample stored under another one)."""
    if not label:
        return False
    return canonical_actor(label) == canonical_actor(query)
