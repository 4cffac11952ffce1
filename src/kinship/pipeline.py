"""One sample through the pipeline: bytes -> Binary -> Disassembly -> FunctionFeatures.

This is the CPU-heavy unit of work; ``ingest`` fans it out over processes. It never touches the
store, so a failure here cannot corrupt anything already stored.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinship.binary.archive import MemberRef, read_member
from kinship.binary.load import load_bytes, load_file
from kinship.binary.model import Arch, Binary
from kinship.disasm.disassemble import disassemble
from kinship.disasm.disassembly import Disassembly
from kinship.features.config import FeatureConfig
from kinship.features.extract import extract_columns
from kinship.features.model import FunctionFeatures
from kinship.sample_hashes import sample_hashes
from kinship.store.model import SampleRecord
from kinship.strings.extract import StringTable, extract_strings

logger = logging.getLogger(__name__)

@dataclass
class Labels:
    """Provenance labels given at ingest time (all optional)."""

    family: str | None = None
    actor: str | None = None
    source: str | None = None
    first_seen: str | None = None
    version: str | None = None
    is_library: bool = False

    def merged(self, other: Labels) -> Labels:
        """``other``'s non-empty values over ours (manifest rows over command-line defaults)."""
        return Labels(
            family=other.family or self.family,
            actor=other.actor or self.actor,
            source=other.source or self.source,
            first_seen=other.first_seen or self.first_seen,
            version=other.version or self.version,
            is_library=other.is_library or self.is_library,
        )


@dataclass
class SampleInput:
    """A sample to analyse: a file on disk, or bytes taken out of an archive."""

    name: str  # display name: path, or "archive.zip:member.exe"
    path: Path | None = None
    data: bytes | None = None
    member: MemberRef | None = None  # a zip member, read where it is analysed
    labels: Labels = field(default_factory=Labels)
    base: int | None = None
    arch: Arch | None = None


@dataclass
class AnalysedSample:
    record: SampleRecord
    features: list[FunctionFeatures]
    seconds: dict[str, float]  # load / disasm / features wall times
    binary: Binary | None = None  # kept only when asked (evidence views need it)
    disassembly: Disassembly | None = None
    strings: StringTable = field(default_factory=StringTable)  # all strings, file order


def feature_params() -> dict[str, Any]:
    """Everything that shapes a stored sketch; a store refuses to mix two different sets."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(FeatureConfig()).items()}


def binary_info(binary: Binary) -> dict[str, Any]:
    """The JSON-safe summary stored with a sample and shown by ``kinship info``."""
    return {
        "image_base": binary.image_base,
        "entry_point": binary.entry_point,
        "imphash": binary.imphash,
        "compile_time": binary.compile_time.isoformat() if binary.compile_time else None,
        "pdb_path": binary.pdb_path,
        "sections": [
            {
                "name": s.name,
                "va": s.va,
                "virtual_size": s.virtual_size,
                "offset": s.offset,
                "raw_size": s.raw_size,
                "executable": s.executable,
                "writable": s.writable,
                "entropy": round(s.entropy, 3),
            }
            for s in binary.sections
        ],
        "n_imports": len(binary.imports),
        "n_exports": len(binary.exports),
        "warnings": list(binary.warnings),
    }


def load_input(item: SampleInput) -> Binary:
    if item.member is not None:
        return load_bytes(read_member(item.member), item.name, base=item.base, arch=item.arch)
    if item.data is not None:
        return load_bytes(item.data, item.name, base=item.base, arch=item.arch)
    assert item.path is not None
    return load_file(item.path, base=item.base, arch=item.arch)


def analyse(item: SampleInput, *, keep: bool = False) -> AnalysedSample:
    """Load, disassemble and featurise one sample. Raises InputError for unusable files.

    Python's cyclic garbage collector is paused for the call: the disassembly creates about
    one object per instruction, none of them cyclic garbage, and a collection pass over them
    cost ~0.4 s per million instructions (bench/disasm_vs_smda.py, 24 binaries).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyse(item, keep=keep)
    finally:
        if gc_was_enabled:
            gc.enable()


def _analyse(item: SampleInput, *, keep: bool) -> AnalysedSample:
    t0 = time.perf_counter()
    binary = load_input(item)
    t1 = time.perf_counter()
    # Features and strings come from the decoder's columns; Instruction/BasicBlock objects are
    # built only when asked for (evidence views, capa, YARA rules read them).
    dis = disassemble(binary, lazy=True)
    t2 = time.perf_counter()
    assert dis.columns is not None  # disassemble(lazy=True) always carries them
    feats = extract_columns(dis.columns)
    t3 = time.perf_counter()
    strings = extract_strings(binary, dis)
    if keep:
        dis.materialise()
        dis.columns = None  # as an eager disassembly: the objects hold the same information
    labels = item.labels
    info = binary_info(binary)
    # Weak sample-level evidence (ssdeep, pure Python and slow, only in `kinship info`).
    info["hashes"] = sample_hashes(binary, with_ssdeep=False).to_dict()
    t4 = time.perf_counter()
    info["warnings"] = info["warnings"] + list(dis.warnings)
    record = SampleRecord(
        sha256=binary.hashes.sha256,
        md5=binary.hashes.md5,
        sha1=binary.hashes.sha1,
        name=Path(item.name).name if item.path is not None else item.name,
        format=binary.format.value,
        arch=binary.arch.value,
        size=binary.size,
        family=labels.family,
        actor=labels.actor,
        source=labels.source,
        first_seen=labels.first_seen,
        version=labels.version,
        is_library=labels.is_library,
        n_functions=len(feats),
        n_instructions=dis.n_instructions,
        info=info,
    )
    return AnalysedSample(
        record=record,
        features=feats,
        seconds={"load": t1 - t0, "disasm": t2 - t1, "features": t3 - t2,
                 "strings": t4 - t3},
        binary=binary if keep else None,
        disassembly=dis if keep else None,
        strings=strings,
    )
