"""The frozen held-out split (issue #9): dev-corpus families nobody looked at while tuning.

Why a new one. The first held-out families (:data:`bench.matching.HOLDOUT_FAMILIES`: expat,
jansson, py-simplejson, wine-winhttp, wine-secur32, chosen 2026-11-26) were looked at while
tuning: the library corpus (py-markupsafe kept because it removed py-simplejson's false
attribution), ``min_pair_score`` 0.5 -> 0.7 and the old default threshold 0.10 (chosen after
seeing held-out scores), ``confidence_score_slope`` 40 (held-out unknowns reached 0.086).
Their figures are *tuned-on* figures (docs/BENCHMARKS.md labels them so);
:data:`TUNED_ON_HOLDOUT` keeps them under that name.

Exposure audit (2026-12-08, before any run with this split; every family of the 39 of the dev
corpus has been used somewhere: none is untouched). Every full ``bench attribution`` run so far
indexed each family outside the special lists as a *known* family, and its leave-one-family-out
samples entered the full run's calibration set, pooled with all the others. That is the least
exposure a family of this corpus has had. Families with more exposure
(:data:`EXPOSURE`, one reason each) are out of the draw:

* a role in ``bench/attribution.py``: the old held-out list, ``TUNING_UNKNOWN``,
  ``LIBRARY_FAMILIES``, ``QUICK_FAMILIES`` (the quick runs every tuning round looked at);
* named in a tuning decision (docs/ARCHITECTURE.md rounds 2-3, docs/BENCHMARKS.md):
  py-brotli and py-pycryptodome (tried as library corpus), wine-advapi32 and wine-wininet
  (their left-out scores rejected the quick threshold in round 3);
* the Lua lineage: the matching tuning of rounds 1-4 ran on Lua 5.3/5.4 builds, and
  lua5.1/lua5.2 are versions of the same code base (``bench.attribution.lineage``);
* ``bench/yara_bench.py`` ``FAMILIES`` (the YARA generator was changed for that benchmark).

Draw rule (recorded before the draw and before any result): candidates = dev families absent
from :data:`EXPOSURE`, sorted; ``random.Random(DRAW_SEED).sample(candidates, k)`` with
``k = min(DRAW_MAX, len(candidates))``; the result, sorted, is :data:`FRESH_HOLDOUT_FAMILIES`.
The audit leaves two candidates (wine-rsaenh, wine-ws2_32), so the draw takes both: the seed
decides nothing here. It is a small held-out set (12 binaries: wine 5.0 ELF, 8.0 and 10.0 MinGW
PE, x86 and x64 each): false attribution on it moves in steps of 1/12.

Freeze. The list is a constant checked by ``tests/test_bench_heldout.py`` (recomputed from
:data:`EXPOSURE` and the seed, and by digest). Tuning code paths call :func:`guard_tuning`
with the families they are handed (``bench.attribution.calibrate_threshold``, the known-family
experiments and the leave-one-family-out set that produce tuning figures, the threshold curve)
and raise :class:`HeldOutLeak` on a fresh held-out family. Only the reporting rows of
``bench.attribution.evaluate`` (``unknown["fresh_holdout"]`` and the ``fresh-*``
experiments) read these families; nothing under ``src/`` names them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable

# The 39 families of ../shared/corpus/dev-set.tar.xz (dev/manifest.jsonl).
DEV_FAMILIES = (
    "brotli", "bzip2", "cjson", "expat", "jansson", "lua5.1", "lua5.2", "lua5.3", "lua5.4",
    "mbedcrypto", "pcre2", "py-brotli", "py-markupsafe", "py-msgpack", "py-pycryptodome",
    "py-simplejson", "sodium", "tomcrypt", "wine-advapi32", "wine-bcrypt", "wine-cabinet",
    "wine-dnsapi", "wine-iphlpapi", "wine-psapi", "wine-reg", "wine-regsvr32", "wine-rsaenh",
    "wine-rundll32", "wine-secur32", "wine-shlwapi", "wine-taskkill", "wine-version",
    "wine-winhttp", "wine-wininet", "wine-wintrust", "wine-ws2_32", "xz", "yaml", "zlib",
)

# The old held-out families (bench.matching.HOLDOUT_FAMILIES): looked at while tuning.
TUNED_ON_HOLDOUT = ("expat", "jansson", "py-simplejson", "wine-winhttp", "wine-secur32")

_OLD_HOLDOUT = "old held-out list: looked at while tuning (round 2)"
_TUNING_UNKNOWN = "TUNING_UNKNOWN (calibration)"
_LIBRARY = "LIBRARY_FAMILIES (library corpus)"
_QUICK = "QUICK_FAMILIES (the quick run of every tuning round)"
_YARA = "bench/yara_bench.py FAMILIES"
EXPOSURE: dict[str, str] = {
    **dict.fromkeys(TUNED_ON_HOLDOUT, _OLD_HOLDOUT),
    **dict.fromkeys(("yaml", "wine-reg", "tomcrypt", "wine-shlwapi", "wine-wintrust",
                     "sodium"), _TUNING_UNKNOWN),
    **dict.fromkeys(("py-markupsafe", "wine-rundll32", "wine-taskkill", "wine-regsvr32",
                     "wine-psapi", "wine-dnsapi", "wine-iphlpapi", "mbedcrypto"), _LIBRARY),
    **dict.fromkeys(("lua5.3", "lua5.4", "zlib", "bzip2", "xz", "brotli", "cjson",
                     "wine-bcrypt", "wine-cabinet", "wine-version", "py-msgpack", "pcre2"),
                    _QUICK),
    "lua5.1": "Lua lineage (matching tuning on Lua 5.3/5.4 builds)",
    "lua5.2": "Lua lineage (matching tuning on Lua 5.3/5.4 builds)",
    "py-brotli": "tried as library corpus (round 2)",
    "py-pycryptodome": "tried as library corpus (round 2)",
    "wine-advapi32": "its left-out scores rejected the quick threshold (round 3)",
    "wine-wininet": "its left-out scores rejected the quick threshold (round 3)",
}
for _f in ("jansson", "py-simplejson", "wine-psapi", "wine-rundll32", "wine-taskkill",
           "py-markupsafe", "cjson", "zlib", "yaml", "xz", "bzip2", "wine-bcrypt",
           "wine-version"):
    EXPOSURE.setdefault(_f, _YARA)

DRAW_SEED = 20261208  # recorded with the rule, before the draw
DRAW_MAX = 4
DRAW_DATE = "2026-12-08"

# The draw's result, frozen (tests/test_bench_heldout.py recomputes it and checks the digest).
FRESH_HOLDOUT_FAMILIES = ("wine-rsaenh", "wine-ws2_32")
FRESH_HOLDOUT_SHA256 = "3b657dad6d8a07e402d6f54736b7fa880e8209738c3e9c15103a47bfeca44e18"


class HeldOutLeak(RuntimeError):
    """A tuning or calibration code path was handed a sample of a frozen held-out family."""


def draw(families: Iterable[str] = DEV_FAMILIES, exposure: Iterable[str] = EXPOSURE,
         seed: int = DRAW_SEED, k_max: int = DRAW_MAX) -> tuple[str, ...]:
    """The documented draw (module docstring): least-exposed families, seeded sample."""
    exposed = set(exposure)
    candidates = sorted(set(families) - exposed)
    k = min(k_max, len(candidates))
    return tuple(sorted(random.Random(seed).sample(candidates, k)))


def digest(families: Iterable[str]) -> str:
    return hashlib.sha256(",".join(sorted(families)).encode()).hexdigest()


def is_fresh_holdout(family: str | None) -> bool:
    return family in FRESH_HOLDOUT_FAMILIES


def guard_tuning(families: Iterable[str | None], where: str) -> None:
    """Raise :class:`HeldOutLeak` when a tuning/calibration code path (``where``) is handed a
    sample (or a score keyed by family) of a frozen held-out family."""
    leaked = sorted({f for f in families if f is not None and f in FRESH_HOLDOUT_FAMILIES})
    if leaked:
        raise HeldOutLeak(f"{where}: frozen held-out families must not reach tuning code: "
                          f"{', '.join(leaked)} (bench/heldout.py)")
