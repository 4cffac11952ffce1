"""The disassembly of one binary: its functions as objects, or the columns they are built from.

Apart from :mod:`kinship.disasm.model` so that the objects do not depend on the columns
(``columns`` builds ``model`` objects; this module holds both forms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kinship.disasm.columns import CodeColumns
from kinship.disasm.model import Function


@dataclass(slots=True)
class Disassembly:
    """All functions of one binary, plus statistics about the run."""

    functions: list[Function]  # sorted by va (empty while ``lazy``: see materialise)
    n_instructions: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    # The columnar form the functions were built from (:class:`CodeColumns`);
    # None for a Disassembly assembled by hand.
    columns: CodeColumns | None = None
    lazy: bool = False  # functions not built yet: call materialise()

    def materialise(self) -> list[Function]:
        """``functions``, building the objects from ``columns`` first if still lazy."""
        if self.lazy and self.columns is not None:
            self.functions = self.columns.function_objects()
            self.lazy = False
        return self.functions
