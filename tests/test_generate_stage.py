"""Stage generate_candidates on the tiny generators: parameters, determinism, strength, masks,
negative prompts, resume, shards + merge, bad inputs, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from onereward import tasks
from onereward.artifacts import ArtifactWriter, read_artifact
from onereward.cli import main as cli_main
from onereward.errors import InputError
from onereward.generate import stage
from onereward.generate.flux_sampler import FluxFillSampler
from onereward.generate.sampler import (
    CandidateSpec,
    ItemCondition,
    check_condition,
    generator_for,
    paste_back,
)
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.models import flux_fill, sd_inpaint
from onereward.synth.stage import make_pool
from onereward.tables import read_table, write_table

N_ITEMS = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generators")
    flux_fill.build_tiny(root / "flux_fill", seed=0)
    sd_inpaint.build_tiny(root / "sd_inpaint", seed=0)
    profile = root / "profile.yaml"
    profile.write_text(
        f"""
name: gentest
description: tiny generators built by the test
image_size: 64
models:
  clip: {{ref: "zoo:clip", arch: "onereward-tiny-vit"}}
  generator: {{ref: "{root / "flux_fill"}", family: flux_fill}}
  generator_sd: {{ref: "{root / "sd_inpaint"}", family: sd_inpaint}}
  reward_model: {{ref: "zoo:reward_vlm"}}
generate:
  num_candidates: 4
  min_steps: 2
  max_steps: 4
  batch_size: 16
  max_sequence_length: 32
  dtype: float32
"""
    )
    return {"root": root, "profile": profile, "flux": root / "flux_fill", "sd": root / "sd_inpaint"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool"
    make_pool(out, N_ITEMS, seed=3)
    return out


@pytest.fixture(scope="module")
def flux_run(
    models: dict[str, Path], pool: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "candidates"
    metrics = stage.run(str(pool), str(out), profile=str(models["profile"]), seed=7)
    return out, metrics


def test_candidates_artifact_follows_the_contract_and_records_varied_parameters(flux_run, pool: Path) -> None:
    out, metrics = flux_run
    read_artifact(out, kind="candidates")  # manifest and content hash verify
    items = read_table(out / "items.parquet")
    cands = read_table(out / "candidates.parquet")
    assert len(items) == N_ITEMS and len(cands) == 4 * N_ITEMS
    assert len({c["candidate_id"] for c in cands}) == len(cands)
    for c in cands:
        assert c["candidate_id"] == f"{c['item_id']}-c{c['index']}" and c["family"] == "flux_fill"
        assert 2 <= c["steps"] <= 4 and 2.0 <= c["cfg_scale"] <= 6.0 and 0.6 <= c["strength"] <= 1.0
        assert c["negative_prompt"] in ("", "nsfw", "blurry", "low quality", "blurry, low quality, distorted")
        assert c["guidance"] == 1.0 and c["feather"] == 0 and 1 <= c["executed_steps"] <= c["steps"]
        # the start's noise level: pure noise at strength 1, a shifted sigma below 1 otherwise
        assert (c["start_sigma"] == pytest.approx(1.0)) == (c["executed_steps"] == c["steps"])
        assert 0 < c["start_sigma"] <= 1.0
    for col in ("steps", "cfg_scale", "strength", "negative_prompt", "seed"):
        assert len({c[col] for c in cands}) > 1, col
    by_id = {r["item_id"]: r for r in items}
    for c in cands:
        assert c["prompt"] == tasks.effective_prompt(
            by_id[c["item_id"]]["task"], by_id[c["item_id"]]["prompt"]
        )
    for key in ("n_items", "n_candidates", "images_per_second", "steps_min", "steps_max", "cfg_scale_min"):
        assert key in metrics
    assert metrics["n_candidates"] == 16 and metrics["images_per_second"] > 0
    assert metrics["steps_min"] == min(c["steps"] for c in cands)
    assert metrics["strength_max"] == max(c["strength"] for c in cands)
    # text embeddings once per distinct prompt and negative prompt (every cfg here is > 1)
    distinct = {c["prompt"] for c in cands} | {c["negative_prompt"] for c in cands}
    assert metrics["n_text_encodings"] == len(distinct)
    # VAE encodings once per item, although an item's candidates span several batches
    spread = {c["item_id"]: set() for c in cands}
    for c in cands:
        spread[c["item_id"]].add(c["executed_steps"])
    assert max(len(v) for v in spread.values()) > 1 and metrics["n_vae_encodes"] == N_ITEMS
    # batches are planned over the whole shard: one batch per executed step count (16 <= batch 16)
    assert metrics["n_batches"] == len({c["executed_steps"] for c in cands})
    assert metrics["mean_batch_size"] == pytest.approx(16 / metrics["n_batches"], abs=1e-3)
    report = (out / "report.html").read_text()
    assert report.count("<img") >= N_ITEMS * (2 + 4) and "neg: " in report
    # The synthetic pool has targets: the oracle's figures per task and dimension, every candidate scored.
    assert set(metrics["oracle"]) == {r["task"] for r in items}
    for task, dims in metrics["oracle"].items():
        n_task = sum(1 for r in items if r["task"] == task)
        assert {d: v["n"] for d, v in dims.items()} == dict.fromkeys(dims, 4 * n_task)
    assert 0.0 <= metrics["oracle_gap_fraction"] <= 1.0 and metrics["oracle_gap_level"] == 0.02
    assert metrics["oracle_items"] == N_ITEMS and "Oracle (synthetic world)" in report


def test_pixels_outside_the_mask_equal_the_source(flux_run) -> None:
    out, _ = flux_run
    items = {r["item_id"]: r for r in read_table(out / "items.parquet")}
    for c in read_table(out / "candidates.parquet"):
        row = items[c["item_id"]]
        src, mask, cand = (
            load_rgb(out / row["image"]),
            load_mask(out / row["mask"]),
            load_rgb(out / c["image"]),
        )
        assert cand.shape == src.shape
        assert np.array_equal(cand[~mask], src[~mask])
        assert not np.array_equal(cand[mask], src[mask])  # something was generated inside


def test_feathered_paste_back_keeps_outside_and_blends_the_edge() -> None:
    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    gen = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    out = paste_back(src, gen, mask, feather=3)
    assert np.array_equal(out[~mask], src[~mask])
    assert np.array_equal(out[14:18, 14:18], gen[14:18, 14:18])  # deep inside: generated
    edge = out[8, 8:24].astype(float)
    assert not np.array_equal(edge, gen[8, 8:24]) and not np.array_equal(edge, src[8, 8:24])


@pytest.fixture(scope="module")
def flux_sampler(models: dict[str, Path]) -> FluxFillSampler:
    return FluxFillSampler(flux_fill.load(models["flux"]), max_sequence_length=32, batch_size=8)


def _item() -> ItemCondition:
    rng = np.random.default_rng(5)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    return ItemCondition("x", (rng.random((64, 64, 3)) * 255).astype(np.uint8), mask)


def test_same_seed_and_parameters_give_the_same_image(flux_sampler: FluxFillSampler) -> None:
    item = _item()
    spec = CandidateSpec("x", 0, "a red circle", "blurry", 4, 3.0, 0.8, 123, 1.0)
    a = flux_sampler.sample({"x": item}, [spec])[0]
    b = flux_sampler.sample({"x": item}, [spec])[0]
    assert np.array_equal(a, b)
    c = flux_sampler.sample(
        {"x": item}, [CandidateSpec("x", 0, "a red circle", "blurry", 4, 3.0, 0.8, 124, 1.0)]
    )[0]
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1  # another seed, another image


def test_strength_below_one_starts_from_the_noised_source_and_runs_fewer_steps(flux_sampler) -> None:
    item = _item()
    low = CandidateSpec("x", 0, "a red circle", "", 8, 1.0, 0.25, 9, 1.0)
    full = CandidateSpec("x", 1, "a red circle", "", 8, 1.0, 1.0, 9, 1.0)
    assert flux_sampler.executed_steps(8, 0.25) == 2 < flux_sampler.executed_steps(8, 1.0) == 8
    calls: list[int] = []
    hook = flux_sampler.transformer.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        flux_sampler.sample({"x": item}, [low])
        n_low = len(calls)
        flux_sampler.sample({"x": item}, [full])
    finally:
        hook.remove()
    assert (n_low, len(calls) - n_low) == (2, 8)  # transformer calls actually run
    with torch.no_grad():
        b_low = flux_sampler.prepare({"x": item}, [low])
        b_full = flux_sampler.prepare({"x": item}, [full])
        enc = flux_sampler._encode_item(item)
    assert b_low.n_steps == 2 and b_full.n_steps == 8
    assert float(b_full.sigmas[0, 0]) == pytest.approx(1.0) and float(b_low.sigmas[0, 0]) < 0.6
    # the start is the scheduler's mix sigma * noise + (1 - sigma) * source latents, with the
    # candidate's own generator drawing the source's VAE posterior sample and then the noise
    from diffusers.utils.torch_utils import randn_tensor

    gen = generator_for(9)
    vae = flux_sampler.vae.config
    eps = randn_tensor(enc["mean"][:1].shape, generator=gen, dtype=torch.float32)
    src = (enc["mean"][:1] + enc["std"][:1] * eps - vae.shift_factor) * vae.scaling_factor
    noise = randn_tensor(src.shape, generator=gen, dtype=torch.float32)
    sigma = b_low.sigmas[0, 0]

    def pack(x: torch.Tensor) -> torch.Tensor:
        return flux_sampler.pipe._pack_latents(x, 1, x.shape[1], x.shape[2], x.shape[3])

    torch.testing.assert_close(b_low.latents, pack(sigma * noise + (1 - sigma) * src))
    torch.testing.assert_close(b_full.latents, pack(noise))
    assert (b_low.latents - pack(noise)).abs().mean() > 0.1  # the source really enters
    assert flux_sampler.start_sigma((64, 64), low) == pytest.approx(float(sigma))


def test_a_negative_prompt_changes_the_output_and_needs_cfg_above_one(flux_sampler) -> None:
    item = _item()
    none, blurry = (
        CandidateSpec("x", 0, "a red circle", neg, 4, 4.0, 1.0, 77, 1.0) for neg in ("", "blurry")
    )
    a, b = flux_sampler.sample({"x": item}, [none, blurry])
    assert np.abs(a.astype(int) - b.astype(int)).max() > 2
    # at cfg 1 there is no negative pass: the negative prompt has no effect (documented)
    c, d = flux_sampler.sample(
        {"x": item},
        [CandidateSpec("x", 0, "a red circle", neg, 4, 1.0, 1.0, 77, 1.0) for neg in ("", "blurry")],
    )
    assert np.array_equal(c, d)


def test_resumed_run_skips_finished_items_and_has_no_duplicates(
    models, pool: Path, flux_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cands"
    calls: list[list[str]] = []
    interrupt_at = [6]  # the 6th batch of the first run; never again
    original = FluxFillSampler.sample

    def interrupted(self, items, specs):
        calls.append(sorted({s.item_id for s in specs}))
        if len(calls) == interrupt_at[0]:
            interrupt_at[0] = -1
            raise KeyboardInterrupt("simulated preemption")
        return original(self, items, specs)

    monkeypatch.setattr(FluxFillSampler, "sample", interrupted)
    kwargs = {"profile": str(models["profile"]), "seed": 7, "batch_size": 2}
    with pytest.raises(KeyboardInterrupt):
        stage.run(str(pool), str(out), **kwargs)
    staging = tmp_path / ".cands.partial"
    assert not out.exists() and staging.is_dir()
    finished = {p.stem for p in (staging / stage.PROGRESS_DIR).glob("*.json")} - {"params"}
    assert 1 <= len(finished) < N_ITEMS  # items are recorded as they finish, not all at the end
    calls.clear()
    metrics = stage.run(str(pool), str(out), **kwargs)
    assert metrics["n_items_resumed"] == len(finished)
    assert metrics["n_generated"] == 4 * (N_ITEMS - len(finished))
    assert all(not set(c) & finished for c in calls)  # finished items not regenerated
    cands = read_table(out / "candidates.parquet")
    assert len(cands) == 16 and len({c["candidate_id"] for c in cands}) == 16
    assert not staging.exists() and not (out / stage.PROGRESS_DIR).exists()
    # parameters equal the uninterrupted run's (seed and item id decide them)
    ref = {c["candidate_id"]: c for c in read_table(flux_run[0] / "candidates.parquet")}
    for c in cands:
        for col in ("steps", "cfg_scale", "strength", "negative_prompt", "seed", "start_sigma"):
            assert c[col] == ref[c["candidate_id"]][col]
    # a rerun on the finished artifact does nothing
    calls.clear()
    assert stage.run(str(pool), str(out), **kwargs)["n_candidates"] == 16 and not calls


def test_another_generator_model_is_not_taken_for_finished_work(models, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    kwargs = {"seed": 7, "num_candidates": 1, "shard": "0/4"}
    first = stage.run(str(pool), str(out), profile=str(models["profile"]), **kwargs)
    assert first["n_generated"] == 1
    again = stage.run(str(pool), str(out), profile=str(models["profile"]), **kwargs)
    assert again["n_generated"] == 1  # same generator: the finished artifact is returned as is
    other_dir = tmp_path / "flux_other"
    flux_fill.build_tiny(other_dir, seed=1)
    other_profile = tmp_path / "other.yaml"
    other_profile.write_text(models["profile"].read_text().replace(str(models["flux"]), str(other_dir)))
    image = out / read_table(out / "candidates.parquet")[0]["image"]
    before = load_rgb(image)
    metrics = stage.run(str(pool), str(out), profile=str(other_profile), **kwargs)
    assert metrics["n_generated"] == 1 and metrics["n_items_resumed"] == 0  # regenerated, not resumed
    assert read_artifact(out).parameters["generator"] == str(other_dir.resolve())
    assert not np.array_equal(load_rgb(image), before)


def test_shards_merge_into_the_full_run(models, pool: Path, flux_run, tmp_path: Path) -> None:
    shards = []
    for i in range(2):
        shards.append(str(tmp_path / f"s{i}"))
        stage.run(str(pool), shards[-1], profile=str(models["profile"]), seed=7, shard=f"{i}/2")
    sizes = [len(read_table(Path(s) / "items.parquet")) for s in shards]
    assert sizes == [2, 2]
    metrics = stage.merge(shards, str(tmp_path / "merged"))
    assert metrics["n_candidates"] == 16 and metrics["n_shards"] == 2
    assert set(metrics["oracle"]) == set(flux_run[1]["oracle"]) and metrics["oracle_items"] == N_ITEMS
    merged = read_table(tmp_path / "merged" / "candidates.parquet")
    full = {c["candidate_id"]: c for c in read_table(flux_run[0] / "candidates.parquet")}
    assert set(full) == {c["candidate_id"] for c in merged}
    for c in merged:
        assert c["seed"] == full[c["candidate_id"]]["seed"]
        a = load_rgb(tmp_path / "merged" / c["image"]).astype(int)
        b = load_rgb(flux_run[0] / c["image"]).astype(int)
        assert np.abs(a - b).max() <= 2  # same image up to batched-kernel rounding
    with pytest.raises(InputError, match=r"--shards.*exactly the shards 0/2 \.\. 1/2.*got 0/2, 0/2"):
        stage.merge([shards[0], shards[0]], str(tmp_path / "dup"))
    with pytest.raises(InputError, match=r"--shards.*exactly the shards 0/2 \.\. 1/2.*got 1/2$"):
        stage.merge([shards[1]], str(tmp_path / "incomplete"))
    assert not (tmp_path / "dup").exists() and not (tmp_path / "incomplete").exists()


def test_more_shards_than_items_gives_empty_shards_that_merge(models, pool: Path, tmp_path: Path) -> None:
    shards = [str(tmp_path / f"s{i}") for i in range(8)]
    for i, d in enumerate(shards):
        stage.run(
            str(pool),
            d,
            profile=str(models["profile"]),
            seed=7,
            num_candidates=1,
            max_steps=2,
            shard=f"{i}/8",
        )
    empty = read_table(Path(shards[7]) / "items.parquet")
    assert empty == [] and "item_id" in pq.read_schema(Path(shards[7]) / "items.parquet").names
    metrics = stage.merge(shards, str(tmp_path / "merged"))
    items = read_table(tmp_path / "merged" / "items.parquet")
    cands = read_table(tmp_path / "merged" / "candidates.parquet")
    pool_ids = sorted(r["item_id"] for r in read_table(pool / "items.parquet"))
    assert [r["item_id"] for r in items] == pool_ids  # every item once
    assert sorted(c["item_id"] for c in cands) == pool_ids and metrics["n_candidates"] == N_ITEMS


def _bad_pool(pool: Path, out: Path, how: str) -> Path:
    rows = read_table(pool / "items.parquet")[:1]
    with ArtifactWriter(out, kind="pool", stage="test") as art:
        row = dict(rows[0])
        shutil.copyfile(pool / row["image"], art.path / "img.png")
        row["image"] = "img.png"
        mask = load_mask(pool / row["mask"])
        if how == "zero":
            mask[:] = False
        elif how == "one":
            mask[:] = True
        elif how == "size":
            mask = mask[:, :32]
        elif how == "speck":  # 4x4 px: vanishes at the 1/8 latent size
            mask[:] = False
            mask[10:14, 10:14] = True
        if how == "null":
            row["mask"] = None
        else:
            save_png(art.path / "m.png", mask)
            row["mask"] = "m.png"
        write_table(art.path / "items.parquet", [row])
    return out


@pytest.mark.parametrize(
    ("how", "message"),
    [("zero", "all zero"), ("size", "does not match the image size"), ("null", "field 'mask' is null")],
)
def test_bad_masks_give_a_clear_error_and_write_nothing(
    models, pool: Path, tmp_path: Path, how, message
) -> None:
    bad = _bad_pool(pool, tmp_path / "bad", how)
    with pytest.raises(InputError, match=message):
        stage.run(str(bad), str(tmp_path / "out"), profile=str(models["profile"]))
    assert not (tmp_path / "out").exists()


def test_all_one_mask_item_is_generated_whole_by_the_stage(models, pool: Path, tmp_path: Path) -> None:
    one = _bad_pool(pool, tmp_path / "one", "one")
    out = tmp_path / "out"
    metrics = stage.run(
        str(one), str(out), profile=str(models["profile"]), num_candidates=2, strength_min=1.0
    )
    assert metrics["n_candidates"] == 2
    src = load_rgb(out / read_table(out / "items.parquet")[0]["image"])
    for c in read_table(out / "candidates.parquet"):
        cand = load_rgb(out / c["image"])
        assert cand.shape == src.shape
        changed = np.abs(cand.astype(int) - src.astype(int)).sum(axis=2) > 0
        assert changed.mean() > 0.9  # the whole image is generated, not just a region


def test_sd_mask_that_vanishes_at_latent_size_is_an_error_naming_the_item(
    models, pool: Path, tmp_path: Path
) -> None:
    bad = _bad_pool(pool, tmp_path / "speck", "speck")
    item_id = read_table(bad / "items.parquet")[0]["item_id"]
    with pytest.raises(InputError, match=rf"{item_id}: field 'mask' \(16 px\) vanishes at the sd_inpaint"):
        stage.run(str(bad), str(tmp_path / "out"), profile=str(models["profile"]), family="sd_inpaint")
    assert not (tmp_path / "out").exists()


def test_all_one_mask_is_generated_whole(flux_sampler) -> None:
    """Documented behaviour: an all-one mask is accepted and the whole image is generated."""
    item = _item()
    item.mask[:] = True
    check_condition(item)
    out = flux_sampler.sample({"x": item}, [CandidateSpec("x", 0, "a red circle", "", 2, 1.0, 1.0, 3, 1.0)])[
        0
    ]
    assert out.shape == item.image.shape and np.abs(out.astype(int) - item.image.astype(int)).mean() > 5


def test_sizes_off_the_latent_grid_come_back_at_the_source_size(flux_sampler) -> None:
    """Documented behaviour: a 40x56 item is resized to the generator's 16 px grid and back."""
    rng = np.random.default_rng(2)
    mask = np.zeros((40, 56), bool)
    mask[10:30, 20:50] = True
    item = ItemCondition("odd", (rng.random((40, 56, 3)) * 255).astype(np.uint8), mask)
    out = flux_sampler.sample(
        {"odd": item}, [CandidateSpec("odd", 0, "a red circle", "", 2, 1.0, 1.0, 3, 1.0)]
    )[0]
    assert out.shape == (40, 56, 3)
    pasted = paste_back(item.image, out, mask)
    assert np.array_equal(pasted[~mask], item.image[~mask])


def test_cli_generates_with_sd_inpaint_and_reports_bad_parameters(
    models, pool: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sd"
    argv = ["generate", "--subset", str(pool), "--out", str(out), "--profile", str(models["profile"])]
    rc = cli_main(
        [*argv, "--family", "sd_inpaint", "--num-candidates", "2", "--feather", "2", "--cfg-min", "3"]
    )
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["family"] == "sd_inpaint" and metrics["n_candidates"] == 2 * N_ITEMS
    cands = read_table(out / "candidates.parquet")
    assert {c["family"] for c in cands} == {"sd_inpaint"} and {c["feather"] for c in cands} == {2}
    assert all(c["guidance"] == 0.0 and c["cfg_scale"] >= 3 for c in cands)
    items = {r["item_id"]: r for r in read_table(out / "items.parquet")}
    for c in cands:
        src, mask = load_rgb(out / items[c["item_id"]]["image"]), load_mask(out / items[c["item_id"]]["mask"])
        assert np.array_equal(load_rgb(out / c["image"])[~mask], src[~mask])
    assert cli_main([*argv, "--shard", "2/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert cli_main([*argv, "--strength-min", "0"]) == 2
    assert "strength_min" in capsys.readouterr().err
