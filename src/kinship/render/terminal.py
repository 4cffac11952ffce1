"""Terminal renderers (rich) for every result model. JSON goes through ``to_dict`` instead.

Names, labels, symbols, strings and paths come from samples and stores: they reach rich only
as :func:`kinship.render.safe.inert` text (never parsed as markup, control characters shown
as ``\x1b``), never inside a markup string or as a plain ``str`` cell, title or header.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kinship.evidence.compare import CompareResult, FunctionPair, SampleRef, Side
from kinship.info import InfoResult
from kinship.ingest import AddReport
from kinship.match.result import MatchResult, VerdictStatus
from kinship.render.safe import inert, markup, plain
from kinship.render.verdict import confidence_text
from kinship.store.model import SampleRecord, StoreStats

# How a function pair matched, for people (MatchKind values).
KIND_LABEL = {"exact": "identical", "code": "similar code", "sem": "same APIs/strings"}
KIND_STYLE = {"same": "green", "api": "bold cyan", "similar": "yellow", "diff": "red", "gap": "dim"}


def _hx(v: int | None) -> str:
    return f"0x{v:x}" if v is not None else "-"


def _size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{f:.1f} {unit}" if unit != "B" else f"{int(f)} B"
        f /= 1024
    return f"{f:.1f} GiB"


def render_add(c: Console, r: AddReport) -> None:
    c.print(
        f"added [bold]{len(r.added)}[/] sample(s), {r.n_functions} functions, "
        f"{r.n_instructions} instructions in {r.seconds:.2f} s; "
        f"{len(r.duplicates)} already stored; {len(r.failed)} failed"
        + (f"; {len(r.warnings)} warning(s)" if r.warnings else "")
    )
    # Names and reasons quote file and member names: sample-controlled, shown inert.
    for f in r.failed:
        c.print(f"[red]skipped[/] {escape(plain(f.name))}: {escape(plain(f.reason))}")
    for w in r.warnings:
        c.print(f"[yellow]warning[/] {escape(plain(w.name))}: {escape(plain(w.reason))}")


_inert = inert  # a sample- or user-controlled string for a table cell


def verdict_text(r: MatchResult) -> Text:
    """The verdict line: attributed (with confidence), weak (a candidate, not a verdict) or
    unknown; numbers rounded for people (JSON keeps full precision)."""
    v = r.verdict
    if v.attributed and v.family:
        head = Text(f"verdict: {plain(v.family)}", style="bold green")
        if v.actor:
            head.append(f"  actor: {plain(v.actor)}", style="bold")
        if v.confidence is not None:
            head.append(f"  confidence {confidence_text(v.confidence)}")
        head.append(f"  score {v.score:.2f}")
    elif v.status is VerdictStatus.WEAK:
        head = Text("verdict: weak evidence, not attributed", style="bold yellow")
        if v.candidate:
            head.append(f"  (leading candidate {plain(v.candidate)}"
                        + (f", actor {plain(v.candidate_actor)}" if v.candidate_actor
                           else "")
                        + f", score {v.score:.2f})", style="yellow")
    else:
        head = Text("verdict: unknown", style="bold yellow")
        head.append(f"  (best score {v.score:.2f})", style="dim")
    return head


def library_summary(r: MatchResult, top: int = 3) -> str:
    """'41 functions: mingw-w64 CRT (x64) 39, zlib 2' for the library code recognised."""
    counts: dict[str, int] = {}
    for h in r.library_functions:
        counts[h.library] = counts.get(h.library, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{plain(name)} {n}" for name, n in ranked[:top]]
    if len(ranked) > top:
        parts.append(f"{len(ranked) - top} more")
    return ", ".join(parts)


def render_match(c: Console, r: MatchResult, top: int = 10) -> None:
    c.print(verdict_text(r))
    if r.verdict.reason:
        c.print(Text(f"  {plain(r.verdict.reason)}", style="dim"))
    for w in r.warnings:
        c.print(Text(f"warning: {plain(w)}", style="yellow"))
    libs = library_summary(r)
    c.print(Text(
        f"{r.n_query_functions} functions in the query, {r.n_library_functions} recognised as "
        f"library/runtime code and left out{': ' + libs if libs else ''}; {r.seconds:.2f} s",
        style="dim"))
    if r.families:
        t = Table(title="families", show_lines=False)
        for col in ("family", "actor", "score", "functions", "coverage"):
            t.add_column(col, justify="right" if col in ("score", "functions", "coverage")
                         else "left")
        for f in r.families[:top]:
            t.add_row(_inert(f.family or "(unlabelled)"), _inert(f.actor), f"{f.score:.2f}",
                      str(f.n_functions_matched), f"{f.coverage:.1%}")
        c.print(t)
    if r.samples:
        t = Table(title="most similar samples")
        for col in ("sha256", "name", "family", "score", "functions"):
            t.add_column(col)
        for s in r.samples[:top]:
            t.add_row(s.sha256[:16], _inert(s.name), _inert(s.family), f"{s.score:.3f}",
                      str(s.n_functions_matched))
        c.print(t)
    if r.sample_signals:
        t = Table(title="sample-level signals (weak evidence, not scored)")
        for col in ("sha256", "name", "family", "signal", "value"):
            t.add_column(col, overflow="fold")
        for sig in r.sample_signals[:top]:
            value = sig.value if sig.distance is None else f"distance {sig.distance}"
            t.add_row(sig.sha256[:16], _inert(sig.name), _inert(sig.family), sig.signal,
                      _inert(value[:80]))
        c.print(t)
    shown = [m for m in r.function_matches if not m.is_library][:top]
    if shown:
        t = Table(title="top shared functions")
        for col in ("query", "reference", "sample", "family", "score", "kind"):
            t.add_column(col)
        for m in shown:
            t.add_row(
                _inert(f"{_hx(m.query_va)} {m.query_name or ''}".strip()),
                _inert(f"{_hx(m.ref_va)} {m.ref_name or ''}".strip()),
                m.ref_sample_sha256[:12], _inert(m.family), f"{m.score:.3f}",
                KIND_LABEL.get(m.kind.value, m.kind.value),
            )
        c.print(t)


def _side_text(side: Side | None) -> str:
    if side is None or side.va is None:
        return ""
    text = f"{side.va:08x}  {plain(side.text)}"
    if side.string and side.string not in side.text:
        text += f'  ; "{plain(side.string[:40])}"'
    return text


def _pair_table(p: FunctionPair, left_title: str, right_title: str) -> Table:
    t = Table(show_header=True, box=None, pad_edge=False, expand=False)
    t.add_column(inert(left_title), overflow="fold")
    t.add_column("", width=1)
    t.add_column(inert(right_title), overflow="fold")
    marks = {"same": "=", "api": "=", "similar": "~", "diff": "!", "gap": " "}
    for row in p.rows:
        style = KIND_STYLE.get(row.kind, "")
        t.add_row(Text(_side_text(row.left), style=style), marks.get(row.kind, " "),
                  Text(_side_text(row.right), style=style))
    return t


def render_compare(c: Console, r: CompareResult, listings: int = 3) -> None:
    def side(x: SampleRef) -> Text:
        t = Text(plain(x.name), style="bold")
        t.append(f" ({x.format}/{x.arch}, {x.n_functions} functions)")
        labels = [v for v in (x.family, x.actor, x.source,
                              f"first seen {x.first_seen}" if x.first_seen else None) if v]
        if labels:
            t.append(f" [stored: {plain(', '.join(labels))}]", style="cyan")
        return t

    head = side(r.left)
    head.append("  vs  ")
    head.append_text(side(r.right))
    c.print(head)
    n_lib = sum(1 for p in r.pairs if p.is_library)
    c.print(f"code similarity (share of the left sample's own code matched, library code "
            f"excluded): {r.similarity:.1%}, {len(r.pairs)} matched pairs ({n_lib} library), "
            f"{r.seconds:.2f} s")
    t = Table(title="matched function pairs (library/runtime code last, greyed)")
    for col in ("left", "right", "score", "match", "insns", "identity",
                "shared APIs, strings / library"):
        t.add_column(col, overflow="fold")
    for p in r.pairs[:40]:
        style = "dim" if p.is_library else ""
        t.add_row(
            Text(plain(f"{_hx(p.left_va)} {p.left_name or ''}".strip()), style=style),
            Text(plain(f"{_hx(p.right_va)} {p.right_name or ''}".strip()), style=style),
            Text(f"{p.score:.2f}", style=style), Text(KIND_LABEL.get(p.kind, p.kind), style=style),
            Text(f"{p.left_instructions}/{p.right_instructions}", style=style),
            Text(f"{p.identity:.0%}" if p.rows else "", style=style),
            Text(plain(f"library: {p.library or 'library code'}" if p.is_library
                           else ", ".join([*p.apis[:6], *(repr(x)[:50] for x in p.strings[:2])])),
                 style=style),
        )
    c.print(t)
    for p in [p for p in r.pairs if p.rows][:listings]:
        title = inert(f"{_hx(p.left_va)} {p.left_name or ''} <-> {_hx(p.right_va)} "
                      f"{p.right_name or ''}  score {p.score:.3f}, identity {p.identity:.0%}")
        c.print(Panel(_pair_table(p, f"{r.left.name} ({r.left.arch})",
                                  f"{r.right.name} ({r.right.arch})"), title=title))


def render_info(c: Console, r: InfoResult, functions: bool = False) -> None:
    found_by = ", ".join(f"{k}: {n}" for k, n in r.discovery.items())
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in (
        ("name", r.name), ("format", f"{r.format} / {r.arch}"), ("size", _size(r.size)),
        ("sha256", r.sha256), ("sha1", r.sha1), ("md5", r.md5), ("imphash", r.imphash or "-"),
        ("image base", _hx(r.image_base)), ("entry point", _hx(r.entry_point)),
        ("rich header", str(r.similarity_hashes.get("rich_header_hash") or "-")),
        ("tlsh", str(r.similarity_hashes.get("tlsh") or "-")),
        ("ssdeep", str(r.similarity_hashes.get("ssdeep") or "-")),
        ("compile time", r.compile_time or "-"), ("pdb path", r.pdb_path or "-"),
        ("functions", f"{r.n_functions} ({found_by})"),
        ("instructions", str(r.n_instructions)),
    ):
        t.add_row(k, inert(v))
    c.print(t)
    st = Table(title="sections")
    for col in ("name", "va", "vsize", "offset", "raw", "flags", "entropy"):
        st.add_column(col)
    for s in r.sections:
        flags = ("x" if s["executable"] else "-") + ("w" if s["writable"] else "-")
        st.add_row(inert(s["name"]), _hx(s["va"]), _hx(s["virtual_size"]), _hx(s["offset"]),
                   _hx(s["raw_size"]), flags, f"{s['entropy']:.2f}")
    c.print(st)
    if r.imports:
        it = Table(title="imports")
        it.add_column("library")
        it.add_column("functions", overflow="fold")
        for lib, names in r.imports.items():
            it.add_row(inert(lib or "(unknown)"), inert(", ".join(names)))
        c.print(it)
    if r.exports:
        c.print(inert(f"exports ({len(r.exports)}): "
                      + ", ".join(str(e["name"]) for e in r.exports[:40])))
    if functions:
        ft = Table(title="functions")
        for col in ("va", "name", "insns", "blocks", "found by", "APIs"):
            ft.add_column(col)
        for f in r.functions:
            ft.add_row(_hx(f.va), inert(f.name), str(f.n_instructions), str(f.n_blocks),
                       f.discovery, inert(", ".join(f.apis[:8])))
        c.print(ft)
    for w in r.warnings:
        line = Text("warning:", style="yellow")
        line.append(" ").append_text(inert(w))
        c.print(line)


def render_stats(c: Console, s: StoreStats, backend: str | None = None) -> None:
    """``kinship db stats``: the backend's name (when given), then the store's figures."""
    if backend is not None:
        c.print(f"[bold]backend[/bold] {markup(backend)}")
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in (("store", s.path), ("schema version", str(s.schema_version)),
                 ("samples", str(s.samples)), ("library samples", str(s.library_samples)),
                 ("families", str(s.families)), ("actors", str(s.actors)),
                 ("functions", str(s.functions)), ("size on disk", _size(s.size_bytes)),
                 ("bytes per function",
                  f"{s.size_bytes / s.functions:.0f}" if s.functions else "-")):
        t.add_row(k, inert(v))
    c.print(t)


def render_relabelled(c: Console, rec: SampleRecord) -> None:
    """``kinship db label``: the sample's labels after the change (inert: labels are
    user-given, names sample-controlled)."""
    c.print(inert(f"{rec.sha256}: family={rec.family} actor={rec.actor} source={rec.source}"))


def render_removed(c: Console, rec: SampleRecord) -> None:
    """``kinship db remove``: which sample left the store."""
    c.print(inert(f"removed {rec.sha256} ({rec.name})"))


def render_add_error(c: Console, name: str, reason: str) -> None:
    """The one line of an ``add`` of a single file that could not be stored."""
    c.print(inert("error:", style="red"), inert(f"{name}: {reason}"))


# ``kinship db list``: at least this many columns for one column per label; narrower
# consoles (80 columns) get the compact layout, two lines per sample:
#
#   sha256         sample              family     actor
#   first seen     format, functions   version    source
#   ec7f3ed12044   netsh_x86.exe       netshdoor  Lazarus Group
#   2016-03        pe/x86 · 153 fns    1.0        Vendor report 2016
SAMPLES_WIDE_MIN = 130
SAMPLES_HASH_CHARS = 12  # sha256 prefix shown (any unique prefix works with `db label`)
SAMPLES_MIN_COLUMN = 10  # no label column narrower than this


def _sample_fmt(s: SampleRecord) -> str:
    return f"{s.format}/{s.arch}" + (" lib" if s.is_library else "")


def _fit_widths(needs: list[int], room: int, minimum: int) -> list[int]:
    """Column widths for ``needs`` (each column's widest line) in ``room`` characters: the
    widest columns give up space first, none below ``minimum`` (nor above its need)."""
    widths = [max(n, 1) for n in needs]
    while sum(widths) > room:
        widest = max(widths)
        if widest <= minimum:
            break
        i = widths.index(widest)
        second = max([w for j, w in enumerate(widths) if j != i] + [minimum])
        widths[i] = max(minimum, second, widest - (sum(widths) - room))
        if widths[i] == widest:  # several columns tied at the top: shrink this one by one
            widths[i] -= 1
    return widths


def _cut(text: str, width: int, style: str = "") -> Text:
    t = Text(text, style=style)
    t.truncate(width, overflow="ellipsis")
    return t


def render_samples(c: Console, samples: list[SampleRecord]) -> None:
    """The stored samples as a table that fits ``c.width``; labels come from users and file
    names from samples, so every cell is a plain :class:`Text` (never parsed as markup) and
    long ones are cut with an ellipsis (names, sources) or wrapped (family, actor) rather
    than squeezing the other columns."""
    title = f"{len(samples)} samples"
    if c.width >= SAMPLES_WIDE_MIN:
        t = Table(title=title)
        t.add_column("sha256", no_wrap=True, min_width=SAMPLES_HASH_CHARS)
        for col, width in (("name", 40), ("family", 24), ("actor", 24), ("version", 16)):
            t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=width)
        t.add_column("first seen", no_wrap=True)
        t.add_column("source", no_wrap=True, overflow="ellipsis", max_width=32)
        t.add_column("fmt", no_wrap=True)
        t.add_column("functions", no_wrap=True, justify="right")
        for s in samples:
            t.add_row(Text(s.sha256[:16]), inert(s.name), inert(s.family),
                      inert(s.actor), inert(s.version), inert(s.first_seen),
                      inert(s.source), inert(_sample_fmt(s)), Text(str(s.n_functions)))
        c.print(t)
        return
    rows = [((plain(s.name), plain(f"{_sample_fmt(s)} · {s.n_functions} fns")),
             (plain(s.family), plain(s.version)), (plain(s.actor), plain(s.source)))
            for s in samples]
    heads = (("sample", "format, functions"), ("family", "version"), ("actor", "source"))
    needs = [max(len(x) for r in [heads[i], *(row[i] for row in rows)] for x in r)
             for i in range(3)]
    gaps = 2 * 3  # between the four columns
    widths = _fit_widths(needs, c.width - SAMPLES_HASH_CHARS - gaps, SAMPLES_MIN_COLUMN)
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              collapse_padding=True)
    t.add_column("sha256\nfirst seen", no_wrap=True, width=SAMPLES_HASH_CHARS)
    t.add_column("\n".join(heads[0]), no_wrap=True, overflow="ellipsis", width=widths[0])
    t.add_column("\n".join(heads[1]), overflow="fold", width=widths[1])
    t.add_column("\n".join(heads[2]), overflow="fold", width=widths[2])
    for s, row in zip(samples, rows, strict=True):
        head = Text(s.sha256[:SAMPLES_HASH_CHARS])
        head.append("\n" + plain(s.first_seen), style="dim")
        cells = [head]
        for i, (first, second) in enumerate(row):
            cell = _cut(first, widths[i]) if i == 0 else Text(first)
            cell.append("\n")
            cell.append_text(_cut(second, widths[i], "dim"))
            cells.append(cell)
        t.add_row(*cells)
    c.print(t)

