"""Configuration of the LSH candidate index."""

from __future__ import annotations

from dataclasses import dataclass

from kinship.exceptions import UsageError


@dataclass(frozen=True, slots=True)
class IndexConfig:
    # LSH banding of the code sketches: ``bands`` bands of ``rows`` sketch slots each
    # (bands*rows <= FeatureConfig.num_perm). Two functions become candidates when one band is
    # equal; P(candidate) = 1 - (1 - J**rows)**bands, about 0.5 at J = (1/bands)**(1/rows).
    # 16 x 4 (threshold ~0.5): P = 0.89 at J=0.6, 0.12 at J=0.3. Range: bands 1..256, rows 1..16.
    # Memory: 12 bytes per function per band (uint64 key + uint32 row).
    code_bands: int = 16
    code_rows: int = 4
    # Same for the sem sketches (small token sets, so the same threshold works).
    sem_bands: int = 16
    sem_rows: int = 4
    # Candidates taken from one bucket (functions sharing one band key, or one exact hash) per
    # query: an arbitrary subset when the bucket is larger. A bucket holding thousands of
    # functions is generic code (CRT, compiler stubs); the cap bounds query cost to
    # O(bands * max_bucket) per query function. Range 1..10**6.
    max_bucket: int = 512
    # Candidate reference functions kept per query function (after merging exact, code and sem
    # hits; ranked by band hits, round-robin over families: ReferenceIndex.candidates). Bounds
    # scoring to O(query functions * this) whatever the index size. Range 1..10**6.
    max_candidates: int = 256

    def __post_init__(self) -> None:
        for name in (
            "code_bands",
            "code_rows",
            "sem_bands",
            "sem_rows",
            "max_bucket",
            "max_candidates",
        ):
            if getattr(self, name) < 1:
                raise UsageError(f"IndexConfig.{name} must be >= 1")
