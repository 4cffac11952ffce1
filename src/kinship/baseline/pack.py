"""Baseline packs: function signatures of compiler runtimes and common static libraries.

A pack is what FLIRT signatures or Ghidra's function ID are to those tools: the exact PIC hash
and the two MinHash sketches of every runtime function of some toolchains, with the library,
toolchain and version each comes from. Every store loads the packs (built-in ones shipped as
package data, plus the user's) as *library* evidence, so that an implant's C runtime is
recognised as such on the first run, without a ``--library`` corpus.

File layout (``<name>.kbl.npz``, ``numpy.savez_compressed``, read with ``allow_pickle=False``)::

    meta           uint8[]   UTF-8 JSON: {"format": 1, "name", "description",
                             "feature_params": {...}, "libraries": [{"name", "toolchain",
                             "version", "arch", "format", "source"}, ...],
                             "names": [function name or null, ...], "inputs": [...],
                             "strings": [runtime string texts]}
    exact_hash     int64[n]
    n_instructions int32[n]
    n_sem_tokens   int32[n]
    library        int16[n]   index into meta["libraries"]
    code_sig       uint32[n, num_perm]
    sem_sig        uint32[n, num_perm]

A pack only makes sense for the feature parameters it was built with (``feature_params``);
:func:`BaselinePack.load` keeps the mismatch visible (``compatible``) and the registry skips
such packs with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kinship.artifacts.filenames import printable
from kinship.exceptions import InputError, UsageError
from kinship.features.model import FunctionFeatures

PACK_FORMAT = 1
PACK_SUFFIX = ".kbl.npz"
# A pack is package data or a user's file, but it is still parsed with limits: a damaged or
# hostile file must not cost more than this to refuse.
MAX_PACK_BYTES = 64 << 20  # 64 MiB on disk (the built-in packs are a few MB)
MAX_PACK_FUNCTIONS = 2_000_000  # rows; ~1 GiB of sketches at num_perm 64
# Functions shorter than this are not kept: MatchConfig.min_instructions (default 10) ignores
# them anyway; 8 leaves room for a user who lowers it.
MIN_PACK_INSTRUCTIONS = 8

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U32 = npt.NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class LibraryInfo:
    """Where a group of baseline functions comes from."""

    name: str  # e.g. "mingw-w64 CRT + libgcc"
    toolchain: str = ""  # e.g. "x86_64-w64-mingw32-gcc 12.2.0 (Debian bookworm)"
    version: str = ""
    arch: str = ""  # "x86" | "x64" | ""
    format: str = ""  # "PE" | "ELF" | ""
    source: str = ""  # package(s) or files it was generated from

    @property
    def label(self) -> str:
        """Short human label: name, toolchain/version and architecture."""
        bits = [self.name]
        extra = ", ".join(x for x in (self.version or self.toolchain, self.arch) if x)
        return f"{bits[0]} ({extra})" if extra else bits[0]


@dataclass(eq=False)
class BaselinePack:
    """Runtime-function signatures, row-aligned arrays plus their provenance."""

    name: str
    description: str
    feature_params: dict[str, Any]
    libraries: list[LibraryInfo]
    exact_hash: I64
    n_instructions: I32
    n_sem_tokens: I32
    library: npt.NDArray[np.int16]
    code_sig: U32
    sem_sig: U32
    names: list[str | None] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # provenance of the inputs
    path: Path | None = None
    # texts of the runtime's strings (messages, format strings, locale names): never string
    # evidence for a family
    strings: list[str] = field(default_factory=list)
    _digest: str = field(default="", repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.exact_hash.shape[0])

    @property
    def num_perm(self) -> int:
        return int(self.code_sig.shape[1]) if self.code_sig.ndim == 2 else 0

    def digest(self) -> str:
        """Content hash (hex, 16 chars): stamps saved indexes that include this pack. Computed
        once per object (packs are not modified after loading)."""
        if self._digest:
            return self._digest
        h = hashlib.blake2b(digest_size=8)
        h.update(self.name.encode())
        for a in (self.exact_hash, self.n_instructions, self.library, self.code_sig,
                  self.sem_sig, self.n_sem_tokens):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("\0".join(self.strings).encode("utf-8", "surrogatepass"))
        self._digest = h.hexdigest()
        return self._digest

    def compatible(self, params: dict[str, Any]) -> bool:
        """Whether the pack's sketches were made with these feature parameters."""
        return _norm(self.feature_params) == _norm(params)

    def library_counts(self) -> dict[str, int]:
        counts = np.bincount(self.library.astype(np.int64), minlength=len(self.libraries))
        return {lib.label: int(c) for lib, c in zip(self.libraries, counts, strict=True)}

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def from_functions(
        cls,
        name: str,
        groups: Sequence[tuple[LibraryInfo, Iterable[FunctionFeatures]]],
        *,
        feature_params: dict[str, Any],
        description: str = "",
        inputs: Sequence[dict[str, Any]] = (),
        min_instructions: int = MIN_PACK_INSTRUCTIONS,
    ) -> BaselinePack:
        """A pack of the functions of each library group; one row per distinct exact hash
        (the first group that has it keeps it), functions shorter than ``min_instructions``
        left out. Rows are sorted by (library, exact hash) so equal inputs give equal files."""
        if not name or "/" in name or name.startswith("."):
            raise UsageError(f"invalid baseline pack name {name!r}")
        seen: set[int] = set()
        # Also one row per identical (sketches, size): i386 PIC code of static glibc differs
        # between links only in GOT offsets, which the exact hash keeps and the sketches fold;
        # such a twin is still found (LSH, score 1.0 >= library_threshold), at a tenth the rows.
        twins: set[bytes] = set()
        rows: list[tuple[int, FunctionFeatures]] = []
        for lib_i, (_, funcs) in enumerate(groups):
            for f in funcs:
                if f.n_instructions < min_instructions or f.exact_hash in seen:
                    continue
                twin = (f.n_instructions.to_bytes(4, "little") + f.code_sig.tobytes()
                        + f.sem_sig.tobytes())
                seen.add(f.exact_hash)
                if twin in twins:
                    continue
                twins.add(twin)
                rows.append((lib_i, f))
        rows.sort(key=lambda r: (r[0], r[1].exact_hash))
        num_perm = int(rows[0][1].code_sig.shape[0]) if rows else 64
        return cls(
            name=name,
            description=description,
            feature_params=dict(feature_params),
            libraries=[g[0] for g in groups],
            exact_hash=np.array([f.exact_hash for _, f in rows], dtype=np.int64),
            n_instructions=np.array([f.n_instructions for _, f in rows], dtype=np.int32),
            n_sem_tokens=np.array([f.n_sem_tokens for _, f in rows], dtype=np.int32),
            library=np.array([i for i, _ in rows], dtype=np.int16),
            code_sig=np.array([f.code_sig for _, f in rows], dtype=np.uint32).reshape(
                len(rows), num_perm),
            sem_sig=np.array([f.sem_sig for _, f in rows], dtype=np.uint32).reshape(
                len(rows), num_perm),
            names=[f.name for _, f in rows],
            inputs=list(inputs),
        )

    # ---- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the pack (compressed .npz; no pickled objects)."""
        meta = {
            "format": PACK_FORMAT,
            "name": self.name,
            "description": self.description,
            "feature_params": self.feature_params,
            "libraries": [_lib_dict(x) for x in self.libraries],
            "names": self.names,
            "inputs": self.inputs,
            "strings": self.strings,
        }
        blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, meta=blob, exact_hash=self.exact_hash, n_instructions=self.n_instructions,
            n_sem_tokens=self.n_sem_tokens, library=self.library, code_sig=self.code_sig,
            sem_sig=self.sem_sig,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_deterministic_zip(buf.getvalue()))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> BaselinePack:
        """Read a pack; a damaged or oversized file is an InputError naming it."""
        try:
            size = path.stat().st_size
        except OSError as e:
            raise InputError(str(path), f"cannot read baseline pack: {e.strerror}") from e
        if size > MAX_PACK_BYTES:
            raise InputError(str(path), f"baseline pack larger than {MAX_PACK_BYTES} bytes")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(str(path), f"cannot read baseline pack: {e.strerror}") from e
        if not data.startswith(b"PK"):
            raise InputError(str(path), "not a kinship baseline pack (not an .npz archive)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("meta", "exact_hash", "n_instructions",
                                            "n_sem_tokens", "library", "code_sig", "sem_sig")}
            meta = json.loads(arrays["meta"].tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise InputError(str(path), f"not a kinship baseline pack ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
            raise InputError(str(path), "unsupported baseline pack format")
        n = len(arrays["exact_hash"])
        if n > MAX_PACK_FUNCTIONS:
            raise InputError(str(path), f"baseline pack has more than {MAX_PACK_FUNCTIONS} rows")
        try:
            # labels and names reach the terminal and pages: a pack from elsewhere is hostile,
            # so control characters are written visibly (\x1b), never passed through
            libraries = [LibraryInfo(**{k: printable(str(v)) for k, v in lib.items()})
                         for lib in meta["libraries"]]
            names = [None if x is None else printable(str(x))
                     for x in (meta.get("names") or [None] * n)]
            pack = cls(
                name=printable(str(meta["name"])),
                description=printable(str(meta.get("description", ""))),
                feature_params=dict(meta["feature_params"]),
                libraries=libraries,
                exact_hash=arrays["exact_hash"].astype(np.int64),
                n_instructions=arrays["n_instructions"].astype(np.int32),
                n_sem_tokens=arrays["n_sem_tokens"].astype(np.int32),
                library=arrays["library"].astype(np.int16),
                code_sig=arrays["code_sig"].astype(np.uint32),
                sem_sig=arrays["sem_sig"].astype(np.uint32),
                names=names,
                inputs=list(meta.get("inputs", [])),
                path=path,
                strings=[str(t) for t in meta.get("strings", [])],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(str(path), f"damaged baseline pack ({e})") from e
        shapes_ok = (
            all(len(a) == n for a in (pack.n_instructions, pack.n_sem_tokens, pack.library,
                                      pack.code_sig, pack.sem_sig, pack.names))
            and pack.code_sig.ndim == 2 and pack.sem_sig.shape == pack.code_sig.shape
            and (n == 0 or (int(pack.library.min()) >= 0
                            and int(pack.library.max()) < len(libraries)))
        )
        if not shapes_ok:
            raise InputError(str(path), "damaged baseline pack (array shapes disagree)")
        return pack


def _lib_dict(lib: LibraryInfo) -> dict[str, str]:
    return {"name": lib.name, "toolchain": lib.toolchain, "version": lib.version,
            "arch": lib.arch, "format": lib.format, "source": lib.source}


def _norm(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=list)


def _deterministic_zip(data: bytes) -> bytes:
    """The same .npz with fixed member timestamps, so equal inputs give byte-equal packs."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()
