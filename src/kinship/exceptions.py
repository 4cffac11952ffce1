"""kinship's exception hierarchy.

Every error a user can trigger with a file or an argument is a :class:`KinshipError`; the CLI maps
each subclass to a stable exit code (see :data:`EXIT_CODES`). Library code raises these with
``raise ... from e`` so the original cause stays in the traceback.

    KinshipError                      exit 1   generic failure
    ├── InputError                    exit 3   a sample could not be read or parsed
    │   ├── FileTooLargeError         exit 3   over MAX_FILE_SIZE
    │   ├── UnsupportedFormatError    exit 4   not PE/ELF/dump/zip (e.g. a text file)
    │   └── CorruptFileError          exit 3   truncated or malformed headers
    ├── StoreError                    exit 5   database problems (schema, locking, integrity)
    │   └── NotFoundError             exit 6   a sample/family asked for is not in the store
    └── UsageError                    exit 2   bad combination of arguments
"""

from __future__ import annotations


class KinshipError(Exception):
    """Base class of every error kinship raises on purpose."""

    exit_code = 1


class UsageError(KinshipError):
    """The arguments do not make sense together."""

    exit_code = 2


class InputError(KinshipError):
    """A sample could not be read or parsed. ``path`` names the file, ``reason`` says why."""

    exit_code = 3

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileTooLargeError(InputError):
    """The file is larger than the configured limit."""


class CorruptFileError(InputError):
    """Headers are truncated or inconsistent."""


class UnsupportedFormatError(InputError):
    """The file is not an executable kinship understands."""

    exit_code = 4


class StoreError(KinshipError):
    """The store could not be opened, read or written."""

    exit_code = 5


class NotFoundError(StoreError):
    """A sample, family or actor that was asked for is not in the store."""

    exit_code = 6


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "error": KinshipError.exit_code,
    "usage": UsageError.exit_code,
    "bad_input": InputError.exit_code,
    "unsupported_format": UnsupportedFormatError.exit_code,
    "store": StoreError.exit_code,
    "not_found": NotFoundError.exit_code,
    "partial_batch": 7,  # a batch finished but some files were skipped
}
