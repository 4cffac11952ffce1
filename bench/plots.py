"""PNG plots for docs/BENCHMARKS.md (matplotlib, Agg backend; skipped when not installed)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Accuracy by task (kinship vs MCRIT) and latency/memory vs index size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: no plots")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tasks = results.get("matching", {}).get("tasks", [])
    if tasks:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        names = [t["task"] for t in tasks]
        for ax, metric in zip(axes, ("recall@1_100", "mrr@10_100"), strict=True):
            for k, tool in enumerate(("kinship", "mcrit")):
                vals = [t["metrics"].get(tool, {}).get(metric, 0.0) for t in tasks]
                ax.bar([i + 0.4 * k for i in range(len(names))], vals, width=0.4, label=tool)
            ax.set_xticks([i + 0.2 for i in range(len(names))], names)
            ax.set_ylim(0, 1)
            ax.set_title(metric.replace("_100", " (pool 100)"))
            ax.legend()
        fig.tight_layout()
        p = out_dir / "matching_by_task.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    scale = results.get("scale", [])
    if scale:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        n = [s["n_functions"] for s in scale]
        ax.loglog(n, [s["query_s"] for s in scale], "o-", label="query s (5k functions)")
        ax.loglog(n, [s["index_mib"] / 1024 for s in scale], "s-", label="index GiB")
        if all(s.get("mmap_peak_rss_mib") for s in scale):
            ax.loglog(n, [s["mmap_query_s"] for s in scale], "^--", label="query s, saved index")
            ax.loglog(n, [s["mmap_peak_rss_mib"] / 1024 for s in scale], "v--",
                      label="query peak RSS GiB, saved index")
        ax.set_xlabel("indexed functions")
        ax.legend()
        fig.tight_layout()
        p = out_dir / "scale.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    return written
