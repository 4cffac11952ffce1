"""capa (vivisect backend) vs kinship's capa extractor: rule agreement and speed, same files.

    python -m bench.capa_peer [--rules DIR] [--out FILE.json] FILE...

For each file, kinship's time covers its own load + disassembly + capa's rule engine over
``KinshipCapaExtractor``; capa's covers vivisect's analysis + the same rule engine. Library
rules (``lib: true``) and subscope rules are left out of the comparison, as capa's own output
does. Agreement is the Jaccard index of the matched rule names, summed over the files.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_RULES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "capa-rules"


@dataclass
class FileAgreement:
    name: str
    kinship_seconds: float
    capa_seconds: float
    both: list[str]
    capa_only: list[str]
    kinship_only: list[str]


@dataclass
class Agreement:
    files: list[FileAgreement] = field(default_factory=list)

    @property
    def jaccard(self) -> float:
        both = sum(len(f.both) for f in self.files)
        union = both + sum(len(f.capa_only) + len(f.kinship_only) for f in self.files)
        return both / union if union else 1.0

    @property
    def recall_vs_capa(self) -> float:
        both = sum(len(f.both) for f in self.files)
        ref = both + sum(len(f.capa_only) for f in self.files)
        return both / ref if ref else 1.0

    def to_dict(self) -> dict[str, Any]:
        k = sum(f.kinship_seconds for f in self.files)
        c = sum(f.capa_seconds for f in self.files)
        return {"files": [asdict(f) for f in self.files], "jaccard": round(self.jaccard, 4),
                "recall_vs_capa": round(self.recall_vs_capa, 4),
                "kinship_seconds": round(k, 3), "capa_seconds": round(c, 3),
                "speed_ratio": round(c / k, 2) if k else None}


def compare(files: list[Path], rules_dir: Path) -> Agreement:
    import capa.capabilities.common
    import capa.loader
    from capa.features.common import FORMAT_AUTO, OS_AUTO

    from kinship.intel.capa_extractor import KinshipCapaExtractor
    from kinship.intel.capabilities import CapabilitiesConfig, load_rules
    from kinship.pipeline import SampleInput, analyse

    rules = load_rules(CapabilitiesConfig(rules_dir=rules_dir, builtin_rules=False))

    def names(caps: Any) -> set[str]:
        return {n for n in caps.matches if not rules.rules[n].meta.get("lib")
                and not rules.rules[n].meta.get("capa/subscope-rule")}

    out = Agreement()
    for p in files:
        t0 = time.perf_counter()
        a = analyse(SampleInput(name=str(p), path=p), keep=True)
        assert a.binary is not None and a.disassembly is not None
        ours = names(capa.capabilities.common.find_capabilities(
            rules, KinshipCapaExtractor(a.binary, a.disassembly), disable_progress=True))
        t1 = time.perf_counter()
        vex = capa.loader.get_extractor(p, FORMAT_AUTO, OS_AUTO, capa.loader.BACKEND_VIV, [],
                                        should_save_workspace=False, disable_progress=True)
        viv = names(capa.capabilities.common.find_capabilities(rules, vex,
                                                               disable_progress=True))
        t2 = time.perf_counter()
        out.files.append(FileAgreement(p.name, round(t1 - t0, 3), round(t2 - t1, 3),
                                       sorted(ours & viv), sorted(viv - ours),
                                       sorted(ours - viv)))
        f = out.files[-1]
        print(f"{p.name}: kinship {f.kinship_seconds:.2f}s capa {f.capa_seconds:.2f}s "
              f"both {len(f.both)} capa-only {f.capa_only} kinship-only {f.kinship_only}",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="capa rules folder")
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # vivisect is chatty
    res = compare(args.files, args.rules).to_dict()
    print(f"jaccard {res['jaccard']}  recall vs capa {res['recall_vs_capa']}  "
          f"capa slower by {res['speed_ratio']}x")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
