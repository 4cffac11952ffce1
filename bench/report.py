"""docs/BENCHMARKS.md tables from a results dict (see bench/__main__.py)."""

from __future__ import annotations

from typing import Any


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def matching_table(tasks: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| task | queries | pool | kinship R@1 | MCRIT R@1 | ratio | kinship MRR@10 | MCRIT MRR@10"
        " | ratio | kinship AUC | MCRIT AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in tasks:
        k, m = t["metrics"].get("kinship", {}), t["metrics"].get("mcrit", {})
        for pool in ("100", "10000"):
            r1, mr = f"recall@1_{pool}", f"mrr@10_{pool}"
            real = t["pool_sizes"].get(pool, pool)
            lines.append(
                f"| {t['task']} | {t['n_queries']} | {real} | {k.get(r1, 0):.3f} | "
                f"{m.get(r1, float('nan')):.3f} | {_ratio(k.get(r1, 0), m.get(r1, 0))} | "
                f"{k.get(mr, 0):.3f} | {m.get(mr, float('nan')):.3f} | "
                f"{_ratio(k.get(mr, 0), m.get(mr, 0))} | {k.get('auc', 0):.3f} | "
                f"{m.get('auc', float('nan')):.3f} |"
            )
    return lines


def _f(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "-"


# Unknown-family groups, in table order, with their labels (bench/attribution.py, heldout.py).
UNKNOWN_GROUPS = (
    ("tuning", "tuning"),
    ("left_out", "left-out"),
    ("holdout", "old held-out (tuned-on: looked at while tuning)"),
    ("fresh_holdout", "**fresh held-out** (frozen 2026-12-08, never looked at)"),
)


def fresh_vs_table(k: dict[str, Any], m: dict[str, Any] | None) -> list[str]:
    """Known-family experiments on the frozen fresh held-out families, kinship (vs MCRIT)."""
    fk = k.get("fresh_experiments") or {}
    if not fk:
        return []
    fm = (m or {}).get("fresh_experiments") or {}
    fams = ", ".join(k.get("fresh_holdout_families", []))
    out = [f"Fresh held-out families ({fams}) as known families: older versions / x64 builds "
           "indexed with the tuning experiment's index, newest version / x86 builds queried.",
           "", "| experiment | indexed | queries | kinship top-1 | MCRIT top-1 "
           "| kinship verdict correct | MCRIT verdict correct | kinship correct at calibrated "
           "| MCRIT correct at calibrated |", "| --- | --- | --- | --- | --- | --- | --- | --- "
           "| --- |"]
    for name, e in fk.items():
        p = fm.get(name, {})
        out.append(f"| fresh-{name} | {e['n_indexed']} | {e['n_queries']} | {_f(e['top1'])} "
                   f"| {_f(p.get('top1'))} | {_f(e['verdict_correct'])} "
                   f"| {_f(p.get('verdict_correct'))} | {_f(e.get('correct_at_calibrated'))} "
                   f"| {_f(p.get('correct_at_calibrated'))} |")
    return [*out, ""]


def ingest_lines(ing: dict[str, Any]) -> list[str]:
    """Ingest throughput kinship vs MCRIT, same binaries and run, on equal function counts."""
    if not ing:
        return []
    k, m = ing["kinship"], ing["mcrit"]
    out = [f"Ingest, same {ing['binaries']} binaries in this run (kinship pipeline.analyse vs "
           "MCRIT SMDA + MinHash), CPU seconds: kinship "
           f"{k['cpu_s']}, MCRIT {m['cpu_s']}. Own counts (as reported before): kinship "
           f"{k['functions_per_cpu_s']} of its {k['functions']} functions per CPU-s, MCRIT "
           f"{m['functions_per_cpu_s']} of its {m['functions_minhashable']} minhashable "
           f"functions (of {m['functions_smda_all']} SMDA functions) per CPU-s: "
           f"{ing['ratio_own_counts']}x. Equal function counts:", "",
           "| functions counted | n | kinship per CPU-s | MCRIT per CPU-s | ratio |",
           "| --- | --- | --- | --- | --- |"]
    for name, e in ing["equal_counts"].items():
        out.append(f"| {name} | {e['functions']} | {e['kinship_per_cpu_s']} "
                   f"| {e['mcrit_per_cpu_s']} | {e['ratio']}x |")
    return [*out, ""]


def attribution_vs_table(k: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """Family attribution, kinship vs MCRIT (same binaries, splits and queries); ratio =
    kinship / MCRIT (higher is better for top-1/top-5/recall, lower for false attribution)."""
    out = ["### Family attribution, kinship vs MCRIT", "",
           "| held out | indexed (library) | queries | kinship top-1 | MCRIT top-1 | ratio "
           "| kinship top-5 | MCRIT top-5 | ratio | kinship median query s "
           "| MCRIT median query s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in k["experiments"].items():
        p = m["experiments"].get(name, {})
        out.append(f"| {name} | {e['n_indexed']} ({e.get('n_library', 0)}) | {e['n_queries']} "
                   f"| {_f(e['top1'])} | {_f(p.get('top1'))} | "
                   f"{_ratio(e['top1'], p.get('top1', 0))} | {_f(e['top5'])} | "
                   f"{_f(p.get('top5'))} | {_ratio(e['top5'], p.get('top5', 0))} | "
                   f"{e['median_query_s']} | {p.get('median_query_s', '-')} |")
    tk, tm = k["calibrated_threshold"], m["calibrated_threshold"]
    out += ["", "Unknown families (the answer must be \"unknown\"). Default: kinship's "
            "MatchConfig threshold; MCRIT has none (it reports every family with a matched "
            "function, no minimum score), so its default false attribution is any non-library "
            f"family matched. Calibrated: the same rule on each tool's own tuning + left-out "
            f"scores (kinship {tk}, MCRIT {tm} of matchable bytes).", "",
            "| unknown set | samples | kinship FA default | MCRIT FA default (any match) "
            "| kinship FA calibrated | MCRIT FA calibrated | kinship max score "
            "| MCRIT max score |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group, label in UNKNOWN_GROUPS:
        u, v = k["unknown"].get(group), m["unknown"].get(group, {})
        if u:
            out.append(f"| {label} | {u['n']} | {_f(u['false_attribution_default'])} | "
                       f"{_f(v.get('false_attribution_default'))} | "
                       f"{_f(u.get('false_attribution_calibrated'))} | "
                       f"{_f(v.get('false_attribution_calibrated'))} | "
                       f"{_f(u.get('max_score'))} | {_f(v.get('max_score'))} |")
    rk = k["unknown"].get("known_at_calibrated", {}).get("recall")
    rm = m["unknown"].get("known_at_calibrated", {}).get("recall")
    out += ["", f"Recall of known queries (top-1 correct and above the calibrated threshold): "
            f"kinship {_f(rk)}, MCRIT {_f(rm)}"
            + (f" ({_ratio(rk, rm)})." if rk is not None and rm is not None else ".")]
    ok, om = k.get("operating_point", {}), m.get("operating_point", {})
    if ok and om:
        out += ["", "Curve summary (first threshold with <= 1% false attribution over the "
                "tuning, left-out and old held-out unknowns, fresh held-out left out; a "
                "description of the curves, not a setting): "
                f"kinship recall {_f(ok['recall'])} / precision {_f(ok['precision'])} at "
                f"{ok['threshold']}, MCRIT recall {_f(om['recall'])} / precision "
                f"{_f(om['precision'])} at {om['threshold']} "
                f"({_ratio(ok['recall'], om['recall'])})."]
    curve = m.get("curve", [])
    if curve:
        out += ["", "MCRIT precision/recall over its threshold (fraction of matchable bytes):",
                "", "| threshold | recall | precision | false attribution |",
                "| --- | --- | --- | --- |"]
        for c in curve:
            if round(c["threshold"] * 100) in (0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 70):
                out.append(f"| {c['threshold']:.2f} | {c['recall']:.3f} | "
                           f"{c['precision']:.3f} | {c['false_attribution']:.3f} |")
    if m.get("n_failed"):
        out += ["", f"MCRIT (SMDA) failed on {m['n_failed']} binaries: their queries count as "
                "unanswered, they are not indexed."]
    out.append("")
    out += fresh_vs_table(k, m)
    return out


def render(results: dict[str, Any]) -> str:
    out = [f"Run: `{results.get('command', '')}` on {results.get('machine', '')}, "
           f"{results.get('date', '')}, git {results.get('git', '')}.", ""]
    m = results.get("matching")
    if m:
        out += ["### Function matching (Marcelli 2022 protocol)", ""]
        out += [*matching_table(m["tasks"]), ""]
        if m.get("holdout"):
            out += ["Old held-out families (looked at while tuning attribution in round 2: "
                    "tuned-on):", ""]
            out += [*matching_table(m["holdout"]), ""]
        out += [f"Functions: {m['n_functions']} in {m['n_binaries']} binaries; coverage "
                f"{m['coverage']}. Ingest speed per core: {m['speed']}.", ""]
    a = results.get("attribution")
    if a:
        out += ["### Family attribution (kinship)", "",
                "| held out | indexed (library) | queries | top-1 | top-1, component indexed "
                "| top-5 | verdict correct |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, e in a["experiments"].items():
            seen = (f"{e['top1_component_indexed']:.3f} ({e['n_queries_component_indexed']})"
                    if "top1_component_indexed" in e else "")
            out.append(f"| {name} | {e['n_indexed']} ({e.get('n_library', 0)}) | "
                       f"{e['n_queries']} | {e['top1']:.3f} | {seen} | {e['top5']:.3f} | "
                       f"{e['verdict_correct']:.3f} |")
        t = a["calibrated_threshold"]
        out += ["", "Unknown families (samples of families in no index; the answer must be "
                "\"unknown\"):", "",
                "| unknown set | samples | false attribution at default threshold | at "
                f"threshold calibrated on tuning + left-out unknowns ({t}) | max top score |",
                "| --- | --- | --- | --- | --- |"]
        for group, label in UNKNOWN_GROUPS:
            u = a["unknown"].get(group)
            if u:
                out.append(f"| {label} | {u['n']} | {u['false_attribution_default']:.3f} | "
                           f"{u.get('false_attribution_calibrated', float('nan')):.3f} | "
                           f"{u.get('max_score', float('nan')):.3f} |")
        curve = a.get("curve", [])
        if curve:
            out += ["", "Precision/recall over the threshold (known queries of all three "
                    "experiments; tuning + left-out + old held-out unknowns):", "",
                    "| threshold | recall | precision | false attribution |",
                    "| --- | --- | --- | --- |"]
            for c in curve:
                if round(c["threshold"] * 100) % 5 == 0 and c["threshold"] <= 0.3:
                    out.append(f"| {c['threshold']:.2f} | {c['recall']:.3f} | "
                               f"{c['precision']:.3f} | {c['false_attribution']:.3f} |")
        out.append("")
    if a and a.get("mcrit"):
        out += attribution_vs_table(a, a["mcrit"])
    elif a:
        out += fresh_vs_table(a, None)
    if a and a.get("ingest"):
        out += ingest_lines(a["ingest"])
    s = results.get("scale")
    if s:
        out += ["### Query latency and memory vs index size (kinship)", "",
                "| functions | real | replayed | build s | index MiB | RSS growth MiB "
                "| peak RSS MiB | query s | mmap query s | mmap peak RSS MiB "
                "| mmap private MiB |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p in s:
            out.append(f"| {p['n_functions']} | {p['n_real']} | {p['n_replayed']} | "
                       f"{p['build_s']} | {p['index_mib']} | {p['rss_growth_mib']} | "
                       f"{p.get('peak_rss_mib', '')} | {p['query_s']} | "
                       f"{p.get('mmap_query_s', '')} | {p.get('mmap_peak_rss_mib', '')} | "
                       f"{p.get('mmap_private_mib', '')} |")
        out.append("")
    return "\n".join(out)
