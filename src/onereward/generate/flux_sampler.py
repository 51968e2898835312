"""Our sampler for FLUX.1-Fill-style flow matching: true CFG with negative prompts, the distilled
guidance input, a noised-source start for strength < 1, and batching across candidates and items.

diffusers' ``FluxFillPipeline`` has no negative prompt and no true CFG; OneReward's reference
pipeline adds ``v = v_neg + s * (v_pos - v_neg)`` (scale about 4, distilled guidance 1). This loop
reuses the pipeline's own pieces (prompt encoding, latent packing, mask folding, the scheduler's
shifted sigmas) and reproduces its random draws per candidate: with ``cfg_scale = 1`` a candidate
equals ``FluxFillPipeline(..., generator=torch.Generator().manual_seed(seed))`` up to float
rounding of batched kernels (the benchmark checks this).

Random draws per candidate, in the pipeline's order, from one CPU generator seeded with its seed:
the source's VAE posterior sample, the initial noise, the masked image's VAE posterior sample.
The VAE encodings themselves (posterior mean and std) are computed once per item and kept across
batches until the stage releases the item (:class:`~onereward.generate.sampler.ItemCache`).

The loop is split so that a training loop (ReFL) can reuse it: :meth:`FluxFillSampler.prepare`
builds a :class:`FluxBatch`; :meth:`~FluxFillSampler.velocity` predicts the (CFG-combined)
velocity at step ``i``; :meth:`~FluxFillSampler.euler_step` advances; :meth:`~FluxFillSampler.denoise`
runs steps ``[start, stop)``; :func:`predict_x0` gives ``x0 = x_t - sigma * v``;
:meth:`~FluxFillSampler.decode` maps latents to pixels. "Denoise k steps without grad, then one step
with grad, predict x0, decode" is ``denoise(b, 0, k)`` under ``torch.no_grad()``, then
``predict_x0(b.latents, velocity(b, b.latents, k), b.sigmas[:, k])`` and ``decode``.
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


@dataclass
class FluxBatch:
    """Everything one batched denoising run needs (B candidates of one resolution)."""

    specs: list[CandidateSpec]
    height: int
    width: int
    latents: torch.Tensor  # packed (B, N, 4C), the current state x_t
    condition: torch.Tensor  # packed masked-image latents + folded mask (B, N, 4C + 4f^2)
    sigmas: torch.Tensor  # (B, n + 1) float32, per-candidate schedule from the start, ending at 0
    timesteps: torch.Tensor  # (B, n) float32 (sigma * 1000, as the scheduler gives them)
    prompt_embeds: torch.Tensor  # (B, L, D)
    pooled: torch.Tensor  # (B, Dp)
    guidance: torch.Tensor | None  # (B,) float32, None when the transformer has no guidance input
    cfg: torch.Tensor  # (B,) float32 true-CFG scales
    neg_index: torch.Tensor  # indices of candidates with cfg > 1 (they get a negative pass)
    neg_embeds: torch.Tensor | None
    neg_pooled: torch.Tensor | None
    img_ids: torch.Tensor
    txt_ids: torch.Tensor

    @property
    def n_steps(self) -> int:
        return self.timesteps.shape[1]


def predict_x0(latents: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Flow matching's clean-sample estimate ``x0 = x_t - sigma * v`` (sigma per batch row)."""
    return latents - sigma.to(latents.dtype).view(-1, *([1] * (latents.dim() - 1))) * velocity


class FluxFillSampler:
    """Batched candidate sampler over a loaded ``FluxFillPipeline`` (tiny or full size)."""

    family = "flux_fill"

    def __init__(
        self, pipe: Any, *, max_sequence_length: int = 512, batch_size: int = 8, resolution: int | None = None
    ) -> None:
        self.pipe = pipe
        self.resolution = resolution  # generate at aspect buckets of this area (None: each item's own size)
        self.max_sequence_length = int(max_sequence_length)
        self.batch_size = max(1, int(batch_size))
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.device = self.transformer.device
        self.dtype = self.transformer.dtype
        self.vae_factor = int(pipe.vae_scale_factor)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.text = TextCache(self._encode_texts)
        self._fitted = ItemCache()  # item -> condition resized to the latent grid
        self._encoded = ItemCache()  # fitted item -> VAE posterior of source and masked source
        self._schedules: dict[tuple[int, float, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def n_vae_encodes(self) -> int:
        """Items run through the VAE encoder so far (once per item, however many batches)."""
        return self._encoded.n_computed

    def release(self, item_id: str) -> None:
        """Forget the cached fitted condition and VAE encoding of ``item_id``."""
        self._fitted.release(item_id)
        self._encoded.release(item_id)

    # ---- schedules -------------------------------------------------------------------------
    @staticmethod
    def executed_steps(steps: int, strength: float) -> int:
        """Steps actually run for ``steps`` configured at ``strength`` (the pipeline's rule)."""
        init = min(steps * strength, steps)
        return steps - int(max(steps - init, 0))

    def batch_key(self, size_hw: tuple[int, int], spec: CandidateSpec) -> tuple[Any, ...]:
        """(generated size, executed steps): candidates with equal keys share a batch."""
        return fit_size(size_hw, 2 * self.vae_factor, self.resolution), self.executed_steps(
            spec.steps, spec.strength
        )

    def start_sigma(self, size_hw: tuple[int, int], spec: CandidateSpec) -> float:
        """The first sigma of the candidate's shifted schedule: start = sigma * noise + (1 - sigma) * source."""
        height, width = fit_size(size_hw, 2 * self.vae_factor, self.resolution)
        seq_len = (height // (2 * self.vae_factor)) * (width // (2 * self.vae_factor))
        return float(self.schedule(spec.steps, spec.strength, seq_len)[0][0])

    def schedule(self, steps: int, strength: float, image_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas[n+1], timesteps[n]) of one candidate: the shifted schedule of ``steps`` from
        the start index that ``strength`` selects (the pipeline's ``get_timesteps``)."""
        key = (int(steps), float(strength), int(image_seq_len))
        if key not in self._schedules:
            from diffusers import FlowMatchEulerDiscreteScheduler
            from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift

            cfg = self.pipe.scheduler.config
            sched = FlowMatchEulerDiscreteScheduler.from_config(cfg)
            mu = calculate_shift(
                image_seq_len,
                cfg.get("base_image_seq_len", 256),
                cfg.get("max_image_seq_len", 4096),
                cfg.get("base_shift", 0.5),
                cfg.get("max_shift", 1.15),
            )
            sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device="cpu")
            start = steps - self.executed_steps(steps, strength)
            sigmas = sched.sigmas[start:].to(torch.float32)
            timesteps = sched.timesteps[start:].to(torch.float32)
            self._schedules[key] = (sigmas, timesteps)
        return self._schedules[key]

    # ---- text ------------------------------------------------------------------------------
    def _encode_texts(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with torch.no_grad():
            embeds, pooled, _ = self.pipe.encode_prompt(
                prompt=texts,
                prompt_2=None,
                device=self.device,
                num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length,
            )
        return [(embeds[i : i + 1], pooled[i : i + 1]) for i in range(len(texts))]

    # ---- conditions ------------------------------------------------------------------------
    def _encode_item(self, item: ItemCondition) -> dict[str, torch.Tensor]:
        """VAE posterior (mean, std) of the source and of the masked source, once per item."""
        x, m = pixel_tensors(item, self.device, self.vae.dtype)
        masked = x * (1 - m)
        with torch.no_grad():
            post = self.vae.encode(torch.cat([x, masked])).latent_dist
        return {"mean": post.mean, "std": post.std, "mask": m.to(self.dtype)}

    def prepare(self, items: dict[str, ItemCondition], specs: list[CandidateSpec]) -> FluxBatch:
        """Initial state, condition, schedules and text embeddings of one batch of candidates.

        All items referenced by ``specs`` must have the same size (a multiple of 2 * VAE factor),
        and all specs the same executed step count.
        """
        from diffusers.utils.torch_utils import randn_tensor

        pipe, dev, dtype = self.pipe, self.device, self.dtype
        first = items[specs[0].item_id]
        height, width = first.mask.shape
        c, f = self.latent_channels, self.vae_factor
        h, w = 2 * (height // (f * 2)), 2 * (width // (f * 2))
        seq_len = (h // 2) * (w // 2)
        shift, scale = self.vae.config.shift_factor or 0.0, self.vae.config.scaling_factor
        encoded = {
            iid: self._encoded.get(items[iid], iid, lambda it=items[iid]: self._encode_item(it))
            for iid in dict.fromkeys(s.item_id for s in specs)
        }
        init_latents, masked_latents, masks, sigmas, timesteps = [], [], [], [], []
        for spec in specs:
            enc = encoded[spec.item_id]
            if items[spec.item_id].mask.shape != (height, width):
                raise InputError(f"item {spec.item_id}: batched items must share one size")
            gen = generator_for(spec.seed)
            vae_dtype = self.vae.dtype
            eps_src = randn_tensor(enc["mean"][:1].shape, generator=gen, device=dev, dtype=vae_dtype)
            src = (enc["mean"][:1] + enc["std"][:1] * eps_src - shift) * scale
            noise = randn_tensor((1, c, h, w), generator=gen, device=dev, dtype=dtype)
            eps_masked = randn_tensor(enc["mean"][1:].shape, generator=gen, device=dev, dtype=vae_dtype)
            masked_latents.append(enc["mean"][1:] + enc["std"][1:] * eps_masked)
            sig, ts = self.schedule(spec.steps, spec.strength, seq_len)
            sig0 = sig[0].to(device=dev, dtype=dtype)
            init_latents.append(sig0 * noise + (1.0 - sig0) * src.to(dtype))  # scheduler.scale_noise
            masks.append(enc["mask"])
            sigmas.append(sig)
            timesteps.append(ts)
        n = len(specs)
        if len({len(t) for t in timesteps}) != 1:
            raise ValueError("prepare: specs in one batch must share the executed step count")
        latents = pipe._pack_latents(torch.cat(init_latents), n, c, h, w)
        mask_packed, masked_packed = pipe.prepare_mask_latents(
            torch.cat(masks),
            torch.cat(masked_latents),  # C channels: taken as latents, scaled and packed by diffusers
            n,
            c,
            1,
            height,
            width,
            dtype,
            dev,
            None,
        )
        texts = self.text.get(
            [s.prompt for s in specs] + [s.negative_prompt for s in specs if s.cfg_scale > 1]
        )
        prompt_embeds = torch.cat([texts[s.prompt][0] for s in specs])
        pooled = torch.cat([texts[s.prompt][1] for s in specs])
        neg = [i for i, s in enumerate(specs) if s.cfg_scale > 1]
        neg_embeds = torch.cat([texts[specs[i].negative_prompt][0] for i in neg]) if neg else None
        neg_pooled = torch.cat([texts[specs[i].negative_prompt][1] for i in neg]) if neg else None
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.tensor([s.guidance for s in specs], dtype=torch.float32, device=dev)
        return FluxBatch(
            specs=list(specs),
            height=height,
            width=width,
            latents=latents,
            condition=torch.cat((masked_packed, mask_packed), dim=-1),
            sigmas=torch.stack(sigmas).to(dev),
            timesteps=torch.stack(timesteps).to(dev),
            prompt_embeds=prompt_embeds,
            pooled=pooled,
            guidance=guidance,
            cfg=torch.tensor([s.cfg_scale for s in specs], dtype=torch.float32, device=dev),
            neg_index=torch.tensor(neg, dtype=torch.long, device=dev),
            neg_embeds=neg_embeds,
            neg_pooled=neg_pooled,
            img_ids=pipe._prepare_latent_image_ids(n, h // 2, w // 2, dev, dtype),
            txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=dev, dtype=dtype),
        )

    # ---- denoising -------------------------------------------------------------------------
    def velocity(self, batch: FluxBatch, latents: torch.Tensor, i: int) -> torch.Tensor:
        """Velocity at step ``i``: one transformer call over the positive rows plus a negative row
        for every candidate with cfg > 1, combined as ``v_neg + s * (v_pos - v_neg)``."""
        b = latents.shape[0]
        hidden = torch.cat((latents, batch.condition), dim=2)
        t = batch.timesteps[:, i].to(latents.dtype) / 1000
        embeds, pooled, guidance = batch.prompt_embeds, batch.pooled, batch.guidance
        neg = batch.neg_index
        if len(neg):
            hidden = torch.cat((hidden, hidden[neg]))
            t = torch.cat((t, t[neg]))
            embeds = torch.cat((embeds, batch.neg_embeds))
            pooled = torch.cat((pooled, batch.neg_pooled))
            guidance = torch.cat((guidance, guidance[neg])) if guidance is not None else None
        out = self.transformer(
            hidden_states=hidden,
            timestep=t,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=batch.txt_ids,
            img_ids=batch.img_ids,
            return_dict=False,
        )[0]
        v = out[:b]
        if len(neg):
            v_pos, v_neg = v[neg].float(), out[b:].float()
            s = batch.cfg[neg].view(-1, 1, 1)
            v = v.index_copy(0, neg, (v_neg + s * (v_pos - v_neg)).to(v.dtype))
        return v

    @staticmethod
    def euler_step(batch: FluxBatch, latents: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        """Flow-matching Euler update ``x += (sigma_next - sigma) * v`` in float32, per row."""
        dt = (batch.sigmas[:, i + 1] - batch.sigmas[:, i]).view(-1, 1, 1)
        return (latents.float() + dt * velocity.float()).to(velocity.dtype)

    def denoise(self, batch: FluxBatch, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run steps ``[start, stop)`` from ``batch.latents``; updates and returns ``batch.latents``."""
        stop = batch.n_steps if stop is None else stop
        latents = batch.latents
        for i in range(start, stop):
            latents = self.euler_step(batch, latents, self.velocity(batch, latents, i), i)
        batch.latents = latents
        return latents

    def decode(self, batch: FluxBatch, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Packed latents -> images in [-1, 1] (B, 3, H, W) through the VAE (differentiable)."""
        latents = batch.latents if latents is None else latents
        lat = self.pipe._unpack_latents(latents, batch.height, batch.width, self.vae_factor)
        lat = lat / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0.0)
        return self.vae.decode(lat.to(self.vae.dtype), return_dict=False)[0]

    # ---- candidates ------------------------------------------------------------------------
    def sample(self, items: dict[str, ItemCondition], specs: list[CandidateSpec]) -> list[np.ndarray]:
        """Generate every spec's image (HxWx3 uint8 at its item's size, before paste-back)."""
        multiple = 2 * self.vae_factor
        fitted = {
            iid: self._fitted.get(
                items[iid], iid, lambda it=items[iid]: fit_to_multiple(it, multiple, self.resolution)
            )
            for iid in dict.fromkeys(s.item_id for s in specs)
        }
        keys = [(fitted[s.item_id].mask.shape, self.executed_steps(s.steps, s.strength)) for s in specs]
        results: list[np.ndarray | None] = [None] * len(specs)
        for idx in batches(keys, self.batch_size):
            with torch.no_grad():
                batch = self.prepare(fitted, [specs[i] for i in idx])
                self.denoise(batch)
                images = to_uint8(self.decode(batch))
            for j, i in enumerate(idx):
                results[i] = restore_size(images[j], items[specs[i].item_id].mask.shape)
        return results  # type: ignore[return-value]
