"""FLUX.1-Fill-style generator: flow-matching transformer, VAE, CLIP + T5 text encoders.

One code path for every size. A model folder is a diffusers ``FluxFillPipeline`` folder
(``transformer/``, ``vae/``, ``text_encoder/`` (CLIP), ``text_encoder_2/`` (T5), both tokenizers,
``scheduler/``, safetensors weights): :func:`build_tiny` builds one from small configs with seeded
random weights (tests of the samplers); :func:`build_trained` builds the tiny zoo's model, whose
weights were trained on the synthetic world and ship with the package
(:mod:`onereward.models.trained`, reproduced by ``onereward zoo train``); the full profile points
at a mounted FLUX.1-Fill-dev folder. :func:`load` reads either with ``from_pretrained``.

Channel arithmetic of the fill transformer: latents of ``C`` channels at VAE factor ``f`` are
packed 2x2 into ``4C`` channels; the input is the packed noisy latents (``4C``), the packed
masked-image latents (``4C``) and the mask folded from ``f x f`` pixel blocks, packed 2x2
(``4 f^2``), so ``in_channels = 8C + 4f^2`` (real: C=16, f=8 gives 384) and ``out_channels = 4C``.
The RoPE axes must sum to the attention head dim, ``joint_attention_dim`` is the T5 width and
``pooled_projection_dim`` the CLIP text width.

The published configurations of the full-size parts are kept as data in ``configs/``
(:func:`published_config`); :func:`real_shape_components` builds them with real widths and
channel counts but cut depth (the real-shape test).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onereward.errors import InputError
from onereward.models.text_tokenizers import build_clip_tokenizer, build_t5_tokenizer

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
PUBLISHED = {
    "transformer": "flux_fill_dev_transformer.json",
    "vae": "flux_fill_dev_vae.json",
    "scheduler": "flux_fill_dev_scheduler.json",
    "text_encoder": "clip_text_vit_l_14.json",
    "text_encoder_2": "t5_v1_1_xxl_encoder.json",
}


def fill_in_channels(latent_channels: int, vae_factor: int) -> int:
    """Input channels of a fill transformer: packed latents + packed masked latents + folded mask."""
    return 8 * latent_channels + 4 * vae_factor * vae_factor


def published_config(part: str) -> dict[str, Any]:
    """Published config of a FLUX.1-Fill-dev part (``transformer``, ``vae``, ``scheduler``,
    ``text_encoder`` (CLIP-L text), ``text_encoder_2`` (T5-XXL encoder)), without ``_`` keys."""
    if part not in PUBLISHED:
        raise InputError(f"part: unknown FLUX part {part!r}; expected one of {', '.join(PUBLISHED)}")
    data = json.loads((CONFIGS_DIR / PUBLISHED[part]).read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass(frozen=True)
class TinySize:
    """Widths of the tiny FLUX-Fill-style model (defaults: the zoo's model)."""

    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (16, 16, 32, 32)  # four levels: f = 8 like the real VAE
    vae_layers_per_block: int = 1
    vae_mid_attention: bool = True
    heads: int = 2
    head_dim: int = 16
    axes_dims_rope: tuple[int, int, int] = (4, 6, 6)  # sums to head_dim
    num_layers: int = 1
    num_single_layers: int = 1
    clip_width: int = 32
    clip_layers: int = 2
    t5_width: int = 32
    t5_layers: int = 2


def _components(
    transformer_cfg: dict[str, Any],
    vae_cfg: dict[str, Any],
    clip_cfg: dict[str, Any],
    t5_cfg: dict[str, Any],
    scheduler_cfg: dict[str, Any],
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Instantiate every pipeline component from configs (random weights, current torch RNG).

    ``device``: where parameters are created and initialised (a GPU initialises a full-size model
    in seconds; the CPU takes minutes).
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build large parts directly in the target dtype (memory)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**transformer_cfg)
            vae = AutoencoderKL(**vae_cfg)
            text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg))
            text_encoder_2 = T5EncoderModel(T5Config(**t5_cfg))
    finally:
        torch.set_default_dtype(default_dtype)
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "scheduler": FlowMatchEulerDiscreteScheduler(**scheduler_cfg),
    }


def _tokenizers(t5_max_length: int = 512) -> dict[str, Any]:
    return {
        "tokenizer": build_clip_tokenizer(),
        "tokenizer_2": build_t5_tokenizer(model_max_length=t5_max_length),
    }


def tiny_components(seed: int = 0, size: TinySize | None = None) -> dict[str, Any]:
    """Every ``FluxFillPipeline`` component of the tiny model, seeded (same seed, same weights)."""
    size = size or TinySize()
    if sum(size.axes_dims_rope) != size.head_dim:
        raise InputError(
            f"size.axes_dims_rope: must sum to head_dim {size.head_dim}, got {size.axes_dims_rope}"
        )
    toks = _tokenizers()
    clip_tok, t5_tok = toks["tokenizer"], toks["tokenizer_2"]
    factor = 2 ** (len(size.vae_channels) - 1)
    transformer_cfg = {
        "patch_size": 1,
        "in_channels": fill_in_channels(size.latent_channels, factor),
        "out_channels": 4 * size.latent_channels,
        "num_layers": size.num_layers,
        "num_single_layers": size.num_single_layers,
        "attention_head_dim": size.head_dim,
        "num_attention_heads": size.heads,
        "joint_attention_dim": size.t5_width,
        "pooled_projection_dim": size.clip_width,
        "guidance_embeds": True,
        "axes_dims_rope": tuple(size.axes_dims_rope),
    }
    n = len(size.vae_channels)
    vae_cfg = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": list(size.vae_channels),
        "layers_per_block": size.vae_layers_per_block,
        "latent_channels": size.latent_channels,
        "norm_num_groups": 8,
        "sample_size": 64,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": size.vae_mid_attention,
    }
    clip_cfg = {
        "vocab_size": len(clip_tok),
        "hidden_size": size.clip_width,
        "intermediate_size": 2 * size.clip_width,
        "num_hidden_layers": size.clip_layers,
        "num_attention_heads": 2,
        "max_position_embeddings": clip_tok.model_max_length,
        "projection_dim": size.clip_width,
        "hidden_act": "quick_gelu",
        "bos_token_id": clip_tok.bos_token_id,
        "eos_token_id": clip_tok.eos_token_id,
        "pad_token_id": clip_tok.pad_token_id,
    }
    t5_cfg = {
        "vocab_size": len(t5_tok),
        "d_model": size.t5_width,
        "d_kv": 8,
        "d_ff": 2 * size.t5_width,
        "num_layers": size.t5_layers,
        "num_heads": 4,
        "feed_forward_proj": "gated-gelu",
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 32,
        "is_encoder_decoder": False,
        "pad_token_id": t5_tok.pad_token_id,
        "eos_token_id": t5_tok.eos_token_id,
        "tie_word_embeddings": False,
    }
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        comps = _components(transformer_cfg, vae_cfg, clip_cfg, t5_cfg, published_config("scheduler"))
    finally:
        torch.random.set_rng_state(state)
    comps.update(toks)
    return comps


def real_shape_components(
    *,
    num_layers: int = 1,
    num_single_layers: int = 1,
    clip_layers: int = 1,
    t5_layers: int = 1,
    t5_vocab_size: int | None = None,
    vae_layers_per_block: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Components with FLUX.1-Fill-dev's published widths and channel counts but cut depth.

    Every width, head count, channel count (16 latent channels, 384 fill inputs, 64 outputs),
    RoPE axes and the T5/CLIP widths are the published ones; only the number of blocks (and,
    when ``t5_vocab_size`` is given, the T5 vocabulary, which is a plain embedding table of
    32128 x 4096 in the real model) is reduced; pass the published depths (19, 38, 12, 24) for the
    full-size architecture (the GPU benchmark does, with ``device="cuda"``). The tokenizers are our offline ones; their ids
    fit both vocabularies.
    """
    transformer_cfg = published_config("transformer")
    transformer_cfg.update(num_layers=num_layers, num_single_layers=num_single_layers)
    transformer_cfg["axes_dims_rope"] = tuple(transformer_cfg["axes_dims_rope"])
    vae_cfg = published_config("vae")
    if vae_layers_per_block is not None:
        vae_cfg["layers_per_block"] = vae_layers_per_block
    clip_cfg = published_config("text_encoder")
    clip_cfg["num_hidden_layers"] = clip_layers
    t5_cfg = published_config("text_encoder_2")
    t5_cfg.update(num_layers=t5_layers, num_decoder_layers=t5_layers, is_encoder_decoder=False)
    toks = _tokenizers()
    if t5_vocab_size is not None:
        t5_cfg["vocab_size"] = max(t5_vocab_size, len(toks["tokenizer_2"]))
    # Our CLIP tokenizer's special-token ids differ from OpenAI's; the encoder finds the end-of-text
    # position by id, so the config must name ours (the published ids are 0/2/1 of a 49408 vocab).
    clip_tok = toks["tokenizer"]
    clip_cfg.update(
        bos_token_id=clip_tok.bos_token_id,
        eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.pad_token_id,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        comps = _components(
            transformer_cfg,
            vae_cfg,
            clip_cfg,
            t5_cfg,
            published_config("scheduler"),
            dtype=dtype,
            device=device,
        )
    finally:
        torch.random.set_rng_state(state)
    comps.update(toks)
    return comps


def pipeline_from_components(components: dict[str, Any]) -> Any:
    """A ``FluxFillPipeline`` holding ``components`` (no copy)."""
    from diffusers import FluxFillPipeline

    return FluxFillPipeline(**components)


def build_tiny(out_dir: str | os.PathLike[str], seed: int = 0, *, size: TinySize | None = None) -> None:
    """Build the tiny FLUX-Fill-style pipeline with seeded random weights into ``out_dir``.

    Saved with ``FluxFillPipeline.save_pretrained`` (safetensors) into a temp folder beside
    ``out_dir`` and renamed into place, so an interrupted build leaves nothing under the name.
    """
    _save(pipeline_from_components(tiny_components(seed, size)), out_dir)


def build_trained(
    out_dir: str | os.PathLike[str], seed: int = 0, *, weights_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Build the zoo's trained tiny FLUX-Fill pipeline into ``out_dir`` and return its weights index.

    The architecture comes from the shipped ``weights.json`` (``size``), the weights from the
    shipped safetensors (:mod:`onereward.models.trained`; ``weights_root`` overrides where they
    are read); ``seed`` is unused (trained weights do not depend on it) and accepted so that every
    zoo builder has one signature. Saved like :func:`build_tiny`.
    """
    from onereward.models import trained

    del seed
    comps, index = trained.trained_components("flux_fill", TinySize, tiny_components, weights_root)
    _save(pipeline_from_components(comps), out_dir)
    return index


def _save(pipe: Any, out_dir: str | os.PathLike[str]) -> None:
    """``save_pretrained`` (safetensors) into a temp folder beside ``out_dir``, then rename."""
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


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16`` (clear error for unknown names)."""
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise InputError(f"dtype: unknown dtype {name!r}; expected one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load(path: str | os.PathLike[str], *, dtype: str | torch.dtype = "float32", device: str = "cpu") -> Any:
    """Load a FLUX-Fill pipeline folder (tiny zoo or a mounted FLUX.1-Fill-dev) on ``device``."""
    from diffusers import FluxFillPipeline

    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise InputError(f"generator: {folder} is not a diffusers pipeline folder (model_index.json missing)")
    pipe = FluxFillPipeline.from_pretrained(str(folder), dtype=torch_dtype(dtype), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
