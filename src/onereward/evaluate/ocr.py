"""Text rendering: read the text drawn in the mask's box and compare it with the prompt's text.

The reader is rapidocr (3.10), which ships PP-OCRv6 ONNX weights in its wheel and runs offline on
onnxruntime. Two modes:

- ``recognise``: the mask's bounding box (plus a 2 px margin) is one text line; only the
  recognition network runs on it (~0.07 s per crop on one core). Right for the synthetic world,
  where the word is one line inside the mask;
- ``detect``: detection, then recognition of every box found in the crop, joined left to right,
  top to bottom (real images, several lines).

Crops lower than :data:`MIN_HEIGHT` pixels are scaled up (nearest) first.

Scores per item (AnyText's text-rendering metrics):

- **sentence accuracy**: the text read equals the expected text exactly (after trimming and
  collapsing whitespace);
- **normalised edit distance**: Levenshtein distance / max(len(read), len(expected)) (rapidfuzz),
  0 = exact, 1 = nothing in common; lower is better.

The expected text comes from the prompt: the quoted part (``the word "OPEN" in red letters`` ->
``OPEN``); a prompt without quotes asks for no text and is not scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MIN_HEIGHT = 32
MARGIN = 2
_QUOTED = re.compile(r"[\"“”']([^\"“”']+)[\"“”']")


def expected_text(prompt: str | None) -> str | None:
    """The text a prompt asks to render: its first quoted part, or None."""
    if not prompt:
        return None
    m = _QUOTED.search(prompt)
    return normalise(m.group(1)) if m else None


def normalise(text: str) -> str:
    """Trim and collapse whitespace."""
    return " ".join(str(text).split())


def edit_distance(read: str, expected: str) -> float:
    """Normalised Levenshtein distance in [0, 1] (0 = equal)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_distance(normalise(read), normalise(expected)))


@dataclass(frozen=True)
class TextScore:
    """What OCR read in one result and how it compares with the expected text."""

    read: str
    expected: str
    exact: bool
    distance: float


def mask_box(mask: np.ndarray, margin: int = MARGIN) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the mask's bounding box grown by ``margin`` (inside the image)."""
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    if ys.size == 0:
        raise ValueError("mask: empty, no box to read")
    h, w = mask.shape
    return (
        max(0, int(ys.min()) - margin),
        min(h, int(ys.max()) + 1 + margin),
        max(0, int(xs.min()) - margin),
        min(w, int(xs.max()) + 1 + margin),
    )


class TextReader:
    """rapidocr, loaded once; :meth:`read` returns the text in an image crop."""

    def __init__(self, mode: str = "recognise") -> None:
        if mode not in ("recognise", "detect"):
            raise ValueError(f"ocr mode: expected recognise or detect, got {mode!r}")
        from rapidocr import RapidOCR

        self.mode = mode
        # Quiet (rapidocr logs every model path at INFO). Recognition of one small crop is fastest
        # on one onnxruntime thread; detection (a 736 px input) uses every core (~4 s on one).
        threads = 1 if mode == "recognise" else -1
        self.engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": threads,
            }
        )

    def read(self, crop: np.ndarray) -> str:
        """The text in an HxWx3 uint8 crop ('' when nothing is read)."""
        crop = np.ascontiguousarray(np.asarray(crop, dtype=np.uint8))
        if crop.shape[0] < MIN_HEIGHT:
            k = -(-MIN_HEIGHT // crop.shape[0])
            crop = np.repeat(np.repeat(crop, k, axis=0), k, axis=1)
        if self.mode == "recognise":
            out = self.engine(crop, use_det=False, use_cls=False, use_rec=True)
            texts = list(out.txts or ())
        else:
            out = self.engine(crop, use_det=True, use_cls=False, use_rec=True)
            boxes = out.boxes if out.boxes is not None else []
            order = sorted(
                range(len(boxes)),
                key=lambda i: (float(np.min(boxes[i][:, 1])), float(np.min(boxes[i][:, 0]))),
            )
            texts = [out.txts[i] for i in order] if out.txts else []
        return normalise(" ".join(t for t in texts if t))

    def score(self, image: np.ndarray, mask: np.ndarray, expected: str) -> TextScore:
        """Read the mask's box of ``image`` and compare with ``expected``."""
        y0, y1, x0, x1 = mask_box(mask)
        read = self.read(np.asarray(image)[y0:y1, x0:x1])
        want = normalise(expected)
        return TextScore(read=read, expected=want, exact=read == want, distance=edit_distance(read, want))
