"""select_subset inputs: pool readers, per-file checks and generated masks."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from onereward.errors import InputError
from onereward.select import masks as M
from onereward.select.pool import ItemProblem, decode_image, decode_mask, read_pool


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _rgb(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---- per-file checks ---------------------------------------------------------------------------


def test_decode_image_accepts_rgb_and_grey():
    image, rule = decode_image(_png(_rgb()), "image", 32)
    assert image.size == (40, 48) and image.mode == "RGB" and rule == ""
    grey, rule = decode_image(_png(_rgb()[..., 0]), "image", 32)
    assert grey.mode == "RGB" and rule == "L grey -> RGB (replicated)"
    assert np.array_equal(np.asarray(grey), np.repeat(_rgb()[..., :1], 3, axis=2))


def _bomb_png(width: int, height: int) -> bytes:
    """A small PNG that declares ``width`` x ``height`` RGB pixels (a decompression bomb: its one
    IDAT chunk holds the first rows only)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda: b"this is not an image", "corrupt or not an image"),
        (lambda: b"", "empty file (0 bytes)"),
        (lambda: _png(_rgb(64, 64))[:300], "truncated"),
        (
            lambda: _bomb_png(20000, 20000),
            "too large to decode safely (Image size (400000000 pixels) exceeds limit",
        ),
        (
            lambda: _bomb_png(12000, 12000),
            "too large to decode safely (declares 12000x12000 = 144000000 pixels",
        ),
        (lambda: _png(_rgb(20, 64)), "64x20 is smaller than the minimum side 32px"),
        (
            lambda: _save(Image.new("F", (40, 40), 0.5), "TIFF"),
            "mode F (32-bit float) has no defined 8-bit scale",
        ),
    ],
)
def test_decode_image_rejects_bad_files_with_a_reason(make, reason):
    with pytest.raises(ItemProblem, match=re.escape(reason)):
        decode_image(make(), "image", 32)


def test_other_modes_are_converted_to_rgb_by_the_recorded_rule():
    rgb = _rgb()
    alpha = np.random.default_rng(1).integers(0, 256, (48, 40), dtype=np.uint8)
    bg = (10, 20, 30)
    a = alpha[..., None] / 255.0
    # alpha: composited over the background colour, round(c * a + bg * (1 - a))
    image, rule = decode_image(_png(np.dstack([rgb, alpha])), "image", 32, bg)
    assert rule == "RGBA with alpha -> RGB over 10,20,30"
    assert np.array_equal(np.asarray(image), np.rint(rgb * a + np.array(bg) * (1 - a)).astype(np.uint8))
    image, rule = decode_image(_save(Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")), "image", 32, bg)
    grey = np.repeat(rgb[..., :1], 3, axis=2)
    assert rule.startswith("LA with alpha") and np.array_equal(
        np.asarray(image), np.rint(grey * a + np.array(bg) * (1 - a)).astype(np.uint8)
    )
    # palette: the palette's colours; a transparent palette entry is alpha 0 (the background)
    pal = Image.fromarray(rgb).convert("P")
    image, rule = decode_image(_save(pal), "image", 32, bg)
    assert rule == "P palette -> RGB (palette colours)"
    assert np.array_equal(np.asarray(image), np.asarray(pal.convert("RGB")))
    index = np.asarray(pal)[0, 0]
    pal.info["transparency"] = int(index)
    image, rule = decode_image(_save(pal), "image", 32, bg)
    transparent = np.asarray(pal) == index
    assert rule == "P with alpha -> RGB over 10,20,30" and (np.asarray(image)[transparent] == bg).all()
    # CMYK: (255 - C) * (255 - K) / 255
    cmyk = np.random.default_rng(2).integers(0, 256, (48, 40, 4), dtype=np.uint8)
    image, rule = decode_image(_save(Image.fromarray(cmyk, "CMYK"), "TIFF"), "image", 32)
    want = np.rint((255.0 - cmyk[..., :3]) * (255.0 - cmyk[..., 3:]) / 255.0).astype(np.uint8)
    assert rule.startswith("CMYK -> RGB") and np.array_equal(np.asarray(image), want)
    # 16-bit grey: round(v / 257) (Pillow's own conversion would clip everything above 255)
    deep = np.random.default_rng(3).integers(0, 65536, (48, 40), dtype=np.uint16)
    image, rule = decode_image(_png(deep), "image", 32)
    assert rule == "I;16 16-bit grey -> 8-bit as round(v / 257), replicated"
    assert np.array_equal(
        np.asarray(image), np.repeat(np.rint(deep / 257.0).astype(np.uint8)[..., None], 3, 2)
    )
    # bilevel
    image, rule = decode_image(_save(Image.fromarray(rgb[..., 0] > 127)), "image", 32)
    assert rule == "1 grey -> RGB (replicated)" and set(np.unique(np.asarray(image))) <= {0, 255}


def _save(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_decode_mask_thresholds_grey_and_checks_size():
    grey = np.zeros((48, 40), np.uint8)
    grey[10:20, 5:15] = 200
    grey[30:40, 5:15] = 100  # below the threshold: kept as background
    mask, thresholded = decode_mask(_png(grey), (40, 48), threshold=128)
    assert thresholded and mask.sum() == 100 and mask[15, 10] and not mask[35, 10]
    binary = (grey >= 128).astype(np.uint8) * 255
    mask2, thresholded2 = decode_mask(_png(binary), (40, 48), threshold=128)
    assert not thresholded2 and np.array_equal(mask, mask2)
    with pytest.raises(ItemProblem, match="mask: size 40x48 differs from the image's 64x64"):
        decode_mask(_png(binary), (64, 64), threshold=128)
    with pytest.raises(ItemProblem, match="nothing to generate"):
        decode_mask(_png(np.zeros((48, 40), np.uint8)), (40, 48), threshold=128)


# ---- readers -----------------------------------------------------------------------------------


def test_folder_pool_with_sidecar(tmp_path):
    for name in ("a.png", "b.png", "sub/c.png", "d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(_png(_rgb()))
    (tmp_path / "a_mask.png").write_bytes(_png(np.full((48, 40), 255, np.uint8)))
    (tmp_path / "notes.txt").write_text("not an image")
    lines = [
        {
            "file_name": "a.png",
            "mask": "a_mask.png",
            "task": "object_removal",
            "prompt": "ignored",
            "source": "cam1",
        },
        {"file_name": "b.png", "task": "image_fill", "prompt": "a red circle", "item_id": "bee"},
        {"file_name": "sub/c.png", "task": "image_paint"},
        "{not json",
        {"file_name": "d.png", "task": "image_fill"},
    ]
    (tmp_path / "metadata.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    )
    (tmp_path / "e.png").write_bytes(_png(_rgb()))  # not in the sidecar: still an item
    pool = read_pool(tmp_path, assign_tasks=("image_extend",))
    by_id = {it.item_id: it for it in pool.items}
    assert set(by_id) == {"a", "bee", "e"}
    assert by_id["a"].task == "object_removal" and by_id["a"].mask.path.endswith("a_mask.png")
    assert by_id["a"].prompt is None and json.loads(by_id["a"].meta) == {"source": "cam1"}
    assert by_id["bee"].prompt == "a red circle"
    assert by_id["e"].task == "image_extend" and by_id["e"].mask is None
    reasons = sorted(b.reason for b in pool.bad)
    assert len(reasons) == 3 and pool.n_total == 6
    assert any("unknown task 'image_paint'" in r for r in reasons)
    assert any("image_fill needs a non-empty prompt" in r for r in reasons)
    assert any(r.startswith("sidecar: invalid JSON") for r in reasons)


def test_sidecar_rows_outside_the_folder_bad_utf8_and_long_prompts_are_bad_items(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (tmp_path / "outside.png").write_bytes(_png(_rgb()))
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        (pool / name).write_bytes(_png(_rgb()))
    lines = [
        json.dumps({"file_name": "../outside.png", "task": "image_extend"}).encode(),
        json.dumps({"file_name": "a.png", "task": "image_extend", "mask": "/etc/passwd"}).encode(),
        b'{"file_name": "b.png", "task": "image_fill", "prompt": "bad \xff\xfe bytes"}',
        json.dumps({"file_name": "c.png", "task": "image_fill", "prompt": "x" * 100_000}).encode(),
        json.dumps({"file_name": "d.png", "task": "image_fill", "prompt": "fine"}).encode(),
        json.dumps({"file_name": "e.png", "task": "image_fill", "prompt": "sub/../e is fine"}).encode(),
    ]
    (pool / "items.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    got = read_pool(pool)
    assert sorted(it.item_id for it in got.items) == ["d", "e"]
    reasons = {b.origin: b.reason for b in got.bad}
    assert reasons["items.jsonl line 1"] == (
        "file_name: '../outside.png' points outside the pool folder (no '..' or absolute paths)"
    )
    assert reasons["items.jsonl line 2"].startswith("mask: '/etc/passwd' points outside the pool folder")
    assert reasons["items.jsonl line 3"] == "prompt: not valid UTF-8 (byte 0xff at character 4)"
    assert reasons["items.jsonl line 4"] == "prompt: 100000 characters, longer than max_prompt_chars 2000"
    (pool / "items.jsonl").unlink()
    (pool / "items.csv").write_bytes(b"file_name,task,prompt\nd.png,image_fill,caf\xe9\n")
    got = read_pool(pool)
    assert [b.reason for b in got.bad] == ["prompt: not valid UTF-8 (byte 0xe9 at character 3)"]


def test_folder_pool_assigns_tasks_by_seeded_hash(tmp_path):
    for i in range(40):
        (tmp_path / f"img{i:02d}.png").write_bytes(_png(_rgb(seed=i)))
    both = ("image_extend", "object_removal")
    a = read_pool(tmp_path, assign_tasks=both, seed=3)
    b = read_pool(tmp_path, assign_tasks=both, seed=3)
    assert [it.task for it in a.items] == [it.task for it in b.items]
    counts = {t: sum(it.task == t for it in a.items) for t in both}
    assert min(counts.values()) >= 8  # both tasks drawn
    with pytest.raises(Exception, match="assign_tasks: unknown task"):
        read_pool(tmp_path, assign_tasks=("paint",))


def test_csv_sidecar_and_missing_pool(tmp_path):
    (tmp_path / "x.png").write_bytes(_png(_rgb()))
    (tmp_path / "items.csv").write_text("file_name,task,prompt\nx.png,image_fill,a blue square\n")
    pool = read_pool(tmp_path)
    assert [(it.item_id, it.task, it.prompt) for it in pool.items] == [("x", "image_fill", "a blue square")]
    with pytest.raises(InputError, match="is not a directory"):
        read_pool(tmp_path / "missing")
    (tmp_path / "items.jsonl").write_text("")
    with pytest.raises(InputError, match="several sidecars"):
        read_pool(tmp_path)


def test_hf_datasets_folder(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "image": [Image.fromarray(_rgb(seed=i)) for i in range(3)],
            "task": ["image_fill", "image_extend", "nonsense"],
            "prompt": ["a red circle", None, None],
            "photographer": ["x", "y", "z"],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "task": datasets.Value("string"),
                "prompt": datasets.Value("string"),
                "photographer": datasets.Value("string"),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    pool = read_pool(tmp_path / "ds")
    assert pool.kind == "hf_dataset"
    assert [(it.item_id, it.task) for it in pool.items] == [
        ("row0000000", "image_fill"),
        ("row0000001", "image_extend"),
    ]
    assert json.loads(pool.items[1].meta) == {"photographer": "y"}
    assert [b.reason.split(" (")[0] for b in pool.bad] == ["task: unknown task 'nonsense'"]
    data = pool.read_bytes(pool.items[1].image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), _rgb(seed=1))


# ---- masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom", "all"])
def test_extend_canvas_geometry(side):
    src = _rgb(48, 64)
    canvas, mask = M.extend_canvas(src, side, 0.5)
    assert max(canvas.shape[:2]) == 64  # longest side kept: the source is scaled into the frame
    assert mask.shape == canvas.shape[:2]
    assert np.all(canvas[mask] == M.CANVAS_GREY)
    new_fraction = mask.mean()
    assert 0.25 < new_fraction < 0.6
    if side == "left":
        assert mask[:, 0].all() and not mask[:, -1].any()
    if side == "top":
        assert mask[0].all() and not mask[-1].any()
    if side == "all":
        assert mask[0].all() and mask[-1].all() and mask[:, 0].all() and mask[:, -1].all()
    assert M.detect_canvas(canvas) is not None and np.array_equal(M.detect_canvas(canvas), mask)
    assert M.detect_canvas(src) is None


def test_fill_masks_area_and_per_item_determinism():
    settings = M.MaskSettings(fill_area=(0.1, 0.3)).validate()
    img = _rgb(64, 64)
    areas = []
    kinds = set()
    for i in range(30):
        _, mask, info = M.make_mask("image_fill", img, f"item{i}", 7, settings)
        _, again, _ = M.make_mask("image_fill", img, f"item{i}", 7, settings)
        assert np.array_equal(mask, again)
        areas.append(mask.mean())
        kinds.add(info["mask_kind"])
    assert kinds == {"box", "brush"}
    assert min(areas) > 0.08 and max(areas) < 0.6 and np.std(areas) > 0.02
    _, other, _ = M.make_mask("image_fill", img, "item0", 8, settings)
    assert not np.array_equal(other, M.make_mask("image_fill", img, "item0", 7, settings)[1])


def test_make_mask_extend_and_removal():
    settings = M.MaskSettings(extend_ratios=(0.25,), extend_sides=("right",))
    img = _rgb(64, 64)
    canvas, mask, info = M.make_mask("image_extend", img, "x", 0, settings)
    assert info == {
        "mask_source": "generated",
        "mask_kind": "canvas_expansion",
        "side": "right",
        "ratio": 0.25,
    }
    assert canvas.shape == (51, 64, 3) and mask[:, -1].all() and not mask[:, 0].any()
    # An image that already is a canvas keeps its pixels and gets its border as the mask.
    same, border, info2 = M.make_mask("image_extend", canvas, "x", 0, settings)
    assert same is canvas and info2 == {"mask_source": "canvas_border"} and np.array_equal(border, mask)
    with pytest.raises(InputError, match="object_removal needs a provided mask"):
        M.make_mask("object_removal", img, "x", 0, settings)
    with pytest.raises(InputError, match="extend_sides"):
        M.MaskSettings(extend_sides=("diagonal",)).validate()
