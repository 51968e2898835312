"""SD-inpainting-style generator (second family): 9-channel UNet, VAE, CLIP text encoder.

A model folder is a diffusers ``StableDiffusionInpaintPipeline`` folder without a safety
checker. The UNet input is the noisy latents (4), the mask resized to latent size (1) and the
masked-image latents (4): ``in_channels = 2C + 1 = 9``. :func:`build_tiny` builds a folder with
seeded random weights (tests of the samplers); :func:`build_trained` builds the tiny zoo's model
from the weights trained on the synthetic world that ship with the package
(:mod:`onereward.models.trained`); the full profile points at a mounted SD-inpainting folder.
The scheduler is DDIM (deterministic, eta = 0) with Stable Diffusion's published beta schedule.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onereward.errors import InputError
from onereward.models.flux_fill import torch_dtype
from onereward.models.text_tokenizers import build_clip_tokenizer

# Stable Diffusion's training noise schedule (scaled_linear betas), used by SD-inpainting.
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@dataclass(frozen=True)
class TinySize:
    """Widths of the tiny SD-inpainting-style model (defaults: a small random-weight model)."""

    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (16, 32)
    # Per UNet level: cross-attention (True) or a plain ResNet level (attention over the many
    # tokens of the high-resolution levels is what costs most on a CPU).
    unet_attention: tuple[bool, ...] = (True, False)
    unet_layers_per_block: int = 1
    # Heads per attention layer (diffusers' legacy ``attention_head_dim`` argument is the head count).
    unet_attention_heads: int = 8
    vae_channels: tuple[int, ...] = (16, 16, 32, 32)  # four levels: f = 8 like the real VAE
    vae_layers_per_block: int = 1
    vae_mid_attention: bool = True
    vae_quant_conv: bool = True  # SD's VAE has 1x1 quant convs; FLUX's (which SD may reuse) has none
    text_width: int = 32
    text_layers: int = 2


def tiny_components(seed: int = 0, size: TinySize | None = None) -> dict[str, Any]:
    """Every ``StableDiffusionInpaintPipeline`` component of the tiny model, seeded."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    size = size or TinySize()
    if len(size.unet_attention) != len(size.unet_channels):
        raise InputError(
            f"size.unet_attention: one flag per UNet level ({len(size.unet_channels)}), got {size.unet_attention}"
        )
    tokenizer = build_clip_tokenizer()
    n_vae = len(size.vae_channels)
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in size.unet_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(size.unet_attention))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=64 // 2 ** (n_vae - 1),
            in_channels=2 * size.latent_channels + 1,
            out_channels=size.latent_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(size.unet_channels),
            layers_per_block=size.unet_layers_per_block,
            cross_attention_dim=size.text_width,
            attention_head_dim=size.unet_attention_heads,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n_vae,
            up_block_types=("UpDecoderBlock2D",) * n_vae,
            block_out_channels=tuple(size.vae_channels),
            layers_per_block=size.vae_layers_per_block,
            latent_channels=size.latent_channels,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.18215,
            mid_block_add_attention=size.vae_mid_attention,
            use_quant_conv=size.vae_quant_conv,
            use_post_quant_conv=size.vae_quant_conv,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=size.text_width,
                intermediate_size=2 * size.text_width,
                num_hidden_layers=size.text_layers,
                num_attention_heads=2,
                max_position_embeddings=tokenizer.model_max_length,
                hidden_act="quick_gelu",
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    finally:
        torch.random.set_rng_state(state)
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SD_SCHEDULER_CONFIG),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def pipeline_from_components(components: dict[str, Any]) -> Any:
    """A ``StableDiffusionInpaintPipeline`` holding ``components`` (no copy)."""
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(**components)


def build_tiny(out_dir: str | os.PathLike[str], seed: int = 0, *, size: TinySize | None = None) -> None:
    """Build the tiny SD-inpainting-style pipeline with seeded random weights into ``out_dir``.

    Saved with ``StableDiffusionInpaintPipeline.save_pretrained`` (safetensors, no safety checker)
    into a temp folder beside ``out_dir`` and renamed into place.
    """
    _save(pipeline_from_components(tiny_components(seed, size)), out_dir)


def build_trained(
    out_dir: str | os.PathLike[str], seed: int = 0, *, weights_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Build the zoo's trained tiny SD-inpainting pipeline into ``out_dir`` (architecture from the
    shipped ``weights.json``, weights from the shipped safetensors, :mod:`onereward.models.trained`);
    ``seed`` is unused. Returns the weights index."""
    from onereward.models import trained

    del seed
    comps, index = trained.trained_components("sd_inpaint", TinySize, tiny_components, weights_root)
    _save(pipeline_from_components(comps), out_dir)
    return index


def _save(pipe: Any, out_dir: str | os.PathLike[str]) -> None:
    """``save_pretrained`` (safetensors, no safety checker) into a temp folder beside ``out_dir``,
    then rename."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: str | os.PathLike[str], *, dtype: str | torch.dtype = "float32", device: str = "cpu") -> Any:
    """Load an SD-inpainting pipeline folder on ``device`` (no safety checker; DDIM scheduler).

    A published folder's own scheduler (often PNDM) is replaced by DDIM built from its config, so
    that every folder samples with the same deterministic update.
    """
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise InputError(
            f"generator_sd: {folder} is not a diffusers pipeline folder (model_index.json missing)"
        )
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        str(folder),
        dtype=torch_dtype(dtype),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def vae_scale_factor(path: str | os.PathLike[str]) -> int:
    """The VAE's downscale factor of a pipeline folder, read from ``vae/config.json`` without
    loading weights (``2 ** (levels - 1)``, as diffusers computes it); 8 when the folder has no
    readable VAE config (SD's factor)."""
    import json

    config = Path(path) / "vae" / "config.json"
    try:
        levels = len(json.loads(config.read_text())["block_out_channels"])
    except (OSError, ValueError, KeyError, TypeError):
        return 8
    return 2 ** (levels - 1)
