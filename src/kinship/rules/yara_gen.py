"""Per-family YARA rules from what a family's samples share and nobody else has.

    family files ──> strings present in every member      ─┐  minus anything that the other
                └──> function prologues (first ~48 bytes,  ├─ samples' files contain
                     addresses/relocations -> ??) present  ─┘  (scanned with yara itself)
                     in every member of one architecture
        -> rule "kinship_<family>": (K of ($s*)) or (all of ($c_<arch>*) for some arch)
        -> validate (TPR 1.0, FPR 0.0 on the store) -> refine (drop hitting items) or drop

Wildcarding, per instruction (iced-x86 constant offsets): 4- and 8-byte displacements,
near-branch displacements, and 4/8-byte immediates that are addresses become ``??``; small
immediates and constants (hash seeds, magic numbers) stay, because they are what makes code
distinctive.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import iced_x86 as iced

from kinship.binary.model import Binary
from kinship.disasm.model import Flow, Function
from kinship.intel.iocs import file_strings
from kinship.pipeline import SampleInput, analyse
from kinship.rules.yara_validate import (
    Validation,
    compile_rule,
    matching_identifiers,
    validate,
)
from kinship.strings.rarity import intrinsic_weight

logger = logging.getLogger(__name__)


@dataclass
class YaraConfig:
    """Knobs of rule generation."""

    # Shortest string kept as a rule string, characters (3..64). Shorter ones are too common.
    min_string_len: int = 6
    # Longest string kept, characters (16..1024); longer ones are cut (YARA limit is 4096).
    max_string_len: int = 200
    # Strings per rule (1..50), longest/most specific first.
    max_strings: int = 12
    # Strings that must match: min(this, number of strings) (1..10) ...
    strings_needed: int = 2
    # ... and at least this share of the rule's strings (0..1, rounded up). Every member has
    # every string, so a high share costs little recall on the family, and it keeps a rule
    # from firing on a relative that shares a few runtime/framework strings (wine's debug
    # channel helpers, a Python extension's module boilerplate).
    strings_share: float = 0.4
    # Code patterns per architecture (0..20).
    max_code_patterns: int = 4
    # An architecture with fewer shared code patterns gets no code condition (1..20): one
    # short prologue is often a toolchain or framework stub (wine's debug-channel helpers).
    min_code_patterns: int = 2
    # Bytes of a function's start that form a code pattern (16..256).
    code_window: int = 48
    # A code pattern needs at least this many fixed (non-wildcard) bytes (8..128).
    min_fixed_bytes: int = 20
    # Functions smaller than this (bytes) are not used: stubs and thunks are shared by all.
    min_function_size: int = 24
    # Refinement rounds (drop the items that hit other samples, rebuild, revalidate) (0..5).
    max_refinements: int = 2


@dataclass(frozen=True, slots=True)
class CodePattern:
    arch: str  # "x86" | "x64"
    hex: str  # "55 89 E5 ?? ?? ?? ?? 8B 45 08"
    function_va: int  # in the first member, for provenance
    function_name: str | None
    sample: str  # sha256 of that member


@dataclass
class FamilyRule:
    family: str
    name: str  # YARA rule identifier
    text: str  # the rule source
    strings: list[str]
    code: list[CodePattern]
    validation: Validation | None = None
    dropped: list[str] = field(default_factory=list)  # items removed while refining

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family, "name": self.name, "text": self.text,
            "strings": list(self.strings),
            "code": [{"arch": c.arch, "hex": c.hex, "function_va": c.function_va,
                      "function_name": c.function_name, "sample": c.sample}
                     for c in self.code],
            "validation": self.validation.to_dict() if self.validation else None,
            "dropped": list(self.dropped),
        }


@dataclass
class _Member:
    sha256: str
    path: Path
    binary: Binary
    functions: list[Function]


def rule_name(family: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", family)
    return f"kinship_{ident}"[:128]


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")


def function_pattern(binary: Binary, f: Function, window: int) -> tuple[str, int] | None:
    """Hex pattern of the first ``window`` bytes of ``f`` (whole instructions), fixed bytes."""
    insns = sorted(f.instructions(), key=lambda i: i.va)
    if not insns or insns[0].va != f.va:
        return None
    tokens: list[str] = []
    fixed = 0
    expect = f.va
    for ins in insns:
        if ins.va != expect or len(tokens) + ins.size > window:
            break
        raw = binary.read(ins.va, ins.size)
        if len(raw) != ins.size:
            break
        dec = iced.Decoder(binary.bitness, raw, ip=ins.va)
        di = dec.decode()
        co = dec.get_constant_offsets(di)
        wild = [False] * ins.size
        if co.has_displacement and co.displacement_size >= 4:
            for k in range(co.displacement_offset, co.displacement_offset + co.displacement_size):
                wild[k] = True
        if co.has_immediate and co.immediate_size >= 4 and (
                ins.flow in (Flow.CALL, Flow.JUMP, Flow.COND) or ins.data_ref is not None
                or ins.target is not None or binary.section_for(int.from_bytes(
                    raw[co.immediate_offset:co.immediate_offset + co.immediate_size],
                    "little")) is not None):
            for k in range(co.immediate_offset, co.immediate_offset + co.immediate_size):
                wild[k] = True
        for k, byte in enumerate(raw):
            tokens.append("??" if wild[k] else f"{byte:02X}")
            fixed += 0 if wild[k] else 1
        expect = ins.va + ins.size
        if ins.flow in (Flow.RET, Flow.JUMP, Flow.INDIRECT_JUMP, Flow.INT):
            break
    while tokens and tokens[-1] == "??":  # YARA hex strings may not end with a wildcard
        tokens.pop()
    if not tokens or tokens[0] == "??":
        return None
    return " ".join(tokens), fixed


def _load(path: Path) -> _Member:
    s = analyse(SampleInput(name=str(path), path=path), keep=True)
    assert s.binary is not None and s.disassembly is not None
    return _Member(s.record.sha256, path, s.binary, s.disassembly.functions)


def _imported_names(b: Binary) -> set[str]:
    """Names of imported functions and libraries: they say which API or runtime a sample
    uses (every Python extension imports ``PyObject_GetAttr``), not which family it is."""
    out: set[str] = set()
    for i in b.imports:
        out.add(i.name)
        if i.library:
            out.add(i.library)
            out.add(i.library.rsplit(".", 1)[0])
    return out


def _strings(m: _Member, cfg: YaraConfig) -> set[str]:
    out = set()
    imported = _imported_names(m.binary)
    for s in file_strings(m.binary):
        t = s.text.strip()
        if len(t) >= cfg.min_string_len and len(set(t)) > 3 and t not in imported:
            out.add(t[: cfg.max_string_len])
    return out


def _string_rank(s: str) -> tuple[float, int, str]:
    """Most specific first: sentences and paths (intrinsic weight) before identifiers, then
    the longest."""
    return (-intrinsic_weight(s), -len(s), s)


def _patterns(m: _Member, cfg: YaraConfig) -> dict[str, tuple[int, Function]]:
    out: dict[str, tuple[int, Function]] = {}
    for f in m.functions:
        if f.size < cfg.min_function_size:
            continue
        p = function_pattern(m.binary, f, cfg.code_window)
        if p is not None and p[1] >= cfg.min_fixed_bytes:
            out.setdefault(p[0], (p[1], f))
    return out


def render_rule(family: str, strings: Sequence[str], code: Sequence[CodePattern],
                cfg: YaraConfig, *, meta: dict[str, str] | None = None) -> str:
    """The YARA source for one family."""
    name = rule_name(family)
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


def _drop_hitting(items: dict[str, str], others: dict[str, Path]) -> set[str]:
    """Identifiers of ``items`` (id -> yara string line) found in any other sample."""
    if not items or not others:
        return set()
    body = "\n".join(f"        {k} = {v}" for k, v in items.items())
    compiled = compile_rule("rule probe\n{\n    strings:\n" + body +
                            "\n    condition:\n        any of them\n}\n")
    hit: set[str] = set()
    for path in others.values():
        hit |= matching_identifiers(compiled, path)
    return hit


def generate_family_rule(
    family: str,
    members: dict[str, Path],
    others: dict[str, Path],
    config: YaraConfig | None = None,
) -> FamilyRule | None:
    """A validated rule for ``family`` (sha256 -> file of each member), or None if none holds.

    ``others`` are every other stored sample's files; the rule must hit none of them.
    """
    cfg = config or YaraConfig()
    if not members:
        return None
    loaded = [_load(p) for _, p in sorted(members.items())]
    common_strings = set.intersection(*(_strings(m, cfg) for m in loaded))
    code: list[CodePattern] = []
    by_arch: dict[str, list[_Member]] = {}
    for m in loaded:
        by_arch.setdefault(m.binary.arch.value, []).append(m)
    candidates: dict[str, list[CodePattern]] = {}
    for arch, ms in by_arch.items():
        pats = [_patterns(m, cfg) for m in ms]
        shared = set(pats[0]).intersection(*pats[1:])
        ranked = sorted(shared, key=lambda h: (-pats[0][h][0], h))
        candidates[arch] = [CodePattern(arch, h, pats[0][h][1].va, pats[0][h][1].name,
                                        ms[0].sha256) for h in ranked[: cfg.max_code_patterns * 8]]
    # remove what the others contain (one yara scan per other file for all candidates)
    probe: dict[str, str] = {}
    ordered = sorted(common_strings, key=_string_rank)[: cfg.max_strings * 20]
    for n, s in enumerate(ordered):
        probe[f"$s{n}"] = f'"{_escape(s)}" ascii wide'
    flat = [c for arch in sorted(candidates) for c in candidates[arch]]
    for n, c in enumerate(flat):
        probe[f"$c{n}"] = f"{{ {c.hex} }}"
    hit = _drop_hitting(probe, others)
    strings = [s for n, s in enumerate(ordered) if f"$s{n}" not in hit][: cfg.max_strings]
    per_arch: dict[str, int] = {}
    for n, c in enumerate(flat):
        if f"$c{n}" not in hit and per_arch.get(c.arch, 0) < cfg.max_code_patterns:
            code.append(c)
            per_arch[c.arch] = per_arch.get(c.arch, 0) + 1
    for arch, n in per_arch.items():
        if n < cfg.min_code_patterns:
            code = [c for c in code if c.arch != arch]
    dropped = [probe[k] for k in sorted(hit)]
    meta = {"members": str(len(members)), "generator": "kinship.rules.yara_gen"}
    for _ in range(cfg.max_refinements + 1):
        if not strings and not code:
            logger.info("%s: nothing shared by every member and absent elsewhere", family)
            return None
        text = render_rule(family, strings, code, cfg, meta=meta)
        v = validate(text, members, others)
        rule = FamilyRule(family, rule_name(family), text, strings, code, v, dropped)
        if v.ok:
            return rule
        # refine: a condition too weak for the others -> require more strings; code missing in
        # some member -> drop the code patterns of that architecture
        if v.false_positives and cfg.strings_needed < len(strings):
            cfg = YaraConfig(**{**cfg.__dict__, "strings_needed": cfg.strings_needed + 1})
            continue
        if v.false_negatives and code:
            dropped += [c.hex for c in code]
            code = []
            continue
        break
    logger.info("%s: no rule passes validation (TPR 1, FPR 0)", family)
    return None
