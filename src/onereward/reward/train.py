"""Pairwise Yes/No SFT of the reward VLM (paper Eq. 3) with accelerate.

Every step takes ``batch_size // 2`` preference pairs and asks both orders of each:
(winner, loser) -> "Yes" and (loser, winner) -> "No"; the loss is the mean negative
log-probability of the right answer at the answer position, i.e.
-1/2 [log P(Yes | w, l, q) + log P(No | l, w, q)] averaged over pairs. Pairs are shuffled per
epoch with a seeded permutation, so batches mix tasks and dimensions and the data position is a
pure function of (seed, step).

``accelerate`` places the model (CPU, one GPU, DDP or FSDP from ``configs/accelerate/*.yaml`` via
``accelerate launch``), runs bf16 autocast and saves/loads checkpoints: every
``checkpoint_every`` steps ``save_state`` writes model, optimiser, scheduler and RNG states, and
``state.json`` adds the step (the data position), the loss history and a fingerprint of the run;
rerunning the same command resumes from the newest complete checkpoint and reproduces the
uninterrupted run exactly. TensorBoard scalars go to ``<checkpoint_dir>/tensorboard``.
"""

from __future__ import annotations

import json
import math
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
from onereward.log import Throughput, get_logger
from onereward.reward.config import RewardConfig
from onereward.reward.data import Comparison, ImageStore, PreferencePair, both_orders
from onereward.reward.scoring import RewardScorer

log = get_logger("reward.train")

STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "step-"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv", "proj")


@dataclass
class TrainResult:
    """What a run did: steps, loss/accuracy history, timings, where it resumed from."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps_per_second: float = 0.0
    resumed_from: int = 0
    trainable_parameters: int = 0
    state_dict: dict[str, Any] | None = None  # the gathered full weights under FSDP (rank 0), else None


def pairs_for_step(n_pairs: int, pairs_per_step: int, seed: int, step: int) -> list[int]:
    """Indices of the pairs of global ``step`` (0-based): epoch-wise seeded permutations, drop last."""
    per_step = min(pairs_per_step, n_pairs)
    steps_per_epoch = max(1, n_pairs // per_step)
    epoch, offset = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    return order[offset * per_step : (offset + 1) * per_step].tolist()


def comparison_batch(comparisons: list[Comparison], store: ImageStore, with_context: bool) -> dict[str, Any]:
    """Images (uint8 arrays) and query fields of a list of comparisons, for ``RewardScorer.prepare``."""
    batch: dict[str, Any] = {
        "images_a": [store.get(c.first) for c in comparisons],
        "images_b": [store.get(c.second) for c in comparisons],
        "tasks": [c.task for c in comparisons],
        "dimensions": [c.dimension for c in comparisons],
        "prompts": [c.prompt for c in comparisons],
    }
    if with_context:
        batch["sources"] = [store.get(c.source) for c in comparisons]  # type: ignore[arg-type]
        batch["masks"] = [store.get(c.mask) for c in comparisons]  # type: ignore[arg-type]
    return batch


def sft_loss(
    scorer: RewardScorer, model: Any, comparisons: list[Comparison], images: ImageStore | dict[str, Any]
) -> tuple[torch.Tensor, float]:
    """Eq. 3 on a batch of comparisons: (mean -log P(right answer), accuracy of the answers).

    ``images``: a store to decode from, or the batch :func:`comparison_batch` already decoded."""
    batch = (
        images
        if isinstance(images, dict)
        else comparison_batch(comparisons, images, scorer.template.context_images)
    )
    inputs = scorer.prepare(**batch)
    log_probs = scorer.answer_log_probs(inputs, model=model)  # [B, 2] = (log P(Yes), log P(No))
    labels = torch.tensor([0 if c.label_yes else 1 for c in comparisons], device=log_probs.device)
    loss = -log_probs.gather(1, labels[:, None]).mean()
    with torch.no_grad():
        predicted_yes = log_probs[:, 0] > log_probs[:, 1]
        accuracy = (predicted_yes == (labels == 0)).float().mean().item()
    return loss, accuracy


def _fingerprint(pairs: list[PreferencePair], cfg: RewardConfig, model_path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(
        json.dumps(
            [cfg.batch_size, cfg.learning_rate, cfg.finetune, cfg.seed, cfg.warmup, cfg.lora_rank]
        ).encode()
    )
    h.update(model_path.encode())
    for p in pairs:
        h.update(f"{p.pair_id}|{p.winner}|{p.loser}|{p.dimension}\n".encode())
    return h.hexdigest()[:16]


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """Newest complete checkpoint (one whose ``state.json`` was written) or None."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))  # cosine decay to 0

    return f


class StepBatches(torch.utils.data.Dataset):
    """Step -> (comparisons, decoded batch) this process trains on at that step: a pure function of
    (seed, step, rank), so DataLoader workers can decode ahead while the model trains. Each worker
    decodes through its own bounded store."""

    def __init__(
        self,
        pairs: list[PreferencePair],
        store: ImageStore,
        cfg: RewardConfig,
        rank: int,
        world: int,
        context: bool,
    ) -> None:
        self.pairs, self.store, self.cfg = pairs, store, cfg
        self.rank, self.world, self.context = rank, world, context

    def __len__(self) -> int:
        return self.cfg.max_steps

    def __getitem__(self, step: int) -> tuple[list[Comparison], dict[str, Any]]:
        indices = pairs_for_step(len(self.pairs), self.cfg.batch_size // 2, self.cfg.seed, step)
        comparisons = both_orders(self.pairs, indices[self.rank :: self.world] or indices[:1])
        return comparisons, comparison_batch(comparisons, self.store, self.context)


def _as_is(item: Any) -> Any:
    return item


def _step_loader(data: StepBatches, start: int, num_workers: int) -> Any:
    """Batches of steps ``start .. max_steps - 1`` in order (workers decode ahead)."""
    if num_workers == 0:
        return (data[step] for step in range(start, len(data)))
    return torch.utils.data.DataLoader(
        data,
        sampler=range(start, len(data)),
        batch_size=None,
        num_workers=num_workers,
        prefetch_factor=2,
        collate_fn=_as_is,
    )


@dataclass
class _Window:
    """Running means of the loss and the train accuracy since the last log entry."""

    loss: float = 0.0
    accuracy: float = 0.0
    n: int = 0

    def add(self, loss: float, accuracy: float) -> None:
        self.loss, self.accuracy, self.n = self.loss + loss, self.accuracy + accuracy, self.n + 1

    def entry(self, step: int, lr: float) -> dict[str, float]:
        return {"step": step, "loss": self.loss / self.n, "train_accuracy": self.accuracy / self.n, "lr": lr}


def train(
    scorer: RewardScorer,
    pairs: list[PreferencePair],
    store: ImageStore,
    cfg: RewardConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
) -> TrainResult:
    """Fine-tune ``scorer.model`` in place on ``pairs`` (both orders) for ``cfg.max_steps`` steps.

    With ``finetune="lora"`` LoRA adapters are trained and merged back, so the saved model is a
    plain HF folder. ``checkpoint_dir`` holds checkpoints and TensorBoard logs; with ``resume`` a
    complete checkpoint of the same run (same data, model and settings) is continued, and one of a
    different run raises :class:`InputError`.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from torch.utils.tensorboard import SummaryWriter

    # 1. Check inputs; place the model, the optimiser and the schedule.
    if not pairs:
        raise InputError("preferences: the train split is empty")
    use_cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not use_cuda)
    set_seed(cfg.seed)
    if accelerator.distributed_type == DistributedType.FSDP and cfg.finetune == "lora":
        raise InputError(
            "finetune: lora adapters are trained with DDP (configs/accelerate/ddp.yaml); FSDP is for the "
            "full fine-tune, got finetune lora under FSDP"
        )
    grad_ckpt = cfg.gradient_checkpointing and use_cuda  # memory for compute: only worth it on a GPU
    model = _trainable_model(scorer.model, cfg, grad_ckpt)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.warmup, cfg.max_steps))
    # The schedule follows the global step: the global batch is split over the processes, so the
    # scheduler is not prepared (accelerate would step a prepared one once per process). Its state
    # goes into state.json, not into accelerate's custom-object pickle (which accelerate loads with
    # weights_only=False: a checkpoint must never be able to run code when it is resumed).
    model, optimizer = accelerator.prepare(model, optimizer)
    # 2. Resume from the newest complete checkpoint of the same run.
    fingerprint = _fingerprint(pairs, cfg, scorer.vlm.path)
    start_step, history = _resume(accelerator, scheduler, checkpoint_dir, fingerprint) if resume else (0, [])
    writer = None
    if checkpoint_dir is not None and accelerator.is_main_process:  # one TensorBoard log, rank 0's
        writer = SummaryWriter(str(checkpoint_dir / "tensorboard"), purge_step=start_step)
    # 3. Train: each process takes its share of the step's pairs, both orders.
    rank, world = accelerator.process_index, accelerator.num_processes
    data = StepBatches(pairs, store, cfg, rank, world, scorer.template.context_images)
    t0 = time.perf_counter()
    window = _Window()
    bar = tqdm(
        total=cfg.max_steps, initial=start_step, desc="reward SFT", disable=not accelerator.is_main_process
    )
    with Throughput("steps") as tp:
        for step, (comparisons, batch) in enumerate(
            _step_loader(data, start_step, cfg.num_workers), start_step
        ):
            # bf16 is autocast over the fp32 master weights (the model is loaded in float32)
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, accuracy = sft_loss(scorer, model, comparisons, batch)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tp.add(1)
            bar.update(1)
            if world > 1:  # log the global batch's loss and accuracy, not rank 0's share
                stats = accelerator.reduce(torch.stack([loss.detach(), loss.new_tensor(accuracy)]), "mean")
                window.add(float(stats[0]), float(stats[1]))
            else:
                window.add(loss.item(), accuracy)
            done = step + 1
            if done % cfg.log_interval == 0 or done == cfg.max_steps:
                history.append(window.entry(done, scheduler.get_last_lr()[0]))
                _log_entry(history[-1], bar, writer)
                window = _Window()
            if _checkpoint_due(checkpoint_dir, cfg, done):
                _save_checkpoint(
                    accelerator, scheduler, checkpoint_dir, done, fingerprint, history, cfg.keep_checkpoints
                )
    bar.close()
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - t0
    log.info("reward SFT: %s", tp)
    # 4. Hand the trained model back to the scorer (LoRA merged), ready for scoring. Under FSDP
    # each rank holds a shard: the full weights are gathered (every rank takes part) for rank 0.
    full_state = None
    if accelerator.distributed_type == DistributedType.FSDP:
        full_state = accelerator.get_state_dict(model)
    scorer.vlm.model = _finished_model(accelerator.unwrap_model(model), cfg, grad_ckpt)
    return TrainResult(
        steps=cfg.max_steps,
        history=history,
        seconds=seconds,
        steps_per_second=(cfg.max_steps - start_step) / seconds if seconds > 0 else 0.0,
        resumed_from=start_step,
        state_dict=full_state if accelerator.is_main_process else None,
        trainable_parameters=sum(p.numel() for p in trainable),
    )


def _checkpoint_due(checkpoint_dir: Path | None, cfg: RewardConfig, done: int) -> bool:
    """A checkpoint is written every ``checkpoint_interval`` steps, never after the last step."""
    interval = cfg.checkpoint_interval
    return checkpoint_dir is not None and bool(interval) and done % interval == 0 and done < cfg.max_steps


def _trainable_model(model: Any, cfg: RewardConfig, grad_ckpt: bool) -> Any:
    """The model in training mode: every weight trainable, or LoRA adapters on its linear layers."""
    model.requires_grad_(True)
    if cfg.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        targets = sorted(names & set(LORA_TARGETS))
        model = get_peft_model(
            model, LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules=targets)
        )
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.finetune == "lora":
            model.enable_input_require_grads()
    model.train()
    return model


def _finished_model(model: Any, cfg: RewardConfig, grad_ckpt: bool) -> Any:
    """The trained model for scoring: LoRA merged back, eval mode, no grads."""
    if cfg.finetune == "lora":
        model = model.merge_and_unload()
    model.eval()
    model.requires_grad_(False)
    if grad_ckpt:
        model.gradient_checkpointing_disable()
    return model


def _resume(
    accelerator: Any, scheduler: Any, checkpoint_dir: Path | None, fingerprint: str
) -> tuple[int, list[dict[str, float]]]:
    """(step, history) of the newest complete checkpoint of this run, loaded into ``accelerator``;
    (0, []) when there is none. A checkpoint of another run is an :class:`InputError`."""
    ckpt = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is None:
        return 0, []
    state = json.loads((ckpt / STATE_FILE).read_text())
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint_dir: {checkpoint_dir} holds checkpoints of a different run (data, model or settings "
            f"changed: fingerprint {state.get('fingerprint')} != {fingerprint}); use another checkpoint_dir "
            "or resume=False"
        )
    if "scheduler" not in state:
        raise InputError(
            f"checkpoint_dir: {ckpt} was written by an older version (no scheduler state in {STATE_FILE}); "
            "use another checkpoint_dir or resume=False"
        )
    accelerator.load_state(str(ckpt))  # model (safetensors), optimiser and RNG states (weights_only)
    scheduler.load_state_dict(state["scheduler"])
    log.info("resumed from %s (step %d)", ckpt, int(state["step"]))
    return int(state["step"]), list(state["history"])


def _log_entry(entry: dict[str, float], bar: Any, writer: Any) -> None:
    bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['train_accuracy']:.2f}")
    log.debug("step %d loss %.4f train accuracy %.3f", entry["step"], entry["loss"], entry["train_accuracy"])
    if writer is not None:
        for key in ("loss", "train_accuracy", "lr"):
            writer.add_scalar(f"train/{key}", entry[key], entry["step"])


def _save_checkpoint(
    accelerator: Any,
    scheduler: Any,
    checkpoint_dir: Path,
    step: int,
    fingerprint: str,
    history: list,
    keep: int,
) -> None:
    """``save_state`` into ``step-N/``; ``state.json`` (step, history, the scheduler's state) is
    written last and marks it complete."""
    path = checkpoint_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process:
        write_json_atomic(
            path / STATE_FILE,
            {
                "step": step,
                "fingerprint": fingerprint,
                "history": history,
                "scheduler": scheduler.state_dict(),
            },
        )
        complete = sorted(
            (p for p in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()),
            key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
        )
        for old in complete[: max(0, len(complete) - keep)]:
            shutil.rmtree(old, ignore_errors=True)
