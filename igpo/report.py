"""The evaluation report: one self-contained HTML page (plots embedded as PNG) and a plain-text results table.

Shows scores by model and the training curves that make IGPO's point: reward and the fraction of
all-wrong groups, GRPO against IGPO.
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

CURVES = (
    ("reward", "mean reward"),
    ("accuracy", "rollout accuracy"),
    ("all_wrong_fraction", "all-wrong groups (before repair)"),
    ("zero_advantage_fraction", "zero-advantage groups (after repair)"),
)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _figures(scores: pd.DataFrame, curves: dict[str, pd.DataFrame], window: int) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    if not scores.empty:
        pivot = scores.pivot_table(index="model", columns="benchmark", values="score", sort=False)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        pivot.plot.bar(ax=ax, rot=0)
        ax.set_ylabel("score")
        ax.set_title("scores by model")
        figures.append(("Scores by model", _png(fig)))
        plt.close(fig)
    present = [(key, label) for key, label in CURVES if any(key in df for df in curves.values())]
    if present:
        fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
        for ax, (key, label) in zip(axes[0], present):
            for run, df in curves.items():
                if key in df and len(df):
                    ax.plot(df["step"], df[key].rolling(window, min_periods=1).mean(), label=run)
            ax.set_title(label)
            ax.set_xlabel("RL step")
            ax.legend()
        figures.append((f"Training curves ({window}-step moving average)", _png(fig)))
        plt.close(fig)
    return figures


def results_table(scores: pd.DataFrame, curves: dict[str, pd.DataFrame]) -> str:
    """Plain-text table of scores by model, and the all-wrong fraction of each RL run."""
    lines = []
    if not scores.empty:
        pivot = scores.pivot_table(index="model", columns=["benchmark", "metric"], values="score", sort=False)
        lines.append(pivot.to_string(float_format=lambda v: f"{v:.3f}"))
    for run, df in curves.items():
        if "all_wrong_fraction" in df and len(df):
            line = f"{run}: mean all-wrong fraction {df['all_wrong_fraction'].mean():.3f}"
            if "zero_advantage_fraction" in df:
                line += f", zero-advantage fraction after repair {df['zero_advantage_fraction'].mean():.3f}"
            lines.append(line)
    return "\n".join(lines)


def build_report(
    scores: pd.DataFrame, curves: dict[str, pd.DataFrame], title: str = "IGPO run report", window: int = 5
) -> str:
    """Self-contained HTML: headline table, plots, and the scores as a table."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        (
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>"
        ),
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Scores</h2>",
        scores.to_html(index=False, float_format=lambda v: f"{v:.3f}") if not scores.empty else "<p>no scores</p>",
    ]
    for caption, png in _figures(scores, curves, window):
        parts += [f"<h2>{html.escape(caption)}</h2>", f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>"]
    summary = results_table(pd.DataFrame(), curves)
    if summary:
        parts += ["<h2>All-wrong groups</h2>", f"<pre>{html.escape(summary)}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)
