"""Feature extraction: tokens, MinHash sketches and exact hashes on hand-built Functions."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from kinship.disasm.model import BasicBlock, Discovery, Flow, Function, Instruction
from kinship.exceptions import UsageError
from kinship.features.config import FeatureConfig
from kinship.features.extract import extract_features, extract_functions
from kinship.features.minhash import EMPTY_SLOT, estimate_jaccard, get_hasher
from kinship.features.tokens import api_token_name, canonical_constant

Spec = tuple[str, str | None, str | None, int | None]  # (norm, api, string, imm)


def make_function(
    va: int, blocks: list[list[Spec]], *, pic_salt: int = 0, name: str | None = None
) -> Function:
    """A Function whose blocks chain in order (block i -> block i+1, last -> first = a loop)."""
    out: list[BasicBlock] = []
    addr = va
    for spec in blocks:
        ins = []
        for norm, api, string, imm in spec:
            flow = Flow.CALL if norm.startswith("call") else Flow.NEXT
            pic = bytes([len(norm) & 0xFF, pic_salt & 0xFF, 0x90, 0x90])
            ins.append(
                Instruction(
                    addr, 4, norm.split()[0], norm, flow, pic, imm=imm, api=api, string=string
                )
            )
            addr += 4
        out.append(BasicBlock(ins[0].va, ins))
    for k, b in enumerate(out):
        b.successors = [out[(k + 1) % len(out)].va]
    return Function(va, out, Discovery.CALL, name=name)


def netsh_like(va: int, x64: bool) -> Function:
    """Same APIs/strings/constants, different instruction streams per 'architecture'."""
    reg = "reg64" if x64 else "reg32"
    push = (
        [("push imm", None, None, 0x1F90)] if not x64 else [("mov reg32, imm", None, None, 0x1F90)]
    )
    b0: list[Spec] = [
        *push,
        (f"lea {reg}, [mem]", None, 'netsh firewall add portopening TCP %d "%s"', None),
        ("call api", "msvcrt.dll!sprintf", None, None),
        (f"mov {reg}, stk", None, None, None),
        (
            "call api",
            "kernel32.dll!CreateProcessA" if not x64 else "kernel32.dll!CreateProcessW",
            None,
            None,
        ),
        ("test reg32, reg32", None, None, None),
    ]
    b1: list[Spec] = [
        (f"mov {reg}, stk", None, None, None),
        ("push imm" if not x64 else "mov reg32, imm", None, None, 0xFFFFFFFF),
        ("call api", "kernel32.dll!WaitForSingleObject", None, None),
        ("call api", "kernel32.dll!CloseHandle", None, None),
        ("push imm" if not x64 else "mov reg32, imm", None, None, 0x3E8 + 0),
        ("call api", "kernel32.dll!Sleep", None, None),
    ]
    if x64:
        b0.insert(1, ("sub reg64, imm", None, None, 0x28))
        b1.append(("add reg64, imm", None, None, 0x28))
    return make_function(va, [b0, b1], pic_salt=1 if x64 else 0)


NORMS = [
    f"{m} {o}"
    for m in ("mov", "add", "sub", "lea", "cmp", "xor", "and", "or", "shl")
    for o in ("reg32, reg32", "reg32, stk", "reg32, imm", "mem, reg32", "reg32, [mem]")
]


def random_function(rng: random.Random, va: int, n: int = 30) -> Function:
    blocks: list[list[Spec]] = [[], [], []]
    for k in range(n):
        blocks[k * 3 // n].append((rng.choice(NORMS), None, None, None))
    return make_function(va, blocks, pic_salt=rng.randrange(256))


def test_identical_functions_have_equal_features() -> None:
    a = extract_features(netsh_like(0x1000, x64=False))
    b = extract_features(netsh_like(0x5000, x64=False))
    assert a.exact_hash == b.exact_hash
    assert estimate_jaccard(a.code_sig, b.code_sig) == 1.0
    assert estimate_jaccard(a.sem_sig, b.sem_sig) == 1.0
    assert a.code_sig.dtype == np.uint32 and a.code_sig.shape == (64,)
    assert -(2**63) <= a.exact_hash < 2**63


def test_extract_functions_matches_extract_features() -> None:
    rng = random.Random(3)
    fns = [random_function(rng, 0x1000 * i) for i in range(50)] + [netsh_like(0x99000, True)]
    batch = extract_functions(fns)
    assert batch == [extract_features(f) for f in fns]
    assert extract_functions(fns[::-1]) == batch[::-1]  # input order kept


def test_x86_x64_share_sem_not_exact() -> None:
    a = extract_features(netsh_like(0x1000, x64=False))
    b = extract_features(netsh_like(0x1000, x64=True))
    assert a.exact_hash != b.exact_hash
    assert estimate_jaccard(a.sem_sig, b.sem_sig) >= 0.7
    assert a.n_sem_tokens >= 10
    assert a.apis[1] == "kernel32.dll!CreateProcessA"
    assert a.strings == ('netsh firewall add portopening TCP %d "%s"',)


def test_empty_and_generic_functions() -> None:
    fn = make_function(0x1000, [[("mov reg32, imm", None, None, 1), ("ret", None, None, None)]])
    f = extract_features(fn)
    assert f.n_sem_tokens == 0
    assert np.all(f.sem_sig == EMPTY_SLOT)
    assert f.n_code_tokens > 0
    empty = Function(0x2000, [], Discovery.PROLOGUE)
    e = extract_features(empty)
    assert e.n_code_tokens == 0 and e.n_instructions == 0
    assert np.all(e.code_sig == EMPTY_SLOT)
    assert estimate_jaccard(e.code_sig, e.code_sig) == 0.0


def test_exact_hash_is_address_order() -> None:
    fn = netsh_like(0x1000, x64=False)
    shuffled = Function(fn.va, list(reversed(fn.blocks)), fn.discovery)
    pic = b"".join(i.pic_bytes for b in fn.blocks for i in b.instructions)  # fn is in order
    expected = int.from_bytes(hashlib.blake2b(pic, digest_size=8).digest(), "little", signed=True)
    assert extract_features(shuffled).exact_hash == extract_features(fn).exact_hash == expected


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ("kernel32.dll!CreateProcessA", "createprocess"),
        ("KERNEL32.DLL!CreateProcessW", "createprocess"),
        ("ws2_32.dll!WSA", "wsa"),
        ("libc.so.6!printf@GLIBC_2.2.5", "printf"),
        ("ws2_32.dll!#23", "ws2_32.dll!#23"),
        ("user32.dll!LoadLibraryExW", "loadlibraryex"),
    ],
)
def test_api_token_name(api: str, expected: str) -> None:
    assert api_token_name(api) == expected


def test_distinctive_constants() -> None:
    assert canonical_constant(0x1F90) == 0x1F90
    assert canonical_constant(0xDEADBEEF) == 0xDEADBEEF - 2**32  # 32-bit pattern, signed
    assert canonical_constant(0xFFFFFFFFFFFFFE0C) == canonical_constant(0xFFFFFE0C) == -500
    for generic in (0, 7, 255, 256, 4096, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFF0, 2**63):
        assert canonical_constant(generic) is None, hex(generic)


def test_minhash_jaccard_estimate_error() -> None:
    hasher = get_hasher(64, FeatureConfig().seed)
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(200):
        n_a, n_b, n_shared = rng.integers(20, 200, 3)
        n_shared = min(n_shared, n_a, n_b)
        shared = rng.integers(0, 2**64 - 1, n_shared, dtype=np.uint64, endpoint=True)
        a = np.concatenate([shared, rng.integers(0, 2**64 - 1, n_a - n_shared, dtype=np.uint64)])
        b = np.concatenate([shared, rng.integers(0, 2**64 - 1, n_b - n_shared, dtype=np.uint64)])
        true_j = n_shared / (n_a + n_b - n_shared)
        errors.append(abs(estimate_jaccard(hasher.sketch(a), hasher.sketch(b)) - true_j))
    assert float(np.mean(errors)) < 0.05
    assert float(np.quantile(errors, 0.95)) < 0.15
    disjoint = estimate_jaccard(
        hasher.sketch(rng.integers(0, 2**63, 100, dtype=np.uint64)),
        hasher.sketch(rng.integers(0, 2**63, 100, dtype=np.uint64)),
    )
    assert disjoint < 0.1


def test_sketch_segments_matches_single_sketches() -> None:
    hasher = get_hasher(32, 1)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)
    seg = rng.integers(0, 7, 5000).astype(np.int64)
    seg[seg == 3] = 4  # segment 3 stays empty
    sigs, counts = hasher.sketch_segments(tokens, seg, 8)
    for s in range(8):
        mine = tokens[seg == s]
        assert counts[s] == len(np.unique(mine))
        if len(mine):
            assert np.array_equal(sigs[s], hasher.sketch(mine))
        else:
            assert np.all(sigs[s] == EMPTY_SLOT)


def test_config_is_validated() -> None:
    with pytest.raises(UsageError):
        FeatureConfig(num_perm=0)
    with pytest.raises(UsageError):
        FeatureConfig(ngram_sizes=(0,))
    for bad in (-1, 4097):
        with pytest.raises(UsageError, match="max_context_tokens"):
            FeatureConfig(max_context_tokens=bad)
    small = extract_features(netsh_like(0, False), FeatureConfig(num_perm=16, ngram_sizes=(2,)))
    assert small.code_sig.shape == (16,)
