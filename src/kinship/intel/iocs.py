"""IOCs from a sample's strings and artifacts, each citing where it was found.

    strings (file offset, VA, referencing function)  ──┐
    PDB path, free text (reports, logs)              ──┴─> ioc-finder (all types, refangs
        "hxxp://evil[.]com") + kinship's patterns (Windows/Unix paths, registry keys, PDB paths,
        user agents, mutex-like names) -> MISP warning lists and private/reserved address
        filter -> IOC(type, value, defanged, sources, warning_lists)

Filtered IOCs are kept in the result (``filtered``) with the warning list that matched, so an
analyst can see why ``8.8.8.8`` is not reported.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kinship.binary.model import Binary
from kinship.disasm.model import Disassembly

logger = logging.getLogger(__name__)

# Strings shorter than this are not scanned (IOCs are longer; short strings are noise).
MIN_STRING_LEN = 5
# A sample contributes at most this many strings (a packed or resource-heavy file can hold
# millions of printable runs; beyond this the scan would dominate the run).
MAX_STRINGS = 200_000
# One string is cut to this length before matching (regexes on megabyte strings are slow).
MAX_STRING_LEN = 4096
# Every IOC keeps at most this many sources.
MAX_SOURCES = 10

_ASCII_RE = re.compile(rb"[\x20-\x7e\t]{%d,}" % MIN_STRING_LEN)
_UTF16_RE = re.compile(rb"(?:[\x20-\x7e\t]\x00){%d,}" % MIN_STRING_LEN)

# ioc-finder result key -> kinship IOC type
_FINDER_TYPES = {
    "urls": "url", "domains": "domain", "ipv4s": "ipv4", "ipv6s": "ipv6",
    "email_addresses": "email", "md5s": "md5", "sha1s": "sha1", "sha256s": "sha256",
    "sha512s": "sha512", "cves": "cve", "registry_key_paths": "registry_key",
    "file_paths": "file_path", "user_agents": "user_agent", "ipv4_cidrs": "ipv4_cidr",
    "bitcoin_addresses": "bitcoin_address", "monero_addresses": "monero_address",
    "mac_addresses": "mac_address", "asns": "asn", "attack_techniques": "attack_technique",
}
_OWN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pdb_path", re.compile(r"[A-Za-z]:\\[^\x00-\x1f<>\"|?*]{1,240}\.pdb\b", re.I)),
    ("registry_key", re.compile(
        r"\b(?:HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS|HKLM|HKCU|HKCR)"
        r"\\[\w\\ .{}-]{2,240}|\b(?:Software|SYSTEM)\\(?:Microsoft|CurrentControlSet)"
        r"\\[\w\\ .{}-]{2,240}", re.I)),
    ("file_path", re.compile(
        r"(?:\b[A-Za-z]:|%[A-Za-z]+%)\\[^\x00-\x1f<>\"|?*%]{2,240}"
        r"|(?<![\w/])/(?:tmp|var|etc|usr|home|dev/shm|root|opt|bin)/[\w./-]{2,240}")),
    ("user_agent", re.compile(r"\bMozilla/\d\.\d \([^)]{3,200}\)[^\x00]{0,200}")),
    ("mutex", re.compile(r"\b(?:Global|Local)\\[\w{}.-]{4,120}")),
)


@dataclass(frozen=True, slots=True)
class IOCSource:
    """Where an IOC was seen. ``kind``: "string", "pdb", "text"."""

    kind: str
    sample: str  # sha256 of the sample, or a document name for text
    offset: int | None = None  # file offset of the string
    va: int | None = None  # virtual address of the string
    function_va: int | None = None  # a function that references the string
    context: str = ""  # the string it came from (cut to 200 characters)


@dataclass
class IOC:
    type: str  # "url", "domain", "ipv4", "email", "file_path", "registry_key", "pdb_path" ...
    value: str  # refanged (machine-usable) form
    sources: list[IOCSource] = field(default_factory=list)
    warning_lists: list[str] = field(default_factory=list)  # why it was filtered, if it was

    @property
    def defanged(self) -> str:
        return defang(self.value) if self.type in ("url", "domain", "ipv4", "ipv6",
                                                   "email") else self.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "value": self.value, "defanged": self.defanged,
            "warning_lists": list(self.warning_lists),
            "sources": [{"kind": s.kind, "sample": s.sample, "offset": s.offset, "va": s.va,
                         "function_va": s.function_va, "context": s.context}
                        for s in self.sources],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IOC:
        return cls(d["type"], d["value"],
                   [IOCSource(s["kind"], s["sample"], s.get("offset"), s.get("va"),
                              s.get("function_va"), s.get("context", ""))
                    for s in d.get("sources", [])],
                   list(d.get("warning_lists", [])))


@dataclass
class IOCResult:
    iocs: list[IOC]  # reportable
    filtered: list[IOC]  # known-benign (warning lists, private addresses)

    def to_dict(self) -> dict[str, Any]:
        return {"iocs": [i.to_dict() for i in self.iocs],
                "filtered": [i.to_dict() for i in self.filtered]}


@dataclass(frozen=True, slots=True)
class FoundString:
    text: str
    offset: int | None
    va: int | None
    function_va: int | None = None


# ---- defang / refang ----------------------------------------------------------------------
def defang(value: str) -> str:
    """``http://evil.com/x`` -> ``hxxp://evil[.]com/x`` (safe to paste into a report)."""
    out = re.sub(r"^http", "hxxp", value, flags=re.I)
    out = re.sub(r"^ftp", "fxp", out, flags=re.I)
    out = out.replace("@", "[@]")
    host_end = len(out)
    m = re.match(r"^[a-z]+://", out, re.I)
    start = m.end() if m else 0
    slash = out.find("/", start)
    if slash != -1:
        host_end = slash
    return out[:start] + out[start:host_end].replace(".", "[.]") + out[host_end:]


def refang(value: str) -> str:
    """The inverse of :func:`defang`, also for common variants (``[dot]``, ``(.)``, ``hXXp``)."""
    out = re.sub(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)", ".", value, flags=re.I)
    out = re.sub(r"\[@\]|\[at\]|\(at\)", "@", out, flags=re.I)
    out = re.sub(r"\bh[x]{2}p(s?)://", r"http\1://", out, flags=re.I)
    out = re.sub(r"\bfxp://", "ftp://", out, flags=re.I)
    return out.replace("[:]", ":").replace("[/]", "/")


# ---- strings ------------------------------------------------------------------------------
def file_strings(binary: Binary, disassembly: Disassembly | None = None) -> list[FoundString]:
    """ASCII and UTF-16LE strings of the file, with offset, VA and a referencing function."""
    refs: dict[int, int] = {}
    if disassembly is not None:
        for f in disassembly.functions:
            for b in f.blocks:
                for i in b.instructions:
                    if i.string is not None and i.data_ref is not None:
                        refs.setdefault(i.data_ref, f.va)
    out: list[FoundString] = []
    data = binary.data
    for rx, enc in ((_ASCII_RE, "ascii"), (_UTF16_RE, "utf-16-le")):
        for m in rx.finditer(data):
            if len(out) >= MAX_STRINGS:
                logger.warning("%s: more than %d strings; the rest are not scanned",
                               binary.path, MAX_STRINGS)
                return out
            text = m.group().decode(enc, "replace")[:MAX_STRING_LEN]
            va = binary.offset_to_va(m.start())
            out.append(FoundString(text, m.start(), va, refs.get(va) if va is not None else None))
    return out


# ---- matching -----------------------------------------------------------------------------
def _matches(text: str) -> Iterator[tuple[str, str]]:
    from ioc_finder import find_iocs

    found = find_iocs(text)
    for key, values in found.items():
        kind = _FINDER_TYPES.get(key)
        if kind is None or not values:
            continue
        items: Iterable[str] = values if isinstance(values, list) else [
            v for vs in values.values() for v in vs]
        for v in items:
            yield kind, str(v)
    refanged = refang(text)
    for kind, rx in _OWN_PATTERNS:
        for m in rx.finditer(refanged):
            yield kind, m.group().rstrip(" .")


def _plausible(kind: str, value: str, context: str) -> bool:
    if kind == "domain":
        # "kernel32.dll", "msvcrt.dll": file names that look like domains
        if re.search(r"\.(dll|exe|sys|so|c|h|o|pdb|txt|ini|dat|log|tmp|bin)$", value, re.I):
            return False
        return "." in value and not value.replace(".", "").isdigit()
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return len(set(value.lower())) > 4  # "00000000..." runs are padding, not hashes
    return True


class WarningListFilter:
    """MISP warning lists (known-benign domains, resolvers, cloud ranges ...), loaded once."""

    def __init__(self) -> None:
        from pymispwarninglists.api import WarningLists

        self._lists = WarningLists(slow_search=False)

    def hits(self, ioc: IOC) -> list[str]:
        names: list[str] = []
        if ioc.type in ("ipv4", "ipv6"):
            try:
                addr = ipaddress.ip_address(ioc.value)
            except ValueError:
                addr = None
            if addr is not None and (addr.is_private or addr.is_loopback or addr.is_reserved
                                     or addr.is_multicast or addr.is_unspecified):
                names.append("private/reserved address")
        if ioc.type in ("url", "domain", "ipv4", "ipv6", "email", "md5", "sha1", "sha256"):
            try:
                names.extend(str(h.name) for h in self._lists.search(ioc.value))
            except (ValueError, KeyError) as e:  # a malformed value must not stop the batch
                logger.debug("warning-list search failed for %r: %s", ioc.value, e)
        return names


@lru_cache(maxsize=1)
def warning_lists() -> WarningListFilter:
    return WarningListFilter()


def extract_iocs(
    strings: Iterable[FoundString],
    *,
    sample: str,
    kind: str = "string",
    filter_benign: bool = True,
    extra: Iterable[tuple[str, str, IOCSource]] = (),
) -> IOCResult:
    """IOCs in ``strings``; ``extra`` adds already-typed ones (e.g. the PE's PDB path)."""
    by_key: dict[tuple[str, str], IOC] = {}

    def add(kind_: str, value: str, src: IOCSource) -> None:
        key = (kind_, value.lower() if kind_ in ("domain", "email") else value)
        ioc = by_key.setdefault(key, IOC(kind_, value))
        if len(ioc.sources) < MAX_SOURCES and src not in ioc.sources:
            ioc.sources.append(src)

    for s in strings:
        for t, v in _matches(s.text):
            if _plausible(t, v, s.text):
                add(t, v, IOCSource(kind, sample, s.offset, s.va, s.function_va, s.text[:200]))
    for t, v, src in extra:
        add(t, v, src)
    iocs: list[IOC] = []
    filtered: list[IOC] = []
    wl = warning_lists() if filter_benign else None
    for ioc in sorted(by_key.values(), key=lambda i: (i.type, i.value)):
        if wl is not None:
            ioc.warning_lists = wl.hits(ioc)
        (filtered if ioc.warning_lists else iocs).append(ioc)
    return IOCResult(iocs, filtered)


def iocs_from_text(text: str, *, source: str = "text", filter_benign: bool = True) -> IOCResult:
    """IOCs in free text (a report, a log, an e-mail); defanged forms are refanged."""
    lines = [FoundString(line, None, None) for line in text.splitlines() if line.strip()]
    return extract_iocs(lines, sample=source, kind="text", filter_benign=filter_benign)


def iocs_from_sample(binary: Binary, disassembly: Disassembly | None = None, *,
                     filter_benign: bool = True) -> IOCResult:
    """IOCs in a sample's strings and PDB path, each citing offset, VA and function."""
    extra: list[tuple[str, str, IOCSource]] = []
    if binary.pdb_path:
        extra.append(("pdb_path", binary.pdb_path,
                      IOCSource("pdb", binary.hashes.sha256, context="debug directory")))
    return extract_iocs(file_strings(binary, disassembly), sample=binary.hashes.sha256,
                        filter_benign=filter_benign, extra=extra)
