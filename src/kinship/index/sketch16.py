"""b-bit MinHash storage of the reference sketches (Li & Koenig 2010): each slot keeps the
low ``IndexConfig.sketch_bits`` bits.

Two functions' slots then agree when their full minima agree, or by chance with probability
2**-16 when they differ: a pair of Jaccard J gets an expected estimate J + (1 - J) * 2**-16,
at most +0.0015% of a slot, i.e. one false slot (+1/64 = 0.016 in one sketch similarity) in
about one pair of 1,000. Quick benches (2026-11-26, 32 -> 16 bits; numbers at
``IndexConfig.sketch_bits``): no rank, verdict or matching metric changed. It halves the
largest part of the index (the sketches: 512 -> 256 bytes per function at num_perm=64).

Slot mapping, applied alike to the stored reference sketches and to the query's (so that equal
slots stay equal and scoring sees uint32 sketches): ``f(x) = x & 0xFFFF``, except that the
value 0xFFFF becomes ``EMPTY_SLOT``; an empty sketch (all ``EMPTY_SLOT``) stays empty.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kinship.features.minhash import EMPTY_SLOT, U32

U16 = npt.NDArray[np.uint16]
_LOW16 = np.uint32(0xFFFF)


def to_stored(sig: U32, bits: int) -> U16 | U32:
    """The stored form of (N, num_perm) sketches: uint16 low bits, or the uint32 sketch."""
    if bits == 32:
        return np.asarray(sig, dtype=np.uint32)
    return (np.asarray(sig, dtype=np.uint32) & _LOW16).astype(np.uint16)


def widen(stored: U16 | U32) -> U32:
    """Stored sketches as uint32 for scoring (16-bit slots equal to 0xFFFF -> EMPTY_SLOT)."""
    if stored.dtype == np.uint32:
        return np.asarray(stored, dtype=np.uint32)
    out = stored.astype(np.uint32)
    out[stored == np.uint16(0xFFFF)] = EMPTY_SLOT
    return out


def fold(sig: U32, bits: int) -> U32:
    """A query's sketches as the index compares them: ``widen(to_stored(sig, bits))``."""
    if bits == 32:
        return np.asarray(sig, dtype=np.uint32)
    return widen(to_stored(sig, bits))
