"""evaluate's reports: ``report.html`` (KFP HTML), ``report.md`` (KFP Markdown) and ``headline.html``
(the fragment a pipeline run's report opens with).

Shapes from the paper: GSB bars per task (Figure 7: Good orange, Same green, Bad blue), a Table 2
shaped table (usability and per-dimension scores per task and model), plus the GSB tables with
95% intervals, the automatic metrics and image grids (source | mask | base | policy ...).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onereward import tasks
from onereward.evaluate.benchmark import GROUP_TITLES, GROUPS, group_dimensions
from onereward.evaluate.judges import JUDGE_TITLES, JUDGES
from onereward.evaluate.summary import METRIC_NOTES
from onereward.report import (
    figure_data_uri,
    html_table,
    img_tag,
    markdown_table,
    png_data_uri,
    write_html_report,
)

COLOURS = {"good": "#f28e2b", "same": "#59a14f", "bad": "#4e79a7"}  # the paper's Figure 7 colours


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def _headline_judges(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, metrics key) of the primary model's GSB judges present, reward model first."""
    out = []
    if metrics.get("gsb"):
        out.append((metrics.get("gsb_judge") or "reward_model", "gsb"))
    for judge, key in (("oracle", "oracle_gsb"), ("human", "human_gsb")):
        if metrics.get(key):
            out.append((judge, key))
    return out


def gsb_figure(metrics: Mapping[str, Any]) -> str | None:
    """Figure 7 shape: per task, one stacked bar (good / same / bad shares, pooled over the task's
    dimensions) per judge, for the primary model against the base. A data URI, or None."""
    judges = _headline_judges(metrics)
    if not judges:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in GROUPS if any(g in (metrics.get(k) or {}) for _, k in judges)]
    labels, rows = [], []
    for g in groups:
        for judge, key in judges:
            cells = (metrics.get(key) or {}).get(g)
            if not cells:
                continue
            good = sum(c["good"] for c in cells.values())
            same = sum(c["same"] for c in cells.values())
            bad = sum(c["bad"] for c in cells.values())
            n = max(1, good + same + bad)
            labels.append(f"{GROUP_TITLES[g]} | {judge}")
            rows.append((good / n, same / n, bad / n, good + same + bad))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    left = np.zeros(len(rows))
    for k, name in enumerate(("good", "same", "bad")):
        vals = np.array([r[k] for r in rows])
        ax.barh(y, vals, left=left, color=COLOURS[name], label=name.capitalize())
        for yi, li, v in zip(y, left, vals, strict=True):
            if v >= 0.08:
                ax.text(
                    li + v / 2, yi, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8, color="white"
                )
        left += vals
    ax.set_yticks(y, [f"{lab} (n={r[3]})" for lab, r in zip(labels, rows, strict=True)], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of (item, dimension) units: {metrics.get('primary')} vs base")
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return figure_data_uri(fig)


def image_grid(
    root: Path,
    items: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    results: Mapping[tuple[str, str], Mapping[str, Any]],
    n: int,
    size: int = 96,
) -> str:
    """Rows of source | mask | each model's result (thumbnails, the item's prompt beside)."""
    rows = []
    for item in list(items)[:n]:
        cells = [  # html_table escapes text cells
            item["item_id"],
            str(item.get("prompt") or tasks.effective_prompt(item["task"], item.get("prompt"))),
            img_tag(png_data_uri(root / item["image"], size), "source"),
            img_tag(png_data_uri(root / item["mask"], size), "mask"),
        ]
        for model in models:
            r = results.get((model, item["item_id"]))
            cells.append(img_tag(png_data_uri(root / r["image"], size), model) if r else "")
        rows.append(cells)
    return html_table(["item", "prompt", "source", "mask", *models], rows)


def table2_rows(metrics: Mapping[str, Any], models: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Table 2 shape: per task and model, usability (%) by each judge, the oracle's normalised score
    per dimension, text rendering (%) and removal quality (%)."""
    usab = metrics.get("usability", {})
    judges = [j for j in JUDGES if j in usab]
    dims = list(tasks.DIMENSIONS[:4])
    header = ["task", "model"] + [f"usability % ({j})" for j in judges] + [f"{d} (oracle)" for d in dims]
    header += ["text rendering %", "removal quality %"]
    scores = metrics.get("dimension_scores", {}).get("oracle_normalised", {})
    rows = []
    for g in GROUPS:
        if not any(g in (scores.get(mo) or {}) for mo in models) and not any(
            g in (usab.get(j, {}).get(mo) or {}) for j in judges for mo in models
        ):
            continue
        for model in models:
            row = [GROUP_TITLES[g], model]
            for j in judges:
                row.append("100.0 (ref)" if model == "base" else _pct((usab[j].get(model) or {}).get(g)))
            for d in dims:
                v = (scores.get(model) or {}).get(g, {}).get(d)
                row.append("-" if d not in group_dimensions(g) else _fmt(v))
            text = metrics.get("metrics_by_group", {}).get("ocr_sentence_accuracy", {}).get(model, {}).get(g)
            removal = metrics.get("metrics_by_group", {}).get("removal_success", {}).get(model, {}).get(g)
            row += [_pct(text), _pct(removal)]
            rows.append(row)
    return header, rows


def gsb_rows(cells: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    rows = []
    for g, dims in cells.items():
        for d, c in dims.items():
            rows.append(
                [
                    GROUP_TITLES.get(g, g),
                    d,
                    c["good"],
                    c["same"],
                    c["bad"],
                    c["n"],
                    f"{_fmt(c['win_rate'])} [{_fmt(c['win_rate_low'])}, {_fmt(c['win_rate_high'])}]",
                    f"{_fmt(c['good_share'])} [{_fmt(c['good_low'])}, {_fmt(c['good_high'])}]",
                    _fmt(c["net"]),
                ]
            )
    return rows


GSB_HEADER = [
    "task",
    "dimension",
    "good",
    "same",
    "bad",
    "n",
    "win rate, ties dropped [95%]",
    "good share [95%]",
    "net",
]


def headline_html(
    root: Path,
    metrics: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    results: Mapping[tuple[str, str], Mapping[str, Any]],
) -> str:
    """The fragment a pipeline run's report opens with: the GSB bars of the primary model against
    the base, one line per judge, and a base | policy grid."""
    primary = metrics.get("primary")
    if not primary:
        return (
            f"<p>Only the base was evaluated ({metrics.get('n_items', 0)} held-out items): no policy was given, "
            "so there is no GSB to show.</p>\n" + image_grid(root, items, ["base"], results, 6, size=80)
        )
    parts = [
        f"<p><b>{html.escape(str(primary))} vs base</b> on {metrics.get('n_items', 0)} held-out items.</p>"
    ]
    fig = gsb_figure(metrics)
    if fig:
        parts.append(img_tag(fig, "GSB"))
    lines = []
    for judge, key in _headline_judges(metrics):
        cells = metrics[key]
        good = sum(c["good"] for dims in cells.values() for c in dims.values())
        same = sum(c["same"] for dims in cells.values() for c in dims.values())
        bad = sum(c["bad"] for dims in cells.values() for c in dims.values())
        n = max(1, good + same + bad)
        title = JUDGE_TITLES.get(judge, judge)
        if judge == "human" and (metrics.get("human") or {}).get("mode") == "simulate":
            title += ", simulated annotators"
        lines.append(
            f"<li>{html.escape(title)}: good {good} / same {same} / bad {bad} "
            f"(net {100 * (good - bad) / n:+.1f}%)</li>"
        )
    if lines:
        parts.append("<ul>" + "".join(lines) + "</ul>")
    if primary:
        parts.append(image_grid(root, items, ["base", primary], results, 6, size=80))
    return "\n".join(parts)


def write_reports(
    root: Path,
    metrics: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    results: Mapping[tuple[str, str], Mapping[str, Any]],
    report_items: int,
) -> None:
    """``report.html``, ``report.md`` and ``headline.html`` of the evaluation artifact at ``root``."""
    headline = headline_html(root, metrics, items, results)
    (root / "headline.html").write_text(headline + "\n")
    header, t2 = table2_rows(metrics, models)
    sections = [
        ("Headline", headline),
        ("Table 2 shape: usability and per-dimension scores", html_table(header, t2)),
    ]
    for judge in JUDGES:
        by_model = metrics.get("gsb_by_model", {}).get(judge)
        if not by_model:
            continue
        body = []
        for model, cells in by_model.items():
            body.append(f"<h3>{html.escape(model)} vs base</h3>" + html_table(GSB_HEADER, gsb_rows(cells)))
        sections.append((f"GSB by the {JUDGE_TITLES[judge]}", "\n".join(body)))
    metric_rows = [
        [name, *[_fmt(per.get(mo)) for mo in models], METRIC_NOTES.get(name, "")]
        for name, per in metrics.get("metrics", {}).items()
    ]
    sections.append(("Automatic metrics", html_table(["metric", *models, "meaning"], metric_rows)))
    sections.append(
        ("Image grids: source | mask | models", image_grid(root, items, models, results, report_items))
    )
    bench = metrics.get("benchmark", {})
    bench_rows = [
        [
            GROUP_TITLES[g],
            bench.get("wanted", {}).get(g),
            bench.get("available", {}).get(g),
            bench.get("chosen", {}).get(g),
        ]
        for g in GROUPS
    ]
    sections.append(
        (
            "Benchmark set (held out from training by item)",
            html_table(["task", "wanted", "available after exclusion", "chosen"], bench_rows)
            + f"<p class='small'>{html.escape(str(bench.get('rule', '')))}; excluded items: {bench.get('n_excluded', 0)}</p>",
        )
    )
    human = metrics.get("human")
    if human:
        rows = [[k, str(v)] for k, v in human.items() if not isinstance(v, dict)]
        rows += [
            [
                f"agreement {d}",
                f"pairwise {_fmt(a.get('pairwise'))}, alpha {_fmt(a.get('krippendorff_alpha'))}, units {a.get('n_units')}",
            ]
            for d, a in (human.get("agreement") or {}).items()
        ]
        sections.append(("Human A/B project", html_table(["what", "value"], rows)))
    timing = metrics.get("seconds_per_item_model", {})
    sections.append(
        (
            "Seconds per item and model",
            html_table(["judge / metric", "seconds"], [[k, _fmt(v, 4)] for k, v in timing.items()]),
        )
    )
    write_html_report(root / "report.html", "evaluate: policies against the base", sections)
    (root / "report.md").write_text(markdown_report(metrics, models))


def markdown_report(metrics: Mapping[str, Any], models: Sequence[str]) -> str:
    """The Markdown summary (KFP Markdown): headline tallies, Table 2 shape, GSB and metric tables."""
    lines = [f"# evaluate: {metrics.get('primary')} vs base ({metrics.get('n_items', 0)} items)", ""]
    header, rows = table2_rows(metrics, models)
    lines += ["## Table 2 shape", "", markdown_table(header, rows), ""]
    for judge, key in _headline_judges(metrics):
        lines += [
            f"## GSB by the {JUDGE_TITLES.get(judge, judge)}",
            "",
            markdown_table(GSB_HEADER, gsb_rows(metrics[key])),
            "",
        ]
    metric_rows = [
        [name, *[_fmt(per.get(mo)) for mo in models]] for name, per in metrics.get("metrics", {}).items()
    ]
    lines += ["## Automatic metrics", "", markdown_table(["metric", *models], metric_rows), ""]
    return "\n".join(lines)
