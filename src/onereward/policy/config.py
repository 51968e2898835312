"""Settings of train_policy (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from onereward import tasks
from onereward.config import Config, setting

ALGORITHMS: tuple[str, ...] = ("refl", "refl_dynamic", "nft")
Algorithm = Literal["refl", "refl_dynamic", "nft"]
DEFAULT_TASK_PROBABILITIES = ",".join(f"{t}={p:g}" for t, p in tasks.DEFAULT_TASK_PROBABILITIES.items())
# diffusers' FLUX LoRA recipe (train_dreambooth_lora_flux.py): attention projections of the double
# and single blocks and the feed-forwards; peft matches each entry as a module-name suffix.
DEFAULT_LORA_TARGETS = (
    "attn.to_q,attn.to_k,attn.to_v,attn.to_out.0,attn.add_q_proj,attn.add_k_proj,attn.add_v_proj,"
    "attn.to_add_out,ff.net.0.proj,ff.net.2,ff_context.net.0.proj,ff_context.net.2,proj_mlp"
)


@dataclass(frozen=True)
class PolicyConfig(Config):
    """Multi-task RL of the generator against the one reward model: ReFL against a frozen reference
    (paper Algorithm 1), against the EMA policy (Algorithm 2), or DiffusionNFT (UniWorld-V2)."""

    section: ClassVar[str] = "policy"

    algorithm: Algorithm = setting(
        "refl", "refl (Algorithm 1, frozen base reference), refl_dynamic (Algorithm 2, EMA reference) or nft."
    )
    family: Literal["flux_fill", "sd_inpaint"] = setting(
        "flux_fill", "Generator family to train (flux_fill; sd_inpaint is refused, see docs/contracts.md)."
    )
    # ---- optimisation (profile: they depend on the model size) ---------------------------------
    max_steps: int = setting(1000, "Optimiser steps (iterations of the algorithm).", profile=True)
    batch_size: int = setting(8, "Global batch: samples (nft: groups) per optimiser step.", profile=True)
    micro_batch_size: int = setting(
        1, "Samples per forward pass; gradients accumulate to batch_size over micro batches and ranks.",
        profile=True,
    )  # fmt: skip
    learning_rate: float = setting(1e-5, "AdamW learning rate of refl / refl_dynamic.", profile=True)
    finetune: Literal["lora", "full"] = setting(
        "lora", "LoRA adapters on the transformer (peft) or full fine-tuning.", profile=True
    )
    lora_rank: int = setting(16, "LoRA rank (alpha = rank).", profile=True)
    ema_decay: float = setting(
        0.99, "EMA decay tau (Algorithm 1 output; Algorithm 2's reference).", profile=True
    )
    # ---- ReFL (Algorithms 1 and 2) ------------------------------------------------------------
    rollout_steps: int = setting(8, "Denoising steps of the reference and policy rollouts.", profile=True)
    t1: int = setting(
        2, "First step index the policy's grad step may be taken at (0 = from pure noise).", profile=True
    )
    t2: int = setting(
        7, "Last step index of the grad step (t ~ U{t1..t2}, t2 < rollout_steps).", profile=True
    )
    reward_orders: Literal["policy_first", "both"] = setting(
        "policy_first",
        "Order of the pair shown to the reward model: P(Yes | policy, reference) as in the paper's Eq. 5"
        " (policy_first), or the mean of that and 1 - P(Yes | reference, policy) (both: cancels the"
        " judge's position bias, twice the reward compute).",
        profile=True,
    )
    refl_kl_weight: float = setting(
        0.0,
        "ReFL: weight of ||v_policy - v_base||^2 at the grad step, added to Eq. 5's loss (an anchor to"
        " the base against reward hacking, beyond the paper; 0 = the paper's loss).",
        profile=True,
    )
    reward_lambda: float = setting(
        0.8, "Reward upper bound lambda of Eq. 5: loss = mean_e max(0, lambda - P(Yes)), in (0, 1].",
        profile=True,
    )  # fmt: skip
    cfg_scale: float = setting(1.0, "True-CFG scale of the rollouts (1 = no negative pass).", profile=True)
    guidance: float = setting(1.0, "FLUX distilled-guidance input of the rollouts.", profile=True)
    max_sequence_length: int = setting(32, "T5 prompt length in tokens.", profile=True)
    reference_seeds: int = setting(
        4, "Noise seeds per condition of the reference rollouts (cached or not); 0 = fresh noise each step.",
        profile=True,
    )  # fmt: skip
    # ---- DiffusionNFT -------------------------------------------------------------------------
    nft_group_size: int = setting(4, "NFT: rollouts per condition (group size G).", profile=True)
    nft_rollout_steps: int = setting(4, "NFT: steps of the fast group rollouts.", profile=True)
    nft_learning_rate: float = setting(3e-4, "NFT: AdamW learning rate (UniWorld-V2 Table 5).", profile=True)
    nft_beta: float = setting(
        1.0, "NFT: beta mixing old and trained velocity (Table 5: 1/beta = 1).", profile=True
    )
    nft_old_decay: float = setting(
        0.9, "NFT: EMA decay of the old (sampling) policy (Table 5).", profile=True
    )
    nft_kl_weight: float = setting(
        1e-4, "NFT: weight of ||v_theta - v_base||^2 (Table 5 KL loss weight).", profile=True
    )
    nft_tau_mu: float = setting(
        0.9,
        "NFT: groups whose raw reward mean > tau_mu and std < tau_sigma are dropped (Table 5).",
        profile=True,
    )
    nft_tau_sigma: float = setting(
        0.05, "NFT: the std threshold tau_sigma of the group filter (Table 5).", profile=True
    )
    nft_reward: Literal["pairwise", "score", "oracle"] = setting(
        "pairwise",
        "NFT raw reward: the reward model's P(Yes) against the base rollout, the training-free 0-5 score,"
        " or (synthetic world only) the oracle's normalised score: the skyline with a perfect judge.",
    )
    nft_norm: Literal["global", "group"] = setting(
        "global", "NFT normaliser Z of Eq. 7: std of the step's raw rewards (global) or of each group."
    )
    nft_constraint_rate: float = setting(
        0.0,
        "NFT: step size eta of a dual ascent that keeps every task x dimension no worse than the base:"
        " each step mu_e <- max(0, mu_e - eta * margin_e), margin_e = the step's mean reward of dimension"
        " e minus the base's (P(Yes) - 0.5 pairwise; oracle score - the base rollout's with the oracle),"
        " and dimension e weighs w_e (1 + mu_e). 0 = off.",
        profile=True,
    )
    nft_dimension_norm: Literal["pooled", "separate"] = setting(
        "pooled",
        "NFT: Eq. 7 on the mean over the task's dimensions (pooled), or on each dimension's reward with its"
        " own Z, then the weighted mean of the clipped advantages (separate: a dimension whose P(Yes)"
        " varies little still counts as much as the others).",
        profile=True,
    )
    nft_solver: Literal["ab2", "euler"] = setting(
        "ab2", "NFT rollout solver: second-order multistep (Adams-Bashforth on the velocity) or Euler."
    )
    # ---- precision and memory -----------------------------------------------------------------
    dtype: Literal["float32", "bfloat16", "float16"] = setting(
        "float32", "Weights dtype of the frozen parts (base, VAE, text encoders, reward model).", profile=True
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = setting(
        "no",
        "Autocast precision; trainable weights (the optimiser's master copy) stay float32.",
        profile=True,
    )
    gradient_checkpointing: bool = setting(
        False, "Recompute transformer blocks and VAE decoder blocks in backward.", profile=True
    )
    # ---- tasks, data, monitors -----------------------------------------------------------------
    task_probabilities: str = setting(
        DEFAULT_TASK_PROBABILITIES,
        "Task sampling probabilities p_k, 'task=p,...' (renormalised over present tasks).",
    )
    dimension_weights: str = setting(
        "",
        "Weights of the dimensions in each sample's loss / reward, 'dimension=w,...' (unnamed: 1); "
        "the loss is the weighted mean over the task's dimensions.",
    )
    probe_items: int = setting(4, "Held-out probe items per task (never trained on).", profile=True)
    oracle_margin: float = setting(
        0.02,
        "Synthetic world: a probe output wins (loses) against the base when its raw oracle score is "
        "higher (lower) by more than this; otherwise a tie (evaluate's oracle_margin).",
    )
    probe_seeds: int = setting(2, "Noise seeds per probe item (the same for policy and base).")
    eval_every: int = setting(0, "Evaluate the probe set every N steps (0 = max_steps // 4).")
    seed: int = setting(0, "Seed of the split, the sampling of tasks, conditions, noises and timesteps.")
    gate_threshold: float = setting(0.6, "Least reward-model test accuracy per needed task x dimension.")
    gate_rule: Literal["interval", "point"] = setting(
        "interval",
        "interval: a needed cell fails when its test accuracy is below gate_threshold beyond its Wilson "
        "95% interval, and the pooled accuracy of the needed cells must reach it; point: every cell must.",
    )
    gate_override: bool = setting(
        False, "Train even when the reward model fails the gate (logged, reported)."
    )
    lora_targets: str = setting(DEFAULT_LORA_TARGETS, "Comma-separated LoRA target module-name suffixes.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    warmup_steps: int = setting(0, "Linear learning-rate warmup steps (constant afterwards).")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0 = off).")
    log_every: int = setting(0, "Log training scalars every N steps (0 = max_steps // 20, at most 25).")
    checkpoint_every: int = setting(0, "Save a checkpoint every N steps (0 = max_steps // 4).")
    keep_checkpoints: int = setting(2, "Newest checkpoints kept while training (0 = write none).")
    checkpoint_dir: str = setting(
        "",
        "Checkpoints and TensorBoard logs ('' = .<out>.checkpoints beside the output); may sit on a volume.",
    )
    resume: bool = setting(True, "Resume from checkpoint_dir when it holds a checkpoint of this run.")
    keep_checkpoint_dir: bool = setting(False, "Keep checkpoint_dir after success (default: removed).")
    threads: int = setting(
        0, "torch CPU threads (0 = leave torch's default); fixed threads make runs repeatable."
    )
    device: str = setting("auto", "Torch device: auto (the accelerate rank's device), cpu, cuda, cuda:N.")
    report_items: int = setting(8, "Probe items shown in the report's image grid.")

    def validate(self) -> None:
        self.require(
            self.family == "flux_fill",
            "family",
            "train_policy trains flux_fill generators (sd_inpaint is not supported yet, see docs/contracts.md)",
        )
        self.require(self.max_steps >= 1, "max_steps", "expected an integer >= 1")
        self.require(self.batch_size >= 1, "batch_size", "expected an integer >= 1")
        self.require(self.micro_batch_size >= 1, "micro_batch_size", "expected an integer >= 1")
        self.require(self.learning_rate > 0, "learning_rate", "expected a number > 0")
        self.require(self.nft_learning_rate > 0, "nft_learning_rate", "expected a number > 0")
        self.require(self.lora_rank >= 1, "lora_rank", "expected an integer >= 1")
        self.require(0.0 <= self.ema_decay < 1.0, "ema_decay", "expected a decay in [0, 1)")
        self.require(self.rollout_steps >= 1, "rollout_steps", "expected an integer >= 1")
        self.require(self.t1 >= 0, "t1", "expected a step index >= 0")
        self.require(self.t1 <= self.t2, "t1", f"expected t1 <= t2 ({self.t2})")
        self.require(
            self.t2 < self.rollout_steps, "t2", f"expected t2 < rollout_steps ({self.rollout_steps})"
        )
        self.require(0.0 < self.reward_lambda <= 1.0, "reward_lambda", "expected lambda in (0, 1]")
        self.require(self.cfg_scale >= 1.0, "cfg_scale", "expected a true-CFG scale >= 1")
        self.require(self.guidance >= 0.0, "guidance", "expected a number >= 0")
        self.require(self.max_sequence_length >= 1, "max_sequence_length", "expected an integer >= 1")
        self.require(self.reference_seeds >= 0, "reference_seeds", "expected an integer >= 0")
        self.require(self.nft_group_size >= 2, "nft_group_size", "expected a group of >= 2 rollouts")
        self.require(self.nft_rollout_steps >= 1, "nft_rollout_steps", "expected an integer >= 1")
        self.require(self.nft_beta > 0, "nft_beta", "expected a number > 0")
        self.require(0.0 <= self.nft_old_decay < 1.0, "nft_old_decay", "expected a decay in [0, 1)")
        self.require(self.nft_kl_weight >= 0, "nft_kl_weight", "expected a number >= 0")
        self.require(
            math.isfinite(self.refl_kl_weight) and self.refl_kl_weight >= 0,
            "refl_kl_weight", "expected a finite number >= 0",
        )  # fmt: skip
        self.require(0.0 <= self.nft_tau_mu <= 1.0, "nft_tau_mu", "expected a reward level in [0, 1]")
        self.require(self.nft_tau_sigma >= 0, "nft_tau_sigma", "expected a number >= 0")
        self.require(
            math.isfinite(self.nft_constraint_rate) and self.nft_constraint_rate >= 0,
            "nft_constraint_rate", "expected a finite number >= 0",
        )  # fmt: skip
        self.require(
            self.nft_constraint_rate == 0 or self.nft_reward != "score", "nft_constraint_rate",
            "expected 0 with nft_reward 'score' (the 0-5 score has no base to be held against)",
        )  # fmt: skip
        self.require(self.probe_items >= 1, "probe_items", "expected an integer >= 1")
        self.require(self.oracle_margin >= 0, "oracle_margin", "expected a number >= 0")
        self.require(self.probe_seeds >= 1, "probe_seeds", "expected an integer >= 1")
        self.require(self.eval_every >= 0, "eval_every", "expected an integer >= 0")
        self.require(0.0 <= self.gate_threshold <= 1.0, "gate_threshold", "expected an accuracy in [0, 1]")
        self.require(bool(self.targets), "lora_targets", "expected comma-separated module-name suffixes")
        self.require(self.weight_decay >= 0, "weight_decay", "expected a number >= 0")
        self.require(self.warmup_steps >= 0, "warmup_steps", "expected an integer >= 0")
        self.require(self.max_grad_norm >= 0, "max_grad_norm", "expected a number >= 0")
        self.require(self.log_every >= 0, "log_every", "expected an integer >= 0")
        self.require(self.checkpoint_every >= 0, "checkpoint_every", "expected an integer >= 0")
        self.require(self.keep_checkpoints >= 0, "keep_checkpoints", "expected an integer >= 0")
        self.require(self.threads >= 0, "threads", "expected an integer >= 0")
        self.require(self.report_items >= 0, "report_items", "expected an integer >= 0")
        self.probabilities()  # validates the spec
        self.weights()

    # ---- derived values (one place) -----------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        """LoRA target module-name suffixes."""
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def _named_numbers(
        self, field: str, names: tuple[str, ...], what: str, symbol: str, word: str
    ) -> dict[str, float]:
        """``field``'s 'name=value,...' parsed: {name: value} with names from ``names``, each once,
        values finite and >= 0 (errors name the field)."""
        out: dict[str, float] = {}
        for entry in getattr(self, field).split(","):
            if not entry.strip():
                continue
            name, sep, value = entry.partition("=")
            name = name.strip()
            if not sep or name not in names:
                self.fail(field, f"expected '{what}={symbol},...' with {what}s from {', '.join(names)}")
            try:
                number = float(value)
            except ValueError:
                self.fail(field, f"expected a number for {name}")
            if not 0 <= number < float("inf") or name in out:
                self.fail(field, f"expected one finite {word} >= 0 per {what} ({name})")
            out[name] = number
        return out

    def probabilities(self) -> dict[str, float]:
        """``task_probabilities`` parsed: {task: p} with p >= 0 (not yet renormalised)."""
        out = self._named_numbers("task_probabilities", tasks.TASKS, "task", "p", "probability")
        if not out or sum(out.values()) <= 0:
            self.fail("task_probabilities", "expected at least one task with p > 0")
        return out

    def weights(self) -> dict[str, float]:
        """``dimension_weights`` parsed: {dimension: w >= 0}; dimensions not named weigh 1."""
        out = self._named_numbers("dimension_weights", tasks.DIMENSIONS, "dimension", "w", "weight")
        if len(out) == len(tasks.DIMENSIONS) and not any(out.values()):
            self.fail("dimension_weights", "expected at least one dimension with w > 0")
        return out

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.max_steps // 4)

    @property
    def log_interval(self) -> int:
        return self.log_every or max(1, min(25, self.max_steps // 20))

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints; 0 = none (keep_checkpoints 0)."""
        if self.keep_checkpoints == 0:
            return 0
        return self.checkpoint_every or max(1, self.max_steps // 4)

    @property
    def optimiser_lr(self) -> float:
        return self.nft_learning_rate if self.algorithm == "nft" else self.learning_rate
