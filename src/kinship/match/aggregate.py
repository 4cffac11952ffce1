"""Attribution: query functions -> candidate pairs -> family, sample and actor scores.

Steps (all vectorised over pairs):

1. query functions with fewer than ``min_instructions`` instructions are ignored;
2. candidates: exact-hash lookup + LSH on code sketches + LSH on sem sketches;
3. pair scores (score.py); pairs below ``min_pair_score`` are dropped;
4. library filter: a query function with a match in a library sample (or baseline pack)
   scoring >= ``library_threshold`` is library code and leaves the sums;
5. per query function ``q``: best score per family ``s(q, F)`` and per sample; ``n(q)`` = number
   of families matched; rarity ``r(q) = 1 / log2(1 + n(q))`` (1 for one family, 0.39 for five);
   weight ``w(q) = ln(1 + n_instructions(q))``;
6. family score ``S(F) = sum_q w(q) r(q) s(q, F) / sum_q w(q)`` over non-library query
   functions: the fraction of the sample's own code the family explains. Samples alike.
   Actor score = max over its families;
7. verdict (match/verdict.py): attributed, weak (thin evidence) or unknown (below
   ``unknown_threshold`` or a tie), with a calibrated confidence when attributed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kinship.exceptions import UsageError
from kinship.features.minhash import I64
from kinship.features.model import FunctionFeatures
from kinship.index.lsh import CandidatePairs
from kinship.index.reference import ReferenceIndex, SampleLabel, first_of_groups, ref_rows
from kinship.index.rows import SketchRows
from kinship.index.sketch16 import fold
from kinship.match.config import MatchConfig
from kinship.match.result import (
    FamilyScore,
    FunctionMatch,
    LibraryHit,
    MatchResult,
    QuerySample,
    SampleScore,
)
from kinship.match.score import F64, KINDS, score_pairs
from kinship.match.verdict import conclude

__all__ = ["CodeReuse", "ReferenceIndex", "SampleLabel", "attribute", "code_reuse"]

log = logging.getLogger(__name__)

# Candidate pairs scored at once: bounds the gathered sketch copies to
# MAX_PAIRS_PER_CHUNK * num_perm * 4 bytes * 4 (128 MiB at num_perm=64).
MAX_PAIRS_PER_CHUNK = 131072
# Function matches kept in the result (best first): enough for every evidence view.
MAX_FUNCTION_MATCHES = 5000

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class CodeReuse:
    """What the code of one query shares with the index, before any verdict: the input of
    :func:`kinship.match.verdict.conclude` (code only) or of string-reuse combination."""

    families: tuple[FamilyScore, ...]  # every family matched, best first
    samples: tuple[SampleScore, ...]  # best first, at most max_samples
    function_matches: tuple[FunctionMatch, ...]  # best first (listed families and libraries)
    library_functions: tuple[LibraryHit, ...]  # query functions left out as library code
    n_query_functions: int  # functions in the query sample
    n_considered_functions: int  # of those, with >= min_instructions
    n_pairs: int = 0  # candidate pairs scored (for logs)

    @property
    def library_vas(self) -> set[int]:
        return {h.va for h in self.library_functions}


@dataclass(frozen=True, slots=True, eq=False)
class _Pairs:
    """Scored (query row, reference row) pairs, row-aligned."""

    q: I64
    r: I64
    score: F64
    kind: npt.NDArray[np.int8]


def attribute(
    query: Sequence[FunctionFeatures],
    index: ReferenceIndex,
    config: MatchConfig | None = None,
    *,
    sample_sha256: str = "",
    exclude_sha256: str | None = None,
) -> MatchResult:
    """Attribute one query sample (its functions' features) against ``index``: code reuse
    only (kinship.api.Kinship.match adds strings, signals and meta).

    ``sample_sha256`` is only reported; reference functions of the sample ``exclude_sha256``
    (typically the query itself, when it is already stored) are ignored.
    """
    t0 = time.perf_counter()
    cfg = config or MatchConfig()
    code = code_reuse(query, index, cfg, exclude_sha256=exclude_sha256)
    ranking = conclude(code.families, cfg)
    seconds = time.perf_counter() - t0
    log.debug("attributed %s: %d pairs, verdict %s (%.3f) in %.3fs", sample_sha256 or "query",
              code.n_pairs, ranking.verdict.family, ranking.verdict.score, seconds)
    return MatchResult(
        sample=QuerySample(sample_sha256),
        verdict=ranking.verdict,
        families=ranking.families,
        actors=ranking.actors,
        samples=code.samples,
        function_matches=code.function_matches,
        n_query_functions=code.n_query_functions,
        n_considered_functions=code.n_considered_functions,
        n_library_functions=len(code.library_functions),
        seconds=seconds,
        library_functions=code.library_functions,
    )


def code_reuse(
    query: Sequence[FunctionFeatures],
    index: ReferenceIndex,
    config: MatchConfig | None = None,
    *,
    exclude_sha256: str | None = None,
) -> CodeReuse:
    """Steps 1-6 of the module docstring for one query sample against ``index``."""
    cfg = config or MatchConfig()
    considered = [f for f in query if f.n_instructions >= cfg.min_instructions]
    num_perm = index.num_perm
    if considered and len(index) and considered[0].code_sig.shape[0] != num_perm:
        raise UsageError(
            f"query sketches have {considered[0].code_sig.shape[0]} slots, the index {num_perm}"
        )
    qrows = SketchRows.from_features(considered, num_perm)
    nq = len(considered)
    # 2. library code known by exact hash (in a library sample, or in >= common_families
    # families): decided without candidates.
    lib_exact = np.zeros(nq, dtype=bool)
    if nq and len(index):
        lib_exact = index.in_library(qrows.exact_hash)
        if cfg.common_families:
            lib_exact |= index.exact_families(qrows.exact_hash) >= cfg.common_families
    p = _scored_pairs(index, qrows, np.flatnonzero(~lib_exact), cfg, exclude_sha256)
    lib_q, lib_label, library_best = _library_code(index, qrows, lib_exact, p, cfg)
    own_code = ~lib_q[p.q] & ~index.is_library[p.r]
    ranked, qf, contrib, inv = _family_scores(index, qrows, p, lib_q, own_code, cfg)
    samples = _sample_scores(index, p, own_code, contrib, inv, cfg)
    reported = ranked[: cfg.max_families]
    return CodeReuse(
        families=tuple(ranked),
        samples=tuple(samples),
        function_matches=_evidence(index, considered, p, qf, library_best, reported),
        library_functions=tuple(
            LibraryHit(considered[q].va, considered[q].name, lib_label.get(q, "library"))
            for q in sorted(int(x) for x in np.flatnonzero(lib_q))
        ),
        n_query_functions=len(query),
        n_considered_functions=nq,
        n_pairs=len(p.q),
    )


def _scored_pairs(index: ReferenceIndex, qrows: SketchRows, active: I64, cfg: MatchConfig,
                  exclude_sha256: str | None) -> _Pairs:
    """Steps 2-3: candidates of the ``active`` query rows, scored; pairs with a reference
    function too small, of the excluded sample, or scoring below ``min_pair_score`` dropped."""
    pairs = (
        index.candidates(qrows.take(active))
        if len(active) and len(index)
        else CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    pairs = CandidatePairs(active[pairs.query], pairs.row)
    keep = index.n_instructions[pairs.row] >= cfg.min_instructions
    if exclude_sha256:
        own = [sid for sid, lab in index.samples.items() if lab.sha256 == exclude_sha256]
        if own:
            keep &= ~np.isin(index.sample_id[pairs.row], np.array(own, dtype=np.int64))
    pq, pr = pairs.query[keep], pairs.row[keep]
    bits = index.config.sketch_bits  # the query's sketches as the index stores them, to score
    qscore = dataclasses.replace(
        qrows, code_sig=fold(qrows.code_sig, bits), sem_sig=fold(qrows.sem_sig, bits)
    )
    scores: list[F64] = []
    kinds: list[npt.NDArray[np.int8]] = []
    for s in range(0, len(pq), MAX_PAIRS_PER_CHUNK):
        qi, ri = pq[s : s + MAX_PAIRS_PER_CHUNK], pr[s : s + MAX_PAIRS_PER_CHUNK]
        ps = score_pairs(qscore.take(qi), ref_rows(index, ri), cfg)
        scores.append(ps.score)
        kinds.append(ps.kind)
    score = np.concatenate(scores) if scores else np.zeros(0, np.float64)
    kind = np.concatenate(kinds) if kinds else np.zeros(0, np.int8)
    good = score >= cfg.min_pair_score
    return _Pairs(pq[good], pr[good], score[good], kind[good])


def _library_code(index: ReferenceIndex, qrows: SketchRows, lib_exact: BoolArray, p: _Pairs,
                  cfg: MatchConfig) -> tuple[BoolArray, dict[int, str], I64]:
    """Step 4: which query rows are library code, their library labels, and the best library
    pair of each (evidence).

    A query function with a library match >= library_threshold is library code, even when a
    family's copy of it matches better (the header-inline printf wrapper of a MinGW program is
    in every family built with MinGW, in slightly other forms); so is one known by exact hash
    (``lib_exact``) and one with near-duplicates in >= common_families families."""
    nq = len(qrows)
    lib = index.is_library[p.r]
    strong_lib = np.flatnonzero(lib & (p.score >= cfg.library_threshold))
    order = strong_lib[np.lexsort((-p.score[strong_lib], p.q[strong_lib]))]
    library_best = order[first_of_groups([p.q[order]])]  # best library pair per such function
    lib_q = np.zeros(nq, dtype=bool)
    lib_q[p.q[library_best]] = True
    lib_label: dict[int, str] = {int(p.q[k]): _library_label(index, int(p.r[k]))
                                 for k in library_best}
    lib_label.update(_exact_library_labels(index, qrows.exact_hash, lib_exact, cfg))
    lib_q |= lib_exact
    if cfg.common_families:  # near-duplicates in >= common_families families: library code
        fam_all = index.family_id[p.r]
        strong = np.flatnonzero((p.score >= cfg.library_threshold) & (fam_all >= 0))
        o = strong[np.lexsort((fam_all[strong], p.q[strong]))]
        qf_strong = o[first_of_groups([p.q[o], fam_all[o]])]
        common = np.bincount(p.q[qf_strong], minlength=nq) >= cfg.common_families
        for q in np.flatnonzero(common & ~lib_q):
            lib_label[int(q)] = f"code shared by >= {cfg.common_families} families"
        lib_q |= common
    return lib_q, lib_label, library_best


def _best_per_group(p: _Pairs, group: I64, sel: I64) -> I64:
    """Of the pairs ``sel``, the index of the best-scoring pair per (query row, group)."""
    order = sel[np.lexsort((-p.score[sel], group[sel], p.q[sel]))]
    best: I64 = order[first_of_groups([p.q[order], group[order]])]
    return best


def _family_scores(index: ReferenceIndex, qrows: SketchRows, p: _Pairs, lib_q: BoolArray,
                   own_code: BoolArray, cfg: MatchConfig
                   ) -> tuple[list[FamilyScore], I64, F64, float]:
    """Steps 5-6 for families: every matched family ranked best first, the best pair of each
    (query row, family), each pair's weighted contribution, and the factor (1 / the query's
    non-library weight) that turns sums of contributions into scores."""
    nq = len(qrows)
    fam = index.family_id[p.r]
    qf = _best_per_group(p, fam, np.flatnonzero(own_code & (fam >= 0)))
    n_fam = np.bincount(p.q[qf], minlength=nq)
    rarity = 1.0 / np.log2(1.0 + np.maximum(n_fam, 1))
    weight = np.log1p(qrows.n_instructions.astype(np.float64))
    denom = float(weight[~lib_q].sum())
    inv = 1.0 / denom if denom > 0 else 0.0
    contrib: F64 = weight[p.q] * rarity[p.q] * p.score  # per pair, used at its group's best

    n_f = len(index.families)
    fam_score = np.bincount(fam[qf], weights=contrib[qf], minlength=n_f) * inv
    fam_n = np.bincount(fam[qf], minlength=n_f)
    fam_instr = np.bincount(fam[qf], weights=qrows.n_instructions[p.q[qf]].astype(np.float64),
                            minlength=n_f)
    # coverage: the share of the sample's own (non-library) instructions in functions matched
    # in the family; the same definition in compare, the HTML pages and the report
    own_instr = float(qrows.n_instructions[~lib_q].sum())
    fam_cov = fam_instr / own_instr if own_instr > 0 else np.zeros(n_f)
    ranked = [
        FamilyScore(
            index.families[i],
            index.family_actor[index.families[i]],
            float(fam_score[i]),
            int(fam_n[i]),
            float(fam_cov[i]),
            matched_instructions=int(fam_instr[i] + 0.5),
        )
        for i in (int(i) for i in np.argsort(-fam_score, kind="stable"))
        if fam_n[i] > 0
    ]
    return ranked, qf, contrib, inv


def _sample_scores(index: ReferenceIndex, p: _Pairs, own_code: BoolArray, contrib: F64,
                   inv: float, cfg: MatchConfig) -> list[SampleScore]:
    """Step 6 for reference samples: like families, best first, at most ``max_samples``."""
    samp = index.sample_index[p.r]
    qs = _best_per_group(p, samp, np.flatnonzero(own_code))
    n_s = len(index.sample_ids)
    samp_score = np.bincount(samp[qs], weights=contrib[qs], minlength=n_s) * inv
    samp_n = np.bincount(samp[qs], minlength=n_s)
    samples: list[SampleScore] = []
    for i in [int(i) for i in np.argsort(-samp_score, kind="stable") if samp_n[i] > 0]:
        lab = index.samples[int(index.sample_ids[i])]
        samples.append(
            SampleScore(lab.sha256, lab.name, lab.family, float(samp_score[i]), int(samp_n[i]))
        )
        if len(samples) >= cfg.max_samples:
            break
    return samples


def _evidence(index: ReferenceIndex, considered: Sequence[FunctionFeatures], p: _Pairs,
              qf: I64, library_best: I64, reported: Sequence[FamilyScore]
              ) -> tuple[FunctionMatch, ...]:
    """The best match per (query function, reported family), plus library matches, best
    first, at most MAX_FUNCTION_MATCHES."""
    fam = index.family_id[p.r]
    ids = np.array([index.families.index(f.family) for f in reported], dtype=np.int64)
    ev = np.concatenate([qf[np.isin(fam[qf], ids)], library_best])
    ev = ev[np.argsort(-p.score[ev], kind="stable")][:MAX_FUNCTION_MATCHES]
    return tuple(
        _function_match(index, considered, int(p.q[k]), int(p.r[k]), float(p.score[k]),
                        int(p.kind[k]))
        for k in ev
    )


def _library_label(index: ReferenceIndex, row: int) -> str:
    lab = index.samples[int(index.sample_id[row])]
    return lab.family or lab.name


def _exact_library_labels(index: ReferenceIndex, exact_hash: I64, which: BoolArray,
                          cfg: MatchConfig) -> dict[int, str]:
    """Library label of each query row in ``which`` (known by exact hash): the first library
    sample that has the hash, else "shared by N families"."""
    rows = np.flatnonzero(which)
    options: dict[int, set[str]] = {}
    if len(rows):
        pairs = index.exact.query_batch(exact_hash[rows])
        for q, r in zip(rows[pairs.query].tolist(), pairs.row.tolist(), strict=True):
            if index.is_library[r]:
                options.setdefault(q, set()).add(_library_label(index, r))
    # The same runtime function is often in several libraries (one CRT in two releases'
    # packs): each function gets, of its libraries, the one most of the sample's functions
    # have, so a bookworm build is not labelled half bullseye.
    votes = Counter(label for labels in options.values() for label in labels)
    common = f"code shared by >= {cfg.common_families} families"
    return {int(q): max(sorted(options[int(q)]), key=lambda lab: votes[lab])
            if int(q) in options else common for q in rows}


def _function_match(
    index: ReferenceIndex,
    query: Sequence[FunctionFeatures],
    q: int,
    r: int,
    score: float,
    kind: int,
) -> FunctionMatch:
    lab = index.samples[int(index.sample_id[r])]
    fid = int(index.family_id[r])
    is_library = bool(index.is_library[r])
    ref_name = index.function_name[r] if index.function_name is not None else None
    if ref_name is None and index.baseline_names:
        ref_name = index.baseline_names.get(int(index.function_id[r]))
    return FunctionMatch(
        query_va=query[q].va,
        query_name=query[q].name,
        ref_sample_sha256=lab.sha256,
        ref_va=int(index.function_va[r]),
        ref_name=ref_name,
        family=index.families[fid] if fid >= 0 else None,
        score=score,
        kind=KINDS[kind],
        is_library=is_library,
        library=(lab.family or lab.name) if is_library else None,
    )
