"""The dev corpus for benchmarks: unpacking, manifest, subsets, stripped copies, ground truth.

The corpus archive (``../shared/corpus/dev-set.tar.xz``, see its README.md) unpacks to::

    <cache>/dev/manifest.jsonl            one row per binary (family, fmt, arch, size, sha256 ...)
    <cache>/dev/bin/<family>/.../<file>   binaries with symbol tables kept
    <cache>/dev/gt/<sha256>.json.gz       {"gt_source", "functions": [{"name", "addr", ...}]}

Ground-truth addresses are absolute virtual addresses (ELF ``st_value``, PE ``ImageBase + RVA``),
the same convention as :class:`kinship.binary.model.Binary`. Tools are handed a fully stripped
copy (``<cache>/stripped/<sha256><suffix>``) so they cannot read the labels they are scored on;
exported names remain, as in real samples.

Only ``symtab`` (ELF) and ``coff`` (PE) labels list every function, so precision is scored only
for those; ``dynsym``/``exports`` labels are the exported subset and give recall only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = REPO_ROOT.parent / "shared" / "corpus" / "dev-set.tar.xz"
DEFAULT_CACHE = Path.home() / ".cache" / "kinship-corpus"

# Label sources that list every function (precision is meaningful) vs the exported subset.
COMPLETE_GT_SOURCES = frozenset({"symtab", "coff"})
PARTIAL_GT_SOURCES = frozenset({"dynsym", "exports"})

# CRT / startup / toolchain-generated labels left out of scoring (corpus README): their
# addresses count neither as a miss nor, when a tool reports them, as a false positive.
RUNTIME_LABELS = frozenset(
    {
        # glibc / gcc ELF startup
        "_init",
        "_fini",
        "_start",
        "__libc_csu_init",
        "__libc_csu_fini",
        "register_tm_clones",
        "deregister_tm_clones",
        "__do_global_dtors_aux",
        "frame_dummy",
        "call_gmon_start",
        "__do_global_ctors_aux",
        # mingw-w64 CRT startup
        "mainCRTStartup",
        "WinMainCRTStartup",
        "__tmainCRTStartup",
        "DllMainCRTStartup",
        "_DllMainCRTStartup",
        "__DllMainCRTStartup",
        "_CRT_INIT",
        "__main",
        "__do_global_ctors",
        "__do_global_dtors",
        "_pei386_runtime_relocator",
        "__security_init_cookie",
        "__report_gsfailure",
        "_gnu_exception_handler",
        "__dyn_tls_init",
        "__dyn_tls_dtor",
        "__tlregdtor",
        "_matherr",
        "_setargv",
        "__gcc_register_frame",
        "__gcc_deregister_frame",
        "__write_memory",
        "__report_error",
        "_fpreset",
        "pre_c_init",
        "pre_cpp_init",
        "_CTOR_LIST__",
        "_DTOR_LIST__",
        "__CTOR_LIST__",
        "__DTOR_LIST__",
    }
)
RUNTIME_PREFIXES = ("__mingw_", "_mingw_", "__wine_stub_", "__wine_spec_", "_wine_spec_")

# ELF sections whose stubs are import trampolines, never labelled by .symtab: a start a tool
# reports there is neither a hit nor a false positive.
ELF_STUB_SECTIONS = frozenset({".plt", ".plt.sec", ".plt.got", ".iplt"})

MAX_STRIP_SECONDS = 60  # one strip run; binutils on a 1.5 MB file takes well under a second


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One manifest row of the dev corpus."""

    id: str
    family: str
    component: str
    version: str
    source: str
    fmt: str  # "ELF" | "PE"
    arch: str  # "x86" | "x64"
    variant: str  # toolchain/optimisation, e.g. "gcc-x64-O2", "msvc-wheel"
    size: int  # bytes
    sha256: str
    path: str  # relative to the dev/ directory
    gt_source: str  # "symtab" | "dynsym" | "coff" | "exports" | "none"
    n_funcs: int

    @property
    def cell(self) -> str:
        """Format x architecture cell, e.g. ``"ELF-x64"``."""
        return f"{self.fmt}-{self.arch}"

    @property
    def complete_gt(self) -> bool:
        return self.gt_source in COMPLETE_GT_SOURCES

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True, slots=True)
class AddressRange:
    """Half-open virtual-address range ``[start, end)``."""

    start: int
    end: int

    def contains(self, va: int) -> bool:
        return self.start <= va < self.end


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Function-start labels of one binary, CRT/startup labels already set apart."""

    sha256: str
    source: str  # gt_source of the label file
    starts: frozenset[int]  # scored function starts (VAs)
    ignored: frozenset[int]  # CRT/startup starts: neither a miss nor a false positive
    names: dict[int, str] = field(default_factory=dict)  # VA -> label, scored starts only

    @property
    def complete(self) -> bool:
        return self.source in COMPLETE_GT_SOURCES


@dataclass(frozen=True, slots=True)
class StartScore:
    """Function-start accuracy of one tool on one binary.

    ``false_positives``/``precision`` are None where the labels are the exported subset only.
    ``shift`` is the constant added to the tool's addresses to reach label VAs (normally 0).
    """

    true_positives: int
    false_negatives: int
    false_positives: int | None
    shift: int = 0

    @property
    def recall(self) -> float | None:
        n = self.true_positives + self.false_negatives
        return self.true_positives / n if n else None

    @property
    def precision(self) -> float | None:
        if self.false_positives is None:
            return None
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None


@dataclass(frozen=True, slots=True)
class SubsetSpec:
    """Which binaries a benchmark run takes from the corpus.

    Per {ELF, PE} x {x86, x64} cell: ``complete_per_cell`` binaries with full labels
    (symtab/COFF, precision scored) and ``partial_per_cell`` with exported labels only (real
    Debian/MSVC builds, recall only), families interleaved so that each cell mixes families.
    """

    complete_per_cell: int = 4  # binaries with full labels per cell, 0..
    partial_per_cell: int = 2  # binaries with exported-only labels per cell, 0..
    min_size: int = 50_000  # bytes; smaller files say little about throughput
    max_size: int = 1_500_000  # bytes; SMDA's cost grows faster than linearly above this
    # Cells that get partial binaries; None = every cell.
    partial_cells: tuple[str, ...] | None = None
    families: tuple[str, ...] | None = None  # restrict to these families; None = all


DEFAULT_SUBSET = SubsetSpec()
QUICK_SUBSET = SubsetSpec(
    complete_per_cell=1, partial_per_cell=1, max_size=600_000, partial_cells=("ELF-x64", "PE-x86")
)
CELLS = ("ELF-x86", "ELF-x64", "PE-x86", "PE-x64")


def is_runtime_label(name: str) -> bool:
    """True for CRT/startup/toolchain labels that the benchmark does not score."""
    return name in RUNTIME_LABELS or name.startswith(RUNTIME_PREFIXES)


def ensure_corpus(cache_dir: Path = DEFAULT_CACHE, archive: Path = DEFAULT_ARCHIVE) -> Path:
    """The unpacked ``dev/`` directory, unpacking ``archive`` into ``cache_dir`` if needed."""
    dev = cache_dir / "dev"
    if (dev / "manifest.jsonl").is_file():
        return dev
    if not archive.is_file():
        raise FileNotFoundError(f"corpus archive not found: {archive} (set --archive)")
    logger.info("unpacking %s into %s", archive, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(cache_dir, filter="data")
    if not (dev / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"{archive} did not unpack to dev/manifest.jsonl")
    return dev


def load_manifest(dev_dir: Path) -> list[CorpusEntry]:
    """Manifest rows, deduplicated by SHA-256 (identical files occur across releases)."""
    seen: set[str] = set()
    entries: list[CorpusEntry] = []
    with (dev_dir / "manifest.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["sha256"] in seen:
                continue
            seen.add(row["sha256"])
            entries.append(
                CorpusEntry(
                    id=row["id"],
                    family=row["family"],
                    component=row["component"],
                    version=row["version"],
                    source=row["source"],
                    fmt=row["fmt"],
                    arch=row["arch"],
                    variant=row["variant"],
                    size=int(row["size"]),
                    sha256=row["sha256"],
                    path=row["path"],
                    gt_source=row["gt_source"],
                    n_funcs=int(row["n_funcs"]),
                )
            )
    return entries


def _family_group(family: str) -> str:
    """Families from one source share a group: "lua5.3" -> "lua", "wine-bcrypt" -> "wine"."""
    return family.rstrip("0123456789.").split("-")[0]


def _stable_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _interleave(entries: list[CorpusEntry], n: int) -> list[CorpusEntry]:
    """Up to ``n`` entries, round-robin over family groups then families (deterministic)."""
    by_group: dict[str, list[CorpusEntry]] = {}
    for e in sorted(entries, key=lambda e: _stable_key(e.family + e.sha256)):
        by_group.setdefault(_family_group(e.family), []).append(e)
    # Within a group alternate families, so "lua" yields lua5.1, lua5.4, ... not 5.1 twice.
    queues: list[list[CorpusEntry]] = []
    for group in sorted(by_group, key=_stable_key):
        members = by_group[group]
        fams: dict[str, list[CorpusEntry]] = {}
        for e in members:
            fams.setdefault(e.family, []).append(e)
        order: list[CorpusEntry] = []
        lists = [fams[k] for k in sorted(fams, key=_stable_key)]
        while any(lists):
            for lst in lists:
                if lst:
                    order.append(lst.pop(0))
        queues.append(order)
    out: list[CorpusEntry] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def select_subset(entries: Sequence[CorpusEntry], spec: SubsetSpec) -> list[CorpusEntry]:
    """The benchmark subset: per cell, complete-label binaries first, then exported-only."""
    chosen: list[CorpusEntry] = []
    for cell in CELLS:
        pool = [
            e
            for e in entries
            if e.cell == cell
            and spec.min_size <= e.size <= spec.max_size
            and e.n_funcs > 0
            and (spec.families is None or e.family in spec.families)
        ]
        chosen += _interleave([e for e in pool if e.complete_gt], spec.complete_per_cell)
        if spec.partial_cells is None or cell in spec.partial_cells:
            partial = [e for e in pool if e.gt_source in PARTIAL_GT_SOURCES]
            chosen += _interleave(partial, spec.partial_per_cell)
    return chosen


def load_ground_truth(dev_dir: Path, entry: CorpusEntry) -> GroundTruth:
    """Labels of ``entry`` with CRT/startup labels set apart (see :data:`RUNTIME_LABELS`)."""
    with gzip.open(dev_dir / "gt" / f"{entry.sha256}.json.gz", "rt", encoding="utf-8") as f:
        doc = json.load(f)
    starts: set[int] = set()
    ignored: set[int] = set()
    names: dict[int, str] = {}
    for fn in doc.get("functions", []):
        va, name = int(fn["addr"]), str(fn["name"])
        if is_runtime_label(name):
            ignored.add(va)
        else:
            starts.add(va)
            names.setdefault(va, name)
    # An address with both a runtime and a program label (aliases) is scored.
    ignored -= starts
    return GroundTruth(
        sha256=entry.sha256,
        source=str(doc.get("gt_source", entry.gt_source)),
        starts=frozenset(starts),
        ignored=frozenset(ignored),
        names=names,
    )


def _strip_tool(entry: CorpusEntry) -> str:
    if entry.fmt == "ELF":
        return "strip"
    return "i686-w64-mingw32-strip" if entry.arch == "x86" else "x86_64-w64-mingw32-strip"


def _pe_has_coff_symbols(path: Path) -> bool:
    data = path.read_bytes()[:4096]
    if len(data) < 0x40:
        return False
    pe_off = int.from_bytes(data[0x3C:0x40], "little")
    if pe_off + 24 > len(data):
        return True  # cannot tell: let strip decide
    n_symbols = int.from_bytes(data[pe_off + 16 : pe_off + 20], "little")
    return n_symbols > 0


def stripped_copy(dev_dir: Path, entry: CorpusEntry, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A fully stripped copy of ``entry`` (cached); exports and .dynsym remain."""
    src = dev_dir / entry.path
    out_dir = cache_dir / "stripped"
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{entry.sha256}{src.suffix}"
    if dst.is_file():
        return dst
    tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
    if entry.fmt == "PE" and not _pe_has_coff_symbols(src):
        shutil.copyfile(src, tmp)
    else:
        subprocess.run(
            [_strip_tool(entry), "--strip-all", "-o", str(tmp), str(src)],
            check=True,
            capture_output=True,
            timeout=MAX_STRIP_SECONDS,
        )
    tmp.replace(dst)
    return dst


def elf_stub_ranges(path: Path) -> list[AddressRange]:
    """VA ranges of PLT-like sections of an ELF file (empty for other formats)."""
    with path.open("rb") as f:
        if f.read(4) != b"\x7fELF":
            return []
        f.seek(0)
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(f)
        return [
            AddressRange(int(s["sh_addr"]), int(s["sh_addr"]) + int(s["sh_size"]))
            for s in elf.iter_sections()
            if s.name in ELF_STUB_SECTIONS and s["sh_addr"]
        ]


def score_starts(
    predicted: Iterable[int],
    gt: GroundTruth,
    stub_ranges: Sequence[AddressRange] = (),
    shifts: Iterable[int] = (0,),
) -> StartScore:
    """Recall (and precision, for complete labels) of predicted function starts.

    Each candidate in ``shifts`` is added to every predicted address and the one with the most
    hits is kept: a guard against a tool that reports RVAs or rebases the image.
    """
    pred = set(predicted)
    best: StartScore | None = None
    for shift in dict.fromkeys(shifts):
        moved = {va + shift for va in pred}
        tp = len(moved & gt.starts)
        fp: int | None = None
        if gt.complete:
            extra = moved - gt.starts - gt.ignored
            fp = sum(1 for va in extra if not any(r.contains(va) for r in stub_ranges))
        score = StartScore(tp, len(gt.starts) - tp, fp, shift)
        if best is None or score.true_positives > best.true_positives:
            best = score
    assert best is not None
    return best
