"""RFC 5322 messages (.eml): analyst-relevant headers, links and attachments.

Parsed with the standard library (``email.policy.default``); nothing is decoded into files.
A message is rejected (:class:`CorruptFileError`) when it has fewer than two of the headers
every real message carries, or when a multipart boundary is never closed (truncated).

The standard library's parser recurses once per MIME level (multipart in multipart,
message/rfc822 in message/rfc822): :class:`_Part` counts the levels as the parser attaches
them and, past MAX_MIME_DEPTH, says "text/plain" so that the rest stays unparsed text
(a warning says so). A nested message is written back to bytes for its own analysis with
its headers as they came (``refold_source="none"``): re-folding raw 8-bit header bytes
raises UnicodeEncodeError.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email import errors as email_errors
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parseaddr
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from kinship.artifacts import limits
from kinship.artifacts.identifiers import known_ids
from kinship.artifacts.model import EmailInfo, Hop, Link
from kinship.exceptions import CorruptFileError, FileTooLargeError

logger = logging.getLogger(__name__)

# Headers every delivered message has; a file with fewer than two of them is not a message.
_CORE_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Received")
# Headers whose values are message identifiers (<id@host>), not addresses.
_ID_HEADERS = ("Message-ID", "In-Reply-To", "References", "Resent-Message-ID")
_TRUNCATION_DEFECTS = (email_errors.CloseBoundaryNotFoundDefect,
                       email_errors.StartBoundaryNotFoundDefect)
_URL_RE = re.compile(r"\bhttps?://[^\s<>\"'()\[\]{}]+", re.I)
_HOSTLIKE_RE = re.compile(r"(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,63})\b", re.I)
_IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_IPV6_RE = re.compile(r"\[IPv6:([0-9a-fA-F:.]+)\]")
_AUTH_RE = re.compile(r"\b(spf|dkim|dmarc|arc)\s*=\s*([a-z]+)", re.I)
# A header value the policy cannot parse (RecursionError: "((((...)))" comments nest).
_HEADER_ERRORS = (ValueError, TypeError, IndexError, AttributeError, RecursionError,
                  email_errors.MessageError)
# Writing a nested message back: its headers as they came, not re-folded.
_AS_SENT = policy.default.clone(refold_source="none")


class _Part(EmailMessage):
    """An EmailMessage that knows how deep it is nested (``depth``, 0 for the message
    itself). Past MAX_MIME_DEPTH it is ``capped``: it calls itself text/plain, so the
    parser keeps its body as text instead of recursing into it."""

    depth = 0

    @property
    def capped(self) -> bool:
        return self.depth > limits.MAX_MIME_DEPTH

    def attach(self, payload: Any) -> None:
        # the parser attaches each part to its parent as soon as it is created, before
        # reading the part's headers: the depth is known when get_content_type is asked
        if isinstance(payload, _Part):
            payload.depth = self.depth + 1
        super().attach(payload)

    def get_content_type(self) -> str:
        return "text/plain" if self.capped else super().get_content_type()


@dataclass
class Attachment:
    """A MIME part that carries a file (or a nested message)."""

    name: str
    content_type: str
    data: bytes


@dataclass
class ParsedEmail:
    info: EmailInfo
    attachments: list[Attachment] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (location, text) for IOCs
    # Message-ID / In-Reply-To / References / Content-ID values (``id@host``, lower case):
    # identifiers, not addresses; identifiers.mask blanks them before the IOC scan.
    ids: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def looks_like_email(data: bytes) -> bool:
    """True when the first lines are RFC 5322 headers including two core ones."""
    head = data[:8192].decode("latin-1", "replace")
    names = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z][\w-]{0,60}):", head, re.M)}
    return sum(h.lower() in names for h in _CORE_HEADERS) >= 2


def parse_email(name: str, data: bytes) -> ParsedEmail:
    """Headers, links, attachments and texts of the message ``data`` (``name`` for errors)."""
    if len(data) > limits.MAX_ARTIFACT_SIZE:
        raise FileTooLargeError(name, f"{len(data)} bytes, over MAX_ARTIFACT_SIZE")
    try:
        msg = BytesParser(_Part, policy=policy.default).parsebytes(data)
    except RecursionError as e:  # nesting the depth cap does not see (a header's structure)
        raise CorruptFileError(name, "nested too deeply for the e-mail parser") from e
    present = [h for h in _CORE_HEADERS if h in msg]
    if len(present) < 2:
        raise CorruptFileError(name, "not an RFC 5322 message (fewer than two of "
                               + "/".join(_CORE_HEADERS) + " headers)")
    for part in msg.walk():
        for d in part.defects:
            if isinstance(d, _TRUNCATION_DEFECTS):
                raise CorruptFileError(name, f"truncated message: {type(d).__name__}")
    out = ParsedEmail(_headers(msg, name))
    out.ids = known_ids(_h(msg, h) for h in _ID_HEADERS)
    for leaf in _leaves(msg):
        if len(out.attachments) >= limits.MAX_CHILDREN:
            out.warnings.append(f"more than {limits.MAX_CHILDREN} parts: rest not read")
            break
        _read_part(leaf, out)
    _check_link_hosts(out.info)
    return out


def _h(msg: Message, header: str) -> str:
    try:
        value = msg.get(header)
    except _HEADER_ERRORS as e:  # a malformed header must not stop the analysis
        logger.debug("header %s unreadable: %s", header, e)
        return ""
    return "" if value is None else str(value)[: limits.MAX_FIELD_CHARS]


def _domain(address_header: str) -> str:
    addr = parseaddr(address_header)[1]
    return addr.rpartition("@")[2].strip("<> ").lower() if "@" in addr else ""


def _headers(msg: Message, name: str) -> EmailInfo:
    info = EmailInfo(
        subject=_h(msg, "Subject"), date=_h(msg, "Date"), from_=_h(msg, "From"),
        to=_h(msg, "To"), reply_to=_h(msg, "Reply-To"), return_path=_h(msg, "Return-Path"),
        sender=_h(msg, "Sender"), message_id=_h(msg, "Message-ID"),
        x_mailer=_h(msg, "X-Mailer") or _h(msg, "User-Agent"))
    mid = info.message_id.strip("<> ")
    info.message_id_domain = mid.rpartition("@")[2].lower() if "@" in mid else ""
    from_domain = _domain(info.from_)
    for label, value in (("Reply-To", info.reply_to), ("Return-Path", info.return_path),
                         ("Sender", info.sender)):
        d = _domain(value)
        if d and from_domain and d != from_domain:
            info.mismatches.append(f"{label} domain {d} differs from From domain {from_domain}")
    if info.message_id_domain and from_domain and not (
            info.message_id_domain == from_domain
            or info.message_id_domain.endswith("." + from_domain)):
        info.mismatches.append(f"Message-ID domain {info.message_id_domain} differs from "
                               f"From domain {from_domain}")
    try:
        received = msg.get_all("Received") or []
    except _HEADER_ERRORS as e:
        logger.debug("%s: Received unreadable: %s", name, e)
        received = []
    for i, raw in enumerate(received[: limits.MAX_HOPS]):
        info.received.append(_hop(i, str(raw)))
    for header in ("Authentication-Results", "ARC-Authentication-Results"):
        for m in _AUTH_RE.finditer(_h(msg, header)):
            info.auth.setdefault(m.group(1).lower(), m.group(2).lower())
    spf = _h(msg, "Received-SPF").split()
    if spf:
        info.auth.setdefault("spf", spf[0].lower())
    return info


def _hop(index: int, raw: str) -> Hop:
    text = " ".join(raw.split())
    head, _, date = text.rpartition(";")
    head = head or text
    frm = re.search(r"\bfrom\s+(\S+)", head, re.I)
    by = re.search(r"\bby\s+(\S+)", head, re.I)
    ips = tuple(dict.fromkeys([*_IPV4_RE.findall(head), *_IPV6_RE.findall(head)]))
    return Hop(index, frm.group(1) if frm else "", by.group(1) if by else "", ips,
               date.strip() if head is not text else "")


def _leaves(part: Message) -> list[Message]:
    """Leaf parts in order; a nested message/rfc822 is a leaf (analysed as an attachment)."""
    out: list[Message] = []
    stack = [part]
    while stack and len(out) <= limits.MAX_CHILDREN * 4:
        p = stack.pop()
        if p.get_content_type() != "message/rfc822" and p.is_multipart():
            payload = p.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([q for q in payload if isinstance(q, Message)]))
            continue
        out.append(p)
    return out


def _read_part(part: Message, out: ParsedEmail) -> None:
    if isinstance(part, _Part) and part.capped:
        out.warnings.append(f"nested deeper than {limits.MAX_MIME_DEPTH} MIME levels "
                            "(MAX_MIME_DEPTH): rest not analysed")
        return
    ctype = part.get_content_type()
    out.ids |= known_ids([_h(part, "Content-ID")])
    try:
        filename = part.get_filename()
    except _HEADER_ERRORS:
        filename = None
    disposition = part.get_content_disposition()
    if ctype == "message/rfc822":
        inner = part.get_payload()
        msgs = inner if isinstance(inner, list) else [inner]
        for m in msgs:
            if isinstance(m, Message):
                data = _as_bytes(m, out)
                if data is not None:
                    out.attachments.append(Attachment(filename or "attached.eml", ctype, data))
        return
    if disposition == "attachment" or filename or not ctype.startswith("text/"):
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        out.attachments.append(Attachment(filename or f"part.{ctype.replace('/', '_')}",
                                          ctype, data))
        return
    text = _text(part)[: limits.MAX_TEXT_CHARS]
    location = f"body:{ctype}"
    if ctype == "text/html":
        parser = _Anchors()
        try:
            parser.feed(text)
            parser.close()
        except (AssertionError, ValueError) as e:  # html.parser on hostile markup
            out.warnings.append(f"{location}: HTML not fully parsed: {e}")
        for href, label in parser.anchors:
            _add_link(out.info, href, label, location)
        out.texts.append((location, " ".join(parser.text)))
        out.texts.extend((f"{location}:href", h) for h, _ in parser.anchors)
    else:
        for m in _URL_RE.finditer(text):
            _add_link(out.info, m.group(0).rstrip(".,;:!?"), "", location)
        out.texts.append((location, text))


def _as_bytes(m: Message, out: ParsedEmail) -> bytes | None:
    """The nested message ``m`` as bytes, headers as sent; None (and a warning) when the
    generator cannot write it."""
    try:
        return m.as_bytes(policy=_AS_SENT)
    except (UnicodeError, LookupError, RecursionError, *_HEADER_ERRORS) as e:
        out.warnings.append(f"nested message not analysed: cannot be written back "
                            f"({type(e).__name__}: {e})")
        return None


def _text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            if isinstance(content, str):
                return content
        except (LookupError, *_HEADER_ERRORS):  # unknown charset, broken encoding
            pass
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""


def _add_link(info: EmailInfo, url: str, text: str, location: str) -> None:
    if len(info.links) < limits.MAX_LINKS:
        info.links.append(Link(url[: limits.MAX_FIELD_CHARS], text[: limits.MAX_FIELD_CHARS],
                               location, False))


def _host(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


def _check_link_hosts(info: EmailInfo) -> None:
    """Mark links whose display text names a host other than the href's (classic lure)."""
    for i, link in enumerate(info.links):
        m = _HOSTLIKE_RE.search(link.text)
        if not m:
            continue
        shown, real = m.group(1).lower(), _host(link.url)
        if real and shown != real and not real.endswith("." + shown):
            info.links[i] = Link(link.url, link.text, link.location, True)
            info.mismatches.append(f"link text {shown} points to {real}")


class _Anchors(HTMLParser):
    """Collects ``<a href>`` with their display text, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._label: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = next((v for k, v in attrs if k == "href" and v), None)
            self._label = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            if len(self.anchors) < limits.MAX_LINKS:
                self.anchors.append((self._href.strip(), " ".join(self._label).strip()))
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._label.append(data)
