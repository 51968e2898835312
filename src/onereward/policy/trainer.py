"""The training loop shared by the algorithms: optimiser, EMA, monitors, checkpoints, logs.

Per step: the algorithm's forward/backward (:meth:`Refl.step` / :meth:`Nft.step`, micro batches and
ranks each taking their share of the global batch), gradient clipping (the norm is logged), an AdamW
step on the float32 trainable weights (linear warm-up, then constant), then the EMA updates (``ema``
with ``ema_decay``; NFT's ``old`` with ``nft_old_decay``).

``accelerate`` places the model (CPU, one GPU, or one process per GPU under ``accelerate launch``
with DDP; rank 0 evaluates, logs and writes), runs autocast for mixed precision and saves the
optimiser, scheduler, grad scaler and RNG states; a save hook replaces its model weights with only
what is trained (LoRA adapters ``policy``/``ema``/``old``, or the full transformer and its copies).
A checkpoint ``step-N/`` is complete once its ``state.json`` (step, history, evaluations, the
algorithm's own state such as NFT's dual variables, run fingerprint) is written; a rerun resumes
from the newest complete one and repeats the uninterrupted run exactly (every random draw is a
function of (seed, step)).

Every ``eval_every`` steps (and at the end, for ``policy`` and ``ema``) the :class:`Monitor`
evaluates the probe set; TensorBoard scalars go to ``<checkpoint_dir>/tensorboard``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from onereward.artifacts import write_json_atomic
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.policy.config import PolicyConfig
from onereward.policy.model import PolicyModel
from onereward.policy.monitors import Monitor, ProbeOutputs, hacking_flags

log = get_logger("policy.train")

STATE_FILE = "state.json"
WEIGHTS_FILE = "trained_weights.safetensors"
CHECKPOINT_PREFIX = "step-"
PROBE_BASE = "probe_base.npz"
PROBE_IMAGES = "probe"


@dataclass
class TrainResult:
    """What a run did: the history of logged windows, the evaluations and the timings."""

    steps: int
    resumed_from: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)  # {"policy": summary, "ema": summary}
    final_outputs: ProbeOutputs | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    seconds_per_iteration: float = 0.0
    reference_seconds_per_iteration: float = 0.0
    policy_seconds_per_iteration: float = 0.0
    samples_per_second: float = 0.0
    trainable_parameters: int = 0
    iterations_run: int = 0
    skipped_steps: int = 0


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """Newest complete checkpoint (one whose ``state.json`` exists) or None."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _constant_after_warmup(warmup: int):
    def f(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    return f


class Trainer:
    """Runs ``algorithm`` for ``cfg.max_steps`` steps on ``model`` (see the module docstring)."""

    def __init__(
        self,
        cfg: PolicyConfig,
        *,
        accelerator: Any,
        model: PolicyModel,
        algorithm: Any,
        monitor: Monitor,
        checkpoint_dir: Path,
        fingerprint: str,
    ) -> None:
        self.cfg = cfg
        self.accelerator = accelerator
        self.model = model
        self.algorithm = algorithm
        self.monitor = monitor
        self.checkpoint_dir = Path(checkpoint_dir)
        self.fingerprint = fingerprint
        self.params = model.trainable_parameters()
        bad = [p.dtype for p in self.params if p.dtype != torch.float32]
        if bad:  # the optimiser must never step low-precision weights
            raise RuntimeError(f"trainable weights must be float32 (master copy), found {bad[:1]}")
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.optimiser_lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _constant_after_warmup(cfg.warmup_steps)
        )
        model.wrapped, self.optimizer, self.scheduler = accelerator.prepare(
            model.transformer, self.optimizer, self.scheduler
        )
        accelerator.register_save_state_pre_hook(self._save_hook)
        accelerator.register_load_state_pre_hook(self._load_hook)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save_hook(self, models: list, weights: list, output_dir: str) -> None:
        if self.accelerator.is_main_process:
            from safetensors.torch import save_file

            state = {
                f"{which}::{name}": t.detach().to("cpu", copy=True).contiguous()
                for which in self.model.names
                for name, t in self.model.named_state(which).items()
            }
            save_file(state, str(Path(output_dir) / WEIGHTS_FILE))
        weights.clear()  # accelerate saves no full model: only what is trained (above)

    def _load_hook(self, models: list, input_dir: str) -> None:
        from safetensors.torch import load_file

        state = load_file(str(Path(input_dir) / WEIGHTS_FILE))
        for which in self.model.names:
            prefix = f"{which}::"
            self.model.load_named_state(
                which, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        models.clear()

    def _save_checkpoint(self, step: int, history: list, evals: list, flags: list) -> None:
        path = self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            write_json_atomic(
                path / STATE_FILE,
                {
                    "step": step,
                    "fingerprint": self.fingerprint,
                    "history": history,
                    "evals": evals,
                    "flags": flags,
                    "algorithm": self.algorithm.state_dict(),  # NFT's dual variables
                },
            )
            complete = sorted(
                (p for p in self.checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()),
                key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
            )
            for old in complete[: max(0, len(complete) - self.cfg.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> tuple[int, list, list, list]:
        ckpt = latest_checkpoint(self.checkpoint_dir) if self.cfg.resume else None
        if ckpt is None:
            return 0, [], [], []
        state = json.loads((ckpt / STATE_FILE).read_text())
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"checkpoint_dir: {self.checkpoint_dir} holds checkpoints of a different run (inputs or settings "
                f"changed: fingerprint {state.get('fingerprint')} != {self.fingerprint}); use another "
                "checkpoint_dir or resume=False"
            )
        self.accelerator.load_state(str(ckpt))
        self.algorithm.load_state_dict(state.get("algorithm", {}))
        for partial in self.checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*"):  # killed while writing
            if not (partial / STATE_FILE).is_file():
                shutil.rmtree(partial, ignore_errors=True)
        log.info("resumed from %s (step %d)", ckpt, state["step"])
        return int(state["step"]), list(state["history"]), list(state["evals"]), list(state.get("flags", []))

    # ---- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, step: int, which: str, evals: list, flags: list, writer: Any) -> ProbeOutputs | None:
        out = None
        if self.accelerator.is_main_process:
            image_dir = self.checkpoint_dir / PROBE_IMAGES / f"{which}-{step:08d}"
            with torch.no_grad():
                summary, out = self.monitor.evaluate(step, which, image_dir, self.cfg.report_items)
            evals.append(summary)
            if evals[0]["weights"] == "policy" and len(evals) > 1 and which == "policy":
                flags.extend(hacking_flags(evals[0], summary))
            if writer is not None:
                writer.add_scalar(f"probe_{which}/p_yes", summary["p_yes_mean"], step)
                writer.add_scalar(f"probe_{which}/oracle", summary["oracle_mean"], step)
                writer.add_scalar(f"probe_{which}/outside_change", summary["outside_change"], step)
                for task, dims in summary["p_yes"].items():
                    for dim, v in dims.items():
                        writer.add_scalar(f"probe_{which}/p_yes/{task}/{dim}", v, step)
                        writer.add_scalar(
                            f"probe_{which}/oracle/{task}/{dim}", summary["oracle"][task][dim], step
                        )
            log.info(
                "eval %s step %d: P(Yes) vs base %.3f, oracle %.3f (%s), outside-mask change %.2f",
                which, step, summary["p_yes_mean"], summary["oracle_mean"], summary["oracle_kind"],
                summary["outside_change"],
            )  # fmt: skip
        self.accelerator.wait_for_everyone()
        return out

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from torch.utils.tensorboard import SummaryWriter

        cfg, acc = self.cfg, self.accelerator
        start, history, evals, flags = self._resume()
        main = acc.is_main_process
        writer = SummaryWriter(str(self.checkpoint_dir / "tensorboard"), purge_step=start) if main else None
        if main:
            with torch.no_grad():
                self.monitor.ensure_base(self.checkpoint_dir / PROBE_BASE, untrained=start == 0)
        result = TrainResult(steps=cfg.max_steps, resumed_from=start)
        window: list[Any] = []
        step_times, ref_times, pol_times, n_samples = [], [], [], 0
        bar = tqdm(
            total=cfg.max_steps, initial=start, desc=f"train_policy ({cfg.algorithm})", disable=not main
        )
        for step in range(start, cfg.max_steps):
            if step % cfg.eval_interval == 0 and not any(
                e["step"] == step and e["weights"] == "policy" for e in evals
            ):
                self._evaluate(step, "policy", evals, flags, writer)
            t0 = time.perf_counter()
            stats = self.algorithm.step(step, acc.process_index, acc.num_processes)
            grad_norm = float(acc.clip_grad_norm_(self.params, cfg.max_grad_norm or float("inf")))
            if stats.optimise:
                self.optimizer.step()
            else:
                result.skipped_steps += 1
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if stats.optimise:
                self.model.ema_update("ema", cfg.ema_decay)
                if "old" in self.model.names:
                    self.model.ema_update("old", cfg.nft_old_decay)
            step_times.append(time.perf_counter() - t0)
            ref_times.append(stats.reference_seconds)
            pol_times.append(stats.policy_seconds)
            n_samples += cfg.batch_size * (cfg.nft_group_size if cfg.algorithm == "nft" else 1)
            window.append((stats, grad_norm))
            bar.update(1)
            done = step + 1
            if done % cfg.log_interval == 0 or done == cfg.max_steps:
                entry = self._log_entry(done, window, step_times)
                history.append(entry)
                window = []
                # NFT's raw reward is a 0-5 score or the oracle's unless it is P(Yes) against the base.
                label = "p_yes" if cfg.algorithm != "nft" or cfg.nft_reward == "pairwise" else cfg.nft_reward
                bar.set_postfix({"loss": f"{entry['loss']:.3f}", label: f"{entry['p_yes']:.3f}"})
                if writer is not None:
                    for key, value in entry.items():
                        if isinstance(value, (int, float)) and key != "step":
                            writer.add_scalar(f"train/{key}", value, done)
            if (
                self.cfg.checkpoint_interval
                and done % self.cfg.checkpoint_interval == 0
                and done < cfg.max_steps
            ):
                self._save_checkpoint(done, history, evals, flags)
        bar.close()
        # Final evaluations: the policy and its EMA at the last step.
        if not any(e["step"] == cfg.max_steps and e["weights"] == "policy" for e in evals):
            result.final_outputs = self._evaluate(cfg.max_steps, "policy", evals, flags, writer)
        else:  # resumed after the last step: evaluate again for the per-sample outputs
            result.final_outputs = self._evaluate(cfg.max_steps, "policy", [], [], None)
        ema_evals: list = []
        self._evaluate(cfg.max_steps, "ema", ema_evals, [], writer)
        if writer is not None:
            writer.close()
        result.history, result.evals, result.flags = history, evals, flags
        if main:
            result.final = {
                "policy": [e for e in evals if e["weights"] == "policy"][-1],
                "ema": ema_evals[-1],
            }
        run_steps = len(step_times)
        result.iterations_run = run_steps
        result.seconds = float(sum(step_times))
        if run_steps:
            result.seconds_per_iteration = float(np.mean(step_times))
            result.reference_seconds_per_iteration = float(np.mean(ref_times))
            result.policy_seconds_per_iteration = float(np.mean(pol_times))
            result.samples_per_second = n_samples / result.seconds if result.seconds > 0 else 0.0
        result.trainable_parameters = sum(p.numel() for p in self.params)
        return result

    def _log_entry(self, done: int, window: list, step_times: list) -> dict[str, Any]:
        stats = [s for s, _ in window]
        cells: dict[str, list[float]] = {}
        for s in stats:
            for key, values in s.cells.items():
                cells.setdefault(key, []).extend(values)
        entry: dict[str, Any] = {
            "step": done,
            "loss": float(np.mean([s.loss for s in stats])),
            "p_yes": float(np.mean([s.p_yes for s in stats])),
            "above_lambda": float(np.mean([s.above_lambda for s in stats])),
            "grad_norm": float(np.mean([g for _, g in window])),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "seconds_per_iteration": float(np.mean(step_times[-len(window) :])),
            "cells": {k: float(np.mean(v)) for k, v in sorted(cells.items())},
        }
        for key in sorted({k for s in stats for k in s.extra}):
            entry[key] = float(np.mean([s.extra.get(key, 0.0) for s in stats]))
        return entry
