"""Zips found in artifacts: the listing always, the content when it opens.

    central directory ─> ZipMember rows (names are not encrypted: listed even when locked)
    encrypted? ─ no ──> kinship.binary.archive.iter_archive (bomb limits, nothing on disk
             │                                                 but the archive itself)
             └ yes ─> each candidate (passwords.py order) checked on the smallest encrypted
                      member, read to its end so the CRC / HMAC proves it (a wrong ZipCrypto
                      password passes the header check once in 256) -> iter_archive with it

The candidate that opened the zip is kept with its source (a body line, the option, the
default) as evidence. When none does, the listing and a note stand in for the content.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyzipper

from kinship.artifacts import limits
from kinship.artifacts.model import ArchiveInfo, PasswordCandidate, ZipMember
from kinship.binary import limits as binary_limits
from kinship.exceptions import CorruptFileError, FileTooLargeError, InputError

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


@dataclass
class OpenedZip:
    info: ArchiveInfo
    members: list[tuple[str, bytes]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
    """
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
                    try:
                        _read(name, data, None, out)
                    except InputError as e:
                        logger.debug("%s: plain members not read: %s", name, e)
                return out
            out.info.password = password
    _read(name, data, password, out)
    return out


def _read(name: str, data: bytes, password: PasswordCandidate | None, out: OpenedZip) -> None:
    """Members via the shared reader (its bomb limits); a failure midway keeps what was read
    and becomes a warning."""
    from kinship.binary.archive import iter_archive

    passwords = (password.password.encode("utf-8"),) if password else ()
    with tempfile.TemporaryDirectory(prefix="kinship-artifact-") as tmp:
        path = Path(tmp) / "archive.zip"  # the archive, never its members
        path.write_bytes(data)
        try:
            for member in iter_archive(path, passwords=passwords):
                if len(out.members) >= limits.MAX_CHILDREN:
                    out.warnings.append(f"over MAX_CHILDREN ({limits.MAX_CHILDREN}) members: "
                                        "rest not analysed")
                    break
                out.members.append(member)
        except FileTooLargeError as e:
            raise FileTooLargeError(name, e.reason) from e
        except InputError as e:
            if not out.members:
                raise type(e)(name, e.reason.replace(str(path), name)) from e
            out.warnings.append(f"zip read stopped: {e.reason.replace(str(path), name)}")
