"""Limits that keep the loaders bounded on hostile input.

Every sample is hostile: a header may claim 2**32 sections, a zip may inflate to terabytes. Each
limit below names what it bounds and why the default is what it is. Loaders read these names at
call time (``limits.MAX_FILE_SIZE``), so tests and callers may monkeypatch them.
"""

from __future__ import annotations

# Largest sample read into memory, in bytes. Real malware is almost always < 50 MiB; large
# installers and memory dumps of a whole process can reach a few hundred MiB. 256 MiB keeps the
# loader's peak memory (file bytes + a mapped copy for dumps) well under 1 GiB.
MAX_FILE_SIZE = 256 * 1024 * 1024

# PE sections / ELF allocated sections or segments kept. The PE loader (Windows) caps sections at
# 96; ELF linkers emit < 100. Anything above is a malformed or hostile header.
MAX_SECTIONS = 256

# Imported functions kept per sample. Large GUI programs import ~5,000 functions; beyond 20,000
# the import table is almost certainly garbage (crafted thunk arrays without terminators).
MAX_IMPORTS = 20_000

# Exported functions kept per sample. Big system DLLs (shell32, ntdll) export < 5,000; runtime
# libraries like libstdc++ ~6,000. 50,000 leaves room and still bounds time and memory.
MAX_EXPORTS = 50_000

# Function symbols kept per sample (ELF .symtab + .dynsym, PE COFF). libstdc++ has ~30,000; big
# unstripped programs may reach a few 100,000 — the cap bounds memory, not realism.
MAX_SYMBOLS = 500_000

# Function starts taken from .pdata / .eh_frame. One per function; 500,000 covers even very
# large binaries while bounding a crafted table.
MAX_FUNCTION_HINTS = 500_000

# Warnings kept per sample (pefile may produce thousands for a corrupt file).
MAX_WARNINGS = 50

# Bytes of a PLT section decoded to resolve stubs (16 bytes a stub -> 65,536 stubs).
MAX_PLT_BYTES = 1024 * 1024

# Entries (files and folders) in one zip archive. Sample bundles hold a handful to a few
# thousand files; checked on the end record before the central directory is parsed.
MAX_ZIP_MEMBERS = 10_000

# Total uncompressed bytes one zip archive may declare (zip-bomb guard): 4 GiB. Checked on the
# central directory before reading; each member is read only up to its declared size.
MAX_ZIP_TOTAL = 4 * 1024 * 1024 * 1024

# Largest compression ratio accepted for a member once it is bigger than MAX_ZIP_RATIO_MIN_SIZE.
# Executables compress 2-10x; memory dumps full of zero pages may reach ~100x; deflate tops out
# at ~1032x, which is what zip bombs use.
MAX_ZIP_RATIO = 200

# Members smaller than this (bytes, uncompressed) are exempt from the ratio check: small files of
# zeros compress extremely well but cannot hurt.
MAX_ZIP_RATIO_MIN_SIZE = 1024 * 1024

# Bytes of a zip's central directory (from its end record, checked before it is parsed). Each
# entry takes 46 bytes plus its name and extra fields: 10,000 members with long names fit in
# 4 MiB, and parsing 4 MiB costs at most ~90,000 small objects (a few tens of MiB).
MAX_ZIP_DIRECTORY = 4 * 1024 * 1024
