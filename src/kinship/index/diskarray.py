"""A saved .npy array read with positional reads (``os.preadv``) instead of a memory map.

Why not ``np.load(mmap_mode="r")`` for the large index arrays (LSH keys and rows, sketches):
every page a memory-mapped lookup touches is mapped into the querying process and counts in
its RSS, and the kernel (6.18, large page-cache folios) maps up to 2 MiB around each touched
4 KiB. A 5,000-function query against 10^7 functions had a peak RSS of 3.9-4.1 GiB that way
(bench/scale.py, 2026-11-26), although it reads one 4 KiB key block per (query function,
band) and a few hundred bytes per candidate. Positional reads copy only the requested bytes
into the process (key blocks one band at a time, sketches one scoring chunk at a time); the
page cache still serves them, but it is the kernel's, shared and reclaimable, not the
process's. Same query, same machine, 10^7 functions: peak RSS (VmHWM) 3974 -> 550 MiB,
latency 0.30 -> 0.76 s (docs/BENCHMARKS.md "Scale: the saved index, queried from disk").

Reads are batched: the requested ranges are sorted, ranges closer than ``MERGE_GAP_BYTES`` are
merged into one read, and each merged span costs one system call (about 2 us from page cache).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kinship.exceptions import StoreError
from kinship.features.minhash import I64

# Two requested ranges closer than this are read as one span: reading up to one extra 4 KiB
# page costs less than a second system call.
MERGE_GAP_BYTES = 4096


class DiskArray:
    """Read-only view of a C-ordered .npy file: ``shape``, ``dtype`` and gathers of rows or of
    ranges of rows (``read_ranges``, ``take``) by positional reads. Nothing is mapped."""

    def __init__(self, path: Path) -> None:
        try:
            with path.open("rb") as fh:
                major, _minor = np.lib.format.read_magic(fh)
                if major == 1:
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                self.offset = fh.tell()
            if fortran or dtype.hasobject:
                raise StoreError(f"{path}: not a plain C-ordered array")
            self.fd = os.open(path, os.O_RDONLY)
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read {path}: {e}") from e
        self.path = path
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))  # elements per row
        self.row_bytes = self.row_items * self.dtype.itemsize

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def read_ranges(self, starts: I64, counts: I64) -> npt.NDArray[Any]:
        """Rows ``starts[i] .. starts[i] + counts[i]`` of every range, concatenated in the order
        given: shape (sum(counts), *shape[1:]). Ranges may overlap and come in any order."""
        starts = np.asarray(starts, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        total = int(counts.sum())
        if total == 0:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        if int(starts.min()) < 0 or int((starts + counts).max()) > len(self):
            raise IndexError(f"{self.path}: row range out of bounds")
        keep = counts > 0
        o = np.argsort(starts, kind="stable")
        o = o[keep[o]]
        s, e = starts[o], starts[o] + counts[o]
        # Merge ranges into spans: a new span starts where the gap to everything before it
        # (running maximum of the ends) exceeds MERGE_GAP_BYTES.
        reach = np.maximum.accumulate(e)
        gap_rows = max(1, MERGE_GAP_BYTES // max(1, self.row_bytes))
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] > reach[:-1] + gap_rows
        first = np.flatnonzero(new)
        span_start = s[first]
        span_end = np.maximum.reduceat(e, first)
        span_len = span_end - span_start
        span_off = np.concatenate([[0], np.cumsum(span_len)[:-1]])
        buf = np.empty((int(span_len.sum()), *self.shape[1:]), dtype=self.dtype)
        self._read_spans(buf, span_start, span_len, span_off)
        # Where each requested range starts in buf, then every element, in the caller's order.
        sp = np.cumsum(new) - 1  # span of each sorted range
        range_off = np.zeros(len(starts), dtype=np.int64)
        range_off[o] = span_off[sp] + (s - span_start[sp])
        r, c = range_off[keep], counts[keep]
        pos = np.repeat(r - (np.cumsum(c) - c), c) + np.arange(total, dtype=np.int64)
        out: npt.NDArray[Any] = buf[pos]
        return out

    def take(self, rows: I64) -> npt.NDArray[Any]:
        """``array[rows]`` for any int64 ``rows`` (duplicates and any order allowed): each
        distinct row is read once."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        u = np.sort(rows)  # not np.unique: numpy >= 2.3 hashes, much slower (lsh.sorted_unique)
        u = u[np.concatenate([[True], u[1:] != u[:-1]])]
        got = self.read_ranges(u, np.ones(len(u), dtype=np.int64))
        out: npt.NDArray[Any] = got[np.searchsorted(u, rows)]
        return out

    def flat(self) -> DiskArray:
        """The same file seen as a 1-D array of its elements (C order)."""
        out = object.__new__(DiskArray)
        out.path, out.offset, out.dtype = self.path, self.offset, self.dtype
        out.fd = os.dup(self.fd)
        out.shape = (len(self) * self.row_items,)
        out.row_items, out.row_bytes = 1, self.dtype.itemsize
        return out

    def load(self) -> npt.NDArray[Any]:
        """The whole array in memory."""
        return self.read_ranges(np.zeros(1, np.int64), np.array([len(self)], np.int64))


    def _read_spans(
        self, buf: npt.NDArray[Any], start: I64, length: I64, off: I64
    ) -> None:
        view = memoryview(buf.reshape(-1).view(np.uint8).data)
        rb = self.row_bytes
        fd, base = self.fd, self.offset
        for s, n, o in zip(
            (start * rb + base).tolist(), (length * rb).tolist(), (off * rb).tolist(), strict=True
        ):
            got = 0
            while got < n:  # short reads (signals, very large spans): go on where it stopped
                more = _pread_into(fd, view[o + got : o + n], s + got)
                if more <= 0:
                    raise StoreError(f"{self.path}: file shorter than its header says")
                got += more


def in_memory(a: npt.NDArray[Any] | DiskArray) -> npt.NDArray[Any]:
    """``a`` itself, or the whole DiskArray read into memory."""
    return a.load() if isinstance(a, DiskArray) else a


def take_rows(a: npt.NDArray[Any] | DiskArray, rows: I64) -> npt.NDArray[Any]:
    """``a[rows]`` (positional reads for a DiskArray)."""
    if isinstance(a, DiskArray):
        return a.take(rows)
    out: npt.NDArray[Any] = a[rows]
    return out


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` at file ``offset`` (os.preadv: no intermediate bytes object; os.pread
    and a copy where preadv is missing)."""
    if _HAS_PREADV:
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


_HAS_PREADV = hasattr(os, "preadv")
