"""How much a string says about provenance.

Two factors, multiplied:

* **intrinsic weight** (0..1, from the text alone): ``GetProcAddress``, ``kernel32.dll``,
  ``%s``, ``(null)`` say nothing (0); a long command template with spaces and format
  specifiers says a lot (1). Identifier-like texts (API, symbol, import names) and file names of
  system libraries are 0: they come from the toolchain and the OS, not the author;
* **rarity** across the corpus: a string known from a library/goodware sample (CRT messages,
  zlib's "incorrect header check") is 0; otherwise ``1 / n_families`` where ``n_families`` is
  the number of families whose samples contain it (document frequency per family).

    weight("netsh firewall add portopening TCP %d \"%s\"")  = 1.0 x 1/1   (one family)
    weight("Unknown pseudo relocation bit size %d.")        = 1.0 x 0     (library corpus)
    weight("GetProcAddress")                                = 0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kinship.store.base import StringPosting

# Texts that are generic whatever their length (format-only strings, locale/runtime names).
COMMON_STRINGS = frozenset({
    "(null)", "(nil)", "Infinity", "infinity", "-Infinity", "nan", "NaN", "true", "false",
    "Unknown error", "Success", "localhost", "127.0.0.1", "0.0.0.0", "default", "Default",
    "/bin/sh", "/dev/null", "/dev/urandom", "/proc/self/exe", "Microsoft Corporation",
    "mscoree.dll", "CorExitProcess", "CONOUT$", "CONIN$",
})
_IDENTIFIER = re.compile(r"\.?[A-Za-z_?@$][\w?@$:<>~]*")
_SYSTEM_FILE = re.compile(r"(?i)[\w.+-]+\.(dll|exe|sys|drv|ocx|so(\.\d+)*|dylib)")
_FORMAT = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z|j|t|I64|I32)?[diouxXeEfgGcspn%]")
_SYMBOL_VERSION = re.compile(r"[A-Z]+_[\d.]+")  # GLIBC_2.14, GCC_3.0, CXXABI_1.3
_WORD = re.compile(r"[A-Za-z]{3,}")
# Toolchain identification that every program of a compiler carries (.comment, .rdata$zzz):
# "GCC: (GNU) 12-win32", "clang version 14.0.6", "Mingw-w64 runtime failure:". Not evidence.
_TOOLCHAIN = re.compile(
    r"(GCC: \(|(Debian |Ubuntu )?clang version |Microsoft \(R\) |Mingw-w64 runtime failure"
    r"|Linker: |GNU (C|C\+\+|AS|ld) ?\d)")


@dataclass(frozen=True, slots=True)
class RarityConfig:
    """Knobs of string weighting."""

    # Shortest text (characters, after stripping blanks and format specifiers) with any weight.
    # Range 3..32; at 6, "%d.%d" and "UTF-8" weigh nothing, "Windows Update" does.
    min_chars: int = 6
    # Characters (same count) at which the intrinsic weight reaches 1; linear from min_chars.
    # Range min_chars..256. Longer strings are less likely to recur by chance.
    full_weight_chars: int = 24
    # Weight of texts that look like one identifier (no blank): symbol names, section names,
    # API names. Range 0..1; 0 so that `GetProcAddress` counts for nothing.
    identifier_weight: float = 0.0
    # Minimum share of letters, digits and blanks in a text; below it the text is binary noise
    # that happened to be printable (weight 0). Range 0..1.
    min_alnum_share: float = 0.6


def intrinsic_weight(text: str, config: RarityConfig | None = None) -> float:
    """0..1: how specific ``text`` is, from the text alone (see the module docstring)."""
    cfg = config or RarityConfig()
    t = text.strip()
    if not t or t in COMMON_STRINGS or _TOOLCHAIN.match(t):
        return 0.0
    core = _FORMAT.sub("", t).strip()
    if len(core) < cfg.min_chars or not _WORD.search(core):
        return 0.0
    alnum = sum(1 for c in t if c.isalnum() or c == " ")
    if alnum < cfg.min_alnum_share * len(t):
        return 0.0
    if " " not in t and (_SYSTEM_FILE.fullmatch(t) or _SYMBOL_VERSION.fullmatch(t)):
        return 0.0
    base = min(1.0, (len(core) - cfg.min_chars + 1) / max(1, cfg.full_weight_chars - cfg.min_chars))
    if " " not in t and _IDENTIFIER.fullmatch(t):
        return round(base * cfg.identifier_weight, 6)
    return round(base, 6)


@dataclass(frozen=True, slots=True)
class StringRarity:
    """Corpus statistics of one text."""

    text: str
    intrinsic: float  # intrinsic_weight(text)
    n_families: int  # labelled, non-library families whose samples contain it
    n_samples: int  # samples (any) that contain it
    in_library: bool  # a library/goodware sample contains it

    @property
    def weight(self) -> float:
        """intrinsic x rarity: 0 for library strings, intrinsic / n_families otherwise (a
        string of unlabelled samples only counts as if one family had it)."""
        if self.in_library or self.intrinsic <= 0.0:
            return 0.0
        return self.intrinsic / max(1, self.n_families)


def corpus_rarity(
    texts: Iterable[str],
    postings: Mapping[str, Sequence[StringPosting]],
    config: RarityConfig | None = None,
) -> dict[str, StringRarity]:
    """Rarity of each of ``texts`` from the store's postings (``Store.string_postings``)."""
    out: dict[str, StringRarity] = {}
    for text in texts:
        plist = postings.get(text, ())
        families = {p.family for p in plist if p.family and not p.is_library}
        out[text] = StringRarity(
            text=text,
            intrinsic=intrinsic_weight(text, config),
            n_families=len(families),
            n_samples=len({p.sample_id for p in plist}),
            in_library=any(p.is_library for p in plist),
        )
    return out


def distinctive(texts: Iterable[str], config: RarityConfig | None = None) -> list[str]:
    """The texts with a positive intrinsic weight (what the store keeps), in input order."""
    return [t for t in texts if intrinsic_weight(t, config) > 0.0]
