"""What every generator sampler shares: candidate specs, item conditions, batching, paste-back.

A *candidate spec* fixes everything that makes one candidate: prompt, negative prompt, configured
inference steps, true-CFG scale, initial noise strength, seed and (flux) distilled guidance. A
sampler turns a list of specs (over any number of items) into images; candidates that share a
resolution and an executed step count run as one batch, and every candidate draws its noise from
its own ``torch.Generator`` seeded with its seed, so a candidate's image does not depend on which
other candidates share its batch (up to float rounding of batched kernels).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from onereward.errors import InputError


@dataclass(frozen=True)
class CandidateSpec:
    """The sampled parameters of one candidate (the columns of ``candidates.parquet``)."""

    item_id: str
    index: int
    prompt: str
    negative_prompt: str  # "" for none
    steps: int  # configured inference steps (the schedule's length at strength 1)
    cfg_scale: float  # true classifier-free guidance scale; 1 = no negative pass
    strength: float  # initial noise strength in (0, 1]; 1 = start from pure noise
    seed: int
    guidance: float = 0.0  # flux distilled-guidance input; unused by sd_inpaint

    @property
    def candidate_id(self) -> str:
        return f"{self.item_id}-c{self.index}"


@dataclass
class ItemCondition:
    """Source image (HxWx3 uint8) and mask (HxW bool, True = generate) of one item."""

    item_id: str
    image: np.ndarray
    mask: np.ndarray


def check_condition(item: ItemCondition, *, where: str = "item") -> None:
    """Raise :class:`InputError` for masks the generators cannot use (documented behaviour).

    - size mismatch between image and mask: error;
    - all-zero mask (nothing to generate): error;
    - all-one mask: allowed; the whole image is generated from the prompt (the source only
      enters through the noised start when strength < 1).
    """
    img, mask = np.asarray(item.image), np.asarray(item.mask)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(
            f"{where} {item.item_id}: image must be HxWx3 uint8 RGB, got {img.shape} {img.dtype}"
        )
    if mask.shape != img.shape[:2]:
        raise InputError(
            f"{where} {item.item_id}: mask size {mask.shape[1]}x{mask.shape[0]} does not match the image size "
            f"{img.shape[1]}x{img.shape[0]} (field 'mask'; expected the same width and height)"
        )
    if not mask.any():
        raise InputError(
            f"{where} {item.item_id}: mask is all zero (field 'mask'; expected a non-empty region)"
        )


# Aspect-ratio buckets (width / height) that items of any size are generated at when a resolution
# is given: a mixed-size pool then batches by a handful of sizes instead of one per photo.
ASPECT_BUCKETS: tuple[float, ...] = (1 / 2, 9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)


def fit_size(size_hw: tuple[int, int], multiple: int, resolution: int | None = None) -> tuple[int, int]:
    """The size an item of ``size_hw`` is generated at.

    Without ``resolution``: each side down to a multiple of ``multiple``. With it (the profile's
    ``image_size``): the aspect-ratio bucket nearest the item's (log scale), scaled to the area
    ``resolution**2`` and snapped to the model's grid - so a 12 MP photo reaches FLUX at about
    1024 x 1024 pixels' worth, and a 64 px square at 64 x 64 stays as it is.
    """
    h, w = size_hw
    if resolution is None:
        return max(multiple, h - h % multiple), max(multiple, w - w % multiple)
    ratio = min(ASPECT_BUCKETS, key=lambda r: abs(math.log(w / h) - math.log(r)))
    bh = math.sqrt(resolution * resolution / ratio)
    bw = bh * ratio

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(bh), snap(bw)


def fit_to_multiple(item: ItemCondition, multiple: int, resolution: int | None = None) -> ItemCondition:
    """Resize image and mask to :func:`fit_size` (no-op when they fit).

    The generators need sizes divisible by the VAE factor times the packing factor (and, with a
    resolution, one of a few bucket sizes); results are resized back to the source size before
    paste-back (see :func:`restore_size`), so pixels outside the mask stay exact.
    """
    h, w = item.mask.shape
    nh, nw = fit_size((h, w), multiple, resolution)
    if (nh, nw) == (h, w):
        return item
    image = np.asarray(Image.fromarray(item.image).resize((nw, nh), Image.BICUBIC))
    mask = (
        np.asarray(Image.fromarray(item.mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)) >= 128
    )
    if not mask.any():  # a sliver mask vanished in the resize: keep the nearest pixel block
        mask = np.asarray(Image.fromarray(item.mask.astype(np.uint8) * 255).resize((nw, nh), Image.BOX)) > 0
    return ItemCondition(item.item_id, image, mask)


def restore_size(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a generated image back to ``size_hw`` (no-op when it already has that size)."""
    if image.shape[:2] == tuple(size_hw):
        return image
    return np.asarray(Image.fromarray(image).resize((size_hw[1], size_hw[0]), Image.BICUBIC))


def feather_alpha(mask: np.ndarray, feather: int) -> np.ndarray:
    """Paste-back weight of the generated image: 0 outside the mask, ramping to 1 inside.

    ``feather = 0`` is a hard paste (the mask itself). With ``feather = r`` the weight grows
    linearly from ``1/(r+1)`` on the mask's edge pixels to 1 at ``r`` pixels inside, so pixels
    outside the mask always keep the source exactly.
    """
    mask = np.asarray(mask, dtype=bool)
    if feather <= 0:
        return mask.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    # The canvas border counts as inside (outpainting regions touch it; no seam there).
    padded = np.pad(mask, 1, constant_values=True)
    dist = distance_transform_edt(padded)[1:-1, 1:-1]
    return np.where(mask, np.clip(dist / (feather + 1), 0.0, 1.0), 0.0).astype(np.float32)


def paste_back(source: np.ndarray, generated: np.ndarray, mask: np.ndarray, feather: int = 0) -> np.ndarray:
    """Composite: generated inside the mask (feathered), source outside (exactly)."""
    alpha = feather_alpha(mask, feather)[..., None]
    out = alpha * generated.astype(np.float32) + (1.0 - alpha) * source.astype(np.float32)
    out = np.rint(out).astype(np.uint8)
    out[~np.asarray(mask, dtype=bool)] = source[~np.asarray(mask, dtype=bool)]
    return out


def to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1] (B,3,H,W) -> B x H x W x 3 uint8, rounded like diffusers' postprocess."""
    x = (decoded.float() / 2 + 0.5).clamp(0, 1)
    x = x.permute(0, 2, 3, 1).cpu().numpy()
    return (x * 255).round().astype(np.uint8)


def pixel_tensors(
    item: ItemCondition, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image in [-1, 1] (1,3,H,W) and binary mask (1,1,H,W), as diffusers' processors make them."""
    x = torch.from_numpy(item.image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = 2.0 * x - 1.0
    m = torch.from_numpy(item.mask.astype(np.float32))[None, None]
    return x.to(device=device, dtype=dtype), m.to(device=device, dtype=dtype)


def generator_for(seed: int) -> torch.Generator:
    """The per-candidate CPU generator (device-independent noise, like diffusers' examples)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


class TextCache:
    """Text embeddings per distinct string, computed once in batches and kept (LRU-bounded)."""

    def __init__(self, encode: Callable[[list[str]], list[Any]], max_entries: int = 1024) -> None:
        self._encode = encode
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self.max_entries = max_entries
        self.n_encoded = 0  # strings actually run through the text encoders (tests, metrics)

    def get(self, texts: Iterable[str]) -> dict[str, Any]:
        texts = list(dict.fromkeys(texts))
        missing = [t for t in texts if t not in self._entries]
        if missing:
            for text, emb in zip(missing, self._encode(missing), strict=True):
                self._entries[text] = emb
            self.n_encoded += len(missing)
        out = {}
        for t in texts:
            self._entries.move_to_end(t)
            out[t] = self._entries[t]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return out


class ItemCache:
    """Per-item values (fitted conditions, VAE encodings) kept across batches of one run.

    Keyed by item id, but an entry only counts for the very ItemCondition object it was made
    from, so a new condition under an old id (a training loop, a test) is never served stale
    values. LRU-bounded (an entry can hold GPU tensors of a 1024 px item, a few MB; the stage's
    batch plan keeps at most ~45 items open at once on tiny and full parameters, measured over
    1024 items) and :meth:`release` drops an item once all its candidates are done.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.max_entries = max_entries
        self.n_computed = 0  # values actually computed (tests: VAE encodings once per item)

    def get(self, key_item: Any, item_id: str, make: Callable[[], Any]) -> Any:
        hit = self._entries.get(item_id)
        if hit is not None and hit[0] is key_item:
            self._entries.move_to_end(item_id)
            return hit[1]
        value = make()
        self.n_computed += 1
        self._entries[item_id] = (key_item, value)
        self._entries.move_to_end(item_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def release(self, item_id: str) -> None:
        self._entries.pop(item_id, None)


def batches(keys: list[Any], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal key (first-seen order), each group split into chunks of ``batch_size``."""
    groups: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out: list[list[int]] = []
    for idx in groups.values():
        for s in range(0, len(idx), batch_size):
            out.append(idx[s : s + batch_size])
    return out


class Sampler(Protocol):
    """A generator family's sampler (see flux_sampler / sd_sampler)."""

    family: str
    batch_size: int

    def executed_steps(self, steps: int, strength: float) -> int: ...

    def batch_key(self, size_hw: tuple[int, int], spec: CandidateSpec) -> tuple[Any, ...]:
        """Candidates with equal keys can share one batch (generated size, executed steps)."""
        ...

    def start_sigma(self, size_hw: tuple[int, int], spec: CandidateSpec) -> float:
        """The noise level the candidate starts from (1.0 = pure noise)."""
        ...

    def release(self, item_id: str) -> None:
        """Forget the cached per-item values of ``item_id`` (all its candidates are done)."""
        ...

    def sample(self, items: dict[str, ItemCondition], specs: list[CandidateSpec]) -> list[np.ndarray]: ...
