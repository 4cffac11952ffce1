"""MinHash LSH (banding) over stacked sketches, and an exact-hash lookup.

Layout, for N indexed sketches (rows of an N x num_perm uint32 matrix) and B bands of R slots::

    band b:  keys[b]  uint64[N']  sorted band hashes of the non-empty sketches
             rows[b]  uint32[N']  row of each key (the argsort permutation)

A query hashes its B bands and finds equal keys with ``np.searchsorted``: O(B log N) per query,
no Python loop over queries. Memory: ``B * 12`` bytes per indexed function (192 bytes for
16 bands). Empty sketches (all 0xFFFFFFFF: no tokens) are not indexed: they would all collide.

``keys`` and ``order`` are arrays in memory or, for a saved index opened for querying,
:class:`~kinship.index.diskarray.DiskArray` files read by positional reads: a query then reads
one fence block of keys per (query, band) and the order entries of its hits, and maps nothing
(measured at 10^7 functions: see kinship.index.diskarray).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kinship.exceptions import StoreError, UsageError
from kinship.features.minhash import EMPTY_SLOT, I64, U32, U64, mix64
from kinship.index.diskarray import DiskArray, in_memory

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
# Multilinear band hash: sum(slot_j * K_j) mod 2**64 then mix64; collision probability of two
# different bands ~2**-32.
_BAND_MULT = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
     0x2545F4914F6CDD1D, 0x9FB21C651E98DF25, 0x5851F42D4C957F2D, 0x14057B7EF767814F,
     0xD1342543DE82EF95, 0xAF251AF3B0F025B5, 0xE9A5C2D3F4B1E4D3, 0xB492B66FBE98F273],
    dtype=np.uint64,
)  # fmt: skip
MAX_ROWS = 16  # rows per band (len(_BAND_MULT))
# Sorted keys per fence entry: 512 uint64 = one 4 KiB page. A query bisects the small in-RAM
# fence first and then one block, so on an index on disk it reads one page per band instead of
# the ~log2(N) pages of a full bisection, which for 5,000 query functions touched nearly every
# page of the 2.4 GiB of keys at 10^7 functions.
FENCE_STRIDE = 512

# keys / order: in memory, or on disk (read by positional reads).
KeyArray = U64 | DiskArray
OrderArray = npt.NDArray[np.uint32] | DiskArray
# (starts, counts) -> the concatenated elements of those ranges
RangeReader = Callable[[I64, I64], npt.NDArray[np.uint32]]


@dataclass(frozen=True, slots=True, eq=False)
class CandidatePairs:
    """Parallel arrays: query ``query[i]`` has candidate reference row ``row[i]``."""

    query: I64
    row: I64

    def __len__(self) -> int:
        return len(self.query)


def band_keys(sigs: U32, bands: int, rows: int) -> U64:
    """(N, bands) uint64 band hashes of an (N, num_perm) sketch matrix."""
    if sigs.ndim != 2 or sigs.shape[1] < bands * rows:
        raise UsageError(f"sketches of shape {sigs.shape} are too short for {bands}x{rows} bands")
    if rows > MAX_ROWS:
        raise UsageError(f"at most {MAX_ROWS} rows per band")
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    for b in range(bands):  # band by band: temporaries stay N * rows * 8 bytes
        acc = np.zeros(sigs.shape[0], dtype=np.uint64)
        for j in range(rows):
            acc += sigs[:, b * rows + j].astype(np.uint64) * _BAND_MULT[j]
        out[:, b] = mix64(acc ^ np.uint64(b))
    return out


def sorted_unique(a: I64) -> I64:
    """``np.unique`` of an int64 array by sort + mask: numpy >= 2.3 picks a hash-based unique
    that took 4.2 s on 2.3M candidate pairs (0.03 s this way)."""
    if len(a) == 0:
        return a
    s = np.sort(a)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    out: I64 = s[keep]
    return out


def pack_pairs(query: I64, row: I64) -> I64:
    """(query, row) pairs as one int64 each (query in the high 32 bits)."""
    out: I64 = (query << np.int64(32)) | row
    return out


def unpack_pairs(packed: I64) -> CandidatePairs:
    return CandidatePairs(packed >> np.int64(32), packed & np.int64(0xFFFFFFFF))


def fence_of(keys: U64) -> U64:
    """Every FENCE_STRIDE-th key of each band: (bands, ceil(N' / FENCE_STRIDE))."""
    return np.ascontiguousarray(keys[:, ::FENCE_STRIDE])


def fenced_searchsorted(keys: U64, fence: U64, q: U64, side: str) -> I64:
    """``np.searchsorted(keys, q, side)`` for a sorted 1-D ``keys`` with ``fence`` =
    keys[::FENCE_STRIDE]: bisect the fence, then only inside one block (vectorised)."""
    n = len(keys)
    right = side == "right"
    i = np.searchsorted(fence, q, side="right" if right else "left").astype(np.int64)
    lo = np.maximum(i - 1, 0) * FENCE_STRIDE
    hi = np.minimum(i * FENCE_STRIDE, n)
    return _bisect(keys, lo, hi, q, right)


def _bisect(keys: U64, lo: I64, hi: I64, q: U64, right: bool) -> I64:
    """Vectorised bisection of each ``q[i]`` inside the sorted slice keys[lo[i]:hi[i]]."""
    n = len(keys)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        v = keys[np.minimum(mid, n - 1)]
        go = (v <= q) if right else (v < q)
        lo = np.where(active & go, mid + 1, lo)
        hi = np.where(active & ~go, mid, hi)


def fenced_search_disk(
    flat_keys: DiskArray, band: int, width: int, fence: U64, q: U64
) -> tuple[I64, I64]:
    """(left, right) ``np.searchsorted`` of ``q`` in row ``band`` (``width`` sorted keys) of an
    on-disk (bands, width) key matrix seen flat (``DiskArray.flat``): the fence picks each
    query's block(s), the distinct blocks are read (one positional read of FENCE_STRIDE keys
    each) and bisected in memory."""
    il = np.searchsorted(fence, q, side="left").astype(np.int64)
    ir = np.searchsorted(fence, q, side="right").astype(np.int64)
    bl, br = np.maximum(il - 1, 0), np.maximum(ir - 1, 0)  # block holding each answer
    ub = sorted_unique(np.concatenate([bl, br]))
    bstart = ub * FENCE_STRIDE
    bcount = np.minimum(FENCE_STRIDE, width - bstart)
    buf: U64 = flat_keys.read_ranges(band * width + bstart, bcount).reshape(-1)
    boff = np.cumsum(bcount) - bcount
    out = []
    for blk, right in ((bl, False), (br, True)):
        k = np.searchsorted(ub, blk)
        lo = boff[k]
        pos = _bisect(buf, lo, lo + bcount[k], q, right)
        out.append(pos - lo + bstart[k])
    return out[0], out[1]


def range_reader(a: npt.NDArray[np.uint32] | DiskArray) -> RangeReader:
    """A reader of element ranges of the flattened ``a`` (positional reads for a DiskArray)."""
    if isinstance(a, DiskArray):
        flat = a.flat()
        return lambda starts, counts: flat.read_ranges(starts, counts)
    ravel = a.ravel()

    def take(starts: I64, counts: I64) -> npt.NDArray[np.uint32]:
        total = int(counts.sum())
        ends = np.cumsum(counts)
        pos = np.repeat(starts - (ends - counts), counts) + np.arange(total, dtype=np.int64)
        out: npt.NDArray[np.uint32] = ravel[pos]
        return out

    return take


def _expand(
    lo: I64,
    hi: I64,
    owners: I64,
    order: RangeReader,
    cap: int,
    unique: bool = True,
) -> CandidatePairs:
    """Turn per-(query, band) index ranges [lo, hi) into (query, row) pairs, at most ``cap`` per
    range; ``order`` reads the rows of ranges. Duplicates (one per band hit) removed unless
    ``unique`` is False."""
    hi = np.minimum(hi, lo + cap)
    counts = hi - lo
    keep = counts > 0
    lo, counts, owners = lo[keep], counts[keep], owners[keep]
    total = int(counts.sum())
    if total == 0:
        return CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    rows = order(lo, counts).astype(np.int64)
    q = np.repeat(owners, counts)
    if not unique:
        return CandidatePairs(q, rows)
    return unpack_pairs(sorted_unique(pack_pairs(q, rows)))


class LSHIndex:
    """Banded MinHash index over an (N, num_perm) uint32 sketch matrix."""

    def __init__(
        self,
        keys: KeyArray,
        order: OrderArray,
        n_rows: int,
        rows: int,
        max_bucket: int = 512,
        fence: U64 | None = None,
    ) -> None:
        """Low-level constructor (used by :meth:`build` and :meth:`load`): ``keys`` and ``order``
        are (bands, N') arrays, each keys[b] sorted; ``fence`` = :func:`fence_of` (computed when
        None; required for keys on disk)."""
        if fence is None:
            if isinstance(keys, DiskArray):
                raise StoreError(f"{keys.path}: LSH keys on disk need their fence")
            fence = fence_of(keys)
        self.keys = keys
        self.order = order
        self.fence = fence
        self._flat_keys = keys.flat() if isinstance(keys, DiskArray) else None
        self._order_ranges = range_reader(order)
        self.n_rows = n_rows  # rows of the indexed matrix (including empty, unindexed ones)
        self.bands = int(keys.shape[0])
        self.rows = rows
        self.max_bucket = max_bucket

    @classmethod
    def build(cls, sigs: U32, bands: int, rows: int, max_bucket: int = 512) -> LSHIndex:
        """Index the rows of ``sigs``; row i of ``sigs`` is candidate id i."""
        if sigs.shape[0] >= 1 << 32:
            raise UsageError("at most 2**32 - 1 sketches per index")
        valid = np.flatnonzero(~np.all(sigs == EMPTY_SLOT, axis=1)).astype(np.uint32)
        keys = band_keys(sigs[valid], bands, rows).T  # (bands, N')
        perm = np.argsort(keys, axis=1)
        sorted_keys = np.take_along_axis(keys, perm, axis=1)
        order = valid[perm]
        log.debug(
            "LSH index: %d of %d sketches, %dx%d bands", len(valid), sigs.shape[0], bands, rows
        )
        return cls(
            np.ascontiguousarray(sorted_keys),
            np.ascontiguousarray(order),
            sigs.shape[0],
            rows,
            max_bucket,
        )

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.order.nbytes + self.fence.nbytes)

    def query(self, sig: U32) -> I64:
        """Candidate rows (sorted, unique) for one sketch; empty sketch -> none."""
        return self.query_batch(sig[None, :]).row

    def query_batch(self, sigs: U32, unique: bool = True) -> CandidatePairs:
        """Candidates for every row of ``sigs`` (vectorised over queries and bands). With
        ``unique`` False a pair appears once per band it collides in (its hit count)."""
        n = sigs.shape[0]
        nonempty = np.flatnonzero(~np.all(sigs == EMPTY_SLOT, axis=1))
        if n == 0 or len(nonempty) == 0 or self.keys.shape[1] == 0:
            return CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
        qkeys = band_keys(sigs[nonempty], self.bands, self.rows)  # (Q, bands)
        los: list[I64] = []
        his: list[I64] = []
        width = self.keys.shape[1]
        for b in range(self.bands):
            f, qk = self.fence[b], qkeys[:, b]
            if self._flat_keys is not None:
                lo_b, hi_b = fenced_search_disk(self._flat_keys, b, width, f, qk)
            else:
                k = in_memory(self.keys)[b]
                lo_b = fenced_searchsorted(k, f, qk, "left")
                hi_b = fenced_searchsorted(k, f, qk, "right")
            los.append(lo_b)
            his.append(hi_b)
        lo = np.concatenate(los)
        hi = np.concatenate(his)
        owners = np.tile(nonempty.astype(np.int64), self.bands)
        band = np.repeat(np.arange(self.bands, dtype=np.int64), len(nonempty))
        # Flatten (band, position) into one index of order.ravel().
        base = band * width
        return _expand(lo + base, hi + base, owners, self._order_ranges, self.max_bucket, unique)

    def save(self, path: Path) -> None:
        """Write the index as an uncompressed .npz (loads with mmap-free np.load)."""
        try:
            with path.open("wb") as fh:
                np.savez(
                    fh,
                    version=np.int64(_FORMAT_VERSION),
                    keys=in_memory(self.keys),
                    order=in_memory(self.order),
                    meta=np.array([self.n_rows, self.rows, self.max_bucket], np.int64),
                )
        except OSError as e:
            raise StoreError(f"cannot write LSH index {path}: {e}") from e

    @classmethod
    def load(cls, path: Path) -> LSHIndex:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != _FORMAT_VERSION:
                    raise StoreError(f"{path}: LSH index format {int(z['version'])} unsupported")
                meta = z["meta"]
                return cls(z["keys"], z["order"], int(meta[0]), int(meta[1]), int(meta[2]))
        except (OSError, KeyError, ValueError) as e:
            raise StoreError(f"cannot read LSH index {path}: {e}") from e


class ExactIndex:
    """Sorted exact hashes: rows sharing a function's position-independent hash."""

    def __init__(self, hashes: I64, order: npt.NDArray[np.uint32], max_bucket: int = 512) -> None:
        self.hashes = hashes  # sorted
        self.order = order
        self.max_bucket = max_bucket

    @classmethod
    def build(cls, exact_hash: I64, max_bucket: int = 512) -> ExactIndex:
        h = np.asarray(exact_hash, dtype=np.int64)
        perm = np.argsort(h, kind="stable")
        return cls(h[perm], perm.astype(np.uint32), max_bucket)

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.order.nbytes)

    def query(self, exact_hash: int) -> I64:
        return self.query_batch(np.array([exact_hash], dtype=np.int64)).row

    def query_batch(self, exact_hash: I64) -> CandidatePairs:
        q = np.asarray(exact_hash, dtype=np.int64)
        lo = np.searchsorted(self.hashes, q, side="left").astype(np.int64)
        hi = np.searchsorted(self.hashes, q, side="right").astype(np.int64)
        owners = np.arange(len(q), dtype=np.int64)
        return _expand(lo, hi, owners, range_reader(self.order), self.max_bucket)

    def save(self, path: Path) -> None:
        try:
            with path.open("wb") as fh:
                np.savez(
                    fh,
                    version=np.int64(_FORMAT_VERSION),
                    hashes=self.hashes,
                    order=in_memory(self.order),
                    meta=np.array([self.max_bucket], np.int64),
                )
        except OSError as e:
            raise StoreError(f"cannot write exact-hash index {path}: {e}") from e

    @classmethod
    def load(cls, path: Path) -> ExactIndex:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != _FORMAT_VERSION:
                    raise StoreError(f"{path}: index format {int(z['version'])} unsupported")
                return cls(z["hashes"], z["order"], int(z["meta"][0]))
        except (OSError, KeyError, ValueError) as e:
            raise StoreError(f"cannot read exact-hash index {path}: {e}") from e
