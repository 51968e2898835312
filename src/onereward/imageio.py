"""Image and mask files: RGB PNG images, single-channel masks where 255 marks the region to edit."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image as HxWx3 uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: str | os.PathLike[str], threshold: int = 128) -> np.ndarray:
    """Load a mask as HxW bool (True = edit region); grey values are thresholded at ``threshold``."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"), dtype=np.uint8)
    return arr >= threshold


def save_png(path: str | os.PathLike[str], array_or_image: np.ndarray | Image.Image) -> None:
    """Save an RGB image (HxWx3 uint8) or a bool/uint8 mask (HxW) as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(array_or_image, Image.Image):
        im = array_or_image
    else:
        arr = np.asarray(array_or_image)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        im = Image.fromarray(arr.astype(np.uint8))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.png")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)
