"""The text of a YARA rule: identifiers, escaping, strings, code patterns and condition."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from kinship.rules.yara_model import CodePattern, YaraConfig


def rule_name(family: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", family)
    return f"kinship_{ident}"[:128]


def _group_rule_name(family: str, k: int) -> str:
    return f"{rule_name(family)[:120]}_{k}"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")


def render_rule(family: str, strings: Sequence[str], code: Sequence[CodePattern],
                cfg: YaraConfig, *, meta: dict[str, str] | None = None,
                name: str | None = None) -> str:
    """The YARA source for one family (or one group of it, named ``name``)."""
    name = name or rule_name(family)
    lines = [f"rule {name}", "{", "    meta:",
             f'        family = "{_escape(family)}"',
             '        author = "kinship (generated)"']
    for k, v in (meta or {}).items():
        lines.append(f'        {k} = "{_escape(v)}"')
    lines.append("    strings:")
    for n, s in enumerate(strings):
        lines.append(f'        $s{n} = "{_escape(s)}" ascii wide')
    by_arch: dict[str, list[CodePattern]] = {}
    for c in code:
        by_arch.setdefault(c.arch, []).append(c)
    for arch, pats in sorted(by_arch.items()):
        for n, c in enumerate(pats):
            where = c.function_name or f"0x{c.function_va:x}"
            lines.append(f"        $c_{arch}_{n} = {{ {c.hex} }}  // {where}")
    conds: list[str] = []
    if strings:
        need = max(cfg.strings_needed, math.ceil(cfg.strings_share * len(strings)))
        conds.append(f"{min(need, len(strings))} of ($s*)")
    for arch in sorted(by_arch):
        conds.append(f"all of ($c_{arch}_*)")
    lines += ["    condition:", "        " + (" or ".join(f"({c})" for c in conds) or "false"),
              "}"]
    return "\n".join(lines) + "\n"

