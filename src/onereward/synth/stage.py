"""The synth stage (KFP component ``synthesize_pool``): write a synthetic source pool."""

from __future__ import annotations

import os
from typing import Any

from onereward.synth.world import make_pool


def run(
    out: str | os.PathLike[str],
    items: int = 48,
    seed: int = 0,
    image_size: int = 64,
    masks: bool = True,
) -> dict[str, Any]:
    """Write a ``pool`` artifact of synthetic items to ``out`` and return its metrics.

    Args:
        out: output artifact directory (replaced atomically when the stage finishes).
        items: number of items (>= 1); tasks are mixed fill 0.4 (a quarter of them text-rendering
            prompts), extend 0.3 (half with a prompt, half without), removal 0.3.
        seed: scene seed; the same seed and parameters give the same images, masks, targets and
            items.parquet bytes.
        image_size: image side in pixels, a multiple of 16 (>= 32); 64 in the tiny profile.
        masks: write masks for image_fill / image_extend items; with False their ``mask`` is null
            (select_subset makes masks) while object_removal items keep theirs.

    Returns:
        metrics: ``n_items``, ``counts`` (items per task), ``n_text_prompts``,
        ``n_extend_with_prompt``, ``items_per_second`` and ``oracle_on_targets`` (mean and min
        oracle score of the targets per task and dimension: a check that world and oracle
        agree). The artifact also holds ``report.html`` with those and a montage per task
        (source | mask | target).
    """
    manifest = make_pool(out, n_items=items, seed=seed, image_size=image_size, masks=masks)
    return manifest.metrics()
