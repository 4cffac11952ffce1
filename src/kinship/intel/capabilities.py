"""Capabilities and ATT&CK techniques from code: capa's rule engine over kinship's disassembly.

    kinship's own rules (intel/rules/*.yml, always)  +  capa rules (optional: --capa-rules /
    $KINSHIP_CAPA_RULES)  -> LoadedRules (capa RuleSet + which rule sets ran, and why not)
        -> capa.find_capabilities(KinshipCapaExtractor, library functions skipped)
        -> CapabilitiesResult

Each capability keeps its evidence: the function that matched (address, name) and the features
that made it match (api, string, number ...). Techniques gather capabilities by ATT&CK id.
The capa rules directory is never assumed: it comes from the caller or the environment; without
it kinship's own rules run alone and the result says so (``rule_sets``). Library code (the
compiler runtime, a library corpus: :meth:`kinship.api.Kinship.library_functions`) is not
searched, the way capa skips FLIRT-recognised functions: a CRT that parses a PE header is not
the program "using shared modules".
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import computed_field, field_serializer

from kinship.binary.model import Binary
from kinship.disasm.disassembly import Disassembly
from kinship.document import Document, Meta, MetaFn
from kinship.exceptions import UsageError
from kinship.intel.capa_extractor import KinshipCapaExtractor

if TYPE_CHECKING:
    from kinship.pipeline import AnalysedSample

logger = logging.getLogger(__name__)

RULES_ENV = "KINSHIP_CAPA_RULES"  # directory of capa rules (e.g. a capa-rules checkout)
CACHE_ENV = "KINSHIP_CAPA_CACHE"  # where capa may cache the compiled rule set
BUILTIN_RULES = Path(__file__).parent / "rules"
KINSHIP_RULE_SET = "kinship"  # the rules shipped in BUILTIN_RULES
CAPA_RULE_SET = "capa-rules"  # Mandiant's capa-rules, when the user points at a checkout
CAPA_RULES_URL = "https://github.com/mandiant/capa-rules"
# One capability lists at most this many locations (a rule can match thousands of insns).
MAX_LOCATIONS = 20
# Evidence kept per location: features shown, so a report stays readable.
MAX_EVIDENCE_FEATURES = 12
_ATTACK_ID = re.compile(r"\[(T\d{4}(?:\.\d{3})?)\]")
_MBC_ID = re.compile(r"\[([A-Z]\d{4}(?:\.\d{3})?)\]")
_EVIDENCE_KINDS = ("api", "string", "substring", "regex", "number", "bytes", "characteristic",
                   "import", "export", "section", "mnemonic", "offset")


@dataclass
class CapabilitiesConfig:
    """Where the rules come from."""

    # capa rules directory; None = $KINSHIP_CAPA_RULES; neither: kinship's own rules only.
    rules_dir: Path | None = None
    # Load kinship's own rules (intel/rules/*.yml: netsh firewall, process creation ...).
    # They need nothing else, so they run whether capa rules are there or not.
    builtin_rules: bool = True
    # Include capa's nursery/ rules (unfinished, more false positives). Default True like capa.
    nursery: bool = True
    # Cache directory for capa's compiled rule set; None = $KINSHIP_CAPA_CACHE, else capa's.
    cache_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class RuleSetStatus(Document):
    """One rule set a run considered: used (how many rules it gave) or not, and why not."""

    name: str  # KINSHIP_RULE_SET or CAPA_RULE_SET
    path: str | None  # its directory; None when none was given
    used: bool
    n_rules: int = 0  # rules loaded from it (capa's helper rules included)
    reason: str | None = None  # why it was not used, one sentence; None when used
    # the same as a code, for renderers that word it themselves (report --lang ja):
    # "not_given" | "not_a_directory" | "turned_off"; None when used
    reason_code: str | None = None

    def describe(self) -> str:
        """One line for people: "kinship (3 rules, /x/rules)" or "capa-rules: not used: ..."."""
        if self.used:
            return f"{self.name}: {self.n_rules} rules from {self.path}"
        return f"{self.name}: not used: {self.reason}"


@dataclass
class LoadedRules:
    """A capa ``RuleSet`` and the rule sets it was built from (or could not be)."""

    ruleset: Any
    sets: list[RuleSetStatus]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a capability matched: an address in a function, and the features seen there."""

    va: int
    function_va: int | None
    function_name: str | None
    features: tuple[str, ...] = ()  # e.g. ("api(CreateProcess)", 'substring("netsh")')


@dataclass(frozen=True)
class Capability(Document):
    rule: str
    namespace: str | None
    scope: str
    attack: list[str]  # ATT&CK ids, e.g. ["T1562.004"]
    attack_names: list[str]  # the rule's own "Tactic::Technique::Sub [id]" strings
    mbc: list[str]
    evidence: list[Evidence]
    source: str  # "capa-rules" or "kinship"


@dataclass(frozen=True)
class TechniqueHit(Document):
    """One ATT&CK technique seen in the sample, with the capabilities that show it."""

    id: str
    name: str | None
    tactics: list[str]
    rules: list[str]
    evidence: list[Evidence]

    @computed_field  # type: ignore[prop-decorator]  # a JSON key (listed after the fields)
    @property
    def function_vas(self) -> list[int]:
        return sorted({e.function_va for e in self.evidence if e.function_va is not None})


@dataclass(frozen=True)
class CapabilitiesResult(Document):
    sha256: str
    name: str
    capabilities: list[Capability]
    techniques: list[TechniqueHit]
    n_rules: int
    rules_source: str
    seconds: float
    warnings: list[str] = field(default_factory=list)
    # every rule set considered: which ran (name, path, rule count) and which did not, and why
    rule_sets: list[RuleSetStatus] = field(default_factory=list)
    n_functions: int = 0  # functions in the sample
    # of those, recognised as library code (compiler runtime, library corpus) and not searched
    n_library_functions: int = 0
    # why library code could not be recognised (None: it was looked for)
    library_note: str | None = None
    meta: Meta | None = None  # kinship.document: version, store, time (None: not filled)

    @field_serializer("seconds")
    def _seconds_json(self, seconds: float) -> float:
        return round(seconds, 3)


def rules_dir(option: str | Path | None) -> Path:
    """The capa rules directory from the option or ``$KINSHIP_CAPA_RULES``; UsageError if none."""
    raw = str(option) if option else os.environ.get(RULES_ENV, "").strip()
    if not raw:
        raise UsageError(
            f"no capa rules: give --capa-rules DIR or set ${RULES_ENV} "
            "(a checkout of https://github.com/mandiant/capa-rules)")
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise UsageError(f"capa rules directory not found: {path}")
    return path


@lru_cache(maxsize=4)
def _load(paths: tuple[str, ...], nursery: bool, cache_dir: str | None) -> Any:
    import capa.rules

    files = capa.rules.collect_rule_file_paths([Path(p) for p in paths])
    if not nursery:
        files = [f for f in files if not capa.rules.is_nursery_rule_path(f)]
    kwargs: dict[str, Any] = {"on_load_rule": lambda *_: None}
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        kwargs["cache_dir"] = Path(cache_dir)
    try:
        return capa.rules.get_rules(list(files), **kwargs)
    except capa.rules.InvalidRule as e:
        raise UsageError(f"invalid capa rule: {e}") from e


def capa_rules_status(option: str | Path | None) -> RuleSetStatus:
    """Where the optional capa rule set is, or why there is none.

    An explicit ``option`` that is not a directory is the caller's mistake (UsageError); a
    missing or stale ``$KINSHIP_CAPA_RULES`` only leaves the set out, with the reason.
    """
    if option:
        return RuleSetStatus(CAPA_RULE_SET, str(rules_dir(option)), True)
    raw = os.environ.get(RULES_ENV, "").strip()
    if not raw:
        return RuleSetStatus(CAPA_RULE_SET, None, False, reason=(
            f"no capa rules given (--capa-rules DIR or ${RULES_ENV}: a checkout of "
            f"{CAPA_RULES_URL})"), reason_code="not_given")
    path = Path(raw).expanduser()
    if not path.is_dir():
        return RuleSetStatus(CAPA_RULE_SET, str(path), False,
                             reason=f"${RULES_ENV} names {path}, which is not a directory",
                             reason_code="not_a_directory")
    return RuleSetStatus(CAPA_RULE_SET, str(path), True)


@lru_cache(maxsize=1)
def _builtin_rule_names() -> frozenset[str]:
    """Names of the rules kinship ships.

    By name, not by ``capa/path``: capa's rule cache is keyed by the rules' content, so a
    cached rule set remembers the directory it was first loaded from (a copy, another
    checkout), not the one it is loaded from now.
    """
    import yaml

    names: set[str] = set()
    for f in sorted(BUILTIN_RULES.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        name = ((doc.get("rule") or {}).get("meta") or {}).get("name")
        if name:
            names.add(str(name))
    return frozenset(names)


def _rule_set_of(rule: Any) -> str:
    name = str(rule.meta.get("name") or getattr(rule, "name", ""))
    return KINSHIP_RULE_SET if name in _builtin_rule_names() else CAPA_RULE_SET


def _count_rules(ruleset: Any) -> dict[str, int]:
    """Rules per rule set (capa's derived subscope rules are not rules anyone wrote)."""
    counts: dict[str, int] = {}
    for rule in ruleset.rules.values():
        if rule.meta.get("capa/subscope-rule"):
            continue
        k = _rule_set_of(rule)
        counts[k] = counts.get(k, 0) + 1
    return counts


def load_rule_sets(config: CapabilitiesConfig | None = None) -> LoadedRules:
    """kinship's own rules, plus the capa rules when there are some (cached per process).

    UsageError only when nothing is left to run or a given capa rule is invalid.
    """
    config = config or CapabilitiesConfig()
    capa = capa_rules_status(config.rules_dir)
    kinship = (RuleSetStatus(KINSHIP_RULE_SET, str(BUILTIN_RULES), True) if config.builtin_rules
               else RuleSetStatus(KINSHIP_RULE_SET, str(BUILTIN_RULES), False,
                                  reason="turned off (CapabilitiesConfig.builtin_rules)",
                                  reason_code="turned_off"))
    paths = [s.path for s in (capa, kinship) if s.used and s.path]
    if not paths:
        raise UsageError(f"no rules to run: {capa.reason}; kinship's rules {kinship.reason}")
    cache = config.cache_dir or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV)
                                 else None)
    ruleset = _load(tuple(paths), config.nursery, str(cache) if cache else None)
    counts = _count_rules(ruleset)
    sets = [RuleSetStatus(s.name, s.path, s.used, counts.get(s.name, 0), s.reason,
                          s.reason_code) for s in (kinship, capa)]
    return LoadedRules(ruleset, sets)


def load_rules(config: CapabilitiesConfig | None = None) -> Any:
    """The capa ``RuleSet`` for ``config`` (cached per process); see :func:`load_rule_sets`."""
    return load_rule_sets(config).ruleset


def library_code(sample: AnalysedSample, library: Callable[[AnalysedSample], set[int]]
                 ) -> tuple[set[int], str | None]:
    """VAs of ``sample``'s functions recognised as library code by ``library`` (an open
    store's :meth:`kinship.api.Kinship.library_functions`: its library corpus and the
    compiler-runtime baseline), and why none could be."""
    from kinship.exceptions import KinshipError

    try:
        return library(sample), None
    except KinshipError as e:
        logger.warning("library code not recognised: %s", e)
        return set(), f"library code not recognised: {e}"


class _FunctionLocator:
    """Maps any instruction/block address to its function (first function containing it)."""

    def __init__(self, dis: Disassembly) -> None:
        spans: list[tuple[int, int, int, str | None]] = []
        for f in dis.functions:
            for b in f.blocks:
                spans.append((b.va, b.end, f.va, f.name))
        spans.sort()
        self._starts = [s[0] for s in spans]
        self._spans = spans
        self._names = {f.va: f.name for f in dis.functions}

    def find(self, va: int) -> tuple[int | None, str | None]:
        if va in self._names:
            return va, self._names[va]
        k = bisect.bisect_right(self._starts, va) - 1
        if k >= 0 and self._spans[k][0] <= va < self._spans[k][1]:
            return self._spans[k][2], self._spans[k][3]
        return None, None


def _leaf_features(result: Any, out: list[str]) -> None:
    """Successful feature leaves of a capa match tree, as capa prints them."""
    if not getattr(result, "success", False) or len(out) >= MAX_EVIDENCE_FEATURES:
        return
    stmt = result.statement
    children = getattr(result, "children", None) or []
    name = type(stmt).__name__.lower()
    if not children and any(name.endswith(k) or k in name for k in _EVIDENCE_KINDS):
        text = str(stmt)
        if text not in out:
            out.append(text)
    for c in children:
        _leaf_features(c, out)


def _scope(rule: Any) -> str:
    scopes = getattr(rule, "scopes", None)
    static = getattr(scopes, "static", None)
    return str(getattr(static, "value", static) or "file")


def find_capabilities(binary: Binary, disassembly: Disassembly, rules: LoadedRules | Any,
                      *, name: str | None = None, library_vas: Collection[int] = (),
                      library_note: str | None = None, meta: MetaFn | None = None
                      ) -> CapabilitiesResult:
    """Run ``rules`` (:class:`LoadedRules`, or a bare capa ``RuleSet``) over the sample;
    capabilities with evidence, techniques by ATT&CK id.

    Functions in ``library_vas`` (:func:`library_code`) are skipped, as capa skips the
    functions FLIRT recognises; their number is in the result.
    """
    import capa.capabilities.common

    from kinship.intel.attack import technique

    t0 = time.perf_counter()
    if isinstance(rules, LoadedRules):
        ruleset, sets = rules.ruleset, list(rules.sets)
    else:
        ruleset = rules
        sets = [RuleSetStatus(k, None, True, n) for k, n in sorted(_count_rules(rules).items())]
    own = {f.va for f in disassembly.functions}
    library = frozenset(int(v) for v in library_vas if int(v) in own)
    extractor = KinshipCapaExtractor(binary, disassembly, library_vas=library)
    caps = capa.capabilities.common.find_capabilities(ruleset, extractor, disable_progress=True)
    locate = _FunctionLocator(disassembly)
    capabilities: list[Capability] = []
    for rule_name, hits in sorted(caps.matches.items()):
        rule = ruleset.rules[rule_name]
        rule_meta = rule.meta
        if rule_meta.get("lib") or rule_meta.get("capa/subscope-rule"):
            continue  # helper rules are shown through the rules that use them
        attack_names = [str(a) for a in rule_meta.get("att&ck", []) or []]
        evidence: list[Evidence] = []
        for addr, result in hits[:MAX_LOCATIONS]:
            va = int(addr) if hasattr(addr, "__int__") else 0
            fva, fname = locate.find(va) if va else (None, None)
            feats: list[str] = []
            _leaf_features(result, feats)
            evidence.append(Evidence(va, fva, fname, tuple(feats)))
        capabilities.append(Capability(
            rule=rule_name,
            namespace=rule_meta.get("namespace"),
            scope=_scope(rule),
            attack=[m for a in attack_names for m in _ATTACK_ID.findall(a)],
            attack_names=attack_names,
            mbc=[m for a in rule_meta.get("mbc", []) or [] for m in _MBC_ID.findall(str(a))],
            evidence=evidence,
            source=_rule_set_of(rule),
        ))
    by_id: dict[str, TechniqueHit] = {}
    for cap in capabilities:
        for tid in cap.attack:
            hit = by_id.get(tid)
            if hit is None:
                info = technique(tid)
                hit = by_id[tid] = TechniqueHit(tid, info.full_name if info.name else None,
                                                list(info.tactics), [], [])
            if cap.rule not in hit.rules:
                hit.rules.append(cap.rule)
            hit.evidence.extend(e for e in cap.evidence if e not in hit.evidence)
    seconds = time.perf_counter() - t0
    return CapabilitiesResult(
        sha256=binary.hashes.sha256,
        name=name or Path(binary.path).name,
        capabilities=capabilities,
        techniques=sorted(by_id.values(), key=lambda t: t.id),
        n_rules=len(ruleset.rules),
        rules_source=", ".join(sorted({c.source for c in capabilities})) or ", ".join(
            s.name for s in sets if s.used),
        seconds=seconds,
        rule_sets=sets,
        n_functions=len(own),
        n_library_functions=len(library),
        library_note=library_note,
        meta=meta(seconds) if meta is not None else None,
    )


def sample_capabilities(sample: AnalysedSample,
                        library: Callable[[AnalysedSample], set[int]],
                        capa_rules: Path | None = None, *, meta: MetaFn | None = None
                        ) -> tuple[AnalysedSample, CapabilitiesResult]:
    """Capabilities of an analysed sample (``keep=True``): kinship's rules and capa's
    (``capa_rules`` or $KINSHIP_CAPA_RULES), functions ``library`` recognises not searched;
    ``meta`` makes the result's meta block (None: left empty)."""
    assert sample.binary is not None and sample.disassembly is not None
    rules = load_rule_sets(CapabilitiesConfig(rules_dir=capa_rules))
    library_vas, note = library_code(sample, library)
    res = find_capabilities(sample.binary, sample.disassembly, rules, name=sample.record.name,
                            library_vas=library_vas, library_note=note, meta=meta)
    return sample, res
