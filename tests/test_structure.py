"""Sizes in ``src/kinship``: no module over ``MAX_MODULE_LINES`` lines, no function over
``MAX_FUNCTION_LINES`` (issue #11: "No module over ~500 lines, no function over ~80 lines").

A module's size is its line count (``wc -l``); a function's runs from its ``def`` line to its
last line (nested functions and methods count on their own, and inside the function that
holds them).

Known exceptions are listed by name with their size today and the work that removes them. An
entry fails the test when its module or function grows past the size recorded here, and when
it is back within the limit (the entry is stale: remove it), so the lists only shrink.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "src" / "kinship"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# Module (path under src/kinship) -> (lines today, what removes the entry).
ALLOWED_LONG_MODULES: dict[str, tuple[int, str]] = {
}

# Function ("path::qualified.name") -> (lines today, what removes the entry).
ALLOWED_LONG_FUNCTIONS: dict[str, tuple[int, str]] = {
}


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR).as_posix()


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache
def module_sizes() -> dict[str, int]:
    """Path under src/kinship -> lines."""
    return {_relative(p): len(p.read_text(encoding="utf-8").splitlines()) for p in _sources()}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function in ``tree``, nested ones included."""
    out: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                out.append((name, node.end_lineno - node.lineno + 1))
            out += _functions(node, f"{name}.")
        else:
            out += _functions(node, prefix)
    return out


@functools.cache
def function_sizes() -> dict[str, int]:
    """``path::qualified.name`` -> lines (the longest, when a name is defined twice)."""
    sizes: dict[str, int] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, lines in _functions(tree):
            key = f"{_relative(path)}::{name}"
            sizes[key] = max(lines, sizes.get(key, 0))
    return sizes


def _check(sizes: dict[str, int], limit: int, allowed: dict[str, tuple[int, str]],
           what: str) -> None:
    over = {k: n for k, n in sizes.items() if n > limit}
    unexpected = sorted(f"{k} ({n} lines)" for k, n in over.items() if k not in allowed)
    assert not unexpected, f"{what} over {limit} lines: {unexpected}"
    grown = sorted(f"{k}: {sizes[k]} lines, listed at {n}" for k, (n, _) in allowed.items()
                   if k in over and sizes[k] > n)
    assert not grown, f"listed {what} that grew: {grown}"
    stale = sorted(f"{k} ({sizes.get(k, 'gone')})" for k in allowed if k not in over)
    assert not stale, f"listed {what} now within {limit} lines or gone (remove them): {stale}"


def test_sizes_are_measured() -> None:
    """The walk finds modules, methods and nested functions."""
    modules, functions = module_sizes(), function_sizes()
    assert len(modules) > 50
    assert "workers.py" in modules
    assert "workers.py::map_resilient" in functions
    assert "workers.py::_Pool.reap" in functions  # a method
    tree = ast.parse("def f():\n    def g():\n        pass\n    return g\n")
    assert _functions(tree) == [("f", 4), ("f.g", 2)]


def test_no_module_over_the_limit() -> None:
    _check(module_sizes(), MAX_MODULE_LINES, ALLOWED_LONG_MODULES, "modules")


def test_no_function_over_the_limit() -> None:
    _check(function_sizes(), MAX_FUNCTION_LINES, ALLOWED_LONG_FUNCTIONS, "functions")


# docs/ARCHITECTURE.md (issue #11 item 6): links stay inside the repository and the knobs it
# quotes have the values the code has.
ARCHITECTURE = PACKAGE_DIR.parent.parent / "docs" / "ARCHITECTURE.md"


def test_architecture_doc_links_stay_in_the_repository() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    for target in re.findall(r"\]\(([^)]+)\)", text):
        path = target.split("#", 1)[0]
        assert path and not path.startswith(("/", "..")), f"link out of the repository: {target}"
        assert (ARCHITECTURE.parent / path).is_file(), f"broken link: {target}"


def test_architecture_doc_numbers_match_the_code() -> None:
    """Every ``knob` = N`` or ``knob` (N)`` the document quotes for a config field is the
    field's default (``5%`` reads 0.05)."""
    from kinship.index.config import IndexConfig
    from kinship.match.combine import CombineConfig
    from kinship.match.config import MatchConfig
    from kinship.rules.yara_gen import YaraConfig

    defaults: dict[str, float] = {}
    for cfg in (MatchConfig(), IndexConfig(), CombineConfig(), YaraConfig()):
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                defaults[f.name] = float(value)
    text = ARCHITECTURE.read_text(encoding="utf-8")
    quoted = re.findall(r"`(?:\w+\.)?(\w+)`\s*(?:=|\()\s*(\d+(?:\.\d+)?)(%?)", text)
    checked = [(name, float(n) / (100 if pct else 1)) for name, n, pct in quoted
               if name in defaults]
    assert len(checked) >= 8, checked  # the walk finds the knobs
    wrong = [f"{name}: doc {v}, code {defaults[name]}" for name, v in checked
             if abs(v - defaults[name]) > 1e-9]
    assert not wrong, wrong
