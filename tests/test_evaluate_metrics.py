"""Automatic metrics of evaluate: background PSNR / SSIM / MSE outside the mask (BrushBench's way),
the seam, OCR with the real rapidocr on rendered words, edit distances, removal success."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from onereward.evaluate import metrics as am
from onereward.evaluate.ocr import TextReader, edit_distance, expected_text, mask_box
from onereward.generate.sampler import paste_back
from onereward.synth.world import WORDS, text_glyphs, text_scale


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:50] = True
    return source, mask


def test_a_pure_paste_back_has_infinite_psnr_outside_the_mask() -> None:
    source, mask = _scene()
    generated = np.random.default_rng(1).integers(0, 256, size=source.shape, dtype=np.uint8)
    result = paste_back(source, generated, mask, feather=3)
    got = am.background(result, source, mask)
    assert got["psnr"] == math.inf and got["mse"] == 0.0 and got["ssim"] == pytest.approx(1.0)
    # the raw generation (no paste-back) is measured too: finite, BrushBench's formula by hand
    raw = am.background(generated, source, mask)
    keep = ~mask
    diff = (generated.astype(np.float64) - source.astype(np.float64)) / 255.0
    mse = float((diff[keep] ** 2).sum() / keep.sum())  # summed over channels, divided by pixels
    assert raw["mse"] == pytest.approx(mse) and raw["psnr"] == pytest.approx(
        20 * math.log10(1 / math.sqrt(mse))
    )
    assert raw["ssim"] < 0.2
    # a uniform error of 10 levels in one channel: MSE (10/255)^2, PSNR 28.13 dB
    shifted = source.astype(np.int16)
    shifted[..., 0] = np.where(source[..., 0] < 128, shifted[..., 0] + 10, shifted[..., 0] - 10)
    got = am.background(shifted.astype(np.uint8), source, mask)
    assert got["mse"] == pytest.approx((10 / 255) ** 2) and got["psnr"] == pytest.approx(28.1308, abs=1e-3)
    # means cap identical items (inf) at PSNR_CAP and skip NaN
    assert am.capped_mean([math.inf, 20.0, math.nan]) == pytest.approx((am.PSNR_CAP + 20.0) / 2)
    full = np.ones_like(mask)
    assert math.isnan(am.background(result, source, full)["psnr"])


def test_seam_is_zero_for_a_clean_fill_and_large_for_a_pasted_patch() -> None:
    flat = np.full((64, 64, 3), 150, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    assert am.seam(flat, mask) == pytest.approx(0.0)
    patch = flat.copy()
    patch[mask] = (30, 60, 200)
    assert am.seam(patch, mask) == pytest.approx((120 + 90 + 50) / 3)
    # stripes outside: the boundary is no sharper than the texture when the fill continues them
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 200
    assert abs(am.seam(stripes, mask)) < 1.0
    assert math.isnan(am.seam(flat, np.zeros((64, 64), bool)))


def test_removal_success_threshold() -> None:
    assert am.removal_success(0.5, 0.5) and not am.removal_success(0.49, 0.5)


def _render(word: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = Image.new("RGB", (200, 64), (210, 210, 210))
    ImageDraw.Draw(img).text((14, 14), word, fill=(200, 30, 30), font=ImageFont.load_default(size=size))
    mask = np.zeros((64, 200), bool)
    mask[6:58, 6:190] = True
    return np.asarray(img), mask


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader("recognise")


def test_ocr_reads_a_rendered_known_word(reader: TextReader) -> None:
    image, mask = _render("HOTEL", 24)
    score = reader.score(image, mask, expected_text('the word "HOTEL" in red letters'))
    assert score.read == "HOTEL" and score.exact and score.distance == 0.0
    other = reader.score(image, mask, "OPEN")
    assert not other.exact and other.distance == pytest.approx(edit_distance("HOTEL", "OPEN"))
    blank = reader.score(np.full_like(image, 128), mask, "HOTEL")
    assert blank.read == "" and not blank.exact and blank.distance == 1.0


def test_ocr_reads_every_word_of_the_synthetic_world_at_64_px(reader: TextReader) -> None:
    """The world's bitmap words at the tiny profile's scale (a few pixels high) are read exactly."""
    for word in WORDS:
        glyphs = text_glyphs(word, text_scale(64))
        image = np.full((64, 64, 3), 200, np.uint8)
        h, w = glyphs.shape
        image[20 : 20 + h, 8 : 8 + w][glyphs] = (210, 30, 30)
        mask = np.zeros((64, 64), bool)
        mask[16 : 24 + h, 4 : 12 + w] = True
        assert reader.score(image, mask, word).read == word


def test_expected_text_and_edit_distance() -> None:
    assert expected_text('the word "OPEN" in red letters') == "OPEN"
    assert expected_text("a sign that says “Cafe  42 Sale”") == "Cafe 42 Sale"
    assert expected_text("a red circle") is None and expected_text(None) is None
    assert edit_distance("OPEN", "OPEN") == 0.0 and edit_distance("", "OPEN") == 1.0
    assert edit_distance("0PEN", "OPEN") == pytest.approx(0.25)
    assert mask_box(np.pad(np.ones((2, 3), bool), 5)) == (3, 9, 3, 10)
