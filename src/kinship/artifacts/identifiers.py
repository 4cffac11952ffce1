"""Strings in a mail that look like e-mail addresses or domains but are not: Message-IDs,
Content-IDs and file names. They are blanked out of a text before the IOC scan.

    Message-ID: <CAF=x+y@mail.gmail.com>       quoted headers of a forwarded mail (and their
    References: <a@b.example> <c@d.example>    folded continuation lines)
    <img src="cid:image001.png@01D4A1B2.C3D4E5F0">   cid: / mid: URIs (RFC 2392)
    <1234.5678@offer-cdn-jobs.com>             the mail's own Message-ID, In-Reply-To,
                                               References and Content-IDs, in angle brackets
    Rechnung.zip, offer.pdf                    names of the files in the artifact (.zip and
                                               .mov are TLDs: ioc-finder reports them)

Blanking, not dropping IOCs afterwards, keeps a real address or domain that also occurs
elsewhere in the text (``boss@evil-corp.net`` stays when ``<x@mx.evil-corp.net>`` goes), and
a name inside a URL or a path (``http://h.net/Rechnung.zip``, ``C:\\Users\\x\\offer.pdf``)
is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Header names whose values are message or content identifiers, at the start of a line,
# after quoting (">") as a forwarded or replied-to mail shows them.
_ID_HEADER_RE = re.compile(
    r"^([ \t>]*(?:message-id|in-reply-to|references|content-id|resent-message-id|"
    r"original-message-id|x-original-message-id|x-ms-tnef-correlator|thread-index)"
    r"[ \t]*:)(.*)$", re.I | re.M)
# A folded continuation of such a header: only <...> tokens on an indented line.
_CONTINUATION_RE = re.compile(r"^[ \t>]*[ \t](?:<[^<>\s]{1,998}>[ \t]*)+$")
_URI_ID_RE = re.compile(r"\b(?:cid|mid):[^\s\"'<>()\[\]]{1,998}", re.I)
# A domain-shaped token ("Rechnung.zip", "offer.pdf"): what ioc-finder would take for a domain.
# It is a file name only where it stands alone: not inside a URL, a path or an address.
_TOKEN_RE = re.compile(r"(?<![\w./\\:@%=?&#-])[\w-]{1,255}(?:\.[\w-]{1,63}){1,10}"
                       r"(?![\w@/\\-]|\.\w)")
_TAIL_RE = re.compile(r"[\w-]{1,255}(?:\.[\w-]{1,63}){1,10}$")


def _blank(m: re.Match[str]) -> str:
    return " " * len(m.group(0))


def known_ids(values: Iterable[str]) -> set[str]:
    """``id-left@id-right`` of every ``<...>`` in header values (Message-ID, References ...)."""
    return {m.group(1).lower() for v in values
            for m in re.finditer(r"<([^<>\s@]{1,998}@[^<>\s]{1,998})>", v)}


def mask(text: str, ids: set[str], names: set[str]) -> str:
    """``text`` with identifiers and file names replaced by spaces (same length, so offsets
    and line numbers do not move). ``names``: :func:`file_names` of the artifact's files."""
    lines = text.split("\n")
    continuing = False
    for i, line in enumerate(lines):
        m = _ID_HEADER_RE.match(line)
        if m:
            lines[i] = m.group(1) + " " * len(m.group(2))
            continuing = True
        elif continuing and _CONTINUATION_RE.match(line):
            lines[i] = " " * len(line)
        else:
            continuing = False
    text = _URI_ID_RE.sub(_blank, "\n".join(lines))
    if ids and "<" in text:
        text = re.sub(r"<([^<>\s@]{1,998}@[^<>\s]{1,998})>",
                      lambda m: _blank(m) if m.group(1).lower() in ids else m.group(0), text)
    if names:
        text = _TOKEN_RE.sub(lambda m: _blank(m) if m.group(0).lower() in names else m.group(0),
                             text)
    return text


def file_names(names: Iterable[str]) -> set[str]:
    """The domain-shaped tails of file names, lower case, as :func:`mask` takes them:
    ``docs/Job Offer.zip`` -> ``offer.zip`` (the part an IOC scan could take for a domain)."""
    out: set[str] = set()
    for n in names:
        m = _TAIL_RE.search(re.split(r"[/\\]", n.strip())[-1].rstrip(" ."))
        if m:
            out.add(m.group(0).lower())
    return out
