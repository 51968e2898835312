"""Stage select_subset end to end with the tiny CLIP: artifact contract, determinism, coverage,
bad files, duplicates, cache, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from onereward.artifacts import ArtifactWriter, read_artifact
from onereward.errors import InputError
from onereward.models import clip
from onereward.profile import load_profile
from onereward.select import cli as select_cli
from onereward.select.stage import run
from onereward.synth.stage import make_pool

SUBSET_COLUMNS = ["item_id", "task", "image", "mask", "prompt", "meta", "target", "cluster_id", "distance",
                  "embedding_index"]  # fmt: skip


@pytest.fixture(scope="module")
def zoo(tiny_zoo) -> Path:
    """The session's tiny zoo artifact (conftest), which holds clip/."""
    return tiny_zoo


def _clip_only_zoo(root: Path, seed: int) -> Path:
    """A zoo artifact for the tiny profile holding only a CLIP built with another seed."""
    prof = load_profile("tiny")
    params = {"profile": prof.name, "models_sha": prof.models_sha, "seed": seed}
    with ArtifactWriter(root, kind="zoo", stage="test_select_stage", parameters=params) as art:
        clip.build_tiny(art.path / "clip", seed=seed)
    return root


@pytest.fixture(scope="module")
def synth_pool(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pools") / "synth"
    make_pool(out, 90, seed=0, masks=False)  # fill/extend without masks: the stage makes them
    return out


def _run(pool, out, zoo, cache, **kw):
    kw.setdefault("progress", False)
    return run(str(pool), str(out), zoo=str(zoo), cache_dir=str(cache), **kw)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _texture(seed: int, size: int = 64) -> np.ndarray:
    """A distinct image per seed: smooth colour gradients plus a seeded block pattern."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack(
        [np.sin(2 * np.pi * (xx * rng.uniform(0.5, 3) + c * rng.uniform())) for c in range(3)], -1
    )
    blocks = rng.uniform(-1, 1, (8, 8, 3)).repeat(size // 8, 0).repeat(size // 8, 1)
    return ((base * 0.5 + blocks * 0.5 + 1) * 127.5).clip(0, 255).astype(np.uint8)


def test_subset_artifact_follows_the_contract(synth_pool, zoo, tmp_path):
    metrics = _run(synth_pool, tmp_path / "subset", zoo, tmp_path / "cache", size=15)
    manifest = read_artifact(tmp_path / "subset", kind="subset")
    pool_manifest = read_artifact(synth_pool, kind="pool")
    assert manifest.inputs[0]["content_hash"] == pool_manifest.content_hash
    assert manifest.inputs[1]["content_hash"] == read_artifact(zoo, kind="zoo").content_hash
    root = tmp_path / "subset"
    table = pq.read_table(root / "items.parquet")
    assert table.column_names == SUBSET_COLUMNS
    rows = table.to_pylist()
    assert len(rows) == metrics["n_selected"] == 15
    for key in ("n_pool", "n_bad", "n_selected", "coverage_selected", "coverage_random", "images_per_second"):
        assert key in metrics
    assert json.loads((root / "metrics.json").read_text())["n_pool"] == 90 == metrics["n_pool"]
    assert metrics["n_bad"] == 0 and metrics["images_per_second"] > 0
    # Sizes per task follow the pool's task mix (36/27/27 -> 6/4.5/4.5 of 15, largest remainder).
    pool_rows = pq.read_table(synth_pool / "items.parquet").to_pylist()
    pool_counts = {t: sum(r["task"] == t for r in pool_rows) for t in metrics["per_task"]}
    for task, n in metrics["per_task"].items():
        assert abs(n - 15 * pool_counts[task] / 90) < 1.0 + 1e-9
    embeddings = np.load(root / "embeddings.npy")
    assert embeddings.shape == (15, 64) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    model, preprocess, _ = clip.load(zoo / "clip")
    sources = {r["item_id"]: r for r in pool_rows}
    assert len({r["cluster_id"] for r in rows}) == 15  # one representative per cluster
    for r in rows:
        image = Image.open(root / r["image"])
        mask = Image.open(root / r["mask"])
        assert image.mode == "RGB" and mask.mode == "L" and mask.size == image.size
        values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= {0, 255} and 255 in values
        assert 0.0 <= r["distance"] <= 2.0
        src = sources[r["item_id"]]
        select_meta = json.loads(r["meta"])["select"]
        if src["mask"] is not None:
            assert select_meta == {"mask_source": "provided"}
            assert np.array_equal(np.asarray(mask) > 0, np.asarray(Image.open(synth_pool / src["mask"])) > 0)
            assert r["target"] is not None
        elif r["task"] == "image_extend":
            assert select_meta == {"mask_source": "canvas_border"}  # the synthetic canvas's grey border
        else:
            assert r["task"] == "image_fill" and select_meta["mask_source"] == "generated"
            assert r["target"] is None  # the pool's target belonged to another mask
        # The embedding row is the CLIP embedding of the pool image the item came from.
        pixels = preprocess(Image.open(synth_pool / src["image"]).convert("RGB"))[None]
        np.testing.assert_allclose(
            clip.encode_images(model, pixels)[0], embeddings[r["embedding_index"]], atol=1e-5
        )
    report = (root / "report.html").read_text()
    for heading in ("Coverage", "Clustering", "Representatives", "Masks", "Skipped items (0)"):
        assert heading in report
    assert Image.open(root / "montage.png").size[0] > 0


def test_deterministic_and_better_than_random(synth_pool, zoo, tmp_path):
    a = _run(synth_pool, tmp_path / "a", zoo, tmp_path / "cache_a", size=12, seed=3)
    b = _run(synth_pool, tmp_path / "b", zoo, tmp_path / "cache_b", size=12, seed=3)
    c = _run(synth_pool, tmp_path / "c", zoo, tmp_path / "cache_a", size=12, seed=4)
    assert pq.read_table(tmp_path / "a" / "items.parquet").equals(
        pq.read_table(tmp_path / "b" / "items.parquet")
    )
    assert np.array_equal(
        np.load(tmp_path / "a" / "embeddings.npy"), np.load(tmp_path / "b" / "embeddings.npy")
    )
    for sub in ("images", "masks"):
        files = sorted(p.name for p in (tmp_path / "a" / sub).iterdir())
        assert files == sorted(p.name for p in (tmp_path / "b" / sub).iterdir())
        assert all(
            (tmp_path / "a" / sub / f).read_bytes() == (tmp_path / "b" / sub / f).read_bytes() for f in files
        )
    assert a["coverage_selected"] == b["coverage_selected"]
    ids = lambda p: set(pq.read_table(p / "items.parquet").column("item_id").to_pylist())  # noqa: E731
    assert ids(tmp_path / "a") != ids(tmp_path / "c")  # the seed matters
    for m in (a, c):
        assert m["coverage_selected"] < m["coverage_random"]


def test_global_clustering_and_faiss_backend(synth_pool, zoo, tmp_path):
    metrics = _run(
        synth_pool, tmp_path / "g", zoo, tmp_path / "cache", size=10, per_task=False, backend="faiss"
    )
    assert list(metrics["groups"]) == ["all"] and metrics["groups"]["all"]["backend"] == "faiss"
    assert metrics["n_selected"] == 10 and metrics["coverage_selected"] < metrics["coverage_random"]


def test_torch_backend_records_the_device_it_ran_on(synth_pool, zoo, tmp_path):
    """The torch engine on the device asked for; a GPU asked for where torch sees none falls back to
    the CPU and says why (the manifest's metrics record both)."""
    import torch

    metrics = _run(
        synth_pool, tmp_path / "t", zoo, tmp_path / "cache", size=10, backend="torch", cluster_device="cpu"
    )
    groups = metrics["groups"].values()
    assert {g["backend"] for g in groups} == {"torch-cpu"} and {g["device"] for g in groups} == {"cpu"}
    assert metrics["n_selected"] == 10 and metrics["coverage_selected"] < metrics["coverage_random"]
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["producer"]["parameters"]["cluster_device"] == "cpu"
    if not torch.cuda.is_available():
        m = _run(
            synth_pool,
            tmp_path / "c",
            zoo,
            tmp_path / "cache",
            size=10,
            backend="torch",
            cluster_device="cuda",
        )
        assert {g["backend"] for g in m["groups"].values()} == {"torch-cpu"}
        assert all("no CUDA device" in g["device_fallback"] for g in m["groups"].values())


def _folder_with_bad_files(root: Path) -> dict[str, str]:
    """Six good images, four valid images in other modes (converted, not bad) and one file per
    kind of problem; returns item id -> expected reason."""
    root.mkdir(parents=True)
    for i in range(6):
        (root / f"good{i}.png").write_bytes(_png(_texture(i)))
    grey_mask = np.zeros((64, 64), np.uint8)
    grey_mask[16:40, 16:40] = 180  # non-binary: thresholded, not bad
    grey_mask[20:30, 20:30] = 255
    (root / "good0_mask.png").write_bytes(_png(grey_mask))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "truncated.png").write_bytes(_png(_texture(10))[:400])
    buf = io.BytesIO()
    Image.fromarray(_texture(11)).convert("CMYK").save(buf, format="JPEG")
    (root / "cmyk.jpg").write_bytes(buf.getvalue())
    (root / "deep.png").write_bytes(_png(np.full((64, 64), 40000, np.uint16)))
    buf = io.BytesIO()
    Image.fromarray(_texture(12)).convert("P").save(buf, format="PNG")
    (root / "palette.png").write_bytes(buf.getvalue())
    (root / "alpha.png").write_bytes(_png(np.dstack([_texture(13), np.full((64, 64), 255, np.uint8)])))
    (root / "small.png").write_bytes(_png(_texture(14, size=16)))
    (root / "mismatch.png").write_bytes(_png(_texture(15)))
    (root / "mismatch_mask.png").write_bytes(_png(np.full((32, 32), 255, np.uint8)))
    (root / "weird.png").write_bytes(_png(_texture(16)))
    sidecar = [
        {"file_name": "good0.png", "mask": "good0_mask.png", "task": "image_fill", "prompt": "a red circle"},
        {"file_name": "mismatch.png", "mask": "mismatch_mask.png", "task": "object_removal"},
        {"file_name": "weird.png", "task": "colorize"},
        {"file_name": "gone.png", "task": "image_extend"},
    ]
    (root / "items.jsonl").write_text("\n".join(json.dumps(r) for r in sidecar) + "\n")
    return {
        "corrupt": "image: corrupt or not an image",
        "truncated": "image: truncated",
        "small": "image: 16x16 is smaller than the minimum side 32px",
        "mismatch": "mask: size 32x32 differs from the image's 64x64",
        "weird": "task: unknown task 'colorize'",
        "gone": "image: cannot read",
    }


def test_bad_files_are_skipped_and_reported(zoo, tmp_path):
    expected = _folder_with_bad_files(tmp_path / "pool")
    out = tmp_path / "subset"
    with pytest.raises(InputError, match=r"6 of 16 items are bad \(37.5% > max_bad_fraction 20.0%\)"):
        _run(tmp_path / "pool", out, zoo, tmp_path / "cache", size=4)
    assert not out.exists()  # nothing half-written
    metrics = _run(tmp_path / "pool", out, zoo, tmp_path / "cache", size=4, max_bad_fraction=0.7)
    assert (metrics["n_pool"], metrics["n_bad"], metrics["n_valid"], metrics["n_selected"]) == (16, 6, 10, 4)
    # CMYK, 16-bit, palette and alpha images are converted to RGB and counted, not refused
    assert metrics["n_images_converted"] == 4
    assert metrics["images_converted_by_mode"] == {"CMYK": 1, "I;16": 1, "P": 1, "RGBA": 1}
    bad = {r["item_id"]: r["reason"] for r in pq.read_table(out / "bad_items.parquet").to_pylist()}
    assert set(bad) == set(expected)
    for item_id, reason in expected.items():
        assert bad[item_id].startswith(reason), (item_id, bad[item_id])
    rows = pq.read_table(out / "items.parquet").to_pylist()
    assert {r["item_id"] for r in rows} <= {f"good{i}" for i in range(6)} | {
        "cmyk",
        "deep",
        "palette",
        "alpha",
    }
    report = (out / "report.html").read_text()
    assert "Skipped items (6)" in report and "differs from the image" in report
    # The grey mask was thresholded with the recorded rule (>= 128) when good0 is selected.
    all_rows = _run(
        tmp_path / "pool", tmp_path / "all", zoo, tmp_path / "cache", size=10, max_bad_fraction=0.7
    )
    good0 = next(
        r for r in pq.read_table(tmp_path / "all" / "items.parquet").to_pylist() if r["item_id"] == "good0"
    )
    assert json.loads(good0["meta"])["select"] == {
        "mask_source": "provided",
        "mask_thresholded": True,
        "mask_rule": "grey >= 128",
    }
    assert (np.asarray(Image.open(tmp_path / "all" / good0["mask"])) > 0).sum() == 24 * 24
    assert all_rows["n_masks_thresholded"] == 1


def test_valid_images_in_other_modes_are_converted_by_the_recorded_rule(zoo, tmp_path):
    """Alpha composited over alpha_background, palette, CMYK, 16-bit and grey images: the subset
    holds RGB pixels equal to the rule's, the rule is in each item's meta and the metrics count them."""
    pool = tmp_path / "pool"
    pool.mkdir()
    bg = np.array([0, 128, 255], np.float64)
    alpha = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    a = alpha[..., None] / 255.0
    want: dict[str, np.ndarray] = {}
    rgba = np.dstack([_texture(1), alpha])
    (pool / "alpha.png").write_bytes(_png(rgba))
    want["alpha"] = np.rint(_texture(1) * a + bg * (1 - a)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(_texture(2)).convert("P").save(buf, format="PNG")
    (pool / "palette.png").write_bytes(buf.getvalue())
    want["palette"] = np.asarray(Image.open(pool / "palette.png").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(_texture(3)).convert("CMYK").save(buf, format="JPEG", quality=95)
    (pool / "cmyk.jpg").write_bytes(buf.getvalue())
    cmyk = np.asarray(Image.open(pool / "cmyk.jpg"), dtype=np.float64)
    want["cmyk"] = np.rint((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255).astype(np.uint8)
    deep = (_texture(4)[..., 0].astype(np.uint16) * 251) + 7
    (pool / "deep.png").write_bytes(_png(deep))
    want["deep"] = np.repeat(np.rint(deep / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    (pool / "grey.png").write_bytes(_png(_texture(5)[..., 1]))
    want["grey"] = np.repeat(_texture(5)[..., 1:2], 3, axis=2)
    (pool / "plain.png").write_bytes(_png(_texture(6)))
    want["plain"] = _texture(6)
    sidecar = [
        {"file_name": f.name, "task": "image_fill", "prompt": "a red circle"} for f in sorted(pool.iterdir())
    ]
    (pool / "items.jsonl").write_text("\n".join(json.dumps(r) for r in sidecar) + "\n")
    metrics = _run(pool, tmp_path / "subset", zoo, tmp_path / "cache", size=6, alpha_background="0,128,255")
    assert metrics["n_bad"] == 0 and metrics["n_selected"] == 6
    assert metrics["n_images_converted"] == metrics["n_selected_converted"] == 5
    assert metrics["images_converted_by_mode"] == {"CMYK": 1, "I;16": 1, "L": 1, "P": 1, "RGBA": 1}
    rows = {r["item_id"]: r for r in pq.read_table(tmp_path / "subset" / "items.parquet").to_pylist()}
    for item_id, pixels in want.items():
        with Image.open(tmp_path / "subset" / rows[item_id]["image"]) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), pixels, err_msg=item_id)
    rules = {i: json.loads(r["meta"])["select"].get("image_conversion") for i, r in rows.items()}
    assert rules == {
        "alpha": "RGBA with alpha -> RGB over 0,128,255",
        "palette": "P palette -> RGB (palette colours)",
        "cmyk": "CMYK -> RGB as (255 - C) * (255 - K) / 255, no colour profile",
        "deep": "I;16 16-bit grey -> 8-bit as round(v / 257), replicated",
        "grey": "L grey -> RGB (replicated)",
        "plain": None,
    }
    # another background gives other pixels, so the embedding cache must not hand back the old vector
    again = _run(pool, tmp_path / "white", zoo, tmp_path / "cache", size=6)
    assert again["n_cache_hits"] == 5 and again["n_embedded"] == 1
    with pytest.raises(
        InputError, match=r"select.alpha_background \(--alpha-background\): expected three integers"
    ):
        _run(pool, tmp_path / "x", zoo, tmp_path / "cache", size=6, alpha_background="white")


def test_object_removal_without_mask_is_refused(zoo, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "a.png").write_bytes(_png(_texture(0)))
    (pool / "items.jsonl").write_text(json.dumps({"file_name": "a.png", "task": "object_removal"}) + "\n")
    with pytest.raises(InputError, match="object_removal item\\(s\\) have no mask \\(e.g. a\\)"):
        _run(pool, tmp_path / "out", zoo, tmp_path / "cache", size=1)


def test_duplicates_removed(zoo, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(10):
        (pool / f"img{i}.png").write_bytes(_png(_texture(100 + i)))
    rng = np.random.default_rng(0)
    for i in range(3):
        (pool / f"copy{i}.png").write_bytes((pool / f"img{i}.png").read_bytes())  # exact duplicate
        noisy = _texture(100 + 3 + i).astype(int) + rng.integers(-2, 3, (64, 64, 3))
        (pool / f"near{i}.png").write_bytes(_png(noisy.clip(0, 255).astype(np.uint8)))  # near duplicate
    metrics = _run(pool, tmp_path / "out", zoo, tmp_path / "cache", size=16, dedup_threshold=0.9995)
    assert metrics["n_exact_duplicates"] == 3 and metrics["n_duplicates_skipped"] == 3
    assert metrics["n_selected"] == 10
    rows = pq.read_table(tmp_path / "out" / "items.parquet").to_pylist()
    for i in range(3):  # one of each duplicate group
        assert sum(r["item_id"] in (f"img{i}", f"copy{i}") for r in rows) == 1
        assert sum(r["item_id"] in (f"img{3 + i}", f"near{i}") for r in rows) == 1
    emb = np.load(tmp_path / "out" / "embeddings.npy")
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.9995


def test_cache_hit_on_rerun(zoo, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(12):
        (pool / f"img{i:02d}.png").write_bytes(_png(_texture(200 + i)))
    cache = tmp_path / "cache"
    first = _run(pool, tmp_path / "one", zoo, cache, size=5)
    assert (first["n_embedded"], first["n_cache_hits"]) == (12, 0)
    shards = list((cache / "embeddings").glob("*/shard-*.npz"))
    assert len(shards) == 1
    for i in range(12, 16):
        (pool / f"img{i:02d}.png").write_bytes(_png(_texture(200 + i)))
    second = _run(pool, tmp_path / "two", zoo, cache, size=5)
    assert (second["n_embedded"], second["n_cache_hits"]) == (4, 12)
    third = _run(pool, tmp_path / "three", zoo, cache, size=5)
    assert (third["n_embedded"], third["n_cache_hits"]) == (0, 16)
    assert pq.read_table(tmp_path / "two" / "items.parquet").equals(
        pq.read_table(tmp_path / "three" / "items.parquet")
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "two" / "embeddings.npy"), np.load(tmp_path / "three" / "embeddings.npy")
    )
    # A different model is a different cache folder; use_cache=False touches no cache.
    other_zoo = _clip_only_zoo(tmp_path / "zoo_other", seed=1)
    other = _run(pool, tmp_path / "four", other_zoo, cache, size=5)
    assert other["n_cache_hits"] == 0 and len(list((cache / "embeddings").iterdir())) == 2
    nocache = run(str(pool), str(tmp_path / "five"), size=5, zoo=str(zoo), cache_dir=str(tmp_path / "unused"),
                  use_cache=False, progress=False)  # fmt: skip
    assert nocache["n_embedded"] == 16 and not (tmp_path / "unused").exists()


def test_hf_dataset_pool_and_generated_masks(zoo, tmp_path):
    import datasets

    images = [Image.fromarray(_texture(300 + i)) for i in range(8)]
    ds = datasets.Dataset.from_dict(
        {"image": images, "task": ["image_fill", "image_extend"] * 4, "prompt": ["a blue square", None] * 4},
        features=datasets.Features(
            {"image": datasets.Image(), "task": datasets.Value("string"), "prompt": datasets.Value("string")}
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    metrics = _run(tmp_path / "ds", tmp_path / "out", zoo, tmp_path / "cache", size=4, extend_sides="right",
                   extend_ratios="0.5")  # fmt: skip
    assert metrics["n_pool"] == 8 and metrics["per_task"] == {
        "image_fill": 2,
        "image_extend": 2,
        "object_removal": 0,
    }
    assert metrics["n_masks_generated"] == 4
    for r in pq.read_table(tmp_path / "out" / "items.parquet").to_pylist():
        image = np.asarray(Image.open(tmp_path / "out" / r["image"]))
        mask = np.asarray(Image.open(tmp_path / "out" / r["mask"])) > 0
        if r["task"] == "image_extend":  # canvas grown by half its width on the right, then fitted to 64 px
            assert image.shape == (43, 64, 3) and mask[:, -1].all() and not mask[:, 0].any()
            assert np.all(image[mask] == 127)
        else:
            assert image.shape == (64, 64, 3) and 0.05 < mask.mean() < 0.6


def test_cli_runs_the_stage(synth_pool, zoo, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="onereward")
    sub = parser.add_subparsers(dest="command")
    select_cli.register(sub)
    args = parser.parse_args(
        ["select", "--pool", str(synth_pool), "--out", str(tmp_path / "s"), "--size", "6", "--zoo", str(zoo),
         "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--per-cluster", "2"]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_selected"] == 6 and printed["n_pool"] == 90
    clusters = pq.read_table(tmp_path / "s" / "clusters.parquet").to_pylist()
    assert all(c["n_selected"] <= 2 for c in clusters) and sum(c["n_selected"] for c in clusters) == 6
    help_text = sub.choices["select"].format_help()
    for flag in ("--pool", "--size", "--backend", "--dedup-threshold", "--max-bad-fraction"):
        assert flag in help_text


def test_bad_parameters_are_clear_errors(synth_pool, zoo, tmp_path, capsys):
    from onereward.cli import main

    rc = main(["select", "--pool", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), "--size", "3",
               "--zoo", str(zoo)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"onereward select: error: --pool: {tmp_path / 'nope'} is not a directory" in err
    with pytest.raises(InputError, match=r"select.size \(--size\): expected an integer >= 1, got 0"):
        _run(synth_pool, tmp_path / "x", zoo, tmp_path / "cache", size=0)
    with pytest.raises(
        InputError, match=r"select.backend \(--backend\): expected one of auto, sklearn, torch, faiss"
    ):
        _run(synth_pool, tmp_path / "x", zoo, tmp_path / "cache", size=3, backend="kmeans")
    with pytest.raises(
        InputError, match=r"select.cluster_device \(--cluster-device\): expected auto, cpu, cuda or cuda:N"
    ):
        _run(synth_pool, tmp_path / "x", zoo, tmp_path / "cache", size=3, cluster_device="gpu0")
    with pytest.raises(
        InputError,
        match=r"select.extend_ratios \(--extend-ratios\): expected a comma-separated list of float",
    ):
        _run(synth_pool, tmp_path / "x", zoo, tmp_path / "cache", size=3, extend_ratios="half")
