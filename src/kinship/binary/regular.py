"""Opening a sample file only when it is a regular file.

A FIFO, a socket or a device (``/dev/zero``) given as a sample, or put in a sample's place
after it was listed, would block ``open()`` or stream forever. Files are opened with
O_NONBLOCK and refused unless ``fstat`` on the open descriptor says "regular file"; the one
place every reader of sample files (loader, zip reader, hashing, the kept copies) goes through.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from kinship.exceptions import InputError

_NONBLOCKING_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for error messages ("FIFO", "character device" ...)."""
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO, a named pipe"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return kind
    return "special file"


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for binary reading when it is a regular file; :class:`InputError`
    ("no such file", "cannot open: ...", "not a regular file (FIFO, ...): refused")."""
    where = str(path)
    try:
        fd = os.open(path, _NONBLOCKING_READ)
    except FileNotFoundError as e:
        raise InputError(where, "no such file") from e
    except OSError as e:
        raise InputError(where, f"cannot open: {e.strerror or e}") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(where, f"not a regular file ({file_kind(mode)}): refused")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
