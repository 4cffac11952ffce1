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

import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kinship.api import Kinship, sample_input
from kinship.document import from_jsonable, kinship_version, utc_now
from kinship.exceptions import InputError
from kinship.match.result import MatchResult
from kinship.pipeline import Labels, analyse, feature_params
from kinship.render.html import render_match_html
from kinship.render.terminal import render_match

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


@pytest.fixture(scope="module")
def fresh(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> MatchResult:
    """A fresh match of the contract's query against the contract's store."""
    home = tmp_path_factory.mktemp("kinship-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KINSHIP_HOME", str(home))  # no user baseline packs
        with contract_match(bins, home / "contract.db") as k:
            return k.match(bins[QUERY])


def test_match_json_keeps_the_saved_contract(fresh: MatchResult) -> None:
    saved = json.loads(CONTRACT.read_text(encoding="utf-8"))
    doc = json.loads(json.dumps(fresh.to_dict()))
    assert set(doc) - set(saved) == ADDED_KEYS
    without = {key: v for key, v in doc.items() if key not in ADDED_KEYS}
    assert list(without) == list(saved)  # same keys, in the same order
    assert key_paths(without) == key_paths(saved)
    assert normalised(without) == saved  # the same values, timings aside


def test_match_meta_says_what_made_it(fresh: MatchResult, bins: dict[str, Path]) -> None:
    meta = fresh.to_dict()["meta"]
    assert set(meta) == {"kinship_version", "feature_params", "store_id", "store_generation",
                         "query_time", "seconds"}
    assert meta["kinship_version"] == kinship_version()
    assert meta["feature_params"] == feature_params()
    assert meta["store_id"] and meta["store_generation"] >= len(REFERENCES)
    assert meta["seconds"] == fresh.seconds > 0
    assert fresh.meta is not None and fresh.meta.query_time is not None
    assert fresh.meta.query_time.tzinfo is not None
    assert abs((utc_now() - fresh.meta.query_time).total_seconds()) < 3600


def test_match_document_round_trips(fresh: MatchResult) -> None:
    text = json.dumps(fresh.to_dict())
    again = MatchResult.from_json(text)
    assert again == fresh
    assert again.to_dict() == fresh.to_dict()
    assert from_jsonable(MatchResult, json.loads(text)) == fresh
    with pytest.raises(dataclasses.FrozenInstanceError):
        fresh.seconds = 0.0  # type: ignore[misc]
    with pytest.raises(InputError, match="not a valid MatchResult"):
        MatchResult.from_dict({"sample": {"sha256": "x"}, "verdict": {"family": 3}}, "m.json")
    with pytest.raises(InputError, match="not JSON"):
        MatchResult.from_json("{", "m.json")


def test_saved_match_re_renders(fresh: MatchResult, bins: dict[str, Path]) -> None:
    """A result read back from its JSON renders like the fresh one, in the terminal and as
    the HTML evidence page (no store needed)."""
    again = MatchResult.from_json(json.dumps(fresh.to_dict()))

    def terminal(r: MatchResult) -> str:
        c = Console(record=True, width=120, file=io.StringIO())
        render_match(c, r)
        return c.export_text()

    assert terminal(again) == terminal(fresh)
    assert "netsh-backdoor" in terminal(again)
    query = analyse(sample_input(bins[QUERY]), keep=True)
    assert render_match_html(again, query) == render_match_html(fresh, query)


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
