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


def render(results: dict[str, Any]) -> str:
    out = [f"Run: `{results.get('command', '')}` on {results.get('machine', '')}, "
           f"{results.get('date', '')}, git {results.get('git', '')}.", ""]
    m = results.get("matching")
    if m:
        out += ["### Function matching (Marcelli 2022 protocol)", ""]
        out += [*matching_table(m["tasks"]), ""]
        if m.get("holdout"):
            out += ["Held-out families (never tuned on):", ""]
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
        for group in ("tuning", "left_out", "holdout"):
            u = a["unknown"].get(group)
            if u:
                out.append(f"| {group} | {u['n']} | {u['false_attribution_default']:.3f} | "
                           f"{u.get('false_attribution_calibrated', float('nan')):.3f} | "
                           f"{u.get('max_score', float('nan')):.3f} |")
        curve = a.get("curve", [])
        if curve:
            out += ["", "Precision/recall over the threshold (known queries of all three "
                    "experiments; tuning + left-out + held-out unknowns):", "",
                    "| threshold | recall | precision | false attribution |",
                    "| --- | --- | --- | --- |"]
            for c in curve:
                if round(c["threshold"] * 100) % 5 == 0 and c["threshold"] <= 0.3:
                    out.append(f"| {c['threshold']:.2f} | {c['recall']:.3f} | "
                               f"{c['precision']:.3f} | {c['false_attribution']:.3f} |")
        out.append("")
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
