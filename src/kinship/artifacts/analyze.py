"""Analyse an artifact file into an :class:`ArtifactResult` tree (library entry point).

The top-level file must parse (else :class:`kinship.exceptions.InputError`, one line naming
the file); anything nested that does not parse is recorded in its node's ``error`` and the
rest of the tree is still analysed (every sample is hostile). What the parsers below raise on
damaged data besides kinship's errors (zlib.error, EOFError, RecursionError ...) is turned into
a :class:`kinship.exceptions.CorruptFileError` the same way, never a traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import lzma
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from kinship.artifacts import limits
from kinship.artifacts.attack import techniques_for
from kinship.artifacts.attribution import Attributor, skipped
from kinship.artifacts.email_ import looks_like_email, parse_email
from kinship.artifacts.identifiers import file_names, mask
from kinship.artifacts.model import ArtifactResult, PasswordCandidate
from kinship.artifacts.office import OLE_MAGIC, parse_ole, parse_ooxml
from kinship.artifacts.passwords import candidates, mail_passwords, option_passwords
from kinship.artifacts.zip_ import open_zip
from kinship.document import MetaFn
from kinship.exceptions import (
    CorruptFileError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)
from kinship.intel.iocs import IOC, FoundString, extract_iocs

logger = logging.getLogger(__name__)

_OOXML_EXT = frozenset({".docx", ".docm", ".dotx", ".dotm", ".xlsx", ".xlsm", ".xltx", ".xltm",
                        ".xlam", ".pptx", ".pptm", ".potm", ".ppsm"})
_OLE_EXT = frozenset({".doc", ".dot", ".xls", ".xlt", ".ppt", ".pps", ".msg"})
# What the standard library and the third-party parsers raise on damaged or crafted data:
# inflating (zlib.error is no OSError), truncation, olefile's index errors, nesting that
# recurses past Python's limit. Each becomes a CorruptFileError naming the file.
_PARSER_ERRORS = (zlib.error, lzma.LZMAError, struct.error, EOFError, OSError, ValueError,
                  IndexError, KeyError, TypeError, NotImplementedError, RecursionError,
                  UnicodeError, LookupError)


def detect_kind(data: bytes, name: str) -> str:
    """"email", "ooxml", "ole", "zip", "pe", "elf" or "other": magic first, then extension."""
    ext = Path(name).suffix.lower()
    if data.startswith(b"MZ"):
        return "pe"
    if data.startswith(b"\x7fELF"):
        return "elf"
    if data.startswith(OLE_MAGIC):
        return "ole"
    if data.startswith(b"PK\x03\x04"):
        head = data[: 1024 * 1024]
        return "ooxml" if b"[Content_Types].xml" in head or ext in _OOXML_EXT else "zip"
    if ext in _OOXML_EXT:
        return "ooxml"
    if ext in _OLE_EXT:
        return "ole"
    if ext == ".eml" or looks_like_email(data):
        return "email"
    return "other"


def analyze_file(path: str | Path, *, attributor: Attributor | None = None,
                 filter_benign: bool = True, passwords: Sequence[str] = (),
                 meta: MetaFn | None = None) -> ArtifactResult:
    """Analyse the e-mail or document at ``path``; executables inside go to ``attributor``.

    Encrypted zips are tried with "infected", then ``passwords``, then the passwords the
    enclosing mails state (``passwords.py``); the one that opened a zip is in its
    ``archive.password`` with its source. ``meta`` makes the top result's meta block from
    the wall time of the whole analysis (None: left empty).
    """
    t0 = time.perf_counter()
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "no such file" if not p.exists() else "not a file")
    size = p.stat().st_size
    if size > limits.MAX_ARTIFACT_SIZE:
        raise FileTooLargeError(str(p), f"{size} bytes, over MAX_ARTIFACT_SIZE")
    data = p.read_bytes()
    kind = detect_kind(data, p.name)
    if kind == "other":
        raise UnsupportedFormatError(str(p), "not an e-mail, Office document, zip or executable")
    ctx = _Context(attributor or skipped("no store given"), filter_benign,
                   option_passwords(passwords))
    try:
        top = ctx.analyze(str(p), data, kind, "file", 0)
    except _PARSER_ERRORS as e:
        raise CorruptFileError(str(p), _reason(e)) from e
    if meta is None:
        return top
    return dataclasses.replace(top, meta=meta(time.perf_counter() - t0))


def _reason(e: BaseException) -> str:
    """One line for a parser failure: ``damaged data (error: Error -3 while ...)``."""
    text = " ".join(str(e).split())[:300]
    return f"damaged data ({type(e).__name__}: {text})" if text else \
        f"damaged data ({type(e).__name__})"


def _hashes(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()


class _Context:
    def __init__(self, attributor: Attributor, filter_benign: bool,
                 passwords: Sequence[PasswordCandidate] = ()) -> None:
        self.attributor = attributor
        self.filter_benign = filter_benign
        self.passwords = tuple(passwords)  # the analyst's (--password)
        self.ioc_chars = limits.MAX_IOC_CHARS  # left to scan for IOCs in this file's tree

    def analyze(self, name: str, data: bytes, kind: str, location: str, depth: int,
                content_type: str = "",
                stated: tuple[PasswordCandidate, ...] = ()) -> ArtifactResult:
        """Raises InputError when ``data`` does not parse as ``kind``. ``stated``: passwords
        the enclosing mails give, nearest mail first."""
        sha256, md5 = _hashes(data)
        node = ArtifactResult(name, kind, location, len(data), sha256, md5, content_type)
        texts: list[tuple[str, str]] = []
        ids: set[str] = set()
        if kind == "email":
            mail = parse_email(name, data)
            node.email, texts, ids = mail.info, mail.texts, mail.ids
            node.warnings += mail.warnings
            texts += [(f"header:{h}", v) for h, v in (
                ("From", mail.info.from_), ("Reply-To", mail.info.reply_to),
                ("Return-Path", mail.info.return_path), ("Subject", mail.info.subject))]
            texts += [(f"header:Received[{h.index}]", " ".join(h.ips)) for h in mail.info.received]
            stated = (*mail_passwords(name, texts), *stated)
            for a in mail.attachments:
                self._child(node, a.name, a.data, "attachment", depth, a.content_type, stated)
        elif kind in ("ooxml", "ole"):
            doc = parse_ooxml(name, data) if kind == "ooxml" else parse_ole(name, data)
            node.office, texts = doc.info, doc.texts
            node.warnings += doc.warnings
            for e in doc.embedded:
                self._child(node, e.name, e.data, e.location, depth, stated=stated)
        elif kind == "zip":
            opened = open_zip(name, data, candidates(self.passwords, stated))
            node.archive = opened.info
            for member, blob in opened.members:  # one at a time: warnings grow meanwhile
                self._child(node, member, blob, "zip member", depth, stated=stated)
            node.warnings += opened.warnings
        elif kind in ("pe", "elf"):
            node.attribution = self.attributor(name, data)
        node.iocs = self._iocs(texts, ids, _names_in(node), node)
        node.techniques = techniques_for(node)
        return node

    def _child(self, parent: ArtifactResult, name: str, data: bytes, location: str,
               depth: int, content_type: str = "",
               stated: tuple[PasswordCandidate, ...] = ()) -> None:
        if len(parent.children) >= limits.MAX_CHILDREN:
            parent.warnings.append(f"{name}: over MAX_CHILDREN, not analysed")
            return
        kind = detect_kind(data, name)
        if depth + 1 > limits.MAX_DEPTH and kind != "other":
            parent.warnings.append(f"{name}: nested deeper than {limits.MAX_DEPTH} levels "
                                   "(MAX_DEPTH): rest not analysed")
            kind = "other"
        try:
            if kind == "other":
                sha256, md5 = _hashes(data)
                child = ArtifactResult(name, kind, location, len(data), sha256, md5,
                                       content_type)
            else:
                child = self.analyze(name, data, kind, location, depth + 1, content_type,
                                     stated)
        except (InputError, *_PARSER_ERRORS) as e:
            reason = e.reason if isinstance(e, InputError) else _reason(e)
            sha256, md5 = _hashes(data)
            child = ArtifactResult(name, kind, location, len(data), sha256, md5, content_type,
                                   error=reason)
            parent.warnings.append(f"{name}: {reason}")
        parent.children.append(child)

    def _iocs(self, texts: list[tuple[str, str]], ids: set[str],
              names: set[str], node: ArtifactResult) -> list[IOC]:
        """IOCs of every text, each source naming where it was (``sample`` = location).
        Message/Content-IDs (``ids`` and quoted headers) and the file names in the artifact
        (``names``) are blanked first: they are not addresses or domains. At most
        MAX_IOC_CHARS characters are scanned per file given (the scan is the slow part);
        past that a warning on ``node`` names the texts not scanned."""
        merged: dict[tuple[str, str], IOC] = {}
        unscanned: list[str] = []
        for location, text in texts:
            if self.ioc_chars <= 0:
                unscanned.append(location)
                continue
            text = mask(text[: min(limits.MAX_TEXT_CHARS, self.ioc_chars)], ids, names)
            lines = [FoundString(line[: limits.MAX_FIELD_CHARS], None, None)
                     for line in text.splitlines() if line.strip()]
            self.ioc_chars -= sum(len(s.text) for s in lines)
            if not lines:
                continue
            found = extract_iocs(lines, sample=location, kind="text",
                                 filter_benign=self.filter_benign)
            for ioc in found.iocs:
                key = (ioc.type, ioc.value)
                if key in merged:
                    merged[key].sources.extend(s for s in ioc.sources
                                               if s not in merged[key].sources)
                else:
                    merged[key] = ioc
        if unscanned:
            node.warnings.append(
                f"IOC scan stopped at MAX_IOC_CHARS ({limits.MAX_IOC_CHARS} characters): "
                f"{len(unscanned)} text(s) not scanned: {', '.join(unscanned[:3])}"
                + (", ..." if len(unscanned) > 3 else ""))
        # ioc-finder also takes "Rechnung.zip" out of ".../Rechnung.zip" (URL path, Windows
        # path) as a domain (.zip is a TLD): a domain that is a file name here is that file.
        lowered = {n.lower() for n in names}
        return sorted((i for i in merged.values()
                       if not (i.type == "domain" and i.value.lower() in lowered)),
                      key=lambda i: (i.type, i.value))


def _names_in(node: ArtifactResult) -> set[str]:
    """Names of the files in ``node``'s subtree (itself, attachments, members, zip listings),
    as :func:`kinship.artifacts.identifiers.mask` takes them."""
    names: list[str] = []
    for n in node.walk():
        names.append(n.name)
        if n.archive is not None:
            names += (m.name for m in n.archive.members)
    return file_names(n[: limits.MAX_NAME_CHARS] for n in names)
