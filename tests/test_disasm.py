"""Tests of kinship.disasm: normalisation on hand-made code, discovery/CFG/APIs on fixtures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kinship.binary.model import Arch, Binary, Format, Hashes, Section
from kinship.disasm.config import DisasmConfig
from kinship.disasm.disassemble import disassemble
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.listing import listing
from kinship.disasm.model import Discovery, Flow, Function

load = pytest.importorskip("kinship.binary.load")

TEXT_VA = 0x401000
DATA_VA = 0x402000
IAT_SLEEP = 0x402000
IAT_EXIT = 0x402004
STRING_VA = 0x402010


def _binary(code: bytes, arch: Arch = Arch.X86, data: bytes = b"") -> Binary:
    """A two-section PE-like image: code at TEXT_VA, data (IAT, a string) at DATA_VA."""
    data = data or (b"\0" * 16 + b"netsh firewall add portopening\0")
    blob = code + data
    return Binary(
        path="synthetic",
        data=blob,
        format=Format.PE,
        arch=arch,
        image_base=0x400000,
        hashes=Hashes(*(h(blob).hexdigest() for h in (hashlib.md5, hashlib.sha1, hashlib.sha256))),
        sections=[
            Section(".text", TEXT_VA, len(code), 0, len(code), True, False),
            Section(".rdata", DATA_VA, len(data), len(code), len(data), False, False),
        ],
        entry_point=TEXT_VA,
        api_thunks={IAT_SLEEP: "kernel32.dll!Sleep", IAT_EXIT: "kernel32.dll!ExitProcess"},
    )


def _only(d: Disassembly, va: int) -> Function:
    return next(f for f in d.functions if f.va == va)


# --------------------------------------------------------------------- hand-made code


def test_normalisation_x86() -> None:
    code = bytes.fromhex(
        "55"  # push ebp
        "89e5"  # mov ebp, esp
        "8b4508"  # mov eax, [ebp+8]
        "6810204000"  # push 0x402010 (string)
        "ff1500204000"  # call [IAT Sleep]
        "83c003"  # add eax, 3
        "3d00010000"  # cmp eax, 0x100
        "c9"  # leave
        "c3"  # ret
    )
    d = disassemble(_binary(code))
    f = _only(d, TEXT_VA)
    norms = [i.norm for i in f.instructions()]
    assert norms == [
        "push reg", "mov reg, reg", "mov reg, stk", "push addr", "call api", "add reg, 3",
        "cmp reg, imm", "leave", "ret",
    ]
    push_str = f.instructions()[3]
    assert push_str.data_ref == STRING_VA and push_str.string == "netsh firewall add portopening"
    assert push_str.pic_bytes == bytes.fromhex("6800000000")
    call = f.instructions()[4]
    assert call.api == "kernel32.dll!Sleep" and call.pic_bytes == bytes.fromhex("ff1500000000")
    assert f.instructions()[6].imm == 0x100
    assert f.apis == ["kernel32.dll!Sleep"]
    assert f.discovery is Discovery.ENTRY


def test_normalisation_x64_riprel_and_register_call() -> None:
    # lea rcx, [rip+X] -> string; mov rax, [rip+IAT]; call rax
    code = bytearray()
    code += bytes.fromhex("4883ec28")  # sub rsp, 0x28
    lea_at = TEXT_VA + len(code)
    code += b"\x48\x8d\x0d" + (STRING_VA - (lea_at + 7)).to_bytes(4, "little", signed=True)
    mov_at = TEXT_VA + len(code)
    code += b"\x48\x8b\x05" + (IAT_SLEEP - (mov_at + 7)).to_bytes(4, "little", signed=True)
    code += bytes.fromhex("ffd0")  # call rax
    code += bytes.fromhex("4883c428c3")  # add rsp, 0x28; ret
    d = disassemble(_binary(bytes(code), Arch.X64))
    ins = _only(d, TEXT_VA).instructions()
    assert [i.norm for i in ins] == [
        "sub reg, imm", "lea reg, mem", "mov reg, mem", "call api", "add reg, imm", "ret",
    ]
    assert ins[1].string == "netsh firewall add portopening"
    assert ins[1].pic_bytes == bytes.fromhex("488d0d00000000")
    assert ins[3].api == "kernel32.dll!Sleep"


def test_calls_noreturn_and_blocks() -> None:
    # entry: test eax,eax; je L; call sub; L: call [ExitProcess]; <garbage>; sub: ret
    code = bytes.fromhex(
        "85c0"  # 0: test eax, eax
        "7405"  # 2: je +5 -> 9
        "e808000000"  # 4: call 0x11
        "ff1504204000"  # 9: call [ExitProcess]
        "ffff"  # f: invalid, never decoded
        "c3"  # 11: ret
    )
    d = disassemble(_binary(code))
    entry = _only(d, TEXT_VA)
    assert entry.calls == [TEXT_VA + 0x11]
    assert [b.va - TEXT_VA for b in entry.blocks] == [0, 4, 9]
    assert sorted(entry.blocks[0].successors) == [TEXT_VA + 4, TEXT_VA + 9]
    assert entry.blocks[-1].successors == []  # ExitProcess never returns
    callee = _only(d, TEXT_VA + 0x11)
    assert callee.discovery is Discovery.CALL
    assert callee.instructions()[0].flow is Flow.RET


def test_small_immediates_configurable() -> None:
    code = bytes.fromhex("83c003c3")  # add eax, 3; ret
    d = disassemble(_binary(code), DisasmConfig(max_literal_immediate=-1))
    assert _only(d, TEXT_VA).instructions()[0].norm == "add reg, imm"


def test_garbage_does_not_raise() -> None:
    d = disassemble(_binary(bytes(range(256)) * 8))
    assert d.n_instructions >= 0


# --------------------------------------------------------------------- fixtures


def _by_name(d: Disassembly) -> dict[str, Function]:
    return {f.name.lstrip("_"): f for f in d.functions if f.name}


def _function_starts(path: Path) -> set[int]:
    b = load.load_file(path)
    return {s.va for s in b.symbols if b.is_executable(s.va)}


def test_recall_stripped_elf(bins: dict[str, Path]) -> None:
    truth = _function_starts(bins["netsh_elf64"])
    assert truth
    found = {f.va for f in disassemble(load.load_file(bins["netsh_elf64_stripped"])).functions}
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / len(found)
    assert recall >= 0.9, (recall, precision)
    assert precision >= 0.8, (recall, precision)


@pytest.mark.parametrize("version", ["5.1", "5.4"])
def test_recall_lua_without_names(lua_libs: dict[str, Path], version: str) -> None:
    binary = load.load_file(lua_libs[version])
    truth = {e.va for e in binary.exports if binary.is_executable(e.va)}
    truth |= {s.va for s in binary.symbols if binary.is_executable(s.va)}
    assert len(truth) > 100
    config = DisasmConfig(use_exports=False, use_symbols=False)
    found = {f.va for f in disassemble(binary, config).functions}
    assert len(found & truth) / len(truth) >= 0.9


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe"])
def test_run_command_apis(bins: dict[str, Path], name: str) -> None:
    fn = _by_name(disassemble(load.load_file(bins[name])))["run_command"]
    apis = {a.rpartition("!")[2] for a in fn.apis}
    assert {"CreateProcessA", "WaitForSingleObject", "CloseHandle", "Sleep"} <= apis


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe", "netsh_elf64"])
def test_jump_table_followed(bins: dict[str, Path], name: str) -> None:
    fn = _by_name(disassemble(load.load_file(bins[name])))["dispatch_command"]
    switch = max(fn.blocks, key=lambda b: len(b.successors))
    assert switch.instructions[-1].flow is Flow.INDIRECT_JUMP
    assert len(switch.successors) >= 7  # 8 cases + default, some share a block
    block_vas = {b.va for b in fn.blocks}
    assert set(switch.successors) <= block_vas
    assert fn.n_blocks >= 10


@pytest.mark.parametrize("name", ["netsh_x86.exe", "netsh_x64.exe", "netsh_elf64"])
def test_string_reference(bins: dict[str, Path], name: str) -> None:
    d = disassemble(load.load_file(bins[name]))
    assert any("netsh firewall add portopening" in s for f in d.functions for s in f.strings)


def test_pic_bytes_exe_vs_dll(bins: dict[str, Path]) -> None:
    exe = _by_name(disassemble(load.load_file(bins["netsh_x64.exe"])))
    dll = _by_name(disassemble(load.load_file(bins["netsh_x64_dll.dll"])))
    for name in ("run_command", "open_port", "dispatch_command"):
        a = [i.pic_bytes for i in exe[name].instructions()]
        b = [i.pic_bytes for i in dll[name].instructions()]
        assert a == b, name
        raw_a = [i.va for i in exe[name].instructions()]
        raw_b = [i.va for i in dll[name].instructions()]
        assert raw_a != raw_b  # different addresses, same position-independent bytes


def test_listing(bins: dict[str, Path]) -> None:
    binary = load.load_file(bins["netsh_x64.exe"])
    fn = _by_name(disassemble(binary))["run_command"]
    lines = listing(binary, fn)
    assert len(lines) == fn.n_instructions
    assert lines[0].block_start and lines[0].va == fn.va
    assert [ln.va for ln in lines] == sorted(ln.va for ln in lines)
    first = fn.blocks[0].instructions[0]
    assert lines[0].bytes_hex == binary.read(first.va, first.size).hex(" ")
    calls = [ln for ln in lines if ln.mnemonic == "call"]
    assert any("kernel32.dll!CreateProcessA" in ln.operands for ln in calls)
    assert all(ln.text().startswith(ln.mnemonic) for ln in lines)
    assert sum(ln.block_start for ln in lines) == fn.n_blocks


# --------------------------------------------------------------------- issue #2 discovery


def test_iat_thunks_become_functions() -> None:
    code = bytes.fromhex(
        "e80b000000"  # call thunk_sleep (TEXT_VA+0x10)
        "c3"  # ret
        + "cc" * 10
        + "ff2500204000"  # +0x10 thunk_sleep: jmp [IAT Sleep]
        "9090"
        "ff2504204000"  # +0x18 thunk_exit: jmp [IAT ExitProcess], called by nothing
        "9090"
    )
    d = disassemble(_binary(code))
    starts = {f.va: f for f in d.functions}
    assert starts[TEXT_VA + 0x10].discovery is Discovery.THUNK
    assert starts[TEXT_VA + 0x18].discovery is Discovery.THUNK
    assert starts[TEXT_VA + 0x10].apis == ["kernel32.dll!Sleep"]
    call = starts[TEXT_VA].instructions()[0]
    assert call.api == "kernel32.dll!Sleep" and call.norm == "call api"


def test_call_next_instruction_is_not_a_function() -> None:
    code = bytes.fromhex("e800000000" "5b" "c3")  # call $+5; pop ebx; ret
    d = disassemble(_binary(code))
    assert [f.va for f in d.functions] == [TEXT_VA]
    assert d.functions[0].n_instructions == 3


def _pic32_binary(code: bytes, rodata: bytes) -> Binary:
    """A 32-bit PIC ELF shared object mapped at 0: .text 0x1000, .rodata 0x2000, GOT 0x3000."""
    got = b"\0" * 16
    blob = code + rodata + got
    return Binary(
        path="synthetic-pic32",
        data=blob,
        format=Format.ELF,
        arch=Arch.X86,
        image_base=0,
        hashes=Hashes(*(h(blob).hexdigest() for h in (hashlib.md5, hashlib.sha1, hashlib.sha256))),
        sections=[
            Section(".text", 0x1000, len(code), 0, len(code), True, False),
            Section(".rodata", 0x2000, len(rodata), len(code), len(rodata), False, False),
            Section(".got.plt", 0x3000, len(got), len(code) + len(rodata), len(got), False, True),
        ],
        entry_point=0x1000,
    )


def test_pic32_jump_table_relative_to_got() -> None:
    # clang -m32 -fPIC: mov eax, [ebx + eax*4 + (table - GOT)]; add eax, ebx; jmp eax
    head = bytes.fromhex(
        "83f802"  # cmp eax, 2
        "771d"  # ja default (0x1022)
        "8b8483" + (0x2000 - 0x3000).to_bytes(4, "little", signed=True).hex()  # mov eax, [...]
        + "01d8"  # add eax, ebx
        "ffe0"  # jmp eax
    )
    case_va = [0x1000 + len(head) + 6 * k for k in range(3)]
    cases = b"".join(bytes.fromhex("b8") + k.to_bytes(4, "little") + b"\xc3" for k in range(3))
    code = head + cases + b"\xc3"  # default: ret
    table = b"".join((va - 0x3000).to_bytes(4, "little", signed=True) for va in case_va)
    d = disassemble(_pic32_binary(code, table))
    assert [f.va for f in d.functions] == [0x1000]
    blocks = {b.va for b in d.functions[0].blocks}
    assert set(case_va) <= blocks


def test_pic32_lea_ebx_is_a_got_relative_string() -> None:
    rodata = b"hello from the rodata\0"
    # lea eax, [ebx + (0x2000 - GOT)]; ret
    code = bytes.fromhex("8d83") + (0x2000 - 0x3000).to_bytes(4, "little", signed=True) + b"\xc3"
    d = disassemble(_pic32_binary(code, rodata))
    lea = d.functions[0].instructions()[0]
    assert lea.data_ref == 0x2000 and lea.string == "hello from the rodata"
