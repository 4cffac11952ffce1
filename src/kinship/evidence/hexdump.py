"""Hex dumps of a string in its file, as in a report figure::

    00008640  00 00 00 00 6e 65 74 73 68 20 66 69 72 65 77 61  |....netsh firewa|
    00008650  6c 6c 20 61 64 64 20 70 6f 72 74 6f 70 65 6e 69  |ll add portopeni|

A :class:`HexDump` keeps the bytes shown (``data_hex`` from file offset ``start``) and the
highlighted range; lines are derived, so the JSON form stays small and round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinship.document import Document

# Bytes shown per line.
LINE_WIDTH = 16
# Bytes of a dump at most (a 1 KiB string is shown, a 1 MiB blob is cut).
MAX_DUMP_BYTES = 4096


@dataclass(frozen=True, slots=True)
class HexLine:
    offset: int  # file offset of column 0 (a multiple of LINE_WIDTH)
    cells: tuple[int | None, ...]  # LINE_WIDTH bytes; None where the dump has no byte
    highlight: tuple[bool, ...]  # per column: part of the highlighted string

    def hex_text(self) -> str:
        return " ".join("  " if b is None else f"{b:02x}" for b in self.cells)

    def ascii_text(self) -> str:
        return "".join(
            " " if b is None else chr(b) if 0x20 <= b < 0x7F else "." for b in self.cells
        )

    def text(self) -> str:
        return f"{self.offset:08x}  {self.hex_text()}  |{self.ascii_text()}|"


@dataclass(frozen=True, slots=True)
class HexDump(Document):
    start: int  # file offset of the first byte shown
    data_hex: str  # the bytes shown
    highlight_start: int  # file offsets of the highlighted bytes [start, end)
    highlight_end: int

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.data_hex)

    def lines(self) -> list[HexLine]:
        data = self.data
        if not data:
            return []
        end = self.start + len(data)
        first = self.start - self.start % LINE_WIDTH
        out = []
        for line in range(first, end, LINE_WIDTH):
            cells = tuple(
                data[o - self.start] if self.start <= o < end else None
                for o in range(line, line + LINE_WIDTH)
            )
            hl = tuple(
                self.highlight_start <= o < self.highlight_end
                for o in range(line, line + LINE_WIDTH)
            )
            out.append(HexLine(line, cells, hl))
        return out

    def text(self) -> str:
        return "\n".join(x.text() for x in self.lines())


def hexdump(data: bytes, offset: int, length: int, context: int = LINE_WIDTH) -> HexDump:
    """The bytes ``data[offset:offset+length]`` with up to ``context`` bytes either side,
    widened to whole lines, highlighted."""
    length = max(0, min(length, MAX_DUMP_BYTES))
    lo = max(0, offset - context)
    lo -= lo % LINE_WIDTH
    hi = min(len(data), offset + length + context)
    if hi % LINE_WIDTH:
        hi = min(len(data), hi + LINE_WIDTH - hi % LINE_WIDTH)
    return HexDump(lo, data[lo:hi].hex(), offset, offset + length)


def hexdump_of(raw: bytes, offset: int) -> HexDump:
    """A dump of known bytes at ``offset`` without the file around them (reference samples
    whose files are not at hand: the store keeps each string's text and offset)."""
    raw = raw[:MAX_DUMP_BYTES]
    return HexDump(offset, raw.hex(), offset, offset + len(raw))
