"""The embedded world learns: the shipped trained generators follow prompts where non-learning fills
cannot, keep the source outside the mask, a brief retraining from scratch learns, training is
deterministic, and a zoo of an older builder is rebuilt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from onereward import tasks
from onereward.artifacts import ArtifactError, ArtifactWriter, read_artifact
from onereward.errors import InputError
from onereward.generate.config import GenerateConfig
from onereward.generate.train import (
    GeneratorTrainConfig,
    TrainItem,
    draw_u,
    sample_candidates,
    sample_holdout,
    synthetic_items,
    train_generator,
)
from onereward.models import flux_fill, sd_inpaint, trained
from onereward.profile import load_profile
from onereward.synth import baselines, scoring

HELD_OUT_SEED = 4242  # no training run uses it

# A small architecture for retraining inside the test budget (the recipe's is in zoo.train).
QUICK_SIZE = flux_fill.TinySize(
    latent_channels=4,
    vae_channels=(8, 16),
    vae_mid_attention=False,
    heads=2,
    head_dim=16,
    axes_dims_rope=(4, 6, 6),
    num_layers=1,
    num_single_layers=1,
)


# A small transformer on the shipped autoencoder's latents (8 channels, f = 2).
QUICK_DENOISER = replace(QUICK_SIZE, latent_channels=8, vae_channels=(16, 32))


def _prompted(n: int, seed: int = HELD_OUT_SEED) -> list[TrainItem]:
    """Held-out items whose prompt names a shape or a word (shape fill, extend with a prompt, text)."""
    items = synthetic_items(4 * n, seed, text_fraction=0.25)
    return [it for it in items if tasks.TEXT_ALIGNMENT in tasks.dimensions_for(it.task, it.prompt)][:n]


@pytest.fixture(scope="module")
def trained_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("trained")
    flux_fill.build_trained(root / "flux_fill")
    sd_inpaint.build_trained(root / "sd_inpaint")
    return {"flux_fill": root / "flux_fill", "sd_inpaint": root / "sd_inpaint"}


@pytest.fixture(scope="module")
def pipes(trained_dirs: dict) -> dict:
    return {
        "flux_fill": flux_fill.load(trained_dirs["flux_fill"]),
        "sd_inpaint": sd_inpaint.load(trained_dirs["sd_inpaint"]),
    }


def _text_alignment(items: list[TrainItem], images: list[np.ndarray]) -> float:
    values = []
    for it, image in zip(items, images, strict=True):
        a = baselines.anchors(it.task, it.source, it.mask, it.prompt, it.target, item_id=it.item_id)
        raw = scoring.score_results(
            it.item_id, it.task, it.source, it.mask, it.prompt, it.target, [image], item_anchors=a
        )
        values.append(raw[0].normalised[tasks.TEXT_ALIGNMENT])
    return float(np.mean(values))


def test_trained_generator_beats_nearest_pixel_on_text_alignment(pipes: dict) -> None:
    items = _prompted(24)
    with torch.no_grad():
        images = sample_holdout(pipes["flux_fill"], "flux_fill", items, steps=8, cfg_scale=3.0, seed=0)
    trained_ta = _text_alignment(items, images)
    nearest_ta = _text_alignment(items, [baselines.nearest_pixel_fill(it.source, it.mask) for it in items])
    assert nearest_ta < -0.3  # no prompted colour at all: below the noise floor
    assert trained_ta > nearest_ta + 0.5, (trained_ta, nearest_ta)
    assert trained_ta > 0.0  # and above noise


@pytest.mark.parametrize("family", ["flux_fill", "sd_inpaint"])
def test_pixels_outside_the_mask_are_the_source(pipes: dict, family: str) -> None:
    items = synthetic_items(6, HELD_OUT_SEED + 1)
    gen = GenerateConfig.resolve(load_profile("tiny").generate, family=family, seed=3)
    with torch.no_grad():
        candidates = sample_candidates(pipes[family], family, items, gen)
    for it, images in zip(items, candidates, strict=True):
        assert len(images) == gen.num_candidates
        for image in images:
            assert image.shape == it.source.shape and image.dtype == np.uint8
            assert np.array_equal(image[~it.mask], it.source[~it.mask])
        # Candidates differ inside the mask (the sampled parameters and seeds matter).
        assert any(not np.array_equal(images[0][it.mask], other[it.mask]) for other in images[1:])


def test_brief_retraining_from_scratch_learns(tmp_path: Path, trained_dirs: dict) -> None:
    """A short run of the real recipe on small models: the autoencoder's reconstruction loss falls;
    a transformer trained from scratch on the shipped autoencoder's latents lowers its
    flow-matching loss and follows held-out prompts better than before training."""
    vae_cfg = GeneratorTrainConfig(
        train_items=200,
        holdout_items=0,
        vae_steps=120,
        vae_batch_size=16,
        vae_edge_weight=4.0,
        steps=0,
        log_every=10,
    )
    vae_run = train_generator(synthetic_items(200, 0), tmp_path / "vae", vae_cfg, size=QUICK_SIZE)
    assert vae_run.vae_curve[-1]["l1"] < 0.7 * vae_run.vae_curve[0]["l1"]

    cfg = GeneratorTrainConfig(
        train_items=400,
        holdout_items=24,
        vae_steps=0,
        steps=300,
        learning_rate=3e-3,
        warmup_steps=20,
        ema_decay=0.0,
        outside_mask_weight=0.1,
        eval_every=0,
        eval_steps=4,
        eval_cfg=5.0,
        log_every=10,
    )
    items = synthetic_items(cfg.train_items, 0, text_fraction=0.0)
    holdout = _prompted(cfg.holdout_items, HELD_OUT_SEED + 2)
    out = tmp_path / "run"
    result = train_generator(
        items, out, cfg, holdout=holdout, size=QUICK_DENOISER, vae_from=trained_dirs["flux_fill"]
    )
    assert result.curve[-1]["loss"] < 0.6 * result.curve[0]["loss"]
    before, after = result.evaluations[0]["scores"], result.evaluations[-1]["scores"]
    gains = [
        after[v][tasks.TEXT_ALIGNMENT] - before[v][tasks.TEXT_ALIGNMENT]
        for v in (scoring.SHAPE_FILL, scoring.EXTEND_PROMPT)
    ]
    assert min(gains) > 0.0 and np.mean(gains) > 0.1, (before, after)  # measured: +0.05 and +0.27
    # The run's outputs: a pipeline folder that loads, curves, report, TensorBoard events.
    assert flux_fill.load(out / "model").transformer.config.in_channels == flux_fill.fill_in_channels(8, 2)
    assert (out / "report.html").read_text().count("<img") >= 2 * 2
    assert list((out / "tensorboard").glob("events.*"))
    assert (out / "metrics.json").is_file() and (out / "curve.json").is_file()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    pipe = flux_fill.load(folder)
    return {
        f"{part}.{k}": v
        for part in ("vae", "transformer")
        for k, v in getattr(pipe, part).state_dict().items()
    }


def test_same_seed_same_weights(tmp_path: Path) -> None:
    cfg = GeneratorTrainConfig(
        train_items=24, holdout_items=0, vae_steps=4, vae_batch_size=4, steps=4, batch_size=4, warmup_steps=1
    )
    items = synthetic_items(cfg.train_items, 0)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_generator(items, tmp_path / name, replace(cfg, seed=seed), size=QUICK_SIZE)
    a, b, c = (_weights(tmp_path / n / "model") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(InputError, match=r"train_generator\.uncond_probability"):
        GeneratorTrainConfig(uncond_probability=1.5)
    with pytest.raises(InputError, match=r"train_generator\.vae_crop"):
        GeneratorTrainConfig(vae_crop=12)
    with pytest.raises(InputError, match=r"train_generator\.family"):
        GeneratorTrainConfig(family="dalle")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"train_generator\.logit_std"):
        GeneratorTrainConfig(timestep_sampling="logit_normal", logit_std=0.0)
    with pytest.raises(InputError, match=r"train_generator\.timestep_sampling"):
        GeneratorTrainConfig(timestep_sampling="cosine")  # type: ignore[arg-type]


def test_timestep_sampling() -> None:
    """Uniform draws cover (0, 1) evenly; logit-normal ones are sigmoid(N(m, s)): their logits have
    that mean and std, so mid noise levels are drawn more often than the ends."""
    n = 20000
    uniform = draw_u(n, GeneratorTrainConfig(), torch.Generator().manual_seed(0))
    assert float(uniform.min()) >= 0.0 and float(uniform.max()) < 1.0
    assert abs(float((uniform < 0.1).float().mean()) - 0.1) < 0.01
    cfg = GeneratorTrainConfig(timestep_sampling="logit_normal", logit_mean=0.5, logit_std=0.8)
    u = draw_u(n, cfg, torch.Generator().manual_seed(0))
    logits = torch.log(u / (1 - u))
    assert abs(float(logits.mean()) - 0.5) < 0.03 and abs(float(logits.std()) - 0.8) < 0.03
    assert float(((u < 0.1) | (u > 0.9)).float().mean()) < 0.1  # uniform: 0.2


def test_shipped_weights_are_small_verified_safetensors(tmp_path: Path) -> None:
    total = 0
    for family, parts in trained.PARTS.items():
        index = trained.read_index(family)
        assert set(index["files"]) == set(parts) and index["dtype"] == "float16"
        for part in parts:
            total += (trained.weights_dir(family) / f"{part}.safetensors").stat().st_size
        assert index["summary"]["timings"]["total_s"] > 0  # the training record ships too
    assert total < 6e6
    # A corrupted file is refused, naming the file and the index field.
    import shutil

    copy = tmp_path / "weights"
    shutil.copytree(trained.WEIGHTS_DIR, copy)
    path = copy / "flux_fill" / "transformer.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="files.transformer"):
        flux_fill.build_trained(tmp_path / "bad", weights_root=copy)


def test_zoo_of_an_older_builder_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached zoo whose recorded builder differs (here: random-weight generators of builder 1) is
    rebuilt in place by ensure_zoo, and refused when passed explicitly."""
    from onereward import zoo

    monkeypatch.setenv("ONEREWARD_CACHE", str(tmp_path / "cache"))
    prof = load_profile("tiny")
    target = zoo.cache_root() / "zoo" / f"{prof.name}-{prof.models_sha}-{zoo.code_sha()}-seed0"
    old = {"profile": prof.name, "models_sha": prof.models_sha, "code_sha": "0123456789abcdef", "seed": 0}
    with ArtifactWriter(target, kind="zoo", stage="build_zoo", parameters=old) as art:
        flux_fill.build_tiny(art.path / "flux_fill", seed=0)  # what builder 1 made: random weights
    with pytest.raises(ArtifactError, match="another zoo builder"):
        zoo.verify_zoo("tiny", target)
    path = zoo.ensure_zoo("tiny")
    assert path == target
    manifest = read_artifact(path, kind="zoo")
    assert manifest.parameters["code_sha"] == zoo.code_sha()
    assert manifest.parameters["builder_version"] == zoo.BUILDER_VERSION
    shipped = flux_fill.load(path / "flux_fill").transformer.state_dict()
    ref = tmp_path / "ref"
    flux_fill.build_trained(ref)
    assert all(torch.equal(v, flux_fill.load(ref).transformer.state_dict()[k]) for k, v in shipped.items())
    assert zoo.verify_zoo("tiny", path).content_hash == manifest.content_hash
    assert (
        zoo.ensure_zoo("tiny") == path and read_artifact(path).created_at == manifest.created_at
    )  # reused now


def test_zoo_train_cli_exports_weights_and_compares_with_the_shipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``onereward zoo train`` (a few steps here): shared autoencoder, then the family, exported as
    the package ships them and compared with the shipped weights."""
    import json

    from onereward.cli import main

    out = tmp_path / "train"
    args = ["zoo", "train", "--out", str(out), "--family", "flux_fill", "--steps", "2", "--vae-steps", "2"]
    assert main([*args, "--items", "24", "--holdout", "4"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[: printed.rindex("}") + 1])
    compared = summary["flux_fill"]["compared_with_shipped"]
    assert set(compared) == set(trained.PARTS["flux_fill"])
    assert not compared["transformer"]["identical"] and compared["transformer"]["max_abs_diff"] > 0
    index = trained.read_index("flux_fill", out / "weights")
    assert index["recipe"]["steps"] == 2 and index["recipe"]["autoencoder"]["vae_steps"] == 2
    assert (out / "autoencoder" / "report.html").is_file() and (out / "flux_fill" / "report.html").is_file()
    # The exported weights build a zoo model exactly as the shipped ones do.
    flux_fill.build_trained(tmp_path / "built", weights_root=out / "weights")
    assert flux_fill.load(tmp_path / "built").transformer.config.in_channels == 8 * 8 + 4 * 2 * 2
