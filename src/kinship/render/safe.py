"""Sample-controlled text made inert for the terminal and for Markdown.

Every string that comes from a sample or a store (file and member names, symbol and section
names, e-mail headers, strings, labels, rule names from user folders, error messages that
quote them) is hostile twice over:

    "\\x1b]0;pwned\\x07"   terminal escape: sets the window title (OSC 0); ESC[2J clears the
                          screen, OSC 8 makes a hyperlink, \\x9b is a one-byte CSI, U+202E
                          reorders the rest of the line
    "[/]" "[red]x"        rich markup: raises MarkupError (a traceback) or restyles the line
    "`|<script>[x](j:)"  Markdown: ends a code span, splits a table cell, raw HTML, a link

The helpers here write control and format characters visibly (``\\x1b``, ``\\u202e``; see
:func:`kinship.artifacts.filenames.printable`) and never let rich or a Markdown renderer read
the data as markup:

    plain(x)      str for click.echo / a whole line of data
    inert(x)      rich Text (never parsed as markup, no emoji codes) for console.print / cells
    markup(x)     str to splice into a rich markup string the code writes itself
    json_text(s)  JSON text with the remaining invisible characters as \\uXXXX (same values)
    md(x)         Markdown inline text (tables included); md_code / md_fence for code

JSON output keeps its values exactly: :func:`json_text` only changes how they are written.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata

from markupsafe import Markup
from rich.markup import escape
from rich.text import Text

from kinship.artifacts.filenames import printable

# Characters shown escaped by printable(): control, format (bidi, zero-width), surrogate,
# private use, unassigned, line and paragraph separators.
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
# Kept by plain_lines(): line structure of a multi-line block (rules, listings).
_LAYOUT = "\n\t"


def _str(text: object) -> str:
    return "" if text is None else str(text)


def plain(text: object) -> str:
    """``text`` (None: "") with every control/format character written visibly: safe to
    echo, and one line (a newline in a name cannot forge a second line)."""
    return printable(_str(text))


def plain_lines(text: object) -> str:
    """:func:`plain` for a multi-line block (a YARA rule, YAML, a listing): newlines and tabs
    are kept, everything else invisible is written visibly."""
    s = _str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch in _LAYOUT else printable(ch) for ch in s)


def inert(text: object, style: str = "") -> Text:
    """A rich :class:`~rich.text.Text` of :func:`plain` ``text``: never read as markup."""
    return Text(plain(text), style=style)


def markup(text: object) -> str:
    """``text`` for a rich markup string: control characters visible, ``[`` escaped."""
    return escape(plain(text))


def json_text(text: str) -> str:
    """JSON ``text`` with the invisible characters that ``json.dumps(ensure_ascii=False)``
    leaves raw (C1 controls such as \\x9b, bidi overrides, zero-width, separators) written
    as ``\\uXXXX`` escapes: the same JSON values, nothing that drives a terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch not in _LAYOUT and unicodedata.category(ch) in _INVISIBLE:
            out.append(json.dumps(ch)[1:-1])  # \uXXXX, a surrogate pair above U+FFFF
        else:
            out.append(ch)
    return "".join(out)


# Markdown: punctuation that starts markup anywhere in a line (code spans, emphasis, links,
# images, raw HTML, autolinks, table cells, strikethrough) or an entity (&lt; &#60;).
_MD_INLINE = re.compile(r"[\\`*\[\]<>|~]|&(?=#?\w+;)|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# ... and at the start of a line: headings, block quotes, list items, setext underlines.
_MD_LEADING = re.compile(r"^(\s*\d{0,9})(#(?=\s|$)|[+-](?=\s)|[.)](?<=\d[.)])(?=\s|$)"
                         r"|[=-](?=[=-]+\s*$))")


def md(text: object) -> str:
    """Markdown inline text (also a table cell) that renders as ``text`` itself: control
    characters visible (one line), Markdown and HTML punctuation backslash-escaped."""
    s = _MD_INLINE.sub(lambda m: "\\" + m.group(0), plain(text))
    return _MD_LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), s, count=1)


def md_code(text: object, *, table: bool = False) -> Markup:
    """An inline code span showing ``text``: delimited by more backticks than ``text`` has
    in a row; ``table``: in a GFM table cell, where ``|`` must be ``\\|`` even in code."""
    s = plain(text)
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip(" ") else ""
    if table:
        s = s.replace("|", "\\|")
    return Markup(f"{fence}{pad}{s}{pad}{fence}")


def md_fence(text: object, info: str = "") -> Markup:
    """A fenced code block of ``text`` (lines kept, control characters visible), its fence
    longer than any run of backticks in ``text`` so that no line of it can close the block."""
    s = plain_lines(text).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}{info}\n{s}\n{fence}")


def md_block(text: object) -> Markup:
    """``text`` for inside a fenced code block the template writes itself (one line of a
    hex dump): control characters visible, no Markdown escapes (they would show)."""
    return Markup(plain_lines(text))


class InertFormatter(logging.Formatter):
    """Log lines for a terminal: messages quote member names, paths and headers from
    samples, so the formatted record goes through :func:`plain_lines` (a traceback keeps its
    lines)."""

    def format(self, record: logging.LogRecord) -> str:
        return plain_lines(super().format(record))
