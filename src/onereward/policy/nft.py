"""DiffusionNFT with the one reward model (UniWorld-V2 / Edit-R1, beyond the paper).

One iteration (:meth:`Nft.step`) over ``batch_size`` groups:

1. **Rollouts**: each group is one training condition (task drawn with p_k) and ``nft_group_size``
   fresh noises, denoised by the old (sampling) policy with a fast few-step solver
   (``nft_rollout_steps``, a second-order multistep solver or Euler), without grad.
2. **Raw reward** per rollout, mean over the task's dimensions: the reward model's P(Yes | rollout,
   base rollout, q_e) against the base's rollout of the condition (``pairwise``; the reference
   rollouts, cacheable), the training-free logit-expected 0-5 score (``score``), or in the synthetic
   world the oracle's normalised score (``oracle``: the skyline with a perfect judge).
3. **Optimality** (their Eq. 7): ``r = 1/2 + 1/2 clip((raw - mean_group) / Z, -1, 1)`` with Z the
   std of the step's raw rewards (``global``) or of the group (``group``).
   With ``nft_constraint_rate`` eta > 0, a dual ascent keeps every task x dimension no worse than
   the base: each dimension weighs ``w_e (1 + mu_e)`` in the mean, and after the step's rewards
   ``mu_e <- max(0, mu_e - eta * margin_e)``, margin_e being the step's mean reward of that task x
   dimension minus the base's (P(Yes) - 1/2 pairwise; the oracle score minus the base rollout's with
   the oracle). A dimension the others are paying for gains weight until it stops losing.
4. **Low-std group filtering**: a group whose raw mean exceeds tau_mu while its std is below
   tau_sigma carries noise, not a quality gap, and is dropped.
5. **Loss** (their Eq. 4-6) on the kept rollouts' clean latents x0: noise them to a shifted
   uniform sigma, ``x_t = (1 - s) x0 + s e``, target ``v = e - x0``;
   ``v+ = (1 - beta) v_old + beta v_theta``, ``v- = (1 + beta) v_old - beta v_theta``;
   ``L = r ||v+ - v||^2 + (1 - r) ||v- - v||^2 + kl ||v_theta - v_base||^2`` (mean over tokens).

After the optimiser step the trainer moves the old policy towards the policy (EMA ``nft_old_decay``).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np
import torch

from onereward import tasks
from onereward.policy.conditions import STREAM_NFT, STREAM_NOISE, Condition, ConditionSet
from onereward.policy.config import PolicyConfig
from onereward.policy.references import ReferenceCache
from onereward.policy.refl import StepStats, step_rng
from onereward.policy.rewards import LogitScore, OracleReward, PairwiseReward
from onereward.policy.rollouts import Rollouts, drift, quantise


def optimality(raw: torch.Tensor, group: torch.Tensor, *, norm: str, global_std: float) -> torch.Tensor:
    """Eq. 7: ``1/2 + 1/2 clip((raw - group mean) / Z, -1, 1)``; ``raw`` and ``group`` (ids) are [N]."""
    out = torch.empty_like(raw)
    for g in group.unique():
        sel = group == g
        centred = raw[sel] - raw[sel].mean()
        z = raw[sel].std(unbiased=False).item() if norm == "group" else global_std
        out[sel] = 0.5 + 0.5 * torch.clamp(centred / max(z, 1e-6), -1.0, 1.0)
    return out


def separate_optimality(
    raw: torch.Tensor, group: torch.Tensor, weights: torch.Tensor, *, norm: str, global_std: torch.Tensor
) -> torch.Tensor:
    """Eq. 7 per dimension: ``raw`` [N, D] (one column per dimension of the groups' task),
    ``global_std`` [D] (each dimension's std over the step's rollouts of the task), ``weights`` [D].
    Returns ``1/2 + 1/2 sum_e w_e clip((raw_e - group mean_e) / Z_e, -1, 1) / sum_e w_e``: [N]."""
    out = torch.empty(raw.shape[0], dtype=raw.dtype)
    w = weights / weights.sum().clamp_min(1e-12)
    for g in group.unique():
        sel = group == g
        centred = raw[sel] - raw[sel].mean(0, keepdim=True)
        z = raw[sel].std(0, unbiased=False) if norm == "group" else global_std
        adv = torch.clamp(centred / z.clamp_min(1e-6), -1.0, 1.0)
        out[sel] = 0.5 + 0.5 * (adv * w).sum(1)
    return out


def keep_groups(raw: torch.Tensor, group: torch.Tensor, *, tau_mu: float, tau_sigma: float) -> torch.Tensor:
    """Boolean [N]: False for the rollouts of groups with mean > tau_mu and std < tau_sigma."""
    keep = torch.ones_like(raw, dtype=torch.bool)
    for g in group.unique():
        sel = group == g
        if raw[sel].mean().item() > tau_mu and raw[sel].std(unbiased=False).item() < tau_sigma:
            keep[sel] = False
    return keep


def shifted_sigmas(rng: np.random.Generator, n: int, mu: float) -> np.ndarray:
    """Noise levels for the NFT loss: uniform in (0, 1), moved by FLUX's resolution shift ``mu`` (the
    exponential time shift the sampler's schedule uses), so training sees the levels sampling visits."""
    u = rng.uniform(1e-3, 1.0 - 1e-3, size=n)
    return math.exp(mu) / (math.exp(mu) + (1.0 / u - 1.0))


class Nft:
    """DiffusionNFT over the old / policy / base weights of a :class:`PolicyModel`."""

    def __init__(
        self,
        cfg: PolicyConfig,
        conditions: ConditionSet,
        rollouts: Rollouts,
        reward: PairwiseReward,
        accelerator: Any,
        *,
        references: ReferenceCache | None = None,
        score: LogitScore | OracleReward | None = None,
    ) -> None:
        self.cfg = cfg
        self.conditions = conditions
        self.rollouts = rollouts
        self.reward = reward
        self.score = score
        self.accelerator = accelerator
        self.references = references
        self.reference_seconds = 0.0  # this step's time on base rollouts (the part a cache saves)
        self.duals: dict[str, float] = {}  # "task/dimension" -> mu >= 0 (nft_constraint_rate)

    # ---- resumable state (the trainer keeps it in each checkpoint) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"duals": dict(sorted(self.duals.items()))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.duals = {str(k): float(v) for k, v in state.get("duals", {}).items()}

    # ---- rewards -----------------------------------------------------------------------------
    def base_image(self, cond: Condition, seed: int) -> torch.Tensor:
        """The base's rollout of ``cond`` (cached or rolled out), [1, 3, H, W] in [0, 1]."""
        t0 = time.perf_counter()
        try:
            return self._base_image(cond, seed)
        finally:
            self.reference_seconds += time.perf_counter() - t0

    def _base_image(self, cond: Condition, seed: int) -> torch.Tensor:
        if self.references is not None:
            arr = self.references.get(cond.item_id, seed)
            return (torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255.0).to(self.rollouts.device)
        with self.accelerator.autocast():
            out = self.rollouts.sample([cond], [seed], "base", steps=self.cfg.rollout_steps)
        return quantise(out.images)

    def raw_rewards(
        self, cond: Condition, images: torch.Tensor, base_seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw reward of each rollout per dimension of the task, in ``cond.dimensions`` order [G, D],
        and its mean over the dimensions weighted by ``dimension_weights`` [G]."""
        conds = [cond] * images.shape[0]
        if self.cfg.nft_reward in ("score", "oracle"):
            assert self.score is not None
            values, comps = self.score.score(images, conds)
        else:
            base = self.base_image(cond, base_seed).expand(images.shape[0], -1, -1, -1)
            values, comps = self.reward.p_yes(images, base, conds, grad=False)
        values = values.float()
        # Comparisons run condition-major, dimensions inner
        assert comps.dimensions[: len(cond.dimensions)] == list(cond.dimensions)
        pooled = comps.per_condition_mean(values, len(conds), self.weights_for(cond.task))
        return values.reshape(len(conds), len(cond.dimensions)), pooled

    def weights_for(self, task: str) -> dict[str, float]:
        """{dimension: weight} of ``task``: ``dimension_weights`` times (1 + mu) of the dual ascent."""
        w = self.cfg.weights()
        if not self.duals:
            return w
        return {d: w.get(d, 1.0) * (1.0 + self.duals.get(f"{task}/{d}", 0.0)) for d in tasks.DIMENSIONS}

    def dimension_weights(self, cond: Condition) -> torch.Tensor:
        """The weights of the task's dimensions (:meth:`weights_for`): [D]."""
        w = self.weights_for(cond.task)
        return torch.tensor([w.get(d, 1.0) for d in cond.dimensions], dtype=torch.float32)

    def margins(self, cond: Condition, values: torch.Tensor, base_seed: int) -> torch.Tensor:
        """Mean reward of a group per dimension minus the base's: [D] (for the dual ascent)."""
        if self.cfg.nft_reward == "oracle":
            assert self.score is not None
            base, _ = self.score.score(self.base_image(cond, base_seed), [cond])
            return values.mean(0) - base.float().cpu()
        return values.mean(0) - 0.5  # P(Yes | rollout, base): 1/2 is "as good as the base"

    def update_duals(self, local: list[tuple[str, float, int]]) -> None:
        """mu_e <- max(0, mu_e - eta * mean margin_e) over every rank's groups; ``local``: this
        rank's (cell, sum of group margins, groups)."""
        from accelerate.utils import gather_object

        sums: dict[str, list[float]] = {}
        for cell, total, n in gather_object(local):
            acc = sums.setdefault(cell, [0.0, 0])
            acc[0] += total
            acc[1] += n
        eta = self.cfg.nft_constraint_rate
        for cell in sorted(sums):
            total, n = sums[cell]
            self.duals[cell] = max(0.0, self.duals.get(cell, 0.0) - eta * total / n)

    # ---- one iteration -------------------------------------------------------------------------
    def step(self, step: int, rank: int = 0, world: int = 1) -> StepStats:
        cfg = self.cfg
        conds = self.conditions.sample(cfg.seed, step, cfg.batch_size)
        rng = step_rng(cfg.seed, step, STREAM_NOISE)
        seeds = [[int(rng.integers(0, 2**31 - 1)) for _ in range(cfg.nft_group_size)] for _ in conds]
        base_seeds = [
            c.reference_seeds[int(rng.integers(len(c.reference_seeds)))] if c.reference_seeds
            else int(rng.integers(0, 2**31 - 1))
            for c in conds
        ]  # fmt: skip
        mine = list(range(rank, len(conds), world))
        stats = StepStats()
        self.reference_seconds = 0.0
        # 1-2. Rollouts of the old policy and their raw rewards (no grad).
        t0 = time.perf_counter()
        rollouts, raws, per_dim = {}, {}, {}
        for g in mine:
            with self.accelerator.autocast():
                out = self.rollouts.sample(
                    [conds[g]] * cfg.nft_group_size, seeds[g], "old", steps=cfg.nft_rollout_steps,
                    solver=cfg.nft_solver, keep_latents=True,
                )  # fmt: skip
                values, raws[g] = self.raw_rewards(conds[g], out.images, base_seeds[g])
            per_dim[g] = values.cpu()  # the per-dimension optimality is computed on the CPU
            rollouts[g] = out.latents.detach()
        stats.reference_seconds = self.reference_seconds
        stats.extra["rollout_seconds"] = time.perf_counter() - t0 - self.reference_seconds
        # 3-4. Optimality per rollout (global std over every rank's rollouts) and the group filter.
        local_raw = torch.cat([raws[g] for g in mine]) if mine else torch.zeros(0)
        from accelerate.utils import gather_object

        # every rank's raw rewards (ranks may hold different numbers of groups)
        all_raw = torch.tensor(gather_object(local_raw.tolist()), dtype=torch.float32)
        global_std = float(all_raw.std(unbiased=False)) if all_raw.numel() > 1 else 0.0
        group_ids = torch.tensor([g for g in mine for _ in range(cfg.nft_group_size)])
        if cfg.nft_dimension_norm == "separate":
            r = self.separate(conds, mine, per_dim, group_ids)
        elif mine:
            r = optimality(local_raw.cpu(), group_ids, norm=cfg.nft_norm, global_std=global_std)
        else:
            r = local_raw
        keep = keep_groups(local_raw.cpu(), group_ids, tau_mu=cfg.nft_tau_mu, tau_sigma=cfg.nft_tau_sigma)
        n_kept_local = torch.tensor([float(keep.sum())], device=self.rollouts.device)
        n_kept = int(self.accelerator.gather(n_kept_local).sum().item())
        stats.extra.update(
            {
                "reward_raw": float(all_raw.mean()) if all_raw.numel() else 0.0,
                "reward_raw_std": global_std,
                "kept_fraction": n_kept / max(1, all_raw.numel()),
            }
        )
        stats.p_yes = stats.extra["reward_raw"]
        if cfg.nft_constraint_rate > 0:  # after this step's optimality: it used the duals so far
            local_margins = []
            for g in mine:
                margin = self.margins(conds[g], per_dim[g], base_seeds[g]).tolist()
                for d, m in zip(conds[g].dimensions, margin, strict=True):
                    local_margins.append((f"{conds[g].task}/{d}", float(m), 1))
            self.update_duals(local_margins)
            stats.extra.update({f"dual/{cell}": mu for cell, mu in self.duals.items()})
            stats.reference_seconds = self.reference_seconds  # with the oracle: its base rollouts
        for g in mine:
            for j, d in enumerate(conds[g].dimensions):
                stats.cells.setdefault(f"{conds[g].task}/{d}", []).extend(per_dim[g][:, j].tolist())
        if n_kept == 0:
            stats.optimise = False
            return stats
        # 5. The NFT loss on the kept rollouts, in micro batches of one group's size.
        t1 = time.perf_counter()
        pairs = [(g, i) for g in mine for i in range(cfg.nft_group_size)]
        samples = [pair for k, pair in enumerate(pairs) if keep[k]]
        r_of = {pair: float(r[k]) for k, pair in enumerate(pairs)}
        weight = 1.0
        if not samples and pairs:
            # Every local group was filtered while other ranks' were not: this rank still takes part
            # in the gradient all-reduce, with a zero-weighted sample.
            samples, weight = pairs[:1], 0.0
        chunks = [samples[i : i + cfg.micro_batch_size] for i in range(0, len(samples), cfg.micro_batch_size)]
        chunks = [[s for s in c if s[0] == g] for c in chunks for g in dict.fromkeys(x[0] for x in c)]
        sig_rng = step_rng(cfg.seed, step, STREAM_NFT)
        total = 0.0
        for k, chunk in enumerate(chunks):
            g = chunk[0][0]
            x0 = rollouts[g][[i for _, i in chunk]]
            rw = torch.tensor([r_of[s] for s in chunk], device=x0.device, dtype=torch.float32)
            last = k == len(chunks) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.rollouts.model.wrapped)
            with sync:
                per_sample = self.loss(conds[g], x0, rw, sig_rng, step)
                self.accelerator.backward(weight * per_sample.sum() / max(1.0, n_kept / world))
            total += weight * float(per_sample.detach().sum())
        stats.policy_seconds = time.perf_counter() - t1
        stats.n_samples = int(keep.sum())
        stats.loss = total / max(1, stats.n_samples)
        return stats

    def separate(
        self,
        conds: list[Condition],
        mine: list[int],
        per_dim: dict[int, torch.Tensor],
        group_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Optimality with each (task, dimension) normalised on its own (``nft_dimension_norm:
        separate``); Z_e is the std of that dimension's rewards over every rank's rollouts of the
        task in this step (``global``) or of the group. Returns [N] in ``mine`` order."""
        from accelerate.utils import gather_object

        local = [(conds[g].task, d, v) for g in mine for j, d in enumerate(conds[g].dimensions)
                 for v in per_dim[g][:, j].tolist()]  # fmt: skip
        values: dict[tuple[str, str], list[float]] = {}
        for task, d, v in gather_object(local):
            values.setdefault((task, d), []).append(v)
        out = []
        for g in mine:
            dims = conds[g].dimensions
            z = torch.tensor([float(np.std(values[(conds[g].task, d)])) for d in dims], dtype=torch.float32)
            sel = group_ids == g
            out.append(
                separate_optimality(
                    per_dim[g],
                    group_ids[sel],
                    self.dimension_weights(conds[g]),
                    norm=self.cfg.nft_norm,
                    global_std=z,
                )  # fmt: skip
            )
        return torch.cat(out) if out else torch.zeros(0)

    def loss(
        self, cond: Condition, x0: torch.Tensor, r: torch.Tensor, rng: np.random.Generator, step: int
    ) -> torch.Tensor:
        """Per-sample DiffusionNFT loss of clean packed latents ``x0`` [n, N, 4C] of one condition."""
        cfg = self.cfg
        sampler = self.rollouts.sampler
        n = x0.shape[0]
        with torch.no_grad():
            seeds = [int(rng.integers(0, 2**31 - 1)) for _ in range(n)]
            batch = sampler.prepare(
                {cond.item_id: cond.fitted}, self.rollouts.specs([cond] * n, seeds, 1, 1.0)
            )
            from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift

            scfg = sampler.pipe.scheduler.config
            mu = calculate_shift(
                x0.shape[1], scfg.get("base_image_seq_len", 256), scfg.get("max_image_seq_len", 4096),
                scfg.get("base_shift", 0.5), scfg.get("max_shift", 1.15),
            )  # fmt: skip
            sigma = torch.tensor(shifted_sigmas(rng, n, mu), dtype=torch.float32, device=x0.device)
            gen = torch.Generator(device="cpu").manual_seed(seeds[0])
            noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(x0.device)
            s = sigma.view(-1, 1, 1)
            x_t = ((1 - s) * x0.float() + s * noise).to(x0.dtype)
            target = noise - x0.float()
            batch.timesteps = (sigma * 1000.0)[:, None]
            with self.accelerator.autocast():
                v_old = self.rollouts.velocity("old", batch, x_t, 0).float()
                v_base = self.rollouts.velocity("base", batch, x_t, 0) if cfg.nft_kl_weight > 0 else None
        with self.accelerator.autocast():
            v_theta = self.rollouts.velocity("policy", batch, x_t, 0, grad=True).float()
        beta = cfg.nft_beta
        v_plus = (1 - beta) * v_old + beta * v_theta
        v_minus = (1 + beta) * v_old - beta * v_theta
        dims = tuple(range(1, v_theta.dim()))
        loss = r * ((v_plus - target) ** 2).mean(dims) + (1 - r) * ((v_minus - target) ** 2).mean(dims)
        if v_base is not None:
            loss = loss + cfg.nft_kl_weight * drift(v_theta, v_base)
        return loss
