"""CLIP embeddings of a pool: one decode per image (checks + preprocessing in DataLoader workers),
batched forward passes, and a content-addressed cache so that a rerun embeds only new images.

Cache layout: ``<cache_dir>/embeddings/<model fingerprint>/shard-*.npz``, each shard holding
``keys`` (sha256 of the image file bytes, hex) and ``vectors`` (float32, L2-normalised). Shards are
written to a temp name and renamed, and a new shard is written every ``shard_size`` new
embeddings, so an interrupted run keeps what it embedded and never leaves a half-written shard.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from onereward.log import Throughput, get_logger
from onereward.models import clip
from onereward.select.pool import (
    DEFAULT_BACKGROUND,
    BadItem,
    ItemProblem,
    Pool,
    PoolItem,
    decode_image,
    decode_mask,
)

log = get_logger("select.embed")


class EmbeddingCache:
    """Embeddings keyed by image content hash, for one model (its fingerprint names the folder).

    ``cache_dir=None`` keeps them in memory only (nothing read or written on disk).
    """

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None, model_key: str, shard_size: int = 50_000
    ) -> None:
        self.dir = Path(cache_dir) / "embeddings" / model_key if cache_dir is not None else None
        self.shard_size = shard_size
        self._index: dict[str, tuple[int, int]] = {}  # key -> (shard number, row)
        self._shards: list[np.ndarray] = []
        self._pending_keys: list[str] = []
        self._pending: list[np.ndarray] = []
        self.dim: int | None = None

    def load(self) -> EmbeddingCache:
        """Read every shard; unreadable shards are logged and ignored (they are only a cache)."""
        if self.dir is None or not self.dir.is_dir():
            return self
        for path in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys = data["keys"].astype(str)
                    vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
            except (OSError, ValueError, KeyError) as e:
                log.warning("embedding cache: ignoring unreadable shard %s (%s)", path, e)
                continue
            if (
                vectors.ndim != 2
                or len(keys) != len(vectors)
                or (self.dim is not None and vectors.shape[1] != self.dim)
            ):
                log.warning("embedding cache: ignoring shard %s with shape %s", path, vectors.shape)
                continue
            self.dim = vectors.shape[1]
            n = len(self._shards)
            self._shards.append(vectors)
            for row, key in enumerate(keys):
                self._index.setdefault(str(key), (n, row))
        return self

    def __len__(self) -> int:
        return len(self._index) + len(self._pending_keys)

    def keys(self) -> frozenset[str]:
        return frozenset(self._index)

    def get(self, key: str) -> np.ndarray | None:
        loc = self._index.get(key)
        return None if loc is None else self._shards[loc[0]][loc[1]]

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        """Queue new embeddings; a shard is written once ``shard_size`` are queued."""
        self._pending_keys.extend(keys)
        self._pending.append(np.asarray(vectors, dtype=np.float32))
        if len(self._pending_keys) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write queued embeddings as a new shard (temp file + rename)."""
        if not self._pending_keys:
            return
        vectors = np.concatenate(self._pending, axis=0)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            keys = np.array(self._pending_keys, dtype="S64")
            name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.npz"
            tmp = self.dir / f".{name}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, vectors=vectors)
            os.replace(tmp, self.dir / name)
        n = len(self._shards)
        self._shards.append(vectors)
        for row, key in enumerate(self._pending_keys):
            self._index.setdefault(key, (n, row))
        self._pending_keys, self._pending = [], []


@dataclass
class Checked:
    """What a worker learned about one item."""

    index: int
    ok: bool
    reason: str = ""
    sha: str = ""
    size: tuple[int, int] = (0, 0)
    mask_thresholded: bool = False
    conversion: str = ""  # the rule that made the image RGB ("" = it was RGB)
    pixels: torch.Tensor | None = None  # None when the item is bad or already cached


class PoolImages(Dataset):
    """Decodes and checks each item once; preprocesses it unless its embedding is cached."""

    def __init__(
        self,
        pool: Pool,
        preprocess: Callable[[Any], torch.Tensor],
        cached: frozenset[str],
        *,
        min_size: int,
        mask_threshold: int,
        background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    ) -> None:
        self.pool = pool
        self.preprocess = preprocess
        self.cached = cached
        self.min_size = min_size
        self.mask_threshold = mask_threshold
        self.background = background

    def __len__(self) -> int:
        return len(self.pool.items)

    def __getitem__(self, index: int) -> Checked:
        item: PoolItem = self.pool.items[index]
        try:
            try:
                data = self.pool.read_bytes(item.image)
            except OSError as e:
                raise ItemProblem(f"image: cannot read {item.image.describe()} ({type(e).__name__})") from e
            image, conversion = decode_image(data, "image", self.min_size, self.background)
            sha = image_key(data, conversion, self.background)
            thresholded = False
            if item.mask is not None:
                try:
                    mask_data = self.pool.read_bytes(item.mask)
                except OSError as e:
                    raise ItemProblem(f"mask: cannot read {item.mask.describe()} ({type(e).__name__})") from e
                _, thresholded = decode_mask(mask_data, image.size, self.mask_threshold)
        except ItemProblem as e:
            return Checked(index, False, reason=str(e))
        pixels = None if sha in self.cached else self.preprocess(image)
        return Checked(
            index,
            True,
            sha=sha,
            size=image.size,
            mask_thresholded=thresholded,
            conversion=conversion,
            pixels=pixels,
        )


def image_key(data: bytes, conversion: str, background: tuple[int, int, int]) -> str:
    """Cache key of an image: sha256 of its file bytes; an image composited over a background also
    hashes the background (another colour gives other pixels, hence another embedding)."""
    h = hashlib.sha256(data)
    if "alpha" in conversion:
        h.update(b"\0alpha-background:" + bytes(background))
    return h.hexdigest()


def _collate(batch: list[Checked]) -> list[Checked]:
    return batch


@dataclass
class EmbedResult:
    """Embeddings of the good items (row i belongs to ``items[i]``) and what was skipped."""

    items: list[PoolItem]
    embeddings: np.ndarray
    shas: list[str]
    sizes: list[tuple[int, int]]
    mask_thresholded: list[bool]
    conversions: list[str] = field(default_factory=list)  # per item: the RGB conversion rule or ""
    bad: list[BadItem] = field(default_factory=list)
    n_cache_hits: int = 0
    n_embedded: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0


def embed_pool(
    pool: Pool,
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    cache: EmbeddingCache,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    min_size: int = 32,
    mask_threshold: int = 128,
    progress: bool = True,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> EmbedResult:
    """Check and embed every pool item; cached embeddings are reused, new ones are cached.

    ``images_per_second`` counts every item decoded and checked (embedded or found in the cache)
    over the wall time of this pass, decoding included.
    """
    dataset = PoolImages(
        pool,
        preprocess,
        cache.keys(),
        min_size=min_size,
        mask_threshold=mask_threshold,
        background=background,
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        shuffle=False,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    side = clip.image_size(model)
    dim = clip.encode_images(model, torch.zeros(1, 3, side, side)).shape[1]
    if cache.dim is not None and cache.dim != dim:
        raise RuntimeError(
            f"embedding cache {cache.dir}: holds {cache.dim}-d vectors but the model gives {dim}-d"
        )
    good: list[int] = []
    shas: list[str] = []
    sizes: list[tuple[int, int]] = []
    flags: list[bool] = []
    conversions: list[str] = []
    # Filled in pool order; rows past the last good item stay unused (bad items take no row).
    emb = np.empty((len(dataset), dim), dtype=np.float32)
    bad: list[BadItem] = []
    hits = embedded = 0
    with Throughput("images") as tp:
        bar = tqdm(total=len(dataset), desc="embed", unit="img", disable=not progress, mininterval=2.0)
        for batch in loader:
            todo = [c for c in batch if c.ok and c.pixels is not None]
            fresh: dict[str, np.ndarray] = {}
            if todo:
                out = clip.encode_images(model, torch.stack([c.pixels for c in todo]))  # type: ignore[misc]
                # The same image twice in one batch is embedded twice but cached once.
                new_keys, new_rows = [], []
                for c, v in zip(todo, out, strict=True):
                    if c.sha not in fresh:
                        fresh[c.sha] = v
                        new_keys.append(c.sha)
                        new_rows.append(v)
                cache.put(new_keys, np.stack(new_rows))
                embedded += len(todo)
            for c in batch:
                item = pool.items[c.index]
                if not c.ok:
                    bad.append(BadItem(item.item_id, item.image.describe(), c.reason))
                    continue
                if c.pixels is None:
                    vec = cache.get(c.sha)
                    if vec is None:  # cached when the loader started, so always present
                        raise RuntimeError(f"embedding cache lost key {c.sha}")
                    hits += 1
                else:
                    vec = fresh[c.sha]
                emb[len(good)] = vec
                good.append(c.index)
                shas.append(c.sha)
                sizes.append(c.size)
                flags.append(c.mask_thresholded)
                conversions.append(c.conversion)
            tp.add(len(batch))
            bar.update(len(batch))
            bar.set_postfix(img_s=f"{tp.rate:.1f}", cached=hits)
        bar.close()
    cache.flush()
    log.info("embedded %s: %d new, %d from cache, %d bad", tp, embedded, hits, len(bad))
    return EmbedResult(
        items=[pool.items[i] for i in good],
        embeddings=emb[: len(good)],
        shas=shas,
        sizes=sizes,
        mask_thresholded=flags,
        conversions=conversions,
        bad=bad,
        n_cache_hits=hits,
        n_embedded=embedded,
        seconds=tp.elapsed,
        images_per_second=tp.rate,
    )
