"""select_subset inputs: pool readers, per-file checks and generated masks."""

from __future__ import annotations

import io
import json

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
    assert decode_image(_png(_rgb()), "image", 32).size == (40, 48)
    grey = decode_image(_png(_rgb()[..., 0]), "image", 32)
    assert grey.mode == "RGB"


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda: b"this is not an image", "corrupt or not an image"),
        (lambda: _png(_rgb(64, 64))[:300], "truncated"),
        (
            lambda: _png(np.dstack([_rgb(), np.full((48, 40), 200, np.uint8)])),
            "mode RGBA has an alpha channel",
        ),
        (lambda: _png(np.full((40, 40), 1000, np.uint16)), "mode I;16 is 16-bit or float"),
        (lambda: _save(Image.fromarray(_rgb()).convert("P")), "mode P is palette-based"),
        (lambda: _save(Image.fromarray(_rgb()).convert("CMYK"), "JPEG"), "mode CMYK is CMYK"),
        (lambda: _png(_rgb(20, 64)), "64x20 is smaller than the minimum side 32px"),
    ],
)
def test_decode_image_rejects_bad_files_with_a_reason(make, reason):
    with pytest.raises(ItemProblem, match=reason.replace("(", r"\(")):
        decode_image(make(), "image", 32)


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
