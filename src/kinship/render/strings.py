"""Terminal rendering of shared strings (``kinship strings ... --shared``)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from kinship.evidence.shared_strings import SharedStringsResult
from kinship.render.safe import inert


def render_shared_strings(c: Console, r: SharedStringsResult) -> None:
    """The shared strings, where each sample holds them, and hex dumps. Names, sections,
    symbols and the strings come from the samples: printed inert (:mod:`kinship.render.safe`)."""
    names = {s.sha256: s for s in r.samples}
    c.print(Text(f"{len(r.strings)} distinctive strings shared by at least {r.min_samples} "
                 f"of {len(r.samples)} samples", style="bold"))
    for s in r.samples:
        c.print(inert(f"  {s.sha256[:16]}  {s.name}  {s.format}/{s.arch}"
                      + (f"  source: {s.source}" if s.source else "")))
    for row in r.strings:
        c.print()
        same = "  (same offset in every sample)" if row.same_offset else ""
        line = inert(repr(row.text), style="bold yellow")
        line.append(f"  weight {row.weight:.2f}{same}")
        c.print(line)
        for o in row.occurrences:
            fns = ", ".join(f"{f.va:#x}" + (f" ({f.name})" if f.name else "")
                            for f in o.functions)
            off = f"{o.offset:#x}" if o.offset is not None else "-"
            va = f"{o.va:#x}" if o.va is not None else "-"
            c.print(inert(f"  {names[o.sha256].name} offset {off} va {va} "
                          f"{o.section or ''} {o.encoding}" + (f"  <- {fns}" if fns else "")))
            if o.hexdump is not None:
                for hex_line in o.hexdump.lines():
                    c.print(inert("    " + hex_line.text()))
