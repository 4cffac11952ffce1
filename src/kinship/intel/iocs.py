"""IOCs from a sample's strings and artifacts, each citing where it was found.

    strings (file offset, VA, referencing function)  ──┐
    PDB path, free text (reports, logs)              ──┴─> ioc-finder (all types, refangs
        "hxxp://evil[.]com") + kinship's patterns (Windows/Unix paths, registry keys, PDB paths,
        user agents, mutex-like names) -> MISP warning lists and private/reserved address
        filter -> IOC(type, value, defanged, sources, warning_lists)

The warning lists are read once into a digest of value hashes in the user cache
(:mod:`kinship.intel.datacache`), so a call costs a memory-mapped lookup, not a 2 s load.

Filtered IOCs are kept in the result (``filtered``) with the warning list that matched, so an
analyst can see why ``8.8.8.8`` is not reported.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import computed_field

from kinship.binary.model import Binary
from kinship.disasm.disassembly import Disassembly
from kinship.document import Document
from kinship.intel.datacache import cached_folder, data_key, package_dir

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
class IOC(Document):  # not frozen: find_iocs sets warning_lists
    type: str  # "url", "domain", "ipv4", "email", "file_path", "registry_key", "pdb_path" ...
    value: str  # refanged (machine-usable) form
    sources: list[IOCSource] = field(default_factory=list)
    warning_lists: list[str] = field(default_factory=list)  # why it was filtered, if it was

    @computed_field  # type: ignore[prop-decorator]  # a JSON key (listed after the fields)
    @property
    def defanged(self) -> str:
        return defang(self.value) if self.type in ("url", "domain", "ipv4", "ipv6",
                                                   "email") else self.value


@dataclass(frozen=True)
class IOCResult(Document):
    iocs: list[IOC]  # reportable
    filtered: list[IOC]  # known-benign (warning lists, private addresses)


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


# A warning-list entry is looked up by the blake2b-64 of its UTF-8 text: 2.5 million entries
# take 20 MB instead of a 2 s load, and two different values collide with probability ~1e-13.
_WL_HASH_BYTES = 8


def _wl_hash(value: str) -> int:
    data = value.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=_WL_HASH_BYTES).digest(), "little")


@dataclass(frozen=True)
class WarningListDigest:
    """The MISP warning lists as sorted value hashes: ``hashes[i]`` is on list
    ``names[lists[i]]`` (a value on several lists has several rows)."""

    hashes: npt.NDArray[np.uint64]
    lists: npt.NDArray[np.uint16]
    names: tuple[str, ...]

    @classmethod
    def build(cls, lists: Iterable[tuple[str, Iterable[str]]]) -> WarningListDigest:
        names: list[str] = []
        hashes: list[int] = []
        owners: list[int] = []
        for name, values in sorted(lists, key=lambda x: x[0]):
            for v in dict.fromkeys(str(v) for v in values):
                hashes.append(_wl_hash(v))
                owners.append(len(names))
            names.append(name)
        h = np.array(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        return cls(h[order], np.array(owners, dtype=np.uint16)[order], tuple(names))

    def save(self, folder: Path) -> None:
        np.save(folder / "hashes.npy", self.hashes)
        np.save(folder / "lists.npy", self.lists)
        (folder / "names.json").write_text(json.dumps(list(self.names)), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> WarningListDigest:
        names = json.loads((folder / "names.json").read_text(encoding="utf-8"))
        return cls(np.load(folder / "hashes.npy", mmap_mode="r"),
                   np.load(folder / "lists.npy", mmap_mode="r"), tuple(names))

    def search(self, value: str) -> list[str]:
        """Names of the lists that hold ``value`` exactly (pymispwarninglists' fast search)."""
        h = np.uint64(_wl_hash(value))
        lo = int(np.searchsorted(self.hashes, h, side="left"))
        hi = int(np.searchsorted(self.hashes, h, side="right"))
        return [self.names[i] for i in sorted({int(x) for x in self.lists[lo:hi]})]


def _warning_list_files() -> list[Path]:
    pkg = package_dir("pymispwarninglists")
    if pkg is None:
        return []
    return sorted((pkg / "data" / "misp-warninglists" / "lists").glob("*/list.json"))


def _read_warning_lists(files: list[Path]) -> list[tuple[str, list[str]]]:
    """(name, values) of every list: from the package's JSON files when they are where
    pymispwarninglists keeps them, else through its API (which imports jsonschema: slow)."""
    if files:
        out: list[tuple[str, list[str]]] = []
        for f in files:
            d = json.loads(f.read_text(encoding="utf-8"))
            out.append((str(d["name"]), [str(v) for v in d.get("list", [])]))
        return out
    from pymispwarninglists.api import WarningLists

    return [(str(w.name), [str(v) for v in w.list])
            for w in WarningLists(slow_search=False).values()]


def load_warning_lists() -> WarningListDigest:
    """The warning lists' digest, from the user cache (built there on first use, keyed by
    the installed pymispwarninglists and its data files)."""
    files = _warning_list_files()

    def build(folder: Path) -> None:
        WarningListDigest.build(_read_warning_lists(files)).save(folder)

    if files:
        folder = cached_folder("warninglists", data_key("pymispwarninglists", files), build)
        if folder is not None:
            try:
                return WarningListDigest.load(folder)
            except (OSError, ValueError) as e:  # a damaged cache: derive in memory
                logger.debug("warning-list cache %s unreadable: %s", folder, e)
    return WarningListDigest.build(_read_warning_lists(files))


class WarningListFilter:
    """MISP warning lists (known-benign domains, resolvers, cloud ranges ...), loaded once."""

    def __init__(self, digest: WarningListDigest | None = None) -> None:
        self._lists = digest if digest is not None else load_warning_lists()

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
            names.extend(self._lists.search(ioc.value))
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

    found: dict[str, list[tuple[str, str]]] = {}  # a text seen before is not parsed again
    for s in strings:
        if s.text not in found:
            found[s.text] = [(t, v) for t, v in _matches(s.text) if _plausible(t, v, s.text)]
        for t, v in found[s.text]:
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
