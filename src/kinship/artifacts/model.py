"""The result tree of ``kinship artifact``: one :class:`ArtifactResult` per file, with its
attachments / members / embedded objects as children. Its JSON is derived from the types
(:mod:`kinship.document`): ``ArtifactResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r``
(STYLE §5). ``EmailInfo.from_`` is ``"from"`` in the JSON.

The parsers fill :class:`EmailInfo`, :class:`OfficeInfo`, :class:`ArchiveInfo` and
:class:`ArtifactResult` as they read (appending hops, macros, children, warnings), so those are
not frozen; the leaves are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import pydantic

from kinship.document import Document, Meta
from kinship.intel.iocs import IOC


@dataclass(frozen=True, slots=True)
class Technique(Document):
    """An ATT&CK technique and the observations that triggered it (attack.py's table)."""

    id: str
    name: str
    evidence: tuple[str, ...]




@dataclass(frozen=True, slots=True)
class Hop:
    """One ``Received`` header. ``index`` 0 is the top header: the hop nearest the recipient."""

    index: int
    from_host: str
    by_host: str
    ips: tuple[str, ...]
    date: str



@dataclass(frozen=True, slots=True)
class Link:
    """A URL in a body. ``text``: the anchor's display text (HTML), "" for plain text."""

    url: str
    text: str
    location: str  # "body:text/plain", "body:text/html"
    mismatch: bool  # the display text names another host than the href



@dataclass
class EmailInfo:
    subject: str = ""
    date: str = ""
    from_: Annotated[str, pydantic.Field(alias="from")] = ""  # "from" in the JSON
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


@dataclass(frozen=True, slots=True)
class MacroModule:
    name: str  # VBA module file name, e.g. "ThisDocument.cls"
    stream: str  # OLE stream path
    size: int  # characters of source
    sha256: str  # of the UTF-8 source



@dataclass(frozen=True, slots=True)
class MacroFinding:
    """One olevba result row: kind "AutoExec", "Suspicious", "IOC", "Base64 String" ..."""

    kind: str
    keyword: str
    description: str



@dataclass(frozen=True, slots=True)
class Relationship:
    """An OOXML relationship with ``TargetMode="External"`` (``kind``: the Type's last part,
    e.g. "attachedTemplate", "oleObject", "hyperlink")."""

    part: str  # the .rels member it is in
    kind: str
    target: str



@dataclass
class OfficeInfo:
    format: str  # "ooxml" | "ole"
    metadata: dict[str, str] = field(default_factory=dict)  # author, last_modified_by, ...
    has_macros: bool = False
    macros: list[MacroModule] = field(default_factory=list)
    macro_findings: list[MacroFinding] = field(default_factory=list)
    external_relationships: list[Relationship] = field(default_factory=list)



@dataclass(frozen=True, slots=True)
class ZipMember:
    """One entry of a zip's central directory: readable without the password, so it is listed
    even when the content cannot be opened. Sizes are what the header claims."""

    name: str
    size: int  # uncompressed bytes (claimed)
    compressed_size: int
    encryption: str  # "" (none), "ZipCrypto" or "AES"



@dataclass(frozen=True, slots=True)
class PasswordCandidate:
    """A password to try on encrypted zips and where it came from (the evidence).

    ``source``: "default" (the customary ``infected``), "option" (``--password`` / the
    ``passwords`` argument) or the text it was read from, e.g.
    ``body:text/plain line 3: 'The password is: Offer2018'``.
    """

    password: str
    source: str



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



@dataclass
class ArtifactResult(Document):
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
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)

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
