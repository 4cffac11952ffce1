"""Human-readable listing of one function (Intel syntax) for the side-by-side evidence view.

Ingest never formats text (see :mod:`kinship.disasm.model`); this module re-decodes a
function's bytes on demand with iced-x86's formatter and annotates branch targets with names:
imports as ``kernel32.dll!Sleep``, functions by symbol/export name or ``sub_<va>``, jumps
inside the function as ``loc_<va>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import iced_x86 as iced

from kinship.binary.model import Binary
from kinship.disasm.discovery import function_names
from kinship.disasm.model import Flow, Function, Instruction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListingLine:
    """One instruction of a listing."""

    va: int
    bytes_hex: str  # "55 48 89 e5"
    mnemonic: str  # as formatted, prefixes included ("rep stosb")
    operands: str  # Intel syntax, branch targets replaced by names
    norm: str  # the normalised token the matcher used
    api: str | None = None
    string: str | None = None
    block_start: bool = False

    def text(self) -> str:
        """``mnemonic operands`` with the string, if any, as a comment."""
        body = f"{self.mnemonic} {self.operands}".rstrip()
        return f'{body} ; "{self.string}"' if self.string else body


def _formatter() -> iced.Formatter:
    fmt = iced.Formatter(iced.FormatterSyntax.INTEL)
    fmt.hex_prefix = "0x"
    fmt.hex_suffix = ""
    fmt.uppercase_hex = False
    fmt.space_after_operand_separator = True
    return fmt


def listing(binary: Binary, function: Function) -> list[ListingLine]:
    """Intel-syntax lines of ``function``, block by block in address order."""
    fmt = _formatter()
    names = function_names(binary)
    block_vas = {b.va for b in function.blocks}
    lines: list[ListingLine] = []
    for block in sorted(function.blocks, key=lambda b: b.va):
        for k, insn in enumerate(block.instructions):
            raw = binary.read(insn.va, insn.size)
            dec = iced.Decoder(binary.bitness, raw, ip=insn.va)
            ins = dec.decode()
            mnemonic = fmt.format_mnemonic(ins)
            operands = fmt.format_all_operands(ins)
            operands = _annotate(insn, operands, names, block_vas, function.va)
            lines.append(
                ListingLine(
                    insn.va, raw.hex(" "), mnemonic, operands, insn.norm, insn.api, insn.string,
                    k == 0,
                )
            )
    return lines


def _annotate(
    insn: Instruction, operands: str, names: dict[int, str], block_vas: set[int], start: int
) -> str:
    if insn.api is not None:
        if insn.target is not None:
            return insn.api
        if insn.flow in (Flow.CALL, Flow.INDIRECT_JUMP) and "[" in operands:
            return operands[: operands.index("[")] + f"[{insn.api}]"
        return f"{operands} <{insn.api}>"
    target = insn.target
    if target is None:
        return operands
    if insn.flow is Flow.CALL or (target not in block_vas and target != start):
        return names.get(target) or f"sub_{target:x}"
    return f"loc_{target:x}"
