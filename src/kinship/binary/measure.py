"""Measures shared by the loaders: file hashes, Shannon entropy, the address-space check."""

from __future__ import annotations

import hashlib

import numpy as np

from kinship.binary.model import Hashes, Section
from kinship.exceptions import CorruptFileError

# Executable sections above this entropy (bits per byte) are probably compressed or encrypted:
# compiled x86 code sits around 5.5-6.8, UPX/aPLib-packed payloads at 7.5-8.0.
PACKED_ENTROPY = 7.2


def compute_hashes(data: bytes) -> Hashes:
    """MD5, SHA-1 and SHA-256 of ``data`` as lower-case hex."""
    return Hashes(
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def shannon_entropy(data: bytes | memoryview) -> float:
    """Shannon entropy of ``data`` in bits per byte (0.0 for empty input, at most 8.0)."""
    if len(data) == 0:
        return 0.0
    # bincount is ~9x faster on intp input than on uint8 (it casts element by element).
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8).astype(np.intp), minlength=256)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())


def packed_warnings(sections: list[Section]) -> list[str]:
    """One warning per executable section whose entropy suggests packing or encryption."""
    return [
        f"section {s.name or '?'} at {s.va:#x} is executable with entropy {s.entropy:.2f}:"
        " possibly packed"
        for s in sections
        if s.executable and s.entropy > PACKED_ENTROPY
    ]


def in_sections(sections: list[Section], vas: list[int], *, executable: bool = True) -> list[int]:
    """Sorted unique ``vas`` that fall inside a section (an executable one by default).

    Vectorised: a Python ``Binary.is_executable`` per address costs ~6 µs, which adds up to
    tens of milliseconds for the thousands of function hints of a large library.
    """
    if not vas:
        return []
    valid = [va for va in vas if 0 <= va < 1 << 64]  # hostile tables may encode anything
    if not valid:
        return []
    arr = np.unique(np.asarray(valid, dtype=np.uint64))
    keep = np.zeros(arr.shape, dtype=bool)
    for s in sections:
        if executable and not s.executable:
            continue
        end = s.va + max(s.virtual_size, s.raw_size)
        keep |= (arr >= np.uint64(s.va)) & (arr < np.uint64(end))
    return [int(x) for x in arr[keep].tolist()]


def check_address_space(path: str, sections: list[Section], bits: int,
                        image_base: int | None = None) -> None:
    """Raise :class:`CorruptFileError` when the image does not fit below ``2**bits``.

    Header fields place sections (address + size) wherever they like, past the end of the
    address space too (no loader maps such an image; iced_x86 and the numpy columns hold
    addresses as unsigned ``bits``-bit integers). PE, ELF and raw dumps are checked alike."""
    limit = 1 << bits
    if image_base is not None and image_base >= limit:
        raise CorruptFileError(path, f"image base {image_base:#x} overflows the {bits}-bit "
                               "address space")
    for s in sections:
        size = max(s.virtual_size, s.raw_size)
        if s.va + size > limit:
            where = (f"image base {image_base:#x} + size {s.va + size - image_base:#x}"
                     if image_base is not None and s.va >= image_base
                     else f"section {s.name!r} at {s.va:#x} + size {size:#x}")
            raise CorruptFileError(path, f"{where} overflows the {bits}-bit address space")
