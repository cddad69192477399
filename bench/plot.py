"""The latency plot: warm and cold facets (median, p99 dashed) against org size, log-log."""

from __future__ import annotations

from pathlib import Path


def plot_latency(results: dict, path: Path) -> bool:
    """Write the PNG; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = [row["sandboxes"] for row in results["reads"]]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {
        "owner_warm": ("owner warm", "tab:blue"),
        "member_warm": ("member warm (10 projects)", "tab:green"),
        "owner_cold": ("owner cold (recount)", "tab:red"),
        "member_cold": ("member cold (recount)", "tab:orange"),
        "owner_304": ("owner 304", "tab:purple"),
        "floor": ("floor (trivial GET)", "tab:gray"),
        "raw_owner": ("raw: HGETALL + dumps", "black"),
    }
    for name, (label, color) in styles.items():
        med = [row["stats"][name]["median_us"] / 1000 for row in results["reads"]]
        p99 = [row["stats"][name]["p99_us"] / 1000 for row in results["reads"]]
        ax.plot(sizes, med, marker="o", color=color, label=f"{label} (median)")
        ax.plot(sizes, p99, linestyle="--", color=color, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sandboxes in the org (1,000 projects)")
    ax.set_ylabel("latency per request, ms (dashed: p99)")
    meta = results["meta"]
    ax.set_title(f"GET /sandboxes/facets in-process, {meta['git']} ({meta['started']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
