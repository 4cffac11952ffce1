"""The disassembler entry point: :func:`disassemble` (Binary -> Disassembly)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

from kinship.binary.model import Binary
from kinship.disasm.cfg import CodeGraph
from kinship.disasm.columns import CodeColumns, FunctionBlocks
from kinship.disasm.config import DisasmConfig
from kinship.disasm.decoder import CodeDecoder
from kinship.disasm.disassembly import Disassembly
from kinship.disasm.discovery import (
    Coverage,
    data_pointer_candidates,
    function_names,
    gap_candidates,
    iat_thunk_candidates,
    looks_like_prologue,
    seed_starts,
    tailcall_targets,
)
from kinship.disasm.model import Discovery

log = logging.getLogger(__name__)


def disassemble(
    binary: Binary, config: DisasmConfig | None = None, *, lazy: bool = False
) -> Disassembly:
    """Find the functions of ``binary`` and recover their control-flow graphs.

    Never raises for odd code: undecodable bytes end a block, limits hit become warnings in
    the result. With ``lazy=True`` the result carries the columnar form
    (``Disassembly.columns``, see :mod:`kinship.disasm.columns`) and its ``functions`` list
    stays empty until :meth:`~kinship.disasm.disassembly.Disassembly.materialise` is called: the
    fast ingest path computes features and strings from the columns and never builds
    Instruction/BasicBlock objects.
    """
    config = config or DisasmConfig()
    t0 = time.perf_counter()
    # The run allocates ~10 acyclic objects per instruction; the cyclic collector would rescan
    # the growing graph over and over (half the run time on a 1 MB library), so pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _disassemble(binary, config, t0, lazy)
    finally:
        if gc_was_enabled:
            gc.enable()


def _add_thunks(
    graph: CodeGraph, decoder: CodeDecoder, add: Callable[[list[int], Discovery], list[int]]
) -> None:
    """Import stubs: those reached by calls/jumps, then ``jmp [IAT]`` in uncovered code."""
    graph.explore(add(graph.thunk_starts, Discovery.THUNK))
    covered = Coverage(graph.spans())
    stubs = [
        va
        for va in iat_thunk_candidates(decoder)
        if va not in covered and va not in decoder.api_thunks and not graph.in_stub_section(va)
    ]
    graph.explore(add(stubs, Discovery.THUNK))


def _disassemble(binary: Binary, config: DisasmConfig, t0: float, lazy: bool) -> Disassembly:
    decoder = CodeDecoder(binary, config.max_literal_immediate)
    names = function_names(binary)
    graph = CodeGraph(decoder, config, names)
    starts = seed_starts(binary, config, decoder)
    graph.explore(list(starts))

    def add(vas: list[int], why: Discovery) -> list[int]:
        new = [v for v in vas if v not in starts]
        for v in new:
            starts[v] = why
        return new

    add(graph.call_targets, Discovery.CALL)
    _add_thunks(graph, decoder, add)
    if config.scan_pointers:
        in_code = Coverage(graph.spans())
        # An address taken by an instruction (push offset cb) is a stronger hint than a
        # pointer-sized value in data: weak prologues count there at any alignment.
        operand = set(graph.code_pointers)
        candidates = [
            p
            for p in (*graph.code_pointers, *data_pointer_candidates(binary, decoder))
            if p not in starts
            and p not in in_code
            and looks_like_prologue(decoder, p, any_alignment=p in operand)
        ]
        graph.explore(add(list(dict.fromkeys(candidates)), Discovery.POINTER))
        add(graph.call_targets, Discovery.CALL)
    for _ in range(config.prologue_scan_rounds if config.scan_prologues else 0):
        spans = graph.spans()
        found = add(gap_candidates(decoder, spans, starts), Discovery.PROLOGUE)
        if not found:
            break
        graph.explore(found)
        add(graph.call_targets, Discovery.CALL)
        graph.explore(add(graph.thunk_starts, Discovery.THUNK))
    if config.tailcall_heuristic:
        for _ in range(3):
            tails = tailcall_targets(decoder, graph.jumps, starts, graph.insns)
            if not add(tails, Discovery.TAILCALL):
                break
    graph.explore(add(graph.thunk_starts, Discovery.THUNK))
    graph.cut_blocks(starts)
    functions: list[FunctionBlocks] = []
    warnings: list[str] = []
    for va in sorted(starts):
        if len(functions) >= config.max_functions:
            warnings.append(f"function limit {config.max_functions} reached")
            break
        fn = graph.build_function(va, starts[va])
        if fn is not None:
            functions.append(fn)
    warnings.extend(graph.warnings)
    d = decoder
    columns = CodeColumns(
        d.tlist, d.vas, d.tids, d.x_target, d.x_ref, d.x_api, d.x_string, d.x_norm,
        graph.blocks, functions,
    )
    n = columns.n_instructions()
    objects = [] if lazy else columns.function_objects()
    seconds = time.perf_counter() - t0
    log.debug("%s: %d functions, %d instructions in %.2fs", binary.path, len(functions), n, seconds)
    # an eager result drops the columns: its objects hold the same information
    return Disassembly(objects, n, seconds, warnings, columns=columns if lazy else None, lazy=lazy)
