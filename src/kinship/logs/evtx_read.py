"""Read .evtx files into flat events with PyPI ``evtx`` (the Rust parser).

Each record's JSON (``Event.System`` and ``Event.EventData`` / ``Event.UserData``) becomes one
:class:`FlatEvent`: ``{field: value}`` with the System fields named the way Sigma rules name them
(``EventID``, ``Channel``, ``Computer``, ``Provider_Name``, ...) and every leaf of the event data
under its own name. Every file is hostile: the size and record limits below stop a file, and a
file that cannot be read to its end (0 bytes, truncated, not EVTX) is an error on that file,
never an aborted batch.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinship.exceptions import CorruptFileError, FileTooLargeError, InputError

logger = logging.getLogger(__name__)

# Larger files are refused: the biggest Security logs a fleet keeps are a few hundred MiB, and
# every event of a run is held in memory (one SQLite table).
MAX_LOG_FILE_SIZE = 1 << 30
# Records read from one file at most; the rest of the file is an error on that file.
MAX_RECORDS_PER_FILE = 2_000_000
# A field value longer than this is cut (a script block can be megabytes; rules match prefixes
# and substrings of command lines and scripts, never megabytes deep).
MAX_FIELD_CHARS = 65_536
# The EVTX layout: a 4 KiB file header, then 64 KiB chunks.
HEADER_SIZE = 4096
CHUNK_SIZE = 65536
EVTX_MAGIC = b"ElfFile\x00"


@dataclass(slots=True)
class FlatEvent:
    """One event: where it came from and its flattened fields (all values text)."""

    file: str
    record_id: int | None
    timestamp: str | None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def channel(self) -> str | None:
        return self.fields.get("Channel")

    @property
    def event_id(self) -> int | None:
        value = self.fields.get("EventID")
        return int(value) if value is not None and value.isdigit() else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(
        value, list) else str(value)
    return text[:MAX_FIELD_CHARS]


def _leaves(node: Any, name: str, out: dict[str, str]) -> None:
    """Every leaf under ``node`` into ``out`` by its own name (``#text`` takes its parent's
    name, ``#attributes`` entries theirs); ``<Data Name="X">`` pairs become ``X``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "#attributes":
                if isinstance(value, dict):
                    for k, v in value.items():
                        if k != "xmlns" and v is not None:
                            out.setdefault(k, _text(v))
            elif key == "#text":
                _leaves(value, name, out)
            else:
                _leaves(value, key, out)
    elif node is not None and name:
        out[name] = _text(node)


def _system(system: dict[str, Any], out: dict[str, str]) -> None:
    for key, value in system.items():
        if isinstance(value, dict):
            if "#text" in value:
                out[key] = _text(value["#text"])
            for k, v in (value.get("#attributes") or {}).items():
                if v is not None:
                    out[f"{key}_{k}"] = _text(v)  # Provider_Name, TimeCreated_SystemTime
        elif value is not None:
            out[key] = _text(value)


def flatten(data: dict[str, Any]) -> dict[str, str]:
    """The fields of one record's JSON (``{"Event": {"System": ..., "EventData": ...}}``)."""
    event = data.get("Event") or {}
    out: dict[str, str] = {}
    _system(event.get("System") or {}, out)
    for part in ("EventData", "UserData"):
        if event.get(part) is not None:
            _leaves(event[part], part, out)
    return out


def check_header(path: Path) -> None:
    """CorruptFileError when ``path`` is not a whole EVTX file: 0 bytes, no ``ElfFile``
    magic, or shorter than the chunks its header counts (the parser itself reads a truncated
    file without complaint, stopping at the cut)."""
    size = path.stat().st_size
    if size > MAX_LOG_FILE_SIZE:
        raise FileTooLargeError(str(path), f"{size} bytes, over the {MAX_LOG_FILE_SIZE}-byte "
                                           "limit (MAX_LOG_FILE_SIZE)")
    if size == 0:
        raise CorruptFileError(str(path), "empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE)
    if not head.startswith(EVTX_MAGIC):
        raise CorruptFileError(str(path), "not an EVTX file (no ElfFile header)")
    if len(head) < HEADER_SIZE:
        raise CorruptFileError(str(path), f"truncated: {size} bytes, shorter than the header")
    (chunks,) = struct.unpack_from("<H", head, 42)
    expected = HEADER_SIZE + chunks * CHUNK_SIZE
    if size < expected or (size - HEADER_SIZE) % CHUNK_SIZE:
        raise CorruptFileError(str(path), f"truncated: {size} bytes, the header counts "
                                          f"{chunks} chunks ({expected} bytes)")


def read_evtx(path: Path) -> Iterator[FlatEvent]:
    """The events of one .evtx file, in file order. Raises :class:`InputError` (after the
    events read so far) when the file is damaged or over a limit."""
    import evtx

    check_header(path)
    name = str(path)
    try:
        parser = evtx.PyEvtxParser(name)
        for n, record in enumerate(parser.records_json()):
            if n >= MAX_RECORDS_PER_FILE:
                raise InputError(name, f"over {MAX_RECORDS_PER_FILE} records "
                                       "(MAX_RECORDS_PER_FILE); the rest is not read")
            if record is None:  # the parser's stubs allow it; never seen
                continue
            data = json.loads(record["data"])
            fields = flatten(data)
            # The System EventRecordID (what Event Viewer shows), else the record header's.
            rid = fields.get("EventRecordID") or str(record.get("event_record_id") or "")
            yield FlatEvent(name, int(rid) if rid.isdigit() else None,
                            fields.get("TimeCreated_SystemTime"), fields)
    except (OSError, RuntimeError, ValueError) as e:  # the Rust parser's errors
        raise CorruptFileError(name, f"EVTX parse error: {e}") from e
