"""Preferences for reward-model training: read, validate, split by item, expand to both orders.

A ``preferences`` artifact (docs/contracts.md) holds one row per (item, dimension) with the winner
and loser candidates. Rows that cannot train the model are excluded with a reason (unknown task or
dimension, a dimension the task does not have, winner == loser, a prompt longer than
``tasks.MAX_PROMPT_CHARS``, image paths leaving the artifact, missing or unreadable image files);
the exclusions go into the report. The train/test split is by item, never by pair, so no item's
candidates are seen in training and testing; it is seeded and stratified by task.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onereward import tasks
from onereward.artifacts import Manifest, read_artifact
from onereward.errors import InputError
from onereward.imageio import load_rgb
from onereward.tables import read_table

PAIRS_FILE = "pairs.parquet"
REQUIRED_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "item_id",
    "task",
    "dimension",
    "prompt",
    "winner",
    "loser",
    "winner_image",
    "loser_image",
    "source_image",
    "mask_image",
)


@dataclass(frozen=True)
class PreferencePair:
    """One labelled comparison: ``winner`` beats ``loser`` on ``dimension`` of ``task``."""

    pair_id: str
    item_id: str
    task: str
    dimension: str
    prompt: str | None
    winner: str
    loser: str
    winner_image: str  # absolute paths
    loser_image: str
    source_image: str | None
    mask_image: str | None
    agreement: float = 1.0


@dataclass(frozen=True)
class Exclusion:
    """A preferences row left out of training, and why."""

    pair_id: str
    item_id: str
    reason: str


@dataclass
class Preferences:
    """Validated pairs of a preferences artifact, plus the excluded rows."""

    manifest: Manifest
    pairs: list[PreferencePair]
    excluded: list[Exclusion]

    def exclusion_counts(self) -> dict[str, int]:
        return dict(Counter(e.reason.split(":")[0] for e in self.excluded))


def _resolve(root: Path, rel: object) -> Path | None:
    if rel is None or (isinstance(rel, str) and not rel.strip()):
        return None
    return root / str(rel)


def _outside(rel: object) -> bool:
    """Does the relative path ``rel`` leave the artifact (absolute, or through ``..``)?"""
    if not isinstance(rel, str) or not rel.strip():
        return False
    norm = os.path.normpath(rel)
    return os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep)


def _unreadable(path: Path, cache: dict[Path, str]) -> str:
    """Why the image file at ``path`` cannot be used ("" when it can): missing, empty, not an image,
    a decompression bomb, or (PNG) a damaged or truncated chunk. Checked once per file, without
    decoding the pixels (``verify`` reads the chunks and their checksums)."""
    if path not in cache:
        from PIL import Image

        reason = ""
        try:
            if not path.is_file():
                reason = "missing"
            elif path.stat().st_size == 0:
                reason = "empty file (0 bytes)"
            else:
                with Image.open(path) as im:
                    im.verify()
        except Exception as e:  # noqa: BLE001 - any decoder error means the file is unusable
            reason = f"{type(e).__name__}: {e}"
        cache[path] = reason
    return cache[path]


def read_preferences(
    path: str | os.PathLike[str], *, what: str = "preferences", context_images: bool = False
) -> Preferences:
    """Read and validate a preferences artifact; invalid rows are excluded with a reason.

    Raises :class:`InputError` when the table lacks columns or no valid pair remains.
    """
    root = Path(path)
    manifest = read_artifact(root, kind="preferences", what=what)
    try:
        rows = read_table(root / PAIRS_FILE, required=REQUIRED_COLUMNS, what=f"{what}: {PAIRS_FILE}")
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from e
    pairs: list[PreferencePair] = []
    excluded: list[Exclusion] = []
    seen_ids: set[str] = set()
    checked: dict[Path, str] = {}
    for row in rows:
        pair_id, item_id = str(row["pair_id"]), str(row["item_id"])

        def exclude(reason: str, pair_id: str = pair_id, item_id: str = item_id) -> None:
            excluded.append(Exclusion(pair_id, item_id, reason))

        task, dimension, prompt = row["task"], row["dimension"], row["prompt"]
        if task not in tasks.TASKS:
            exclude(f"unknown task: {task!r}")
            continue
        if dimension not in tasks.DIMENSIONS:
            exclude(f"unknown dimension: {dimension!r}")
            continue
        if dimension not in tasks.dimensions_for(task, prompt):
            exclude(f"dimension not evaluated for task: {dimension!r} for {task!r}")
            continue
        if pair_id in seen_ids:
            exclude("duplicate pair_id")
            continue
        if not row["winner"] or row["winner"] == row["loser"]:
            exclude(f"winner == loser: {row['winner']!r}")
            continue
        if row["winner_image"] == row["loser_image"]:
            exclude("winner_image == loser_image")
            continue
        if isinstance(prompt, str) and len(prompt) > tasks.MAX_PROMPT_CHARS:
            exclude(f"prompt too long: {len(prompt)} characters (at most {tasks.MAX_PROMPT_CHARS})")
            continue
        paths = ("winner_image", "loser_image", "source_image", "mask_image")
        outside = [k for k in paths if _outside(row[k])]
        if outside:
            exclude(f"image outside the artifact: {outside[0]} {row[outside[0]]!r}")
            continue
        images = {
            key: _resolve(root, row[key])
            for key in ("winner_image", "loser_image", "source_image", "mask_image")
        }
        needed = ["winner_image", "loser_image"] + (["source_image", "mask_image"] if context_images else [])
        missing = [k for k in needed if images[k] is None or not images[k].is_file()]  # type: ignore[union-attr]
        if missing:
            exclude(f"missing image: {missing[0]} {row[missing[0]]!r}")
            continue
        broken = [(k, why) for k in needed if (why := _unreadable(images[k], checked))]  # type: ignore[arg-type]
        if broken:
            exclude(f"unreadable image: {broken[0][0]} {row[broken[0][0]]!r} ({broken[0][1]})")
            continue
        seen_ids.add(pair_id)
        agreement = row.get("agreement")
        pairs.append(
            PreferencePair(
                pair_id=pair_id,
                item_id=item_id,
                task=task,
                dimension=dimension,
                prompt=prompt if prompt else None,
                winner=str(row["winner"]),
                loser=str(row["loser"]),
                winner_image=str(images["winner_image"]),
                loser_image=str(images["loser_image"]),
                source_image=str(images["source_image"]) if images["source_image"] else None,
                mask_image=str(images["mask_image"]) if images["mask_image"] else None,
                agreement=float(agreement) if agreement is not None else 1.0,
            )
        )
    if not pairs:
        reasons = Counter(e.reason.split(":")[0] for e in excluded)
        raise InputError(
            f"{what}: {root / PAIRS_FILE} has no usable pair ({len(rows)} rows; excluded: {dict(reasons) or 'none'})"
        )
    return Preferences(manifest=manifest, pairs=pairs, excluded=excluded)


def split_by_item(
    pairs: list[PreferencePair], *, test_fraction: float = 0.2, seed: int = 0, what: str = "preferences"
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Seeded train/test split by item (stratified by task): all pairs of an item go to one side.

    Raises :class:`InputError` when either split would be empty (fewer than two items, or a
    ``test_fraction`` of 0 or 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction: expected a number strictly between 0 and 1, got {test_fraction}")
    items_by_task: dict[str, list[str]] = {}
    for p in pairs:
        bucket = items_by_task.setdefault(p.task, [])
        if p.item_id not in bucket:
            bucket.append(p.item_id)
    rng = np.random.default_rng(seed)
    test_items: set[str] = set()
    for task in sorted(items_by_task):
        items = sorted(items_by_task[task])
        if len(items) < 2:
            continue  # a lone item trains; it cannot be split
        n_test = min(len(items) - 1, max(1, round(test_fraction * len(items))))
        test_items.update(rng.permutation(items)[:n_test].tolist())
    train = [p for p in pairs if p.item_id not in test_items]
    test = [p for p in pairs if p.item_id in test_items]
    n_items = len({p.item_id for p in pairs})
    if not test:
        raise InputError(
            f"{what}: the test split is empty ({n_items} item(s)); the split is by item and needs at least 2 items of a task"
        )
    if not train:
        raise InputError(f"{what}: the train split is empty ({n_items} item(s))")
    return train, test


class ImageStore:
    """Decodes image files (uint8 HxWx3; masks as RGB, 255 = edit region), keeping the
    ``max_images`` most recently used (LRU): memory stays bounded however many pairs there are.
    ``max_images=0`` keeps nothing. Images above ``max_pixels`` are shrunk on decode (aspect kept)
    to that area: the reward model's processor would shrink them there anyway, and a 12 MP photo
    then costs the cache what the model sees, not 36 MB."""

    def __init__(self, max_images: int = 4096, max_pixels: int | None = None) -> None:
        if max_images < 0:
            raise InputError(f"image_cache: expected an integer >= 0, got {max_images}")
        self.max_images = max_images
        self.max_pixels = max_pixels
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.n_decoded = 0

    def get(self, path: str) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is not None:
            self._cache.move_to_end(path)
            return arr
        try:
            arr = load_rgb(path)
        except (OSError, ValueError) as e:
            raise InputError(f"image: cannot read {path} ({e})") from e
        self.n_decoded += 1
        if self.max_pixels and arr.shape[0] * arr.shape[1] > self.max_pixels:
            arr = _shrink(arr, self.max_pixels)
        if self.max_images:
            self._cache[path] = arr
            while len(self._cache) > self.max_images:
                self._cache.popitem(last=False)
        return arr

    def __len__(self) -> int:
        return len(self._cache)


def _shrink(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    from PIL import Image

    h, w = arr.shape[:2]
    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))


@dataclass(frozen=True)
class Comparison:
    """One query of the SFT objective: is ``first`` better than ``second``? (label True = Yes)."""

    pair_index: int
    first: str
    second: str
    task: str
    dimension: str
    prompt: str | None
    label_yes: bool
    source: str | None
    mask: str | None


def both_orders(pairs: list[PreferencePair], indices: list[int] | None = None) -> list[Comparison]:
    """Each pair as (winner, loser) -> Yes and (loser, winner) -> No (the two terms of Eq. 3)."""
    out = []
    for i in indices if indices is not None else range(len(pairs)):
        p = pairs[i]
        out.append(
            Comparison(
                i,
                p.winner_image,
                p.loser_image,
                p.task,
                p.dimension,
                p.prompt,
                True,
                p.source_image,
                p.mask_image,
            )
        )
        out.append(
            Comparison(
                i,
                p.loser_image,
                p.winner_image,
                p.task,
                p.dimension,
                p.prompt,
                False,
                p.source_image,
                p.mask_image,
            )
        )
    return out
