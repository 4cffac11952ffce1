"""Per-function features: the unit that is stored, indexed and matched.

A :class:`FunctionFeatures` is computed from a :class:`kinship.disasm.model.Function` by
``features.extract.extract_features`` and is all the matcher ever sees of a function; the
matcher is therefore testable without binaries (build FunctionFeatures by hand).

Two MinHash sketches per function:

* ``code_sig`` over normalised instruction n-grams (survives recompilation and new versions);
* ``sem_sig`` over architecture-independent tokens: called APIs and API bigrams in order,
  referenced strings, non-trivial constants, CFG shape buckets (lets the 32-bit and the 64-bit
  build of one source meet even when their instruction streams differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Signature = npt.NDArray[np.uint32]  # shape (MinHashConfig.num_perm,)


@dataclass(frozen=True, slots=True, eq=False)
class FunctionFeatures:
    va: int
    name: str | None
    n_instructions: int
    n_blocks: int
    n_edges: int
    size: int  # bytes of code
    exact_hash: int  # signed 64-bit position-independent hash of the function's pic_bytes
    code_sig: Signature
    sem_sig: Signature
    n_code_tokens: int  # distinct tokens behind code_sig (0: sketch is empty/meaningless)
    n_sem_tokens: int  # distinct tokens behind sem_sig
    apis: tuple[str, ...] = ()  # imported APIs called, in order ("kernel32.dll!Sleep")
    strings: tuple[str, ...] = ()  # referenced strings, in order
    discovery: str = ""  # kinship.disasm.model.Discovery value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FunctionFeatures):
            return NotImplemented
        return (
            self.va == other.va
            and self.name == other.name
            and self.exact_hash == other.exact_hash
            and self.n_instructions == other.n_instructions
            and np.array_equal(self.code_sig, other.code_sig)
            and np.array_equal(self.sem_sig, other.sem_sig)
            and self.apis == other.apis
            and self.strings == other.strings
        )

    __hash__ = None  # type: ignore[assignment]
