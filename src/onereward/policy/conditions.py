"""The conditions RL trains on: (source, mask, prompt) items of a subset, split into train and probe.

- Every item needs a mask (a subset always has one; a pool may not: that is an InputError naming
  the item), a known task, and image_fill items a prompt.
- Per task, ``probe_items`` items (seeded by ``seed``, never more than all but one) are held out as
  the fixed probe set the monitors evaluate; the rest are the training conditions.
- Task sampling: ``p_k`` from the config, renormalised over the tasks that have training items
  (paper section 5.1: fill 0.5, extend 0.25, removal 0.25).
- Randomness: every draw of step ``s`` comes from ``numpy.random.default_rng([seed, s, stream])``,
  so a resumed run draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onereward import tasks
from onereward.artifacts import Manifest
from onereward.errors import InputError
from onereward.generate.sampler import ItemCondition, check_condition, fit_to_multiple
from onereward.imageio import load_mask, load_rgb
from onereward.tables import read_subset_items

# Named random streams of one step (the third seed word).
STREAM_TASKS, STREAM_NOISE, STREAM_TIME, STREAM_NFT = 1, 2, 3, 4


@dataclass
class Condition:
    """One (source, mask, prompt) item: the original pixels and the generator-grid version."""

    item_id: str
    task: str
    prompt: str | None  # the user prompt (None: object_removal, extend without prompt)
    source: np.ndarray  # HxWx3 uint8 (for image_extend the canvas)
    mask: np.ndarray  # HxW bool, True = generate
    fitted: ItemCondition  # resized to the generator's grid (same object for the run: VAE caching)
    target: np.ndarray | None = None  # synthetic world: the ideal result
    reference_seeds: tuple[int, ...] = ()  # noise seeds of the reference rollouts (cache entries)

    @property
    def effective_prompt(self) -> str:
        return tasks.effective_prompt(self.task, self.prompt)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tasks.dimensions_for(self.task, self.prompt)

    @property
    def size(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]


@dataclass
class ConditionSet:
    """Training conditions per task, the probe set and the task probabilities."""

    manifest: Manifest
    train: dict[str, list[Condition]]
    probe: list[Condition]
    probabilities: dict[str, float]

    @property
    def tasks(self) -> list[str]:
        return list(self.probabilities)

    def all_train(self) -> list[Condition]:
        return [c for t in self.tasks for c in self.train[t]]

    def sample(self, seed: int, step: int, n: int) -> list[Condition]:
        """``n`` conditions of ``step``: task k with probability p_k, then an item of it uniformly."""
        rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, step, STREAM_TASKS])
        names = self.tasks
        p = np.array([self.probabilities[t] for t in names])
        picks = rng.choice(len(names), size=n, p=p)
        return [self.train[names[k]][int(rng.integers(len(self.train[names[k]])))] for k in picks]

    def needed_cells(self) -> list[tuple[str, str]]:
        """(task, dimension) pairs the reward model is asked about in this run."""
        cells: dict[tuple[str, str], None] = {}
        for c in self.all_train() + self.probe:
            for d in c.dimensions:
                cells[(c.task, d)] = None
        return list(cells)


def _read_rows(subset: str) -> tuple[Manifest, Path, list[dict[str, Any]]]:
    manifest, root, rows = read_subset_items(subset, stage="train_policy")
    if not rows:
        raise InputError(f"--subset: {root / 'items.parquet'} has no items")
    return manifest, root, rows


def load_condition(root: Path, row: dict[str, Any], grid: int, resolution: int | None = None) -> Condition:
    """One item's pixels, checked (an all-zero mask is an InputError) and fitted to the generator's
    grid at the profile's resolution (the aspect-ratio bucket generate_candidates uses)."""
    source, mask = load_rgb(root / row["image"]), load_mask(root / row["mask"])
    item = ItemCondition(row["item_id"], source, mask)
    check_condition(item, where="--subset item")
    target = None
    if row.get("target") and (root / row["target"]).is_file():
        target = load_rgb(root / row["target"])
    return Condition(
        item_id=row["item_id"],
        task=row["task"],
        prompt=row["prompt"] if tasks.has_user_prompt(row["task"], row["prompt"]) else None,
        source=source,
        mask=mask,
        fitted=fit_to_multiple(item, grid, resolution),
        target=target,
    )


def read_conditions(
    subset: str,
    *,
    probabilities: dict[str, float],
    probe_items: int,
    seed: int,
    grid: int,
    resolution: int | None = None,
) -> ConditionSet:
    """Read and check every item of ``subset``, hold out the probe set, renormalise p_k.

    ``grid``: the generator's size multiple (2 x VAE factor for flux_fill); ``resolution``: the
    profile's ``image_size`` (items are generated at its aspect-ratio buckets).
    """
    manifest, root, rows = _read_rows(subset)
    ordered = sorted(rows, key=lambda r: r["item_id"])
    conds = [load_condition(root, row, grid, resolution) for row in ordered]
    by_task: dict[str, list[Condition]] = {}
    for c in conds:
        by_task.setdefault(c.task, []).append(c)
    train: dict[str, list[Condition]] = {}
    probe: list[Condition] = []
    for k, task in enumerate(tasks.TASKS):
        items = by_task.get(task, [])
        if not items:
            continue
        order = np.random.default_rng([int(seed) & 0x7FFFFFFF, k]).permutation(len(items))
        n_probe = min(probe_items, len(items) - 1)
        probe.extend(items[i] for i in order[:n_probe])
        train[task] = [items[i] for i in sorted(order[n_probe:])]
    present = {t: p for t, p in probabilities.items() if p > 0 and train.get(t)}
    if not present:
        wanted = ", ".join(t for t, p in probabilities.items() if p > 0)
        raise InputError(
            f"--subset: {root} has no training items of the sampled tasks ({wanted}); "
            f"it holds {', '.join(f'{t}: {len(v)}' for t, v in by_task.items())}"
        )
    total = sum(present.values())
    probs = {t: present[t] / total for t in tasks.TASKS if t in present}
    probe = [c for c in probe if c.task in probs]  # monitor what is trained
    return ConditionSet(
        manifest=manifest, train={t: train[t] for t in probs}, probe=probe, probabilities=probs
    )
