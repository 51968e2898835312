"""report.html of a policy artifact: the run's figures, curves (Figure 6 shape), monitors and the grid."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from onereward.report import html_table, img_tag, png_data_uri, write_html_report

TASK_COLOURS = {"image_fill": "#1f77b4", "image_extend": "#2ca02c", "object_removal": "#ff7f0e"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _interval(v: Any) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "-"


def _series(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{dimension: {task: (steps, values)}} from history entries' ``cells`` (key "cells") or from
    evaluations' {task: {dimension: v}} tables (key "p_yes" / "oracle")."""
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for row in rows:
        if key == "cells":
            items = [(*cell.split("/"), v) for cell, v in row.get("cells", {}).items()]
        else:
            items = [(task, dim, v) for task, dims in row[key].items() for dim, v in dims.items()]
        for task, dim, v in items:
            xs, ys = out.setdefault(dim, {}).setdefault(task, ([], []))
            xs.append(row["step"])
            ys.append(v)
    return out


def _curves(history: list[dict[str, Any]], evals: list[dict[str, Any]], kind: str) -> str:
    """One figure (one savefig: figures dominate the report's cost): the training scalars, then
    per dimension one subplot and per task one line (the paper's Figure 6 layout) for the training
    reward, the probe P(Yes) against the base and the probe oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = [
        k
        for k in ("loss", "p_yes", "above_lambda", "grad_norm", "kept_fraction")
        if history and k in history[0]
    ]
    panels = [
        ("training reward P(Yes | policy, reference)", _series(history, "cells")),
        ("probe P(Yes | policy, base)", _series(evals, "p_yes")),
        (f"probe oracle ({kind})", _series(evals, "oracle")),
    ]
    dims = sorted({d for _, series in panels for d in series})
    cols = max(len(scalars), len(dims), 1)
    fig, axes = plt.subplots(4, cols, figsize=(2.6 * cols, 9.0), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, key in zip(axes[0], scalars, strict=False):
        ax.set_visible(True)
        ax.plot([h["step"] for h in history], [h[key] for h in history], marker=".")
        ax.set_title(key, fontsize=8)
    for r, (title, series) in enumerate(panels, start=1):
        for c, dim in enumerate(dims):
            if dim not in series:
                continue
            ax = axes[r][c]
            ax.set_visible(True)
            for task, (xs, ys) in sorted(series[dim].items()):
                ax.plot(xs, ys, marker=".", color=TASK_COLOURS.get(task), label=task)
            ax.set_title(f"{title}\n{dim}", fontsize=7)
            ax.tick_params(labelsize=6)
        if series:
            axes[r][0].legend(fontsize=6)
    fig.subplots_adjust(
        hspace=0.75, wspace=0.35, left=0.05, right=0.98, top=0.95, bottom=0.04
    )  # not tight_layout: 2x the cost
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _win_table(wins: dict[str, Any]) -> str:
    rows = []
    for task, dims in wins.get("cells", {}).items():
        for dim, w in dims.items():
            rows.append(
                [
                    task,
                    dim,
                    w["wins"],
                    w["losses"],
                    w["ties"],
                    _fmt(w["rate"]),
                    f"[{w['low']:.3f}, {w['high']:.3f}]",
                ]
            )
    for name, w in wins.get("pooled", {}).items():
        rows.append([f"pooled: {name}", "all dimensions", w["wins"], w["losses"], w["ties"], _fmt(w["rate"]),
                     f"[{w['low']:.3f}, {w['high']:.3f}]"])  # fmt: skip
    return html_table(["task", "dimension", "wins", "losses", "ties", "win rate", "95% interval"], rows)


def _grid(
    probe_dir: Path, items: list[tuple[str, str, str | None]], base_images: dict[str, np.ndarray]
) -> str:
    """Rows: probe items; columns: base, then the policy at every evaluation (then the EMA)."""
    folders = sorted(p for p in probe_dir.iterdir() if p.is_dir()) if probe_dir.is_dir() else []
    folders.sort(key=lambda p: (p.name.startswith("ema"), int(p.name.split("-")[-1])))
    header = ["item", "base"] + [f"{f.name.split('-')[0]} step {int(f.name.split('-')[-1])}" for f in folders]
    rows = []
    for item_id, task, prompt in items:
        cells = [
            f"<div>{html.escape(item_id)}<br><span class='small'>{html.escape(task)}<br>{html.escape(prompt or '')}</span></div>"
        ]
        cells.append(
            img_tag(png_data_uri(base_images[item_id], 96), "base") if item_id in base_images else ""
        )
        for f in folders:
            p = f / f"{item_id}.png"
            cells.append(img_tag(png_data_uri(p, 96), f.name) if p.is_file() else "")
        rows.append(cells)
    return html_table(header, rows)


def write_report(
    path: Path,
    *,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    evals: list[dict[str, Any]],
    flags: list[dict[str, Any]],
    gate: dict[str, Any],
    probe_dir: Path,
    grid_items: list[tuple[str, str, str | None]],
    base_images: dict[str, np.ndarray],
) -> Path:
    """Write the policy's report.html."""
    scalars = [[k, _fmt(v)] for k, v in metrics.items() if not isinstance(v, (dict, list))]
    policy_evals = [e for e in evals if e["weights"] == "policy"]
    kind = policy_evals[-1]["oracle_kind"] if policy_evals else "raw"
    sections = [
        ("Summary", html_table(["metric", "value"], scalars)),
        (
            "Reward-model gate",
            html_table(
                ["cell", "test accuracy", "test pairs", "95% interval"],
                [
                    [
                        k,
                        _fmt(v),
                        gate.get("pairs", {}).get(k) or "-",
                        _interval(gate.get("intervals", {}).get(k)),
                    ]
                    for k, v in gate.get("accuracy", {}).items()
                ],
            )
            + f"<p>rule {gate.get('rule')}, threshold {gate.get('threshold')}, pooled {_fmt(gate.get('pooled'))}, "
            f"passed {gate.get('passed')}, overridden {gate.get('overridden')}</p>",
        ),
        (
            "Curves (rows: training scalars, training reward, probe P(Yes), probe oracle)",
            _curves(history, policy_evals, kind),
        ),
        (
            "Oracle win rate of the final policy over the base (ties: raw oracle within the margin, dropped; Wilson 95%)",
            _win_table(metrics.get("oracle_win_rate", {}))
            if metrics.get("oracle_win_rate")
            else "<p>(no oracle)</p>",
        ),
        (
            "Reward-hacking watch",
            (
                html_table(
                    [
                        "step",
                        "task",
                        "dimension",
                        "P(Yes) rise",
                        "task's P(Yes) rise",
                        "oracle delta",
                        "95% half-width",
                        "wins / losses / ties",
                        "why",
                    ],
                    [
                        [
                            f["step"],
                            f["task"],
                            f["dimension"],
                            _fmt(f["p_yes_rise"]),
                            _fmt(f["task_p_yes_rise"]) if "task_p_yes_rise" in f else "-",
                            _fmt(f["oracle_delta"]),
                            _fmt(f["half_width"]),
                            f"{f['wins']} / {f['losses']} / {f['ties']}" if "wins" in f else "-",
                            ", ".join(f.get("reasons", [])),
                        ]
                        for f in flags
                    ],
                )
                if flags
                else "<p>No cell's oracle fell beyond its noise, or was lost beyond chance, while its reward or its "
                "task's reward rose.</p>"
            )
            + html_table(
                ["step", "weights", "P(Yes) vs base", "oracle", "outside-mask change (policy)", "(base)"],
                [
                    [
                        e["step"],
                        e["weights"],
                        _fmt(e["p_yes_mean"]),
                        _fmt(e["oracle_mean"]),
                        _fmt(e["outside_change"]),
                        _fmt(e["outside_change_base"]),
                    ]
                    for e in evals
                ],  # fmt: skip
            ),
        ),
        ("Probe images over training", _grid(probe_dir, grid_items, base_images)),
    ]
    return write_html_report(path, f"train_policy ({metrics.get('algorithm')})", sections)
