"""ATT&CK techniques an artifact shows, each with the observation that triggered it.

A tuple registry of small pure functions, one per technique (the table below). A function
sees one node of the result tree (and its children: an attachment makes the e-mail a
spearphishing attachment) and returns the evidence strings; no evidence, no technique.

    T1566.001  Spearphishing Attachment    e-mail with an Office/executable/archive attachment
    T1566.002  Spearphishing Link          e-mail body with an http(s) link
    T1204.002  User Execution: Malicious File   Office macros with an AutoExec trigger; a file
                                           that runs code disguised by its name (below)
    T1036.007  Double File Extension       offer.pdf.exe, cv.docx   .scr (attachment, zip
                                           member - listed even when the zip stays locked)
    T1036.002  Right-to-Left Override      invoice\u202efdp.exe, shown as invoiceexe.pdf
    T1221      Template Injection          OOXML attachedTemplate relationship to a URL/UNC path
    T1137      Office Application Startup  macros/relationships naming Normal.dotm, XLSTART,
                                           the "Office Test" key or Office add-in folders
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kinship.artifacts.filenames import NameTrick, name_tricks
from kinship.artifacts.model import ArtifactResult, Technique

# Attachment kinds that make a mail a spearphishing attachment (documents, programs, archives).
_WEAPON_KINDS = frozenset({"ooxml", "ole", "pe", "elf", "zip", "email"})
_STARTUP_RE = re.compile(r"Normal\.dot[mx]?|XLSTART|\\Office Test\\|\\Word\\STARTUP|"
                         r"\\AddIns\\|PERSONAL\.XLSB", re.I)
_REMOTE_RE = re.compile(r"^(?:https?|ftp)://|^\\\\|^file://", re.I)


def _spearphishing_attachment(node: ArtifactResult) -> list[str]:
    if node.kind != "email":
        return []
    return [f"attachment {c.name} ({c.kind}, sha256 {c.sha256})"
            for c in node.children if c.kind in _WEAPON_KINDS]


def _spearphishing_link(node: ArtifactResult) -> list[str]:
    if node.email is None:
        return []
    links = [lk for lk in node.email.links if lk.url.lower().startswith(("http://", "https://"))]
    return [f"link {lk.url}" + (f" shown as {lk.text!r}" if lk.mismatch else "")
            for lk in links[:10]]


def _named_files(node: ArtifactResult) -> list[tuple[str, str]]:
    """(where, name) of the files ``node`` holds: its children, and for a zip every listed
    member (the listing covers members that could not be opened); the node itself when it is
    the file given."""
    out: list[tuple[str, str]] = [("file", node.name)] if node.location == "file" else []
    if node.archive is not None:
        state = "" if node.archive.opened else ", not opened"
        out += [(f"zip member ({m.encryption}-encrypted{state})" if m.encryption
                 else "zip member", m.name) for m in node.archive.members]
    else:
        out += [(c.location, c.name) for c in node.children]
    return out


def _tricks(node: ArtifactResult) -> list[tuple[str, NameTrick]]:
    return [(where, t) for where, name in _named_files(node) for t in name_tricks(name)]


def _malicious_file(node: ArtifactResult) -> list[str]:
    out = [f"{where}: {t.describe()}" for where, t in _tricks(node) if t.runs]
    if node.office is not None:
        out += [f"macro AutoExec trigger {f.keyword}: {f.description}"
                for f in node.office.macro_findings if f.kind == "AutoExec"]
    return out


def _double_extension(node: ArtifactResult) -> list[str]:
    return [f"{where}: {t.describe()}" for where, t in _tricks(node)
            if t.kind == "double extension"]


def _right_to_left_override(node: ArtifactResult) -> list[str]:
    return [f"{where}: {t.describe()}" for where, t in _tricks(node)
            if t.kind == "right-to-left override"]


def _template_injection(node: ArtifactResult) -> list[str]:
    if node.office is None:
        return []
    return [f"{r.part}: external {r.kind} -> {r.target}"
            for r in node.office.external_relationships
            if r.kind == "attachedTemplate" and _REMOTE_RE.search(r.target)]


def _office_startup(node: ArtifactResult) -> list[str]:
    if node.office is None:
        return []
    seen = [f"macro keyword {f.keyword}" for f in node.office.macro_findings
            if _STARTUP_RE.search(f.keyword)]
    seen += [f"{r.part}: {r.kind} -> {r.target}" for r in node.office.external_relationships
             if _STARTUP_RE.search(r.target)]
    return seen


TECHNIQUES: tuple[tuple[str, str, Callable[[ArtifactResult], list[str]]], ...] = (
    ("T1566.001", "Phishing: Spearphishing Attachment", _spearphishing_attachment),
    ("T1566.002", "Phishing: Spearphishing Link", _spearphishing_link),
    ("T1204.002", "User Execution: Malicious File", _malicious_file),
    ("T1221", "Template Injection", _template_injection),
    ("T1137", "Office Application Startup", _office_startup),
    ("T1036.007", "Masquerading: Double File Extension", _double_extension),
    ("T1036.002", "Masquerading: Right-to-Left Override", _right_to_left_override),
)


def techniques_for(node: ArtifactResult) -> list[Technique]:
    """Techniques of ``node`` (its children must already be analysed)."""
    out: list[Technique] = []
    for tid, name, detect in TECHNIQUES:
        evidence = detect(node)
        if evidence:
            out.append(Technique(tid, name, tuple(dict.fromkeys(evidence))))
    return out
