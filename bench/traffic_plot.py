"""The traffic benchmark's plot: read p50 and p99 against the share of writes.

matplotlib is optional (the ``bench`` extra); without it nothing is drawn.
"""

from __future__ import annotations

from pathlib import Path


def plot_read_p99(results: dict, path: Path) -> Path | None:
    """Draw the write-share phases' read latencies to ``path``; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    phases = [p for name, p in results["phases"].items() if name.endswith("% writes")]
    shares = [100 * p["share"] for p in phases]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for q, style in (("p99_ms", "o-"), ("p50_ms", "s--")):
        ax.plot(shares, [p["reads"].get(q) for p in phases], style, label=f"read {q[:3]}")
    ax.set_xlabel("sandbox writes, % of requests")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Dashboard reads through gunicorn as the write share grows", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
