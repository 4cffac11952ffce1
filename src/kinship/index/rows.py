"""Row-aligned arrays of what scoring needs from K functions: the query's rows and the
reference rows gathered from :class:`kinship.index.reference.ReferenceIndex`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.features.minhash import I64, U32
from kinship.features.model import FunctionFeatures


@dataclass(frozen=True, slots=True, eq=False)
class SketchRows:
    """Row-aligned arrays of what scoring needs from K functions."""

    code_sig: U32  # (K, num_perm)
    sem_sig: U32  # (K, num_perm)
    exact_hash: I64  # (K,)
    n_instructions: I64  # (K,)
    n_sem_tokens: I64  # (K,)

    def __len__(self) -> int:
        return len(self.exact_hash)

    @classmethod
    def from_features(cls, features: Sequence[FunctionFeatures], num_perm: int = 64) -> SketchRows:
        if not features:
            empty = np.zeros((0, num_perm), dtype=np.uint32)
            none = np.zeros(0, dtype=np.int64)
            return cls(empty, empty.copy(), none, none.copy(), none.copy())
        return cls(
            np.stack([f.code_sig for f in features]).astype(np.uint32, copy=False),
            np.stack([f.sem_sig for f in features]).astype(np.uint32, copy=False),
            np.array([f.exact_hash for f in features], dtype=np.int64),
            np.array([f.n_instructions for f in features], dtype=np.int64),
            np.array([f.n_sem_tokens for f in features], dtype=np.int64),
        )

    def take(self, idx: I64) -> SketchRows:
        return SketchRows(
            self.code_sig[idx],
            self.sem_sig[idx],
            self.exact_hash[idx],
            self.n_instructions[idx],
            self.n_sem_tokens[idx],
        )
