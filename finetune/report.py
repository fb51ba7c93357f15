"""Figures and tables: confusion matrices, label-efficiency plot, results.md."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "auc_macro"]


def confusion_figure(cm: dict, title: str = ""):
    matrix = np.asarray(cm["matrix"], dtype=float)
    labels = cm["labels"]
    norm = matrix / matrix.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(title or "confusion matrix (rows: recall-normalised colour, counts)", fontsize=9)
    fig.tight_layout()
    return fig


def log_confusion(logger, cm: dict, tag: str, step: int) -> None:
    writer = getattr(logger, "experiment", None)
    if writer is not None and hasattr(writer, "add_figure"):
        writer.add_figure(tag, confusion_figure(cm), step)


def save_confusion(cm: dict, path: Path, title: str) -> None:
    fig = confusion_figure(cm, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_markdown(results: pd.DataFrame, metrics: list[str] | None = None, note: bool = True) -> str:
    """Mean +- std per init and label fraction. No cell is marked best: the highest mean is
    often inside the seed noise, and whether a difference is outside it is the paired table's
    question. ``metrics``: the columns (default: the classification ``METRICS``); ``note``: say so
    above the tables."""
    metrics = list(metrics or METRICS)
    g = results.groupby(["label_fraction", "init"], sort=True)
    mean, std, n = g[metrics].mean(), g[metrics].std().fillna(0.0), g.size()
    lines = (
        [
            "Mean ± std over seeds. No cell is marked best: whether two inits differ beyond the"
            " noise is the paired differences' question, below.",
            "",
        ]
        if note
        else []
    )
    for frac in sorted(results["label_fraction"].unique()):
        m, s = mean.loc[frac], std.loc[frac]
        lines += [
            f"### label fraction {frac:g}",
            "",
            "| init | runs | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for init in m.index:
            cells = [
                "n/a" if pd.isna(m.loc[init, c]) else f"{m.loc[init, c]:.3f} ± {s.loc[init, c]:.3f}" for c in metrics
            ]
            lines.append(f"| {init} | {n.loc[(frac, init)]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def label_efficiency_plot(
    results: pd.DataFrame,
    path: Path,
    metric: str = "balanced_accuracy",
    ylabel: str = "balanced accuracy (test)",
    intervals: pd.DataFrame | None = None,
) -> None:
    """Mean ``metric`` per init against the label fraction (log scale). Bars: the 95%
    bootstrap interval over test lesions and seeds where ``intervals`` (init, label_fraction,
    lo, hi) has one for every point of an init, else ± the std over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    spans = intervals.set_index(["init", "label_fraction"]) if intervals is not None and len(intervals) else None
    kinds = set()
    for init, rows in results.groupby("init"):
        g = rows.groupby("label_fraction")[metric]
        x, m, s = g.mean().index.to_numpy(), g.mean().to_numpy(), g.std().fillna(0).to_numpy()
        keys = [(init, f) for f in x]
        if spans is not None and all(k in spans.index for k in keys):
            lo, hi = spans.loc[keys, "lo"].to_numpy(), spans.loc[keys, "hi"].to_numpy()
            s = np.stack([np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)])
            kinds.add("95% CI over test lesions and seeds")
        else:
            kinds.add("± std over seeds")
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=init)
    ax.set_title(f"bars: {', '.join(sorted(kinds))}", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
