"""Sample-level similarity signals: weak evidence beside code and string reuse.

An analyst checks these first (VirusTotal shows them): the same import hash, the same Rich
header (same linker/compiler toolchain build), a near TLSH digest, the same PDB path, the same
exported names. Each is weak alone — imphash collides for small import tables, the Rich header
is shared by everything one build machine produced, TLSH is fooled by padding — so they are
listed as evidence and never change the verdict or the score.

Each :class:`SampleSignal` names the stored sample, the signal, the shared value and, for
TLSH, the distance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kinship.sample_hashes import tlsh_distance
from kinship.store.model import SampleRecord

# TLSH distance at or below which two files are reported as near (TLSH's authors: < 30 is a
# very likely relative, < 100 a possible one; 0 = identical). Unit: TLSH distance, 0..~1000.
MAX_TLSH_DISTANCE = 70
# Imphashes of import tables this small collide between unrelated programs. Unit: imports.
MIN_IMPORTS_FOR_IMPHASH = 8
# Export sets this small (e.g. one `PyInit_x`) say nothing. Unit: exported names.
MIN_SHARED_EXPORTS = 3
# Most signals listed (best first). Range 1..1000.
MAX_SIGNALS = 50


@dataclass(frozen=True, slots=True)
class SampleSignal:
    sha256: str
    name: str
    family: str | None
    source: str | None
    signal: str  # imphash | rich_header | tlsh | pdb_path | exports
    value: str  # the shared value (for exports: the shared names, comma-separated)
    distance: int | None = None  # TLSH distance


def _hashes(info: dict[str, Any]) -> dict[str, Any]:
    h = info.get("hashes")
    return h if isinstance(h, dict) else {}


def sample_signals(query: SampleRecord, stored: Iterable[SampleRecord],
                   max_signals: int = MAX_SIGNALS) -> list[SampleSignal]:
    """Signals the query shares with stored samples (itself excluded), strongest first."""
    q = _hashes(query.info)
    q_exports = set(q.get("exports") or [])
    out: list[tuple[float, SampleSignal]] = []
    for rec in stored:
        if rec.sha256 == query.sha256 or rec.is_library:
            continue
        r = _hashes(rec.info)

        def add(rank: float, signal: str, value: str, distance: int | None = None,
                rec: SampleRecord = rec) -> None:
            out.append((rank, SampleSignal(rec.sha256, rec.name, rec.family, rec.source,
                                           signal, value, distance)))

        if q.get("pdb_path") and q.get("pdb_path") == r.get("pdb_path"):
            add(0.0, "pdb_path", str(q["pdb_path"]))
        if (q.get("imphash") and q.get("imphash") == r.get("imphash")
                and int(query.info.get("n_imports", 0)) >= MIN_IMPORTS_FOR_IMPHASH):
            add(1.0, "imphash", str(q["imphash"]))
        if q.get("rich_header_hash") and q.get("rich_header_hash") == r.get("rich_header_hash"):
            add(2.0, "rich_header", str(q["rich_header_hash"]))
        if q.get("tlsh") and r.get("tlsh"):
            d = tlsh_distance(str(q["tlsh"]), str(r["tlsh"]))
            if d <= MAX_TLSH_DISTANCE:
                add(3.0 + d / 1000, "tlsh", str(r["tlsh"]), d)
        shared = sorted(q_exports & set(r.get("exports") or []))
        if len(shared) >= MIN_SHARED_EXPORTS:
            add(4.0 - len(shared) / 1e6, "exports", ", ".join(shared[:20]))
    out.sort(key=lambda x: x[0])
    return [s for _, s in out[:max_signals]]
