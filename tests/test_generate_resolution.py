"""Resolution: items of any size are generated at aspect-ratio buckets of the profile's area (a
12 MP photo does not reach the generator at 12 MP), batch by bucket, and come back at their own
size with the pixels outside the mask exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onereward.artifacts import ArtifactWriter
from onereward.generate import stage
from onereward.generate.sampler import ASPECT_BUCKETS, fit_size
from onereward.imageio import load_rgb, save_png
from onereward.tables import POOL_SCHEMA, read_table, write_table


def test_buckets_bound_the_area_and_keep_the_aspect() -> None:
    h, w = fit_size((3000, 4000), 16, 1024)  # a 12 MP photo, landscape 4:3
    assert h % 16 == 0 and w % 16 == 0
    assert abs(h * w / 1024**2 - 1) < 0.05 and abs((w / h) / (4 / 3) - 1) < 0.02
    assert fit_size((64, 64), 16, 64) == (64, 64)  # the tiny world is unchanged
    assert fit_size((4000, 3000), 16, 1024) == fit_size((3900, 2950), 16, 1024)  # near sizes share a bucket
    sizes = {fit_size((h, w), 16, 512) for h in range(300, 5000, 97) for w in range(300, 5000, 89)}
    assert len(sizes) == len(ASPECT_BUCKETS)
    assert fit_size((100, 70), 16) == (96, 64)  # without a resolution: each side down to the grid


@pytest.fixture()
def mixed_pool(tmp_path: Path) -> Path:
    """Items of five sizes and aspects, each with a box mask."""
    rng = np.random.default_rng(0)
    rows = []
    with ArtifactWriter(tmp_path / "pool", kind="pool", stage="test", parameters={}) as art:
        for k, (h, w) in enumerate([(48, 80), (64, 64), (80, 48), (96, 72), (50, 90), (64, 64)]):
            iid = f"mixed-{k}"
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), dtype=bool)
            mask[h // 4 : h // 2, w // 4 : w // 2] = True
            save_png(art.path / f"images/{iid}.png", image)
            save_png(art.path / f"masks/{iid}.png", mask)
            rows.append({"item_id": iid, "task": "image_fill", "image": f"images/{iid}.png", "mask": f"masks/{iid}.png",
                         "prompt": "a red circle", "meta": "{}", "target": None})  # fmt: skip
        write_table(art.path / "items.parquet", rows, schema=POOL_SCHEMA)
    return tmp_path / "pool"


def test_mixed_sizes_come_back_at_their_size_with_exact_outside(
    mixed_pool: Path, tiny_zoo: Path, tmp_path: Path
):
    out = tmp_path / "cand"
    metrics = stage.run(
        str(mixed_pool), str(out), zoo=str(tiny_zoo), num_candidates=2, min_steps=2, max_steps=2,
        strength_min=1.0, batch_size=16,
    )  # fmt: skip
    items = {r["item_id"]: r for r in read_table(out / "items.parquet")}
    for cand in read_table(out / "candidates.parquet"):
        src = load_rgb(out / items[cand["item_id"]]["image"])
        res = load_rgb(out / cand["image"])
        assert res.shape == src.shape
        mask = load_rgb(out / items[cand["item_id"]]["mask"])[..., 0] > 127
        assert np.array_equal(res[~mask], src[~mask])
        assert not np.array_equal(res[mask], src[mask])
    # 6 items of 5 sizes, tiny profile (image_size 64): 12 candidates, one batch per bucket on the
    # generator's grid (2 x its VAE factor: 4 px for the tiny FLUX, whose VAE halves each side):
    # 1:1, 16:9, 9:16 and 3:4 - the two 16:9-ish items (48x80, 50x90) share one.
    vae = json.loads((tiny_zoo / "flux_fill" / "vae" / "config.json").read_text())
    grid = 2 * 2 ** (len(vae["block_out_channels"]) - 1)
    sizes = [(48, 80), (64, 64), (80, 48), (96, 72), (50, 90), (64, 64)]
    buckets = {fit_size(s, grid, 64) for s in sizes}
    assert grid == 4 and len(buckets) == 4
    assert metrics["n_batches"] == len(buckets) and metrics["n_candidates"] == 12
