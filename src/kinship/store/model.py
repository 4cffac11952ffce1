"""Records kept by every store backend (SQLite today, PostgreSQL later: same shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SampleRecord:
    """One ingested file and its provenance labels. ``family`` None = unlabelled."""

    sha256: str
    md5: str
    sha1: str
    name: str  # file name as ingested
    format: str  # "pe" | "elf" | "dump"
    arch: str  # "x86" | "x64"
    size: int
    family: str | None = None
    actor: str | None = None
    source: str | None = None  # who reported it, e.g. "Vendor report 2016"
    first_seen: str | None = None  # ISO date or prefix ("2016-03")
    version: str | None = None
    is_library: bool = False  # goodware/library corpus: its functions are library code
    n_functions: int = 0
    n_instructions: int = 0
    added_at: str = ""  # ISO timestamp, set by the store
    info: dict[str, Any] = field(default_factory=dict)  # imphash, compile_time, pdb, sections...
    id: int | None = None  # store's row id


@dataclass
class StoreStats:
    samples: int
    families: int
    actors: int
    functions: int
    library_samples: int
    size_bytes: int  # size of the store on disk
    schema_version: int
    path: str
