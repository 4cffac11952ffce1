"""Address-space helpers of the decoder: mapped/executable membership and code regions."""

from __future__ import annotations

import bisect

import iced_x86 as iced

from kinship.binary.model import Binary


class AddressSpace:
    """Fast membership tests for mapped and executable addresses of a :class:`Binary`."""

    def __init__(self, binary: Binary) -> None:
        spans = sorted(
            (s.va, s.va + max(s.virtual_size, s.raw_size), s.executable)
            for s in binary.sections
            if max(s.virtual_size, s.raw_size) > 0
        )
        self._starts = [s[0] for s in spans]
        self._ends = [s[1] for s in spans]
        self._exec = [s[2] for s in spans]
        merged: list[list[int]] = []
        for lo, hi, ex in spans:
            if not ex:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._exec_starts = [m[0] for m in merged]
        self._exec_ends = [m[1] for m in merged]
        self.low = self._starts[0] if spans else 0
        self.high = max(self._ends) if spans else 0

    def _index(self, va: int) -> int:
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0 and va < self._ends[i]:
            return i
        return -1

    def mapped(self, va: int) -> bool:
        return self.low <= va < self.high and self._index(va) >= 0

    def executable(self, va: int) -> bool:
        i = bisect.bisect_right(self._exec_starts, va) - 1
        return i >= 0 and va < self._exec_ends[i]


class CodeRegion:
    """One executable section: its bytes and a reusable iced decoder over them."""

    __slots__ = ("data", "decoder", "end", "va")

    def __init__(self, va: int, data: bytes, bitness: int) -> None:
        self.va = va
        self.end = va + len(data)
        self.data = data
        self.decoder = iced.Decoder(bitness, data, ip=va)
