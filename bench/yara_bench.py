"""YARA rules per family on the dev corpus: generate with ``kinship rules yara``, then measure.

``python -m bench.yara_bench [--quick] [--small] [--out FILE] [--write-docs]`` (``--small``: see
:func:`run_small`)

Protocol (the YARA-Signator evaluation, Malpedia: one rule per family from known samples,
scored on samples the rule never saw):

1. For each benchmark family (:data:`FAMILIES`), the samples of its newest releases are held
   out (Debian/Wine: the newest Debian release, i.e. trixie; PyPI: the newest third of the
   versions); the older ones are ingested into a fresh store with their family label (files
   kept next to the store, as ``kinship add`` does).
2. ``kinship rules yara --family F --db STORE --json`` generates one rule per family; it is
   validated before it is written (every stored sample of F, none of the other stored ones).
3. Every rule is scanned over (a) the stored samples ("train": TPR/FPR as the generator saw
   them) and (b) the held-out samples of every benchmark family plus every sample of the other
   corpus families ("test", never seen by the generator; py-pycryptodome capped at
   :data:`MAX_OUTSIDER_PER_FAMILY` files).

Per family: TP/FN over its held-out samples, FP over every held-out sample of other families
and the outsider files; TPR, FPR, precision, F1 = 2TP / (2TP + FP + FN). Overall: micro-average
over families. A family for which no rule validates counts its held-out samples as FN.
Leave-one-out TPR (as `kinship rules yara` reports it, over the stored samples only): for each
stored sample, do the rules made from the family's other stored samples match it?
Files are the corpus' stripped copies (``bench.gt.stripped_copy``), as in the other benches.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench.gt import DEFAULT_CACHE, CorpusEntry, ensure_corpus, load_manifest, stripped_copy

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
# Families that get a rule: small Debian libraries (ELF x86/x64, three releases), Wine DLLs and
# EXEs (ELF in wine 5.0, MinGW PE in 8.0/10.0) and two PyPI extensions (MSVC PE + GCC ELF).
FAMILIES = ("bzip2", "cjson", "jansson", "zlib", "yaml", "xz", "wine-bcrypt", "wine-psapi",
            "wine-version", "wine-rundll32", "wine-taskkill", "py-markupsafe",
            "py-simplejson")
QUICK_FAMILIES = ("cjson", "zlib", "wine-psapi", "wine-version", "py-markupsafe")
# Outsider files per other corpus family (py-pycryptodome alone has 856): negatives are cheap
# (one YARA scan each), this only bounds the run time.
MAX_OUTSIDER_PER_FAMILY = 40
DEBIAN_RELEASES = ("bullseye", "bookworm", "trixie")
# Published anchor: YARA-Signator (Malpedia), F1 0.979.
ANCHOR_F1 = 0.979


@dataclass
class FamilyScore:
    family: str
    n_train: int
    n_test: int
    rule: bool  # a rule validated on the stored samples
    n_strings: int = 0
    n_code: int = 0
    n_groups: int = 0  # rules (one per group of samples that share code)
    loo_tp: int = 0  # leave-one-out over the stored samples: held-out samples matched ...
    loo_n: int = 0  # ... of held out
    seconds: float = 0.0  # `kinship rules yara` wall time
    train_tp: int = 0
    train_fn: int = 0
    train_fp: int = 0
    train_tn: int = 0
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    false_negatives: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tpr": round(self.tpr, 4), "fpr": round(self.fpr, 5),
                "f1": round(self.f1, 4), "loo_tpr": round(self.loo_tpr, 4)}

    @property
    def loo_tpr(self) -> float:
        return self.loo_tp / self.loo_n if self.loo_n else 0.0


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _release(e: CorpusEntry) -> tuple[Any, ...]:
    parts = e.source.split(":")
    if parts[0] == "debian" and parts[1] in DEBIAN_RELEASES:
        return (DEBIAN_RELEASES.index(parts[1]),)
    return _natural(e.version)


def split(entries: list[CorpusEntry]) -> tuple[list[CorpusEntry], list[CorpusEntry]]:
    """(train, held-out): the newest third of the releases (at least one) is held out."""
    releases = sorted({_release(e) for e in entries})
    n_hold = max(1, round(len(releases) / 3))
    held = set(releases[len(releases) - n_hold:])
    return ([e for e in entries if _release(e) not in held],
            [e for e in entries if _release(e) in held])


def _cli(*args: str | Path) -> tuple[int, str]:
    from kinship.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def run(families: tuple[str, ...], cache: Path = DEFAULT_CACHE,
        strings_share: float | None = None) -> dict[str, Any]:
    import yara

    from kinship.api import Kinship
    from kinship.pipeline import Labels

    dev = ensure_corpus(cache)
    entries = load_manifest(dev)
    by_family: dict[str, list[CorpusEntry]] = defaultdict(list)
    for e in entries:
        by_family[e.family].append(e)
    train: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for f in families:
        tr, te = split(by_family[f])
        train[f] = [stripped_copy(dev, e, cache) for e in tr]
        test[f] = [stripped_copy(dev, e, cache) for e in te]
    outsiders = [stripped_copy(dev, e, cache)
                 for fam, es in sorted(by_family.items()) if fam not in families
                 for e in sorted(es, key=lambda x: x.sha256)[:MAX_OUTSIDER_PER_FAMILY]]
    scores: list[FamilyScore] = []
    rules: dict[str, str] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kinship-yara-") as tmp:
        db = Path(tmp) / "k.db"
        t0 = time.perf_counter()
        with Kinship(db) as k:
            for f in families:
                k.add(train[f], Labels(family=f))
        ingest_s = time.perf_counter() - t0
        for f in families:
            s = FamilyScore(f, len(train[f]), len(test[f]), rule=False)
            t0 = time.perf_counter()
            extra = ["--strings-share", str(strings_share)] if strings_share is not None else []
            code, out = _cli("rules", "yara", "--family", f, "--db", db, "--json", *extra)
            s.seconds = round(time.perf_counter() - t0, 2)
            if code == 0:
                doc = json.loads(out)
                rules[f] = doc["text"]
                s.rule, s.n_strings, s.n_code = True, len(doc["strings"]), len(doc["code"])
                s.n_groups = len(doc.get("groups") or [doc])
                loo = doc.get("leave_one_out") or {}
                s.loo_tp, s.loo_n = int(loo.get("matched", 0)), int(loo.get("held_out", 0))
            else:
                s.error = out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
            scores.append(s)
    compiled = {f: yara.compile(source=t) for f, t in rules.items()}

    def hits(f: str, path: Path) -> bool:
        return f in compiled and bool(compiled[f].match(str(path), timeout=60))

    for s in scores:
        for g, paths in train.items():
            for p in paths:
                h = hits(s.family, p)
                if g == s.family:
                    s.train_tp += h
                    s.train_fn += not h
                else:
                    s.train_fp += h
                    s.train_tn += not h
        negatives = [p for g, ps in test.items() if g != s.family for p in ps] + outsiders
        for p in test[s.family]:
            if hits(s.family, p):
                s.tp += 1
            else:
                s.fn += 1
                s.false_negatives.append(p.name)
        for p in negatives:
            if hits(s.family, p):
                s.fp += 1
                s.false_positives.append(p.name)
            else:
                s.tn += 1
    tot = FamilyScore("overall", sum(s.n_train for s in scores), sum(s.n_test for s in scores),
                      rule=all(s.rule for s in scores),
                      seconds=round(sum(s.seconds for s in scores), 2))
    for name in ("tp", "fn", "fp", "tn", "train_tp", "train_fn", "train_fp", "train_tn",
                 "loo_tp", "loo_n"):
        setattr(tot, name, sum(getattr(s, name) for s in scores))
    return {
        "benchmark": "yara", "date": dt.date.today().isoformat(),
        "families": [s.to_dict() for s in scores],
        "overall": {k: v for k, v in tot.to_dict().items()
                    if k not in ("false_negatives", "false_positives", "error", "family")},
        "strings_share": strings_share, "n_outsiders": len(outsiders),
        "ingest_seconds": round(ingest_s, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "anchor": {"name": "YARA-Signator (Malpedia)", "f1": ANCHOR_F1},
        "rules": rules,
    }


def render_table(res: dict[str, Any]) -> str:
    rows = ["| family | train / test | rule (strings + code) | train TPR / FPR | "
            "leave-one-out TPR | test TPR | test FPR | F1 | gen. s |",
            "|---|---|---|---|---|---|---|---|---|"]

    def fmt(d: dict[str, Any], name: str) -> str:
        ttp, tfn, tfp, ttn = d["train_tp"], d["train_fn"], d["train_fp"], d["train_tn"]
        ttpr = ttp / (ttp + tfn) if ttp + tfn else 0.0
        tfpr = tfp / (tfp + ttn) if tfp + ttn else 0.0
        rule = f"{d['n_strings']} + {d['n_code']}" if d.get("rule") else "none"
        if d.get("n_groups", 1) > 1:
            rule += f" ({d['n_groups']} rules)"
        loo = (f"{d.get('loo_tpr', 0.0):.3f} ({d.get('loo_tp', 0)}/{d.get('loo_n', 0)})"
               if d.get("loo_n") else "-")
        if name == "**overall**":
            rule = ""
        return (f"| {name} | {d['n_train']} / {d['n_test']} | {rule} | {ttpr:.2f} / "
                f"{tfpr:.3f} | {loo} | {d['tpr']:.3f} ({d['tp']}/{d['tp'] + d['fn']}) | "
                f"{d['fpr']:.4f} ({d['fp']}/{d['fp'] + d['tn']}) | {d['f1']:.3f} | "
                f"{d['seconds'] if name != '**overall**' else ''} |")

    for d in res["families"]:
        rows.append(fmt(d, d["family"]))
    rows.append(fmt(res["overall"], "**overall**"))
    return "\n".join(rows)


def docs_section(res: dict[str, Any], out: Path) -> str:
    o = res["overall"]
    where = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    return (
        f"\n## YARA rules per family (`bench/yara_bench.py`, {res['date']})\n\n"
        f"`python -m bench.yara_bench` -> `{where}`."
        " One rule per family from `kinship rules yara` over a store holding the older releases "
        "of each family (Debian/Wine: bullseye + bookworm; PyPI: older two thirds of the "
        "versions); test = the newest release of every benchmark family plus "
        f"{res['n_outsiders']} files of the other corpus families (never seen). FP counts a "
        "rule firing on any file outside its family. Anchor: YARA-Signator, F1 "
        f"{ANCHOR_F1} on Malpedia (different corpus: compare the protocol, not the digits).\n\n"
        + render_table(res)
        + f"\n\nOverall: test TPR {o['tpr']:.3f}, FPR {o['fpr']:.4f}, F1 {o['f1']:.3f}, "
        f"leave-one-out TPR {o['loo_tpr']:.3f} on the stored samples; "
        f"ingest {res['ingest_seconds']} s, whole run {res['total_seconds']} s (2-core box).\n"
    )


# ---- small programs (issue #9): rules from a 2016 x86 build vs the later builds ------------
def run_small(quick: bool = True) -> dict[str, Any]:
    """YARA on ``bench/small_programs`` (ten families of our own small C programs, most of
    each binary compiler runtime), two stores:

    * references: each family's "2016" builds (v1 i686 MinGW -O2 and v1 gcc x64 -O2; see
      ``bench.small_programs.REFERENCE_BUILDS``), the rule scanned over every other build of
      every family: TPR per query group (version, opt, arch, arch+opt, compiler), the "2019"
      rebuild (v2 x86_64 MinGW -O2) alone, FPR over the other families' builds; and the
      leave-one-out TPR the generator reports on its two reference builds;
    * all builds: every build of every family stored; leave-one-out TPR over each family's
      builds (does the rule from the others catch this build?) and rules per family.

    ``quick``: MinGW x86/x64, gcc x64, clang x64 at -O2/-Os (160 builds); else every
    toolchain and -O0/-O2/-Os (360).
    """
    import yara

    from bench import small_programs as sp
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    wanted = sp.QUICK_TOOLCHAINS if quick else tuple(t.name for t in sp.TOOLCHAINS)
    opts = sp.QUICK_OPTS if quick else sp.OPTS
    tcs, missing = sp.available_toolchains(wanted)
    fams = [f.name for f in sp.FAMILIES]
    builds = sp.all_builds(fams, [t.name for t in tcs], opts)
    paths = sp.compile_all(builds, sp.DEFAULT_CACHE, 2, lambda m: logger.info("%s", m))
    refs = [b for b in sp.reference_builds(fams) if b in paths]
    later = ("mingw-x64", "-O2", "v2")
    t_start = time.perf_counter()

    def rules_of(store_builds: list[Any]) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="kinship-yara-small-") as tmp:
            db = Path(tmp) / "k.db"
            with Kinship(db) as k:
                for f in fams:
                    k.add([paths[b] for b in store_builds if b.family == f], Labels(family=f))
            for f in fams:
                code, out = _cli("rules", "yara", "--family", f, "--db", db, "--json")
                docs[f] = json.loads(out) if code == 0 else {
                    "error": out.strip().splitlines()[-1] if out.strip() else f"exit {code}"}
        return docs

    # store 1: the reference builds
    ref_docs = rules_of(refs)
    compiled = {f: yara.compile(source=d["text"]) for f, d in ref_docs.items() if "text" in d}
    per_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # group -> [tp, n]
    fp = tn = 0
    fams_out: list[dict[str, Any]] = []
    for f in fams:
        d = ref_docs[f]
        row: dict[str, Any] = {"family": f, "rule": "text" in d, "error": d.get("error", ""),
                               "n_rules": len(d.get("groups") or ([d] if "text" in d else [])),
                               "ref_loo": (d.get("leave_one_out") or {}).get("tpr"),
                               "tp": 0, "n": 0, "later_x64": None, "fp": 0}
        for b in builds:
            if b in refs:
                continue
            hit = f in compiled and bool(compiled[f].match(str(paths[b]), timeout=60))
            if b.family == f:
                g = sp.query_group(b, fams, refs)
                per_group[g][0] += hit
                per_group[g][1] += 1
                row["tp"] += hit
                row["n"] += 1
                if b.key == later:
                    row["later_x64"] = hit
            else:
                fp += hit
                tn += not hit
                row["fp"] += hit
        fams_out.append(row)
    # store 2: every build
    all_docs = rules_of(list(builds))
    loo_tp = loo_n = 0
    for row in fams_out:
        d = all_docs[row["family"]]
        loo = d.get("leave_one_out") or {}
        row["all_loo_tp"], row["all_loo_n"] = int(loo.get("matched", 0)), int(
            loo.get("held_out", 0))
        row["all_n_rules"] = len(d.get("groups") or ([d] if "text" in d else []))
        row["all_error"] = d.get("error", "")
        loo_tp += row["all_loo_tp"]
        loo_n += row["all_loo_n"]
    later_hits = [r["later_x64"] for r in fams_out if r["later_x64"] is not None]
    return {
        "benchmark": "yara-small", "date": dt.date.today().isoformat(), "quick": quick,
        "toolchains": [t.name for t in tcs], "missing_toolchains": missing,
        "opts": list(opts), "n_builds": len(builds), "families": fams_out,
        "reference_rules": sum(r["rule"] for r in fams_out),
        "per_group": {g: {"tp": v[0], "n": v[1], "tpr": round(v[0] / v[1], 4) if v[1] else None}
                      for g, v in sorted(per_group.items())},
        "later_x64": {"tp": sum(later_hits), "n": len(later_hits)},
        "fp": fp, "tn": tn, "fpr": round(fp / (fp + tn), 5) if fp + tn else 0.0,
        "all_builds_loo": {"tp": loo_tp, "n": loo_n,
                           "tpr": round(loo_tp / loo_n, 4) if loo_n else None},
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }


def render_small(res: dict[str, Any]) -> str:
    rows = ["| family | rules from the 2016 builds | their leave-one-out | later builds "
            "matched | 2019 x64 rebuild | FP | all builds stored: rules, leave-one-out |",
            "|---|---|---|---|---|---|---|"]
    for r in res["families"]:
        later = {None: "-", True: "yes", False: "**missed**"}[r["later_x64"]]
        rule = str(r["n_rules"]) if r["rule"] else "none"
        ref_loo = "-" if r["ref_loo"] is None else f"{r['ref_loo']:.2f}"
        all_rules = str(r["all_n_rules"]) if not r["all_error"] else "none"
        rows.append(f"| {r['family']} | {rule} | {ref_loo} | {r['tp']}/{r['n']} | {later} | "
                    f"{r['fp']} | {all_rules}, {r['all_loo_tp']}/{r['all_loo_n']} |")
    g = ", ".join(f"{k} {v['tp']}/{v['n']}" for k, v in res["per_group"].items())
    lo = res["all_builds_loo"]
    rows.append("")
    rows.append(f"Later builds matched by the 2016 rules, per group: {g}; 2019 x64 rebuild "
                f"{res['later_x64']['tp']}/{res['later_x64']['n']}; FPR {res['fpr']:.4f} "
                f"({res['fp']}/{res['fp'] + res['tn']}); all builds stored: leave-one-out TPR "
                f"{lo['tpr']} ({lo['tp']}/{lo['n']}); {res['total_seconds']} s.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.yara_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_FAMILIES)}")
    p.add_argument("--families", help="comma-separated family list (default: FAMILIES)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default bench/results/<date>-yara[-quick].json)")
    p.add_argument("--write-docs", action="store_true",
                   help="append the result table to docs/BENCHMARKS.md")
    p.add_argument("--strings-share", type=float, default=None,
                   help="passed to `kinship rules yara --strings-share` (default: its own)")
    p.add_argument("--small", action="store_true",
                   help="the small-programs task (bench/small_programs): rules from the 2016 "
                        "builds vs later builds, leave-one-out over every build")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING)
    if a.small:
        res = run_small(quick=a.quick)
        out = a.out or REPO / "bench" / "results" / (
            f"{res['date']}-yara-small{'-quick' if a.quick else ''}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        print(render_small(res))
        print(f"-> {out}")
        return 0
    fams = (tuple(a.families.split(",")) if a.families
            else QUICK_FAMILIES if a.quick else FAMILIES)
    res = run(fams, strings_share=a.strings_share)
    out = a.out or REPO / "bench" / "results" / (
        f"{res['date']}-yara{'-quick' if a.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(render_table(res))
    o = res["overall"]
    print(f"overall TPR {o['tpr']:.3f} FPR {o['fpr']:.4f} F1 {o['f1']:.3f} "
          f"leave-one-out TPR {o['loo_tpr']:.3f} ({o['loo_tp']}/{o['loo_n']}) "
          f"({res['total_seconds']} s) -> {out}")
    if a.write_docs:
        docs = REPO / "docs" / "BENCHMARKS.md"
        with docs.open("a", encoding="utf-8") as fh:  # append only: others edit other sections
            fh.write(docs_section(res, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
