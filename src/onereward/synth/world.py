"""The synthetic world: procedural scenes and the ``pool`` artifact built from them.

A scene is a textured background (flat, gradient, stripes or checker in muted colours), a few
shapes (circle, square, triangle) in saturated named colours and optionally a word drawn with
PIL's bitmap font. The whole scene is described by a small JSON-able dict (stored as the item's
``meta``) and :func:`render_scene` turns it into pixels deterministically, so anything derived
from an item (targets, synthetic candidates) can be re-rendered from ``meta``.

Items for every task (see ``docs/contracts.md`` for the columns):

- ``image_fill``: the source lacks one object; the mask covers where it belongs; the prompt
  names it ("a red circle", 'the word "OPEN" in red letters'); the target has it.
- ``image_extend``: the target is the full scene; the source is the canvas, i.e. the scene with
  everything outside a keep box set to mid-grey 127 (the original scaled into part of the
  frame); the mask is the new area. Half of them carry a prompt naming a shape that the target
  has in the new area, the others have ``prompt`` null.
- ``object_removal``: the source has the object, the mask covers it (with a margin), the target
  is the background without it; no prompt.

``meta`` (JSON) holds the scene: ``size``, ``background`` (``kind`` flat / gradient / stripes /
checker, ``colours`` by name, and ``direction`` / ``orientation``, ``period``, ``phase`` / ``cell``),
``shapes`` (``kind``, ``colour``, ``bbox`` [x0, y0, x1, y1) in pixels), ``text`` (``word``,
``colour``, ``xy``, ``scale``) or null, ``task``, and per task: ``prompted`` (shape index or
``"text"``) and ``mask_box`` for fill, ``keep_box`` and ``sides`` for extend (``prompted`` when it
has a prompt), ``removed`` (shape index), ``mask_kind`` and ``mask_box`` for removal.

The colour and shape vocabulary lives in :data:`SHAPE_COLOURS`, :data:`SHAPES` and
:data:`BACKGROUND_COLOURS`; the oracle parses prompts with the same tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onereward import tasks
from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger(__name__)

# --- vocabulary (the one table; the oracle and the candidates use it too) ------------------------

# Saturated colours that prompts name; pairwise RGB distances are >= ~95 so that a pixel's nearest
# named colour is unambiguous, and none reaches 0 or 255 (the oracle treats those as clipping).
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 210),
    "yellow": (235, 215, 30),
    "purple": (130, 40, 170),
    "orange": (240, 120, 10),
}

# Muted background colours (low saturation, far from every shape colour).
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "light grey": (200, 200, 200),
    "beige": (218, 204, 176),
    "pale blue": (172, 192, 212),
    "sage": (170, 196, 168),
    "slate": (105, 115, 130),
    "sand": (192, 176, 140),
    "charcoal": (70, 72, 80),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND_KINDS: tuple[str, ...] = ("flat", "gradient", "stripes", "checker")
# Phrases used in prompts for a background kind ("... on a striped background").
BACKGROUND_PHRASES: dict[str, str] = {
    "flat": "a plain background",
    "gradient": "a gradient background",
    "stripes": "a striped background",
    "checker": "a checkered background",
}
# Words whose bitmap renderings overlap little (best IoU between two of them <= 0.74).
WORDS: tuple[str, ...] = ("OPEN", "STOP", "EXIT", "HOTEL", "TAXI", "WIFI")
CANVAS_GREY = 127  # new area of an image_extend canvas

DEFAULT_TASK_MIX: dict[str, float] = {
    tasks.IMAGE_FILL: 0.4,
    tasks.IMAGE_EXTEND: 0.3,
    tasks.OBJECT_REMOVAL: 0.3,
}


def text_prompt(word: str, colour: str) -> str:
    """The prompt for a text-rendering fill item: ``the word "OPEN" in red letters``."""
    return f'the word "{word}" in {colour} letters'


def shape_prompt(colour: str, shape: str, background: str | None = None) -> str:
    """The prompt for a shape: ``a red circle`` or ``a red circle on a striped background``."""
    article = "an" if colour[0] in "aeiou" else "a"
    base = f"{article} {colour} {shape}"
    return f"{base} on {BACKGROUND_PHRASES[background]}" if background else base


_TEXT_RE = re.compile(r'word\s+"([^"]+)"\s+in\s+([a-z]+)\s+letters', re.IGNORECASE)


def parse_prompt(prompt: str | None) -> dict[str, str | None]:
    """Parse a prompt of the world's grammar: ``{"colour", "shape", "word"}`` (None where absent).

    Text prompts are ``the word "W" in C letters``; otherwise the first colour and the first shape
    word of the vocabulary found in the prompt are returned.
    """
    out: dict[str, str | None] = {"colour": None, "shape": None, "word": None}
    if not prompt:
        return out
    m = _TEXT_RE.search(prompt)
    if m and m.group(2).lower() in SHAPE_COLOURS:
        out["word"] = m.group(1)
        out["colour"] = m.group(2).lower()
        return out
    words = re.findall(r"[a-z]+", prompt.lower())
    out["colour"] = next((w for w in words if w in SHAPE_COLOURS), None)
    out["shape"] = next((w for w in words if w in SHAPES), None)
    return out


# --- rendering -------------------------------------------------------------------------------------


def text_scale(size: int) -> int:
    """Integer upscaling of the 6 px bitmap font for an image side (1 at 64 px, 2 at 128 px...)."""
    return max(1, size // 64)


@lru_cache(maxsize=64)
def text_glyphs(word: str, scale: int = 1) -> np.ndarray:
    """Binary mask (h x w, bool) of ``word`` in PIL's bitmap font, cropped to its ink, upscaled."""
    font = ImageFont.load_default_imagefont()
    left, top, right, bottom = font.getbbox(word)
    im = Image.new("L", (right + 2, bottom + 2), 0)
    ImageDraw.Draw(im).text((0, 0), word, fill=255, font=font)
    ink = np.asarray(im) > 127
    ys, xs = np.nonzero(ink)
    ink = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if scale > 1:
        ink = np.repeat(np.repeat(ink, scale, axis=0), scale, axis=1)
    ink.setflags(write=False)
    return ink


def render_background(background: Mapping[str, Any], size: int) -> np.ndarray:
    """Pixels (size x size x 3, uint8) of a background description (see :func:`sample_scene`)."""
    kind = background["kind"]
    cols = [np.array(BACKGROUND_COLOURS[c], dtype=np.float64) for c in background["colours"]]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "flat":
        img = np.broadcast_to(cols[0], (size, size, 3)).copy()
    elif kind == "gradient":
        direction = background["direction"]
        t = {"horizontal": xx, "vertical": yy, "diagonal": (xx + yy) / 2}[direction] / max(size - 1, 1)
        img = cols[0] * (1 - t[..., None]) + cols[1] * t[..., None]
    elif kind == "stripes":
        coord = {"horizontal": yy, "vertical": xx, "diagonal": xx + yy}[background["orientation"]]
        band = ((coord + background["phase"]) // (background["period"] / 2)).astype(int) % 2
        img = np.where(band[..., None] == 0, cols[0], cols[1])
    elif kind == "checker":
        cell = background["cell"]
        offset = background.get("offset", 0)
        band = (((xx + offset) // cell).astype(int) + ((yy + offset) // cell).astype(int)) % 2
        img = np.where(band[..., None] == 0, cols[0], cols[1])
    else:
        raise InputError(
            f"meta.background.kind: unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}"
        )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def draw_shape(image: Image.Image, kind: str, colour: str, bbox: Sequence[int]) -> None:
    """Draw a filled shape (no anti-aliasing, so its pixels have exactly the named colour)."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    rgb = SHAPE_COLOURS[colour]
    draw = ImageDraw.Draw(image)
    # PIL's bbox is inclusive; ours is half-open [x0, x1).
    if kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=rgb)
    elif kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=rgb)
    elif kind == "triangle":
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=rgb)
    else:
        raise InputError(f"meta.shapes.kind: unknown shape {kind!r}; expected one of {SHAPES}")


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a bool mask by ``radius`` pixels (separable, doubling shifts: O(log r)).

    The one morphology helper of the synthetic world (masks, the oracle's bands, candidates).
    """
    out = mask.astype(bool, copy=True)
    for axis in (0, 1):
        reached = 0
        while reached < radius:
            d = min(reached + 1, radius - reached)
            prev = out.copy()
            if axis == 0:
                out[d:] |= prev[:-d]
                out[:-d] |= prev[d:]
            else:
                out[:, d:] |= prev[:, :-d]
                out[:, :-d] |= prev[:, d:]
            reached += d
    return out


def shape_mask(kind: str, bbox: Sequence[int], size: int) -> np.ndarray:
    """Pixels (size x size bool) that :func:`draw_shape` paints for a shape."""
    im = Image.new("RGB", (size, size), (0, 0, 0))
    draw_shape(im, kind, "red", bbox)
    return np.asarray(im)[..., 0] > 0


def draw_text(array: np.ndarray, text: Mapping[str, Any]) -> None:
    """Paint ``text`` ({"word", "colour", "xy", "scale"}) into an HxWx3 uint8 array in place."""
    ink = text_glyphs(text["word"], int(text["scale"]))
    x, y = (int(v) for v in text["xy"])
    h, w = ink.shape
    region = array[y : y + h, x : x + w]
    region[ink[: region.shape[0], : region.shape[1]]] = SHAPE_COLOURS[text["colour"]]


def render_scene(
    meta: Mapping[str, Any],
    *,
    without: Sequence[int] = (),
    with_text: bool = True,
    replace: Mapping[int, Mapping[str, Any]] | None = None,
) -> np.ndarray:
    """Render a scene description to HxWx3 uint8.

    ``without``: indices of ``meta["shapes"]`` to leave out; ``with_text``: draw ``meta["text"]``;
    ``replace``: per shape index, fields overriding the shape (e.g. another colour or kind).
    """
    size = int(meta["size"])
    base = render_background(meta["background"], size)
    im = Image.fromarray(base)
    replace = replace or {}
    for i, shape in enumerate(meta.get("shapes", [])):
        if i in without:
            continue
        shape = {**shape, **replace.get(i, {})}
        draw_shape(im, shape["kind"], shape["colour"], shape["bbox"])
    out = np.asarray(im).copy()
    if with_text and meta.get("text"):
        draw_text(out, meta["text"])
    return out


# --- sampling scenes and items ---------------------------------------------------------------------


def _sample_background(rng: np.random.Generator, size: int) -> dict[str, Any]:
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    names = list(BACKGROUND_COLOURS)
    first = names[int(rng.integers(len(names)))]
    # Two-colour backgrounds need a visible contrast between their colours.
    others = [
        n
        for n in names
        if n != first and np.abs(np.subtract(BACKGROUND_COLOURS[n], BACKGROUND_COLOURS[first])).sum() >= 90
    ]
    second = others[int(rng.integers(len(others)))]
    unit = max(1, size // 64)
    if kind == "flat":
        return {"kind": kind, "colours": [first]}
    if kind == "gradient":
        direction = ("horizontal", "vertical", "diagonal")[int(rng.integers(3))]
        return {"kind": kind, "colours": [first, second], "direction": direction}
    if kind == "stripes":
        orientation = ("horizontal", "vertical", "diagonal")[int(rng.integers(3))]
        period = int(rng.integers(4, 8)) * 2 * unit
        return {
            "kind": kind,
            "colours": [first, second],
            "orientation": orientation,
            "period": period,
            "phase": int(rng.integers(period)),
        }
    cell = int(rng.integers(5, 11)) * unit
    return {"kind": kind, "colours": [first, second], "cell": cell}


def _boxes_overlap(a: Sequence[int], b: Sequence[int], gap: int = 0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _random_box(rng: np.random.Generator, side: int, region: Sequence[int]) -> list[int] | None:
    """A side x side box inside ``region`` (x0, y0, x1, y1), or None when it does not fit."""
    x0, y0, x1, y1 = region
    if x1 - x0 < side or y1 - y0 < side:
        return None
    x = int(rng.integers(x0, x1 - side + 1))
    y = int(rng.integers(y0, y1 - side + 1))
    return [x, y, x + side, y + side]


def _sample_shape(
    rng: np.random.Generator,
    side: int,
    region: Sequence[int],
    avoid: Sequence[Sequence[int]] = (),
    gap: int = 0,
    tries: int = 30,
    colours: Sequence[str] = tuple(SHAPE_COLOURS),
) -> dict[str, Any] | None:
    for _ in range(tries):
        box = _random_box(rng, side, region)
        if box is None:
            return None
        if any(_boxes_overlap(box, other, gap) for other in avoid):
            continue
        return {
            "kind": SHAPES[int(rng.integers(len(SHAPES)))],
            "colour": colours[int(rng.integers(len(colours)))],
            "bbox": box,
        }
    return None


def _shape_side(rng: np.random.Generator, size: int) -> int:
    return int(rng.integers(size * 10 // 64, size * 17 // 64 + 1))


def _box_mask(box: Sequence[int], size: int, ellipse: bool = False) -> np.ndarray:
    x0, y0, x1, y1 = box
    if not ellipse:
        m = np.zeros((size, size), dtype=bool)
        m[y0:y1, x0:x1] = True
        return m
    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
    return np.asarray(im) > 127


def _add_distractors(
    rng: np.random.Generator,
    size: int,
    shapes: list[dict[str, Any]],
    avoid: list[list[int]],
    n: int,
    not_colour: str | None = None,
) -> None:
    """Add up to ``n`` shapes clear of ``avoid``; none in ``not_colour`` (the prompt's colour stays
    unambiguous: only the prompted object has it)."""
    colours = tuple(c for c in SHAPE_COLOURS if c != not_colour)
    for _ in range(n):
        shape = _sample_shape(rng, _shape_side(rng, size), (0, 0, size, size), avoid, gap=1, colours=colours)
        if shape is not None:
            shapes.append(shape)
            avoid.append(shape["bbox"])


def _make_fill(rng: np.random.Generator, size: int, text: bool) -> dict[str, Any]:
    """Sample an image_fill item: meta, source, mask, prompt, target."""
    background = _sample_background(rng, size)
    meta: dict[str, Any] = {"size": size, "background": background, "shapes": [], "text": None}
    margin = max(3, size // 16)  # object to mask edge: room for the oracle's boundary bands
    use_ellipse = False
    if text:
        word = WORDS[int(rng.integers(len(WORDS)))]
        colour = list(SHAPE_COLOURS)[int(rng.integers(len(SHAPE_COLOURS)))]
        scale = text_scale(size)
        th, tw = text_glyphs(word, scale).shape
        mw, mh = (
            tw + 2 * margin + int(rng.integers(0, size // 8 + 1)),
            th + 2 * margin + int(rng.integers(0, size // 8 + 1)),
        )
        mw, mh = min(mw, size), min(mh, size)
        mx, my = int(rng.integers(0, size - mw + 1)), int(rng.integers(0, size - mh + 1))
        tx = mx + int(rng.integers(margin, max(margin, mw - tw - margin) + 1))
        ty = my + int(rng.integers(margin, max(margin, mh - th - margin) + 1))
        meta["text"] = {"word": word, "colour": colour, "xy": [tx, ty], "scale": scale}
        meta["prompted"] = "text"
        mask_box = [mx, my, mx + mw, my + mh]
        prompt = text_prompt(word, colour)
    else:
        side = _shape_side(rng, size)
        use_ellipse = bool(rng.random() < 0.3)
        # An ellipse's inscribed square is ~0.71 of its side, so it needs a larger mask.
        extra = int(rng.integers(0, size // 8 + 1))
        mside = min(size, int(np.ceil((side + 2 * margin) * (1.45 if use_ellipse else 1.0))) + extra)
        mx, my = int(rng.integers(0, size - mside + 1)), int(rng.integers(0, size - mside + 1))
        mask_box = [mx, my, mx + mside, my + mside]
        c = mside / 2
        jitter = max(0, int((mside / (1.45 if use_ellipse else 1.0) - side) / 2 - margin))
        ox = mx + int(c - side / 2) + int(rng.integers(-jitter, jitter + 1))
        oy = my + int(c - side / 2) + int(rng.integers(-jitter, jitter + 1))
        obj = _sample_shape(rng, side, (ox, oy, ox + side, oy + side))
        assert obj is not None
        meta["shapes"].append(obj)
        meta["prompted"] = 0
        with_bg = bool(rng.random() < 0.4)
        prompt = shape_prompt(obj["colour"], obj["kind"], background["kind"] if with_bg else None)
    mask = _box_mask(mask_box, size, ellipse=use_ellipse)
    meta["mask_box"] = mask_box
    prompted_colour = meta["text"]["colour"] if text else meta["shapes"][0]["colour"]
    _add_distractors(
        rng, size, meta["shapes"], [mask_box], int(rng.integers(0, 3)), not_colour=prompted_colour
    )
    target = render_scene(meta)
    # The source lacks the prompted object (rendered after the distractors, which it keeps).
    source = render_scene(meta, with_text=False) if text else render_scene(meta, without=[0])
    return {
        "task": tasks.IMAGE_FILL,
        "meta": meta,
        "source": source,
        "mask": mask,
        "prompt": prompt,
        "target": target,
    }


def _make_extend(rng: np.random.Generator, size: int, with_prompt: bool) -> dict[str, Any]:
    """Sample an image_extend item: the full scene is the target, the canvas keeps part of it."""
    background = _sample_background(rng, size)
    meta: dict[str, Any] = {"size": size, "background": background, "shapes": [], "text": None}
    if with_prompt:
        # One side: its new strip (>= 28 % of the frame) holds the prompted shape clear of the
        # boundary; two opposite strips would each be too narrow at 64 px.
        sides = [("left",), ("right",), ("top",), ("bottom",)]
    else:
        sides = [
            ("left",),
            ("right",),
            ("top",),
            ("bottom",),
            ("left", "right"),
            ("top", "bottom"),
            ("left", "right", "top", "bottom"),
        ]
    chosen = sides[int(rng.integers(len(sides)))]
    ratio = float(rng.uniform(0.5, 0.72))  # kept fraction along each extended axis
    x0, y0, x1, y1 = 0, 0, size, size
    horizontal = [s for s in chosen if s in ("left", "right")]
    vertical = [s for s in chosen if s in ("top", "bottom")]
    for group, axis in ((horizontal, "x"), (vertical, "y")):
        if not group:
            continue
        keep = int(round(size * ratio))
        new = size - keep
        if len(group) == 2:
            a = new // 2
            lo, hi = a, a + keep
        elif group[0] in ("left", "top"):
            lo, hi = new, size
        else:
            lo, hi = 0, keep
        if axis == "x":
            x0, x1 = lo, hi
        else:
            y0, y1 = lo, hi
    keep_box = [x0, y0, x1, y1]
    mask = ~_box_mask(keep_box, size)
    meta["keep_box"] = keep_box
    meta["sides"] = list(chosen)
    prompt = None
    avoid: list[list[int]] = []
    if with_prompt:
        # Largest strip of the new area; the prompted shape sits in it, clear of the keep box.
        strips = {
            "left": [0, 0, x0, size],
            "right": [x1, 0, size, size],
            "top": [0, 0, size, y0],
            "bottom": [0, y1, size, size],
        }
        strip = max((strips[s] for s in chosen), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        margin = max(3, size // 16)
        inner = [
            strip[0] + (margin if strip[0] > 0 else 1),
            strip[1] + (margin if strip[1] > 0 else 1),
            strip[2] - (margin if strip[2] < size else 1),
            strip[3] - (margin if strip[3] < size else 1),
        ]
        side = min(_shape_side(rng, size), inner[2] - inner[0], inner[3] - inner[1])
        obj = _sample_shape(rng, max(side, size * 8 // 64), inner)
        if obj is not None:
            meta["shapes"].append(obj)
            meta["prompted"] = 0
            avoid.append(obj["bbox"])
            with_bg = bool(rng.random() < 0.4)
            prompt = shape_prompt(obj["colour"], obj["kind"], background["kind"] if with_bg else None)
    prompted_colour = meta["shapes"][0]["colour"] if prompt else None
    _add_distractors(rng, size, meta["shapes"], avoid, int(rng.integers(1, 4)), not_colour=prompted_colour)
    target = render_scene(meta)
    source = target.copy()
    source[mask] = CANVAS_GREY
    return {
        "task": tasks.IMAGE_EXTEND,
        "meta": meta,
        "source": source,
        "mask": mask,
        "prompt": prompt,
        "target": target,
    }


def _make_removal(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """Sample an object_removal item: the mask covers one object (with a margin)."""
    background = _sample_background(rng, size)
    meta: dict[str, Any] = {"size": size, "background": background, "shapes": [], "text": None}
    side = _shape_side(rng, size)
    margin = max(2, size // 32) + int(rng.integers(0, max(2, size // 32) + 1))
    obj = _sample_shape(rng, side, (margin, margin, size - margin, size - margin))
    assert obj is not None
    meta["shapes"].append(obj)
    meta["removed"] = 0
    x0, y0, x1, y1 = obj["bbox"]
    mask_box = [x0 - margin, y0 - margin, x1 + margin, y1 + margin]
    if rng.random() < 0.5:
        mask = _box_mask(mask_box, size)
        meta["mask_kind"] = "box"
    else:
        # The object's own silhouette grown by the margin (a tighter, shape-like mask).
        sil = shape_mask(obj["kind"], obj["bbox"], size)
        mask = dilate_mask(sil, margin)
        meta["mask_kind"] = "silhouette"
    meta["mask_box"] = mask_box
    _add_distractors(rng, size, meta["shapes"], [mask_box], int(rng.integers(0, 3)))
    source = render_scene(meta)
    target = render_scene(meta, without=[0])
    return {
        "task": tasks.OBJECT_REMOVAL,
        "meta": meta,
        "source": source,
        "mask": mask,
        "prompt": None,
        "target": target,
    }


def _allocate(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` items over the task mix (every task with p>0 gets >= 1 if n allows)."""
    total = sum(mix.values())
    raw = {t: n * p / total for t, p in mix.items()}
    counts = {t: int(np.floor(v)) for t, v in raw.items()}
    for t in sorted(raw, key=lambda t: (counts[t] - raw[t], t))[: n - sum(counts.values())]:
        counts[t] += 1
    # Guarantee presence of every task when there are enough items.
    for t, p in mix.items():
        if p > 0 and counts[t] == 0:
            donor = max(counts, key=lambda k: counts[k])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[t] += 1
    return counts


def check_pool_inputs(n_items: int, image_size: int, seed: int = 0) -> None:
    """Raise :class:`InputError` for an item count < 1, an image size that is not a multiple of 16
    (or below 32) or a negative seed."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed (seed): must be an integer >= 0, got {seed!r}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise InputError(f"--items (n_items): must be an integer >= 1, got {n_items!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32 or image_size % 16:
        raise InputError(f"--image-size (image_size): must be a multiple of 16 and >= 32, got {image_size!r}")


def iter_items(
    n_items: int,
    seed: int,
    image_size: int = 64,
    *,
    task_mix: Mapping[str, float] | None = None,
    text_fraction: float = 0.25,
    extend_prompt_fraction: float = 0.5,
) -> Iterator[dict[str, Any]]:
    """Yield ``n_items`` items one at a time (deterministic for ``seed``); see :func:`sample_items`.

    The inputs are checked before the first item is yielded.
    """
    check_pool_inputs(n_items, image_size, seed)
    mix = dict(DEFAULT_TASK_MIX if task_mix is None else task_mix)
    for t, p in mix.items():
        tasks.check_task(t, where="task_mix")
        if p < 0:
            raise InputError(f"task_mix[{t}]: must be >= 0, got {p}")
    if sum(mix.values()) <= 0:
        raise InputError("task_mix: at least one task needs a positive weight")
    for name, frac in (("text_fraction", text_fraction), ("extend_prompt_fraction", extend_prompt_fraction)):
        if not 0.0 <= frac <= 1.0:
            raise InputError(f"{name}: must be in [0, 1], got {frac}")
    return _generate(n_items, seed, image_size, mix, text_fraction, extend_prompt_fraction)


def _generate(
    n_items: int,
    seed: int,
    image_size: int,
    mix: Mapping[str, float],
    text_fraction: float,
    extend_prompt_fraction: float,
) -> Iterator[dict[str, Any]]:
    counts = _allocate(n_items, mix)
    n_text = int(round(counts.get(tasks.IMAGE_FILL, 0) * text_fraction))
    if text_fraction > 0 and n_text == 0 and counts.get(tasks.IMAGE_FILL, 0) >= 2:
        n_text = 1
    n_ext_prompt = int(round(counts.get(tasks.IMAGE_EXTEND, 0) * extend_prompt_fraction))
    kinds: list[tuple[str, bool]] = (
        [(tasks.IMAGE_FILL, i < n_text) for i in range(counts.get(tasks.IMAGE_FILL, 0))]
        + [(tasks.IMAGE_EXTEND, i < n_ext_prompt) for i in range(counts.get(tasks.IMAGE_EXTEND, 0))]
        + [(tasks.OBJECT_REMOVAL, False) for _ in range(counts.get(tasks.OBJECT_REMOVAL, 0))]
    )
    order = np.random.default_rng([seed, 0]).permutation(len(kinds))
    for i, k in enumerate(order):
        task, flag = kinds[int(k)]
        # One generator per item: an item's scene depends on (seed, position) only.
        rng = np.random.default_rng([seed, 1, i])
        if task == tasks.IMAGE_FILL:
            item = _make_fill(rng, image_size, text=flag)
        elif task == tasks.IMAGE_EXTEND:
            item = _make_extend(rng, image_size, with_prompt=flag)
        else:
            item = _make_removal(rng, image_size)
        item["item_id"] = f"syn{seed}-{i:05d}"
        item["meta"]["task"] = task
        yield item


def sample_items(
    n_items: int,
    seed: int,
    image_size: int = 64,
    *,
    task_mix: Mapping[str, float] | None = None,
    text_fraction: float = 0.25,
    extend_prompt_fraction: float = 0.5,
) -> list[dict[str, Any]]:
    """Sample ``n_items`` items in memory (deterministic for ``seed``).

    Each item is a dict with ``item_id, task, meta, source, mask, prompt, target`` (arrays for the
    images). ``task_mix`` gives relative task weights (default fill 0.4, extend 0.3, removal 0.3);
    ``text_fraction`` is the share of fill items with a text-rendering prompt and
    ``extend_prompt_fraction`` the share of extend items with a prompt.
    """
    return list(
        iter_items(
            n_items,
            seed,
            image_size,
            task_mix=task_mix,
            text_fraction=text_fraction,
            extend_prompt_fraction=extend_prompt_fraction,
        )
    )
