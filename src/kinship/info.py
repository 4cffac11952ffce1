"""``kinship info``: what a sample is (format, arch, hashes, sections, imports, functions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinship.document import Document, Meta, MetaFn
from kinship.pipeline import AnalysedSample
from kinship.sample_hashes import sample_hashes


@dataclass(frozen=True)
class FunctionSummary:
    va: int
    name: str | None
    n_instructions: int
    n_blocks: int
    size: int
    discovery: str
    apis: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InfoResult(Document):
    name: str
    sha256: str
    sha1: str
    md5: str
    size: int
    format: str
    arch: str
    image_base: int
    entry_point: int | None
    imphash: str | None
    compile_time: str | None
    pdb_path: str | None
    sections: list[dict[str, Any]]
    imports: dict[str, list[str]]  # library -> names
    exports: list[dict[str, Any]]
    n_functions: int
    n_instructions: int
    discovery: dict[str, int]  # how many functions each discovery method found
    functions: list[FunctionSummary]
    warnings: list[str]
    seconds: dict[str, float]
    # similarity hashes: imphash, rich_header_hash, tlsh, ssdeep, pdb_path, exports, sections
    similarity_hashes: dict[str, Any] = field(default_factory=dict)
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)


def build_info(sample: AnalysedSample, meta: MetaFn | None = None) -> InfoResult:
    b, dis, r = sample.binary, sample.disassembly, sample.record
    assert b is not None and dis is not None
    imports: dict[str, list[str]] = {}
    for imp in b.imports:
        imports.setdefault(imp.library, []).append(imp.name)
    discovery: dict[str, int] = {}
    for fn in dis.functions:
        discovery[fn.discovery.value] = discovery.get(fn.discovery.value, 0) + 1
    return InfoResult(
        name=r.name,
        sha256=r.sha256,
        sha1=r.sha1,
        md5=r.md5,
        size=r.size,
        format=r.format,
        arch=r.arch,
        image_base=b.image_base,
        entry_point=b.entry_point,
        imphash=b.imphash,
        compile_time=b.compile_time.isoformat() if b.compile_time else None,
        pdb_path=b.pdb_path,
        sections=r.info["sections"],
        imports=imports,
        exports=[{"name": e.name, "va": e.va, "ordinal": e.ordinal} for e in b.exports],
        n_functions=len(dis.functions),
        n_instructions=dis.n_instructions,
        discovery=discovery,
        functions=[
            FunctionSummary(
                va=f.va,
                name=f.name,
                n_instructions=f.n_instructions,
                n_blocks=f.n_blocks,
                size=f.size,
                discovery=f.discovery.value,
                apis=sorted({a.split("!", 1)[-1] for a in f.apis}),
            )
            for f in dis.functions
        ],
        warnings=r.info.get("warnings", []),
        seconds={k: round(v, 4) for k, v in sample.seconds.items()},
        similarity_hashes=sample_hashes(b, with_ssdeep=True).to_dict(),
        meta=meta(sum(sample.seconds.values())) if meta is not None else None,
    )
