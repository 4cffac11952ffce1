"""The import graph of the ``kinship`` package: no cycle, and data flows down.

Every ``import``/``from ... import`` in ``src/kinship`` counts, including those inside
functions and under ``if TYPE_CHECKING`` (a lazy import is still a dependency: the issue #11
report <-> export circle was two function-level imports). Relative imports are resolved.

Layers, lowest first (issue #11): binary -> disasm -> features -> index/store -> match ->
documents -> evidence/intel/rules -> report/export/render -> api -> cli. A lower layer never
imports an upper one.

Known exceptions are listed by name below, each with the work that removes it; remove an
entry when that work lands (the test fails on an entry that no longer exists, so the lists
only shrink).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "kinship"

# Strongly connected sets of modules allowed for now (module -> module cycles).
ALLOWED_MODULE_CYCLES: dict[frozenset[str], str] = {}

ALLOWED_PACKAGE_EDGES: dict[tuple[str, str], str] = {}

# Lower layers and what they must never import.
LOWER = ("binary", "disasm", "features", "index", "store", "match", "strings", "baseline")
UPPER = ("api", "cli", "render", "report", "export")
# Layers under the facade: they never import it or the CLI (they take narrow callables).
UNDER_FACADE = (*LOWER, "evidence", "intel", "rules", "report", "export", "artifacts",
                "render", "pipeline", "ingest", "info", "document")

# (importer prefix, imported prefix) pairs allowed for now, with what removes them.
ALLOWED_LAYER_EDGES: dict[tuple[str, str], str] = {}


Graph = dict[str, set[str]]  # module -> the modules it imports


def strongly_connected(graph: Graph) -> list[set[str]]:
    """Tarjan's strongly connected components of ``graph`` (every node in one of them)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _edges(graph: Graph) -> list[tuple[str, str]]:
    return [(a, b) for a, targets in graph.items() for b in sorted(targets)]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The kinship module ``name`` refers to (``a.b.C`` -> ``a.b`` when C is a name)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """What ``node`` imports: ``from a.b import c`` is module ``a.b.c`` when that is a
    module, else (a name defined in it) module ``a.b``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            keep = parts[: len(parts) - (node.level - 1)]
            base = ".".join(keep + ([base] if base else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                for a in node.names]
    return []


@functools.cache
def import_graph() -> Graph:
    """Module -> module edges of every import in the package (function-level included)."""
    modules = _modules()
    graph: Graph = {}
    for name, path in modules.items():
        graph.setdefault(name, set())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, package, modules):
                if target == PACKAGE or not target.startswith(PACKAGE + "."):
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != name and resolved != PACKAGE:
                    graph[name].add(resolved)
    return graph


def _layer(module: str) -> str:
    """``kinship.match.aggregate`` -> ``match``; ``kinship.api`` -> ``api``."""
    return module.split(".")[1] if module.count(".") else module


def _package_graph(graph: Graph) -> Graph:
    pg: Graph = {}
    for a, b in _edges(graph):
        la, lb = f"{PACKAGE}.{_layer(a)}", f"{PACKAGE}.{_layer(b)}"
        if la != lb and (la, lb) not in ALLOWED_PACKAGE_EDGES:
            pg.setdefault(la, set()).add(lb)
    return pg


def test_graph_sees_known_imports() -> None:
    """The walk itself works: top-level, function-level and relative imports are found."""
    graph = import_graph()
    assert "kinship.pipeline" in graph["kinship.api"]
    assert "kinship.report.build" in graph["kinship.api"]  # inside a method
    assert {frozenset({"a", "b"})} == {frozenset(c) for c in strongly_connected(
        {"a": {"b"}, "b": {"a", "c"}, "c": set()}) if len(c) > 1}
    assert len(graph) > 50


def test_no_module_cycle() -> None:
    graph = import_graph()
    cycles = {frozenset(c) for c in strongly_connected(graph) if len(c) > 1}
    unexpected = [sorted(c) for c in cycles if c not in ALLOWED_MODULE_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    stale = [sorted(c) for c in ALLOWED_MODULE_CYCLES if c not in cycles]
    assert not stale, f"allowed cycles that are gone (remove them from the list): {stale}"


def test_no_package_cycle() -> None:
    """Subpackages (kinship.<name>) form no cycle either, once the listed edges are set
    aside; each listed edge still exists."""
    graph = import_graph()
    pg = _package_graph(graph)
    cycles = [sorted(c) for c in strongly_connected(pg) if len(c) > 1]
    assert not cycles, f"package cycles: {cycles}"
    seen = {(f"{PACKAGE}.{_layer(a)}", f"{PACKAGE}.{_layer(b)}") for a, b in _edges(graph)}
    stale = [e for e in ALLOWED_PACKAGE_EDGES if e not in seen]
    assert not stale, f"allowed package edges that are gone (remove them): {stale}"


def _violations(lower: tuple[str, ...], upper: tuple[str, ...]) -> list[tuple[str, str]]:
    graph = import_graph()
    out = []
    for a, b in _edges(graph):
        la, lb = _layer(a), _layer(b)
        if la in lower and lb in upper and la != lb and (la, lb) not in ALLOWED_LAYER_EDGES:
            out.append((a, b))
    return sorted(out)


def test_lower_layers_do_not_import_upper_ones() -> None:
    """binary/disasm/features/index/store/match/strings/baseline never import the facade,
    the CLI, the renderers, the report or the exports."""
    assert _violations(LOWER, UPPER) == []


def test_nothing_under_the_facade_imports_it() -> None:
    """Lower layers receive narrow callables (``sample_file``, ``library_functions``,
    ``match``), never the ``Kinship`` facade; nothing but the CLI imports the CLI."""
    assert _violations(UNDER_FACADE, ("api", "cli")) == []


def test_report_and_export_in_one_direction() -> None:
    """export reads the report document (report.model) and never the report builder;
    report never imports export."""
    graph = import_graph()
    edges = [(a, b) for a, b in _edges(graph)
             if (_layer(a), _layer(b)) in {("report", "export")}
             or (_layer(a) == "export" and b == "kinship.report.build")]
    assert edges == []


def test_render_is_below_report_and_export() -> None:
    """render/ (views: terminal, HTML, the verdict view) imports neither the report builder
    nor the exports; report and export use render, never the other way (issue #11 item 3)."""
    graph = import_graph()
    edges = [(a, b) for a, b in _edges(graph)
             if _layer(a) == "render" and _layer(b) in {"report", "export"}]
    assert edges == []
