"""The fast (vectorised, batched) paths give exactly what a straightforward implementation gives.

The columnar ingest path (``disassemble(lazy=True)`` + ``features.columnar.extract_columns`` +
strings from the columns, what ``pipeline.analyse(keep=False)`` runs) is checked against the
object path on every fixture binary, Debian's liblua 5.1-5.4 and the 24 bench binaries.

Feature extraction is checked function by function against a plain-Python reference written
here from the documented token and MinHash definitions (features/tokens.py, features/minhash.py);
the disassembly against invariants any correct decoding satisfies. Real binaries: the netsh
fixtures and Debian's liblua5.4.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import iced_x86 as iced
import numpy as np
import pytest

from kinship.binary.load import load_file
from kinship.binary.model import Arch
from kinship.disasm.decoder import _SHARED_TEMPLATES, MNEMONICS
from kinship.disasm.disassemble import disassemble
from kinship.disasm.model import Disassembly, Function
from kinship.features.columnar import extract_columns
from kinship.features.config import FeatureConfig
from kinship.features.context import caller_token
from kinship.features.extract import extract_all, extract_features
from kinship.features.minhash import EMPTY_SLOT, MAX_CHUNK_ROWS, get_hasher
from kinship.features.model import FunctionFeatures
from kinship.features.tokens import (
    scan_batch,
    scan_function,
    sem_raw_tokens,
    sem_specific_tokens,
    shape_tokens,
)
from kinship.pipeline import SampleInput, analyse
from kinship.strings.extract import extract_strings

MASK = (1 << 64) - 1
FIXTURES = ("netsh_x86.exe", "netsh_x64.exe", "netsh_elf32", "netsh_elf64", "other_elf64")


def _mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _hash_text(text: str) -> int:
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _fold(norm: str) -> str:
    for old, new in (("reg64", "reg"), ("reg32", "reg"), ("qword", "mem"), ("dword", "mem")):
        norm = norm.replace(old, new)
    return norm


_SALT = (0, 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B)


def reference_code_tokens(fn: Function, cfg: FeatureConfig) -> set[int]:
    """Code tokens of one function, block by block, in plain integers."""
    toks: set[int] = set()
    for b in fn.blocks:
        ins = b.instructions
        if not ins:
            continue
        ids = [
            _hash_text("n:" + (_fold(i.norm) if cfg.fold_register_width else i.norm)) for i in ins
        ]
        for size in cfg.ngram_sizes:
            for k in range(len(ids) - size + 1):
                gram = ids[k]
                for j in range(1, size):
                    gram = _mix64((gram * 0x9E3779B97F4A7C15 + ids[k + j]) & MASK)
                toks.add(_mix64(gram ^ _SALT[size]))
        if cfg.block_mnemonic_tokens:
            total = 0
            for pos, i in enumerate(ins):
                mid = _hash_text("m:" + i.mnemonic)
                total += _mix64((mid + pos * 0xD6E8FEB86659FD93) & MASK)
            toks.add(_mix64((total & MASK) ^ 0x5BE0CD19137E2179))
    return toks


def reference_sketch(tokens: set[int], cfg: FeatureConfig) -> tuple[np.ndarray, int]:
    """MinHash of a token set: tokens deduplicated on their top 40 bits, of which the low 32
    are hashed by ``(a*x + b mod 2**64) >> 32``."""
    h = get_hasher(cfg.num_perm, cfg.seed)
    keys = sorted({t >> 24 for t in tokens})
    if not keys:
        return np.full(cfg.num_perm, EMPTY_SLOT, dtype=np.uint32), 0
    sig = [
        min((((a * (k & 0xFFFFFFFF)) + b) & MASK) >> 32 for k in keys)
        for a, b in zip(h.a.tolist(), h.b.tolist(), strict=True)
    ]
    return np.array(sig, dtype=np.uint32), len(keys)


def reference_sem_tokens(fns: list[Function], cfg: FeatureConfig) -> list[set[int]]:
    """Raw sem tokens with call-graph context (features/context.py), one set per function."""
    scans = [scan_function(fn) for fn in fns]
    own = [set(sem_specific_tokens(s.apis, s.strings, s.imms, cfg)) for s in scans]
    index = {fn.va: k for k, fn in enumerate(fns)}
    callees = [{index[t] for t in fn.calls if t in index} - {k} for k, fn in enumerate(fns)]
    out: list[set[int]] = []
    for k, fn in enumerate(fns):
        ctx: set[int] = set()
        for j in callees[k]:
            ctx |= own[j]
        for i in range(len(fns)):
            if k in callees[i]:
                ctx |= {caller_token(t) for t in own[i]}
        ctx -= own[k]
        ranked = sorted(ctx, key=lambda t: (t * 0x9E3779B97F4A7C15) & MASK)
        ctx = set(ranked[: cfg.max_context_tokens])
        full = own[k] | ctx
        if full:
            full |= set(shape_tokens(fn, scans[k].n_calls))
        out.append(full)
    return out


def reference_exact_hash(fn: Function) -> int:
    data = b"".join(
        i.pic_bytes for b in sorted(fn.blocks, key=lambda b: b.va) for i in b.instructions
    )
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


@pytest.fixture(scope="module")
def disassemblies(bins: dict[str, Path], lua_libs: dict[str, Path]) -> dict[str, Disassembly]:
    paths = {name: bins[name] for name in FIXTURES}
    paths["lua5.4"] = lua_libs["5.4"]
    return {name: disassemble(load_file(p)) for name, p in paths.items()}


def test_extract_all_equals_reference(disassemblies: dict[str, Disassembly]) -> None:
    cfg = FeatureConfig()
    for name, dis in disassemblies.items():
        feats = extract_all(dis.functions)
        assert len(feats) == len(dis.functions)
        sems = reference_sem_tokens(dis.functions, cfg)
        for fn, f, raw in zip(dis.functions, feats, sems, strict=True):
            where = f"{name} {fn.va:#x}"
            code_sig, n_code = reference_sketch(reference_code_tokens(fn, cfg), cfg)
            sem = {_mix64(t) for t in raw}
            sem_sig, n_sem = reference_sketch(sem, cfg)
            assert f.va == fn.va and f.name == fn.name, where
            assert np.array_equal(f.code_sig, code_sig), where
            assert np.array_equal(f.sem_sig, sem_sig), where
            assert (f.n_code_tokens, f.n_sem_tokens) == (n_code, n_sem), where
            assert f.exact_hash == reference_exact_hash(fn), where
            assert f.apis == tuple(fn.apis) and f.strings == tuple(fn.strings), where
            assert (f.n_instructions, f.n_blocks, f.n_edges, f.size) == (
                fn.n_instructions,
                fn.n_blocks,
                fn.n_edges,
                fn.size,
            ), where


def test_batch_scan_equals_per_function_scan(disassemblies: dict[str, Disassembly]) -> None:
    for dis in disassemblies.values():
        batch = scan_batch(dis.functions)
        assert batch.functions == [scan_function(fn) for fn in dis.functions]
        assert batch.norms == [i.norm for fn in dis.functions for i in fn.instructions()]


def test_extract_features_equals_extract_all(disassemblies: dict[str, Disassembly]) -> None:
    """One function alone has no call-graph context: its own sem tokens, as sem_raw_tokens."""
    cfg = FeatureConfig()
    for dis in disassemblies.values():
        fns = dis.functions[:: max(1, len(dis.functions) // 40)]
        alone = [extract_features(fn) for fn in fns]
        assert alone == [extract_all([fn])[0] for fn in fns]
        for fn, f in zip(fns, alone, strict=True):
            sem_sig, n_sem = reference_sketch({_mix64(t) for t in sem_raw_tokens(fn, cfg)}, cfg)
            assert np.array_equal(f.sem_sig, sem_sig) and f.n_sem_tokens == n_sem


def test_call_graph_context_reaches_callers_and_callees(
    disassemblies: dict[str, Disassembly],
) -> None:
    """In liblua, a function whose callee refers to a string gets that string's token, and the
    callee gets its callers' tokens re-tagged; without context neither happens."""
    fns = disassemblies["lua5.4"].functions
    with_ctx = extract_all(fns)
    no_ctx = extract_all(fns, FeatureConfig(sem_callee_context=False, sem_caller_context=False))
    grew = sum(a.n_sem_tokens > b.n_sem_tokens for a, b in zip(with_ctx, no_ctx, strict=True))
    assert grew > len(fns) // 4
    assert all(a.n_sem_tokens >= b.n_sem_tokens for a, b in zip(with_ctx, no_ctx, strict=True))


def test_identical_token_sets_give_identical_sketches() -> None:
    h = get_hasher(64, 7)
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 2**63, size=3 * MAX_CHUNK_ROWS + 17, dtype=np.uint64)
    # one set spread over several chunks, and the same set shuffled with duplicates
    seg = np.zeros(len(tokens), dtype=np.int64)
    twice = np.concatenate([tokens, tokens[::-1]])
    sigs, counts = h.sketch_segments(
        np.concatenate([tokens, twice]), np.concatenate([seg, seg.repeat(2) + 1]), 2
    )
    assert np.array_equal(sigs[0], sigs[1]) and counts[0] == counts[1]
    ref, n = reference_sketch(set(tokens.tolist()), FeatureConfig(num_perm=64, seed=7))
    assert np.array_equal(sigs[0], ref) and counts[0] == n


def test_disassembly_invariants(
    disassemblies: dict[str, Disassembly], bins: dict[str, Path]
) -> None:
    """What the decoder's caches must never change: each instruction is what iced decodes at
    its address, blocks are contiguous, norms start with the mnemonic, pic_bytes keep the size."""
    for name, dis in disassemblies.items():
        binary = load_file(bins[name]) if name in bins else None
        bitness = 64 if binary is not None and binary.arch is Arch.X64 else 32
        starts = {b.va for fn in dis.functions for b in fn.blocks}
        for fn in dis.functions:
            for b in fn.blocks:
                assert set(b.successors) <= starts | {fn.va}
                for i, j in itertools.pairwise(b.instructions):
                    assert i.va + i.size == j.va
                for i in b.instructions:
                    assert len(i.pic_bytes) == i.size
                    assert i.norm.partition(" ")[0] == i.mnemonic
                    if binary is not None:
                        raw = binary.read(i.va, i.size)
                        ins = iced.Decoder(bitness, raw, ip=i.va).decode()
                        assert ins.len == i.size and MNEMONICS[ins.mnemonic] == i.mnemonic


def _digest(dis: Disassembly) -> list[tuple[object, ...]]:
    return [
        (f.va, f.discovery, f.name, tuple(f.calls), b.va, tuple(b.successors), i.va, i.size,
         i.norm, i.flow, i.pic_bytes, i.target, i.data_ref, i.imm, i.api, i.string)
        for f in dis.functions
        for b in f.blocks
        for i in b.instructions
    ]


def test_shared_templates_do_not_leak_between_binaries(bins: dict[str, Path]) -> None:
    """Templates shared across decoders (context-free encodings) give the same disassembly as
    a cold cache, whichever binaries warmed it."""
    order = ("netsh_elf32", "netsh_x86.exe", "other_x86.exe", "netsh_x64.exe", "netsh_elf64")
    binaries = {name: load_file(bins[name]) for name in order}
    cold = {}
    for name, binary in binaries.items():
        _SHARED_TEMPLATES.clear()
        cold[name] = _digest(disassemble(binary))
    _SHARED_TEMPLATES.clear()
    for name in (*order, *reversed(order)):
        assert _digest(disassemble(binaries[name])) == cold[name], name


# ---- the columnar fast path (pipeline.analyse(keep=False)) == the object path ---------------


def _feature_fields(f: FunctionFeatures) -> tuple[object, ...]:
    return (f.va, f.name, f.n_instructions, f.n_blocks, f.n_edges, f.size, f.exact_hash,
            f.code_sig.tobytes(), f.sem_sig.tobytes(), f.n_code_tokens, f.n_sem_tokens,
            f.apis, f.strings, f.discovery)


def _assert_columnar_equals_objects(name: str, path: Path) -> None:
    binary = load_file(path)
    eager = disassemble(binary)
    lazy = disassemble(binary, lazy=True)
    assert lazy.functions == [] and lazy.columns is not None, name
    assert lazy.n_instructions == eager.n_instructions, name
    assert lazy.warnings == eager.warnings, name
    fast = extract_columns(lazy.columns)
    slow = extract_all(eager.functions)
    assert [_feature_fields(f) for f in fast] == [_feature_fields(f) for f in slow], name
    assert extract_strings(binary, lazy).strings == extract_strings(binary, eager).strings, name
    assert _digest(Disassembly(lazy.materialise(), 0, 0.0)) == _digest(eager), name


def test_columnar_path_equals_object_path_on_fixtures(
    bins: dict[str, Path], lua_libs: dict[str, Path]
) -> None:
    paths = {**bins, **{f"lua{v}": p for v, p in lua_libs.items()}}
    for name, path in sorted(paths.items()):
        _assert_columnar_equals_objects(name, path)


@pytest.mark.slow
def test_columnar_path_equals_object_path_on_bench_corpus() -> None:
    """The 24 binaries of ``python -m bench disasm`` (skipped when the corpus is not fetched)."""
    gt = pytest.importorskip("bench.gt")
    dev = gt.DEFAULT_CACHE / "dev"
    try:
        entries = gt.select_subset(gt.load_manifest(dev), gt.DEFAULT_SUBSET)
    except (OSError, ValueError) as exc:
        pytest.skip(f"bench corpus not available: {exc}")
    paths = [dev / e.path for e in entries if (dev / e.path).is_file()]
    if not paths:
        pytest.skip("bench corpus not available")
    for path in paths:
        _assert_columnar_equals_objects(path.name, path)


def test_analyse_fast_path_equals_keep_path(bins: dict[str, Path]) -> None:
    for name in ("netsh_x86.exe", "netsh_x64.exe", "netsh_elf64"):
        item = SampleInput(name, path=bins[name])
        fast = analyse(item)
        full = analyse(item, keep=True)
        assert fast.disassembly is None and full.disassembly is not None
        assert [_feature_fields(f) for f in fast.features] == [
            _feature_fields(f) for f in full.features
        ], name
        assert fast.strings == full.strings and fast.record == full.record, name
