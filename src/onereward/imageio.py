"""Image and mask files: RGB PNG images, single-channel masks where 255 marks the region to edit."""

from __future__ import annotations

import contextlib
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from onereward.errors import InputError


@contextlib.contextmanager
def _decoded(path: str | os.PathLike[str], what: str) -> Iterator[Image.Image]:
    """The fully decoded image at ``path``; a file that is missing, empty, corrupt, truncated or a
    decompression bomb is an :class:`InputError` naming ``what`` and the file (never a traceback)."""
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise InputError(f"{what}: {path} does not exist") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{what}: {path} is too large to decode safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        size = os.path.getsize(path) if os.path.isfile(path) else -1
        detail = "empty file (0 bytes)" if size == 0 else f"{type(e).__name__}: {e}"
        raise InputError(f"{what}: {path} is not a readable image ({detail})") from None
    with im:
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, zlib.error) as e:
            reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
            raise InputError(f"{what}: {path} is {reason} ({type(e).__name__}: {e})") from None
        yield im


def load_rgb(path: str | os.PathLike[str], *, what: str = "image") -> np.ndarray:
    """Load an image as HxWx3 uint8 RGB. ``what`` names the input in errors (e.g. "--subset item
    'x' field 'image'"); an unreadable file is an :class:`InputError`."""
    with _decoded(path, what) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: str | os.PathLike[str], threshold: int = 128, *, what: str = "mask") -> np.ndarray:
    """Load a mask as HxW bool (True = edit region); grey values are thresholded at ``threshold``."""
    with _decoded(path, what) as im:
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
