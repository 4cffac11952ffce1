"""Reading samples out of zip archives, the way malware is exchanged.

Archives are tried without a password, then with the customary ``infected`` (ZipCrypto and AES
via pyzipper). Nothing is written to disk: members are read as bytes, so path traversal in
member names cannot escape anywhere, but unsafe names are still reported and skipped so they
never reach analysis.

A zip is hostile until proven otherwise. :func:`list_archive` checks its layout before any
member is inflated::

    end record      entries <= MAX_ZIP_MEMBERS, central directory <= MAX_ZIP_DIRECTORY bytes
                    (checked before the directory is parsed: a million-entry directory never
                    becomes a million objects)
    local headers   every entry's [local header + data] span is disjoint from the others and
                    ends before the central directory (David Fifield's "better zip bomb"
                    makes thousands of entries share one deflate stream)
    declared sizes  sum <= MAX_ZIP_TOTAL; each member <= MAX_FILE_SIZE and, once over
                    MAX_ZIP_RATIO_MIN_SIZE, inflating <= MAX_ZIP_RATIO times its stored size

Members are then read one at a time (:func:`member_chunks`, :func:`read_member`), the limits
enforced again on the bytes actually inflated. :class:`MemberRef` is a lazy reference to one
member that a worker process resolves itself, so a batch never holds more than the member being
analysed. Any decompression error (``zlib.error``, ``EOFError``, a bad CRC ...) becomes a
:class:`CorruptFileError` naming the archive and the member.
"""

from __future__ import annotations

import itertools
import logging
import lzma
import os
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pyzipper

from kinship.binary import limits
from kinship.binary.regular import open_regular
from kinship.exceptions import (
    CorruptFileError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)

logger = logging.getLogger(__name__)

DEFAULT_PASSWORDS: tuple[bytes, ...] = (b"infected",)
_CHUNK = 1024 * 1024

# What zipfile / pyzipper and the decompressors raise on a damaged or hostile archive. Every
# one of them becomes a CorruptFileError; none may end a batch.
ZIP_DAMAGE: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    pyzipper.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,  # bz2 and zipfile's own "corrupt" errors, short reads
    ValueError,  # bad CRC / HMAC, UnicodeDecodeError in names
    struct.error,
    IndexError,
    KeyError,
    OverflowError,
)

# End of central directory record, its zip64 locator and the zip64 record; a local file header.
_EOCD = struct.Struct("<4s4H2LH")  # sig, disk, cd disk, entries here, entries, size, offset, ...
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # sig, disk, offset of the zip64 record, disks
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # sig, size, versions, disks, entries here, entries, ...
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # ..., name length, extra length


@dataclass(frozen=True)
class Member:
    """One file in a zip, as its central directory lists it."""

    index: int  # position in the central directory (names may repeat; positions do not)
    filename: str  # as stored: sample-controlled, possibly unsafe
    name: str | None  # normalised safe name; None when absolute or climbing out with ".."
    file_size: int  # declared, inflated
    compress_size: int  # declared, stored
    encrypted: bool


@dataclass
class ArchiveListing:
    """What :func:`list_archive` found: the files, and per member the reason it cannot be
    read (over a size limit, a zip bomb, no local header)."""

    path: str
    members: list[Member] = field(default_factory=list)  # files only, central-directory order
    problems: dict[int, InputError] = field(default_factory=dict)  # by Member.index

    @property
    def unsafe(self) -> list[Member]:
        return [m for m in self.members if m.name is None]


@dataclass(frozen=True)
class MemberRef:
    """A lazy reference to one zip member (``SampleInput.member``).

    :func:`kinship.pipeline.load_input` reads the member (:func:`read_member`) where it is
    analysed, so only the member being analysed is in memory, and a worker process of
    ``add -j N`` receives a few bytes (archive path, entry number and name) and reads its own
    member.
    """

    archive: str
    entry: int
    filename: str

    @property
    def where(self) -> str:
        """``archive.zip:member``, the name errors use."""
        return f"{self.archive}:{self.filename}"


def _safe_name(name: str) -> str | None:
    """The member name normalised, or None for directories, absolute or escaping paths."""
    clean = name.replace("\\", "/")
    if clean.endswith("/") or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        return None
    norm = posixpath.normpath(clean)
    if norm in ("", ".") or norm.startswith("../") or norm == "..":
        return None
    return norm


def _directory_size(fh: IO[bytes]) -> tuple[int, int] | None:
    """``(entries, central directory bytes)`` from the end record (zip64 when present), or
    None when there is no end record (pyzipper then says what is wrong)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_len = min(size, _EOCD.size + 0xFFFF)  # the record, then a comment of <= 64 KiB
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    fields = _EOCD.unpack_from(tail, at)
    entries, cd_size = int(fields[4]), int(fields[5])
    record = size - tail_len + at
    if record >= _EOCD64_LOCATOR.size:
        fh.seek(record - _EOCD64_LOCATOR.size)
        locator = fh.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            fh.seek(int(_EOCD64_LOCATOR.unpack(locator)[2]))
            rec64 = fh.read(_EOCD64.size)
            if len(rec64) == _EOCD64.size and rec64[:4] == b"PK\x06\x06":
                f64 = _EOCD64.unpack(rec64)
                entries, cd_size = max(entries, int(f64[7])), max(cd_size, int(f64[8]))
    return entries, cd_size


def _check_directory(fh: IO[bytes], where: str) -> None:
    found = _directory_size(fh)
    if found is None:
        return
    entries, cd_size = found
    if entries > limits.MAX_ZIP_MEMBERS:
        at_least = "at least " if entries == 0xFFFF else ""  # a saturated 16-bit count
        raise FileTooLargeError(
            where, f"zip has {at_least}{entries} members, limit is {limits.MAX_ZIP_MEMBERS}")
    if cd_size > limits.MAX_ZIP_DIRECTORY:
        raise FileTooLargeError(
            where, f"zip central directory is {cd_size} bytes, over MAX_ZIP_DIRECTORY"
                   f" ({limits.MAX_ZIP_DIRECTORY} bytes): too many members")


def _spans(
    fh: IO[bytes], infos: Sequence[zipfile.ZipInfo], listing: ArchiveListing, end: int
) -> None:
    """Refuse overlapping entries: each entry's local header and data must lie in its own
    byte range, before the central directory at ``end``. An entry without a local header is
    a problem of that member only."""
    spans: list[tuple[int, int, int, str]] = []
    for i, info in enumerate(infos):
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
            listing.problems[i] = CorruptFileError(
                f"{listing.path}:{info.filename}",
                f"damaged zip member: no local header at offset {info.header_offset}")
            continue
        fields = _LOCAL.unpack(head)
        stop = info.header_offset + _LOCAL.size + fields[10] + fields[11] + info.compress_size
        spans.append((info.header_offset, stop, i, info.filename))
    spans.sort()
    for (_, stop, i, first), (start, _, j, second) in itertools.pairwise(spans):
        if stop > start:
            raise FileTooLargeError(
                listing.path,
                f"rejected as a zip bomb: entries {i} ({first!r}) and {j} ({second!r}) overlap"
                " in the file (entries sharing compressed data)")
    if spans and spans[-1][1] > end:
        raise FileTooLargeError(
            listing.path, f"rejected as a zip bomb: entry {spans[-1][2]} ({spans[-1][3]!r})"
                          " overlaps the central directory")


def _member_problem(where: str, info: zipfile.ZipInfo) -> InputError | None:
    """Why the member cannot be read, judged from its declared sizes."""
    size, stored = info.file_size, max(info.compress_size, 1)
    if size > limits.MAX_ZIP_RATIO_MIN_SIZE and size / stored > limits.MAX_ZIP_RATIO:
        return FileTooLargeError(
            where, f"rejected as a zip bomb: inflates {stored} -> {size} bytes"
                   f" ({size // stored}:1, limit {limits.MAX_ZIP_RATIO}:1)")
    if size > limits.MAX_FILE_SIZE:
        return FileTooLargeError(
            where, f"{size} bytes inflated, over MAX_FILE_SIZE ({limits.MAX_FILE_SIZE} bytes)")
    return None


class _Opened:
    """An archive opened and checked once per process (see :func:`_open`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh = open_regular(path)
        st = os.fstat(self.fh.fileno())
        self.key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self.password: bytes | None = None
        try:
            _check_directory(self.fh, path)
            self.fh.seek(0)
            try:
                self.zf = pyzipper.AESZipFile(self.fh)
            except ZIP_DAMAGE as e:
                raise CorruptFileError(path, f"not a readable zip archive: {e}") from e
            except NotImplementedError as e:  # "zip file version 25.4" in the directory
                raise UnsupportedFormatError(path, f"zip archive kinship cannot read: {e}"
                                             ) from e
            self.infos: list[zipfile.ZipInfo] = list(self.zf.infolist())
            self.listing = self._list()
        except BaseException:
            self.close()
            raise

    def _list(self) -> ArchiveListing:
        where = self.path
        if len(self.infos) > limits.MAX_ZIP_MEMBERS:
            raise FileTooLargeError(
                where, f"zip has {len(self.infos)} members, limit is {limits.MAX_ZIP_MEMBERS}")
        listing = ArchiveListing(where)
        try:
            _spans(self.fh, self.infos, listing, int(self.zf.start_dir))
        except ZIP_DAMAGE as e:
            raise CorruptFileError(where, f"damaged zip archive: {e}") from e
        total = sum(i.file_size for i in self.infos)
        if total > limits.MAX_ZIP_TOTAL:
            raise FileTooLargeError(
                where, f"rejected as a zip bomb: members inflate to {total} bytes in all,"
                       f" over MAX_ZIP_TOTAL ({limits.MAX_ZIP_TOTAL} bytes)")
        for i, info in enumerate(self.infos):
            if info.is_dir():
                continue
            listing.members.append(Member(i, info.filename, _safe_name(info.filename),
                                          info.file_size, info.compress_size,
                                          bool(info.flag_bits & 0x1)))
            problem = _member_problem(f"{where}:{info.filename}", info)
            if problem is not None and i not in listing.problems:
                listing.problems[i] = problem
        return listing

    def close(self) -> None:
        zf = getattr(self, "zf", None)
        if zf is not None:
            zf.close()
        self.fh.close()


_current: _Opened | None = None  # the archive this process read last (one open file at most)


def _open(path: str) -> _Opened:
    """The checked archive at ``path``, reusing this process's last one while the file is
    unchanged: a worker reading the members of one archive in turn parses it once."""
    global _current
    if _current is not None and _current.path == path:
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == _current.key:
                return _current
        except OSError:
            pass
    close_archives()
    _current = _Opened(path)
    return _current


def close_archives() -> None:
    """Close the archive kept open by this process, if any."""
    global _current
    if _current is not None:
        _current.close()
        _current = None


def list_archive(path: str | Path) -> ArchiveListing:
    """Check the zip at ``path`` (see the module docstring) and list its files.

    Raises :class:`FileTooLargeError` for too many members, overlapping entries or a total past
    ``MAX_ZIP_TOTAL`` (each "rejected as a zip bomb" where it is one) and
    :class:`CorruptFileError` for an unreadable archive. Members over a limit are listed with
    their problem in :attr:`ArchiveListing.problems`.
    """
    return _open(str(path)).listing


def _find_password(
    zf: pyzipper.AESZipFile, info: zipfile.ZipInfo, where: str, passwords: Sequence[bytes]
) -> bytes:
    for pw in passwords:
        try:
            with zf.open(info, pwd=pw) as fh:
                fh.read(1)
            return pw
        except RuntimeError:
            continue  # bad password
        except ZIP_DAMAGE as e:
            # ZipCrypto checks only one byte of the password: a wrong one may pass the check
            # and then fail the CRC; keep trying the others.
            logger.debug("%s: password %r failed: %s", where, pw, e)
            continue
    raise InputError(where, "zip is encrypted with an unknown password")


def _chunks(opened: _Opened, info: zipfile.ZipInfo, where: str,
            passwords: Sequence[bytes]) -> Iterator[bytes]:
    limit = limits.MAX_FILE_SIZE
    compressed = max(info.compress_size, 1)
    password: bytes | None = None
    if info.flag_bits & 0x1:
        if opened.password is None or opened.password not in passwords:
            opened.password = _find_password(opened.zf, info, where, passwords)
        password = opened.password
    size = 0
    try:
        with opened.zf.open(info, pwd=password) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return
                size += len(chunk)
                if size > limit:
                    raise FileTooLargeError(
                        where, f"over MAX_FILE_SIZE ({limit} bytes) once inflated")
                ratio = size / compressed
                if size > limits.MAX_ZIP_RATIO_MIN_SIZE and ratio > limits.MAX_ZIP_RATIO:
                    raise FileTooLargeError(
                        where,
                        f"rejected as a zip bomb: inflates more than {limits.MAX_ZIP_RATIO}:1"
                        f" ({compressed} -> {size}+ bytes)")
                yield chunk
    except RuntimeError as e:
        raise InputError(where, f"cannot decrypt: {e}") from e
    except NotImplementedError as e:
        raise CorruptFileError(where, f"cannot read zip member: {e}") from e
    except ZIP_DAMAGE as e:
        raise CorruptFileError(where, f"damaged zip member: {type(e).__name__}: {e}") from e


def member_chunks(ref: MemberRef, *,
                  passwords: Sequence[bytes] = DEFAULT_PASSWORDS) -> Iterator[bytes]:
    """The bytes of the member ``ref`` names, in chunks of at most 1 MiB, every limit checked
    on the bytes as they are inflated. Raises :class:`InputError` subclasses only."""
    yield from _member_chunks(_open(ref.archive), ref, passwords)


def _member_chunks(opened: _Opened, ref: MemberRef, passwords: Sequence[bytes]
                   ) -> Iterator[bytes]:
    if not 0 <= ref.entry < len(opened.infos) or opened.infos[ref.entry].filename != ref.filename:
        raise CorruptFileError(ref.where, "the archive changed while it was being read")
    problem = opened.listing.problems.get(ref.entry)
    if problem is not None:
        raise problem
    yield from _chunks(opened, opened.infos[ref.entry], ref.where, passwords)


def read_member(ref: MemberRef, *, passwords: Sequence[bytes] = DEFAULT_PASSWORDS) -> bytes:
    """The bytes of the member ``ref`` names (see :func:`member_chunks`)."""
    return b"".join(member_chunks(ref, passwords=passwords))


def iter_archive(
    path: str | Path, *, passwords: Sequence[bytes] = DEFAULT_PASSWORDS
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` for each file in the zip at ``path``, one at a time.

    Directories and unsafe names are skipped (logged); a member over ``MAX_FILE_SIZE`` is
    skipped with a warning. An archive over ``MAX_ZIP_MEMBERS`` members, over ``MAX_ZIP_TOTAL``
    bytes in all, with overlapping entries or with a member inflating beyond ``MAX_ZIP_RATIO``
    raises :class:`FileTooLargeError`; a damaged archive or member raises
    :class:`CorruptFileError`; an unknown password raises :class:`InputError`. The archive is
    closed when the iteration ends (or the generator is closed).
    """
    where = str(path)
    opened = _Opened(where)
    try:
        for m in opened.listing.members:
            if m.name is None:
                logger.warning("%s: skipping zip member with unsafe name %r", where, m.filename)
                continue
            problem = opened.listing.problems.get(m.index)
            if isinstance(problem, FileTooLargeError) and "zip bomb" not in problem.reason:
                logger.warning("%s: skipping %s: %s", where, m.name, problem.reason)
                continue
            ref = MemberRef(where, m.index, m.filename)
            try:
                data = b"".join(_member_chunks(opened, ref, passwords))
            except InputError as e:
                raise type(e)(where, f"zip member {m.name}: {e.reason}") from e
            yield m.name, data
    finally:
        opened.close()
