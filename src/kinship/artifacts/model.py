"""The result tree of ``kinship artifact``: one :class:`ArtifactResult` per file, with its
attachments / members / embedded objects as children. Everything is JSON-able via ``to_dict``
and comes back equal through ``ArtifactResult.from_dict`` (STYLE §5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kinship.intel.iocs import IOC


@dataclass(frozen=True, slots=True)
class Technique:
    """An ATT&CK technique and the observations that triggered it (attack.py's table)."""

    id: str
    name: str
    evidence: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "evidence": list(self.evidence)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Technique:
        return cls(d["id"], d["name"], tuple(d.get("evidence", ())))


@dataclass(frozen=True, slots=True)
class Hop:
    """One ``Received`` header. ``index`` 0 is the top header: the hop nearest the recipient."""

    index: int
    from_host: str
    by_host: str
    ips: tuple[str, ...]
    date: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hop:
        return cls(d["index"], d["from_host"], d["by_host"], tuple(d.get("ips", ())), d["date"])


@dataclass(frozen=True, slots=True)
class Link:
    """A URL in a body. ``text``: the anchor's display text (HTML), "" for plain text."""

    url: str
    text: str
    location: str  # "body:text/plain", "body:text/html"
    mismatch: bool  # the display text names another host than the href

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Link:
        return cls(d["url"], d["text"], d["location"], bool(d["mismatch"]))


@dataclass
class EmailInfo:
    subject: str = ""
    date: str = ""
    from_: str = ""
    to: str = ""
    reply_to: str = ""
    return_path: str = ""
    sender: str = ""
    message_id: str = ""
    message_id_domain: str = ""
    x_mailer: str = ""
    received: list[Hop] = field(default_factory=list)
    auth: dict[str, str] = field(default_factory=dict)  # {"spf": "pass", "dkim": "fail", ...}
    mismatches: list[str] = field(default_factory=list)  # sender-identity mismatches, worded
    links: list[Link] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmailInfo:
        """Inverse of ``_plain``: ``from`` (the JSON key) back to ``from_``."""
        return cls(
            **{k: str(d.get("from" if k == "from_" else k, "")) for k in _EMAIL_TEXT},
            received=[Hop.from_dict(h) for h in d.get("received", [])],
            auth=dict(d.get("auth", {})),
            mismatches=list(d.get("mismatches", [])),
            links=[Link.from_dict(lk) for lk in d.get("links", [])],
        )


# EmailInfo's plain-text fields, in declaration order.
_EMAIL_TEXT = ("subject", "date", "from_", "to", "reply_to", "return_path", "sender",
               "message_id", "message_id_domain", "x_mailer")


@dataclass(frozen=True, slots=True)
class MacroModule:
    name: str  # VBA module file name, e.g. "ThisDocument.cls"
    stream: str  # OLE stream path
    size: int  # characters of source
    sha256: str  # of the UTF-8 source

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MacroModule:
        return cls(d["name"], d["stream"], d["size"], d["sha256"])


@dataclass(frozen=True, slots=True)
class MacroFinding:
    """One olevba result row: kind "AutoExec", "Suspicious", "IOC", "Base64 String" ..."""

    kind: str
    keyword: str
    description: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MacroFinding:
        return cls(d["kind"], d["keyword"], d["description"])


@dataclass(frozen=True, slots=True)
class Relationship:
    """An OOXML relationship with ``TargetMode="External"`` (``kind``: the Type's last part,
    e.g. "attachedTemplate", "oleObject", "hyperlink")."""

    part: str  # the .rels member it is in
    kind: str
    target: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Relationship:
        return cls(d["part"], d["kind"], d["target"])


@dataclass
class OfficeInfo:
    format: str  # "ooxml" | "ole"
    metadata: dict[str, str] = field(default_factory=dict)  # author, last_modified_by, ...
    has_macros: bool = False
    macros: list[MacroModule] = field(default_factory=list)
    macro_findings: list[MacroFinding] = field(default_factory=list)
    external_relationships: list[Relationship] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OfficeInfo:
        return cls(
            d["format"], metadata=dict(d.get("metadata", {})),
            has_macros=bool(d.get("has_macros", False)),
            macros=[MacroModule.from_dict(m) for m in d.get("macros", [])],
            macro_findings=[MacroFinding.from_dict(f) for f in d.get("macro_findings", [])],
            external_relationships=[Relationship.from_dict(r)
                                    for r in d.get("external_relationships", [])],
        )


@dataclass(frozen=True, slots=True)
class ZipMember:
    """One entry of a zip's central directory: readable without the password, so it is listed
    even when the content cannot be opened. Sizes are what the header claims."""

    name: str
    size: int  # uncompressed bytes (claimed)
    compressed_size: int
    encryption: str  # "" (none), "ZipCrypto" or "AES"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZipMember:
        return cls(d["name"], d["size"], d["compressed_size"], d.get("encryption", ""))


@dataclass(frozen=True, slots=True)
class PasswordCandidate:
    """A password to try on encrypted zips and where it came from (the evidence).

    ``source``: "default" (the customary ``infected``), "option" (``--password`` / the
    ``passwords`` argument) or the text it was read from, e.g.
    ``body:text/plain line 3: 'The password is: Offer2018'``.
    """

    password: str
    source: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PasswordCandidate:
        return cls(d["password"], d["source"])


@dataclass
class ArchiveInfo:
    """A zip's listing and, when it is encrypted, how it was opened.

    ``opened``: its content was read (always true for an unencrypted zip). ``password``: the
    candidate that opened it (None when none was needed or none worked). ``tried``: how many
    candidates were tried. ``note``: a sentence for people ("encrypted: none of the 3
    passwords tried opened it; content not analysed").
    """

    encrypted: bool
    opened: bool
    members: list[ZipMember] = field(default_factory=list)
    password: PasswordCandidate | None = None
    tried: int = 0
    note: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchiveInfo:
        pw = d.get("password")
        return cls(bool(d["encrypted"]), bool(d["opened"]),
                   [ZipMember.from_dict(m) for m in d.get("members", [])],
                   PasswordCandidate.from_dict(pw) if pw is not None else None,
                   int(d.get("tried", 0)), d.get("note", ""))


@dataclass(frozen=True, slots=True)
class Attribution:
    """Code-reuse attribution of an executable. ``status``: "matched" (a family), "unknown"
    (no family named: the match verdict was unknown or weak, ``reason`` says which and why),
    "skipped" (no store / empty store), "error". ``confidence`` only when matched."""

    status: str
    reason: str = ""
    family: str | None = None
    actor: str | None = None
    confidence: float | None = None
    score: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribution:
        conf = d.get("confidence")
        return cls(d["status"], d.get("reason", ""), d.get("family"), d.get("actor"),
                   None if conf is None else float(conf), float(d.get("score", 0.0)))


@dataclass
class ArtifactResult:
    """One analysed file or embedded object.

    ``kind``: "email", "ooxml", "ole", "zip", "pe", "elf", "other". ``location``: how it was
    reached from its parent ("file", "attachment", "zip member", "ooxml embedding",
    "ole package"). ``archive``: a zip's member listing and the password that opened it.
    ``error``: why it could not be parsed (children only; a top-level file that cannot be
    parsed raises :class:`kinship.exceptions.InputError`).
    """

    name: str
    kind: str
    location: str
    size: int
    sha256: str
    md5: str
    content_type: str = ""
    email: EmailInfo | None = None
    office: OfficeInfo | None = None
    attribution: Attribution | None = None
    archive: ArchiveInfo | None = None
    children: list[ArtifactResult] = field(default_factory=list)
    iocs: list[IOC] = field(default_factory=list)
    techniques: list[Technique] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def walk(self) -> Iterator[ArtifactResult]:
        """This node, then its descendants depth-first."""
        yield self
        for c in self.children:
            yield from c.walk()

    def all_techniques(self) -> list[Technique]:
        """Techniques of the whole tree, merged by id, evidence prefixed with the node name."""
        merged: dict[str, tuple[str, list[str]]] = {}
        for node in self.walk():
            for t in node.techniques:
                _, ev = merged.setdefault(t.id, (t.name, []))
                ev.extend(f"{node.name}: {e}" for e in t.evidence if f"{node.name}: {e}" not in ev)
        return [Technique(i, n, tuple(ev)) for i, (n, ev) in sorted(merged.items())]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "location": self.location,
            "size": self.size, "sha256": self.sha256, "md5": self.md5,
            "content_type": self.content_type,
            "email": _plain(self.email), "office": _plain(self.office),
            "attribution": _plain(self.attribution), "archive": _plain(self.archive),
            "iocs": [i.to_dict() for i in self.iocs],
            "techniques": [t.to_dict() for t in self.techniques],
            "warnings": list(self.warnings), "error": self.error,
            "children": [c.to_dict() for c in self.children],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactResult:
        """Inverse of :meth:`to_dict`: ``from_dict(json.loads(json.dumps(r.to_dict()))) == r``."""
        return cls(
            d["name"], d["kind"], d["location"], d["size"], d["sha256"], d["md5"],
            content_type=d.get("content_type", ""),
            email=EmailInfo.from_dict(d["email"]) if d.get("email") is not None else None,
            office=OfficeInfo.from_dict(d["office"]) if d.get("office") is not None else None,
            attribution=(Attribution.from_dict(d["attribution"])
                         if d.get("attribution") is not None else None),
            archive=(ArchiveInfo.from_dict(d["archive"])
                     if d.get("archive") is not None else None),
            children=[ArtifactResult.from_dict(c) for c in d.get("children", [])],
            iocs=[IOC.from_dict(i) for i in d.get("iocs", [])],
            techniques=[Technique.from_dict(t) for t in d.get("techniques", [])],
            warnings=list(d.get("warnings", [])),
            error=d.get("error"),
        )


def _plain(obj: Any) -> Any:
    """A dataclass as JSON types: tuples become lists (so ``to_dict`` equals its JSON reload),
    ``from_`` becomes ``from``."""
    if obj is None:
        return None
    d = _lists(dataclasses.asdict(obj))
    if "from_" in d:
        d["from"] = d.pop("from_")
    return d


def _lists(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_lists(x) for x in v]
    return v
