"""Sample-level similarity hashes an analyst expects to see next to code and string reuse.

imphash is computed by the PE loader (``Binary.imphash``); this adds the Rich header hash (MD5
of the decoded Rich header, as pefile/VirusTotal compute it; MSVC-linked PE only), TLSH
(py-tlsh), ssdeep (ppdeep, pure Python), per-section MD5s, the PDB path and export names. They
are weak evidence: equal imphash/Rich hash or a close TLSH/ssdeep says "same build
environment or close build", never "same author" on its own.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import pefile
import ppdeep
import tlsh

from kinship.binary.model import Binary, Format
from kinship.document import Document

log = logging.getLogger(__name__)

# ssdeep over more bytes than this is skipped: ppdeep is pure Python (~3 s per 10 MB here).
MAX_SSDEEP_BYTES = 8 * 1024 * 1024
# TLSH needs at least this many bytes (the library returns "TNULL" below it).
MIN_TLSH_BYTES = 50
# Sections hashed (hostile samples may declare thousands).
MAX_HASHED_SECTIONS = 96


@dataclass(frozen=True, slots=True)
class SectionHash:
    name: str
    md5: str  # of the section's raw file bytes
    size: int  # raw bytes hashed


@dataclass
class SampleHashes(Document):
    """Similarity hashes of one sample (None where not applicable or not computable)."""

    imphash: str | None = None
    rich_header_hash: str | None = None
    tlsh: str | None = None
    ssdeep: str | None = None
    pdb_path: str | None = None
    exports: list[str] = field(default_factory=list)
    sections: list[SectionHash] = field(default_factory=list)


def rich_header_hash(data: bytes) -> str | None:
    """MD5 of the clear Rich header of a PE (None when it has none or cannot be parsed)."""
    if data[:2] != b"MZ" or b"Rich" not in data[:4096]:
        return None
    try:
        pe = pefile.PE(data=data[:4096], fast_load=True)
        value = pe.get_rich_header_hash()
    except (pefile.PEFormatError, ValueError, IndexError) as e:
        log.debug("no Rich header hash: %s", e)
        return None
    return str(value) if value else None


def tlsh_hash(data: bytes) -> str | None:
    if len(data) < MIN_TLSH_BYTES:
        return None
    value = str(tlsh.hash(data))
    return None if value in ("", "TNULL") else value


def ssdeep_hash(data: bytes) -> str | None:
    if not data or len(data) > MAX_SSDEEP_BYTES:
        return None
    return str(ppdeep.hash(data))


def sample_hashes(binary: Binary, *, with_ssdeep: bool = True) -> SampleHashes:
    """All similarity hashes of ``binary``. ``with_ssdeep=False`` skips ssdeep, the only slow
    one (pure Python: ~0.1 s per 250 KB); ingest skips it, ``kinship info`` computes it."""
    data = binary.data
    sections = [
        SectionHash(s.name, hashlib.md5(data[s.offset : s.offset + s.raw_size]).hexdigest(),
                    min(s.raw_size, max(0, len(data) - s.offset)))
        for s in binary.sections[:MAX_HASHED_SECTIONS]
        if s.raw_size > 0 and binary.format is not Format.DUMP
    ]
    return SampleHashes(
        imphash=binary.imphash,
        rich_header_hash=rich_header_hash(data) if binary.format is Format.PE else None,
        tlsh=tlsh_hash(data),
        ssdeep=ssdeep_hash(data) if with_ssdeep else None,
        pdb_path=binary.pdb_path,
        exports=[e.name for e in binary.exports],
        sections=sections,
    )


def tlsh_distance(a: str, b: str) -> int:
    """TLSH distance (0 = identical; under ~100 is usually related)."""
    return int(tlsh.diff(a, b))


def ssdeep_similarity(a: str, b: str) -> int:
    """ssdeep match score 0..100."""
    return int(ppdeep.compare(a, b))
