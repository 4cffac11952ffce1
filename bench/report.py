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
                "| held out | indexed | queries | top-1 | top-5 | verdict correct |",
                "| --- | --- | --- | --- | --- | --- |"]
        for name, e in a["experiments"].items():
            out.append(f"| {name} | {e['n_indexed']} | {e['n_queries']} | {e['top1']:.3f} | "
                       f"{e['top5']:.3f} | {e['verdict_correct']:.3f} |")
        out += ["", f"Unknown families: {a['unknown']}; calibrated threshold "
                f"{a['calibrated_threshold']}.", ""]
    s = results.get("scale")
    if s:
        out += ["### Query latency and memory vs index size (kinship)", "",
                "| functions | real | replayed | index MiB | RSS growth MiB | query s |",
                "| --- | --- | --- | --- | --- | --- |"]
        for p in s:
            out.append(f"| {p['n_functions']} | {p['n_real']} | {p['n_replayed']} | "
                       f"{p['index_mib']} | {p['rss_growth_mib']} | {p['query_s']} |")
        out.append("")
    return "\n".join(out)
