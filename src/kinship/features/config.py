"""Configuration of feature extraction (tokens and MinHash sketches).

Every sketch that is ever compared with another must have been computed with the same
``num_perm`` and ``seed``: the store records both and refuses to mix them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinship.exceptions import UsageError


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    # Number of MinHash permutations = length of each sketch, in uint32 slots (4 bytes each).
    # Range 16..1024. The standard error of a Jaccard estimate is sqrt(J(1-J)/num_perm):
    # 0.0625 at J=0.5 for 64. Must be >= bands*rows of the LSH index (index.config).
    num_perm: int = 64
    # Seed of the permutation family (any int >= 0). Changing it invalidates every stored sketch.
    seed: int = 0x6B696E73
    # Instruction n-gram lengths used as code tokens, counted in instructions, within one basic
    # block. Range 1..5 each. (1, 2, 3) -> (1,) (2026-11-26, tuning families only; quick
    # matching bench, 1,000 queries/task, pool 100, R@1/MRR@10, noisy-or score): XO .606/.661
    # -> .647/.699, XC .723/.800 -> .790/.853, XB .843/.885 -> .918/.941, XF .788/.838 ->
    # .841/.883, XM .459/.531 -> .548/.614, XV .936/.949 -> .912/.934; (1, 2) was in between
    # (XO .618/.671). A 2-/3-gram breaks on any reordered or re-allocated neighbour, which is
    # what -O levels and compilers change; the set of normalised instructions survives.
    # Attribution (bench attribution --quick, tuning data): top-1 .944/1.0/.986 -> .944/1.0/1.0,
    # recall of known queries at the calibrated threshold .966 -> .983.
    ngram_sizes: tuple[int, ...] = (1,)
    # Add one token per basic block: the block's mnemonic sequence (operands dropped). Survives
    # register allocation changes between versions/compilers.
    block_mnemonic_tokens: bool = True
    # Fold "reg32"/"reg64" to "reg" (and "dword"/"qword" sized memory to "mem") in normalised
    # instructions so that x86 and x64 builds of one source share code tokens.
    fold_register_width: bool = True
    # Semantic (architecture independent) token kinds to emit.
    sem_apis: bool = True  # called API names (dll dropped, case folded, A/W dropped)
    sem_api_bigrams: bool = True  # consecutive API pairs, in code order
    sem_strings: bool = True  # referenced strings
    sem_constants: bool = True  # distinctive immediates (see tokens.is_distinctive_constant)
    sem_cfg_shape: bool = True  # CFG shape buckets (tokens.N_SHAPE_TOKENS tokens)
    # Strings shorter than this many characters are not sem tokens (too generic). Range 1..64.
    min_string_chars: int = 4
    # Emit a sem sketch only when the function has at least this many specific sem tokens
    # (API, API bigram, string or constant); otherwise the sketch is empty and n_sem_tokens = 0,
    # because CFG-shape tokens alone match every function of the same shape. Range 0..16.
    sem_min_specific_tokens: int = 1
    # Call-graph context (features.context): add the own specific sem tokens of direct callees
    # (as they are: inlining moves them into the caller) and of direct callers (re-tagged).
    # Quick matching set, exact-Jaccard harness, XO R@1/MRR@10 .672/.727 -> .792/.832; every
    # other task rose too (numbers in features/context.py).
    sem_callee_context: bool = True
    sem_caller_context: bool = True
    # Context tokens kept per function (callee + caller, those with the smallest fixed hash).
    # Range 0..4096. 64 vs no cap: XO .792/.832 both (a hub called 300 times keeps 64).
    max_context_tokens: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.num_perm <= 1024:
            raise UsageError(f"FeatureConfig.num_perm must be in 1..1024, not {self.num_perm}")
        if not self.ngram_sizes or any(not 1 <= n <= 5 for n in self.ngram_sizes):
            raise UsageError(f"FeatureConfig.ngram_sizes must be in 1..5: {self.ngram_sizes}")
        if not 0 <= self.max_context_tokens <= 4096:
            raise UsageError("FeatureConfig.max_context_tokens must be in 0..4096")
        if self.seed < 0:
            raise UsageError("FeatureConfig.seed must be >= 0")
