"""Our sampler for the SD-inpainting-style family: batched DDIM (eta = 0) with CFG and negatives.

``StableDiffusionInpaintPipeline`` supports negative prompts, but one call takes one guidance
scale, one strength and one step count. This loop batches candidates with different scales,
negative prompts and strengths (those that share a resolution and an executed step count) and
reproduces the pipeline's random draws per candidate, so a candidate equals
``StableDiffusionInpaintPipeline(..., generator=torch.Generator().manual_seed(seed))`` with the
same DDIM scheduler up to float rounding of batched kernels.

Per candidate, in the pipeline's order: (strength < 1 only) the source's VAE posterior sample,
the initial noise, the masked image's VAE posterior sample. VAE encodings run once per item and
are kept across batches until the stage releases the item.

Masks: the UNet sees the mask at latent size (nearest resize, 1/8 of the pixels, like the
pipeline). A mask so small that it vanishes there (e.g. under 8 px wide) would generate nothing:
it is an :class:`InputError` naming the item (:func:`check_latent_mask`), never dilated silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from onereward.errors import InputError
from onereward.generate.sampler import (
    CandidateSpec,
    ItemCache,
    ItemCondition,
    TextCache,
    batches,
    fit_size,
    fit_to_multiple,
    generator_for,
    pixel_tensors,
    restore_size,
    to_uint8,
)


def latent_mask(mask: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """The mask (1,1,H,W) at latent size, as the pipeline resizes it (nearest)."""
    return torch.nn.functional.interpolate(mask, size=size_hw)


def check_latent_mask(
    item: ItemCondition, vae_factor: int, *, where: str = "item", resolution: int | None = None
) -> None:
    """Raise :class:`InputError` when the item's mask vanishes at the UNet's latent size."""
    fitted = fit_to_multiple(item, vae_factor, resolution)
    height, width = fitted.mask.shape
    m = torch.from_numpy(fitted.mask.astype(np.float32))[None, None]
    if not bool(latent_mask(m, (height // vae_factor, width // vae_factor)).any()):
        raise InputError(
            f"{where} {item.item_id}: field 'mask' ({int(item.mask.sum())} px) vanishes at the sd_inpaint "
            f"latent size (1/{vae_factor} of the pixels, nearest); expected a masked region covering at "
            f"least one {vae_factor}x{vae_factor} latent cell"
        )


@dataclass
class SDBatch:
    """One batched DDIM run (B candidates of one resolution, equal executed step count)."""

    specs: list[CandidateSpec]
    latents: torch.Tensor  # (B, C, h, w) current x_t
    condition: torch.Tensor  # (B, 1 + C, h, w): latent-size mask and masked-image latents
    timesteps: torch.Tensor  # (B, n) long
    prev_timesteps: torch.Tensor  # (B, n) long; < 0 means "final alpha"
    prompt_embeds: torch.Tensor
    cfg: torch.Tensor
    neg_index: torch.Tensor
    neg_embeds: torch.Tensor | None

    @property
    def n_steps(self) -> int:
        return self.timesteps.shape[1]


class SDInpaintSampler:
    """Batched candidate sampler over a loaded ``StableDiffusionInpaintPipeline`` (DDIM)."""

    family = "sd_inpaint"

    def __init__(self, pipe: Any, *, batch_size: int = 8, resolution: int | None = None, **_: Any) -> None:
        from diffusers import DDIMScheduler

        if not isinstance(pipe.scheduler, DDIMScheduler):
            raise InputError(
                "generator_sd: the pipeline's scheduler must be DDIM (load it with models.sd_inpaint.load)"
            )
        # Our DDIM update assumes epsilon prediction without clipping or thresholding of x0;
        # anything else (e.g. a v-prediction SD 2.x folder) would sample silently wrong.
        sc = pipe.scheduler.config
        for name, supported in (
            ("prediction_type", "epsilon"),
            ("clip_sample", False),
            ("thresholding", False),
        ):
            if sc.get(name, supported) != supported:
                raise InputError(
                    f"generator_sd: scheduler config {name}={sc.get(name)!r} is not supported by our DDIM "
                    f"sampler (expected {supported!r})"
                )
        self.pipe = pipe
        self.batch_size = max(1, int(batch_size))
        self.resolution = resolution  # generate at aspect buckets of this area (None: each item's own size)
        self.unet, self.vae = pipe.unet, pipe.vae
        self.device, self.dtype = self.unet.device, self.unet.dtype
        self.vae_factor = int(pipe.vae_scale_factor)
        self.latent_channels = int(self.vae.config.latent_channels)
        sched = pipe.scheduler
        self.alphas_cumprod = sched.alphas_cumprod.to(torch.float32)
        self.final_alpha = torch.as_tensor(sched.final_alpha_cumprod, dtype=torch.float32)
        self.text = TextCache(self._encode_texts)
        self._fitted = ItemCache()
        self._encoded = ItemCache()
        self._schedules: dict[tuple[int, float], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def n_vae_encodes(self) -> int:
        """Items run through the VAE encoder so far (once per item, however many batches)."""
        return self._encoded.n_computed

    def release(self, item_id: str) -> None:
        """Forget the cached fitted condition and VAE encoding of ``item_id``."""
        self._fitted.release(item_id)
        self._encoded.release(item_id)

    @staticmethod
    def executed_steps(steps: int, strength: float) -> int:
        """The pipeline's rule: ``min(int(steps * strength), steps)`` steps run (must be >= 1)."""
        return min(int(steps * strength), steps)

    def batch_key(self, size_hw: tuple[int, int], spec: CandidateSpec) -> tuple[Any, ...]:
        """(generated size, executed steps): candidates with equal keys share a batch."""
        return fit_size(size_hw, self.vae_factor, self.resolution), self.executed_steps(
            spec.steps, spec.strength
        )

    def start_sigma(self, size_hw: tuple[int, int], spec: CandidateSpec) -> float:
        """Noise weight of the start, ``sqrt(1 - alpha_bar)`` at the first executed timestep
        (1.0 at strength 1, where the pipeline starts from pure noise)."""
        if spec.strength == 1.0:
            return 1.0
        ts, _ = self.schedule(spec.steps, spec.strength)
        return float((1 - self.alphas_cumprod[ts[0]]) ** 0.5)

    def schedule(self, steps: int, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps[n], previous timesteps[n]) of one candidate (DDIM 'leading' spacing)."""
        key = (int(steps), float(strength))
        if key not in self._schedules:
            from diffusers import DDIMScheduler

            sched = DDIMScheduler.from_config(self.pipe.scheduler.config)
            sched.set_timesteps(steps, device="cpu")
            n = self.executed_steps(steps, strength)
            if n < 1:
                raise InputError(
                    f"strength: {strength} x {steps} steps runs no step (need steps * strength >= 1)"
                )
            ts = sched.timesteps[steps - n :].long()
            prev = ts - sched.config.num_train_timesteps // steps
            self._schedules[key] = (ts, prev)
        return self._schedules[key]

    def _encode_texts(self, texts: list[str]) -> list[torch.Tensor]:
        with torch.no_grad():
            embeds, _ = self.pipe.encode_prompt(texts, self.device, 1, False)
        return [embeds[i : i + 1] for i in range(len(texts))]

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t.clamp(min=0).cpu()]
        return torch.where(t.cpu() >= 0, a, self.final_alpha).to(self.device)

    def prepare(self, items: dict[str, ItemCondition], specs: list[CandidateSpec]) -> SDBatch:
        """Initial latents, mask/masked-latent condition, per-row schedules and text embeddings."""
        from diffusers.utils.torch_utils import randn_tensor

        dev, dtype, c, f = self.device, self.dtype, self.latent_channels, self.vae_factor
        height, width = items[specs[0].item_id].mask.shape
        h, w = height // f, width // f
        scale = self.vae.config.scaling_factor

        def encode(item: ItemCondition) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            check_latent_mask(item, f)
            x, m = pixel_tensors(item, dev, self.vae.dtype)
            masked = x * (m < 0.5)
            with torch.no_grad():
                post = self.vae.encode(torch.cat([x, masked])).latent_dist
            return post.mean, post.std, latent_mask(m, (h, w)).to(dtype)

        encoded = {
            iid: self._encoded.get(items[iid], iid, lambda it=items[iid]: encode(it))
            for iid in dict.fromkeys(s.item_id for s in specs)
        }
        latents, conds, ts_all, prev_all = [], [], [], []
        for spec in specs:
            mean, std, small_mask = encoded[spec.item_id]
            gen = generator_for(spec.seed)
            ts, prev = self.schedule(spec.steps, spec.strength)
            full = spec.strength == 1.0
            if not full:
                eps_src = randn_tensor(mean[:1].shape, generator=gen, device=dev, dtype=self.vae.dtype)
                src = scale * (mean[:1] + std[:1] * eps_src)
            noise = randn_tensor((1, c, h, w), generator=gen, device=dev, dtype=dtype)
            eps_masked = randn_tensor(mean[1:].shape, generator=gen, device=dev, dtype=self.vae.dtype)
            masked_lat = (scale * (mean[1:] + std[1:] * eps_masked)).to(dtype)
            if full:
                lat = noise * self.pipe.scheduler.init_noise_sigma
            else:  # scheduler.add_noise at the first executed timestep
                a = self.alphas_cumprod[ts[0]].to(dev, dtype)
                lat = a**0.5 * src.to(dtype) + (1 - a) ** 0.5 * noise
            latents.append(lat)
            conds.append(torch.cat([small_mask, masked_lat], dim=1))
            ts_all.append(ts)
            prev_all.append(prev)
        if len({len(t) for t in ts_all}) != 1:
            raise ValueError("prepare: specs in one batch must share the executed step count")
        texts = self.text.get(
            [s.prompt for s in specs] + [s.negative_prompt for s in specs if s.cfg_scale > 1]
        )
        neg = [i for i, s in enumerate(specs) if s.cfg_scale > 1]
        return SDBatch(
            specs=list(specs),
            latents=torch.cat(latents),
            condition=torch.cat(conds),
            timesteps=torch.stack(ts_all).to(dev),
            prev_timesteps=torch.stack(prev_all).to(dev),
            prompt_embeds=torch.cat([texts[s.prompt] for s in specs]),
            cfg=torch.tensor([s.cfg_scale for s in specs], dtype=torch.float32, device=dev),
            neg_index=torch.tensor(neg, dtype=torch.long, device=dev),
            neg_embeds=torch.cat([texts[specs[i].negative_prompt] for i in neg]) if neg else None,
        )

    def noise_prediction(self, batch: SDBatch, latents: torch.Tensor, i: int) -> torch.Tensor:
        """CFG-combined noise prediction ``e_neg + s * (e_pos - e_neg)`` in one UNet call."""
        b = latents.shape[0]
        x = torch.cat([latents, batch.condition], dim=1)
        t = batch.timesteps[:, i]
        embeds = batch.prompt_embeds
        neg = batch.neg_index
        if len(neg):
            x = torch.cat([x, x[neg]])
            t = torch.cat([t, t[neg]])
            embeds = torch.cat([embeds, batch.neg_embeds])
        out = self.unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0]
        eps = out[:b]
        if len(neg):
            e_pos, e_neg = eps[neg], out[b:]
            s = batch.cfg[neg].view(-1, 1, 1, 1).to(eps.dtype)
            eps = eps.index_copy(0, neg, e_neg + s * (e_pos - e_neg))
        return eps

    def ddim_step(self, batch: SDBatch, latents: torch.Tensor, eps: torch.Tensor, i: int) -> torch.Tensor:
        """Deterministic DDIM update (eta = 0) with per-row alphas."""
        a_t = self._alpha(batch.timesteps[:, i]).view(-1, 1, 1, 1)
        a_prev = self._alpha(batch.prev_timesteps[:, i]).view(-1, 1, 1, 1)
        x0 = (latents - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        return (a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps).to(latents.dtype)

    def denoise(self, batch: SDBatch, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run steps ``[start, stop)``; updates and returns ``batch.latents``."""
        stop = batch.n_steps if stop is None else stop
        latents = batch.latents
        for i in range(start, stop):
            latents = self.ddim_step(batch, latents, self.noise_prediction(batch, latents, i), i)
        batch.latents = latents
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] through the VAE."""
        return self.vae.decode(
            (latents / self.vae.config.scaling_factor).to(self.vae.dtype), return_dict=False
        )[0]

    def sample(self, items: dict[str, ItemCondition], specs: list[CandidateSpec]) -> list[np.ndarray]:
        """Generate every spec's image (HxWx3 uint8 at its item's size, before paste-back)."""
        fitted = {
            iid: self._fitted.get(
                items[iid], iid, lambda it=items[iid]: fit_to_multiple(it, self.vae_factor, self.resolution)
            )
            for iid in dict.fromkeys(s.item_id for s in specs)
        }
        keys = [(fitted[s.item_id].mask.shape, self.executed_steps(s.steps, s.strength)) for s in specs]
        results: list[np.ndarray | None] = [None] * len(specs)
        for idx in batches(keys, self.batch_size):
            with torch.no_grad():
                batch = self.prepare(fitted, [specs[i] for i in idx])
                self.denoise(batch)
                images = to_uint8(self.decode(batch.latents))
            for j, i in enumerate(idx):
                results[i] = restore_size(images[j], items[specs[i].item_id].mask.shape)
        return results  # type: ignore[return-value]
