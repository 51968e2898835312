"""Masks for pool items that come without one.

- image_extend: a canvas expansion. The canvas grows by ``ratio`` of the source side on the chosen
  side(s), the new area is mid-grey (127) and masked, and the canvas is scaled so that its longest
  side equals the source's ("source scaled into the frame", docs/contracts.md). An image that is
  already such a canvas (a uniform 127 border, e.g. a synthetic pool written without masks) keeps
  its pixels and gets the mask of its grey border instead.
- image_fill: a random box or a random brush stroke covering a fraction of the image.
- object_removal: never generated; the object to remove must be given (the stage refuses the pool).

Every choice is drawn from a generator seeded by (seed, item_id), so a mask does not depend on
which other items are in the pool or in which order they are processed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from onereward import tasks
from onereward.errors import InputError

CANVAS_GREY = 127
EXTEND_SIDES = ("left", "right", "top", "bottom", "all")
FILL_KINDS = ("box", "brush")


@dataclass(frozen=True)
class MaskSettings:
    """How missing masks are made.

    extend_ratios: new canvas area per extended side, as a fraction of the source side.
    extend_sides: sides to extend, drawn uniformly (``all`` extends every side by ratio / 2).
    fill_kinds: ``box`` and/or ``brush``, drawn uniformly.
    fill_area: (min, max) fraction of the image a fill mask covers.
    threshold: grey level >= threshold marks the region to generate in a non-binary mask.
    canvas_min_fraction: a grey-127 border must cover at least this fraction to count as a canvas.
    """

    extend_ratios: tuple[float, ...] = (0.25, 0.5)
    extend_sides: tuple[str, ...] = EXTEND_SIDES
    fill_kinds: tuple[str, ...] = FILL_KINDS
    fill_area: tuple[float, float] = (0.1, 0.3)
    threshold: int = 128
    canvas_min_fraction: float = 0.05

    def validate(self) -> MaskSettings:
        """Raise InputError naming the parameter when a value is out of range."""
        if not self.extend_ratios or any(not 0 < r <= 2 for r in self.extend_ratios):
            raise InputError(f"extend_ratios: each ratio must be in (0, 2], got {self.extend_ratios}")
        bad = [s for s in self.extend_sides if s not in EXTEND_SIDES]
        if not self.extend_sides or bad:
            raise InputError(
                f"extend_sides: expected some of {', '.join(EXTEND_SIDES)}, got {self.extend_sides}"
            )
        bad = [k for k in self.fill_kinds if k not in FILL_KINDS]
        if not self.fill_kinds or bad:
            raise InputError(f"fill_kinds: expected some of {', '.join(FILL_KINDS)}, got {self.fill_kinds}")
        lo, hi = self.fill_area
        if not 0 < lo <= hi < 1:
            raise InputError(f"fill_area: need 0 < min <= max < 1, got {self.fill_area}")
        if not 1 <= self.threshold <= 255:
            raise InputError(f"mask_threshold: must be in [1, 255], got {self.threshold}")
        return self


def item_rng(seed: int, item_id: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on (seed, item_id, purpose)."""
    digest = hashlib.sha256(f"{seed}\0{item_id}\0{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def detect_canvas(image: np.ndarray, min_fraction: float = 0.05) -> np.ndarray | None:
    """Mask of an existing extend canvas's border (pixels outside the bounding box of all
    non-grey pixels, all exactly 127), or None when the image has no such border."""
    content = np.any(image != CANVAS_GREY, axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return None
    mask = np.ones(content.shape, dtype=bool)
    mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = False
    return mask if mask.mean() >= min_fraction else None


def extend_canvas(image: np.ndarray, side: str, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Canvas expansion of ``image`` (HxWx3 uint8) on ``side`` by ``ratio``; returns (canvas, mask)."""
    h, w = image.shape[:2]
    pad_x = round(w * ratio) if side in ("left", "right") else 0
    pad_y = round(h * ratio) if side in ("top", "bottom") else 0
    if side == "all":
        pad_x, pad_y = 2 * max(1, round(w * ratio / 2)), 2 * max(1, round(h * ratio / 2))
    big_w, big_h = w + pad_x, h + pad_y
    off_x = {"left": pad_x, "all": pad_x // 2}.get(side, 0)
    off_y = {"top": pad_y, "all": pad_y // 2}.get(side, 0)
    scale = max(w, h) / max(big_w, big_h)
    canvas_w, canvas_h = max(1, round(big_w * scale)), max(1, round(big_h * scale))
    src_w, src_h = max(1, round(w * scale)), max(1, round(h * scale))
    x0 = min(round(off_x * scale), canvas_w - src_w)
    y0 = min(round(off_y * scale), canvas_h - src_h)
    canvas = np.full((canvas_h, canvas_w, 3), CANVAS_GREY, dtype=np.uint8)
    canvas[y0 : y0 + src_h, x0 : x0 + src_w] = np.asarray(
        Image.fromarray(image).resize((src_w, src_h), Image.LANCZOS), dtype=np.uint8
    )
    mask = np.ones((canvas_h, canvas_w), dtype=bool)
    mask[y0 : y0 + src_h, x0 : x0 + src_w] = False
    return canvas, mask


def box_mask(size: tuple[int, int], rng: np.random.Generator, area: tuple[float, float]) -> np.ndarray:
    """A random axis-aligned box covering a fraction in ``area`` of a (width, height) image."""
    w, h = size
    frac = rng.uniform(*area)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    bw = int(np.clip(round(math.sqrt(frac * w * h * aspect)), 1, w))
    bh = int(np.clip(round(frac * w * h / bw), 1, h))
    x0 = int(rng.integers(0, w - bw + 1))
    y0 = int(rng.integers(0, h - bh + 1))
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : y0 + bh, x0 : x0 + bw] = True
    return mask


def brush_mask(size: tuple[int, int], rng: np.random.Generator, area: tuple[float, float]) -> np.ndarray:
    """Random thick strokes (a free-form inpainting mask) until the covered fraction reaches a
    target drawn from ``area``; at most 8 strokes."""
    w, h = size
    target = rng.uniform(*area)
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    side = min(w, h)
    for _ in range(8):
        width = max(2, round(side * rng.uniform(0.08, 0.18)))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        points = [(x, y)]
        for _ in range(int(rng.integers(2, 6))):
            angle = rng.uniform(0, 2 * math.pi)
            length = side * rng.uniform(0.15, 0.4)
            x = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            points.append((x, y))
        draw.line(points, fill=255, width=width, joint="curve")
        r = width / 2
        for px, py in points:  # round caps so that strokes have no notches at the joints
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
        if (np.asarray(im) > 0).mean() >= target:
            break
    return np.asarray(im) > 0


def make_mask(
    task: str, image: np.ndarray, item_id: str, seed: int, settings: MaskSettings
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Image, mask and a description (for ``meta``) for an item without a mask.

    The returned image differs from the input only for a new image_extend canvas.
    """
    if task == tasks.OBJECT_REMOVAL:
        raise InputError(f"item {item_id}: object_removal needs a provided mask (the object to remove)")
    if task == tasks.IMAGE_EXTEND:
        existing = detect_canvas(image, settings.canvas_min_fraction)
        if existing is not None:
            return image, existing, {"mask_source": "canvas_border"}
        rng = item_rng(seed, item_id, "extend")
        side = settings.extend_sides[int(rng.integers(len(settings.extend_sides)))]
        ratio = float(settings.extend_ratios[int(rng.integers(len(settings.extend_ratios)))])
        canvas, mask = extend_canvas(image, side, ratio)
        return (
            canvas,
            mask,
            {"mask_source": "generated", "mask_kind": "canvas_expansion", "side": side, "ratio": ratio},
        )
    tasks.check_task(task)
    rng = item_rng(seed, item_id, "fill")
    kind = settings.fill_kinds[int(rng.integers(len(settings.fill_kinds)))]
    size = (image.shape[1], image.shape[0])
    mask = (
        box_mask(size, rng, settings.fill_area)
        if kind == "box"
        else brush_mask(size, rng, settings.fill_area)
    )
    return image, mask, {"mask_source": "generated", "mask_kind": kind, "area": round(float(mask.mean()), 4)}
