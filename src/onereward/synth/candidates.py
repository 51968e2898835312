"""Synthetic candidates: N results per item of graded, mixed quality, built from target and source.

Each candidate starts from the item's target (the ideal result) and gets 0..3 random
degradations (candidate counts of degradations are spread over 0, 1, 2, 3, ... so the quality
is graded within an item). Scene-level degradations re-render the scene from the item's ``meta``
(wrong colour, wrong shape, wrong word, missing object, another object where one was removed,
a broken background structure); pixel-level ones act on the pixels (colour seam, blur, noise,
washed out, clipped, partial or flat fill, the object left in place). Pixels outside the mask
are always the source's. The result is a ``candidates`` artifact (docs/contracts.md) whose rows
carry family ``synthetic``, neutral generator parameters and a ``meta`` JSON column listing the
degradations, so tests of annotation and reward training need no generator.
"""

from __future__ import annotations

import copy
import html
import json
import os
import shutil
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from onereward import tasks
from onereward.artifacts import ArtifactWriter, Manifest, read_artifact
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.log import Throughput, get_logger
from onereward.synth import oracle
from onereward.synth.world import SHAPE_COLOURS, SHAPES, WORDS, dilate_mask, parse_prompt, render_scene
from onereward.tables import SYNTH_CANDIDATES_SCHEMA, read_table, write_table

log = get_logger(__name__)

CANDIDATES_SCHEMA = SYNTH_CANDIDATES_SCHEMA  # meta: the applied degradations

# Scene-level degradations change the scene description and re-render it; the rest act on pixels.
SCENE_DEGRADATIONS = (
    "wrong_colour",
    "wrong_shape",
    "wrong_word",
    "missing_object",
    "other_object",
    "broken_structure",
)
PIXEL_DEGRADATIONS = (
    "object_left",
    "partial_removal",
    "partial_fill",
    "flat_fill",
    "blur",
    "seam",
    "washed_out",
    "clipped",
    "noise",
)


# Pairs that do not combine (the missing object has no colour, shape or word to get wrong; the
# object left in place cannot also be partly removed).
_CONFLICTS = [
    {"missing_object", "wrong_colour"},
    {"missing_object", "wrong_shape"},
    {"missing_object", "wrong_word"},
    {"object_left", "partial_removal"},
    {"object_left", "other_object"},
    {"partial_removal", "other_object"},
    # A flat fill paints over the whole mask: content degradations would not show.
    *(
        {"flat_fill", other}
        for other in (
            "partial_fill",
            "object_left",
            "partial_removal",
            "other_object",
            "wrong_colour",
            "wrong_shape",
            "wrong_word",
            "missing_object",
            "broken_structure",
        )
    ),
]


class SyntheticItem:
    """One item's arrays and facts, as the degradations need them.

    Build it from arrays (``SyntheticItem(item_id, task, prompt, source, mask, target, meta)``)
    or from an items.parquet row with :meth:`from_row`.
    """

    def __init__(
        self,
        item_id: str,
        task: str,
        prompt: str | None,
        source: np.ndarray,
        mask: np.ndarray,
        target: np.ndarray,
        meta: Mapping[str, Any] | None = None,
    ):
        tasks.check_task(task, where=f"items: item {item_id!r} task")
        self.item_id = item_id
        self.task = task
        self.prompt = prompt
        self.source = np.asarray(source, dtype=np.uint8)
        self.mask = np.asarray(mask, dtype=bool)
        self.target = np.asarray(target, dtype=np.uint8)
        if self.source.shape != self.target.shape or self.mask.shape != self.source.shape[:2]:
            raise InputError(f"items: item {item_id!r}: image, mask and target sizes differ")
        if not self.mask.any():
            raise InputError(f"items: item {item_id!r}: the mask is empty")
        self.meta: dict[str, Any] = dict(meta or {})
        # Scene-level degradations need a renderable scene of the same size.
        self.has_scene = (
            isinstance(self.meta.get("background"), dict)
            and "size" in self.meta
            and int(self.meta["size"]) == self.source.shape[0] == self.source.shape[1]
        )
        self.prompted = self.meta.get("prompted") if self.has_scene else None
        self.removed = self.meta.get("removed") if self.has_scene else None
        self.parsed = parse_prompt(self.prompt) if tasks.has_user_prompt(self.task, self.prompt) else {}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], root: Path) -> SyntheticItem:
        """Load an items.parquet row of a pool/subset artifact at ``root``."""
        item_id = row["item_id"]
        if not row.get("mask"):
            raise InputError(
                f"items: item {item_id!r} has mask null; synthetic candidates need masks "
                "(make the pool with masks, or run select first)"
            )
        if not row.get("target"):
            raise InputError(
                f"items: item {item_id!r} has target null; synthetic candidates need the synthetic "
                "world's targets (column 'target')"
            )
        try:
            meta = json.loads(row.get("meta") or "{}")
        except json.JSONDecodeError as e:
            raise InputError(f"items: item {item_id!r} column 'meta' is not JSON ({e})") from e
        return cls(
            item_id,
            row["task"],
            row.get("prompt"),
            load_rgb(root / row["image"]),
            load_mask(root / row["mask"]),
            load_rgb(root / row["target"]),
            meta,
        )

    @classmethod
    def from_world(cls, item: Mapping[str, Any]) -> SyntheticItem:
        """From an in-memory item of :func:`onereward.synth.world.sample_items`."""
        return cls(
            item["item_id"],
            item["task"],
            item["prompt"],
            item["source"],
            item["mask"],
            item["target"],
            item["meta"],
        )

    def applicable(self) -> list[str]:
        """Degradations that make sense for this item."""
        out: list[str] = []
        named_colour = bool(self.parsed.get("colour"))
        if self.task in (tasks.IMAGE_FILL, tasks.IMAGE_EXTEND):
            if named_colour:
                out.append("wrong_colour")
            if self.prompted is not None:
                out.append("missing_object")
                if self.prompted == "text":
                    out.append("wrong_word")
                else:
                    out.append("wrong_shape")
            out += ["partial_fill", "seam", "blur", "noise", "washed_out", "clipped"]
            if self.task == tasks.IMAGE_EXTEND:
                out.append("flat_fill")
        else:
            out += ["object_left", "partial_removal", "seam", "blur", "noise", "flat_fill"]
            if self.has_scene:
                out.append("other_object")
        if self.has_scene and self.meta["background"]["kind"] != "flat":
            out.append("broken_structure")
        return out


def _other(rng: np.random.Generator, options: Sequence[str], current: str) -> str:
    choices = [o for o in options if o != current]
    return choices[int(rng.integers(len(choices)))]


def _break_background(rng: np.random.Generator, background: dict[str, Any]) -> dict[str, Any]:
    """The same background colours with a different geometry (orientation, phase or cell)."""
    bg = dict(background)
    if bg["kind"] == "stripes":
        # A new direction and a quarter period of misalignment: visible whatever the mask's edges
        # are (half a period would only swap the two colours, leaving every edge in place).
        bg["orientation"] = _other(rng, ("horizontal", "vertical", "diagonal"), bg["orientation"])
        bg["phase"] = int(bg["phase"] + max(1, bg["period"] // 4))
    elif bg["kind"] == "gradient":
        bg["direction"] = _other(rng, ("horizontal", "vertical", "diagonal"), bg["direction"])
        bg["colours"] = list(reversed(bg["colours"]))
    elif bg["kind"] == "checker":
        bg["cell"] = int(bg["cell"] + max(2, bg["cell"] // 2))
        bg["offset"] = int(bg["cell"] // 2)
    return bg


def _render_scene_degradations(
    item: SyntheticItem, names: Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Apply scene-level degradations by re-rendering the scene; returns (image, details)."""
    meta = copy.deepcopy(item.meta)
    details: dict[str, Any] = {}
    without: list[int] = []
    with_text = True
    replace: dict[int, dict[str, Any]] = {}
    for name in names:
        if name == "wrong_colour":
            colour = _other(rng, list(SHAPE_COLOURS), item.parsed["colour"])
            details[name] = colour
            if item.prompted == "text" and meta.get("text"):
                meta["text"]["colour"] = colour
            elif isinstance(item.prompted, int):
                replace.setdefault(item.prompted, {})["colour"] = colour
        elif name == "wrong_shape" and isinstance(item.prompted, int):
            kind = _other(rng, SHAPES, meta["shapes"][item.prompted]["kind"])
            replace.setdefault(item.prompted, {})["kind"] = kind
            details[name] = kind
        elif name == "wrong_word" and meta.get("text"):
            word = _other(rng, WORDS, meta["text"]["word"])
            meta["text"]["word"] = word
            details[name] = word
        elif name == "missing_object":
            if item.prompted == "text":
                with_text = False
            elif isinstance(item.prompted, int):
                without.append(item.prompted)
        elif name == "other_object" and isinstance(item.removed, int):
            shape = meta["shapes"][item.removed]
            new = {
                "kind": _other(rng, SHAPES, shape["kind"]),
                "colour": _other(rng, list(SHAPE_COLOURS), shape["colour"]),
            }
            replace.setdefault(item.removed, {}).update(new)
            details[name] = new
        elif name == "broken_structure":
            meta["background"] = _break_background(rng, meta["background"])
            details[name] = meta["background"]
    if item.task == tasks.OBJECT_REMOVAL and isinstance(item.removed, int) and "other_object" not in names:
        without.append(item.removed)
    image = render_scene(meta, without=without, with_text=with_text, replace=replace)
    return image, details


def _sub_box(rng: np.random.Generator, mask: np.ndarray, fraction: float) -> np.ndarray:
    """Part of a region: the side ``fraction`` of its bounding box from a random edge."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    part = np.zeros_like(mask)
    side = int(rng.integers(4))
    if side == 0:
        part[y0:y1, x0 : x0 + max(1, int((x1 - x0) * fraction))] = True
    elif side == 1:
        part[y0:y1, x1 - max(1, int((x1 - x0) * fraction)) : x1] = True
    elif side == 2:
        part[y0 : y0 + max(1, int((y1 - y0) * fraction)), x0:x1] = True
    else:
        part[y1 - max(1, int((y1 - y0) * fraction)) : y1, x0:x1] = True
    return part & mask


def _ring_mean(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ring = dilate_mask(mask, max(2, mask.shape[0] // 16)) & ~mask
    return image[ring].mean(0) if ring.any() else image[mask].mean(0)


def _apply_pixel(
    name: str, image: np.ndarray, item: SyntheticItem, severity: float, rng: np.random.Generator
) -> tuple[np.ndarray, Any]:
    """Apply one pixel-level degradation to a float HxWx3 image (0..255); returns (image, detail)."""
    mask = item.mask
    if name == "object_left":
        alpha = 0.5 + 0.5 * severity  # ghost of the object up to the object fully left in place
        return image * (1 - alpha) + item.source * alpha, round(alpha, 3)
    if name == "partial_removal":
        # Part of the object itself (where the source differs from the clean result) stays.
        obj = mask & (np.abs(item.source.astype(np.int16) - item.target.astype(np.int16)).max(-1) > 0)
        part = _sub_box(rng, obj if obj.any() else mask, 0.35 + 0.4 * severity) & mask
        image = image.copy()
        image[part] = item.source[part]
        return image, round(float(part.sum() / mask.sum()), 3)
    if name in ("partial_fill", "flat_fill"):
        fraction = 1.0 if name == "flat_fill" else 0.3 + 0.4 * severity
        part = mask if name == "flat_fill" else _sub_box(rng, mask, fraction)
        image = image.copy()
        if item.task == tasks.IMAGE_EXTEND and name == "partial_fill":
            image[part] = item.source[part]  # part of the canvas left unfilled (grey)
        else:
            image[part] = _ring_mean(image, mask)
        return image, round(float(part.sum() / mask.sum()), 3)
    if name == "blur":
        radius = 0.7 + 1.8 * severity
        im = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        return np.asarray(im.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64), round(radius, 3)
    if name == "seam":
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        shift = direction * (20 + 40 * severity)
        # A seam is a colour shift, not clipping: shrink the shift to the channels' headroom.
        inside = image[mask]
        headroom = np.where(shift > 0, 254.0 - inside.max(0), inside.min(0) - 1.0)
        scale = float(np.clip(np.min(np.maximum(headroom, 0.0) / np.maximum(np.abs(shift), 1e-6)), 0.4, 1.0))
        shift = shift * scale
        return image + shift, [round(float(v), 1) for v in shift]
    if name == "washed_out":
        alpha = 0.3 + 0.45 * severity
        return image * (1 - alpha) + 230.0 * alpha, round(alpha, 3)
    if name == "clipped":
        gain = 1.8 + 1.7 * severity
        return (image - 127.0) * gain + 127.0, round(gain, 3)
    if name == "noise":
        sigma = 6 + 30 * severity
        return image + rng.normal(0, sigma, size=image.shape), round(sigma, 2)
    raise ValueError(f"unknown degradation {name!r}")


def degrade(
    item: SyntheticItem,
    names: Sequence[str],
    rng: np.random.Generator,
    severity: float | Mapping[str, float] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One result: the item's target with the named degradations, composited on the source.

    ``names``: degradations from :meth:`SyntheticItem.applicable` (scene-level ones are applied
    first by re-rendering, then pixel-level ones in a fixed order); ``severity`` in [0, 1] (one
    value, one per name, or None to draw each from U(0.2, 1)). Returns (HxWx3 uint8 result, log
    of the degradations applied). Pixels outside the mask are exactly the source's.
    """
    unknown = [n for n in names if n not in SCENE_DEGRADATIONS + PIXEL_DEGRADATIONS]
    if unknown:
        raise InputError(
            f"degradations: unknown name(s) {unknown}; expected from {SCENE_DEGRADATIONS + PIXEL_DEGRADATIONS}"
        )
    chosen = list(names)
    # missing_object overrides the object's wrong colour / shape / word.
    if "missing_object" in chosen:
        chosen = [c for c in chosen if c not in ("wrong_colour", "wrong_shape", "wrong_word")]
    if isinstance(severity, Mapping):
        severities = {c: float(severity.get(c, 0.5)) for c in chosen}
    elif severity is None:
        severities = {c: float(rng.uniform(0.2, 1.0)) for c in chosen}
    else:
        severities = {c: float(severity) for c in chosen}
    scene = [c for c in SCENE_DEGRADATIONS if c in chosen]
    if item.has_scene and (scene or item.task == tasks.OBJECT_REMOVAL):
        image, details = _render_scene_degradations(item, scene, rng)
        image = image.astype(np.float64)
    else:
        image, details = item.target.astype(np.float64), {}
    log_entries: list[dict[str, Any]] = [{"name": c, "detail": details.get(c)} for c in scene]
    for name in PIXEL_DEGRADATIONS:
        if name in chosen:
            image, detail = _apply_pixel(name, image, item, severities[name], rng)
            log_entries.append({"name": name, "severity": round(severities[name], 3), "detail": detail})
    result = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.where(item.mask[..., None], result, item.source), log_entries


def synthesize_candidates(
    item: SyntheticItem, n: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
    """``n`` results for one item with their degradation logs.

    The numbers of degradations of the n candidates are a shuffled ``0, 1, 2, 3, 0, 1, ...`` so
    the quality is graded within an item; which degradations and how severe is random.
    """
    options = item.applicable()
    counts = rng.permutation([k % 4 for k in range(n)])
    out = []
    for count in counts:
        chosen: list[str] = []
        available = list(options)
        while len(chosen) < count and available:
            pick = str(available[int(rng.integers(len(available)))])
            chosen.append(pick)
            # Drop the picked one and those it overrides or that override it.
            available = [a for a in available if a != pick and {a, pick} not in _CONFLICTS]
        out.append(degrade(item, chosen, rng))
    return out


def _item_seed(seed: int, item_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31)


def make_candidates(
    items_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    per_item: int = 4,
    seed: int = 0,
) -> Manifest:
    """Write a ``candidates`` artifact of ``per_item`` synthetic results per item of a pool or subset.

    ``items_dir``: a ``pool`` or ``subset`` artifact of the synthetic world (every row needs a mask
    and a target). Results are deterministic for (item_id, seed). ``candidates.parquet`` has the
    contract's columns with family ``synthetic``, neutral generator parameters (steps 0,
    cfg_scale 1.0, strength 1.0, guidance 0.0, feather 0, negative_prompt "") and ``meta``: JSON
    ``{"degradations": [{"name", "severity", "detail"}, ...]}`` (an empty list = the target).
    """
    if isinstance(per_item, bool) or not isinstance(per_item, int) or per_item < 1:
        raise InputError(f"--per-item (per_item): must be an integer >= 1, got {per_item!r}")
    source_manifest = read_artifact(items_dir, kind=("pool", "subset"), what="--items")
    root = Path(items_dir)
    rows = read_table(
        root / "items.parquet",
        required=("item_id", "task", "image", "mask", "prompt", "target"),
        what="--items items.parquet",
    )
    params = {"per_item": per_item, "seed": seed}
    with ArtifactWriter(
        out_dir, kind="candidates", stage="synth_candidates", parameters=params, inputs=[source_manifest]
    ) as art:
        for row in rows:
            for col in ("image", "mask", "target"):
                if row.get(col):
                    dst = art.path / row[col]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(root / row[col], dst)
        write_table(art.path / "items.parquet", rows)
        cand_rows: list[dict[str, Any]] = []
        shown: list[tuple[SyntheticItem, list[tuple[np.ndarray, dict[str, float], list]]]] = []
        spreads: dict[str, list[float]] = {}
        with Throughput("candidates") as tp:
            for row in tqdm(rows, desc="synthetic candidates", unit="item", disable=len(rows) < 50):
                item = SyntheticItem.from_row(row, root)
                iseed = _item_seed(seed, item.item_id)
                results = synthesize_candidates(item, per_item, np.random.default_rng(iseed))
                scored = []
                for index, (image, degradations) in enumerate(results):
                    rel = f"candidates/{item.item_id}/{index}.png"
                    save_png(art.path / rel, image)
                    cand_rows.append(
                        {
                            "candidate_id": f"{item.item_id}-c{index}",
                            "item_id": item.item_id,
                            "index": index,
                            "image": rel,
                            "family": "synthetic",
                            "prompt": tasks.effective_prompt(item.task, item.prompt),
                            "negative_prompt": "",
                            "steps": 0,
                            "cfg_scale": 1.0,
                            "strength": 1.0,
                            "seed": (iseed + index) % (2**31),
                            "guidance": 0.0,
                            "feather": 0,
                            "meta": json.dumps({"degradations": degradations}, sort_keys=True),
                        }
                    )
                    scored.append(
                        (
                            image,
                            oracle.score_all(item.task, item.source, item.mask, item.prompt, image),
                            degradations,
                        )
                    )
                    tp.add(1)
                for dim in scored[0][1]:
                    spreads.setdefault(dim, []).append(float(np.std([s[1][dim] for s in scored])))
                if len(shown) < 8:
                    shown.append((item, scored))
        write_table(art.path / "candidates.parquet", cand_rows, schema=CANDIDATES_SCHEMA)
        art.counts.update({"n_items": len(rows), "n_candidates": len(cand_rows)})
        art.metrics.update(
            {
                "n_items": len(rows),
                "n_candidates": len(cand_rows),
                "candidates_per_second": round(tp.rate, 2),
                "oracle_std_within_item": {
                    d: round(float(np.mean(v)), 4) for d, v in sorted(spreads.items())
                },
            }
        )
        _write_report(art.path, shown)
    log.info("synth-candidates: %s", tp)
    assert art.manifest is not None
    return art.manifest


def _write_report(root: Path, shown: Sequence[tuple[SyntheticItem, list]]) -> None:
    from onereward.report import html_table, img_tag, png_data_uri, write_html_report

    table_rows = []
    for item, scored in shown:
        cells = [
            f"{item.item_id}<br/>{item.task}<br/>{html.escape(item.prompt or '')}",
            img_tag(png_data_uri(item.source, 96), "source"),
            img_tag(png_data_uri(item.mask, 96), "mask"),
        ]
        for image, scores, degradations in scored:
            label = ", ".join(d["name"] for d in degradations) or "clean"
            text = "; ".join(f"{k[:4]} {v:.2f}" for k, v in scores.items())
            cells.append(
                f"<div>{img_tag(png_data_uri(image, 96), label)}<br/><span class='small'>{label}<br/>{text}</span></div>"
            )
        table_rows.append(cells)
    width = max((len(r) for r in table_rows), default=3)
    header = ["item", "source", "mask"] + [f"candidate {i}" for i in range(width - 3)]
    # The first cell holds <br/>: html_table escapes plain strings, so wrap it as a div.
    for r in table_rows:
        r[0] = f"<div>{r[0]}</div>"
    write_html_report(
        root / "report.html",
        "Synthetic candidates (oracle scores per dimension)",
        [("Candidates", html_table(header, table_rows))],
    )
