"""Reading samples out of zip archives, the way malware is exchanged.

Archives are tried without a password, then with the customary ``infected`` (ZipCrypto and AES
via pyzipper). Nothing is written to disk: members are returned as bytes, so path traversal in
member names cannot escape anywhere, but unsafe names are still skipped so they never reach
reports. Zip bombs are stopped by a member count, a per-member size, a total size and a
compression-ratio limit (see :mod:`kinship.binary.limits`); sizes are enforced on the bytes
actually inflated, not on what the headers claim.
"""

from __future__ import annotations

import logging
import posixpath
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pyzipper

from kinship.binary import limits
from kinship.exceptions import CorruptFileError, FileTooLargeError, InputError

logger = logging.getLogger(__name__)

DEFAULT_PASSWORDS: tuple[bytes, ...] = (b"infected",)
_CHUNK = 1024 * 1024


def _safe_name(name: str) -> str | None:
    """The member name normalised, or None for directories, absolute or escaping paths."""
    clean = name.replace("\\", "/")
    if clean.endswith("/") or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        return None
    norm = posixpath.normpath(clean)
    if norm in ("", ".") or norm.startswith("../") or norm == "..":
        return None
    return norm


def iter_archive(
    path: str | Path, *, passwords: Sequence[bytes] = DEFAULT_PASSWORDS
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` for each file in the zip at ``path``.

    Directories and unsafe names are skipped (logged); a member over ``MAX_FILE_SIZE`` is
    skipped with a warning. An archive over ``MAX_ZIP_MEMBERS`` members, over ``MAX_ZIP_TOTAL``
    bytes in all, or with a member inflating beyond ``MAX_ZIP_RATIO`` raises
    :class:`FileTooLargeError`; a damaged archive raises :class:`CorruptFileError`; an unknown
    password raises :class:`InputError`.
    """
    where = str(path)
    try:
        zf = pyzipper.AESZipFile(where)
    except (pyzipper.BadZipFile, OSError, EOFError) as e:
        raise CorruptFileError(where, f"not a readable zip archive: {e}") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.MAX_ZIP_MEMBERS:
            raise FileTooLargeError(
                where, f"zip has {len(infos)} members, limit is {limits.MAX_ZIP_MEMBERS}"
            )
        password: bytes | None = None
        total = 0
        for info in infos:
            name = _safe_name(info.filename)
            if name is None:
                if not info.is_dir():
                    logger.warning(
                        "%s: skipping zip member with unsafe name %r", where, info.filename
                    )
                continue
            if info.file_size > limits.MAX_FILE_SIZE:
                logger.warning(
                    "%s: skipping %s: %d bytes, over MAX_FILE_SIZE", where, name, info.file_size
                )
                continue
            if info.flag_bits & 0x1 and password is None:
                password = _find_password(zf, info, where, passwords)
            data = _read_member(zf, info, name, where, password)
            if data is None:
                continue
            total += len(data)
            if total > limits.MAX_ZIP_TOTAL:
                raise FileTooLargeError(
                    where, f"zip inflates past MAX_ZIP_TOTAL ({limits.MAX_ZIP_TOTAL} bytes)"
                )
            yield name, data


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
        except (pyzipper.BadZipFile, ValueError) as e:
            # ZipCrypto checks only one byte of the password: a wrong one may pass the check
            # and then fail the CRC; keep trying the others.
            logger.debug("%s: password %r failed: %s", where, pw, e)
            continue
    raise InputError(where, "zip is encrypted with an unknown password")


def _read_member(
    zf: pyzipper.AESZipFile,
    info: zipfile.ZipInfo,
    name: str,
    where: str,
    password: bytes | None,
) -> bytes | None:
    """The member's bytes, inflating at most MAX_FILE_SIZE + 1 bytes and checking the ratio."""
    limit = limits.MAX_FILE_SIZE
    try:
        with zf.open(info, pwd=password) as fh:
            data = _bounded_read(fh, limit + 1, info, name, where)
    except RuntimeError as e:
        raise InputError(where, f"cannot decrypt {name}: {e}") from e
    except NotImplementedError as e:
        logger.warning("%s: skipping %s: %s", where, name, e)
        return None
    except (pyzipper.BadZipFile, EOFError, ValueError, OSError) as e:
        raise CorruptFileError(where, f"damaged zip member {name}: {e}") from e
    if len(data) > limit:
        logger.warning("%s: skipping %s: over MAX_FILE_SIZE (%d bytes)", where, name, limit)
        return None
    return data


def _bounded_read(fh: IO[bytes], limit: int, info: zipfile.ZipInfo, name: str, where: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    compressed = max(info.compress_size, 1)
    while size < limit:
        chunk = fh.read(min(_CHUNK, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limits.MAX_ZIP_RATIO_MIN_SIZE and size / compressed > limits.MAX_ZIP_RATIO:
            raise FileTooLargeError(
                where,
                f"zip member {name} inflates more than {limits.MAX_ZIP_RATIO}:1"
                f" ({compressed} -> {size}+ bytes): zip bomb?",
            )
    return b"".join(parts)
