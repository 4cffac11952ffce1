"""Token sets behind the two MinHash sketches of a function.

Code tokens (architecture dependent, but register width folded)::

    block:   push reg | mov reg, stk | call api | test reg, reg
    1-grams: each normalised instruction
    2-grams: (push reg, mov reg stk), (mov reg stk, call api), ...     never across blocks
    3-grams: ...
    block:   the block's mnemonic sequence "push mov call test" (one token)

Sem tokens (architecture independent): API names (``kernel32.dll!CreateProcessA`` ->
``createprocess``), API bigrams in code order, referenced strings, distinctive constants, the
same of its direct callees and (re-tagged) callers (:mod:`kinship.features.context`) and, when
at least one of those exists, :data:`N_SHAPE_TOKENS` CFG-shape buckets.

Every token ends up as a uint64 hash. Per-instruction ids come from per-template tables
(:mod:`kinship.features.extract`); n-gram combination and hashing are vectorised over a whole
batch of functions. Tokens come back flat, with the index of the function (the *segment*) of
each token.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.features.config import FeatureConfig
from kinship.features.minhash import I64, U64, mix64

# Distinct normalised instructions / API names remembered by the interning caches. The
# vocabulary of normalised instructions is a few thousand; the bound only guards memory against
# hostile inputs (each entry ~150 bytes).
MAX_CACHE_ENTRIES = 1 << 18
# Strings longer than this are hashed on their first MAX_STRING_TOKEN_CHARS characters only
# (bounds hashing cost; the prefix is as distinctive).
MAX_STRING_TOKEN_CHARS = 256
# Distinct constants kept per function (a table-initialising function can have thousands;
# they would drown the APIs and strings).
MAX_CONSTANTS_PER_FUNCTION = 64
# Number of CFG-shape tokens added to a non-empty sem token set (blocks, edges, loops,
# max out-degree, calls).
N_SHAPE_TOKENS = 5

_MASK64 = (1 << 64) - 1
# Random 64-bit tags that keep the token kinds apart before the final mix.
_TAG_API = 0x3C6EF372FE94F82B
_TAG_BIGRAM = 0xA54FF53A5F1D36F1
_TAG_STRING = 0x510E527FADE682D1
_TAG_CONST = 0x9B05688C2B3E6C1F
_TAG_SHAPE = 0x1F83D9ABFB41BD6B
_NGRAM_SALT = [
    np.uint64(s)
    for s in (
        0,
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
    )
]
_MNEMONIC_SALT = np.uint64(0x5BE0CD19137E2179)
_GRAM_MULT = np.uint64(0x9E3779B97F4A7C15)
_POS_MULT = np.uint64(0xD6E8FEB86659FD93)

_FOLDS = (("reg64", "reg"), ("reg32", "reg"), ("qword", "mem"), ("dword", "mem"))


@dataclass(frozen=True, slots=True, eq=False)
class TokenBatch:
    """Flat token hashes of a batch of functions; ``segment[i]`` is the function of token i."""

    tokens: U64
    segment: I64
    n_segments: int


def _hash_text(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


class _Interner:
    """str -> uint64 id cache (blake2b of a transformed string)."""

    def __init__(self, prefix: str, fold: bool, first_word: bool = False) -> None:
        self._prefix = prefix
        self._fold = fold
        self._first_word = first_word
        self._ids: dict[str, int] = {}

    def transform(self, text: str) -> str:
        if self._first_word:
            text = text.partition(" ")[0]
        if self._fold:
            for old, new in _FOLDS:
                text = text.replace(old, new)
        return text

    def ids(self, texts: list[str]) -> list[int]:
        cache = self._ids
        try:
            return list(map(cache.__getitem__, texts))
        except KeyError:
            if len(cache) > MAX_CACHE_ENTRIES:
                cache.clear()
            for t in set(texts):
                if t not in cache:
                    cache[t] = _hash_text(self._prefix + self.transform(t))
            return list(map(cache.__getitem__, texts))


_NORMS = {True: _Interner("n:", fold=True), False: _Interner("n:", fold=False)}
# A norm always starts with its instruction's mnemonic (``"mov reg, stk"``, ``"call api"``;
# mnemonics hold no space), so the mnemonic id is looked up by norm: no second column to read.
_MNEMONICS_BY_NORM = _Interner("m:", fold=False, first_word=True)
_API_IDS: dict[str, int] = {}


def api_token_name(api: str) -> str:
    """``kernel32.dll!CreateProcessA`` -> ``createprocess``; ``libc.so.6!printf@GLIBC_2.2.5``
    -> ``printf``. Ordinals keep their dll (``ws2_32.dll!#23``): the number means nothing alone.
    """
    name = api.rpartition("!")[2]
    name = name.split("@", 1)[0] if not name.startswith("@") else name
    if name.startswith("#") or not name:
        return api.lower()
    if len(name) > 2 and name[-1] in "AW" and (name[-2].islower() or name[-2].isdigit()):
        name = name[:-1]
    return name.lower()


def _api_id(api: str) -> int:
    v = _API_IDS.get(api)
    if v is None:
        if len(_API_IDS) > MAX_CACHE_ENTRIES:
            _API_IDS.clear()
        v = _hash_text("a:" + api_token_name(api))
        _API_IDS[api] = v
    return v


def canonical_constant(value: int) -> int | None:
    """The signed value of a *distinctive* immediate, or None for a generic one.

    Generic: |v| <= 255, powers of two, masks (2**k - 1) and their negations. 32- and 64-bit
    two's-complement encodings of one negative value give the same result, so x86 and x64
    builds share constant tokens.
    """
    v = value
    if v >= 1 << 63:
        v -= 1 << 64
    elif (1 << 31) <= v < (1 << 32):
        v -= 1 << 32
    a = -v if v < 0 else v
    if a <= 255 or a & (a - 1) == 0 or a & (a + 1) == 0:
        return None
    return v


def _bucket(n: int) -> int:
    """0, 1, 2-3, 4-7, ... (bit length), capped at 16."""
    return min(n.bit_length(), 16)


def norm_ids(norms: list[str], config: FeatureConfig) -> list[int]:
    """Token ids of normalised instructions (the code-token hash of each)."""
    return _NORMS[config.fold_register_width].ids(norms)


def mnemonic_ids(norms: list[str]) -> list[int]:
    """Ids of the mnemonics of normalised instructions (for the block mnemonic tokens)."""
    return _MNEMONICS_BY_NORM.ids(norms)


def code_tokens_from_ids(
    ids: U64, mids: U64, lens: I64, block_fn: I64, n: int, config: FeatureConfig
) -> TokenBatch:
    """Code tokens from per-instruction norm ids ``ids`` and mnemonic ids ``mids`` (functions
    in order, blocks in order), non-empty block lengths ``lens`` and block function indexes
    ``block_fn``; ``n`` functions."""
    if len(ids) == 0:
        return TokenBatch(np.zeros(0, np.uint64), np.zeros(0, np.int64), n)
    blk = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    fseg = np.repeat(block_fn, lens)
    parts: list[U64] = []
    segs: list[I64] = []
    gram = ids
    for size in range(1, max(config.ngram_sizes) + 1):
        if size > 1:
            gram = mix64(gram[:-1] * _GRAM_MULT + ids[size - 1 :])
        if size in config.ngram_sizes:
            if size == 1:
                parts.append(mix64(gram ^ _NGRAM_SALT[size]))
                segs.append(fseg)
                continue
            valid = blk[: len(gram)] == blk[size - 1 :]
            parts.append(mix64(gram[valid] ^ _NGRAM_SALT[size]))
            segs.append(fseg[: len(gram)][valid])
    if config.block_mnemonic_tokens:
        starts = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        pos = (np.arange(len(mids), dtype=np.int64) - np.repeat(starts, lens)).astype(np.uint64)
        per = mix64(mids + pos * _POS_MULT)
        parts.append(mix64(np.add.reduceat(per, starts) ^ _MNEMONIC_SALT))
        segs.append(block_fn)
    return TokenBatch(np.concatenate(parts), np.concatenate(segs), n)


def sem_specific_tokens(
    apis: Sequence[str], strings: Sequence[str], imms: Sequence[int], config: FeatureConfig
) -> list[int]:
    """The raw API, string and constant sem tokens (no shape tokens) of one function, or []
    when fewer than ``config.sem_min_specific_tokens``."""
    toks: set[int] = set()
    if apis and (config.sem_apis or config.sem_api_bigrams):
        api_ids = [_api_id(a) for a in apis]
        if config.sem_apis:
            toks.update(x ^ _TAG_API for x in api_ids)
        if config.sem_api_bigrams:
            toks.update(
                ((p * 0x9E3779B97F4A7C15 + q) & _MASK64) ^ _TAG_BIGRAM
                for p, q in itertools.pairwise(api_ids)
            )
    if config.sem_strings:
        toks.update(
            _hash_text("s:" + s[:MAX_STRING_TOKEN_CHARS]) ^ _TAG_STRING
            for s in strings
            if len(s) >= config.min_string_chars
        )
    if config.sem_constants and imms:
        consts: set[int] = set()
        for v in imms:
            c = canonical_constant(v)
            if c is not None:
                consts.add(c)
                if len(consts) >= MAX_CONSTANTS_PER_FUNCTION:
                    break
        toks.update((c & _MASK64) ^ _TAG_CONST for c in consts)
    if not toks or len(toks) < config.sem_min_specific_tokens:
        return []
    return list(toks)


def shape_values(
    n_blocks: int, n_edges: int, n_loops: int, max_out: int, n_calls: int
) -> list[int]:
    """Raw (unmixed) CFG-shape tokens of a function from its counts: N_SHAPE_TOKENS of them.
    A loop is a back edge in address order (successor VA <= block VA)."""
    values = (
        _bucket(n_blocks),
        _bucket(n_edges),
        min(n_loops, 4),
        min(max_out, 3),
        _bucket(n_calls),
    )
    return [_TAG_SHAPE ^ ((kind << 8) | v) for kind, v in enumerate(values)]
