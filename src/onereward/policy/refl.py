"""ReFL against the one reward model: the paper's Algorithm 1 (``refl``) and Algorithm 2 (``refl_dynamic``).

One iteration (:meth:`Refl.step`), for a global batch of ``batch_size`` samples:

1. each sample draws a task k with probability p_k and a training condition of that task;
2. two noises: the reference's (one of the condition's ``reference_seeds``, or a fresh one when
   ``reference_seeds`` is 0) and the policy's (always fresh); ``t ~ U{t1..t2}`` for the step;
3. the reference image: the frozen base (refl; adapters disabled, or the cached rollout) or the
   EMA policy (refl_dynamic), denoised fully without grad;
4. the policy denoises without grad down to step t, takes one step with grad predicting x0, and
   the VAE decodes it with grad (:meth:`~onereward.policy.rollouts.Rollouts.policy_x0`);
5. for each dimension e of the task: P(Yes | x_policy, x_ref, q_e) through the reward model's
   differentiable path; the sample's loss is mean_e max(0, lambda - P) (Eq. 5), weighted by
   ``dimension_weights`` when set, plus ``refl_kl_weight`` ||v_policy - v_base||^2 at the grad step
   when set (an anchor to the base beyond the paper; the base is the adapters disabled);
6. the batch loss is the mean over samples; micro batches and ranks each backpropagate their share
   (gradient accumulation keeps the global batch whatever the number of devices).

The optimiser step and the EMA update are the trainer's. All draws come from seeded streams of
the step, so a resumed run repeats them exactly.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from onereward.policy.conditions import STREAM_NOISE, STREAM_TIME, Condition, ConditionSet
from onereward.policy.config import PolicyConfig
from onereward.policy.references import ReferenceCache
from onereward.policy.rewards import PairwiseReward
from onereward.policy.rollouts import Rollouts, by_size, quantise


@dataclass
class StepStats:
    """What one iteration measured (this rank's samples)."""

    loss: float = 0.0
    n_samples: int = 0
    n_comparisons: int = 0
    above_lambda: float = 0.0  # fraction of comparisons with P(Yes) >= lambda (zero gradient)
    p_yes: float = 0.0
    cells: dict[str, list[float]] = field(default_factory=dict)  # "task/dimension" -> P(Yes) values
    reference_seconds: float = 0.0
    policy_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    optimise: bool = True  # False: nothing to learn from this step (NFT: every group filtered)


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0x7FFFFFFF, step, stream])


def local_chunks(n: int, rank: int, world: int, size: int) -> list[list[int]]:
    """This rank's sample indices (every ``world``-th from ``rank``), cut into micro batches."""
    mine = list(range(rank, n, world))
    return [mine[i : i + size] for i in range(0, len(mine), size)]


class Refl:
    """Algorithms 1 (reference = frozen base) and 2 (reference = EMA policy)."""

    def __init__(
        self,
        cfg: PolicyConfig,
        conditions: ConditionSet,
        rollouts: Rollouts,
        reward: PairwiseReward,
        accelerator: Any,
        *,
        references: ReferenceCache | None = None,
    ) -> None:
        self.cfg = cfg
        self.conditions = conditions
        self.rollouts = rollouts
        self.reward = reward
        self.accelerator = accelerator
        self.references = references if cfg.algorithm == "refl" else None
        self.reference_weights = "base" if cfg.algorithm == "refl" else "ema"

    def state_dict(self) -> dict[str, Any]:
        """State beyond the weights and RNGs that a resume needs: none (every draw is seeded by step)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def draws(self, step: int) -> tuple[list[Condition], list[int], list[int], int]:
        """The step's conditions, reference seeds, policy seeds and grad-step index t."""
        cfg = self.cfg
        conds = self.conditions.sample(cfg.seed, step, cfg.batch_size)
        rng = step_rng(cfg.seed, step, STREAM_NOISE)
        ref_seeds, pol_seeds = [], []
        for c in conds:
            if c.reference_seeds:
                ref_seeds.append(c.reference_seeds[int(rng.integers(len(c.reference_seeds)))])
            else:
                ref_seeds.append(int(rng.integers(0, 2**31 - 1)))
            pol_seeds.append(int(rng.integers(0, 2**31 - 1)))
        t = int(step_rng(cfg.seed, step, STREAM_TIME).integers(cfg.t1, cfg.t2 + 1))
        return conds, ref_seeds, pol_seeds, t

    def reference_images(self, conds: list[Condition], seeds: list[int]) -> torch.Tensor:
        """Reference images in [0, 1] (8-bit levels): from the cache, or rolled out without grad."""
        if self.references is not None:
            arrays = [self.references.get(c.item_id, s) for c, s in zip(conds, seeds, strict=True)]
            stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
            return stacked.to(self.rollouts.device)
        with self.accelerator.autocast():
            out = self.rollouts.sample(conds, seeds, self.reference_weights, steps=self.cfg.rollout_steps)
        return quantise(out.images)

    def step(self, step: int, rank: int = 0, world: int = 1) -> StepStats:
        """Forward and backward of one iteration's loss (this rank's share); no optimiser step."""
        cfg = self.cfg
        conds, ref_seeds, pol_seeds, t = self.draws(step)
        stats = StepStats(extra={"t": float(t)})
        share = cfg.batch_size / world  # DDP averages over ranks: each rank divides by its share
        chunks = local_chunks(len(conds), rank, world, cfg.micro_batch_size)
        groups = [[chunk[i] for i in g] for chunk in chunks for g in by_size([conds[i] for i in chunk])]
        p_all = []
        for k, idx in enumerate(groups):
            sub = [conds[i] for i in idx]
            t0 = time.perf_counter()
            ref = self.reference_images(sub, [ref_seeds[i] for i in idx])
            t1 = time.perf_counter()
            last = k == len(groups) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.rollouts.model.wrapped)
            with sync:
                with self.accelerator.autocast():
                    pol = self.rollouts.policy_x0(
                        sub, [pol_seeds[i] for i in idx], t, steps=cfg.rollout_steps,
                        anchor=cfg.refl_kl_weight > 0,
                    )  # fmt: skip
                    p, comps = self.reward.p_yes(pol.images, ref, sub, grad=True)
                per_sample = comps.per_condition_mean(
                    torch.relu(cfg.reward_lambda - p.float()), len(sub), cfg.weights()
                )
                if pol.anchor is not None:
                    drift = pol.anchor.detach().float().cpu()
                    stats.extra["kl"] = stats.extra.get("kl", 0.0) + float(drift.sum())
                    per_sample = per_sample + cfg.refl_kl_weight * pol.anchor.to(per_sample.device)
                loss = per_sample.sum() / share
                self.accelerator.backward(loss)
            stats.reference_seconds += t1 - t0
            stats.policy_seconds += time.perf_counter() - t1
            stats.loss += float(per_sample.detach().sum())
            stats.n_samples += len(sub)
            pd = p.detach().float().cpu()
            p_all.append(pd)
            for value, task, dim in zip(pd.tolist(), comps.tasks, comps.dimensions, strict=True):
                stats.cells.setdefault(f"{task}/{dim}", []).append(value)
        if p_all:
            ps = torch.cat(p_all)
            stats.n_comparisons = int(ps.numel())
            stats.p_yes = float(ps.mean())
            stats.above_lambda = float((ps >= cfg.reward_lambda).float().mean())
            stats.loss /= max(1, stats.n_samples)
            if "kl" in stats.extra:
                stats.extra["kl"] /= max(1, stats.n_samples)
        return stats
