"""ATT&CK Navigator layer (JSON, layer format 4.5) from an :class:`IntelReport`.

Each technique seen in the code gets a score (number of samples showing it) and a comment
naming the functions and rules (kinship's own, and capa's when given); techniques only known
from the actor profile are added with score 0 and a different colour, so the layer shows "seen
here" against "known for actor".
"""

from __future__ import annotations

from typing import Any

from kinship.intel.attack import ATTACK_VERSION
from kinship.report.model import IntelReport

NAVIGATOR_VERSION = "5.1.0"
LAYER_VERSION = "4.5"
SEEN_COLOR = "#e60d0d"
ACTOR_COLOR = "#66b1ff"


def to_layer(report: IntelReport) -> dict[str, Any]:
    techniques: list[dict[str, Any]] = []
    seen = set()
    for t in report.techniques:
        samples = sorted({e["sample"] for e in t["evidence"]})
        where = ", ".join(sorted({f"{e['sample']}@0x{e['function_va']:x}"
                                  for e in t["evidence"] if e["function_va"] is not None}))
        techniques.append({
            "techniqueID": t["id"], "score": len(samples), "color": SEEN_COLOR,
            "comment": f"seen in code: {where}; rules: {', '.join(t['rules'])}",
            "enabled": True, "showSubtechniques": True,
        })
        seen.add(t["id"])
    if report.actor is not None:
        for at in report.actor.techniques:
            if at.id not in seen:
                techniques.append({"techniqueID": at.id, "score": 0, "color": ACTOR_COLOR,
                                   "comment": f"known for {report.actor.name} (MISP galaxy)",
                                   "enabled": True})
    return {
        "name": f"kinship: {report.title}",
        "versions": {"attack": ATTACK_VERSION.split(".")[0], "navigator": NAVIGATOR_VERSION,
                     "layer": LAYER_VERSION},
        "domain": "enterprise-attack",
        "description": "ATT&CK techniques found by kinship's rules (and capa rules when "
                       "given) over kinship's disassembly, library code skipped",
        "techniques": techniques,
        "gradient": {"colors": ["#ffffff", SEEN_COLOR], "minValue": 0,
                     "maxValue": max(1, len(report.samples))},
        "legendItems": [{"label": "seen in the samples' code", "color": SEEN_COLOR},
                        {"label": "known for the actor", "color": ACTOR_COLOR}],
    }
