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
    rows = [row for row in results["reads"] if row["slug"] != "small"]
    small = next((row for row in results["reads"] if row["slug"] == "small"), None)
    sizes = [row["sandboxes"] for row in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {
        "owner_warm": ("owner warm (body memo)", "tab:blue"),
        "owner_redis": ("owner warm, memo off (Redis hash)", "tab:brown"),
        "member_warm": ("member warm (10 projects)", "tab:green"),
        "owner_cold": ("owner cold (recount)", "tab:red"),
        "member_cold": ("member cold (recount)", "tab:orange"),
        "owner_304": ("owner 304", "tab:purple"),
        "floor": ("floor (trivial GET)", "tab:gray"),
        "raw_owner": ("raw: HGETALL + dumps", "black"),
    }
    for name, (label, color) in styles.items():
        med = [row["stats"][name]["median_us"] / 1000 for row in rows]
        p99 = [row["stats"][name]["p99_us"] / 1000 for row in rows]
        ax.plot(sizes, med, marker="o", color=color, label=f"{label} (median)")
        ax.plot(sizes, p99, linestyle="--", color=color, alpha=0.5)
    if small is not None:
        warm = small["stats"]["owner_warm"]["median_us"] / 1000
        ax.plot(
            [small["sandboxes"]],
            [warm],
            marker="*",
            markersize=12,
            linestyle="none",
            color="tab:cyan",
            label=f"small org ({small['projects']} projects) owner warm",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    projects = rows[0]["projects"] if rows else 0
    ax.set_xlabel(f"sandboxes in the org ({projects:,} projects; star: the small org)")
    ax.set_ylabel("latency per request, ms (dashed: p99)")
    meta = results["meta"]
    ax.set_title(f"GET /sandboxes/facets in-process, {meta['git']} ({meta['started']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
