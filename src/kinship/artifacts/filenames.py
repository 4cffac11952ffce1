"""File names that lie about what they are: double extensions and right-to-left overrides.

    offer.pdf.exe          Explorer hides ".exe" (known extensions hidden by default): "offer.pdf"
    cv.docx      .scr      padding pushes the real extension out of the column
    invoice\u202efdp.exe   U+202E RIGHT-TO-LEFT OVERRIDE: shown as "invoiceexe.pdf"

:func:`name_tricks` says which of these a name uses; attack.py maps them to ATT&CK
(T1036.007 Double File Extension, T1036.002 Right-to-Left Override, and T1204.002 when the
real extension runs code). :func:`visible` writes a name with its control and format
characters escaped, for evidence strings and the terminal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Extensions Windows runs (or hands to an interpreter) on double-click.
EXECUTABLE_EXTENSIONS = frozenset({
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "lnk", "msi", "cpl", "jar", "ps1", "msc", "reg", "url", "scf", "chm"})
# Extensions of what a lure pretends to be: documents, pictures, media, archives, web pages.
DECOY_EXTENSIONS = frozenset({
    "pdf", "doc", "docx", "docm", "dot", "dotx", "xls", "xlsx", "xlsm", "ppt", "pptx", "rtf",
    "txt", "csv", "odt", "ods", "odp", "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff",
    "mp3", "mp4", "avi", "mov", "wav", "wmv", "zip", "rar", "7z", "htm", "html", "xml",
    "eml", "msg", "one"})
# Bidirectional controls that reorder how a name is displayed.
_OVERRIDES = "\u202d\u202e"  # LRO, RLO: force the direction of what follows
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_POP = "\u202c\u2069"  # PDF, PDI: end an override / isolate
# ".pdf" then optional padding (spaces, no-break spaces, dots, underscores) then ".exe".
_DOUBLE_RE = re.compile(r"\.([a-z0-9]{1,5})[\s._\u00a0\u3000]*\.([a-z0-9]{2,4})$", re.I)


@dataclass(frozen=True, slots=True)
class NameTrick:
    """``kind``: "double extension" or "right-to-left override". ``shown``: the name as a
    file manager displays it; ``real_extension``: what Windows goes by; ``runs``: that
    extension executes code."""

    kind: str
    name: str
    shown: str
    real_extension: str
    runs: bool

    def describe(self) -> str:
        text = f"{self.kind}: {visible(self.name)}"
        if self.shown != self.name:
            text += f" shown as {visible(self.shown)}"
        text += f", really .{self.real_extension}" if self.real_extension else ", no extension"
        return text + (" (runs code)" if self.runs else "")


def printable(text: str) -> str:
    """``text`` with control/format characters (ESC, RTLO, zero-width, line separators ...)
    written as ``\\x1b`` / ``\\u202e``, so that it can neither drive a terminal nor reorder
    itself; everything else (accents, CJK) is kept."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def visible(text: str) -> str:
    """:func:`printable`, quoted: ``'invoice\\u202efdp.exe'`` (for evidence strings)."""
    return "'" + printable(text) + "'"


def _basename(name: str) -> str:
    # Windows ignores trailing dots and spaces: "offer.pdf.exe. " runs as .exe
    return re.split(r"[/\\]", name)[-1].rstrip(" .")


def _displayed(name: str) -> str:
    """How a left-to-right file manager shows ``name``: text after RLO/LRO up to PDF/PDI is
    reversed (RLO) - enough for the file-name trick, not a full bidi algorithm."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch in _OVERRIDES:
            j = i + 1
            while j < len(name) and name[j] not in _POP:
                j += 1
            run = "".join(c for c in name[i + 1: j] if c not in _BIDI)
            out.append(run[::-1] if ch == "\u202e" else run)
            i = j + 1
            continue
        if ch not in _BIDI:
            out.append(ch)
        i += 1
    return "".join(out)


def _extension(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot and ext.isalnum() and len(ext) <= 8 else ""


def name_tricks(name: str) -> list[NameTrick]:
    """The tricks ``name`` (a path or a file name) plays; [] for an honest name."""
    base = _basename(name)
    tricks: list[NameTrick] = []
    logical = "".join(c for c in base if unicodedata.category(c) != "Cf")
    real = _extension(logical)
    m = _DOUBLE_RE.search(logical)
    if m and m.group(1).lower() in DECOY_EXTENSIONS \
            and m.group(2).lower() in EXECUTABLE_EXTENSIONS:
        tricks.append(NameTrick("double extension", base, base, real, True))
    if any(c in _BIDI for c in base):
        shown = _displayed(base)
        if shown != logical:
            tricks.append(NameTrick("right-to-left override", base, shown, real,
                                    real in EXECUTABLE_EXTENSIONS))
    return tricks
