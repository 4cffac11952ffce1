"""Zips found in artifacts: the listing always, the content when it opens.

    central directory ─> ZipMember rows (names are not encrypted: listed even when locked)
    encrypted? ─ no ──> kinship.binary.archive.iter_archive (bomb limits, nothing on disk
             │                                                 but the archive itself)
             └ yes ─> each candidate (passwords.py order) checked on the smallest encrypted
                      member, read to its end so the CRC / HMAC proves it (a wrong ZipCrypto
                      password passes the header check once in 256) -> iter_archive with it

The candidate that opened the zip is kept with its source (a body line, the option, the
default) as evidence. When none does, the listing and a note stand in for the content.

Hostile zips: the central directory is counted before zipfile lists it (a 64 MiB zip may
hold 1.4 million entries: a gigabyte of ZipInfo objects); iter_archive refuses entries whose
data overlap (the non-recursive zip bomb); members are handed out one at a time
(:attr:`OpenedZip.members` is an iterator) and stop at MAX_ZIP_INFLATED bytes; a member that
fails to inflate midway is a warning, the members before it stay analysed.
"""

from __future__ import annotations

import io
import logging
import struct
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyzipper

from kinship.artifacts import limits
from kinship.artifacts.model import ArchiveInfo, PasswordCandidate, ZipMember
from kinship.binary import limits as binary_limits
from kinship.binary.archive import ZIP_DAMAGE
from kinship.exceptions import CorruptFileError, FileTooLargeError, InputError

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# What reading a damaged member raises besides kinship's errors: the zip reader's damage
# errors, a method pyzipper lacks, a wrong password.
_MEMBER_ERRORS: tuple[type[Exception], ...] = (*ZIP_DAMAGE, NotImplementedError, RuntimeError)
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (56 bytes)
_EOCD64_LOCATOR_SIZE = 20
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (46 bytes)


@dataclass
class OpenedZip:
    """``members`` yields ``(name, bytes)`` one at a time (read it once, after ``info``);
    ``warnings`` grows while it is read."""

    info: ArchiveInfo
    members: Iterator[tuple[str, bytes]] = field(default_factory=lambda: iter(()))
    warnings: list[str] = field(default_factory=list)


def check_entry_count(name: str, data: bytes, limit: int, limit_name: str) -> None:
    """Raise :class:`FileTooLargeError` when the central directory of the zip ``data`` holds
    more than ``limit`` entries, counted by walking its records (as zipfile will) without
    building them. A directory this walk cannot follow is left for zipfile to judge."""
    tail = data[-(_EOCD.size + 0xFFFF):]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return
    eocd = len(data) - len(tail) + at
    size_cd = _EOCD.unpack_from(data, eocd)[5]
    end = eocd
    loc = eocd - _EOCD64_LOCATOR_SIZE - _EOCD64.size
    if loc >= 0 and data[eocd - _EOCD64_LOCATOR_SIZE: eocd - 16] == b"PK\x06\x07" \
            and data[loc: loc + 4] == b"PK\x06\x06":
        size_cd = _EOCD64.unpack_from(data, loc)[8]
        end = loc
    pos, count = end - size_cd, 0
    if pos < 0:
        return
    while pos + _CENTRAL.size <= end and data[pos: pos + 4] == b"PK\x01\x02":
        count += 1
        if count > limit:
            raise FileTooLargeError(name, f"zip has more than {limit} entries, limit is "
                                          f"{limit} ({limit_name})")
        fields = _CENTRAL.unpack_from(data, pos)  # [12:15]: name, extra, comment lengths
        pos += _CENTRAL.size + fields[12] + fields[13] + fields[14]


def _encryption(info: zipfile.ZipInfo) -> str:
    if not info.flag_bits & 0x1:
        return ""
    # WinZip AES: pyzipper reads the 0x9901 extra field into wz_aes_* (key strength 1-3)
    strength = getattr(info, "wz_aes_strength", None)
    return f"AES-{64 + 64 * strength}" if isinstance(strength, int) else "ZipCrypto"


def _listing(name: str, zf: pyzipper.AESZipFile) -> list[zipfile.ZipInfo]:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > binary_limits.MAX_ZIP_MEMBERS:
        raise FileTooLargeError(
            name, f"zip has {len(infos)} members, limit is {binary_limits.MAX_ZIP_MEMBERS}")
    return infos


def _opens(zf: pyzipper.AESZipFile, info: zipfile.ZipInfo, password: bytes) -> bool:
    """``password`` decrypts ``info`` to its end (CRC / HMAC checked). Reading stops early,
    password accepted on the header check alone, past MAX_FILE_SIZE or the bomb ratio:
    iter_archive then applies its own limits to the content."""
    compressed = max(info.compress_size, 1)
    size = 0
    try:
        with zf.open(info, pwd=password) as fh:
            while size <= binary_limits.MAX_FILE_SIZE:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return True
                size += len(chunk)
                if (size > binary_limits.MAX_ZIP_RATIO_MIN_SIZE
                        and size / compressed > binary_limits.MAX_ZIP_RATIO):
                    return True
    except RuntimeError:  # bad password (header check)
        return False
    except NotImplementedError:  # a method pyzipper lacks: the password cannot be checked
        return True
    except (pyzipper.BadZipFile, zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        # passed the header check, failed CRC / HMAC / inflate: wrong password (or damage)
        logger.debug("password candidate failed on %s: %s", info.filename, e)
        return False
    return True


def open_zip(name: str, data: bytes, candidates: Sequence[PasswordCandidate]) -> OpenedZip:
    """List the zip ``data`` and read its members, trying ``candidates`` if it is encrypted.

    Raises :class:`CorruptFileError` when ``data`` is not a zip and :class:`FileTooLargeError`
    past the member-count limit; a password that opens nothing is a note, not an error.
    Reading :attr:`OpenedZip.members` may raise as :func:`_read` says.
    """
    check_entry_count(name, data, binary_limits.MAX_ZIP_MEMBERS, "MAX_ZIP_MEMBERS")
    try:
        zf = pyzipper.AESZipFile(io.BytesIO(data))
    except (pyzipper.BadZipFile, zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptFileError(name, f"not a readable zip archive: {e}") from e
    with zf:
        infos = _listing(name, zf)
        listed = [ZipMember(i.filename, i.file_size, i.compress_size, _encryption(i))
                  for i in infos[: limits.MAX_ZIP_LISTED]]
        locked = [i for i in infos if i.flag_bits & 0x1]
        out = OpenedZip(ArchiveInfo(bool(locked), True, listed))
        if len(infos) > limits.MAX_ZIP_LISTED:
            out.warnings.append(f"{len(infos)} members, first {limits.MAX_ZIP_LISTED} listed")
        password: PasswordCandidate | None = None
        if locked:
            probe = min(locked, key=lambda i: i.compress_size)
            for tried, c in enumerate(candidates, 1):
                out.info.tried = tried
                if _opens(zf, probe, c.password.encode("utf-8")):
                    password = c
                    break
            if password is None:
                out.info.opened = False
                out.info.note = (f"encrypted; none of the {len(candidates)} passwords tried "
                                 "opened it: content not analysed (members listed from the "
                                 "central directory)")
                if len(locked) < len(infos):  # the unencrypted members before a locked one
                    out.members = _read(name, data, None, out, quiet=True)
                return out
            out.info.password = password
    out.members = _read(name, data, password, out)
    return out


def _read(name: str, data: bytes, password: PasswordCandidate | None, out: OpenedZip,
          quiet: bool = False) -> Iterator[tuple[str, bytes]]:
    """Members via the shared reader (its bomb limits), one at a time, at most MAX_CHILDREN
    of them and MAX_ZIP_INFLATED bytes in all.

    A bomb limit raises :class:`FileTooLargeError`; a damaged archive or member (zlib.error
    included) raises :class:`CorruptFileError` when nothing was read yet, else it ends the
    reading with a warning in ``out`` and the members yielded before it stay analysed.
    ``quiet`` (the plain members of a zip that stays locked): nothing is raised, a failure
    before the first member is only logged.
    """
    from kinship.binary.archive import iter_archive

    passwords = (password.password.encode("utf-8"),) if password else ()
    with tempfile.TemporaryDirectory(prefix="kinship-artifact-") as tmp:
        path = Path(tmp) / "archive.zip"  # the archive, never its members
        path.write_bytes(data)
        count = inflated = 0
        error: InputError | None = None
        cause: BaseException | None = None
        try:
            for member in iter_archive(path, passwords=passwords):
                if count >= limits.MAX_CHILDREN:
                    out.warnings.append(f"over MAX_CHILDREN ({limits.MAX_CHILDREN}) members: "
                                        "rest not analysed")
                    return
                inflated += len(member[1])
                if inflated > limits.MAX_ZIP_INFLATED:
                    out.warnings.append(
                        f"over MAX_ZIP_INFLATED ({limits.MAX_ZIP_INFLATED} bytes inflated): "
                        f"{count} members analysed, rest not")
                    return
                count += 1
                yield member
        except InputError as e:
            error, cause = type(e)(name, e.reason.replace(str(path), name)), e
        except _MEMBER_ERRORS as e:
            error = CorruptFileError(name, f"damaged zip member: {type(e).__name__}: {e}")
            cause = e
    if error is None:
        return
    if quiet and count == 0:
        logger.debug("%s: plain members of a locked zip not read: %s", name, error.reason)
    elif not quiet and (count == 0 or isinstance(error, FileTooLargeError)):
        raise error from cause
    else:
        out.warnings.append(f"zip read stopped after {count} members: {error.reason}")
