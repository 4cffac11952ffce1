"""Passwords for encrypted zips: the customary one, the analyst's, and those a mail gives.

Phishing mails that carry an encrypted zip (so that mail gateways cannot open it) tell the
victim the password in the body: "The password is: Offer2018", "pwd: x", "Passwort: ...",
"password for the archive - abc123", quoted or not, in the plain or the HTML part. Every such
value becomes a :class:`PasswordCandidate` whose ``source`` is the line it was read from, so
the result can show which line opened the zip.

    order tried:  "infected" (default) -> --password / passwords=... (option)
                  -> this mail's body and subject -> the enclosing mails' (outermost last)

Wrong candidates cost one header check each (no content is read with them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from kinship.artifacts import limits
from kinship.artifacts.model import PasswordCandidate

DEFAULT_PASSWORD = PasswordCandidate("infected", "default")

# "password", its plurals and translations, and the short forms mails use ("pwd", "pw").
_KEYWORD = (r"(?:passwor[dt]s?|passwd|passcode|pass\s?phrase|kennwort|wachtwoord|"
            r"mot\s+de\s+passe|contrase[ñn]a|senha|parola|has[łl]o|пароль|密[码碼]|パスワード|"
            r"비밀번호|[şs]ifre|l[öo]senord|salasana|pwd|pw|pass|mdp)")
# keyword, a few words ("for the archive", "lautet"), a separator (is / : / = / dash), value;
# blanks include the no-break space of HTML "Password:&nbsp;x".
# Every part is bounded: the text is hostile and the scan must stay linear.
_N = limits.MAX_PASSWORD_CHARS
_KEYWORD_RE = re.compile(r"(?<!\w)" + _KEYWORD + r"(?!\w)", re.I)
_ANNOUNCED_RE = re.compile(
    r"(?P<filler>[^\n:=：]{0,40}?)"
    r"(?:[^\S\n]*(?:\b(?:is|ist|est|es|é)\b|[:=：\-–—])[^\S\n]*){1,3}\n?[^\S\n]*"
    rf"(?P<value>\"[^\"\n]{{1,{_N}}}\"|'[^'\n]{{1,{_N}}}'|“[^”\n]{{1,{_N}}}”|"
    rf"‘[^’\n]{{1,{_N}}}’|«[^»\n]{{1,{_N}}}»|„[^“”\n]{{1,{_N}}}[“”]|`[^`\n]{{1,{_N}}}`|"
    rf"\S{{1,{_N}}})",
    re.I)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“”", "`": "`"}
_TRAILING = ".,;:!?)]}>"
# Values that are the next word of a sentence, not a password ("password: none").
_NOT_PASSWORDS = frozenset({"is", "ist", "est", "none", "no", "not", "protected", "required",
                            "below", "above", "attached", "the", "for", "to"})


def _values(raw: str) -> list[str]:
    """The password(s) a matched value stands for: unquoted, trailing punctuation cut (and
    kept as a second candidate, since "abc!" may be the password)."""
    opening = raw[0]
    if opening in _QUOTES and len(raw) >= 2 and raw[-1] in _QUOTES[opening]:
        return [raw[1:-1]]
    cut = raw.rstrip(_TRAILING)
    return [v for v in dict.fromkeys((cut, raw)) if v]


def passwords_in_text(text: str, where: str) -> list[PasswordCandidate]:
    """Candidates announced in ``text``; ``where`` names the text (``mail.eml: body:text/plain``)
    and becomes, with the line number and the line itself, each candidate's ``source``."""
    text = text[: limits.MAX_TEXT_CHARS]
    out: list[PasswordCandidate] = []
    for n, k in enumerate(_KEYWORD_RE.finditer(text)):
        if n >= limits.MAX_PASSWORD_KEYWORDS:
            break
        m = _ANNOUNCED_RE.match(text, k.end())
        if m is None:
            continue
        start = text.rfind("\n", 0, k.start()) + 1
        end = text.find("\n", k.start())
        line = text[start: end if end >= 0 else len(text)].strip()
        number = text.count("\n", 0, k.start()) + 1
        source = f"{where} line {number}: {line[: limits.MAX_EVIDENCE_CHARS]!r}"
        for value in _values(m.group("value")):
            if value.lower() not in _NOT_PASSWORDS:
                out.append(PasswordCandidate(value, source))
        if len(out) >= limits.MAX_PASSWORDS_PER_TEXT:
            break
    return out[: limits.MAX_PASSWORDS_PER_TEXT]


def mail_passwords(mail_name: str, texts: Iterable[tuple[str, str]]) -> list[PasswordCandidate]:
    """Candidates of one mail's body parts and subject (``texts``: ``(location, text)`` pairs
    as :func:`kinship.artifacts.email_.parse_email` gives them; link targets are skipped)."""
    out: list[PasswordCandidate] = []
    for location, text in texts:
        if (location.startswith("body:") and not location.endswith(":href")) \
                or location == "header:Subject":
            out += passwords_in_text(text, f"{mail_name}: {location}")
    return out


def candidates(*groups: Sequence[PasswordCandidate]) -> list[PasswordCandidate]:
    """The default first, then ``groups`` in order; each password once (first source kept),
    at most ``MAX_PASSWORDS_TRIED``."""
    seen: dict[str, PasswordCandidate] = {DEFAULT_PASSWORD.password: DEFAULT_PASSWORD}
    for group in groups:
        for c in group:
            seen.setdefault(c.password, c)
    return list(seen.values())[: limits.MAX_PASSWORDS_TRIED]


def option_passwords(passwords: Iterable[str]) -> list[PasswordCandidate]:
    """The analyst's passwords (``--password``), source "option"."""
    return [PasswordCandidate(p, "option") for p in passwords if p]
