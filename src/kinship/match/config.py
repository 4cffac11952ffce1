"""Configuration of pair scoring and attribution (defaults to be calibrated by bench/)."""

from __future__ import annotations

from dataclasses import dataclass

from kinship.exceptions import UsageError
from kinship.features.tokens import N_SHAPE_TOKENS


@dataclass(frozen=True, slots=True)
class MatchConfig:
    # Functions (query and reference) with fewer instructions are ignored: too generic (thunks,
    # getters, `xor eax,eax; ret`) to say anything about provenance. Unit: instructions, 1..64.
    min_instructions: int = 8
    # A pair is a match when its score (0..1, see score.py) is at least this. Below it, sketch
    # agreement is within what unrelated compiler output reaches. Range 0..1.
    min_pair_score: float = 0.5
    # Sem tokens of a non-empty sem set that are CFG-shape buckets (FeatureConfig.sem_cfg_shape:
    # N_SHAPE_TOKENS, else 0); they are subtracted before judging how specific a sem set is.
    sem_shape_tokens: int = N_SHAPE_TOKENS
    # Specific sem tokens (APIs, API bigrams, strings, constants; the smaller set of the pair)
    # needed for full trust in the sem Jaccard: trust = clamp((n - sem_shape_tokens) / this, 0, 1).
    # One shared API alone is weak evidence. Unit: tokens, range 1..64.
    sem_full_trust_tokens: int = 4
    # Instruction-count ratio min/max below which a pair's score is scaled down linearly
    # (penalty = min(1, ratio / size_ratio_floor)). x86 vs x64 builds differ by up to ~1.5x.
    # Range 0 (off) .. 1.
    size_ratio_floor: float = 0.5
    # A query function whose best match is a library sample's function with at least this score
    # is library code (CRT, zlib, ...) and leaves the attribution entirely. Range 0..1.
    library_threshold: float = 0.8
    # Verdict is "unknown" (family None) when the top family score is below this. The score is
    # the rarity- and similarity-weighted fraction of the sample's (non-library) code explained
    # by the family. Range 0..1; default pending calibration by bench/.
    unknown_threshold: float = 0.15
    # Confidence = 1 / (1 + exp(-z)), z = confidence_score_slope * (score - unknown_threshold)
    # + confidence_margin_slope * (score - runner_up_score). At the threshold with no runner-up
    # margin that is 0.5; each +0.1 of score or margin multiplies the odds by e (slope 10).
    # For an "unknown" verdict the confidence is 1 - that value. Units: 1/score, range 0..100.
    confidence_score_slope: float = 10.0
    confidence_margin_slope: float = 10.0
    # Families and samples listed in the result (best first). Range 1..1000.
    max_families: int = 10
    max_samples: int = 10

    def __post_init__(self) -> None:
        for name in (
            "min_pair_score",
            "library_threshold",
            "unknown_threshold",
            "size_ratio_floor",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"MatchConfig.{name} must be in 0..1")
        if self.sem_full_trust_tokens < 1 or self.min_instructions < 1:
            raise UsageError("MatchConfig.sem_full_trust_tokens and min_instructions must be >= 1")
