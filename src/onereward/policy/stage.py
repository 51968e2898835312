"""Stage train_policy: multi-task RL of the generator against the one reward model.

``run(subset, reward_model, out, ...)`` trains the profile's FLUX-Fill generator on the subset's
(source, mask, prompt) conditions with one of:

- ``refl``: the paper's Algorithm 1, ReFL against a frozen reference (the base; LoRA: the adapters
  disabled, no second copy), whose rollouts may come from a cache (``references``, made by
  :func:`onereward.policy.references.run_references`);
- ``refl_dynamic``: Algorithm 2, the reference is the EMA policy;
- ``nft``: DiffusionNFT with group rollouts, a group-normalised reward and low-std group
  filtering (UniWorld-V2).

It refuses, with one line naming the input and the field: a reward model artifact of another kind,
or one whose test accuracy fails the gate on a task x dimension this run needs (the figures are in
the message); a subset item without a mask; an unknown algorithm; lambda outside (0, 1]; t1 > t2.
Runs resume from their newest checkpoint (also after SIGKILL). The ``policy`` artifact layout is in
:mod:`onereward.policy.artifact`; ``metrics.json`` holds reward_first/last (P(Yes) of the policy
against the base on held-out conditions), oracle_first/last and the oracle win rate (synthetic
world), seconds_per_iteration and samples_per_second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from onereward.errors import InputError
from onereward.log import get_logger
from onereward.policy.artifact import PolicyInfo, write_policy
from onereward.policy.conditions import ConditionSet, read_conditions
from onereward.policy.config import PolicyConfig
from onereward.policy.monitors import Monitor, falls, losses
from onereward.policy.trainer import PROBE_IMAGES, Trainer, TrainResult

log = get_logger("policy.stage")

STAGE = "train_policy"
RUN_ONLY = (  # settings that do not change what is trained (not part of the resume fingerprint)
    "max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "checkpoint_dir", "resume",
    "keep_checkpoint_dir", "threads", "device", "report_items", "oracle_margin",
)  # fmt: skip


def default_checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """``.<name>.checkpoints`` beside the output artifact (survives a failed run for resuming)."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.checkpoints"


def vae_grid(model_dir: str) -> int:
    """The generator's size multiple: 2 x the VAE's downsampling factor (latent packing)."""
    path = Path(model_dir) / "vae" / "config.json"
    if not path.is_file():
        raise InputError(f"generator: {path} is missing (expected a FluxFillPipeline folder)")
    channels = json.loads(path.read_text())["block_out_channels"]
    return 2 * 2 ** (len(channels) - 1)


def run(
    subset: str,
    reward_model: str,
    out: str,
    *,
    profile: str = "tiny",
    zoo: str | None = None,
    references: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Train the policy and write the ``policy`` artifact ``out``; returns its metrics.

    Args:
        subset: a ``subset`` artifact (or a pool whose items all have masks): the conditions.
        reward_model: a ``reward_model`` artifact (must pass the gate on the needed cells).
        out: output artifact directory (written atomically by rank 0).
        profile: profile name or YAML path: the generator, its ``policy`` and ``generate`` settings.
        zoo: tiny-zoo artifact dir for ``zoo:`` references (None = the cached zoo).
        references: optional reference rollouts (a candidates artifact from ``policy-references``).
        settings: fields of :class:`~onereward.policy.config.PolicyConfig`; None or absent = the
            profile's value.
    """
    from onereward.generate.stage import generator_identity
    from onereward.profile import load_profile
    from onereward.zoo import zoo_dir_for

    # 1. Settings and the base generator's identity.
    t_start = time.perf_counter()
    prof = load_profile(profile)
    cfg = PolicyConfig.resolve(prof.policy, settings)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    zoo_dir = zoo_dir_for(prof, zoo)
    model_dir = prof.resolve_model("generator", zoo_dir)
    identity = generator_identity(prof, "generator", zoo)
    # 2. Conditions: every item checked, the probe set held out, p_k renormalised.
    conditions = read_conditions(
        subset,
        probabilities=cfg.probabilities(),
        probe_items=cfg.probe_items,
        seed=cfg.seed,
        grid=vae_grid(model_dir),
        resolution=prof.image_size,
    )
    if cfg.algorithm == "nft" and cfg.nft_reward == "oracle":
        from onereward.policy.rewards import OracleReward

        OracleReward.check(conditions.all_train(), what="policy.nft_reward (--nft-reward)")
    # 3. The reward model: its kind, and the gate on the cells this run asks about.
    from onereward.models.flux_fill import torch_dtype
    from onereward.policy.rewards import load_reward_model

    accelerator = _accelerator(cfg)
    device = accelerator.device if cfg.device == "auto" else torch.device(cfg.device)
    if cfg.batch_size < accelerator.num_processes:  # every rank needs a sample for the all-reduce
        raise InputError(
            f"policy.batch_size (--batch-size): expected at least one sample per process "
            f"({accelerator.num_processes}), got {cfg.batch_size}"
        )
    dtype = torch_dtype(cfg.dtype)
    scorer, reward_manifest, gate_result = load_reward_model(
        reward_model, cells=conditions.needed_cells(), threshold=cfg.gate_threshold,
        override=cfg.gate_override, rule=cfg.gate_rule, device=device, dtype=dtype,
    )  # fmt: skip
    # 4. Reference rollouts: their seeds per condition, and the cache when one is given.
    cache = _references(references, prof, cfg, identity, conditions)
    # 5. The generator with the algorithm's weights, rollouts, reward, algorithm and monitor.
    algorithm, model, monitor = _build(prof, cfg, model_dir, device, accelerator, conditions, scorer, cache)
    # 6. Train (resumable), evaluating the probe set on the way.
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else default_checkpoint_dir(out)
    fingerprint = _fingerprint(cfg, conditions, reward_manifest.content_hash, identity, cache)
    trainer = Trainer(
        cfg, accelerator=accelerator, model=model, algorithm=algorithm, monitor=monitor,
        checkpoint_dir=ckpt_dir, fingerprint=fingerprint,
    )  # fmt: skip
    setup_s = time.perf_counter() - t_start
    t_train = time.perf_counter()
    result = trainer.run()
    timings = {"setup_s": round(setup_s, 3), "train_s": round(time.perf_counter() - t_train, 3)}
    # 7. Rank 0 writes the policy artifact: weights, policy.json, curves, report, TensorBoard.
    metrics: dict[str, Any] = {}
    if accelerator.is_main_process:
        metrics = _metrics(cfg, result, monitor, gate_result, cache, conditions)
        metrics["n_processes"] = accelerator.num_processes
        info = PolicyInfo(
            family="flux_fill", finetune=cfg.finetune, algorithm=cfg.algorithm,
            base={"generator": identity, "model_key": "generator", "profile": prof.name},
            lora=(
                {"rank": cfg.lora_rank, "alpha": cfg.lora_rank, "target_modules": cfg.targets}
                if cfg.finetune == "lora" else None
            ),
        )  # fmt: skip
        inputs = [conditions.manifest, reward_manifest] + ([cache.manifest] if cache is not None else [])
        if prof.model_ref("generator").ref.startswith("zoo:"):
            from onereward.zoo import zoo_manifest

            inputs.append(zoo_manifest(prof, zoo))
        write_policy(
            out, model.transformer, info,
            ema=model.copies.get("ema"), lora_config=model.lora_config,
            parameters=_parameters(prof, cfg, identity, references), inputs=inputs, metrics=metrics,
            counts={"finetune": cfg.finetune, "steps": cfg.max_steps,
                    "n_train_items": len(conditions.all_train()), "n_probe_items": len(conditions.probe)},
            timings=timings,
            extra=lambda root: _extra_files(root, ckpt_dir, cfg, result, metrics, gate_result, monitor, conditions),
        )  # fmt: skip
        log.info(
            "policy: P(Yes) vs base %.3f -> %.3f, oracle %.3f -> %.3f, %.2f s/iteration",
            metrics["reward_first"], metrics["reward_last"], metrics.get("oracle_first") or 0.0,
            metrics.get("oracle_last") or 0.0, metrics["seconds_per_iteration"],
        )  # fmt: skip
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and not cfg.keep_checkpoint_dir:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return metrics


def _accelerator(cfg: PolicyConfig) -> Any:
    from accelerate import Accelerator

    use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=not use_cuda)


def _references(
    references: str | None, prof: Any, cfg: PolicyConfig, identity: str, conditions: ConditionSet
):
    from onereward.policy.references import ReferenceCache, reference_seeds

    for c in conditions.all_train():
        c.reference_seeds = reference_seeds(prof, cfg, c.item_id, c.effective_prompt)
    if not references:
        return None
    uses_base = cfg.algorithm == "refl" or (
        cfg.algorithm == "nft"
        and (cfg.nft_reward == "pairwise" or (cfg.nft_reward == "oracle" and cfg.nft_constraint_rate > 0))
    )  # the oracle's dual ascent compares with the base's rollouts
    if not uses_base:
        log.warning("references: unused (%s compares against no frozen-base rollout)", cfg.algorithm)
        return None
    if cfg.reference_seeds == 0:
        raise InputError(
            "policy.reference_seeds (--reference-seeds): 0 draws fresh reference noise every step, which a "
            "cache cannot hold; set it to the cache's rollouts per item or drop --references"
        )
    cache = ReferenceCache.open(
        references, prof=prof, cfg=cfg, generator=identity, subset=conditions.manifest
    )
    for c in conditions.all_train():
        if not cache.has(c.item_id, c.reference_seeds):
            raise InputError(f"--references: {references} lacks the reference rollouts of item {c.item_id!r}")
    return cache


def _build(prof, cfg: PolicyConfig, model_dir: str, device, accelerator, conditions, scorer, cache):
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.models import flux_fill
    from onereward.policy.model import PolicyModel
    from onereward.policy.nft import Nft
    from onereward.policy.refl import Refl
    from onereward.policy.rewards import LogitScore, OracleReward, PairwiseReward
    from onereward.policy.rollouts import Rollouts

    pipe = flux_fill.load(model_dir, dtype=cfg.dtype, device=str(device))
    for part in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        part.requires_grad_(False)
    needs_base_copy = cfg.finetune == "full" and (
        (cfg.algorithm == "refl" and cache is None) or cfg.algorithm == "nft" or cfg.refl_kl_weight > 0
    )  # the probe's base outputs are made before the first step and kept in the checkpoint dir
    model = PolicyModel(
        pipe.transformer, finetune=cfg.finetune, lora_rank=cfg.lora_rank, lora_targets=cfg.targets,
        with_old=cfg.algorithm == "nft", with_base_copy=needs_base_copy, seed=cfg.seed,
    )  # fmt: skip
    if cfg.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
    sampler = FluxFillSampler(
        pipe, max_sequence_length=cfg.max_sequence_length, batch_size=cfg.micro_batch_size
    )
    rollouts = Rollouts(
        sampler, model, cfg_scale=cfg.cfg_scale, guidance=cfg.guidance, feather=prof.generate.feather
    )
    reward = PairwiseReward(scorer, orders=cfg.reward_orders)
    if cfg.algorithm == "nft":
        score = (
            LogitScore(scorer) if cfg.nft_reward == "score"
            else OracleReward() if cfg.nft_reward == "oracle" else None
        )  # fmt: skip
        algorithm = Nft(cfg, conditions, rollouts, reward, accelerator, references=cache, score=score)
    else:
        algorithm = Refl(cfg, conditions, rollouts, reward, accelerator, references=cache)
    monitor = Monitor(
        conditions.probe, rollouts, reward, seed=cfg.seed, probe_seeds=cfg.probe_seeds,
        rollout_steps=cfg.rollout_steps, accelerator=accelerator, margin=cfg.oracle_margin,
    )  # fmt: skip
    return algorithm, model, monitor


def _fingerprint(cfg: PolicyConfig, conditions: ConditionSet, reward_hash: str, identity: str, cache) -> str:
    settings = {k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY}
    blob = json.dumps(
        {
            "settings": settings,
            "subset": conditions.manifest.content_hash,
            "reward_model": reward_hash,
            "generator": identity,
            "references": cache.manifest.content_hash if cache is not None else None,
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _parameters(prof: Any, cfg: PolicyConfig, identity: str, references: str | None) -> dict[str, Any]:
    return {
        "profile": prof.name,
        "profile_sha": prof.sha,
        "generator": identity,
        "settings": {k: v for k, v in cfg.to_dict().items() if k not in ("checkpoint_dir",)},
        "references": bool(references),
    }


def _metrics(cfg, result: TrainResult, monitor: Monitor, gate_result, cache, conditions) -> dict[str, Any]:
    policy_evals = [e for e in result.evals if e["weights"] == "policy"]
    first, last = policy_evals[0], result.final["policy"]
    ema = result.final["ema"]
    synthetic = monitor.synthetic
    metrics: dict[str, Any] = {
        "algorithm": cfg.algorithm,
        "finetune": cfg.finetune,
        "steps": cfg.max_steps,
        "reward_first": first["p_yes_mean"],
        "reward_last": last["p_yes_mean"],
        "reward_last_ema": ema["p_yes_mean"],
        "reward_first_by_task": first["p_yes"],
        "reward_last_by_task": last["p_yes"],
        "oracle_kind": last["oracle_kind"],
        "oracle_first": first["oracle_mean"],
        "oracle_last": last["oracle_mean"],
        "oracle_last_ema": ema["oracle_mean"],
        "oracle_base": last["oracle_base_mean"],
        "oracle_first_by_task": first["oracle"],
        "oracle_last_by_task": last["oracle"],
        "oracle_base_by_task": last["oracle_base"],
        "oracle_delta_by_task": last["oracle_delta"],
        "oracle_falls": falls(last),
        "oracle_losing": losses(last),
        "hacking_flags": result.flags,
        "n_hacking_flags": len(result.flags),
        "outside_mask_change_first": first["outside_change"],
        "outside_mask_change_last": last["outside_change"],
        "outside_mask_change_base": last["outside_change_base"],
        "seconds_per_iteration": round(result.seconds_per_iteration, 4),
        "reference_seconds_per_iteration": round(result.reference_seconds_per_iteration, 4),
        "policy_seconds_per_iteration": round(result.policy_seconds_per_iteration, 4),
        "samples_per_second": round(result.samples_per_second, 4),
        "iterations_run": result.iterations_run,
        "resumed_from_step": result.resumed_from,
        "skipped_steps": result.skipped_steps,
        "trainable_parameters": result.trainable_parameters,
        "reference_cache": "used" if cache is not None else "none",
        "gate_passed": gate_result.passed,
        "gate_overridden": gate_result.overridden,
        "gate_rule": gate_result.rule,
        "gate_pooled_accuracy": gate_result.pooled,
        "n_train_items": len(conditions.all_train()),
        "n_probe_samples": len(monitor.samples),
        "task_probabilities": conditions.probabilities,
    }
    if result.history:
        tail = result.history[-1]
        metrics.update(
            {
                "loss_last": tail["loss"],
                "above_lambda_last": tail["above_lambda"],
                "grad_norm_last": tail["grad_norm"],
            }
        )
        duals = {k[len("dual/") :]: v for k, v in tail.items() if k.startswith("dual/")}
        if duals:  # nft_constraint_rate: the dual variables at the last step
            metrics["duals_last"] = duals
    if synthetic and result.final_outputs is not None:
        metrics["oracle_win_rate"] = monitor.win_rates(result.final_outputs)
    return metrics


def _extra_files(
    root: Path, ckpt_dir: Path, cfg, result: TrainResult, metrics, gate_result, monitor, conditions
) -> None:
    from onereward.artifacts import write_json_atomic
    from onereward.policy.report import write_report

    tb = ckpt_dir / "tensorboard"
    if tb.is_dir():
        shutil.copytree(tb, root / "tensorboard")
    probe = ckpt_dir / PROBE_IMAGES
    if probe.is_dir():
        shutil.copytree(probe, root / PROBE_IMAGES)
    write_json_atomic(
        root / "curves.json",
        {"history": result.history, "evals": result.evals, "final": result.final, "flags": result.flags},
    )
    base = monitor.ensure_base()
    shown = [monitor.samples[k] for k in monitor.first_of[: cfg.report_items]]
    write_report(
        root / "report.html",
        metrics=metrics,
        history=result.history,
        evals=result.evals + [result.final["ema"]],
        flags=result.flags,
        gate={
            "accuracy": {f"{t}/{d}": v for (t, d), v in gate_result.accuracy.items()},
            "threshold": gate_result.threshold,
            "rule": gate_result.rule,
            "pairs": {f"{t}/{d}": v for (t, d), v in gate_result.pairs.items()},
            "intervals": {f"{t}/{d}": v for (t, d), v in gate_result.intervals.items()},
            "pooled": gate_result.pooled,
            "passed": gate_result.passed,
            "overridden": gate_result.overridden,
        },
        probe_dir=root / PROBE_IMAGES,
        grid_items=[(c.item_id, c.task, c.prompt) for c in shown],
        base_images={
            monitor.samples[k].item_id: base.images[k] for k in monitor.first_of[: cfg.report_items]
        },
    )
