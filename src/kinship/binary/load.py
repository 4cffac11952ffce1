"""Entry point of the loaders: detect the format of a file or buffer and parse it.

    MZ + PE header      -> pe.parse_pe        (or dump.parse_dump for a mapped image at a base)
    \\x7fELF             -> elf.parse_elf
    anything else       -> dump.parse_dump    only with base= or a "_0x<hex>" file-name suffix;
                           otherwise UnsupportedFormatError

A file that starts with MZ but has no usable PE header is a damaged executable, not a raw dump:
a "_0x<hex>" name does not turn a truncated PE into a headerless dump (only an explicit base=
does, with a warning). Files are opened only when they are regular files, with O_NONBLOCK (a
FIFO, a socket or /dev/zero is refused before a byte is read).

Nothing is ever executed. Every problem a file can cause surfaces as an
:class:`~kinship.exceptions.InputError` subclass with a one-line reason.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from pathlib import Path

from kinship.binary import limits
from kinship.binary.dump import base_from_name, parse_dump
from kinship.binary.elf import parse_elf
from kinship.binary.model import Arch, Binary
from kinship.binary.pe import parse_pe, pe_header_offset
from kinship.binary.regular import file_kind, open_regular
from kinship.exceptions import (
    CorruptFileError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)

logger = logging.getLogger(__name__)

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def load_file(path: str | Path, *, base: int | None = None, arch: Arch | None = None) -> Binary:
    """Load the PE, ELF or memory dump at ``path``.

    ``base`` (and optionally ``arch``) mark the file as a memory dump mapped at that address;
    a Malpedia-style ``_dump_0x<hex>`` / ``_0x<hex>`` name suffix does the same.
    """
    return load_bytes(_read_file(Path(path)), str(path), base=base, arch=arch)


def load_bytes(
    data: bytes, name: str, *, base: int | None = None, arch: Arch | None = None
) -> Binary:
    """Load a sample already in memory; ``name`` is used as ``Binary.path`` and in errors."""
    if len(data) > limits.MAX_FILE_SIZE:
        raise FileTooLargeError(
            name, f"{len(data)} bytes is over MAX_FILE_SIZE ({limits.MAX_FILE_SIZE} bytes)"
        )
    if not data:
        raise CorruptFileError(name, "empty file (0 bytes)")
    dump_base = base if base is not None else base_from_name(name)

    if data[:2] == b"MZ":
        if pe_header_offset(data) is not None:
            if dump_base is not None:
                return parse_dump(data, name, base=dump_base, arch=arch)
            return parse_pe(data, name)
        if base is None:
            # A "_0x<hex>" name does not make a damaged PE a raw dump: it would be stored
            # as a dump of 0 functions.
            raise _bad_mz(data, name)
    elif data[:4] == b"\x7fELF":
        return parse_elf(data, name)

    if dump_base is not None:
        binary = parse_dump(data, name, base=dump_base, arch=arch)
        if data[:2] == b"MZ":
            binary.warnings.append("starts with MZ but has no usable PE header: a damaged PE?"
                                   " loaded as a raw dump because a base was given")
        return binary
    raise UnsupportedFormatError(
        name,
        f"not a PE or ELF executable ({_describe(data)});"
        " pass base= or name it *_0x<base> to load a raw memory dump",
    )


def is_archive(path: str | Path) -> bool:
    """True when ``path`` is a regular file that starts like a zip archive (a FIFO or a
    device is never opened)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open_regular(path) as fh:
            return fh.read(4) in _ZIP_MAGICS
    except (OSError, InputError):
        return False


def _read_file(path: Path) -> bytes:
    where = str(path)
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise InputError(where, "no such file") from e
    except OSError as e:
        raise InputError(where, f"cannot access: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise InputError(where, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        # FIFOs and devices could block forever or never end.
        raise InputError(where, f"not a regular file ({file_kind(st.st_mode)}): refused")
    if st.st_size > limits.MAX_FILE_SIZE:
        raise FileTooLargeError(
            where, f"{st.st_size} bytes is over MAX_FILE_SIZE ({limits.MAX_FILE_SIZE} bytes)"
        )
    # open_regular: a FIFO put in the file's place after the stat is refused, not waited on.
    with open_regular(path) as fh:
        try:
            # Read one byte more than the limit: the file may grow between stat and read.
            data = fh.read(limits.MAX_FILE_SIZE + 1)
        except OSError as e:
            raise InputError(where, f"cannot read: {e.strerror or e}") from e
    return data


def _bad_mz(data: bytes, name: str) -> InputError:
    """The error for an MZ file without a usable PE header."""
    if len(data) < 0x40:
        return CorruptFileError(name, f"truncated MZ header ({len(data)} bytes)")
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if e_lfanew + 4 > len(data):
        return CorruptFileError(
            name,
            f"truncated: PE header offset {e_lfanew:#x} is past the end of file"
            f" ({len(data)} bytes)",
        )
    return UnsupportedFormatError(name, "MZ executable without a PE header (a DOS program?)")


def _describe(data: bytes) -> str:
    text = data[:512].decode("utf-8", errors="replace")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    if b"\0" not in data[:512] and printable >= 0.95 * len(text):
        return "looks like text"
    return f"starts with {data[:8].hex(' ')}"
