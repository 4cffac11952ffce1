"""Every result that is not a match is a document (issue #11): its JSON is derived from the
types by kinship.document, equals what the hand-written ``to_dict`` methods gave before
(``tests/data/documents_before.json``, built from tests/document_examples.py), and reads back
to an equal object.

The JSON may only grow: ``meta`` on the top-level documents, ``cpu_seconds`` on the add
report (a field the old method left out) and ``groups: []`` on a YARA rule of one group (the
old method left the key out when empty). Key order within an object follows the fields, with
computed keys (``n_added``, ``defanged``, ``tpr`` ...) last.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import document_examples as ex
from kinship.artifacts.model import ArtifactResult
from kinship.document import Document, Meta, kinship_version, utc_now
from kinship.exceptions import InputError
from kinship.report.model import IntelReport, SampleIntel

# Keys the documents gained (a key, the JSON it is left out of before comparing).
ADDED = {"meta": None, "cpu_seconds": "*", "groups": []}
# Examples whose JSON rounds a float (``seconds``): equal again after one trip.
ROUNDED = {"capabilities", "add_report", "intel_report"}


def without_added(doc: Any) -> Any:
    """``doc`` without the keys the documents gained (see the module docstring)."""
    if isinstance(doc, dict):
        return {k: without_added(v) for k, v in doc.items()
                if not (k in ADDED and (v == ADDED[k] or ADDED[k] == "*"))}
    if isinstance(doc, list):
        return [without_added(v) for v in doc]
    return doc


@pytest.fixture(scope="module")
def before() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ex.BEFORE.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", sorted(ex.EXAMPLES))
def test_json_is_as_before(name: str, before: dict[str, Any]) -> None:
    now = ex.as_json(ex.EXAMPLES[name]().to_dict())
    assert without_added(now) == without_added(before[name])


@pytest.mark.parametrize("name", sorted(ex.EXAMPLES))
def test_round_trip(name: str) -> None:
    x = ex.EXAMPLES[name]()
    assert isinstance(x, Document)
    cls = type(x)
    doc = ex.as_json(x.to_dict())
    back = cls.from_dict(doc)
    assert cls.from_json(json.dumps(doc)) == back
    if name in ROUNDED:  # the JSON rounds seconds: exact from the second trip on
        again = ex.as_json(back.to_dict())
        assert cls.from_dict(again) == back
        assert ex.as_json(cls.from_dict(again).to_dict()) == again
    else:
        assert back == x
        assert ex.as_json(back.to_dict()) == doc


def test_computed_keys_and_rounding() -> None:
    add = ex.add_report().to_dict()
    assert (add["n_added"], add["n_duplicates"], add["n_failed"], add["n_warnings"]) == (2, 1,
                                                                                         1, 1)
    assert add["n_functions"] == 12 and add["n_instructions"] == 1030
    assert add["seconds"] == 1.235 and add["instructions_per_second"] == round(1030 / 1.23456, 1)
    assert ex.empty_add_report().to_dict()["instructions_per_second"] is None
    assert ex.capabilities().to_dict()["seconds"] == 1.235
    assert ex.capabilities().to_dict()["techniques"][0]["function_vas"] == [0x401000]
    assert ex.iocs().to_dict()["iocs"][0]["defanged"] == "hxxp://evil[.]example/x"
    rule = ex.yara_rule().to_dict()
    assert (rule["validation"]["tpr"], rule["validation"]["ok"]) == (0.5, False)
    assert rule["leave_one_out"] | {"samples": None} == {
        "samples": None, "skipped": 1, "tpr": 0.5, "held_out": 2, "matched": 1,
        "missed": [ex.SHA2]}
    sigma = ex.sigma_result().to_dict()["rules"][0]["validation"]
    assert (sigma["ok"], sigma["tp"], sigma["fp"]) == (False, 1, 0)
    assert "from" in ex.artifact().to_dict()["email"]


def test_edited_verdict_wins() -> None:
    """A saved report's sample ``verdict`` (what people read and may edit) wins over the
    verdict inside its match."""
    doc = ex.as_json(ex.intel_report().to_dict())
    doc["samples"][0]["verdict"] = {**doc["samples"][0]["verdict"], "family": None,
                                    "actor": None, "confidence": None, "status": "unknown"}
    back = IntelReport.from_dict(doc)
    match = back.samples[0].match
    assert match is not None and match.verdict.family is None
    assert not match.verdict.attributed
    assert back.samples[0].verdict == doc["samples"][0]["verdict"]


def test_meta_round_trips() -> None:
    meta = Meta(kinship_version(), {"k": 5}, "store-1", 3, utc_now(), 0.5)
    x = dataclasses.replace(ex.artifact(), meta=meta)
    doc = ex.as_json(x.to_dict())
    assert doc["meta"]["store_id"] == "store-1"
    assert ArtifactResult.from_dict(doc) == x


def test_bad_document_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"r\.json"):
        SampleIntel.from_dict({"sha256": 3}, "r.json")
    with pytest.raises(InputError, match="not JSON"):
        IntelReport.from_json("{", "r.json")
