"""Attributing executables found in artifacts with the store.

An :data:`Attributor` is a callable ``(name, data) -> Attribution``. :func:`attributor` makes
one from a match over bytes (:meth:`kinship.api.Kinship.match_bytes`); the executable is
analysed in memory, never written to disk. With no store file, or an empty store, every
executable gets ``status="skipped"`` and the reason (:func:`skipped`), so a phishing mail can
be analysed on a machine without references; :func:`kinship.api.open_attributor` picks
between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kinship.artifacts.model import Attribution
from kinship.exceptions import KinshipError
from kinship.match.result import MatchResult

logger = logging.getLogger(__name__)

Attributor = Callable[[str, bytes], Attribution]
# (name, data) -> the store's match of that executable
BytesMatcher = Callable[[str, bytes], MatchResult]


def skipped(reason: str) -> Attributor:
    """An attributor that attributes nothing and says why."""

    def attribute(name: str, data: bytes) -> Attribution:
        return Attribution("skipped", reason)

    return attribute


def attributor(match: BytesMatcher) -> Attributor:
    """An attributor over ``match``: the verdict of each executable, or the error that kept
    it from one (an error is a result, not an aborted artifact)."""

    def attribute(name: str, data: bytes) -> Attribution:
        try:
            r = match(name, data)
        except KinshipError as e:
            return Attribution("error", str(e))
        v = r.verdict
        return Attribution("matched" if v.family else "unknown",
                           "" if v.family else v.reason,
                           v.family, v.actor, v.confidence, v.score)

    return attribute
