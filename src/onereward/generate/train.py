"""Train a mask-guided generator (FLUX-Fill-style or SD-inpainting-style) on (source, mask, prompt) items.

The same code trains the tiny zoo's generators on the synthetic world and fine-tunes a generator
on a user's pool. Conditioning is exactly what the diffusers pipelines feed their denoisers (and
what our samplers reproduce), so a trained folder samples unchanged with
:class:`~onereward.generate.flux_sampler.FluxFillSampler` / ``SDInpaintSampler``:

- **flux_fill**: the packed noisy latents, the packed latents of the masked image
  ``x * (1 - m)`` (shifted and scaled) and the mask folded from ``f x f`` pixel blocks
  (``FluxFillPipeline.prepare_mask_latents``); T5 embeddings and the pooled CLIP embedding of the
  task's effective prompt; the distilled-guidance input ``guidance``. Objective: rectified flow
  (FLUX's flow matching): ``x_t = (1 - s) x_0 + s e``, the transformer predicts ``v = e - x_0`` at
  timestep ``s``; ``s`` is drawn as ``u ~ U(0, 1)`` moved by the resolution-dependent shift the
  sampler uses (``calculate_shift``), so training sees the noise levels sampling visits.
- **sd_inpaint**: the noisy latents, the mask resized to latent size (nearest) and the scaled
  latents of ``x * (m < 0.5)``; CLIP hidden states of the prompt. Objective: epsilon prediction
  with DDPM noising at ``t ~ U{0..999}`` (the scheduler's ``add_noise``).

Recipe (:func:`train_generator`):

1. **VAE** (``vae_steps > 0``): trained as an autoencoder (L1 reconstruction + ``vae_kl_weight``
   KL) on crops of targets, sources and masked sources, most crops centred on the mask (where
   generated pixels are kept); then its latent statistics set ``scaling_factor`` (and, for FLUX,
   ``shift_factor``) so the denoiser sees unit-variance latents.
2. The items' latents (posterior mean and std of target and masked source) are computed once.
3. **Denoiser** (transformer or UNet): AdamW with warm-up and cosine decay, an EMA copy (saved),
   the prompt replaced by ``""`` with probability ``uncond_probability`` (so that true CFG and
   negative prompts have an unconditional branch to push from), tokens outside the mask weighted
   by ``outside_mask_weight`` (the pipeline pastes the source back there).
4. Held-out items are sampled every ``eval_every`` steps with our sampler; with targets the oracle
   scores them (normalised, :mod:`onereward.synth.baselines`).

Determinism: every random draw comes from generators seeded with ``seed`` and the run uses
``threads`` CPU threads, so the same seed, data, settings, torch build and thread count give
bit-identical weights. Progress: tqdm bars, throughput in the log, TensorBoard scalars under
``out/tensorboard``; ``out/report.html`` shows the loss curves, the held-out scores over training
and held-out samples; the model is saved with ``save_pretrained`` into ``out/model``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from onereward import tasks
from onereward.config import Config, setting
from onereward.errors import InputError
from onereward.log import Throughput, get_logger

log = get_logger("generate.train")

MODEL_DIR = "model"  # the saved pipeline folder inside the output directory


@dataclass(frozen=True)
class GeneratorTrainConfig(Config):
    """Settings of one generator training run (see the module docstring for the recipe)."""

    section: ClassVar[str] = "train_generator"

    family: Literal["flux_fill", "sd_inpaint"] = setting(
        "flux_fill", "Generator family: FLUX-Fill-style flow transformer or SD-inpainting UNet."
    )
    seed: int = setting(0, "Seed of the initial weights, the data order and every noise draw.")
    threads: int = setting(1, "CPU threads torch uses (weights are bit-identical only for the same count).")
    image_size: int = setting(64, "Side in pixels items are trained at (resized when they differ).")
    train_items: int = setting(12000, "Synthetic items to train on when no pool is given.")
    text_fraction: float = setting(0.5, "Share of synthetic image_fill items that render text.")
    holdout_items: int = setting(48, "Held-out items sampled to evaluate (0 = no evaluation).")
    vae_steps: int = setting(3000, "Autoencoder training steps (0 = keep the VAE as given).")
    vae_batch_size: int = setting(32, "Crops per autoencoder step.")
    vae_crop: int = setting(32, "Side of the autoencoder's training crops in pixels.")
    vae_learning_rate: float = setting(2e-3, "Peak autoencoder learning rate (cosine decay).")
    vae_kl_weight: float = setting(1e-6, "Weight of the KL term of the autoencoder loss.")
    vae_focus: float = setting(0.75, "Share of autoencoder crops centred on the mask (the rest anywhere).")
    vae_edge_weight: float = setting(
        0.0, "Extra L1 weight of pixels at colour edges (thin strokes blur first)."
    )
    vae_latent_noise: float = setting(
        0.0, "Largest std of noise added to latents before decoding in autoencoder training (robust decoder)."
    )
    steps: int = setting(6000, "Denoiser training steps.")
    batch_size: int = setting(16, "Items per denoiser step.")
    learning_rate: float = setting(1e-3, "Peak denoiser learning rate (warm-up, then cosine decay).")
    warmup_steps: int = setting(200, "Linear learning-rate warm-up steps of the denoiser.")
    weight_decay: float = setting(0.0, "AdamW weight decay of the denoiser.")
    ema_decay: float = setting(0.999, "Decay of the denoiser's EMA (the saved weights); 0 = no EMA.")
    uncond_probability: float = setting(
        0.1, "Probability that an item's prompt is replaced by the empty prompt."
    )
    outside_mask_weight: float = setting(0.2, "Loss weight of latent tokens with no masked pixel.")
    timestep_sampling: Literal["uniform", "logit_normal"] = setting(
        "uniform",
        "FLUX: how the noise level u is drawn before the time shift: uniform, or logit-normal "
        "(sigmoid of N(logit_mean, logit_std), SD3's choice: more steps at mid noise).",
    )
    logit_mean: float = setting(0.0, "Mean of the logit-normal timestep sampling.")
    logit_std: float = setting(1.0, "Std of the logit-normal timestep sampling.")
    guidance: float = setting(
        1.0, "FLUX distilled-guidance input during training (the profile samples with 1)."
    )
    max_sequence_length: int = setting(
        32, "T5 tokens per prompt (the profile's generate.max_sequence_length)."
    )
    eval_every: int = setting(1000, "Denoiser steps between held-out evaluations (0 = only at the end).")
    eval_steps: int = setting(8, "Inference steps of the held-out samples.")
    eval_cfg: float = setting(1.0, "True-CFG scale of the held-out samples (1 = no negative pass).")
    log_every: int = setting(25, "Steps averaged per point of the loss curve and TensorBoard.")

    def validate(self) -> None:
        for name in ("threads", "image_size", "vae_batch_size", "batch_size", "eval_steps", "log_every"):
            self.require(getattr(self, name) >= 1, name, "expected an integer >= 1")
        for name in ("train_items",):
            self.require(getattr(self, name) >= 1, name, "expected an integer >= 1")
        for name in ("holdout_items", "vae_steps", "steps", "warmup_steps", "eval_every"):
            self.require(getattr(self, name) >= 0, name, "expected an integer >= 0")
        self.require(self.seed >= 0, "seed", "expected an integer >= 0")
        self.require(self.image_size % 16 == 0, "image_size", "expected a multiple of 16")
        self.require(
            8 <= self.vae_crop <= self.image_size and self.vae_crop % 8 == 0,
            "vae_crop",
            f"expected a multiple of 8 in [8, image_size={self.image_size}]",
        )
        for name in ("vae_learning_rate", "learning_rate", "logit_std"):
            self.require(getattr(self, name) > 0, name, "expected a number > 0")
        self.require(math.isfinite(self.logit_mean), "logit_mean", "expected a finite number")
        for name in ("vae_kl_weight", "vae_edge_weight", "vae_latent_noise", "weight_decay", "guidance"):
            self.require(getattr(self, name) >= 0, name, "expected a number >= 0")
        for name in ("text_fraction", "vae_focus", "uncond_probability", "outside_mask_weight"):
            self.require(0.0 <= getattr(self, name) <= 1.0, name, "expected a number in [0, 1]")
        self.require(0.0 <= self.ema_decay < 1.0, "ema_decay", "expected a number in [0, 1)")
        self.require(self.eval_cfg >= 1.0, "eval_cfg", "expected a number >= 1")
        self.require(self.max_sequence_length >= 8, "max_sequence_length", "expected an integer >= 8")


# ---- data ---------------------------------------------------------------------------------------


@dataclass
class TrainItem:
    """One training example: what the generator sees (source, mask, prompt) and should produce."""

    item_id: str
    task: str
    source: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW bool, True = generate
    prompt: str | None  # the user prompt (None for removal / prompt-less extension)
    target: np.ndarray  # HxWx3 uint8: the ideal result (a user's image when there is no target)
    has_target: bool = True  # False: ``target`` is the source itself (a user's pool)

    @property
    def effective_prompt(self) -> str:
        return tasks.effective_prompt(self.task, self.prompt)


def synthetic_items(
    n: int, seed: int, image_size: int = 64, *, text_fraction: float = 0.25
) -> list[TrainItem]:
    """``n`` items of the synthetic world (:func:`onereward.synth.world.sample_items`) with targets."""
    from onereward.synth import world

    return [
        TrainItem(it["item_id"], it["task"], it["source"], it["mask"], it["prompt"], it["target"])
        for it in world.iter_items(n, seed, image_size, text_fraction=text_fraction)
    ]


def pool_items(pool: str | os.PathLike[str], image_size: int | None = None) -> list[TrainItem]:
    """Items of a ``pool`` or ``subset`` artifact. Rows need a mask; a row with a ``target`` trains
    towards it (the synthetic world), one without trains to reproduce its own image inside the mask
    (plain inpainting on a user's images). Images are resized to ``image_size`` when given."""
    from PIL import Image

    from onereward.artifacts import read_artifact
    from onereward.imageio import load_mask, load_rgb
    from onereward.tables import read_table

    read_artifact(pool, kind=("pool", "subset"), what="--pool")
    root = Path(pool)
    rows = read_table(root / "items.parquet", required=("item_id", "task", "image", "prompt"), what="--pool")
    out = []
    for row in rows:
        where = f"--pool items.parquet item {row['item_id']!r}"
        tasks.check_task(row["task"], where=f"{where} field 'task'")
        if not row.get("mask"):
            raise InputError(f"{where}: field 'mask' is null; generator training needs a mask for every item")
        source = load_rgb(root / row["image"])
        mask = load_mask(root / row["mask"])
        target_rel = row.get("target")
        target = load_rgb(root / target_rel) if target_rel else source
        if image_size and source.shape[:2] != (image_size, image_size):
            size = (image_size, image_size)
            source = np.asarray(Image.fromarray(source).resize(size, Image.BICUBIC))
            target = np.asarray(Image.fromarray(target).resize(size, Image.BICUBIC))
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) >= 128
        if not mask.any():
            raise InputError(f"{where}: field 'mask' is empty (at {image_size} px); expected a masked region")
        out.append(
            TrainItem(row["item_id"], row["task"], source, mask, row["prompt"], target, bool(target_rel))
        )
    if not out:
        raise InputError(f"--pool: {root} has no items")
    return out


def _pixels(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> (B, 3, H, W) float32 in [-1, 1] (as diffusers' processors make them)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _masks(masks: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]


# ---- schedules ----------------------------------------------------------------------------------


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def flux_shift_mu(scheduler_config: Any, image_seq_len: int) -> float:
    """The resolution-dependent shift ``mu`` the FLUX sampler uses (``calculate_shift``)."""
    from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift

    cfg = scheduler_config
    return calculate_shift(
        image_seq_len,
        cfg.get("base_image_seq_len", 256),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.5),
        cfg.get("max_shift", 1.15),
    )


def draw_u(n: int, cfg: GeneratorTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """``n`` noise levels in (0, 1) before the time shift: uniform, or logit-normal
    (``sigmoid(N(logit_mean, logit_std))``, Esser et al. 2024, section 3.1)."""
    if cfg.timestep_sampling == "logit_normal":
        return torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(n, generator=gen))
    return torch.rand(n, generator=gen)


def shifted_sigmas(u: torch.Tensor, mu: float) -> torch.Tensor:
    """``exp(mu) / (exp(mu) + 1/u - 1)``: the scheduler's exponential time shift of ``u`` in (0, 1]."""
    u = u.clamp(1e-4, 1.0)
    return math.exp(mu) / (math.exp(mu) + (1.0 / u - 1.0))


# ---- results ------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a training run did: curves, held-out scores, timings."""

    family: str
    model_dir: Path
    vae_curve: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    vae_ceiling: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model_dir": str(self.model_dir),
            "vae_curve": self.vae_curve,
            "curve": self.curve,
            "evaluations": self.evaluations,
            "timings": self.timings,
            "parameters": self.parameters,
            "vae_ceiling": self.vae_ceiling,
        }


class _Seeded:
    """Torch threads and seeds for one run, restored afterwards (no hidden global state leaks)."""

    def __init__(self, cfg: GeneratorTrainConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> _Seeded:
        self.threads = torch.get_num_threads()
        self.rng = torch.random.get_rng_state()
        torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.threads)
        torch.random.set_rng_state(self.rng)


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per purpose (VAE data, denoiser data, noise...)."""
    return torch.Generator().manual_seed(int(seed) * 1000 + stream)


# ---- VAE ----------------------------------------------------------------------------------------


def _mask_centres(items: Sequence[TrainItem]) -> np.ndarray:
    out = np.zeros((len(items), 2), dtype=np.int64)
    for k, it in enumerate(items):
        ys, xs = np.nonzero(it.mask)
        out[k] = ((ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2)
    return out


def _edges(x: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W): 1 where a pixel differs from a 4-neighbour by more than ``threshold`` (in
    [-1, 1] units, any channel), else 0."""
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(1, keepdim=True) > threshold
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().amax(1, keepdim=True) > threshold
    e = torch.zeros_like(x[:, :1], dtype=torch.bool)
    e[:, :, :, 1:] |= dx
    e[:, :, :, :-1] |= dx
    e[:, :, 1:, :] |= dy
    e[:, :, :-1, :] |= dy
    return e.float()


def train_vae(
    vae: Any,
    items: Sequence[TrainItem],
    cfg: GeneratorTrainConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``vae`` (an ``AutoencoderKL``) in place as an autoencoder; returns its loss curve.

    Each step takes ``vae_batch_size`` crops of side ``vae_crop`` from the items' targets, sources
    and masked sources (masked area mid-grey, as the pipelines' masked images), a share
    ``vae_focus`` of them centred on the mask with a jitter of a quarter crop; loss = mean |x' - x|
    + ``vae_kl_weight`` * KL, with the latent sampled from the posterior.
    """
    images = []
    for it in items:
        masked = it.source.copy()
        masked[it.mask] = 128  # 0 in [-1, 1]: what x * (1 - m) gives
        images.extend((it.target, it.source, masked))
    pixels = _pixels(images)
    centres = np.repeat(_mask_centres(items), 3, axis=0)
    gen = _generator(cfg.seed, 1)
    size, crop = pixels.shape[-1], cfg.vae_crop
    jitter = crop // 4
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_learning_rate, weight_decay=0.0)
    vae.train().requires_grad_(True)
    curve: list[dict[str, float]] = []
    window: list[float] = []
    with Throughput("steps") as tp:
        for step in tqdm(range(cfg.vae_steps), desc="VAE", unit="step", mininterval=5):
            for group in opt.param_groups:
                group["lr"] = cfg.vae_learning_rate * lr_factor(step, 0, cfg.vae_steps)
            index = torch.randint(0, len(pixels), (cfg.vae_batch_size,), generator=gen)
            focus = torch.rand(cfg.vae_batch_size, generator=gen) < cfg.vae_focus
            shifts = torch.randint(-jitter, jitter + 1, (cfg.vae_batch_size, 2), generator=gen)
            anywhere = torch.randint(0, size - crop + 1, (cfg.vae_batch_size, 2), generator=gen)
            crops = []
            for k, i in enumerate(index.tolist()):
                if focus[k]:
                    cy, cx = (centres[i] + shifts[k].numpy()).tolist()
                    y0 = int(np.clip(cy - crop // 2, 0, size - crop))
                    x0 = int(np.clip(cx - crop // 2, 0, size - crop))
                else:
                    y0, x0 = anywhere[k].tolist()
                crops.append(pixels[i, :, y0 : y0 + crop, x0 : x0 + crop])
            x = torch.stack(crops)
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            if cfg.vae_latent_noise:
                # The decoder will see the denoiser's imperfect latents: teach it to map slightly
                # perturbed latents to clean pixels (a std drawn per crop up to vae_latent_noise).
                level = cfg.vae_latent_noise * torch.rand(len(z), 1, 1, 1, generator=gen)
                z = z + level * torch.randn(z.shape, generator=gen)
            recon = vae.decode(z).sample
            err = (recon - x).abs()
            l1 = err.mean()
            loss = cfg.vae_kl_weight * posterior.kl().mean()
            if cfg.vae_edge_weight:
                # Thin strokes (letters) and contours are few pixels and the first to blur.
                loss = loss + (err * (1.0 + cfg.vae_edge_weight * _edges(x))).mean()
            else:
                loss = loss + l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tp.add(1)
            window.append(l1.item())
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.vae_steps:
                entry = {"step": done, "l1": float(np.mean(window)), "seconds": time.perf_counter() - tp.t0}
                curve.append(entry)
                window = []
                if on_step is not None:
                    on_step(done, entry)
    vae.eval().requires_grad_(False)
    log.info("VAE: %s", tp)
    return curve


@torch.no_grad()
def calibrate_vae(vae: Any, items: Sequence[TrainItem], family: str, n: int = 512) -> dict[str, float]:
    """Set the VAE's ``scaling_factor`` (and ``shift_factor`` for FLUX) from the latents of up to
    ``n`` targets: FLUX latents become ``(z - mean) / std``, SD latents ``z / rms`` (its pipeline
    applies no shift)."""
    sample = [it.target for it in items[:n]]
    z = torch.cat(
        [vae.encode(_pixels(sample[i : i + 64])).latent_dist.mean for i in range(0, len(sample), 64)]
    )
    if family == "flux_fill":
        shift, scale = float(z.mean()), float(1.0 / z.std())
    else:
        shift, scale = None, float(1.0 / z.pow(2).mean().sqrt())
    vae.register_to_config(
        scaling_factor=round(scale, 6), shift_factor=None if shift is None else round(shift, 6)
    )
    return {"scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.shift_factor or 0.0}


@dataclass
class EncodedItems:
    """Posterior means and stds of the targets and the masked sources, masks and prompt ids."""

    target_mean: torch.Tensor
    target_std: torch.Tensor
    masked_mean: torch.Tensor
    masked_std: torch.Tensor
    masks: torch.Tensor  # (N, 1, H, W) float
    prompt_ids: torch.Tensor  # (N,) index into ``prompts``
    prompts: list[str]


@torch.no_grad()
def encode_items(vae: Any, items: Sequence[TrainItem], family: str, batch: int = 64) -> EncodedItems:
    """Encode every item once: the target and the masked source as the family's pipeline masks it
    (FLUX ``x * (1 - m)``, SD ``x * (m < 0.5)``; equal for binary masks)."""
    t_mean, t_std, m_mean, m_std = [], [], [], []
    for s in tqdm(range(0, len(items), batch), desc="encode", unit="batch", mininterval=5):
        chunk = items[s : s + batch]
        target = _pixels([it.target for it in chunk])
        source = _pixels([it.source for it in chunk])
        mask = _masks([it.mask for it in chunk])
        masked = source * (1 - mask) if family == "flux_fill" else source * (mask < 0.5)
        post = vae.encode(torch.cat([target, masked])).latent_dist
        n = len(chunk)
        t_mean.append(post.mean[:n])
        t_std.append(post.std[:n])
        m_mean.append(post.mean[n:])
        m_std.append(post.std[n:])
    prompts = sorted({it.effective_prompt for it in items} | {""})
    index = {p: k for k, p in enumerate(prompts)}
    return EncodedItems(
        torch.cat(t_mean),
        torch.cat(t_std),
        torch.cat(m_mean),
        torch.cat(m_std),
        _masks([it.mask for it in items]),
        torch.tensor([index[it.effective_prompt] for it in items]),
        prompts,
    )


# ---- denoisers ----------------------------------------------------------------------------------


class _EMA:
    """Exponential moving average of a module's parameters (kept in float32)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        # The usual warm-up of the decay: early averages do not drag the random initialisation along.
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow)


@torch.no_grad()
def _flux_text(pipe: Any, prompts: list[str], max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    embeds, pooled, _ = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        device="cpu",
        num_images_per_prompt=1,
        max_sequence_length=max_sequence_length,
    )
    return embeds, pooled


@torch.no_grad()
def _sd_text(pipe: Any, prompts: list[str]) -> torch.Tensor:
    embeds, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    return embeds


class FluxObjective:
    """Rectified-flow loss of a FLUX-Fill transformer on a batch of encoded items."""

    def __init__(self, pipe: Any, data: EncodedItems, cfg: GeneratorTrainConfig) -> None:
        self.pipe, self.data, self.cfg = pipe, data, cfg
        vae = pipe.vae
        self.scale, self.shift = vae.config.scaling_factor, vae.config.shift_factor or 0.0
        self.c = int(vae.config.latent_channels)
        self.f = int(pipe.vae_scale_factor)
        self.size = data.masks.shape[-1]
        self.h = self.w = 2 * (self.size // (2 * self.f))
        self.embeds, self.pooled = _flux_text(pipe, data.prompts, cfg.max_sequence_length)
        self.uncond = data.prompts.index("")
        self.mu = flux_shift_mu(pipe.scheduler.config, (self.h // 2) * (self.w // 2))
        self.img_ids = pipe._prepare_latent_image_ids(1, self.h // 2, self.w // 2, "cpu", torch.float32)
        self.txt_ids = torch.zeros(self.embeds.shape[1], 3)

    def loss(self, transformer: Any, index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        d, b, cfg = self.data, len(index), self.cfg
        pipe, c, h, w = self.pipe, self.c, self.h, self.w
        x0 = d.target_mean[index] + d.target_std[index] * torch.randn(
            d.target_mean[index].shape, generator=gen
        )
        x0 = pipe._pack_latents((x0 - self.shift) * self.scale, b, c, h, w)
        masked = d.masked_mean[index] + d.masked_std[index] * torch.randn(
            d.masked_mean[index].shape, generator=gen
        )
        mask_packed, masked_packed = pipe.prepare_mask_latents(
            d.masks[index], masked, b, c, 1, self.size, self.size, torch.float32, "cpu", None
        )
        condition = torch.cat((masked_packed, mask_packed), dim=-1)
        prompt = d.prompt_ids[index].clone()
        drop = torch.rand(b, generator=gen) < cfg.uncond_probability
        prompt[drop] = self.uncond
        sigma = shifted_sigmas(draw_u(b, cfg, gen), self.mu)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma.view(-1, 1, 1)
        x_t = (1.0 - s) * x0 + s * noise
        pred = transformer(
            hidden_states=torch.cat((x_t, condition), dim=2),
            timestep=sigma,
            guidance=torch.full((b,), cfg.guidance) if transformer.config.guidance_embeds else None,
            pooled_projections=self.pooled[prompt],
            encoder_hidden_states=self.embeds[prompt],
            txt_ids=self.txt_ids,
            img_ids=self.img_ids,
            return_dict=False,
        )[0]
        per_token = (pred - (noise - x0)).pow(2).mean(-1)
        inside = (mask_packed.amax(-1) > 0).float()
        weight = inside + cfg.outside_mask_weight * (1.0 - inside)
        return (per_token * weight).sum() / weight.sum()


class SDObjective:
    """Epsilon-prediction loss of an SD-inpainting UNet on a batch of encoded items."""

    def __init__(self, pipe: Any, data: EncodedItems, cfg: GeneratorTrainConfig) -> None:
        import torch.nn.functional as F

        self.pipe, self.data, self.cfg = pipe, data, cfg
        self.scale = pipe.vae.config.scaling_factor
        f = int(pipe.vae_scale_factor)
        n = data.masks.shape[-1] // f
        self.small_masks = F.interpolate(data.masks, size=(n, n))  # nearest, as the pipeline
        self.embeds = _sd_text(pipe, data.prompts)
        self.uncond = data.prompts.index("")
        self.alphas = pipe.scheduler.alphas_cumprod.to(torch.float32)
        self.n_train = int(pipe.scheduler.config.num_train_timesteps)

    def loss(self, unet: Any, index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        d, b, cfg = self.data, len(index), self.cfg
        x0 = d.target_mean[index] + d.target_std[index] * torch.randn(
            d.target_mean[index].shape, generator=gen
        )
        x0 = x0 * self.scale
        masked = d.masked_mean[index] + d.masked_std[index] * torch.randn(
            d.masked_mean[index].shape, generator=gen
        )
        small = self.small_masks[index]
        prompt = d.prompt_ids[index].clone()
        prompt[torch.rand(b, generator=gen) < cfg.uncond_probability] = self.uncond
        t = torch.randint(0, self.n_train, (b,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = self.alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(
            torch.cat([x_t, small, masked * self.scale], dim=1), t, encoder_hidden_states=self.embeds[prompt]
        ).sample
        per_pixel = (pred - noise).pow(2).mean(1, keepdim=True)
        weight = small + cfg.outside_mask_weight * (1.0 - small)
        return (per_pixel * weight).sum() / weight.sum()


def train_denoiser(
    pipe: Any,
    data: EncodedItems,
    cfg: GeneratorTrainConfig,
    *,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_eval: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Train the pipeline's transformer (FLUX) or UNet (SD) in place; returns the loss curve.

    The EMA weights (when ``ema_decay > 0``) replace the trained ones at the end and at every
    ``on_eval`` call (the raw weights are restored afterwards).
    """
    flux = cfg.family == "flux_fill"
    model = pipe.transformer if flux else pipe.unet
    objective = FluxObjective(pipe, data, cfg) if flux else SDObjective(pipe, data, cfg)
    for part in ("vae", "text_encoder", "text_encoder_2"):
        if getattr(pipe, part, None) is not None:
            getattr(pipe, part).requires_grad_(False)
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    ema = _EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    gen = _generator(cfg.seed, 2)
    n = len(data.prompt_ids)
    curve: list[dict[str, float]] = []
    window: list[float] = []

    def evaluate(step: int) -> None:
        if on_eval is None:
            return
        raw = copy.deepcopy(model.state_dict()) if ema is not None else None
        if ema is not None:
            ema.copy_to(model)
        model.eval()
        on_eval(step)
        if raw is not None:
            model.load_state_dict(raw)
        model.train()

    with Throughput("steps") as tp:
        bar = tqdm(range(cfg.steps), desc="transformer" if flux else "unet", unit="step", mininterval=5)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * lr_factor(step, cfg.warmup_steps, cfg.steps)
            index = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            loss = objective.loss(model, index, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update(model, step)
            tp.add(1)
            window.append(loss.item())
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                entry = {
                    "step": done,
                    "loss": float(np.mean(window)),
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - tp.t0,
                }
                curve.append(entry)
                window = []
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                if on_log is not None:
                    on_log(done, entry)
            if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
                evaluate(done)
    if ema is not None:
        ema.copy_to(model)
    model.eval().requires_grad_(False)
    log.info("%s: %s (%.1f items/s)", "transformer" if flux else "unet", tp, tp.rate * cfg.batch_size)
    return curve


# ---- evaluation ---------------------------------------------------------------------------------


def sample_holdout(
    pipe: Any,
    family: str,
    items: Sequence[TrainItem],
    *,
    steps: int,
    cfg_scale: float,
    seed: int,
    max_sequence_length: int = 32,
    strength: float = 1.0,
    negative_prompt: str = "",
) -> list[np.ndarray]:
    """One candidate per item from our sampler (pasted back into the source)."""
    from onereward.generate.sampler import CandidateSpec, ItemCondition, paste_back

    if family == "flux_fill":
        from onereward.generate.flux_sampler import FluxFillSampler

        sampler: Any = FluxFillSampler(pipe, max_sequence_length=max_sequence_length, batch_size=16)
    else:
        from onereward.generate.sd_sampler import SDInpaintSampler

        sampler = SDInpaintSampler(pipe, batch_size=16)
    conditions = {it.item_id: ItemCondition(it.item_id, it.source, it.mask) for it in items}
    specs = [
        CandidateSpec(
            it.item_id,
            0,
            it.effective_prompt,
            negative_prompt,
            steps,
            cfg_scale,
            strength,
            seed + k,
            1.0 if family == "flux_fill" else 0.0,
        )
        for k, it in enumerate(items)
    ]
    images = sampler.sample(conditions, specs)
    return [paste_back(it.source, img, it.mask) for it, img in zip(items, images, strict=True)]


def candidate_specs(items: Sequence[TrainItem], generate: Any) -> list[list[Any]]:
    """The candidate specs (steps, CFG, strength, negative prompt, seed) the generate stage draws
    for each item under ``generate`` (a ``GenerateConfig``), in candidate order."""
    from onereward.generate.stage import sample_specs

    return [sample_specs(it.item_id, it.effective_prompt, generate) for it in items]


def sample_candidates(
    pipe: Any, family: str, items: Sequence[TrainItem], generate: Any, *, batch_size: int = 16
) -> list[list[np.ndarray]]:
    """Candidates of every item as the generate stage draws them: ``generate`` (a
    ``GenerateConfig``: candidates per item, step / CFG / strength ranges, negative prompts, seed)
    gives each item's specs (``generate.stage.sample_specs``); results are pasted back with the
    config's feather. Returns one list of images per item."""
    from onereward.generate.sampler import ItemCondition, paste_back

    if family == "flux_fill":
        from onereward.generate.flux_sampler import FluxFillSampler

        sampler: Any = FluxFillSampler(
            pipe, max_sequence_length=generate.max_sequence_length, batch_size=batch_size
        )
    else:
        from onereward.generate.sd_sampler import SDInpaintSampler

        sampler = SDInpaintSampler(pipe, batch_size=batch_size)
    conditions = {it.item_id: ItemCondition(it.item_id, it.source, it.mask) for it in items}
    specs = [s for per_item in candidate_specs(items, generate) for s in per_item]
    images = sampler.sample(conditions, specs)
    out: dict[str, list[np.ndarray]] = {it.item_id: [] for it in items}
    by_id = {it.item_id: it for it in items}
    for spec, image in sorted(zip(specs, images, strict=True), key=lambda p: (p[0].item_id, p[0].index)):
        it = by_id[spec.item_id]
        out[spec.item_id].append(paste_back(it.source, image, it.mask, generate.feather))
    return [out[it.item_id] for it in items]


@torch.no_grad()
def reconstruct(vae: Any, items: Sequence[TrainItem]) -> list[np.ndarray]:
    """The items' targets through the autoencoder (posterior mean), pasted back into the sources."""
    from onereward.generate.sampler import paste_back, to_uint8

    out = []
    for s in range(0, len(items), 64):
        chunk = items[s : s + 64]
        decoded = vae.decode(vae.encode(_pixels([it.target for it in chunk])).latent_dist.mean).sample
        out.extend(
            paste_back(it.source, img, it.mask) for it, img in zip(chunk, to_uint8(decoded), strict=True)
        )
    return out


def score_holdout(items: Sequence[TrainItem], images: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean normalised oracle score per variant and dimension (items with targets only)."""
    from onereward.synth.scoring import score_results, summarise

    scores = []
    for it, image in zip(items, images, strict=True):
        if it.has_target:
            scores.extend(
                score_results(it.item_id, it.task, it.source, it.mask, it.prompt, it.target, [image])
            )
    if not scores:
        return {}
    table = summarise(scores, level=0.0)["oracle_by_variant"]
    return {v: {d: s["normalised"] for d, s in dims.items()} for v, dims in table.items()}


# ---- the run ------------------------------------------------------------------------------------


def _components(cfg: GeneratorTrainConfig, init: str | os.PathLike[str] | None, size: Any) -> dict[str, Any]:
    """Pipeline components to start from: a folder (fine-tuning) or the tiny model of ``size``
    initialised with ``seed``."""
    from onereward.models import flux_fill, sd_inpaint

    module = flux_fill if cfg.family == "flux_fill" else sd_inpaint
    if init is None:
        return module.tiny_components(cfg.seed, size)
    pipe = module.load(init)
    return dict(pipe.components)


def train_generator(
    items: Sequence[TrainItem],
    out: str | os.PathLike[str],
    cfg: GeneratorTrainConfig,
    *,
    holdout: Sequence[TrainItem] = (),
    init: str | os.PathLike[str] | None = None,
    size: Any = None,
    vae_from: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a generator on ``items`` and save it with ``save_pretrained`` into ``out/model``.

    ``init``: a pipeline folder of the family to fine-tune (default: the tiny model of ``size``,
    the family's ``TinySize``, initialised with ``seed``); ``vae_from``: a folder whose ``vae/``
    replaces the VAE before training (e.g. a shared, already trained autoencoder; set ``vae_steps``
    to 0 to keep it as it is). The VAE's scaling (and shift) are recalibrated whenever it was
    trained or replaced. ``holdout`` items are sampled and scored every ``eval_every`` steps and at
    the end (with ``steps = 0`` only the autoencoder trains, and only its ceiling is scored). Also writes ``out/metrics.json``,
    ``out/curve.json``, ``out/report.html`` and TensorBoard scalars in ``out/tensorboard``.
    """
    from torch.utils.tensorboard import SummaryWriter

    if not items:
        raise InputError("items: nothing to train on")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = TrainResult(cfg.family, out / MODEL_DIR)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    writer = SummaryWriter(str(out / "tensorboard"))
    holdout = list(holdout)[: cfg.holdout_items] if cfg.holdout_items else []
    with _Seeded(cfg):
        comps = _components(cfg, init, size)
        if vae_from is not None:
            from diffusers import AutoencoderKL

            comps["vae"] = AutoencoderKL.from_pretrained(str(Path(vae_from) / "vae"), local_files_only=True)
        pipe = _pipeline(cfg.family, comps)
        pipe.set_progress_bar_config(disable=True)
        denoiser = pipe.transformer if cfg.family == "flux_fill" else pipe.unet
        result.parameters = {
            "vae": sum(p.numel() for p in pipe.vae.parameters()),
            "denoiser": sum(p.numel() for p in denoiser.parameters()),
        }
        t0, c0 = time.perf_counter(), time.process_time()
        if cfg.vae_steps:

            def vae_log(step: int, entry: dict[str, float]) -> None:
                writer.add_scalar("vae/l1", entry["l1"], step)

            result.vae_curve = train_vae(pipe.vae, items, cfg, on_step=vae_log)
        result.timings["vae_s"] = round(time.perf_counter() - t0, 2)
        result.timings["vae_cpu_s"] = round(time.process_time() - c0, 2)
        if cfg.vae_steps or vae_from is not None or init is None:
            calib = calibrate_vae(pipe.vae, items, cfg.family)
            log.info(
                "VAE latents: scaling_factor %.4f, shift_factor %.4f",
                calib["scaling_factor"],
                calib["shift_factor"],
            )
        if holdout and any(it.has_target for it in holdout):
            # What any denoiser can reach at most: the targets through the autoencoder, pasted back.
            result.vae_ceiling = score_holdout(holdout, reconstruct(pipe.vae, holdout))
            log.info("VAE ceiling on held-out targets: %s", _brief(result.vae_ceiling))
        t0 = time.perf_counter()
        data = encode_items(pipe.vae, items if cfg.steps else items[:1], cfg.family)
        result.timings["encode_s"] = round(time.perf_counter() - t0, 2)

        def evaluate(step: int) -> None:
            if not holdout:
                return
            t = time.perf_counter()
            images = sample_holdout(
                pipe,
                cfg.family,
                holdout,
                steps=cfg.eval_steps,
                cfg_scale=cfg.eval_cfg,
                seed=cfg.seed,
                max_sequence_length=cfg.max_sequence_length,
            )
            scores = score_holdout(holdout, images)
            result.evaluations.append(
                {
                    "step": step,
                    "scores": scores,
                    "seconds": round(time.perf_counter() - t, 2),
                    "_images": images,
                }
            )
            for variant, dims in scores.items():
                for dim, value in dims.items():
                    writer.add_scalar(f"holdout/{variant}/{dim}", value, step)
            log.info("step %d held-out: %s", step, _brief(scores))

        def denoiser_log(step: int, entry: dict[str, float]) -> None:
            writer.add_scalar("denoiser/loss", entry["loss"], step)
            writer.add_scalar("denoiser/lr", entry["lr"], step)

        if cfg.steps:  # steps = 0 trains the autoencoder only: nothing to sample yet
            evaluate(0)
        t0, c0 = time.perf_counter(), time.process_time()
        result.curve = train_denoiser(pipe, data, cfg, on_log=denoiser_log, on_eval=evaluate)
        result.timings["denoiser_s"] = round(time.perf_counter() - t0, 2)
        result.timings["denoiser_cpu_s"] = round(time.process_time() - c0, 2)
        if cfg.steps:
            evaluate(cfg.steps)
        save_pipeline(pipe, out / MODEL_DIR)
    writer.close()
    result.timings["total_s"] = round(time.perf_counter() - t_start, 2)
    # CPU seconds of this process: the figure to compare on a shared machine (wall time also
    # counts the time other processes hold the cores).
    result.timings["total_cpu_s"] = round(time.process_time() - cpu_start, 2)
    _write_outputs(out, result, cfg, holdout)
    return result


def _pipeline(family: str, comps: dict[str, Any]) -> Any:
    from onereward.models import flux_fill, sd_inpaint

    return (flux_fill if family == "flux_fill" else sd_inpaint).pipeline_from_components(comps)


def save_pipeline(pipe: Any, folder: str | os.PathLike[str]) -> None:
    """``save_pretrained`` (safetensors) into a temp folder beside ``folder``, then rename."""
    import shutil
    import uuid

    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _brief(scores: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{v}: " + " ".join(f"{d[:4]} {s:+.2f}" for d, s in dims.items())
        for v, dims in sorted(scores.items())
    )


def _write_outputs(
    out: Path, result: TrainResult, cfg: GeneratorTrainConfig, holdout: Sequence[TrainItem]
) -> None:
    """metrics.json, curve.json and report.html of a finished run."""
    from onereward.artifacts import write_json_atomic

    final = result.evaluations[-1]["scores"] if result.evaluations else {}
    metrics = {
        "family": cfg.family,
        "settings": cfg.to_dict(),
        "parameters": result.parameters,
        "timings": result.timings,
        "final_loss": result.curve[-1]["loss"] if result.curve else None,
        "first_loss": result.curve[0]["loss"] if result.curve else None,
        "vae_final_l1": result.vae_curve[-1]["l1"] if result.vae_curve else None,
        "steps_per_second": round(cfg.steps / result.timings["denoiser_s"], 3)
        if result.timings.get("denoiser_s")
        else None,
        "holdout": final,
        "vae_ceiling": result.vae_ceiling,
    }
    write_json_atomic(out / "metrics.json", metrics)
    evaluations = [{k: v for k, v in e.items() if k != "_images"} for e in result.evaluations]
    write_json_atomic(
        out / "curve.json", {"vae": result.vae_curve, "denoiser": result.curve, "evaluations": evaluations}
    )
    write_report(out / "report.html", result, cfg, holdout)


def write_report(
    path: Path, result: TrainResult, cfg: GeneratorTrainConfig, holdout: Sequence[TrainItem]
) -> None:
    """Loss curves, held-out scores over training and a grid of held-out samples (first and last
    evaluation beside source and target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from onereward.report import figure_data_uri, html_table, img_tag, png_data_uri, write_html_report

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    if result.vae_curve:
        axes[0].plot([e["step"] for e in result.vae_curve], [e["l1"] for e in result.vae_curve], color="#47a")
    axes[0].set_title("VAE reconstruction L1")
    axes[0].set_xlabel("step")
    axes[1].plot([e["step"] for e in result.curve], [e["loss"] for e in result.curve], color="#a47")
    axes[1].set_title("flow-matching loss" if cfg.family == "flux_fill" else "epsilon loss")
    axes[1].set_xlabel("step")
    axes[1].set_yscale("log")
    sections = [
        (
            "Summary",
            html_table(
                ["field", "value"],
                [
                    ["family", cfg.family],
                    *[[k, v] for k, v in result.timings.items()],
                    *result.parameters.items(),
                ],
            ),
        ),
        ("Loss curves", f'<img src="{figure_data_uri(fig)}" style="max-width:100%"/>'),
    ]
    if result.evaluations and result.evaluations[-1]["scores"]:
        keys = sorted({(v, d) for e in result.evaluations for v, dims in e["scores"].items() for d in dims})
        rows = [
            [e["step"], *(f"{e['scores'].get(v, {}).get(d, float('nan')):+.3f}" for v, d in keys)]
            for e in result.evaluations
        ]
        sections.append(
            (
                "Held-out normalised oracle scores ((r - floor) / (target - floor); 0 = noise, 1 = target)",
                html_table(["step", *(f"{v} {d}" for v, d in keys)], rows),
            )
        )
    if result.evaluations and holdout:
        first, last = result.evaluations[0], result.evaluations[-1]
        grid = []
        for k, it in enumerate(holdout[:16]):
            grid.append(
                [
                    f"<div>{it.item_id}<br><span class='small'>{it.task}<br>{it.prompt or '(no prompt)'}</span></div>",
                    img_tag(png_data_uri(it.source, 128), "source"),
                    img_tag(png_data_uri(it.mask, 128), "mask"),
                    img_tag(png_data_uri(it.target, 128), "target"),
                    img_tag(png_data_uri(first["_images"][k], 128), f"step {first['step']}"),
                    img_tag(png_data_uri(last["_images"][k], 128), f"step {last['step']}"),
                ]
            )
        sections.append(
            (
                f"Held-out samples ({cfg.eval_steps} steps, CFG {cfg.eval_cfg:g})",
                html_table(
                    ["item", "source", "mask", "target", f"step {first['step']}", f"step {last['step']}"],
                    grid,
                ),
            )
        )
    write_html_report(path, f"Generator training ({cfg.family})", sections)


def train_from_pool(
    pool: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: GeneratorTrainConfig,
    *,
    init: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train (or fine-tune ``init``) on a ``pool`` / ``subset`` artifact; ``holdout_items`` of its
    items (a seeded choice) are held out for evaluation."""
    items = pool_items(pool, cfg.image_size)
    order = np.random.default_rng(cfg.seed).permutation(len(items))
    n_hold = min(cfg.holdout_items, len(items) // 5)
    holdout = [items[i] for i in order[:n_hold]]
    train = [items[i] for i in order[n_hold:]]
    return train_generator(train, out, cfg, holdout=holdout, init=init)


def train_synthetic(out: str | os.PathLike[str], cfg: GeneratorTrainConfig, **kwargs: Any) -> TrainResult:
    """Train on ``train_items`` synthetic items (seed ``seed``), held out: items of seed ``seed + 1``."""
    items = synthetic_items(cfg.train_items, cfg.seed, cfg.image_size, text_fraction=cfg.text_fraction)
    holdout = (
        synthetic_items(max(cfg.holdout_items, 1), cfg.seed + 1, cfg.image_size) if cfg.holdout_items else []
    )
    return train_generator(items, out, cfg, holdout=holdout, **kwargs)


def load_curve(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``curve.json`` of a finished run."""
    return json.loads((Path(out) / "curve.json").read_text())
