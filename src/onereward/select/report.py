"""select_subset's report: summary, coverage, cluster-size histogram, montage of representatives,
mask provenance and the list of skipped items with reasons (``report.html`` + ``montage.png``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from onereward.imageio import save_png
from onereward.report import figure_data_uri, html_table, img_tag, png_data_uri, write_html_report
from onereward.select.pool import BadItem

MAX_BAD_ROWS = 300


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the masked region tinted red (what the generator will repaint)."""
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array([255.0, 0.0, 0.0])
    return out.astype(np.uint8)


def montage(tiles: Sequence[tuple[np.ndarray, str]], cell: int = 96, columns: int = 10) -> Image.Image:
    """A grid of (image, caption) tiles, each fitted into a ``cell`` square with its caption."""
    rows = max(1, (len(tiles) + columns - 1) // columns)
    caption_h = 12
    sheet = Image.new("RGB", (columns * cell, rows * (cell + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (arr, caption) in enumerate(tiles):
        im = Image.fromarray(arr)
        im.thumbnail((cell, cell), Image.NEAREST if max(im.size) < cell else Image.LANCZOS)
        if max(im.size) < cell:
            scale = cell / max(im.size)
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.NEAREST)
        x, y = (i % columns) * cell, (i // columns) * (cell + caption_h)
        sheet.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
        draw.text((x + 2, y + cell), caption[:18], fill=(0, 0, 0))
    return sheet


def _histogram_figure(cluster_sizes: Mapping[str, np.ndarray]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for group, sizes in cluster_sizes.items():
        if len(sizes):
            bins = np.arange(1, max(2, int(sizes.max()) + 2)) - 0.5 if sizes.max() <= 40 else 30
            ax.hist(sizes, bins=bins, alpha=0.6, label=f"{group} ({len(sizes)} clusters)")
    ax.set_xlabel("items per cluster")
    ax.set_ylabel("clusters")
    ax.set_title("Cluster sizes")
    ax.legend(fontsize=8)
    return figure_data_uri(fig)


def write_report(
    root: Path,
    *,
    metrics: Mapping[str, Any],
    parameters: Mapping[str, Any],
    cluster_sizes: Mapping[str, np.ndarray],
    tiles: Sequence[tuple[np.ndarray, str]],
    bad: Sequence[BadItem],
    mask_sources: Counter,
    mask_rule: str,
) -> None:
    """Write ``report.html`` and ``montage.png`` into the artifact folder ``root``."""
    sheet = montage(tiles)
    save_png(root / "montage.png", sheet)
    summary_keys = (
        "n_pool",
        "n_bad",
        "n_valid",
        "n_exact_duplicates",
        "n_duplicates_skipped",
        "n_selected",
        "n_clusters",
        "n_embedded",
        "n_cache_hits",
        "images_per_second",
    )
    sections: list[tuple[str, str]] = [
        ("Summary", html_table(["metric", "value"], [[k, metrics.get(k)] for k in summary_keys])),
        (
            "Coverage",
            "<p>Mean cosine distance from every pool item to its nearest selected item (lower covers the "
            f"pool better), over {metrics.get('coverage_n_measured')} pool items.</p>"
            + html_table(
                ["subset", "coverage"],
                [
                    ["K-means representatives", f"{metrics.get('coverage_selected', float('nan')):.4f}"],
                    [
                        "random subset of the same size per group",
                        f"{metrics.get('coverage_random', float('nan')):.4f}",
                    ],
                ],
            ),
        ),
        (
            "Clustering",
            html_table(
                ["group", "pool items", "selected", "clusters", "backend", "two-level", "inertia", "seconds"],
                [
                    [
                        g,
                        c["n_items"],
                        c["n_selected"],
                        c["n_clusters"],
                        c["backend"],
                        c["two_level"],
                        f"{c['inertia']:.4g}",
                        f"{c['seconds']:.2f}",
                    ]
                    for g, c in metrics.get("groups", {}).items()
                ],
            )
            + img_tag(_histogram_figure(cluster_sizes), "cluster sizes"),
        ),
        (
            "Representatives",
            "<p>Selected items (mask tinted red), largest clusters first; caption: cluster id / task.</p>"
            + img_tag(png_data_uri(sheet, max_side=max(sheet.size)), "montage"),
        ),
        (
            "Masks",
            html_table(["mask source", "items"], sorted(mask_sources.items()))
            + f"<p class='small'>Non-binary masks were thresholded: {mask_rule}.</p>",
        ),
    ]
    reasons = Counter(b.reason.split(" (")[0] for b in bad)
    bad_rows = [[b.item_id, b.origin, b.reason] for b in bad[:MAX_BAD_ROWS]]
    more = (
        f"<p class='small'>{len(bad) - MAX_BAD_ROWS} more in bad_items.parquet.</p>"
        if len(bad) > MAX_BAD_ROWS
        else ""
    )
    sections.append(
        (
            f"Skipped items ({len(bad)})",
            html_table(["reason", "items"], reasons.most_common())
            + html_table(["item", "origin", "reason"], bad_rows)
            + more,
        )
    )
    sections.append(("Parameters", html_table(["parameter", "value"], sorted(parameters.items()))))
    write_html_report(root / "report.html", "select_subset", sections)
