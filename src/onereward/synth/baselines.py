"""Non-learning baselines and normalised oracle scores for the synthetic world.

Raw oracle scores (:mod:`onereward.synth.oracle`) are not comparable across items: a flat
background makes consistency easy, a text prompt makes text alignment hard, and a fill of uniform
noise already scores above 0 on some dimensions. Scores are therefore normalised per
(item, dimension) between two anchors of that very item:

- the **floor** ``f``: the mean oracle score of :func:`noise_fill` results (uniform noise inside the
  mask, source outside) over ``FLOOR_DRAWS`` seeded draws;
- the **target** ``t``: the oracle score of the item's ideal target image;

``normalised = (r - f) / max(t - f, MIN_SPAN)`` for a result scoring ``r``. 0 is as good as noise,
1 as good as the ideal target; a result can go below 0 (worse than noise, e.g. leaving the source
unchanged when the prompt asks for a red circle: no red pixel at all, while noise has a few) and
above 1 (the oracle likes it better than the target). ``MIN_SPAN`` keeps items whose target barely
beats noise on a dimension (rare) from dividing by almost zero.

Non-learning results to compare generators with:

- :func:`nearest_pixel_fill`: every masked pixel takes the colour of its nearest unmasked pixel
  (Euclidean distance; ties broken by scipy's distance transform);
- :func:`source_unchanged`: the source as it is (for image_extend the grey canvas, for
  object_removal the object left in place);
- :func:`noise_fill`: uniform noise in [0, 255] per channel inside the mask (the floor).

Every result keeps the source's pixels outside the mask exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from onereward import tasks
from onereward.errors import InputError
from onereward.synth import oracle

FLOOR_DRAWS = 3  # noise fills averaged for the floor (their spread is ~0.01-0.03 per dimension)
MIN_SPAN = 0.05  # smallest denominator (target - floor) of a normalised score


def _check(source: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    source = np.asarray(source)
    mask = np.asarray(mask)
    if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
        raise InputError(f"source: expected an HxWx3 uint8 RGB array, got {source.shape} {source.dtype}")
    if mask.shape != source.shape[:2]:
        raise InputError(f"mask: shape {mask.shape} differs from the source size {source.shape[:2]}")
    return source, mask.astype(bool)


def nearest_pixel_fill(source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inpaint by copying, into every masked pixel, the nearest unmasked pixel of ``source``.

    ``source``: HxWx3 uint8; ``mask``: HxW bool (True = to fill). An all-True mask has no known
    pixel to copy from: the source is returned unchanged.
    """
    from scipy.ndimage import distance_transform_edt

    source, mask = _check(source, mask)
    if mask.all() or not mask.any():
        return source.copy()
    # The EDT of the mask gives, per pixel, the indices of the nearest False (known) pixel.
    _, (iy, ix) = distance_transform_edt(mask, return_indices=True)
    return source[iy, ix]


def source_unchanged(source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The "do nothing" result: a copy of ``source`` (the mask is only validated)."""
    source, _ = _check(source, mask)
    return source.copy()


def noise_fill(source: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise (integers 0..255 per channel, ``numpy.random.default_rng(seed)``) inside the
    mask, ``source`` outside."""
    source, mask = _check(source, mask)
    rng = np.random.default_rng(seed)
    out = source.copy()
    out[mask] = rng.integers(0, 256, size=(int(mask.sum()), 3), dtype=np.uint8)
    return out


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "nearest_pixel": nearest_pixel_fill,
    "source_unchanged": source_unchanged,
}


@dataclass(frozen=True)
class Anchors:
    """Per-dimension floor and target scores of one item (the normalisation's two anchors)."""

    floor: dict[str, float]
    target: dict[str, float]

    def normalise(self, raw: Mapping[str, float]) -> dict[str, float]:
        """``(r - floor) / max(target - floor, MIN_SPAN)`` for every dimension of ``raw``."""
        out = {}
        for dim, r in raw.items():
            if dim not in self.floor:
                raise InputError(f"raw: dimension {dim!r} has no anchors (have {sorted(self.floor)})")
            f, t = self.floor[dim], self.target[dim]
            out[dim] = (float(r) - f) / max(t - f, MIN_SPAN)
        return out


def floor_seed(item_id: str, draw: int) -> int:
    """Seed of the ``draw``-th noise fill of an item (stable across runs and processes)."""
    import zlib

    return (zlib.crc32(item_id.encode()) * 1000 + draw) & 0x7FFFFFFF


def anchors(
    task: str,
    source: np.ndarray,
    mask: np.ndarray,
    prompt: str | None,
    target: np.ndarray,
    *,
    item_id: str = "",
    draws: int = FLOOR_DRAWS,
) -> Anchors:
    """Floor (mean oracle score of ``draws`` seeded noise fills) and target score of one item.

    The noise seeds depend on ``item_id`` only (:func:`floor_seed`), so an item's floor is the
    same whoever computes it.
    """
    if draws < 1:
        raise InputError(f"draws: must be >= 1, got {draws}")
    tasks.check_task(task)
    target_scores = oracle.score_all(task, source, mask, prompt, target)
    sums = dict.fromkeys(target_scores, 0.0)
    for k in range(draws):
        noisy = noise_fill(source, mask, floor_seed(item_id, k))
        for dim, v in oracle.score_all(task, source, mask, prompt, noisy).items():
            sums[dim] += v
    return Anchors(floor={d: s / draws for d, s in sums.items()}, target=target_scores)


def normalised_scores(
    task: str,
    source: np.ndarray,
    mask: np.ndarray,
    prompt: str | None,
    result: np.ndarray,
    target: np.ndarray,
    *,
    item_id: str = "",
    item_anchors: Anchors | None = None,
) -> dict[str, dict[str, float]]:
    """Raw and normalised oracle scores of ``result`` per dimension of the item's task.

    Returns ``{dimension: {"raw": r, "floor": f, "target": t, "normalised": (r - f) / max(t - f,
    MIN_SPAN)}}``. Pass ``item_anchors`` (from :func:`anchors`) to score many results of one item
    without recomputing the floor.
    """
    a = item_anchors or anchors(task, source, mask, prompt, target, item_id=item_id)
    raw = oracle.score_all(task, source, mask, prompt, result)
    norm = a.normalise(raw)
    return {
        dim: {"raw": raw[dim], "floor": a.floor[dim], "target": a.target[dim], "normalised": norm[dim]}
        for dim in raw
    }
