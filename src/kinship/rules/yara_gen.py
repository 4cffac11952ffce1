"""Per-family YARA rules from what a family's samples share and nobody else has.

    family files ──> candidate strings and code patterns of each sample (below)
                 ──> minus every item any other stored sample contains (one YARA probe scan)
                 ──> groups: samples linked by >= group_min_strings distinctive strings or
                     >= min_code_patterns code patterns (connected components, split greedily
                     while a component has too little in common)
        -> one rule per group: (K of ($s*)) or (all of ($c_<arch>*) for some arch), made of the
           items every sample of the group has; "kinship_<family>" for a one-group family,
           "kinship_<family>_<k>" otherwise
        -> validate on the store (the group's samples; FPR 0 on every other family's samples)
        -> leave-one-out: for each sample, the rules made from the family's n-1 others must
           match it (see :class:`~kinship.rules.yara_validate.LeaveOneOut`)

What a rule never takes (an analyst writing the rule by hand would not either):

- bytes of loader tables: relocations (PE .reloc and the base-relocation directory, ELF
  .rel/.rela), import and export tables (descriptors, thunks, hint/name entries, DLL names,
  ELF .dynsym/.dynstr/.gnu.version), exception/unwind tables, notes, debug sections (DWARF
  "GNU C17 ..." producer strings), bytes outside every section (COFF symbol table, overlay);
- the names of imported functions and libraries, and a hint + name entry; toolchain banners
  ("GCC: (GNU) 12-win32", mingw-w64-crt source paths), texts every runtime has ("(null)") and
  printable noise without a word in it (:func:`is_boilerplate_text`);
- padding: code patterns stop at int3 and skip alignment NOPs with a YARA jump
  (``[0-15]``), so no byte of 0x00/0xCC/0x90 filler is part of a pattern;
- library and runtime code: functions whose VAs ``library`` returns (the store's library
  corpus and compiler-runtime baseline, :meth:`kinship.api.Kinship.library_functions`) give no
  code patterns, and strings referenced only by such functions (directly, or through a table
  of pointers that only they reference) are not used.

Export names of the family's own functions stay candidates (a DLL's API is part of what it
is), minus the names every DLL or shared object exports (``DllMain``, ``_init``...).

Wildcarding, per instruction (iced-x86 constant offsets): 4- and 8-byte displacements,
near-branch displacements, 4/8-byte immediates that are addresses, and every byte a PE base
relocation patches become ``??``; small immediates and constants (hash seeds, magic numbers)
stay, because they are what makes code distinctive.

Where each part lives: :mod:`~kinship.rules.yara_model` (``YaraConfig``, ``CodePattern``,
``FamilyRule``), :mod:`~kinship.rules.yara_exclude` (what a rule may not take; a member
loaded with it), :mod:`~kinship.rules.yara_candidates` (a member's candidate strings and
code patterns), :mod:`~kinship.rules.yara_text` (the rule text); this module probes the
candidates against the other samples, groups the samples and makes and validates the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kinship.disasm.model import Function
from kinship.rules.yara_candidates import (
    _is_padding,
    _patterns,
    _string_rank,
    _strings,
    function_pattern,
)
from kinship.rules.yara_exclude import (
    MAX_POINTER_TABLE,
    MAX_RELOCATIONS,
    MIN_ALNUM_SHARE,
    _load,
    _Member,
    is_boilerplate_text,
    is_table_section,
)
from kinship.rules.yara_model import CodePattern, FamilyRule, LibraryFunctions, YaraConfig
from kinship.rules.yara_text import _escape, _group_rule_name, render_rule, rule_name
from kinship.rules.yara_validate import (
    HeldOut,
    LeaveOneOut,
    compile_rule,
    matching_identifiers,
    matching_rules,
    validate,
)

# Names kept importable from here (the module was split for issue #11).
__all__ = [
    "MAX_POINTER_TABLE",
    "MAX_PROBE_ITEMS",
    "MAX_PROBE_ITEMS_PER_RULE",
    "MAX_RELOCATIONS",
    "MIN_ALNUM_SHARE",
    "CodePattern",
    "FamilyRule",
    "LibraryFunctions",
    "YaraConfig",
    "_is_padding",
    "function_pattern",
    "generate_family_rule",
    "group_samples",
    "is_boilerplate_text",
    "is_table_section",
    "render_rule",
    "rule_name",
]

logger = logging.getLogger(__name__)

# Items per YARA probe rule (YARA's default limit is 10000 strings per rule).
MAX_PROBE_ITEMS_PER_RULE = 4000
# Items probed against the other samples per family (strings and code patterns together):
# bounds the scan of a family of hundreds of samples; the most shared items go first.
MAX_PROBE_ITEMS = 12000


@dataclass
class _Items:
    """A sample's distinctive rule material (what no other family's sample contains)."""

    member: _Member
    strings: set[str]
    code: dict[str, tuple[int, Function]]  # hex -> (fixed bytes, function)

    @property
    def arch(self) -> str:
        return self.member.binary.arch.value


# ---- probing --------------------------------------------------------------------------------
def _drop_hitting(items: dict[str, str], others: dict[str, Path]) -> set[str]:
    """Identifiers of ``items`` (id -> yara string line) found in any other sample."""
    if not items or not others:
        return set()
    keys = list(items)
    hit: set[str] = set()
    for i in range(0, len(keys), MAX_PROBE_ITEMS_PER_RULE):
        body = "\n".join(f"        {k} = {items[k]}"
                         for k in keys[i:i + MAX_PROBE_ITEMS_PER_RULE])
        compiled = compile_rule("rule probe\n{\n    strings:\n" + body +
                                "\n    condition:\n        any of them\n}\n")
        for path in others.values():
            hit |= matching_identifiers(compiled, path)
    return hit


def _distinctive(members: list[_Member], others: dict[str, Path], cfg: YaraConfig
                 ) -> dict[str, _Items]:
    """Each member's candidate items minus those any other sample contains.

    Probed: every item two members share, and each member's best own items (what a rule
    from that member alone would use), most shared first, at most MAX_PROBE_ITEMS.
    """
    cand = {m.sha256: (_strings(m, cfg), _patterns(m, cfg)) for m in members}
    s_count: dict[str, int] = {}
    c_count: dict[str, int] = {}
    for strs, pats in cand.values():
        for s in strs:
            s_count[s] = s_count.get(s, 0) + 1
        for h in pats:
            c_count[h] = c_count.get(h, 0) + 1
    want_s = {s for s, n in s_count.items() if n >= 2}
    want_c = {h for h, n in c_count.items() if n >= 2}
    for strs, pats in cand.values():
        want_s.update(sorted(strs, key=_string_rank)[: cfg.max_strings * 20])
        want_c.update(sorted(pats, key=lambda h: (-pats[h][0], h))[: cfg.max_code_patterns * 8])
    ranked_s = sorted(want_s, key=lambda s: (-s_count[s], _string_rank(s)))
    ranked_c = sorted(want_c, key=lambda h: (-c_count[h], h))
    budget = MAX_PROBE_ITEMS
    ranked_s = ranked_s[:budget * 2 // 3]
    ranked_c = ranked_c[:budget - len(ranked_s)]
    probe = {f"$s{n}": f'"{_escape(s)}" ascii wide' for n, s in enumerate(ranked_s)}
    probe.update({f"$c{n}": f"{{ {h} }}" for n, h in enumerate(ranked_c)})
    hit = _drop_hitting(probe, others)
    good_s = {s for n, s in enumerate(ranked_s) if f"$s{n}" not in hit}
    good_c = {h for n, h in enumerate(ranked_c) if f"$c{n}" not in hit}
    return {m.sha256: _Items(m, cand[m.sha256][0] & good_s,
                             {h: v for h, v in cand[m.sha256][1].items() if h in good_c})
            for m in members}


# ---- groups ---------------------------------------------------------------------------------
def _common(group: Sequence[_Items]) -> tuple[set[str], dict[str, set[str]]]:
    """Strings every sample of ``group`` has, and per architecture the code patterns every
    sample of that architecture has."""
    strings = set.intersection(*(g.strings for g in group))
    code: dict[str, set[str]] = {}
    for g in group:
        code[g.arch] = set(g.code) if g.arch not in code else code[g.arch] & set(g.code)
    return strings, code


def _enough(group: Sequence[_Items], cfg: YaraConfig) -> bool:
    """Whether ``group`` has enough in common for one rule to cover it."""
    strings, code = _common(group)
    if len(strings) >= (1 if len(group) == 1 else cfg.group_min_strings):
        return True
    return all(len(c) >= cfg.min_code_patterns for c in code.values())


def group_samples(items: dict[str, _Items], cfg: YaraConfig) -> list[list[str]]:
    """Groups of samples (sha256) that share code or strings, largest first.

    Connected components of the graph "shares >= group_min_strings distinctive strings or
    >= min_code_patterns distinctive code patterns"; a component whose samples have too
    little in common all together (a chain A-B-C where A and C share nothing) is split
    greedily, in sha256 order, into groups that do.
    """
    keys = sorted(items)
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if find(a) == find(b):
                continue
            ia, ib = items[a], items[b]
            if len(ia.strings & ib.strings) >= cfg.group_min_strings or (
                    ia.arch == ib.arch
                    and len(set(ia.code) & set(ib.code)) >= cfg.min_code_patterns):
                parent[find(b)] = find(a)
    comps: dict[str, list[str]] = {}
    for k in keys:
        comps.setdefault(find(k), []).append(k)
    groups: list[list[str]] = []
    for comp in comps.values():
        rest = list(comp)
        while rest:
            group = [rest.pop(0)]
            if not _enough([items[k] for k in group + rest], cfg):
                for k in list(rest):
                    if _enough([items[g] for g in [*group, k]], cfg):
                        group.append(k)
                        rest.remove(k)
            else:
                group += rest
                rest = []
            groups.append(group)
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _group_rule(family: str, name: str, group: Sequence[_Items], files: dict[str, Path],
                others: dict[str, Path], cfg: YaraConfig, *, check: bool) -> FamilyRule | None:
    """The rule for one group, validated on the store when ``check``."""
    common_strings, common_code = _common(group)
    strings = sorted(common_strings, key=_string_rank)[: cfg.max_strings]
    code: list[CodePattern] = []
    for arch in sorted(common_code):
        first = next(g for g in group if g.arch == arch)
        ranked = sorted(common_code[arch], key=lambda h: (-first.code[h][0], h))
        if len(ranked) < cfg.min_code_patterns:
            continue
        for h in ranked[: cfg.max_code_patterns]:
            f = first.code[h][1]
            code.append(CodePattern(arch, h, f.va, f.name, first.member.sha256))
    members = sorted(g.member.sha256 for g in group)
    meta = {"members": str(len(members)), "generator": "kinship.rules.yara_gen"}
    dropped: list[str] = []
    for _ in range(cfg.max_refinements + 1):
        if not strings and not code:
            logger.info("%s: nothing shared by every sample of %s and absent elsewhere",
                        family, name)
            return None
        text = render_rule(family, strings, code, cfg, meta=meta, name=name)
        if not check:
            return FamilyRule(family, name, text, strings, code, members=members)
        group_files = {k: files[k] for k in members}
        v = validate(text, group_files, others)
        if v.ok:
            return FamilyRule(family, name, text, strings, code, v, dropped, members=members)
        # refine: a condition too weak for the others -> require more strings; code missing in
        # some member -> drop the code patterns
        if v.false_positives and cfg.strings_needed < len(strings):
            cfg = YaraConfig(**{**cfg.__dict__, "strings_needed": cfg.strings_needed + 1})
            continue
        if v.false_negatives and code:
            dropped += [c.hex for c in code]
            code = []
            continue
        break
    logger.info("%s: no rule for %s passes validation (TPR 1, FPR 0)", family, name)
    return None


def _family_rules(family: str, items: dict[str, _Items], files: dict[str, Path],
                  others: dict[str, Path], cfg: YaraConfig, *, check: bool
                  ) -> tuple[list[FamilyRule], list[str]]:
    """One rule per group of ``items``' samples, and the samples no rule covers."""
    groups = group_samples(items, cfg)
    rules: list[FamilyRule] = []
    uncovered: list[str] = []
    for k, group in enumerate(groups, 1):
        name = rule_name(family) if len(groups) == 1 else _group_rule_name(family, k)
        r = _group_rule(family, name, [items[h] for h in group], files, others, cfg,
                        check=check)
        if r is None:
            uncovered += group
        else:
            rules.append(r)
    return rules, sorted(uncovered)


def _leave_one_out(family: str, items: dict[str, _Items], files: dict[str, Path],
                   cfg: YaraConfig) -> LeaveOneOut:
    """For each sample (at most max_leave_one_out), the rules from the others must match it."""
    keys = sorted(items)
    if len(keys) < 2 or cfg.max_leave_one_out <= 0:
        return LeaveOneOut(skipped=len(keys))
    n_held = min(len(keys), cfg.max_leave_one_out)
    held = [keys[i * len(keys) // n_held] for i in range(n_held)]
    out = LeaveOneOut(skipped=len(keys) - n_held)
    for h in held:
        rest = {k: v for k, v in items.items() if k != h}
        rules, _ = _family_rules(family, rest, files, {}, cfg, check=False)
        if not rules:
            out.samples.append(HeldOut(h, False, None, len(rest),
                                       f"no rule from the other {len(rest)} samples"))
            continue
        names = matching_rules(compile_rule("\n".join(r.text for r in rules)), files[h])
        out.samples.append(HeldOut(
            h, bool(names), names[0] if names else None, len(rest),
            "" if names else f"the rules from the other {len(rest)} samples do not match"))
    return out


def generate_family_rule(
    family: str,
    members: dict[str, Path],
    others: dict[str, Path],
    config: YaraConfig | None = None,
    *,
    library: LibraryFunctions | None = None,
) -> FamilyRule | None:
    """Validated rules for ``family`` (sha256 -> file of each member), or None if none holds.

    ``others`` are every other stored sample's files; no rule may hit any of them.
    ``library`` gives the VAs of a sample's library/runtime functions
    (:meth:`kinship.api.Kinship.library_functions`); their code and the strings only they use
    are never rule material. The result has one rule per group of samples that share code
    (``groups``), its validation on the store, and leave-one-out over the family.
    """
    cfg = config or YaraConfig()
    if not members:
        return None
    loaded = [_load(p, library) for _, p in sorted(members.items())]
    items = _distinctive(loaded, others, cfg)
    rules, uncovered = _family_rules(family, items, members, others, cfg, check=True)
    if not rules:
        logger.info("%s: no group of its samples has a rule", family)
        return None
    loo = _leave_one_out(family, items, members, cfg)
    for r in rules:
        r.leave_one_out = LeaveOneOut([h for h in loo.samples if h.sample in r.members])
    if len(rules) == 1 and not uncovered:
        top = rules[0]
        return FamilyRule(top.family, top.name, top.text, top.strings, top.code,
                          top.validation, top.dropped, list(top.members), loo, rules, [])
    text = "\n".join(r.text for r in rules)
    strings = list(dict.fromkeys(s for r in rules for s in r.strings))
    return FamilyRule(family, rule_name(family), text, strings,
                      [c for r in rules for c in r.code], validate(text, members, others),
                      [d for r in rules for d in r.dropped], sorted(members), loo, rules,
                      uncovered)
