"""The match result as a document: the JSON contract of ``kinship match --json`` and its
round-trip.

``tests/data/match_contract.json`` is the JSON of one match saved before results became frozen
documents (issue #11): a store of fixture binaries (netsh_x86.exe as ``netsh-backdoor`` of
"Lazarus Group", netsh_v2_x64.exe of the same family, other_x86.exe as ``other``) queried with
netsh_x64.exe. A fresh match must give the same keys at every level and the same values,
except the volatile ones (seconds; ``meta``, the only addition). Regenerate it only on purpose:
``python tests/test_match_document.py`` rewrites it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from kinship.api import Kinship
from kinship.pipeline import Labels

CONTRACT = Path(__file__).resolve().parent / "data" / "match_contract.json"
# Values that change from run to run: timings. Replaced by None before comparing.
VOLATILE_KEYS = frozenset({"seconds"})
# Present in the JSON today, absent from the saved contract: the document's meta block.
ADDED_KEYS = frozenset({"meta"})

REFERENCES = (
    ("netsh_x86.exe", Labels(family="netsh-backdoor", actor="Lazarus Group")),
    ("netsh_v2_x64.exe", Labels(family="netsh-backdoor", actor="Lazarus Group", version="2")),
    ("other_x86.exe", Labels(family="other")),
)
QUERY = "netsh_x64.exe"


def contract_match(bins: dict[str, Path], db: Path) -> Kinship:
    """A store of the contract's references at ``db`` (open; the caller closes it)."""
    k = Kinship(db)
    for name, labels in REFERENCES:
        k.add([bins[name]], labels)
    return k


def normalised(doc: Any) -> Any:
    """``doc`` with volatile values (timings) set to None, at every level."""
    if isinstance(doc, dict):
        return {key: None if key in VOLATILE_KEYS else normalised(v) for key, v in doc.items()}
    if isinstance(doc, list):
        return [normalised(v) for v in doc]
    return doc


def key_paths(doc: Any, prefix: str = "") -> set[str]:
    """Every key path of ``doc`` (list items merged under ``[]``)."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, v in doc.items():
            out.add(f"{prefix}.{key}")
            out |= key_paths(v, f"{prefix}.{key}")
    elif isinstance(doc, list):
        for v in doc:
            out |= key_paths(v, f"{prefix}[]")
    return out


def _write_contract() -> None:
    """Rebuild the saved contract from the current code (on purpose only)."""
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import build

    bins: dict[str, Path] = build.build_all(build.default_cache_dir())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KINSHIP_HOME"] = tmp  # no user baseline packs
        with contract_match(bins, Path(tmp) / "contract.db") as k:
            doc = k.match(bins[QUERY]).to_dict()
    doc = {key: v for key, v in doc.items() if key not in ADDED_KEYS}
    CONTRACT.parent.mkdir(exist_ok=True)
    CONTRACT.write_text(json.dumps(normalised(doc), indent=1) + "\n",
                        encoding="utf-8")


if __name__ == "__main__":
    _write_contract()
