"""Hostile input through the whole pipeline: corrupted and truncated samples never crash it.

Loaders are fuzzed in test_loaders.py; here the bytes that survive loading (code, import
tables, string sections) are damaged, so the disassembler, features and string extraction see
garbage. The only acceptable outcomes are a result or an InputError naming the file.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kinship.exceptions import InputError
from kinship.pipeline import SampleInput, analyse

N_MUTANTS = 12  # per fixture; seeded, so the same mutants every run


def _mutants(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    rnd = random.Random(seed)
    out = []
    for i in range(N_MUTANTS):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:  # random byte flips everywhere past the headers
            for _ in range(200):
                b[rnd.randrange(0x400, len(b))] = rnd.randrange(256)
        elif kind == 1:  # a run of random bytes in the middle (smashed code/data)
            start = rnd.randrange(0x400, len(b) - 0x1000)
            b[start:start + 0x1000] = rnd.randbytes(0x1000)
        elif kind == 2:  # truncated at a random point
            del b[rnd.randrange(0x200, len(b)):]
        else:  # all-0xff tail (erased flash / padded dump)
            start = rnd.randrange(len(b) // 2, len(b))
            b[start:] = b"\xff" * (len(b) - start)
        out.append((f"mutant{i}-kind{kind}", bytes(b)))
    return out


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe", "netsh_elf64",
                                  "netsh_elf32"])
def test_damaged_samples_give_a_result_or_input_error(bins: dict[str, Path],
                                                      name: str) -> None:
    data = bins[name].read_bytes()
    outcomes = {"ok": 0, "input_error": 0}
    for label, blob in _mutants(data, seed=len(name)):
        try:
            res = analyse(SampleInput(name=f"{name}:{label}", data=blob))
        except InputError as e:
            assert f"{name}:{label}" in str(e)
            outcomes["input_error"] += 1
            continue
        outcomes["ok"] += 1
        assert res.record.sha256 and res.record.n_functions >= 0
        for f in res.features:
            assert f.n_instructions > 0 and len(f.code_sig) == len(f.sem_sig)
    assert sum(outcomes.values()) == N_MUTANTS
    assert outcomes["ok"] > 0  # damage past the headers leaves most samples analysable


def test_elf_with_undecodable_version_names_still_loads(lua_libs: dict[str, Path]) -> None:
    from kinship.binary.load import load_bytes

    data = bytearray(lua_libs["5.4"].read_bytes())
    at = data.find(b"\x00libm.so.6\x00")
    assert at > 0
    data[at + 4] = 0x8B  # "lib\x8b.so.6": the version-needed file name is no longer UTF-8
    binary = load_bytes(bytes(data), "damaged-lua")
    assert binary.exports, "the rest of the file is still read"
    res = analyse(SampleInput(name="damaged-lua", data=bytes(data)))
    assert res.record.n_functions > 100
