"""Monitors on a fixed held-out probe set: is the policy getting better, or hacking the reward?

The probe set is ``probe_items`` held-out conditions per task, each with ``probe_seeds`` fixed
noise seeds. The base's rollouts of these (conditions, seeds) are made once; every evaluation
rolls the policy out from the same conditions and seeds (paired comparisons) and records:

- **P(Yes)** of the policy against the base per task x dimension (the paper's Figure 6 shape);
- in the synthetic world (items with an ideal target), the **oracle** score of every probe output
  per dimension, normalised per (item, dimension) between noise and the target
  (:mod:`onereward.synth.baselines`), the paired difference policy - base with its 95%
  half-width (1.96 sd / sqrt(n)), and the cell's noise: the 95% half-width of the base's mean;
- the **change outside the mask before paste-back** (mean absolute difference to the source in
  grey levels, policy and base): a policy that learns to repaint the background is caught here
  even though paste-back hides it from the reward;
- probe images for the report's grid over training.

A cell whose P(Yes), or whose task's mean P(Yes) over its dimensions, rose since the first
evaluation while its oracle went down is a **reward-hacking flag**: its oracle difference is below
zero beyond its noise (interval below zero and a drop larger than the noise), or the policy loses
to the base on it beyond chance (the Wilson 95% interval of its oracle win rate, ties dropped, lies
below 0.5). At the end, :func:`win_rates` gives the oracle win rate of the policy over the base
per task x dimension (ties dropped: raw oracle differences within ``oracle_margin``, 0.02 as in
evaluate) with Wilson 95% intervals, pooled over each task's dimensions and over everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onereward.imageio import save_png
from onereward.policy.conditions import Condition
from onereward.policy.rewards import PairwiseReward
from onereward.policy.rollouts import Rollouts, by_size, to_uint8_arrays
from onereward.stats import Z95, wilson_interval

PROBE_STREAM = 7  # seed word of the probe noises
ORACLE_MARGIN = 0.02  # raw oracle differences within this are ties (evaluate's oracle_margin)
HACK_REWARD_RISE = 0.02  # P(Yes) rise that counts as "reward up" for the hacking flag


def _cells(conds: list[Condition]) -> list[tuple[int, str, str]]:
    return [(i, c.task, d) for i, c in enumerate(conds) for d in c.dimensions]


@dataclass
class ProbeOutputs:
    """Outputs of one weights' rollouts over the probe samples (one row per sample)."""

    images: list[np.ndarray]
    outside_change: np.ndarray  # [n] grey levels
    oracle: dict[tuple[int, str], float] = field(default_factory=dict)  # (sample, dimension) -> score
    oracle_raw: dict[tuple[int, str], float] = field(default_factory=dict)  # before normalisation
    p_yes: dict[tuple[int, str], float] = field(default_factory=dict)  # against the base


class Monitor:
    """Evaluates ``policy`` / ``ema`` weights on the probe set against the base."""

    def __init__(
        self,
        probe: list[Condition],
        rollouts: Rollouts,
        reward: PairwiseReward,
        *,
        seed: int,
        probe_seeds: int,
        rollout_steps: int,
        accelerator: Any,
        batch: int = 16,
        margin: float = ORACLE_MARGIN,
    ) -> None:
        self.rollouts = rollouts
        self.margin = margin
        self.reward = reward
        self.accelerator = accelerator
        self.steps = rollout_steps
        self.batch = batch
        rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, PROBE_STREAM])
        self.samples: list[Condition] = []
        self.seeds: list[int] = []
        self.first_of: list[int] = []  # index of each condition's first sample (image grid)
        for c in probe:
            self.first_of.append(len(self.samples))
            for _ in range(probe_seeds):
                self.samples.append(c)
                self.seeds.append(int(rng.integers(0, 2**31 - 1)))
        self.synthetic = bool(probe) and all(c.target is not None for c in probe)
        self._anchors: dict[str, Any] = {}
        self.base: ProbeOutputs | None = None

    # ---- oracle -------------------------------------------------------------------------------
    def _oracle(self, k: int, image: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        """(raw, reported) oracle scores of sample ``k``: reported = normalised in the synthetic world."""
        from onereward.synth import baselines, oracle

        c = self.samples[k]
        raw = oracle.score_all(c.task, c.source, c.mask, c.prompt, image)
        if not self.synthetic:
            return raw, raw
        if c.item_id not in self._anchors:
            self._anchors[c.item_id] = baselines.anchors(
                c.task, c.source, c.mask, c.prompt, c.target, item_id=c.item_id
            )
        return raw, self._anchors[c.item_id].normalise(raw)

    # ---- rollouts -----------------------------------------------------------------------------
    def _rollout(self, which: str) -> tuple[list[np.ndarray], np.ndarray, torch.Tensor]:
        n = len(self.samples)
        images: list[np.ndarray | None] = [None] * n
        change = np.zeros(n)
        tensors: list[torch.Tensor | None] = [None] * n
        for group in by_size(self.samples):
            for s in range(0, len(group), self.batch):
                idx = group[s : s + self.batch]
                conds = [self.samples[i] for i in idx]
                with self.accelerator.autocast():
                    out = self.rollouts.sample(conds, [self.seeds[i] for i in idx], which, steps=self.steps)
                arrays = to_uint8_arrays(out.images)
                raws = out.raw.float().cpu().numpy()
                for j, i in enumerate(idx):
                    images[i] = arrays[j]
                    tensors[i] = torch.from_numpy(arrays[j]).permute(2, 0, 1).float() / 255.0
                    c = self.samples[i]
                    outside = ~c.mask
                    diff = np.abs(raws[j].transpose(1, 2, 0) * 255.0 - c.source.astype(np.float64))
                    change[i] = float(diff[outside].mean()) if outside.any() else 0.0
        return images, change, tensors  # type: ignore[return-value]

    def _score(self, outputs: ProbeOutputs) -> None:
        for k, image in enumerate(outputs.images):
            raw, reported = self._oracle(k, image)
            for dim, v in reported.items():
                outputs.oracle[(k, dim)] = float(v)
                outputs.oracle_raw[(k, dim)] = float(raw[dim])

    def ensure_base(self, cache: Path | None = None, *, untrained: bool = False) -> ProbeOutputs:
        """The base's probe outputs (rolled out once; kept in ``cache`` (.npz) across resumes).

        ``untrained``: the policy has not been stepped yet, so it is the base (a full fine-tune
        keeps no frozen copy when the reference rollouts are cached: the policy rolls out the base).
        """
        if self.base is not None:
            return self.base
        if cache is not None and cache.is_file():
            data = np.load(cache)
            images = list(data["images"])
            change = data["outside_change"]
        else:
            model = self.rollouts.model
            which = (
                "base" if model.finetune == "lora" or "base" in model.copies or not untrained else "policy"
            )
            images, change, _ = self._rollout(which)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.stem + ".tmp.npz")
                np.savez(tmp, images=np.stack(images), outside_change=change)
                tmp.replace(cache)
        self.base = ProbeOutputs(images=images, outside_change=np.asarray(change))
        self._score(self.base)
        return self.base

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(
        self, step: int, which: str = "policy", image_dir: Path | None = None, n_images: int = 0
    ) -> tuple[dict[str, Any], ProbeOutputs]:
        """Roll out ``which`` on the probe set; returns (summary, per-sample outputs)."""
        base = self.ensure_base()
        images, change, tensors = self._rollout(which)
        out = ProbeOutputs(images=images, outside_change=change)
        self._score(out)
        base_t = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255.0 for a in base.images])
        pol_t = torch.stack(tensors)
        values: list[float] = []
        for group in by_size(self.samples):
            for s in range(0, len(group), self.batch):
                idx = group[s : s + self.batch]
                p, comps = self.reward.p_yes(
                    pol_t[idx].to(self.rollouts.device),
                    base_t[idx],
                    [self.samples[i] for i in idx],
                    grad=False,
                )
                for value, ci, dim in zip(p.tolist(), comps.index, comps.dimensions, strict=True):
                    out.p_yes[(idx[ci], dim)] = float(value)
                    values.append(float(value))
        if image_dir is not None and n_images:
            for k in self.first_of[:n_images]:
                save_png(image_dir / f"{self.samples[k].item_id}.png", images[k])
        return self.summary(step, which, out), out

    def summary(self, step: int, which: str, out: ProbeOutputs) -> dict[str, Any]:
        """Means per task x dimension of P(Yes), oracle and the paired oracle difference."""
        assert self.base is not None
        p_cells: dict[str, dict[str, list[float]]] = {}
        o_cells: dict[str, dict[str, list[float]]] = {}
        d_cells: dict[str, dict[str, list[float]]] = {}
        b_cells: dict[str, dict[str, list[float]]] = {}
        for k, c in enumerate(self.samples):
            for dim in c.dimensions:
                p_cells.setdefault(c.task, {}).setdefault(dim, []).append(out.p_yes[(k, dim)])
                o_cells.setdefault(c.task, {}).setdefault(dim, []).append(out.oracle[(k, dim)])
                b_cells.setdefault(c.task, {}).setdefault(dim, []).append(self.base.oracle[(k, dim)])
                d_cells.setdefault(c.task, {}).setdefault(dim, []).append(
                    out.oracle[(k, dim)] - self.base.oracle[(k, dim)]
                )

        def mean(cells: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
            return {t: {d: float(np.mean(v)) for d, v in dims.items()} for t, dims in cells.items()}

        def half_width(v: list[float]) -> float | None:
            return float(Z95 * np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None

        # mean: paired difference policy - base; half_width: its 95% interval; noise: the 95%
        # half-width of the base's own mean of that cell (how much the mean moves with the sample).
        delta = {
            t: {
                d: {
                    "mean": float(np.mean(v)),
                    "half_width": half_width(v),
                    "noise": half_width(b_cells[t][d]),
                    "n": len(v),
                }
                for d, v in dims.items()
            }
            for t, dims in d_cells.items()
        }
        all_p = [v for dims in p_cells.values() for vs in dims.values() for v in vs]
        all_o = [v for dims in o_cells.values() for vs in dims.values() for v in vs]
        all_b = [v for dims in b_cells.values() for vs in dims.values() for v in vs]
        return {
            "step": step,
            "weights": which,
            "p_yes": mean(p_cells),
            "p_yes_mean": float(np.mean(all_p)) if all_p else 0.0,
            "oracle": mean(o_cells),
            "oracle_mean": float(np.mean(all_o)) if all_o else 0.0,
            "oracle_base": mean(b_cells),
            "oracle_base_mean": float(np.mean(all_b)) if all_b else 0.0,
            "oracle_delta": delta,
            "oracle_verdicts": self.win_rates(out)["cells"] if self.base.oracle_raw else {},
            "oracle_kind": "normalised" if self.synthetic else "raw",
            "outside_change": float(np.mean(out.outside_change)) if len(out.outside_change) else 0.0,
            "outside_change_base": float(np.mean(self.base.outside_change)) if self.base.images else 0.0,
        }

    def win_rates(self, out: ProbeOutputs, margin: float | None = None) -> dict[str, Any]:
        """Oracle win rate of ``out`` over the base per task x dimension (ties dropped), Wilson 95%
        intervals; ``pooled``: per task over its dimensions, and ``all``.

        A win (loss) is a raw oracle score above (below) the base's by more than ``margin``: the
        simulated annotators' "no clear difference" and evaluate's oracle GSB margin, so that a
        stray pixel changing a score by 1e-4 is a tie, not a verdict (default: the monitor's)."""
        assert self.base is not None
        margin = self.margin if margin is None else margin
        cells: dict[str, dict[str, list[int]]] = {}
        for k, c in enumerate(self.samples):
            for dim in c.dimensions:
                diff = out.oracle_raw[(k, dim)] - self.base.oracle_raw[(k, dim)]
                w = cells.setdefault(c.task, {}).setdefault(dim, [0, 0, 0])
                w[0 if diff > margin else 1 if diff < -margin else 2] += 1

        def entry(wins: int, losses: int, ties: int) -> dict[str, Any]:
            n = wins + losses
            low, high = wilson_interval(wins, n)
            return {
                "wins": wins, "losses": losses, "ties": ties,
                "rate": wins / n if n else None, "low": low, "high": high,
            }  # fmt: skip

        by_cell = {t: {d: entry(*w) for d, w in dims.items()} for t, dims in cells.items()}
        pooled = {}
        for t, dims in cells.items():
            pooled[t] = entry(*(sum(w[i] for w in dims.values()) for i in range(3)))
        pooled["all"] = entry(
            *(sum(w[i] for dims in cells.values() for w in dims.values()) for i in range(3))
        )
        return {"cells": by_cell, "pooled": pooled, "margin": margin}


def fell(delta: dict[str, Any]) -> bool:
    """The cell's oracle mean is below the base's beyond noise: the paired difference's 95% interval
    lies below zero and the drop exceeds the 95% half-width of the base's mean of the cell."""
    if delta.get("half_width") is None or delta.get("noise") is None:
        return False
    return delta["mean"] + delta["half_width"] < 0 and -delta["mean"] > delta["noise"]


def losing(verdict: dict[str, Any] | None) -> bool:
    """The cell's oracle win rate over the base lies below 0.5 beyond its Wilson 95% interval: the
    policy loses more often than it wins, beyond chance."""
    return bool(verdict) and verdict.get("rate") is not None and verdict["high"] < 0.5


def hacking_flags(first: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Cells whose oracle went down while the reward rose since ``first``: the cell's mean fell below
    the base's beyond its noise (:func:`fell`), or the policy loses to the base on the cell beyond
    chance (:func:`losing`; a few large losses among many ties do not move the mean beyond noise).

    "The reward rose" is the cell's own P(Yes) or its task's mean P(Yes) over the dimensions (what
    the policy is trained on): a policy that stops drawing the prompted object raises the task's
    reward through consistency, structure and aesthetics while text alignment's own P(Yes) falls
    with its oracle. That is the reward hacking the watch is for (``reasons`` carries
    ``task_reward_rose`` then)."""
    flags = []
    for task, dims in current["p_yes"].items():
        before = first["p_yes"].get(task, {})
        common = [d for d in dims if d in before]
        task_rise = (
            float(np.mean([dims[d] for d in common]) - np.mean([before[d] for d in common]))
            if common
            else 0.0
        )
        for dim, p in dims.items():
            rise = p - before.get(dim, p)
            delta = current["oracle_delta"].get(task, {}).get(dim)
            if delta is None or max(rise, task_rise) <= HACK_REWARD_RISE:
                continue
            verdict = current.get("oracle_verdicts", {}).get(task, {}).get(dim)
            reasons = [
                name
                for name, hit in (("oracle_fell", fell(delta)), ("oracle_losing", losing(verdict)))
                if hit
            ]
            if reasons:
                if rise <= HACK_REWARD_RISE:
                    reasons.append("task_reward_rose")
                flag = {"step": current["step"], "task": task, "dimension": dim, "p_yes_rise": rise,
                        "task_p_yes_rise": task_rise, "oracle_delta": delta["mean"],
                        "half_width": delta["half_width"], "reasons": reasons}  # fmt: skip
                if verdict:
                    flag.update(wins=verdict["wins"], losses=verdict["losses"], ties=verdict["ties"])
                flags.append(flag)
    return flags


def falls(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Cells whose oracle mean is below the base's by more than its noise (:func:`fell`)."""
    out = []
    for task, dims in summary["oracle_delta"].items():
        for dim, delta in dims.items():
            if fell(delta):
                out.append({"task": task, "dimension": dim, **delta})
    return out


def losses(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Cells the policy loses to the base beyond chance (:func:`losing`), with their counts."""
    out = []
    for task, dims in summary.get("oracle_verdicts", {}).items():
        for dim, verdict in dims.items():
            if losing(verdict):
                out.append({"task": task, "dimension": dim, **verdict})
    return out
