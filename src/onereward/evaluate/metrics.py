"""Automatic metrics of one result: background preservation, the seam, CLIP score, removal success.

- **Background preservation** (:func:`background`), outside the mask, as BrushBench computes it
  (BrushNet's ``evaluate_brushnet.py``): pixels in [0, 1], both images multiplied by the
  unmasked region ``U``, ``MSE = sum of squared differences over U's pixels and the 3 channels /
  |U|`` (so a per-channel mean times 3, as there), ``PSNR = 20 log10(1 / sqrt(MSE))``.
  BrushBench returns 1000 dB below MSE 1e-10; here identical pixels give ``inf`` (a pure
  paste-back), and aggregates cap each item at :data:`PSNR_CAP` dB so that means stay finite.
  SSIM (BrushBench has none) is scikit-image's ``structural_similarity`` map (7x7 window, data
  range 255, per channel) of the two images multiplied by ``U``, averaged over ``U``. Measured on the final result
  (after paste-back: exact by construction) and on the model's raw output before paste-back
  (what BrushBench measures without ``--blended``: how much the model itself alters the
  background).
- **Seam** (:func:`seam`): how much sharper the mask boundary is than the background around it:
  the mean absolute RGB difference (0-255 levels, averaged over channels) over 4-neighbour pixel
  pairs straddling the boundary, minus the same over pairs lying both outside the mask within
  ``b = max(2, round(min(H, W) / 32))`` pixels of it. 0: the boundary is no sharper than the
  texture next to it; lower is better.
- **CLIP score** (:func:`clip_scores`): ``100 * max(cos(image, prompt), 0)`` (torchmetrics'
  CLIPScore) with the profile's CLIP, for items with a user prompt.
- **Removal success** (:func:`removal_success`): the synthetic world's oracle says whether the
  object is gone (``removal_quality >= threshold``). On real data there is no oracle; the judges
  that remain are the reward model's and the people's removal_quality GSB (an open-vocabulary
  detector would be the automatic check, but none ships its weights offline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PSNR_CAP = 100.0  # dB an identical item counts for in means (BrushBench: 1000)


def _check(
    result: np.ndarray, reference: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    result, reference, mask = np.asarray(result), np.asarray(reference), np.asarray(mask, dtype=bool)
    if result.shape != reference.shape or result.shape[:2] != mask.shape:
        raise ValueError(
            f"background: result {result.shape}, reference {reference.shape} and mask {mask.shape} must share a size"
        )
    return result, reference, mask


def background(result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``{"psnr", "mse", "ssim"}`` of ``result`` against ``reference`` outside ``mask`` (True = edited).

    A mask covering the whole image leaves no background: every value is NaN.
    """
    result, reference, mask = _check(result, reference, mask)
    keep = ~mask
    n = int(keep.sum())
    if n == 0:
        return {"psnr": math.nan, "mse": math.nan, "ssim": math.nan}
    pred = result.astype(np.float64) / 255.0 * keep[..., None]
    gt = reference.astype(np.float64) / 255.0 * keep[..., None]
    mse = float(((pred - gt) ** 2).sum() / n)
    psnr = math.inf if mse == 0.0 else 20.0 * math.log10(1.0 / math.sqrt(mse))
    return {"psnr": psnr, "mse": mse, "ssim": _ssim_outside(result, reference, keep)}


def _ssim_outside(result: np.ndarray, reference: np.ndarray, keep: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    side = min(result.shape[:2])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return math.nan
    # BrushBench multiplies both images by the unmasked region first: windows that straddle the
    # mask then see zeros on both sides, so an exact background scores exactly 1.
    k = keep[..., None]
    _, smap = structural_similarity(
        reference * k, result * k, channel_axis=2, data_range=255, full=True, win_size=win
    )
    return float(smap[keep].mean())


def seam(result: np.ndarray, mask: np.ndarray) -> float:
    """Boundary sharpness excess (see the module docstring); NaN when the mask has no boundary."""
    x = np.asarray(result, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    band = max(2, round(min(h, w) / 32))
    from scipy.ndimage import binary_dilation

    near = binary_dilation(m, iterations=band) & ~m  # outside, within `band` px of the mask
    cross, inside_band = [], []
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(0, -1), slice(1, None)
        diff = np.abs(x[tuple(a)] - x[tuple(b)]).mean(axis=2)
        ma, mb = m[tuple(a)], m[tuple(b)]
        cross.append(diff[ma != mb])
        inside_band.append(diff[near[tuple(a)] & near[tuple(b)]])
    c, r = np.concatenate(cross), np.concatenate(inside_band)
    if c.size == 0:
        return math.nan
    return float(c.mean() - (r.mean() if r.size else 0.0))


def removal_success(removal_quality: float, threshold: float) -> bool:
    """The oracle's verdict on an object removal: the object is gone and the hole filled."""
    return float(removal_quality) >= threshold


class ClipScorer:
    """CLIP score of images against prompts with one open_clip model (loaded once)."""

    def __init__(self, folder: str, arch: str = "", device: str = "cpu") -> None:
        from onereward.models import clip

        self.model, self.preprocess, self.tokenizer = clip.load(folder, arch, device=device)

    def scores(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[float]:
        """``100 * max(cos, 0)`` per (image, prompt) pair."""
        import torch
        from PIL import Image

        from onereward.models import clip

        if not images:
            return []
        pixels = torch.stack([self.preprocess(Image.fromarray(np.asarray(im))) for im in images])
        img = clip.encode_images(self.model, pixels)
        txt = clip.encode_texts(self.model, self.tokenizer, list(prompts))
        cos = (img * txt).sum(axis=1)
        return [float(100.0 * max(c, 0.0)) for c in cos]


def clip_scores(
    scorer: ClipScorer, images: Sequence[np.ndarray], prompts: Sequence[str], batch: int = 64
) -> list[float]:
    """CLIP scores in batches."""
    out: list[float] = []
    for start in range(0, len(images), batch):
        out += scorer.scores(images[start : start + batch], prompts[start : start + batch])
    return out


def capped_mean(values: Sequence[float], cap: float = PSNR_CAP) -> float | None:
    """Mean of finite-or-infinite values with each capped at ``cap`` (NaN ignored; None when empty)."""
    kept = [min(float(v), cap) for v in values if not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else None


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None or NaN (None when none is left)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else None
