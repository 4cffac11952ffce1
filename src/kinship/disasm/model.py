"""Disassembly results: instructions, basic blocks, functions (the whole run of one binary
is :class:`kinship.disasm.disassembly.Disassembly`).

This is the contract between ``disasm`` (which fills it) and ``features``/``evidence`` (which
read it). Instructions carry an architecture-neutral normalised form (``norm``) so that the
32-bit and 64-bit builds of one source share tokens:

    x86:  mov eax, dword ptr [ebp+8]     -> "mov reg32, stk"
    x64:  mov rax, qword ptr [rsp+0x28]  -> "mov reg64, stk"   (feature code may fold reg32/reg64)
    call dword ptr [0x40a004] (IAT)      -> "call api"          api="kernel32.dll!Sleep"
    call 0x401230                        -> "call func"

Display text (Intel syntax) is not kept at ingest time; ``disasm.listing`` re-decodes a function
on demand for the evidence views.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Flow(enum.IntEnum):
    """Control-flow kind of an instruction (mirrors iced-x86 FlowControl, simplified)."""

    NEXT = 0  # falls through
    JUMP = 1  # unconditional direct or indirect jump
    COND = 2  # conditional branch
    CALL = 3  # call (direct or indirect)
    RET = 4  # return
    INDIRECT_JUMP = 5  # jmp reg/mem (jump tables, tail calls through pointers)
    INT = 6  # int3, ud2, hlt ... (ends a block, no successor)


@dataclass(slots=True)
class Instruction:
    va: int
    size: int
    mnemonic: str  # lower-case mnemonic, e.g. "mov", "call", "jne"
    norm: str  # normalised token (see module docstring)
    flow: Flow
    # Instruction bytes with every address-dependent field (displacements that are absolute or
    # RIP-relative addresses, branch/call displacements, immediates that point into the image)
    # replaced by zero bytes: the input of the position-independent exact hash.
    pic_bytes: bytes
    target: int | None = None  # direct branch / call target VA
    data_ref: int | None = None  # absolute VA of a memory operand or address-like immediate
    imm: int | None = None  # immediate value that is not an address
    api: str | None = None  # "kernel32.dll!CreateProcessA" when the call/jmp reaches an import
    string: str | None = None  # string at data_ref (ASCII/UTF-16LE, >= 4 chars) if any


@dataclass(slots=True)
class BasicBlock:
    va: int
    instructions: list[Instruction]
    successors: list[int] = field(default_factory=list)  # VAs of successor blocks

    @property
    def end(self) -> int:
        last = self.instructions[-1]
        return last.va + last.size


class Discovery(str, enum.Enum):
    """How a function start was found (the first reason wins)."""

    ENTRY = "entry"
    EXPORT = "export"
    SYMBOL = "symbol"
    PDATA = "pdata"
    EH_FRAME = "eh_frame"
    CALL = "call"
    TAILCALL = "tailcall"
    POINTER = "pointer"  # address-of a function in code/data (callbacks, vtables)
    PROLOGUE = "prologue"
    THUNK = "thunk"  # an import stub (``jmp [IAT]``) called or jumped to, or found in a gap


@dataclass(slots=True)
class Function:
    va: int
    blocks: list[BasicBlock]  # sorted by va; blocks[0] is the entry block
    discovery: Discovery
    name: str | None = None  # from exports/symbols when present
    calls: list[int] = field(default_factory=list)  # direct call targets, in code order

    def instructions(self) -> list[Instruction]:
        return [i for b in self.blocks for i in b.instructions]

    @property
    def n_instructions(self) -> int:
        return sum(len(b.instructions) for b in self.blocks)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def n_edges(self) -> int:
        return sum(len(b.successors) for b in self.blocks)

    @property
    def size(self) -> int:
        """Bytes of code covered by the function's instructions."""
        return sum(i.size for b in self.blocks for i in b.instructions)

    @property
    def apis(self) -> list[str]:
        """Imported APIs reached by this function, in code order (duplicates kept)."""
        return [i.api for b in self.blocks for i in b.instructions if i.api]

    @property
    def strings(self) -> list[str]:
        return [i.string for b in self.blocks for i in b.instructions if i.string]
