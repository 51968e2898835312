"""``report.html`` of a reward-model artifact: Table 1 shape, training curves, calibration, examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onereward import tasks
from onereward.report import figure_data_uri, html_table, img_tag, png_data_uri, write_html_report
from onereward.reward.data import Exclusion, ImageStore
from onereward.reward.evaluate import PairScores


def accuracy_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of accuracy per task (rows) x dimension (columns), '-' where untested."""
    header = ["task"] + list(tasks.DIMENSIONS) + ["mean"]
    rows = []
    for task in tasks.TASKS:
        cells = metrics["accuracy"].get(task, {})
        values = [cells.get(d) for d in tasks.DIMENSIONS]
        present = [v for v in values if v is not None]
        rows.append(
            [task]
            + ["-" if v is None else f"{100 * v:.1f}" for v in values]
            + [f"{100 * sum(present) / len(present):.1f}" if present else "-"]
        )
    return header, rows


def _curves_figure(history: list[dict[str, float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    steps = [h["step"] for h in history]
    ax1.plot(steps, [h["loss"] for h in history])
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss (Eq. 3)")
    ax2.plot(steps, [h["train_accuracy"] for h in history])
    ax2.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax2.set_xlabel("step")
    ax2.set_ylabel("train query accuracy")
    return figure_data_uri(fig)


def _reliability_figure(bins: list[dict[str, float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.plot([0.5, 1.0], [0.5, 1.0], color="grey", lw=0.8, ls="--")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
    ax.set_xlabel("confidence of the answer")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.0)
    return figure_data_uri(fig)


def write_report(
    path: Path,
    *,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    scores: PairScores,
    store: ImageStore,
    excluded: list[Exclusion],
    query_example: str,
    n_examples: int = 12,
) -> Path:
    """Write the stage's report.html."""
    header, rows = accuracy_table(metrics)
    summary = html_table(
        ["figure", "value"],
        [
            ["mean accuracy (over task x dimension)", f"{metrics['mean_accuracy']:.3f}"],
            [
                "order consistency 1 - mean|P(Yes|a,b) + P(Yes|b,a) - 1|",
                f"{metrics['order_consistency']:.3f}",
            ],
            ["expected calibration error (10 bins)", f"{metrics['ece']:.3f}"],
            ["train / test pairs", f"{metrics['n_train_pairs']} / {metrics['n_test_pair_total']}"],
            ["train / test items", f"{metrics['n_train_items']} / {metrics['n_test_items']}"],
            ["excluded preference rows", str(len(excluded))],
            ["training steps, steps/s", f"{metrics['train_steps']}, {metrics['train_steps_per_second']:.2f}"],
            ["test pairs scored per second (no grad)", f"{metrics['test_pairs_per_second']:.1f}"],
        ],
    )
    sections = [
        ("Summary", summary),
        ("Accuracy (%) per task x dimension on the test split (Table 1 shape)", html_table(header, rows)),
        (
            "Query template (version " + metrics.get("template_version", "?") + ")",
            f"<pre>{query_example}</pre>",
        ),
    ]
    if history:
        sections.append(("Training", img_tag(_curves_figure(history), "loss and train accuracy")))
    if metrics.get("calibration_bins"):
        sections.append(
            ("Calibration", img_tag(_reliability_figure(metrics["calibration_bins"]), "reliability diagram"))
        )
    example_rows = []
    for i, pair in enumerate(scores.pairs[:n_examples]):
        example_rows.append(
            [
                f"{pair.task}<br>{pair.dimension}" if False else f"{pair.task} / {pair.dimension}",
                pair.prompt or "",
                img_tag(png_data_uri(store.get(pair.winner_image), 96), pair.winner),
                img_tag(png_data_uri(store.get(pair.loser_image), 96), pair.loser),
                f"{scores.p_winner_first[i]:.3f}",
                f"{scores.p_loser_first[i]:.3f}",
            ]
        )
    sections.append(
        (
            "Test examples",
            html_table(
                ["task / dimension", "prompt", "winner", "loser", "P(Yes|w,l)", "P(Yes|l,w)"], example_rows
            ),
        )
    )
    if excluded:
        sections.append(
            (
                f"Excluded preference rows ({len(excluded)})",
                html_table(
                    ["pair_id", "item_id", "reason"],
                    [[e.pair_id, e.item_id, e.reason] for e in excluded[:200]],
                ),
            )
        )
    return write_html_report(path, "train_reward_model", sections)
