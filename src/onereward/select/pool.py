"""Reading a source pool for select_subset, and checking every item.

Three inputs are accepted (detected in this order):

- a ``pool`` artifact (``manifest.json`` + ``items.parquet``, docs/contracts.md);
- an HF ``datasets`` folder written by ``save_to_disk`` (columns ``image``, optional ``mask``,
  ``prompt``, ``task``, ``item_id``, ``meta``, ``target``; images as ``Image`` features or paths);
- a plain folder of images, optionally with a sidecar ``items.jsonl`` / ``metadata.jsonl`` /
  ``items.csv`` / ``metadata.csv`` whose rows name the image (``file_name`` or ``image``, relative
  to the folder) and optionally ``mask``, ``prompt``, ``task``, ``item_id``, ``target``; other
  fields go into ``meta``.

Cheap checks (unknown task, missing prompt, duplicate ids, malformed sidecar rows) happen while
reading; pixel checks (:func:`check_image`, :func:`check_mask`) run in the DataLoader workers so
that every image is decoded once. Problems become :class:`BadItem` entries, never exceptions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from onereward import tasks
from onereward.artifacts import ArtifactError, Manifest, read_artifact
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.tables import read_table

log = get_logger("select.pool")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
SIDECAR_NAMES = ("items.jsonl", "metadata.jsonl", "items.csv", "metadata.csv")
ITEM_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Colour that transparent pixels are composited over (SelectConfig.alpha_background).
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
MAX_PROMPT_CHARS = tasks.MAX_PROMPT_CHARS  # SelectConfig.max_prompt_chars defaults to it


@dataclass(frozen=True)
class Source:
    """Where a file's bytes live: a path on disk, or a cell of an HF dataset (row, column)."""

    path: str | None = None
    row: int = -1
    column: str = ""

    def describe(self) -> str:
        return self.path if self.path is not None else f"dataset[{self.row}].{self.column}"


@dataclass
class PoolItem:
    """One item of the pool before pixel checks. ``task`` may still be unvalidated."""

    item_id: str
    task: str
    image: Source
    mask: Source | None = None
    prompt: str | None = None
    meta: str = "{}"
    target: Source | None = None


@dataclass(frozen=True)
class BadItem:
    """An item (or sidecar row) that is skipped, with the reason shown in the report."""

    item_id: str
    origin: str
    reason: str


@dataclass
class Pool:
    """A readable pool: its items, the problems found while reading, and how to fetch bytes."""

    kind: str  # "artifact" | "hf_dataset" | "folder"
    root: Path
    items: list[PoolItem]
    bad: list[BadItem] = field(default_factory=list)
    manifest: Manifest | None = None
    _dataset: Any = None  # HF dataset (decode=False image columns), opened lazily per process

    @property
    def n_total(self) -> int:
        """Items and rejected rows together (the pool's size as given)."""
        return len(self.items) + len(self.bad)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started with spawn re-open the dataset instead of pickling arrow tables.
        state = dict(self.__dict__)
        state["_dataset"] = None
        return state

    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = _open_hf_dataset(self.root)
        return self._dataset

    def read_bytes(self, source: Source) -> bytes:
        """The raw file bytes of ``source`` (raises OSError/FileNotFoundError when unreadable)."""
        if source.path is not None:
            return Path(source.path).read_bytes()
        cell = self.dataset()[source.row][source.column]
        if isinstance(cell, dict):
            if cell.get("bytes") is not None:
                return bytes(cell["bytes"])
            if cell.get("path"):
                path = Path(cell["path"])
                return (path if path.is_absolute() else self.root / path).read_bytes()
        if isinstance(cell, str):
            path = Path(cell)
            return (path if path.is_absolute() else self.root / path).read_bytes()
        raise FileNotFoundError(f"{source.describe()}: cell holds no image bytes or path")


def _is_hf_dataset_dir(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (
        (root / "state.json").is_file() and (root / "dataset_info.json").is_file()
    )


def _open_hf_dataset(root: Path) -> Any:
    import datasets

    ds = datasets.load_from_disk(str(root))
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets([ds[name] for name in sorted(ds)])
    for column in ("image", "mask", "target"):
        if column in ds.column_names and isinstance(ds.features[column], datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def read_pool(
    path: str | Path,
    *,
    assign_tasks: tuple[str, ...] = (tasks.IMAGE_EXTEND,),
    seed: int = 0,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> Pool:
    """Read the pool at ``path`` (pool artifact, HF datasets folder or image folder).

    ``assign_tasks``: tasks given (by a seeded hash of the item id) to items whose source names
    none (plain folders and datasets without a ``task`` column). Items whose prompt is longer than
    ``max_prompt_chars`` characters are bad.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(
            f"--pool: {root} is not a directory (expected a pool artifact, a datasets folder or images)"
        )
    for t in assign_tasks:
        tasks.check_task(t, where="assign_tasks")
    checker = _ItemChecker(max_prompt_chars)
    if (root / "manifest.json").is_file():
        return _read_artifact_pool(root, checker)
    if _is_hf_dataset_dir(root):
        return _read_hf_pool(root, assign_tasks, seed, checker)
    return _read_folder_pool(root, assign_tasks, seed, checker)


def _assign(item_id: str, assign_tasks: tuple[str, ...], seed: int) -> str:
    if len(assign_tasks) == 1:
        return assign_tasks[0]
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return assign_tasks[int.from_bytes(digest[:4], "little") % len(assign_tasks)]


def _clean_text(value: Any) -> str | None:
    """Text of a cell, stripped (None when empty). Bytes are decoded as UTF-8; undecodable bytes are
    kept as surrogates, which :func:`invalid_utf8` finds and the checks report."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="surrogateescape")
    text = str(value).strip()
    return text or None


def invalid_utf8(text: Any) -> str:
    """``""`` for valid text; else what is wrong (text decoded with ``surrogateescape``)."""
    if not isinstance(text, str):
        return ""
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return f"not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x} at character {i})"
    return ""


def outside_folder(rel: str) -> bool:
    """Does the relative path ``rel`` leave the folder it is relative to (absolute, or ``..``)?"""
    norm = os.path.normpath(rel)
    return os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep)


class _ItemChecker:
    """Cheap per-row checks shared by the three readers: id, task, prompt."""

    def __init__(self, max_prompt_chars: int = MAX_PROMPT_CHARS) -> None:
        self.seen: set[str] = set()
        self.bad: list[BadItem] = []
        self.max_prompt_chars = max_prompt_chars

    def reject(self, item_id: str, origin: str, reason: str) -> None:
        self.bad.append(BadItem(item_id, origin, reason))

    def paths_inside(self, item_id: str, origin: str, paths: dict[str, str | None]) -> bool:
        """Every file a row names stays inside the pool folder (no absolute path, no ``..``)."""
        for field_name, rel in paths.items():
            if rel and outside_folder(rel):
                self.reject(
                    item_id,
                    origin,
                    f"{field_name}: {rel!r} points outside the pool folder (no '..' or absolute paths)",
                )
                return False
        return True

    def accept(self, item: PoolItem, origin: str) -> bool:
        if not ITEM_ID_RE.match(item.item_id):
            self.bad.append(BadItem(item.item_id, origin, "item_id: must match [A-Za-z0-9_-]+"))
            return False
        if item.item_id in self.seen:
            self.bad.append(BadItem(item.item_id, origin, "item_id: duplicate of an earlier item"))
            return False
        self.seen.add(item.item_id)
        if bad := invalid_utf8(item.prompt):
            self.bad.append(BadItem(item.item_id, origin, f"prompt: {bad}"))
            return False
        if item.prompt and len(item.prompt) > self.max_prompt_chars:
            reason = (
                f"prompt: {len(item.prompt)} characters, longer than max_prompt_chars {self.max_prompt_chars}"
            )
            self.bad.append(BadItem(item.item_id, origin, reason))
            return False
        if item.task not in tasks.TASKS:
            reason = f"task: unknown task {item.task!r} (expected one of {', '.join(tasks.TASKS)})"
            self.bad.append(BadItem(item.item_id, origin, reason))
            return False
        if item.task == tasks.IMAGE_FILL and not item.prompt:
            self.bad.append(BadItem(item.item_id, origin, "prompt: image_fill needs a non-empty prompt"))
            return False
        if item.task == tasks.OBJECT_REMOVAL:
            item.prompt = None  # removal uses the fixed prompt; a stray user prompt is dropped
        return True


def _read_artifact_pool(root: Path, checker: _ItemChecker) -> Pool:
    manifest = read_artifact(root, kind="pool", what="--pool")  # an artifact must be intact
    try:
        rows = read_table(root / "items.parquet", required=("item_id", "task", "image"), what="--pool items")
    except (FileNotFoundError, ValueError) as e:
        raise ArtifactError(str(e)) from e
    items = []
    for i, row in enumerate(rows):
        origin = f"items.parquet row {i}"
        files = {k: _clean_text(row.get(k)) for k in ("image", "mask", "target")}
        if not checker.paths_inside(str(row["item_id"]), origin, files):
            continue

        def src(rel: Any) -> Source | None:
            return Source(path=str(root / rel)) if rel else None

        item = PoolItem(
            item_id=str(row["item_id"]),
            task=str(row["task"]),
            image=Source(path=str(root / row["image"])),
            mask=src(row.get("mask")),
            prompt=_clean_text(row.get("prompt")),
            meta=row.get("meta") or "{}",
            target=src(row.get("target")),
        )
        if checker.accept(item, origin):
            items.append(item)
    return Pool("artifact", root, items, checker.bad, manifest)


def _read_hf_pool(root: Path, assign_tasks: tuple[str, ...], seed: int, checker: _ItemChecker) -> Pool:
    ds = _open_hf_dataset(root)
    if "image" not in ds.column_names:
        raise InputError(f"--pool: datasets folder {root} has no 'image' column (columns: {ds.column_names})")
    columns = set(ds.column_names)
    meta_columns = [
        c for c in ds.column_names if c not in {"image", "mask", "target", "prompt", "task", "item_id"}
    ]
    # Only the small text columns are materialised; image bytes stay in the arrow files.
    text = ds.select_columns([c for c in ("prompt", "task", "item_id") if c in columns] + meta_columns)
    has_mask = _present(ds, "mask")
    has_target = _present(ds, "target")
    items = []
    for i, row in enumerate(text):
        item_id = str(row.get("item_id") or f"row{i:07d}")
        task = _clean_text(row.get("task")) or _assign(item_id, assign_tasks, seed)
        meta = {c: row[c] for c in meta_columns if _jsonable(row[c])}
        item = PoolItem(
            item_id=item_id,
            task=task,
            image=Source(row=i, column="image"),
            mask=Source(row=i, column="mask") if has_mask[i] else None,
            prompt=_clean_text(row.get("prompt")),
            meta=json.dumps(meta, sort_keys=True),
            target=Source(row=i, column="target") if has_target[i] else None,
        )
        if checker.accept(item, f"dataset row {i}"):
            items.append(item)
    pool = Pool("hf_dataset", root, items, checker.bad)
    pool._dataset = ds
    return pool


def _present(ds: Any, column: str) -> np.ndarray:
    """Per row: does ``column`` hold an image (bytes or a path)? Computed on the arrow column, so
    image bytes are never copied into Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column not in ds.column_names:
        return np.zeros(len(ds), dtype=bool)
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    col = ds.data.column(column)
    if pa.types.is_struct(col.type):
        has_bytes = pc.is_valid(pc.struct_field(col, "bytes"))
        path = pc.struct_field(col, "path")
        has_path = pc.and_(pc.is_valid(path), pc.greater(pc.utf8_length(path), 0))
        present = pc.and_(pc.is_valid(col), pc.or_(has_bytes, has_path))
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        present = pc.and_(pc.is_valid(col), pc.greater(pc.utf8_length(col), 0))
    else:
        present = pc.is_valid(col)
    return np.asarray(pc.fill_null(present, False).to_numpy(zero_copy_only=False), dtype=bool)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def _find_sidecar(root: Path) -> Path | None:
    found = [root / n for n in SIDECAR_NAMES if (root / n).is_file()]
    if len(found) > 1:
        raise InputError(
            f"--pool: {root} has several sidecars ({', '.join(p.name for p in found)}); keep one"
        )
    return found[0] if found else None


def _sidecar_rows(path: Path) -> list[tuple[str, dict[str, Any] | None, str]]:
    """(origin, row or None, error) per sidecar line/row. The file is decoded as UTF-8 with
    undecodable bytes kept as surrogates, so one bad line is one bad row, not a failed read."""
    out: list[tuple[str, dict[str, Any] | None, str]] = []
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            origin = f"{path.name} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                out.append((origin, None, f"sidecar: invalid JSON ({e.msg})"))
                continue
            if not isinstance(row, dict):
                out.append((origin, None, "sidecar: each line must be a JSON object"))
                continue
            out.append((origin, row, ""))
    else:
        for n, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            out.append((f"{path.name} line {n}", {k: v for k, v in row.items() if k is not None}, ""))
    return out


def _row_invalid_utf8(row: dict[str, Any]) -> str:
    """``"<field>: not valid UTF-8 ..."`` for the first field of a sidecar row holding undecodable
    bytes (in its name or value), else ``""``."""
    for key, value in row.items():
        bad = invalid_utf8(key) or invalid_utf8(value)
        if bad:
            name = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return f"{name}: {bad}"
    return ""


def _id_from_path(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def _read_folder_pool(root: Path, assign_tasks: tuple[str, ...], seed: int, checker: _ItemChecker) -> Pool:
    sidecar = _find_sidecar(root)
    items: list[PoolItem] = []
    listed: set[str] = set()
    used_as_aux: set[str] = set()
    derived_ids: set[str] = set()

    def derive_id(rel: str) -> str:
        base = _id_from_path(rel)
        item_id, n = base, 2
        while item_id in derived_ids:
            item_id, n = f"{base}-{n}", n + 1
        derived_ids.add(item_id)
        return item_id

    if sidecar is not None:
        rows = _sidecar_rows(sidecar)
        for origin, row, error in rows:
            if row is None:
                checker.bad.append(BadItem("", origin, error))
                continue
            for key in ("mask", "target"):
                if row.get(key) and isinstance(row[key], str):
                    used_as_aux.add(str(Path(str(row[key]))))
        for origin, row, _ in rows:
            if row is None:
                continue
            rel = _clean_text(row.get("file_name") or row.get("image"))
            if not rel:
                checker.bad.append(
                    BadItem(str(row.get("item_id") or ""), origin, "sidecar: no 'file_name' or 'image'")
                )
                continue
            listed.add(str(Path(rel)))
            item_id = _clean_text(row.get("item_id")) or derive_id(rel)
            if bad := _row_invalid_utf8(row):
                checker.reject(item_id if ITEM_ID_RE.match(item_id) else "", origin, bad)
                continue
            files = {"file_name" if row.get("file_name") else "image": rel}
            files.update(mask=_clean_text(row.get("mask")), target=_clean_text(row.get("target")))
            if not checker.paths_inside(item_id, origin, files):
                continue
            known = {"file_name", "image", "mask", "prompt", "task", "item_id", "target", "meta"}
            meta = {k: v for k, v in row.items() if k not in known and v not in (None, "")}
            if isinstance(row.get("meta"), dict):
                meta.update(row["meta"])
            mask_rel = _clean_text(row.get("mask"))
            target_rel = _clean_text(row.get("target"))
            item = PoolItem(
                item_id=item_id,
                task=_clean_text(row.get("task")) or _assign(item_id, assign_tasks, seed),
                image=Source(path=str(root / rel)),
                mask=Source(path=str(root / mask_rel)) if mask_rel else None,
                prompt=_clean_text(row.get("prompt")),
                meta=json.dumps(meta, sort_keys=True, default=str),
                target=Source(path=str(root / target_rel)) if target_rel else None,
            )
            if checker.accept(item, origin):
                items.append(item)
    # Images the sidecar does not mention (and that are not masks/targets) are items too.
    n_unlisted = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        rel = str(p.relative_to(root))
        if (
            rel in listed
            or rel in used_as_aux
            or any(part.startswith(".") for part in p.relative_to(root).parts)
        ):
            continue
        item_id = derive_id(rel)
        item = PoolItem(item_id=item_id, task=_assign(item_id, assign_tasks, seed), image=Source(path=str(p)))
        if checker.accept(item, rel):
            items.append(item)
            n_unlisted += 1
    if sidecar is not None and n_unlisted:
        log.info(
            "%d images in %s are not in %s; tasks assigned from %s",
            n_unlisted,
            root,
            sidecar.name,
            assign_tasks,
        )
    if not items and not checker.bad:
        raise InputError(
            f"--pool: {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and no sidecar rows"
        )
    return Pool("folder", root, items, checker.bad)


# ---- pixel checks (run in DataLoader workers) -------------------------------------------------


class ItemProblem(Exception):
    """A pixel-level problem with an item; the message is the report's reason."""


def _alpha_over(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """``rgb * a + background * (1 - a)`` per pixel (a = alpha / 255), rounded to uint8."""
    rgb = rgba[..., :3].astype(np.float64)
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    bg = np.asarray(background, dtype=np.float64)
    return np.rint(rgb * a + bg * (1.0 - a)).astype(np.uint8)


def to_rgb(
    im: Image.Image, background: tuple[int, int, int] = DEFAULT_BACKGROUND, *, what: str = "image"
) -> tuple[Image.Image, str]:
    """``im`` as 8-bit RGB and the rule that converted it (``""`` when it was RGB already).

    The rules (recorded per item, so a reader knows what the annotators and the generator saw):

    - grey (``L``, ``1``): replicated into R, G and B;
    - palette (``P``): the palette's colours (transparent entries as alpha, below);
    - alpha (``RGBA``, ``LA``, ``PA``, premultiplied modes, or a ``transparency`` key): composited
      over ``background``: ``round(c * a + bg * (1 - a))`` with ``a = alpha / 255``;
    - ``CMYK``: ``round((255 - C) * (255 - K) / 255)`` per channel (no colour profile applied);
    - 16-bit grey (``I;16*``, or ``I`` with values in 0..65535): ``round(v / 257)``, then as grey;
    - other 8-bit modes (``YCbCr``, ``LAB``, ``HSV``): Pillow's conversion.

    32-bit float (``F``) and ``I`` images with values outside 0..65535 have no defined 8-bit
    scale: :class:`ItemProblem`.
    """
    mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if mode == "RGB" and not has_alpha:
        return im, ""
    bg = ",".join(str(c) for c in background)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return Image.fromarray(_alpha_over(rgba, background), "RGB"), f"{mode} with alpha -> RGB over {bg}"
    if mode in ("L", "1"):
        return im.convert("RGB"), f"{mode} grey -> RGB (replicated)"
    if mode == "P":
        return im.convert("RGB"), "P palette -> RGB (palette colours)"
    if mode == "CMYK":
        cmyk = np.asarray(im, dtype=np.float64)
        rgb = np.rint((255.0 - cmyk[..., :3]) * (255.0 - cmyk[..., 3:4]) / 255.0).astype(np.uint8)
        return Image.fromarray(rgb, "RGB"), "CMYK -> RGB as (255 - C) * (255 - K) / 255, no colour profile"
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ItemProblem(
                f"{what}: mode {mode} holds values {arr.min()}..{arr.max()} outside 0..65535; expected "
                "8- or 16-bit samples"
            )
        grey = np.rint(arr / 257.0).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB"), (
            f"{mode} 16-bit grey -> 8-bit as round(v / 257), replicated"
        )
    if mode == "F":
        raise ItemProblem(f"{what}: mode F (32-bit float) has no defined 8-bit scale; expected 8- or 16-bit")
    return im.convert("RGB"), f"{mode} -> RGB (Pillow)"


def decode_image(
    data: bytes, what: str, min_size: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND
) -> tuple[Image.Image, str]:
    """Decode and fully load an image, enforcing the limits; returns it as RGB with the conversion
    rule (:func:`to_rgb`; ``""`` for an RGB file).

    Bad (:class:`ItemProblem`): bytes that do not decode (corrupt, truncated, empty), images that
    declare more pixels than Pillow's decompression-bomb limit, images with a side below
    ``min_size``, and modes without a defined 8-bit scale. Valid images of any other mode are
    converted, never refused.
    """
    if not data:
        raise ItemProblem(f"{what}: empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        # Checked before decoding: a small file may declare a huge canvas (a decompression bomb).
        if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
            raise ItemProblem(
                f"{what}: too large to decode safely (declares {w}x{h} = {w * h} pixels, above the "
                f"decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels)"
            )
        if min(w, h) < min_size:
            raise ItemProblem(f"{what}: {w}x{h} is smaller than the minimum side {min_size}px")
        im.load()  # forces the full decode, so truncated files fail here and not later
    except Image.DecompressionBombError as e:
        raise ItemProblem(f"{what}: too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zlib.error) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt or not an image"
        raise ItemProblem(f"{what}: {reason} ({type(e).__name__}: {e})") from e
    return to_rgb(im, background, what=what)


def decode_mask(data: bytes, size: tuple[int, int], threshold: int) -> tuple[np.ndarray, bool]:
    """Decode a mask, check its size against the image's; returns (bool HxW, was_thresholded).

    Rule for non-binary masks (anti-aliased edges, JPEG masks): grey level >= ``threshold`` marks
    the region to generate; the item is flagged so the report counts it.
    """
    if not data:
        raise ItemProblem("mask: empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
        if im.size != size:  # before decoding: a wrong size is refused without reading the pixels
            raise ItemProblem(
                f"mask: size {im.size[0]}x{im.size[1]} differs from the image's {size[0]}x{size[1]}"
            )
        im.load()
    except Image.DecompressionBombError as e:
        raise ItemProblem(f"mask: too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zlib.error) as e:
        raise ItemProblem(f"mask: corrupt or truncated ({type(e).__name__}: {e})") from e
    if im.mode in ("I;16", "I", "F", "CMYK"):
        raise ItemProblem(f"mask: mode {im.mode}; expected 8-bit L (or 1)")
    arr = np.asarray(im.convert("L"), dtype=np.uint8)
    values = np.unique(arr)
    thresholded = not set(values.tolist()) <= {0, 255}
    mask = arr >= threshold
    if not mask.any():
        raise ItemProblem(f"mask: no pixel >= {threshold} (nothing to generate)")
    return mask, thresholded
