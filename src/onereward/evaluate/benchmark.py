"""The benchmark set: items held out from training, per task, in a fixed order.

Groups follow the rows of the paper's Table 2 and the bars of its Figure 7: image fill (text
rendering included), image extend with a prompt, image extend without one, object removal.

**Selection rule** (documented in docs/contracts.md):

1. candidates are the items of the ``pool`` (or subset) artifact that have a mask; an image_fill
   item without a prompt is skipped;
2. every item whose ``item_id`` was used in training is excluded: the ids of every ``--exclude``
   artifact (the subset RL trained on, the candidates the reward model learnt from) and the
   training items the policy artifact records;
3. within each group, items are ranked by ``sha256(f"{seed}:{item_id}")`` and the first ``n`` are
   taken (fewer when the group has fewer left; the shortfall is reported, never filled from
   another group).

The rank depends only on (seed, item_id), so adding items to a pool never reshuffles the items
already chosen, and the same seed gives the same benchmark wherever it is computed.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onereward import tasks
from onereward.artifacts import read_artifact
from onereward.errors import InputError
from onereward.tables import read_table

FILL = "image_fill"
EXTEND_PROMPT = "image_extend_prompt"
EXTEND_NO_PROMPT = "image_extend_no_prompt"
REMOVAL = "object_removal"
GROUPS: tuple[str, ...] = (FILL, EXTEND_PROMPT, EXTEND_NO_PROMPT, REMOVAL)
GROUP_TITLES: dict[str, str] = {
    FILL: "Image Fill",
    EXTEND_PROMPT: "Image Extend w Prompt",
    EXTEND_NO_PROMPT: "Image Extend w/o Prompt",
    REMOVAL: "Object Removal",
}


def group_of(task: str, prompt: str | None) -> str:
    """The benchmark group (Table 2 row) of an item."""
    tasks.check_task(task)
    if task == tasks.IMAGE_FILL:
        return FILL
    if task == tasks.IMAGE_EXTEND:
        return EXTEND_PROMPT if tasks.has_user_prompt(task, prompt) else EXTEND_NO_PROMPT
    return REMOVAL


def group_dimensions(group: str) -> tuple[str, ...]:
    """The evaluation dimensions of a group's items."""
    return {
        FILL: tasks.dimensions_for(tasks.IMAGE_FILL, "x"),
        EXTEND_PROMPT: tasks.dimensions_for(tasks.IMAGE_EXTEND, "x"),
        EXTEND_NO_PROMPT: tasks.dimensions_for(tasks.IMAGE_EXTEND, None),
        REMOVAL: tasks.dimensions_for(tasks.OBJECT_REMOVAL, None),
    }[group]


def rank(seed: int, item_id: str) -> str:
    """The item's place in its group's benchmark order (depends only on seed and id)."""
    return hashlib.sha256(f"{int(seed)}:{item_id}".encode()).hexdigest()


@dataclass
class BenchmarkItem:
    """One benchmark item: the pool row plus its group and user prompt (None when it has none)."""

    row: dict[str, Any]
    group: str

    @property
    def item_id(self) -> str:
        return self.row["item_id"]

    @property
    def task(self) -> str:
        return self.row["task"]

    @property
    def user_prompt(self) -> str | None:
        prompt = self.row.get("prompt")
        return prompt.strip() if tasks.has_user_prompt(self.task, prompt) else None

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tasks.dimensions_for(self.task, self.row.get("prompt"))


@dataclass
class Benchmark:
    """The chosen items (group order, then rank) and how the choice went per group."""

    items: list[BenchmarkItem]
    wanted: dict[str, int]
    available: dict[str, int]
    n_excluded: int
    n_skipped: dict[str, int] = field(default_factory=dict)

    @property
    def chosen(self) -> dict[str, int]:
        counts = Counter(i.group for i in self.items)
        return {g: counts.get(g, 0) for g in GROUPS}

    @property
    def shortfall(self) -> dict[str, int]:
        chosen = self.chosen
        return {g: self.wanted[g] - chosen[g] for g in GROUPS if chosen[g] < self.wanted[g]}


def select_benchmark(
    rows: Iterable[dict[str, Any]], exclude: set[str], wanted: Mapping[str, int], seed: int
) -> Benchmark:
    """Choose the benchmark items from pool rows (see the module docstring for the rule)."""
    by_group: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    skipped: Counter[str] = Counter()
    n_excluded = 0
    for row in rows:
        if row["item_id"] in exclude:
            n_excluded += 1
            continue
        if not row.get("mask"):
            skipped["no_mask"] += 1
            continue
        if row["task"] == tasks.IMAGE_FILL and not tasks.has_user_prompt(row["task"], row.get("prompt")):
            skipped["fill_without_prompt"] += 1
            continue
        by_group[group_of(row["task"], row.get("prompt"))].append(row)
    items: list[BenchmarkItem] = []
    for group in GROUPS:
        ranked = sorted(by_group[group], key=lambda r: rank(seed, r["item_id"]))
        items += [BenchmarkItem(r, group) for r in ranked[: max(0, int(wanted.get(group, 0)))]]
    return Benchmark(
        items=items,
        wanted={g: int(wanted.get(g, 0)) for g in GROUPS},
        available={g: len(by_group[g]) for g in GROUPS},
        n_excluded=n_excluded,
        n_skipped=dict(skipped),
    )


def read_pool_rows(
    path: str | os.PathLike[str], what: str = "--pool"
) -> tuple[Any, Path, list[dict[str, Any]]]:
    """(manifest, root, rows) of a pool or subset artifact; every referenced file must exist."""
    manifest = read_artifact(path, kind=("pool", "subset"), what=what)
    root = Path(path)
    try:
        rows = read_table(
            root / "items.parquet", required=("item_id", "task", "image", "mask", "prompt"), what=what
        )
    except ValueError as e:
        raise InputError(str(e)) from None
    seen: set[str] = set()
    for row in rows:
        where = f"{what} items.parquet item {row['item_id']!r}"
        if row["item_id"] in seen:
            raise InputError(f"{where}: duplicate item_id")
        seen.add(row["item_id"])
        tasks.check_task(row["task"], where=f"{where} field 'task'")
    return manifest, root, rows


def training_item_ids(
    paths: Iterable[str | os.PathLike[str]], what: str = "--exclude"
) -> tuple[set[str], list[Any]]:
    """Item ids of artifacts used in training (any artifact with an ``items.parquet``) and their manifests."""
    ids: set[str] = set()
    manifests = []
    for path in paths:
        manifest = read_artifact(path, what=f"{what} {path}")
        table = Path(path) / "items.parquet"
        if not table.is_file():
            raise InputError(f"{what} {path}: {table} is missing (expected an artifact with items.parquet)")
        try:
            rows = read_table(table, required=("item_id",), what=f"{what} {path}")
        except ValueError as e:
            raise InputError(str(e)) from None
        ids.update(r["item_id"] for r in rows)
        manifests.append(manifest)
    return ids, manifests
