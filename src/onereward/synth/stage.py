"""Stage synthesize_pool: write a synthetic source pool (procedural scenes for every task).

Scenes, items and prompts come from :mod:`onereward.synth.world`; this module writes them as a
``pool`` artifact (docs/contracts.md) with metrics and report.html.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from onereward import tasks
from onereward.artifacts import ArtifactWriter, Manifest
from onereward.imageio import save_png
from onereward.log import Throughput, get_logger
from onereward.synth.config import SynthConfig
from onereward.synth.world import DEFAULT_TASK_MIX, check_pool_inputs, iter_items
from onereward.tables import POOL_SCHEMA, write_table

log = get_logger(__name__)

STAGE = "synthesize_pool"
REPORT_ITEMS_PER_TASK = 6  # items per task in report.html's montage
ORACLE_CHECK_ITEMS = 200  # items whose targets the oracle scores for the metrics and the report


def run(out: str | os.PathLike[str], **settings: Any) -> dict[str, Any]:
    """Write a ``pool`` artifact of synthetic items to ``out`` and return its metrics.

    Args:
        out: output artifact directory (replaced atomically when the stage finishes).
        settings: fields of :class:`~onereward.synth.config.SynthConfig` (None or absent = default).

    Returns:
        metrics: ``n_items``, ``counts`` (items per task), ``n_text_prompts``,
        ``n_extend_with_prompt``, ``items_per_second`` and ``oracle_on_targets`` (mean and min
        oracle score of the targets per task and dimension: a check that world and oracle
        agree). The artifact also holds ``report.html`` with those and a montage per task
        (source | mask | target).
    """
    cfg = SynthConfig.resolve(None, settings)
    manifest = make_pool(
        out,
        n_items=cfg.items,
        seed=cfg.seed,
        image_size=cfg.image_size,
        masks=cfg.masks,
        text_fraction=cfg.text_fraction,
        extend_prompt_fraction=cfg.extend_prompt_fraction,
    )
    return manifest.metrics()


def make_pool(
    out_dir: str | os.PathLike[str],
    n_items: int,
    seed: int,
    image_size: int = 64,
    *,
    masks: bool = True,
    task_mix: Mapping[str, float] | None = None,
    text_fraction: float = 0.25,
    extend_prompt_fraction: float = 0.5,
) -> Manifest:
    """Write a ``pool`` artifact of ``n_items`` synthetic items to ``out_dir`` and return its manifest.

    Files: ``items.parquet`` (columns of docs/contracts.md), ``images/``, ``masks/``, ``targets/``,
    ``metrics.json`` (n_items, per-task counts, n_text_prompts, n_extend_with_prompt,
    items_per_second, and ``oracle_on_targets``: {task: {dimension: {mean, min}}} of the oracle on
    the targets of the first ORACLE_CHECK_ITEMS items) and ``report.html`` (counts, those oracle
    scores, a montage per task: source | mask | target). Same seed and parameters give the same
    bytes for every data file except ``metrics.json`` (which holds a throughput).

    ``masks=False`` writes ``mask`` null for image_fill / image_extend items (select_subset then
    makes masks); object_removal items always have masks. See :func:`sample_items` for the rest.
    """
    check_pool_inputs(n_items, image_size, seed)
    params = {
        "n_items": n_items,
        "seed": seed,
        "image_size": image_size,
        "masks": masks,
        "task_mix": dict(task_mix or DEFAULT_TASK_MIX),
        "text_fraction": text_fraction,
        "extend_prompt_fraction": extend_prompt_fraction,
    }
    with ArtifactWriter(out_dir, kind="pool", stage=STAGE, parameters=params) as art:
        rows = []
        shown: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks.TASKS}
        target_scores: dict[str, dict[str, list[float]]] = {}
        n_text = n_ext_prompt = 0
        generated = iter_items(
            n_items,
            seed,
            image_size,
            task_mix=task_mix,
            text_fraction=text_fraction,
            extend_prompt_fraction=extend_prompt_fraction,
        )
        # Items are written as they are made: memory stays flat for large pools.
        with Throughput("items") as tp, art.timer("render_s"):
            for item in tqdm(generated, total=n_items, desc="synth", unit="item", disable=n_items < 500):
                rows.append(_write_item(art.path, item, masks))
                n_text += item["meta"].get("prompted") == "text"
                n_ext_prompt += item["task"] == tasks.IMAGE_EXTEND and bool(item["prompt"])
                if len(shown[item["task"]]) < REPORT_ITEMS_PER_TASK:
                    shown[item["task"]].append(item)
                if len(rows) <= ORACLE_CHECK_ITEMS:
                    _record_target_scores(target_scores, item)
                tp.add(1)
        write_table(art.path / "items.parquet", rows, schema=POOL_SCHEMA)
        counts = Counter(r["task"] for r in rows)
        per_task = {t: int(counts.get(t, 0)) for t in tasks.TASKS}
        art.counts.update({"n_items": len(rows), **{f"n_{t}": c for t, c in per_task.items()}})
        art.metrics.update(
            {
                "n_items": len(rows),
                "counts": per_task,
                "n_text_prompts": int(n_text),
                "n_extend_with_prompt": int(n_ext_prompt),
                "items_per_second": round(tp.rate, 2),
                # The world and the oracle agree: targets score high on every dimension.
                "oracle_on_targets": {
                    task: {
                        dim: {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4)}
                        for dim, v in sorted(by_dim.items())
                    }
                    for task, by_dim in sorted(target_scores.items())
                },
            }
        )
        _write_report(art.path, shown, per_task, art.metrics["oracle_on_targets"])
    log.info("synth: wrote %d items to %s (%s)", len(rows), out_dir, tp)
    assert art.manifest is not None
    return art.manifest


def _write_item(root: Path, item: Mapping[str, Any], masks: bool) -> dict[str, Any]:
    iid = item["item_id"]
    image = f"images/{iid}.png"
    save_png(root / image, item["source"])
    mask_rel = None
    if masks or item["task"] == tasks.OBJECT_REMOVAL:
        mask_rel = f"masks/{iid}.png"
        save_png(root / mask_rel, item["mask"])
    target = f"targets/{iid}.png"
    save_png(root / target, item["target"])
    return {
        "item_id": iid,
        "task": item["task"],
        "image": image,
        "mask": mask_rel,
        "prompt": item["prompt"],
        "meta": json.dumps(item["meta"], sort_keys=True),
        "target": target,
    }


def _record_target_scores(scores: dict[str, dict[str, list[float]]], item: Mapping[str, Any]) -> None:
    from onereward.synth import oracle  # the oracle imports this module

    by_dim = scores.setdefault(item["task"], {})
    result = oracle.score_all(item["task"], item["source"], item["mask"], item["prompt"], item["target"])
    for dim, value in result.items():
        by_dim.setdefault(dim, []).append(value)


def _write_report(
    root: Path,
    shown: Mapping[str, Sequence[Mapping[str, Any]]],
    per_task: Mapping[str, int],
    oracle_on_targets: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> None:
    """report.html: counts, the oracle's scores of the targets, and a montage per task
    (source | mask | target) of the first items."""
    from onereward.report import html_table, img_tag, png_data_uri, write_html_report

    sections = [
        (
            "Counts",
            html_table(
                ["task", "items"], [[t, c] for t, c in per_task.items()] + [["total", sum(per_task.values())]]
            ),
        ),
        (
            f"Oracle scores of the targets (first {ORACLE_CHECK_ITEMS} items; mean / min)",
            html_table(
                ["task", *tasks.DIMENSIONS],
                [
                    [
                        task,
                        *(
                            f"{by_dim[d]['mean']:.3f} / {by_dim[d]['min']:.3f}" if d in by_dim else "-"
                            for d in tasks.DIMENSIONS
                        ),
                    ]
                    for task, by_dim in oracle_on_targets.items()
                ],
            ),
        ),
    ]
    for task in tasks.TASKS:
        rows = []
        for it in shown.get(task, []):
            rows.append(
                [
                    it["item_id"],
                    img_tag(png_data_uri(it["source"], 128), "source"),
                    img_tag(png_data_uri(it["mask"], 128), "mask"),
                    img_tag(png_data_uri(it["target"], 128), "target"),
                    it["prompt"] if it["prompt"] else "(no prompt)",
                ]
            )
        sections.append(
            (
                f"{task} (source | mask | target)",
                html_table(["item", "source", "mask", "target", "prompt"], rows),
            )
        )
    write_html_report(root / "report.html", "Synthetic pool", sections)
