"""What the report adds from the store: the attributed family's validated YARA and Sigma
rules, and the provenance of the reference samples a verdict rests on.

    family (verdict) -> rules.yara_gen.generate_family_rule (validated on the kept files)
                     -> rules.sigma_gen.generate_family_rules (validated on the corpus strings)
    MatchResult.samples -> store labels (source, first seen, actor, version) -> references

Only the rule generators' public functions are called; their validation figures travel with
each rule (``FamilyRule.to_dict()["validation"]``, ``SigmaRule.to_dict()["validation"]``).
A family without a rule gets a note saying why (a code and the detail), never silence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinship.exceptions import NotFoundError, UsageError
from kinship.match.result import MatchResult
from kinship.store.base import Store
from kinship.store.files import SampleFiles
from kinship.store.model import SampleRecord

if TYPE_CHECKING:
    from kinship.pipeline import AnalysedSample
    from kinship.rules.sigma_gen import SigmaConfig, SigmaResult
    from kinship.rules.yara_gen import FamilyRule, YaraConfig

# VAs of a sample's library/runtime functions (Kinship.library_functions).
LibraryFn = Callable[["AnalysedSample"], set[int]]

logger = logging.getLogger(__name__)

# Reference samples listed per analysed sample (best first): the link the STIX export draws.
MAX_REFERENCES = 5

# Note codes (the templates word them in each language; ``detail`` is the data behind it).
NO_RULE = "no_rule"  # the generator found nothing that holds for the family and no other
FILES_MISSING = "files_missing"  # family sample files are not kept beside the store
OTHERS_MISSING = "others_missing"  # some other samples' files are not kept: FPR on fewer


@dataclass
class DetectionRules:
    """The family's rules and, where there are none or they are weaker, why."""

    yara: list[dict[str, Any]] = field(default_factory=list)  # FamilyRule.to_dict()
    sigma: list[dict[str, Any]] = field(default_factory=list)  # SigmaRule.to_dict()
    # {"kind": "yara"|"sigma", "code": NO_RULE|FILES_MISSING|OTHERS_MISSING, "detail": str}
    notes: list[dict[str, Any]] = field(default_factory=list)
    n_members: int = 0  # stored samples of the family
    n_others: int = 0  # other stored samples (the false-positive test set)


def _note(kind: str, code: str, detail: str) -> dict[str, Any]:
    return {"kind": kind, "code": code, "detail": detail}


def family_rules(store: Store, kept: SampleFiles | None, library: LibraryFn, family: str
                  ) -> DetectionRules:
    """Validated YARA and Sigma rules for ``family`` from ``store``, the sample files kept
    in ``kept`` and ``library`` (library/runtime functions are never rule material)."""
    from kinship.rules.sigma_gen import generate_family_rules
    from kinship.rules.yara_gen import generate_family_rule
    from kinship.rules.yara_validate import locate_files

    records = list(store.samples())
    members = {r.sha256 for r in records if r.family == family}
    out = DetectionRules(n_members=len(members), n_others=len(records) - len(members))
    files = locate_files([r.sha256 for r in records], kept, [])
    missing = members - files.keys()
    others = {h: p for h, p in files.items() if h not in members}
    if missing:
        out.notes.append(_note("yara", FILES_MISSING,
                               f"{len(missing)} of {len(members)} sample files of {family}"))
    else:
        if len(others) < out.n_others:
            out.notes.append(_note("yara", OTHERS_MISSING,
                                   f"{len(others)} of {out.n_others}"))
        rule = generate_family_rule(family, {h: files[h] for h in members}, others,
                                    library=library)
        if rule is None:
            out.notes.append(_note("yara", NO_RULE, family))
        else:
            out.yara.append(rule.to_dict())
    sigma = generate_family_rules(store, family)
    out.sigma = [r.to_dict() for r in sigma.rules]
    if not sigma.rules:
        out.notes.append(_note("sigma", NO_RULE, f"{family} ({len(sigma.dropped)} dropped)"))
    return out


def family_yara_rule(store: Store, files: SampleFiles | None, library: LibraryFn, family: str,
                     *, sample_dirs: Sequence[Path] = (), config: YaraConfig | None = None
                     ) -> FamilyRule:
    """A YARA rule for ``family`` made from its sample files (kept in ``files`` or found in
    ``sample_dirs`` by SHA-256) and validated on every other sample file found.

    NotFoundError when the family has no stored samples or no rule holds; UsageError when
    some of its files are nowhere to be found."""
    from kinship.rules.yara_gen import YaraConfig, generate_family_rule
    from kinship.rules.yara_validate import locate_files

    records = list(store.samples())
    fam = {r.sha256 for r in records if r.family == family}
    if not fam:
        raise NotFoundError(f"no stored samples of family {family!r}")
    found = locate_files([r.sha256 for r in records], files, list(sample_dirs))
    missing = [h for h in fam if h not in found]
    if missing:
        raise UsageError(f"{len(missing)} sample file(s) of {family!r} not found: give "
                         "--samples DIR or keep them with `kinship rules keep`")
    members = {h: found[h] for h in fam}
    others = {h: p for h, p in found.items() if h not in fam}
    rule = generate_family_rule(family, members, others, config or YaraConfig(),
                                library=library)
    if rule is None:
        raise NotFoundError(f"no YARA rule for {family!r} matches all its samples and "
                            "none of the others")
    return rule


def family_sigma_rules(store: Store, family: str, config: SigmaConfig | None = None
                       ) -> SigmaResult:
    """Sigma rules for ``family`` from its stored strings, validated on the corpus.

    NotFoundError when the family has no stored samples or no rule holds."""
    from kinship.rules.sigma_gen import SigmaConfig, generate_family_rules

    if not store.samples(family=family):
        raise NotFoundError(f"no stored samples of family {family!r}")
    res = generate_family_rules(store, family, config or SigmaConfig())
    if not res.rules:
        raise NotFoundError(f"no Sigma rule for {family!r} fires on its samples and none of "
                            f"the others ({len(res.dropped)} dropped)")
    return res


def reference_rows(records: Iterable[SampleRecord], match: MatchResult
                   ) -> list[dict[str, Any]]:
    """The stored samples (``records``) ``match`` shares code with, best first, with their
    provenance labels: sha256, name, family, actor, source, first_seen, version, score,
    n_functions_matched. Library samples are not references."""
    labels: dict[str, SampleRecord] = {r.sha256: r for r in records}
    rows: list[dict[str, Any]] = []
    for s in match.samples:
        rec = labels.get(s.sha256)
        if rec is None or rec.is_library or not s.n_functions_matched:
            continue
        rows.append({"sha256": s.sha256, "name": s.name, "family": rec.family,
                     "actor": rec.actor, "source": rec.source, "first_seen": rec.first_seen,
                     "version": rec.version, "score": float(s.score),
                     "n_functions_matched": int(s.n_functions_matched)})
        if len(rows) >= MAX_REFERENCES:
            break
    return rows


def stored_labels(records: Iterable[SampleRecord], sha256: str) -> dict[str, Any] | None:
    """The analysed sample's own labels when the store holds it (``records``: the stored
    samples), its first-seen and source."""
    for r in records:
        if r.sha256 == sha256:
            return {"family": r.family, "actor": r.actor, "source": r.source,
                    "first_seen": r.first_seen, "version": r.version}
    return None
