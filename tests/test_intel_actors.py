"""Actor resolution from the offline MISP galaxies: any alias -> one actor."""

from __future__ import annotations

import pytest

from kinship.exceptions import NotFoundError
from kinship.intel.actors import canonical_actor, resolve_actor, same_actor
from kinship.intel.attack import technique


@pytest.mark.parametrize("alias", ["Lazarus", "Lazarus Group", "APT38", "Hidden Cobra", "ZINC",
                                   "hidden cobra", "G0032"])
def test_aliases_resolve_to_lazarus(alias: str) -> None:
    p = resolve_actor(alias)
    assert p.name == "Lazarus Group"
    assert p.attack_id == "G0032"
    assert {"APT38", "Hidden Cobra", "ZINC"} <= set(p.aliases)
    ids = {t.id for t in p.techniques}
    assert "T1562.004" in ids  # the technique of the original report, via ATT&CK "uses"
    assert p.software and p.references


def test_unknown_actor() -> None:
    with pytest.raises(NotFoundError):
        resolve_actor("No Such Actor Xyzzy 12345")


@pytest.mark.parametrize(("label", "stored"), [
    ("Hidden Cobra", "Lazarus Group"), ("hidden cobra", "Lazarus Group"),
    ("G0032", "Lazarus Group"),
    ("  Lazarus Group ", "Lazarus Group"), ("Fancy Bear", "APT28"), ("Sofacy", "APT28"),
    ("Example Actor", "Example Actor"), ("  Some Crew ", "Some Crew"),
    # no substring search when storing: "Bear" and "Lazarus" name no actor exactly
    ("Bear", "Bear"), ("Lazarus", "Lazarus"),
])
def test_canonical_actor_names(label: str, stored: str) -> None:
    assert canonical_actor(label) == stored


def test_same_actor() -> None:
    assert same_actor("Lazarus Group", "Hidden Cobra") and same_actor("ZINC", "G0032")
    assert same_actor("Example Actor", "Example Actor")
    assert not same_actor("Example Actor", "Example") and not same_actor(None, "APT28")
    assert not same_actor("APT28", "Lazarus Group")


def test_attack_v18_detail() -> None:
    t = technique("T1562.004")
    assert t.name == "Disable or Modify System Firewall"
    assert t.parent_name == "Impair Defenses"
    assert "defense-evasion" in t.tactics
    assert technique("T9999").name is None
