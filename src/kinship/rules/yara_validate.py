"""Compile YARA rules with yara-python and validate them against the stored samples' files.

The store keeps features, not file bytes, so validation needs the original files. They come
from :class:`SampleFiles`, a content-addressed copy under ``$KINSHIP_HOME/samples/<sha256>``
(``kinship rules keep FILE...`` fills it), and from any folders the user names
(``--samples DIR``), hashed on the fly.

A rule is valid when it matches every sample of its family and none of the others:

    TPR = matched family samples / family samples     (must be 1.0)
    FPR = matched other samples  / other samples      (must be 0.0)

That TPR is measured on the samples the rule was made from, so it is 1.0 by construction. What
it says about the next build of the family is measured by leave-one-out (:class:`LeaveOneOut`):
for each sample, the rules made from the family's other n-1 samples must match it:

    leave-one-out TPR = held-out samples matched / held-out samples
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import computed_field, field_serializer

from kinship.document import Document
from kinship.exceptions import UsageError
from kinship.store.files import SampleFiles, sha256_file

logger = logging.getLogger(__name__)

# Files above this size are not hashed while looking for stored samples in a folder
# (a reference corpus of executables has no multi-gigabyte members; archives are not scanned).
MAX_SCAN_FILE_SIZE = 256 * 1024 * 1024
# yara-python scan timeout per file, seconds (a pathological rule must not hang a batch).
SCAN_TIMEOUT_S = 60


def locate_files(wanted: Iterable[str], files: SampleFiles | None,
                 search: Sequence[Path] = ()) -> dict[str, Path]:
    """sha256 -> file for each wanted hash found in ``files`` or under the ``search`` paths."""
    want = set(wanted)
    found: dict[str, Path] = {}
    if files is not None:
        for h in want:
            p = files.path_for(h)
            if p is not None:
                found[h] = p
    for root in search:
        if len(found) == len(want):
            break
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*")
                                                          if p.is_file())
        for p in candidates:
            try:
                if p.stat().st_size > MAX_SCAN_FILE_SIZE:
                    continue
                h = sha256_file(p)
            except OSError as e:
                logger.warning("%s: cannot read: %s", p, e)
                continue
            if h in want and h not in found:
                found[h] = p
    return found


def compile_rule(text: str) -> Any:
    """yara-python's compiled rules; UsageError with yara's message when it does not compile."""
    import yara

    try:
        return yara.compile(source=text)
    except yara.SyntaxError as e:
        raise UsageError(f"YARA rule does not compile: {e}") from e


@dataclass
class Validation(Document):
    """The rule's hits on the family's files and on everyone else's. Not frozen: ``validate``
    counts into it. Its JSON adds ``tpr``, ``fpr`` (4 decimals) and ``ok``."""

    true_positives: list[str] = field(default_factory=list)  # sha256 / names
    false_negatives: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    true_negatives: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tpr(self) -> float:
        n = len(self.true_positives) + len(self.false_negatives)
        return len(self.true_positives) / n if n else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fpr(self) -> float:
        n = len(self.false_positives) + self.true_negatives
        return len(self.false_positives) / n if n else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.false_negatives and not self.false_positives and \
            bool(self.true_positives)

    @field_serializer("tpr", "fpr")
    def _rate_json(self, rate: float) -> float:
        return round(rate, 4)


@dataclass(frozen=True)
class HeldOut:
    """One leave-one-out trial: rules made without ``sample``, scanned over ``sample``."""

    sample: str  # sha256 of the held-out sample
    matched: bool
    rule: str | None = None  # name of the rule that matched it (None: no rule did)
    trained_on: int = 0  # samples the rules were made from (n-1)
    note: str = ""  # why it was not matched ("no rule from the other 3 samples")


@dataclass(frozen=True)
class LeaveOneOut(Document):
    """Leave-one-out over a family: did the rules from n-1 samples catch the n-th? Its JSON
    adds ``tpr`` (4 decimals), ``held_out``, ``matched`` and ``missed``."""

    samples: list[HeldOut] = field(default_factory=list)
    skipped: int = 0  # samples not held out (family above YaraConfig.max_leave_one_out)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tpr(self) -> float | None:
        """Held-out samples matched / held out; None when nothing could be held out."""
        if not self.samples:
            return None
        return sum(h.matched for h in self.samples) / len(self.samples)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def held_out(self) -> int:
        return len(self.samples)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def matched(self) -> int:
        return sum(h.matched for h in self.samples)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missed(self) -> list[str]:
        return [h.sample for h in self.samples if not h.matched]

    @field_serializer("tpr")
    def _tpr_json(self, tpr: float | None) -> float | None:
        return None if tpr is None else round(tpr, 4)


def matching_rules(compiled: Any, path: Path) -> list[str]:
    """Names of the rules of ``compiled`` that match ``path``."""
    return sorted(m.rule for m in compiled.match(str(path), timeout=SCAN_TIMEOUT_S))


def matching_identifiers(compiled: Any, path: Path) -> set[str]:
    """String identifiers (``$s1``...) of ``compiled`` found in ``path``, over all rules."""
    hits: set[str] = set()
    for m in compiled.match(str(path), timeout=SCAN_TIMEOUT_S):
        for s in m.strings:
            hits.add(s.identifier)
    return hits


def validate(text: str, family: dict[str, Path], others: dict[str, Path]) -> Validation:
    """Scan every family file and every other file with the rule in ``text``."""
    compiled = compile_rule(text)
    v = Validation()
    for key, path in sorted(family.items()):
        (v.true_positives if compiled.match(str(path), timeout=SCAN_TIMEOUT_S)
         else v.false_negatives).append(key)
    for key, path in sorted(others.items()):
        if compiled.match(str(path), timeout=SCAN_TIMEOUT_S):
            v.false_positives.append(key)
        else:
            v.true_negatives += 1
    return v
