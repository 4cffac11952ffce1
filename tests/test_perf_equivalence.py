"""The fast (vectorised, batched) paths give exactly what a straightforward implementation gives.

The one featuriser (``features.extract.extract_columns`` on the decoder's columns) is checked
function by function against a plain-Python reference written here from the documented token
and MinHash definitions (features/tokens.py, features/minhash.py), reading the Instruction
objects of ``CodeColumns.function_objects()``; the features of every fixture binary, Debian's
liblua 5.1-5.4 and the bench binaries against digests recorded before the object featuriser
was removed; the disassembly against invariants any correct decoding satisfies.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import iced_x86 as iced
import numpy as np
import pytest

from kinship.binary.load import load_file
from kinship.binary.model import Arch
from kinship.disasm.columns import CodeColumns
from kinship.disasm.decoder import _SHARED_TEMPLATES, MNEMONICS
from kinship.disasm.disassemble import disassemble
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.model import Flow, Function
from kinship.features.config import FeatureConfig
from kinship.features.context import caller_token
from kinship.features.extract import extract_columns, extract_features
from kinship.features.minhash import EMPTY_SLOT, MAX_CHUNK_ROWS, get_hasher
from kinship.features.model import FunctionFeatures
from kinship.features.tokens import sem_specific_tokens, shape_values
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


def reference_own_tokens(fn: Function, cfg: FeatureConfig) -> list[int]:
    """A function's own raw sem tokens: APIs, strings, non-address immediates in code order."""
    ins = fn.instructions()
    imms = [i.imm for i in ins if i.imm is not None]
    return sem_specific_tokens(fn.apis, fn.strings, imms, cfg)


def reference_shape_tokens(fn: Function) -> list[int]:
    """CFG-shape tokens; a loop is an edge to a block at or before its source."""
    succs = [b.successors for b in fn.blocks]
    loops = sum(s <= b.va for b in fn.blocks for s in b.successors)
    calls = sum(i.flow is Flow.CALL for i in fn.instructions())
    return shape_values(len(fn.blocks), sum(map(len, succs)), loops,
                        max(map(len, succs), default=0), calls)


def reference_sem_tokens(fns: list[Function], cfg: FeatureConfig) -> list[set[int]]:
    """Raw sem tokens with call-graph context (features/context.py), one set per function."""
    own = [set(reference_own_tokens(fn, cfg)) for fn in fns]
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
            full |= set(reference_shape_tokens(fn))
        out.append(full)
    return out


def reference_exact_hash(fn: Function) -> int:
    data = b"".join(
        i.pic_bytes for b in sorted(fn.blocks, key=lambda b: b.va) for i in b.instructions
    )
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


@pytest.fixture(scope="module")
def disassemblies(bins: dict[str, Path], lua_libs: dict[str, Path]) -> dict[str, Disassembly]:
    """Lazy disassemblies (the columns), with the objects made from them."""
    paths = {name: bins[name] for name in FIXTURES}
    paths["lua5.4"] = lua_libs["5.4"]
    out = {name: disassemble(load_file(p), lazy=True) for name, p in paths.items()}
    for dis in out.values():
        dis.materialise()
        assert dis.columns is not None
    return out


def _columns(dis: Disassembly) -> CodeColumns:
    assert dis.columns is not None
    return dis.columns


def test_extract_columns_equals_reference(disassemblies: dict[str, Disassembly]) -> None:
    cfg = FeatureConfig()
    for name, dis in disassemblies.items():
        feats = extract_columns(_columns(dis))
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


def test_extract_features_alone_equals_reference(disassemblies: dict[str, Disassembly]) -> None:
    """One function alone (through ``CodeColumns.from_functions``) has no call-graph context:
    its own sem tokens; its code sketch and exact hash are those it has in its binary."""
    cfg = FeatureConfig()
    for dis in disassemblies.values():
        step = max(1, len(dis.functions) // 40)
        in_binary = extract_columns(_columns(dis))[::step]
        fns = dis.functions[::step]
        for fn, whole in zip(fns, in_binary, strict=True):
            f = extract_features(fn)
            raw = reference_own_tokens(fn, cfg)
            if raw:
                raw += reference_shape_tokens(fn)
            sem_sig, n_sem = reference_sketch({_mix64(t) for t in raw}, cfg)
            assert np.array_equal(f.sem_sig, sem_sig) and f.n_sem_tokens == n_sem
            assert np.array_equal(f.code_sig, whole.code_sig)
            assert (f.exact_hash, f.apis, f.strings) == (
                whole.exact_hash, whole.apis, whole.strings)


def test_columns_from_functions_round_trip(disassemblies: dict[str, Disassembly]) -> None:
    """The objects made from the columns, turned back into columns, give the same features and
    the same objects."""
    for name, dis in disassemblies.items():
        again = CodeColumns.from_functions(dis.functions)
        assert _feature_rows(extract_columns(again)) == _feature_rows(
            extract_columns(_columns(dis))), name
        assert again.function_objects() == dis.functions, name


def test_call_graph_context_reaches_callers_and_callees(
    disassemblies: dict[str, Disassembly],
) -> None:
    """In liblua, a function whose callee refers to a string gets that string's token, and the
    callee gets its callers' tokens re-tagged; without context neither happens."""
    cols = _columns(disassemblies["lua5.4"])
    fns = cols.functions
    with_ctx = extract_columns(cols)
    no_ctx = extract_columns(
        cols, FeatureConfig(sem_callee_context=False, sem_caller_context=False)
    )
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


# ---- stored features == those of the object featuriser, removed (digests) ------------------

# The stored features of each binary, by binary: the first 32 hex digits of the binary's SHA-256
# -> those of the SHA-256 of ``repr(_feature_rows(analyse(SampleInput(name, path=p)).features))``.
# Recorded on the code before the object featuriser (features.extract.extract_all) was removed,
# when it and the columnar one were checked equal on all of these. Fixtures are compared where
# this machine's toolchain rebuilt them byte-identical; Debian's liblua and the bench corpus are
# pinned by hash.
FEATURE_DIGESTS: dict[str, str] = {
    "e44e7978da81c04f62d1eb10762fd66b": "36bef379ecd561253cba415d77da3b74",  # lua52_gcc-x64_O3
    "9ab198915ac96c4a6b0ad259086e9ed3": "2d0433fe71737c632fc96bcb058b08e2",  # lua52_gcc-x86_O2
    "6529015c71f1c2ee803efe34b177f5cd": "3a352c0125e9d37eb488a3722b4d683a",  # lua52_mingw-x64_O3.ex
    "944b818fb037af7782ec405154dc3cd7": "f74ca5f9b19f07b76489990f81f8a5de",  # lua52_mingw-x86_O2.ex
    "c9eea7dae87a24d62bb8db62ddc15cd4": "f32f1bed1980bcba259a6b51b150ba4a",  # lua54_gcc-x64_Os
    "1b917c083681789aa5a58946f2e157c0": "18e6022e961b3728a210bc87e0542d59",  # lua54_clang-x86_Os
    "041035b946521d2dd583b8d7dc3adec1": "5e794744008883856dbc4f66efd711f4",  # lua54_mingw-x64_O2.ex
    "1443859b6725c2f0d03f5edcda556417": "2d265459212291bfff8e0b0bdb2fc46a",  # lua54_mingw-x86_Os.ex
    "79649e7c013fece42eaec4c588df213e": "e50e83e75857a7aaf8f7ed22a7d0815f",  # _brotli.cp37-win32.py
    "cfe906db8e63eaf40d67f9ad2b53eee6": "b52913728696d5e9fa7ecddfbba1c043",  # _brotli.cpython-311-x
    "8d36b044e514f4d14b2d3272ec29668c": "042da3e371865bbe436d02478adc1525",  # _brotli.cpython-313-i
    "8b494cff9a5a2665293af9305e5cf231": "a0c2944a5f713f869c388420631c03a1",  # _brotli.cp313-win_amd
    "d3b422c72c946dcfdb3717c8793d70ef": "f1c1239950bd85a8a252f96b381d3c52",  # _packer.cp36-win_amd6
    "a1602b380b055dcef079ff89b635636f": "fd14100553f32d372ea54e057dd6f4d2",  # _cmsgpack.cp39-win32.
    "bea30a14b2bc8e272f0689a5441b6178": "a1f5c044431478bee8d318c26dbfe423",  # _cmsgpack.cpython-312
    "42bde639ea34d5276dd2732ac13b5dbf": "3281151480f9865dfa3165acaf90d033",  # _cmsgpack.cpython-313
    "95fa6f803bb5330da2c53601e9d4b52a": "de785cbd95e39bc4a993714c992765fa",  # iphlpapi.dll
    "748b76a29a46adcc7c6a3e43fcba6984": "0cf73e022848e18100a11204acee5d9d",  # iphlpapi.dll.so
    "448c4eb49400861e7a743a49d9b7767b": "af589c728b8c049026ae17b6a3b5f655",  # iphlpapi.dll.so
    "79606610c8a6f86516b327d0f9f9b433": "152adef4fd43c4c3297c2e52c86689b1",  # iphlpapi.dll
    "9b5bc4e979499c96039ea8e110e7f187": "433a67edcba1fe2c0c05ecbbd86a1d62",  # regsvr32.exe
    "25a7febe12889d3f2d522778cd7cb6b6": "fc2f63abf487729c96369b74b93f72d5",  # regsvr32.exe
    "062372f2053424d8bafd9378ebdcc29a": "d8052820694658e76294b4b2425d9595",  # libz.so.1.2.11
    "cd6d6cfe9cd92eb6894e50db8c41f029": "4d3b1f942de4c10d745c06a979742518",  # libz.so.1.2.13
    "0347f192486f9a57b5d420d03997228d": "0aadd956b3bccc06372e90dc5c57d439",  # checksum_elf64_clang
    "12def3b40040a9377c8e5a74c4bd4332": "ca7ae515f4c5963b4232fcc250f36cb7",  # checksum_x64.exe
    "1a092b3e845f69f9aeaf7aac89d20e7a": "7e41f4083177d1a66cfbb7667a115eee",  # checksum_x86.exe
    "e3b0815b6c722fa53ecf4b6203e0758c": "f5b91ddaaa6434e4823588e91bfdd00b",  # crt_elf64
    "da5c0d445bc4c7ebc8fa025c7ded1b9d": "00878d8a428ece7819ed1068331cf176",  # crt_x64.exe
    "6e57302b1623f877b30c1fd2cb38c689": "8d3010bba46172c847b9f623b537b820",  # crt_x86.exe
    "d8a3e9627a91466a7460386f32f21e5c": "fc35b5102f79372318026ceec971454c",  # lua5.1
    "455d3042f65c8ea91b9c66d259e5fcfe": "9cd77c4fb94b52f876ba53a4182240bc",  # lua5.2
    "251f091e8193533798f2f2a7f2adb97c": "41bc8dc2b4bd9b576da10aef6126d5c7",  # lua5.3
    "6855cd6242ff09d6ee9b9518c6b8e794": "18260c89d446a900017fb160d21c1c55",  # lua5.4
    "262ff7fb3267ecd4192a75ab71041d94": "d7585a2f9637cf355490b6a3834227fd",  # netsh_elf32
    "5c23f2c2613a7bc39a50a3c51218d7c1": "48210222d33973edee8bc8157196905c",  # netsh_elf64
    "c52e45b81e194ded6f2dae5c0d8fa56e": "3ee1470b9ef8b778a1bc65b193dbac78",  # netsh_elf64_clang
    "6939e33a335585b1a96cb3164fc7b600": "28f56faf18373fd52e2703e804f2a0a2",  # netsh_elf64_stripped
    "08ee2be96ac9681af6e0185a10e4fa59": "7ec08d6e4180ff9b2dcb2312d3f0fa1c",  # netsh_v2_elf64
    "6f74bca09a00cde8c426e07b39f807f2": "7c51278ee57bcaa13c140abdc655c946",  # netsh_v2_x64.exe
    "36adfc9952f7e682f277da80422668bf": "e83c663aee20ceefa403dcf53805e07a",  # netsh_x64.exe
    "efd80cc8143f042389be135fdb31946d": "156a31b98215911bc4065c608ec28c2b",  # netsh_x64_dll.dll
    "ec7f3ed120444ce0939393ecf9d128da": "98d65accbe01c9fbe077ade7273c2564",  # netsh_x86.exe
    "cec9dc2fc1fcd3ece36a0aecae00f599": "67def8b8dfb4be637ce16840175d3aae",  # other_elf64
    "9168d38d94345387cba9b08c08c3ac3e": "4a62ad74ff2f87e481e6d87c59a6eb11",  # other_x64.exe
    "4d7a2386b6fd729aab6d59fe0eab9aa7": "fb5d7ab7d4557b6db5317b95179ab3bb",  # other_x86.exe
}


def _feature_fields(f: FunctionFeatures) -> tuple[object, ...]:
    return (f.va, f.name, f.n_instructions, f.n_blocks, f.n_edges, f.size, f.exact_hash,
            f.code_sig.tobytes(), f.sem_sig.tobytes(), f.n_code_tokens, f.n_sem_tokens,
            f.apis, f.strings, f.discovery)


def _feature_rows(feats: list[FunctionFeatures]) -> list[tuple[object, ...]]:
    return [_feature_fields(f) for f in feats]


def _features_digest(feats: list[FunctionFeatures]) -> str:
    return hashlib.sha256(repr(_feature_rows(feats)).encode()).hexdigest()[:32]


def _check_binary(name: str, path: Path) -> bool:
    """Digest check of ``path``'s features (True when this very file's digest is recorded),
    plus the lazy disassembly == the eager one, strings included."""
    binary = load_file(path)
    eager = disassemble(binary)
    lazy = disassemble(binary, lazy=True)
    assert lazy.functions == [] and lazy.columns is not None, name
    assert lazy.n_instructions == eager.n_instructions, name
    assert lazy.warnings == eager.warnings, name
    assert extract_strings(binary, lazy).strings == extract_strings(binary, eager).strings, name
    feats = extract_columns(lazy.columns)
    assert _digest(Disassembly(lazy.materialise(), 0, 0.0)) == _digest(eager), name
    digest = FEATURE_DIGESTS.get(hashlib.sha256(path.read_bytes()).hexdigest()[:32])
    if digest is None:
        return False
    assert _features_digest(feats) == digest, name
    return True


def test_features_equal_recorded_digests_on_fixtures(
    bins: dict[str, Path], lua_libs: dict[str, Path]
) -> None:
    paths = {**bins, **{f"lua{v}": p for v, p in lua_libs.items()}}
    checked = [name for name, path in sorted(paths.items()) if _check_binary(name, path)]
    if not checked:
        pytest.skip("no fixture is byte-identical to those the digests were recorded on")


@pytest.mark.slow
def test_features_equal_recorded_digests_on_bench_corpus() -> None:
    """The binaries of ``python -m bench disasm`` (skipped when the corpus is not fetched)."""
    import bench.gt as gt

    try:
        dev = gt.ensure_corpus()  # unpacks ../shared/corpus/dev-set.tar.xz when needed
        entries = gt.select_subset(gt.load_manifest(dev), gt.DEFAULT_SUBSET)
    except (OSError, ValueError) as exc:
        _skip_or_fail(f"bench corpus not available: {exc}")
        return
    paths = [dev / e.path for e in entries if (dev / e.path).is_file()]
    if not paths:
        _skip_or_fail("bench corpus not available")
    for path in paths:
        assert _check_binary(path.name, path), f"{path.name}: not the recorded file"


def _skip_or_fail(reason: str) -> None:
    """Skip where the corpus is missing; under CI=true (which has ../shared) fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_analyse_keep_gives_the_same_sample(bins: dict[str, Path]) -> None:
    for name in ("netsh_x86.exe", "netsh_x64.exe", "netsh_elf64"):
        item = SampleInput(name, path=bins[name])
        fast = analyse(item)
        full = analyse(item, keep=True)
        assert fast.disassembly is None and full.disassembly is not None
        assert full.disassembly.functions and full.disassembly.columns is None
        assert _feature_rows(fast.features) == _feature_rows(full.features), name
        assert fast.strings == full.strings and fast.record == full.record, name
