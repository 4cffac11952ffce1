"""Configuration of the disassembler (one dataclass, every knob documented)."""

from __future__ import annotations

from dataclasses import dataclass

# A hostile sample can describe a function that never ends (a huge linear sled): stop adding
# blocks to one function after this many instructions. Real functions in large libraries
# (sqlite's VDBE loop, OpenSSL's generated code) stay below ~30k.
MAX_FUNCTION_INSTRUCTIONS = 100_000
# Bounds memory and time per sample; the largest real binaries we meet (chrome.dll-sized) have
# ~400k functions.
MAX_FUNCTIONS = 500_000
# A switch with more cases than this is either generated code or a misread table; 4096 covers
# every compiler-generated dense switch we have seen while stopping runaway table reads.
MAX_JUMP_TABLE_ENTRIES = 4096
# Total decoded instructions per sample (about 1 GiB of Python objects); beyond it the sample
# is disassembled partially and a warning is recorded.
MAX_INSTRUCTIONS = 5_000_000


@dataclass(frozen=True, slots=True)
class DisasmConfig:
    """Knobs of :func:`kinship.disasm.disassemble.disassemble`."""

    # Seed function starts from the binary's symbols (.symtab/.dynsym/COFF). bool.
    use_symbols: bool = True
    # Seed function starts from exports. bool.
    use_exports: bool = True
    # Seed function starts from metadata hints (PE64 .pdata, ELF .eh_frame). bool.
    use_function_hints: bool = True
    # Treat unconditional jumps that leave the jumping function's contiguous address range as
    # tail calls and make their targets functions. bool.
    tailcall_heuristic: bool = True
    # Accept code pointers found in data sections and in instruction operands (lea/push/mov of
    # an address in an executable section) as function starts when the target looks like a
    # function prologue. bool.
    scan_pointers: bool = True
    # Scan the bytes not covered by any function for prologues after padding. bool.
    scan_prologues: bool = True
    # Read jump tables of indirect jumps (switch statements). bool.
    resolve_jump_tables: bool = True
    # Immediates from 0 to this value are kept literally in the normalised form ("add reg, 8");
    # larger ones become "imm". int, 0..255; -1 abstracts every immediate.
    max_literal_immediate: int = 16
    # Rounds of prologue scanning (each round may expose new gaps). int, 0..10.
    prologue_scan_rounds: int = 3
    # Per-function instruction limit. int, >= 1.
    max_function_instructions: int = MAX_FUNCTION_INSTRUCTIONS
    # Function count limit. int, >= 1.
    max_functions: int = MAX_FUNCTIONS
    # Jump table entry limit. int, >= 1.
    max_jump_table_entries: int = MAX_JUMP_TABLE_ENTRIES
    # Total decoded instruction limit. int, >= 1.
    max_instructions: int = MAX_INSTRUCTIONS
