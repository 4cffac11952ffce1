"""The intel, rules, report and artifact workflows of :class:`kinship.api.Kinship`.

A mixin, so that the facade stays one class and ``api.py`` one screenful of the store and
matching: every method here reads the store through what :class:`~kinship.api.Kinship`
defines (``store``, ``files``, ``analyse``, ``match_features``, ``match_bytes``,
``library_functions``, ``reference_evidence``, ``meta_for``) and hands lower layers narrow
callables. A document a workflow builds carries the store's ``meta`` block.
The heavy layers (capa, YARA, Sigma, Jinja2, olevba) are imported when a workflow runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinship.evidence.compare import MAX_LISTED_PAIRS
from kinship.store.base import Store
from kinship.store.files import SampleFiles
from kinship.store.model import SampleRecord

if TYPE_CHECKING:
    from kinship.artifacts.attribution import Attributor
    from kinship.artifacts.model import ArtifactResult
    from kinship.binary.model import Arch
    from kinship.document import MetaFn
    from kinship.evidence.compare import CompareResult
    from kinship.evidence.references import ReferenceEvidence
    from kinship.evidence.shared_strings import SharedStringsResult
    from kinship.intel.capabilities import CapabilitiesResult
    from kinship.intel.iocs import IOCResult
    from kinship.match.result import MatchResult
    from kinship.pipeline import AnalysedSample
    from kinship.report.build import ReportOptions
    from kinship.report.model import IntelReport
    from kinship.rules.sigma_gen import SigmaConfig, SigmaResult
    from kinship.rules.yara_gen import FamilyRule, YaraConfig
    from kinship.strings.extract import StringTable


class Workflows:
    """What the intel commands run, as methods of the facade."""

    store: Store
    files: SampleFiles | None

    # -- provided by Kinship -------------------------------------------------------------
    def analyse(self, path: str | Path, *, base: int | None = None, arch: Arch | None = None,
                keep: bool = True) -> AnalysedSample:
        raise NotImplementedError

    def match_features(self, record: SampleRecord, features: list[Any], *,
                       include_self: bool = False, t0: float | None = None,
                       strings: StringTable | None = None, signals: bool = False
                       ) -> MatchResult:
        raise NotImplementedError

    def match_analysed(self, sample: AnalysedSample, *, include_self: bool = False,
                       t0: float | None = None) -> MatchResult:
        raise NotImplementedError

    def compare_analysed(self, left: AnalysedSample, right: AnalysedSample, *,
                         max_listed: int = ..., t0: float | None = None) -> CompareResult:
        raise NotImplementedError

    def meta_for(self) -> MetaFn:
        raise NotImplementedError

    def match_bytes(self, data: bytes, name: str, *, base: int | None = None,
                    arch: Arch | None = None, include_self: bool = False) -> MatchResult:
        raise NotImplementedError

    def library_functions(self, sample: AnalysedSample) -> set[int]:
        raise NotImplementedError

    def reference_evidence(self, result: MatchResult, sample: AnalysedSample,
                           max_pairs: int = ...) -> ReferenceEvidence:
        raise NotImplementedError

    def baseline_library(self, sample: AnalysedSample) -> set[int]:
        raise NotImplementedError

    # -- the workflows -----------------------------------------------------------------------
    def stored_labels(self, sha256s: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Labels of the stored samples among ``sha256s`` (sha256 -> family, actor, ...)."""
        want = set(sha256s)
        return {r.sha256: {"family": r.family, "actor": r.actor, "source": r.source,
                           "first_seen": r.first_seen, "version": r.version,
                           "is_library": r.is_library}
                for r in self.store.samples() if r.sha256 in want}

    def samples_of_actor(self, actor: str) -> list[SampleRecord]:
        """Stored samples whose actor label (an exact name or alias) resolves to ``actor``."""
        from kinship.intel.actors import canonical_actor

        records = [r for r in self.store.samples() if r.actor]
        resolved = {a: canonical_actor(a) for a in {r.actor for r in records if r.actor}}
        return [r for r in records if r.actor and resolved.get(r.actor) == actor]

    def capabilities(self, path: str | Path, *, capa_rules: Path | None = None
                     ) -> tuple[AnalysedSample, CapabilitiesResult]:
        """Capabilities and ATT&CK techniques of the file at ``path`` (kinship's rules, and
        capa's from ``capa_rules`` or $KINSHIP_CAPA_RULES), library code not searched."""
        from kinship.intel.capabilities import sample_capabilities

        return sample_capabilities(self.analyse(path), self.library_functions, capa_rules,
                                   meta=self.meta_for())

    def iocs(self, path: str | Path, *, filter_benign: bool = True
             ) -> tuple[AnalysedSample, IOCResult]:
        """IOCs of the executable at ``path``, each citing where it was found."""
        from kinship.intel.iocs import iocs_from_sample

        a = self.analyse(path)
        assert a.binary is not None
        return a, iocs_from_sample(a.binary, a.disassembly, filter_benign=filter_benign)

    def yara_rule(self, family: str, *, sample_dirs: Sequence[Path] = (),
                  config: YaraConfig | None = None) -> FamilyRule:
        """A YARA rule for ``family`` made and validated on the kept sample files (and those
        found in ``sample_dirs`` by SHA-256); NotFoundError when none holds."""
        from kinship.report.detection import family_yara_rule

        return family_yara_rule(self.store, self.files, self.library_functions, family,
                                sample_dirs=sample_dirs, config=config)

    def sigma_rules(self, family: str, config: SigmaConfig | None = None) -> SigmaResult:
        """Sigma rules for ``family`` validated on the corpus strings; NotFoundError when the
        family has no samples or no rule holds."""
        from kinship.report.detection import family_sigma_rules

        return family_sigma_rules(self.store, family, config)

    def report(self, paths: Sequence[Path], options: ReportOptions | None = None, *,
               yara_rules: list[dict[str, Any]] | None = None, title: str | None = None
               ) -> IntelReport:
        """The tactical intelligence report of ``paths``: the store's verdicts, evidence and
        the family's rules (unless ``options.use_store`` is off: then no meta block either),
        capabilities, IOCs."""
        from kinship.report.build import ReportOptions, ReportStore, build_report
        from kinship.report.detection import family_rules

        opts = options or ReportOptions()
        store = ReportStore(
            match=lambda a: self.match_features(a.record, a.features, strings=a.strings),
            reference_evidence=self.reference_evidence,
            samples=lambda: list(self.store.samples()),
            family_rules=lambda family: family_rules(self.store, self.files,
                                                     self.library_functions, family),
        )
        library = self.library_functions if opts.use_store else self.baseline_library
        return build_report(list(paths), opts, store=store, library=library,
                            yara_rules=yara_rules, title=title,
                            meta=self.meta_for() if opts.use_store else None)

    def artifact(self, path: str | Path, *, passwords: Sequence[str] = ()) -> ArtifactResult:
        """The e-mail or Office document at ``path``, executables inside attributed with
        this store (in memory, through :meth:`match_bytes`)."""
        from kinship.artifacts.analyze import analyze_file

        return analyze_file(path, attributor=self.attributor(), passwords=passwords,
                            meta=self.meta_for())

    def match_evidence(self, path: str | Path, *, base: int | None = None,
                       arch: Arch | None = None, include_self: bool = False
                       ) -> tuple[MatchResult, AnalysedSample, ReferenceEvidence]:
        """What the match evidence page shows: the match of the file at ``path`` (code +
        strings), the sample (kept for its listings) and the reference listings and hex
        dumps from the kept reference files."""
        t0 = time.perf_counter()
        sample = self.analyse(path, base=base, arch=arch)
        res = self.match_analysed(sample, include_self=include_self, t0=t0)
        return res, sample, self.reference_evidence(res, sample)

    def compare_evidence(self, a: str | Path, b: str | Path, *, max_listed: int = MAX_LISTED_PAIRS
                         ) -> tuple[CompareResult, SharedStringsResult, AnalysedSample]:
        """What the compare evidence page shows: the comparison of ``a`` with ``b``, the
        strings they share (rarity from the store) and the left sample."""
        from kinship.evidence.shared_strings import shared_strings

        t0 = time.perf_counter()
        left, right = self.analyse(a), self.analyse(b)
        res = self.compare_analysed(left, right, max_listed=max_listed, t0=t0)
        strings = shared_strings([left, right], postings=self.store.string_postings)
        return res, strings, left

    def shared_strings(self, paths: Sequence[str | Path], *, min_samples: int | None = None,
                       use_store: bool = True) -> SharedStringsResult:
        """Distinctive strings shared by the files at ``paths`` (in at least
        ``min_samples`` of them; default all); ``use_store``: the store's library strings
        are dropped and its families weigh rarity."""
        from kinship.evidence.shared_strings import shared_strings

        samples = [self.analyse(p) for p in paths]
        postings = self.store.string_postings if use_store else None
        return shared_strings(samples, min_samples=min_samples, postings=postings)

    def attributor(self) -> Attributor:
        """``(name, data) -> Attribution`` over this store (see :func:`open_attributor`)."""
        from kinship.artifacts.attribution import attributor

        return attributor(lambda name, data: self.match_bytes(data, name))
