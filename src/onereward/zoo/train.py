"""``onereward zoo train``: train the tiny zoo's models on the synthetic world, reproducibly.

The tiny profile's FLUX-Fill and SD-inpainting models ship trained and its reward VLM pretrained
(``models/weights/``): training them takes longer than a zoo build may (see the README's benchmark
figures), so the package carries the small weights and this module reproduces them. The recipe of each family (the
architecture and :class:`~onereward.generate.train.GeneratorTrainConfig`) is :data:`RECIPES`;
``weights.json`` records the recipe it was trained with.

- each family's VAE first, as an autoencoder (``autoencoder``: FLUX's, 8 latent channels;
  ``autoencoder_sd``: SD's, 4 latent channels, the only count ``StableDiffusionInpaintPipeline``
  takes), both downsampling by 2;
- FLUX-Fill: its flow transformer with the rectified-flow objective on its VAE's latents;
- SD-inpainting: its UNet with the epsilon objective on its VAE's latents;
- the reward VLM: pairwise Yes/No SFT on the world's procedurally degraded candidates
  (:mod:`onereward.reward.pretrain`, recipe :data:`REWARD_RECIPE`).

Same recipe, torch build and thread count give bit-identical weights (the trainer is seeded and
single-threaded by default); :func:`compare_weights` reports how a retrained set differs from the
shipped one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from onereward.errors import InputError
from onereward.generate.train import GeneratorTrainConfig, TrainResult, synthetic_items, train_generator
from onereward.log import get_logger
from onereward.models import flux_fill, reward_vlm, sd_inpaint, trained
from onereward.reward.pretrain import RewardPretrainConfig, pretrain_reward_vlm

log = get_logger("zoo.train")

FAMILIES = ("flux_fill", "sd_inpaint")  # the generators
MODELS = (*FAMILIES, "reward_vlm")  # everything `zoo train` trains

# The architecture and training settings of the shipped weights (see the README's figures).
FLUX_SIZE = flux_fill.TinySize(
    latent_channels=8,
    vae_channels=(16, 32),  # two levels: f = 2, 32x32 latents, 256 tokens after 2x2 packing
    vae_mid_attention=False,
    heads=2,
    head_dim=32,
    axes_dims_rope=(8, 12, 12),
    num_layers=3,  # 3+3 blocks: background dimensions +0.1 over 2+2 (README, "Generator recipe, tried")
    num_single_layers=3,
)
SD_SIZE = sd_inpaint.TinySize(
    # StableDiffusionInpaintPipeline only takes 4 latent channels (a 9-channel UNet): SD gets its
    # own autoencoder, of the FLUX one's shape otherwise.
    latent_channels=4,
    vae_channels=(16, 32),
    vae_mid_attention=False,
    vae_quant_conv=False,
    unet_channels=(16, 32, 64),
    unet_attention=(False, True, True),
    unet_attention_heads=2,
)
# Each family's autoencoder stage (its run folder and recipe key).
AUTOENCODERS = {"flux_fill": "autoencoder", "sd_inpaint": "autoencoder_sd"}
RECIPES: dict[str, tuple[Any, GeneratorTrainConfig]] = {
    # The VAEs, trained first as autoencoders (steps = 0: no denoiser).
    "autoencoder": (
        FLUX_SIZE,
        GeneratorTrainConfig(
            family="flux_fill",
            vae_steps=4000,
            vae_edge_weight=4.0,
            vae_latent_noise=0.2,
            steps=0,
            train_items=3000,
        ),
    ),
    "autoencoder_sd": (
        SD_SIZE,
        GeneratorTrainConfig(
            family="sd_inpaint",
            vae_steps=3000,
            vae_edge_weight=4.0,
            vae_latent_noise=0.2,
            steps=0,
            train_items=3000,
        ),
    ),
    "flux_fill": (
        FLUX_SIZE,
        GeneratorTrainConfig(
            family="flux_fill",
            vae_steps=0,
            steps=9000,
            learning_rate=2e-3,
            outside_mask_weight=0.1,
            timestep_sampling="logit_normal",
            eval_cfg=3.0,
        ),
    ),
    "sd_inpaint": (
        SD_SIZE,
        GeneratorTrainConfig(
            family="sd_inpaint",
            vae_steps=0,
            steps=4000,
            learning_rate=2e-3,
            outside_mask_weight=0.1,
            eval_cfg=3.0,
        ),
    ),
}

# The reward VLM's pretraining (the zoo's architecture, TinySize()).
REWARD_RECIPE = RewardPretrainConfig(items=5000, steps=6000, learning_rate=2e-3)


def train_stage(
    name: str,
    out: str | os.PathLike[str],
    *,
    overrides: dict[str, Any] | None = None,
    vae_from: str | os.PathLike[str] | None = None,
) -> tuple[TrainResult, GeneratorTrainConfig]:
    """Train one stage of the recipe (a key of :data:`RECIPES`) on the synthetic world into ``out``
    (``out/model`` the pipeline folder, ``out/report.html``...).

    ``overrides`` replace recipe settings that apply to the stage (``vae_steps`` only to the
    autoencoders, ``steps`` only to the denoisers); held-out items: seed ``seed + 1``.
    """
    if name not in RECIPES:
        raise InputError(f"--family: unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    size, cfg = RECIPES[name]
    skip = ("steps",) if name in AUTOENCODERS.values() else ("vae_steps",)
    changes = {k: v for k, v in (overrides or {}).items() if k not in skip}
    cfg = replace(cfg, **changes) if changes else cfg
    items = synthetic_items(cfg.train_items, cfg.seed, cfg.image_size, text_fraction=cfg.text_fraction)
    holdout = synthetic_items(cfg.holdout_items, cfg.seed + 1, cfg.image_size) if cfg.holdout_items else []
    return train_generator(items, out, cfg, holdout=holdout, size=size, vae_from=vae_from), cfg


def train_zoo_generators(
    out: str | os.PathLike[str],
    *,
    families: tuple[str, ...] = FAMILIES,
    install: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the zoo's generators into ``out/<family>/`` and export their weights into
    ``out/weights/<family>/`` (``install``: also into the package's ``models/weights``).

    Each family's autoencoder is trained first into ``out/<autoencoder stage>`` unless a finished
    one is there already (a rerun after an interruption goes on with the denoiser).
    ``overrides`` replace recipe settings (e.g. ``{"steps": 50}`` for a quick check; such weights
    differ from the shipped ones).
    """
    out = Path(out)
    summary: dict[str, Any] = {}
    for family in FAMILIES:
        if family not in families:
            continue
        vae_run = out / AUTOENCODERS[family]
        if not (vae_run / "model" / "vae" / "config.json").is_file():
            log.info("training the %s autoencoder into %s", family, vae_run)
            train_stage(AUTOENCODERS[family], vae_run, overrides=overrides)
        vae_metrics = json.loads((vae_run / "metrics.json").read_text())
        vae_curve = json.loads((vae_run / "curve.json").read_text())["vae"]
        result, cfg = train_stage(family, out / family, overrides=overrides, vae_from=vae_run / "model")
        components = _load(family, result.model_dir).components
        final = result.evaluations[-1]["scores"] if result.evaluations else {}
        run = {
            "timings": result.timings,
            "autoencoder_timings": vae_metrics["timings"],
            "parameters": result.parameters,
            "final_loss": result.curve[-1]["loss"] if result.curve else None,
            "curve": result.curve[:: max(1, len(result.curve) // 40)],
            "vae_curve": vae_curve[:: max(1, len(vae_curve) // 40)],
            "evaluations": [{"step": e["step"], "scores": e["scores"]} for e in result.evaluations],
            "vae_ceiling": result.vae_ceiling,
            "holdout_normalised": final,
        }
        recipe = {**cfg.to_dict(), "autoencoder": vae_metrics["settings"]}
        dest = trained.export_weights(
            components, family, out / "weights" / family, size=RECIPES[family][0], recipe=recipe, summary=run
        )
        if install:
            target = trained.weights_dir(family)
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(dest, target)
            log.info("installed %s weights into %s", family, target)
        summary[family] = {
            "weights": str(dest),
            **{k: run[k] for k in ("timings", "final_loss", "holdout_normalised")},
        }
    return summary


def train_zoo_reward_vlm(
    out: str | os.PathLike[str], *, install: bool = False, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Pretrain the zoo's reward VLM into ``out/reward_vlm`` and export its weights into
    ``out/weights/reward_vlm`` (``install``: also into the package). ``overrides`` replace
    :data:`REWARD_RECIPE` fields (``steps``, ``items``...; such weights differ from the shipped)."""
    out = Path(out)
    cfg = replace(REWARD_RECIPE, **(overrides or {}))
    result = pretrain_reward_vlm(out / "reward_vlm", cfg)
    m = result.metrics
    curve = m["curve"]
    run = {
        "timings": m["timings"],
        "final_loss": m["final_train_loss"],
        "curve": curve[:: max(1, len(curve) // 40)],
        "holdout_accuracy": m["accuracy"],
        "holdout_mean_accuracy": m["mean_accuracy"],
        "n_train_pairs": m["n_train_pairs"],
        "n_test_pairs": m["n_test_pair_total"],
    }
    model = reward_vlm.load(result.model_dir).model
    dest = trained.export_weights(
        {"model": model}, "reward_vlm", out / "weights" / "reward_vlm",
        size=reward_vlm.TinySize(), recipe=cfg.to_dict(), summary=run,
    )  # fmt: skip
    if install:
        target = trained.weights_dir("reward_vlm")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(dest, target)
        log.info("installed reward_vlm weights into %s", target)
    return {"reward_vlm": {"weights": str(dest), **{k: run[k] for k in ("timings", "final_loss")},
                           "holdout_mean_accuracy": m["mean_accuracy"]}}  # fmt: skip


def _load(family: str, folder: Path) -> Any:
    return (flux_fill if family == "flux_fill" else sd_inpaint).load(folder)


def compare_weights(
    family: str, a: str | os.PathLike[str], b: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Compare two weights folders of ``family`` (each holding ``<part>.safetensors``; ``b``
    default: the shipped one): per part whether the files are byte-identical and the largest
    absolute difference of any tensor."""
    from safetensors.torch import load_file

    pa, pb = Path(a), Path(b) if b is not None else trained.weights_dir(family)
    out: dict[str, Any] = {}
    for part in trained.PARTS[family]:
        fa, fb = pa / f"{part}.safetensors", pb / f"{part}.safetensors"
        ta, tb = load_file(str(fa)), load_file(str(fb))
        same_shapes = ta.keys() == tb.keys() and all(ta[k].shape == tb[k].shape for k in ta)
        diff = (
            max((float((ta[k].float() - tb[k].float()).abs().max()) for k in ta), default=0.0)
            if same_shapes
            else float("inf")  # another architecture: not comparable tensor by tensor
        )
        out[part] = {
            "identical": fa.read_bytes() == fb.read_bytes(),
            "same_shapes": same_shapes,
            "max_abs_diff": diff,
        }
    return out
