"""Differentiable Qwen2-VL image preprocessing (resize, rescale, normalise, patchify) in torch.

The Hugging Face image processor works on uint8 images and rounds after resizing, which cuts the
gradient. During RL the reward's gradient must reach the generator's pixels, so this module
re-implements the same steps on float tensors: ``smart_resize`` target size (multiples of
patch_size * merge_size within [min_pixels, max_pixels]), bicubic antialiased resize, rescale by
1/255 and CLIP mean/std normalisation, and the merge-block patch order with the temporal patch
repeated. Without a resize it matches the processor's ``pixel_values`` to float precision; with a
resize it mirrors torchvision's uint8 kernel (two separable passes, clamped and rounded with a
straight-through gradient) and matches within 2 grey levels (0.031 after normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize


@dataclass(frozen=True)
class VisionPreprocessSpec:
    """The image processor's settings that decide ``pixel_values`` and ``image_grid_thw``."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int
    max_pixels: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor: Any) -> VisionPreprocessSpec:
        """Read the settings from a ``Qwen2_5_VLProcessor`` (or its ``image_processor``)."""
        ip = getattr(processor, "image_processor", processor)
        size = ip.size  # a SizeDict (transformers 5) supports item access
        min_pixels, max_pixels = size["shortest_edge"], size["longest_edge"]
        return cls(
            patch_size=int(ip.patch_size),
            merge_size=int(ip.merge_size),
            temporal_patch_size=int(ip.temporal_patch_size),
            min_pixels=int(min_pixels),
            max_pixels=int(max_pixels),
            image_mean=tuple(float(v) for v in ip.image_mean),  # type: ignore[arg-type]
            image_std=tuple(float(v) for v in ip.image_std),  # type: ignore[arg-type]
        )

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Resized (height, width) the processor would use for an image of this size."""
        return smart_resize(
            height,
            width,
            factor=self.patch_size * self.merge_size,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )

    def tokens_per_image(self, height: int, width: int) -> int:
        """Number of ``<|image_pad|>`` tokens (merged patches) for an image of this size."""
        rh, rw = self.target_size(height, width)
        return (rh // self.patch_size) * (rw // self.patch_size) // (self.merge_size**2)


def _straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (x.round() - x).detach()


def _resize_like_uint8_bicubic(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of 0-255 floats that mirrors torchvision's uint8 kernel.

    The processor resizes uint8 tensors; torchvision's uint8 kernel is separable (width pass, then
    height pass) and stores the intermediate image as uint8, clamping the bicubic overshoot. A
    one-pass float resize differs from it by up to 18 grey levels on high-frequency images; two
    passes with clamping and (straight-through) rounding match it within 2 levels while keeping the
    gradient of the float resize.
    """
    in_h = x.shape[-2]
    x = F.interpolate(x, size=(in_h, width), mode="bicubic", antialias=True, align_corners=False)
    x = _straight_through_round(x.clamp(0.0, 255.0))
    x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return _straight_through_round(x.clamp(0.0, 255.0))


def preprocess_images(images: torch.Tensor, spec: VisionPreprocessSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn float images [B, 3, H, W] in [0, 1] into (pixel_values, image_grid_thw), differentiably.

    ``pixel_values`` has shape [B * grid_h * grid_w, 3 * temporal_patch_size * patch_size**2] in the
    processor's order (one image after the other); ``image_grid_thw`` is [B, 3] (long).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a float tensor [B, 3, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images: expected a floating-point tensor in [0, 1], got {images.dtype}")
    batch, channels, height, width = images.shape
    rh, rw = spec.target_size(height, width)
    x = images.float() * 255.0
    if (rh, rw) != (height, width):
        x = _resize_like_uint8_bicubic(x, rh, rw)
    mean = torch.tensor(spec.image_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x / 255.0 - mean) / std
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    grid_h, grid_w = rh // p, rw // p
    # [B, C, gh/m, m, p, gw/m, m, p] -> [B, gh/m, gw/m, m, m, C, p, p]: patches of one merge block
    # are consecutive, which the vision merger relies on.
    patches = x.reshape(batch, channels, grid_h // m, m, p, grid_w // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
    # A still image fills every temporal slot of the 3D patch with the same frame.
    patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)
    pixel_values = patches.reshape(batch * grid_h * grid_w, channels * t * p * p)
    grid = torch.tensor([[1, grid_h, grid_w]] * batch, dtype=torch.long, device=images.device)
    return pixel_values, grid
