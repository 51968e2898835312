"""Stage train_reward_model: one VLM reward model for all tasks and dimensions (pairwise Yes/No SFT).

``run(preferences, out, ...)`` reads a ``preferences`` artifact, splits it by item (seeded,
stratified by task), fine-tunes the profile's reward VLM on both orders of every training pair
(paper Eq. 3), scores both orders of every test pair and writes a ``reward_model`` artifact:

- ``model/``: HF folder (safetensors weights, config, processor, tokenizer, chat template),
- ``query_template.json``: the versioned template Phi the model was trained with,
- ``splits.json`` (item ids per split), ``excluded.json`` (rows left out and why),
- ``test_scores.parquet`` (P(Yes | w, l) and P(Yes | l, w) per test pair),
- ``tensorboard/`` (training scalars), ``report.html``,
- ``metrics.json``: ``accuracy`` {task: {dimension: value}}, ``mean_accuracy``,
  ``order_consistency``, ``ece`` and counts/throughputs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.profile import load_profile
from onereward.reward.data import ImageStore, read_preferences, split_by_item
from onereward.reward.evaluate import metrics_from_scores, score_pairs
from onereward.reward.report import write_report
from onereward.reward.scoring import MODEL_SUBDIR, RewardScorer
from onereward.reward.template import default_template
from onereward.reward.train import TrainConfig, train
from onereward.tables import write_table

log = get_logger("reward.stage")

STAGE = "train_reward_model"


def default_checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """``.<name>.checkpoints`` beside the output artifact (survives a failed run for resuming)."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.checkpoints"


def run(
    preferences: str,
    out: str,
    *,
    profile: str = "tiny",
    zoo: str | None = None,
    max_steps: int | None = None,
    finetune: str | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    context_images: bool = False,
    checkpoint_every: int | None = None,
    checkpoint_dir: str | None = None,
    resume: bool = True,
    answer_norm: str = "yes_no",
    keep_checkpoints: bool = False,
) -> dict[str, Any]:
    """Train the reward model on ``preferences`` and write the ``reward_model`` artifact to ``out``.

    Args:
        preferences: ``preferences`` artifact directory (pairs.parquet + images).
        out: output artifact directory (written atomically).
        profile: ``tiny``, ``full`` or a profile YAML path; its ``reward`` section gives the
            defaults below and ``models.reward_model`` the VLM to fine-tune.
        zoo: tiny-zoo directory for ``zoo:`` model references (None = the cached zoo).
        max_steps: training steps (None = ``profile.reward.max_steps``).
        finetune: ``full`` or ``lora`` (None = the profile's).
        batch_size: queries per step, both orders of ``batch_size / 2`` pairs (None = the profile's).
        learning_rate: AdamW learning rate, cosine decay (None = the profile's).
        seed: seed of the split, the pair order and the training RNG.
        test_fraction: share of each task's items held out for testing (split by item).
        context_images: also show the source and the mask to the model (off in the paper).
        checkpoint_every: save a checkpoint every N steps (None = every ``max_steps // 4``, 0 = never).
        checkpoint_dir: where checkpoints and TensorBoard logs live (None = ``.<out>.checkpoints``
            beside ``out``); a rerun resumes from the newest complete checkpoint of the same run.
        resume: resume from ``checkpoint_dir`` when it holds a checkpoint of this run.
        answer_norm: ``yes_no`` (P(Yes) normalised over {Yes, No}) or ``vocab`` (full softmax).
        keep_checkpoints: keep ``checkpoint_dir`` after success (default: removed).

    Returns the metrics dict (also in ``out/metrics.json``).
    """
    prof = load_profile(profile)
    settings = prof.reward
    model_dir = prof.resolve_model("reward_model", zoo)
    steps = int(max_steps) if max_steps else settings.max_steps
    cfg = TrainConfig(
        batch_size=int(batch_size or settings.batch_size),
        learning_rate=float(learning_rate or settings.learning_rate),
        max_steps=steps,
        finetune=finetune or settings.finetune,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing and torch.cuda.is_available(),
        seed=seed,
        warmup_steps=max(1, steps // 20),
        checkpoint_every=max(1, steps // 4) if checkpoint_every is None else int(checkpoint_every),
        log_every=max(1, min(25, steps // 20)),
    )
    cfg.validate()
    prefs = read_preferences(preferences, context_images=context_images)
    train_pairs, test_pairs = split_by_item(prefs.pairs, test_fraction=test_fraction, seed=seed)
    log.info(
        "preferences: %d pairs usable, %d excluded %s; train %d / test %d pairs",
        len(prefs.pairs), len(prefs.excluded), prefs.exclusion_counts(), len(train_pairs), len(test_pairs),
    )  # fmt: skip
    use_cuda = torch.cuda.is_available()
    # Pure bf16 weights on GPU (as the 7B model is published); float32 on CPU.
    dtype = torch.bfloat16 if (settings.bf16 and use_cuda) else torch.float32
    scorer = RewardScorer.load(
        model_dir,
        trainable=True,
        dtype=dtype,
        device="cuda" if use_cuda else None,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        answer_norm=answer_norm,
        template=default_template(context_images=context_images),
    )
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(out)
    params = {
        "profile": prof.name,
        "model": model_dir,
        "train": dataclasses.asdict(cfg),
        "test_fraction": test_fraction,
        "context_images": context_images,
        "answer_norm": answer_norm,
        "min_pixels": settings.min_pixels,
        "max_pixels": settings.max_pixels,
    }
    store = ImageStore()
    inputs = [prefs.manifest]
    if prof.model_ref("reward_model").ref.startswith("zoo:"):
        from onereward.zoo import zoo_manifest

        inputs.append(zoo_manifest(prof, zoo))  # lineage: which zoo's VLM was fine-tuned
    with ArtifactWriter(out, kind="reward_model", stage=STAGE, parameters=params, inputs=inputs) as art:
        with art.timer("train_s"):
            result = train(scorer, train_pairs, store, cfg, checkpoint_dir=ckpt_dir, resume=resume)
        with art.timer("evaluate_s"):
            scores = score_pairs(scorer, test_pairs, store)
        metrics = metrics_from_scores(scores)
        train_items = sorted({p.item_id for p in train_pairs})
        test_items = sorted({p.item_id for p in test_pairs})
        metrics.update(
            {
                "n_train_pairs": len(train_pairs),
                "n_test_pair_total": len(test_pairs),
                "n_train_items": len(train_items),
                "n_test_items": len(test_items),
                "n_excluded": len(prefs.excluded),
                "excluded_by_reason": prefs.exclusion_counts(),
                "train_steps": result.steps,
                "resumed_from_step": result.resumed_from,
                "train_steps_per_second": result.steps_per_second,
                "test_pairs_per_second": scores.pairs_per_second,
                "final_train_loss": result.history[-1]["loss"] if result.history else None,
                "trainable_parameters": result.trainable_parameters,
                "template_version": scorer.template.version,
            }
        )
        model_out = art.path / MODEL_SUBDIR
        scorer.model.save_pretrained(model_out, safe_serialization=True)
        scorer.vlm.processor.save_pretrained(model_out)
        scorer.template.save(art.path)
        write_json_atomic(
            art.path / "splits.json",
            {
                "seed": seed,
                "test_fraction": test_fraction,
                "train_items": train_items,
                "test_items": test_items,
            },
        )
        write_json_atomic(art.path / "excluded.json", [dataclasses.asdict(e) for e in prefs.excluded])
        write_table(
            art.path / "test_scores.parquet",
            [
                {"pair_id": p.pair_id, "item_id": p.item_id, "task": p.task, "dimension": p.dimension,
                 "p_yes_winner_first": float(scores.p_winner_first[i]), "p_yes_loser_first": float(scores.p_loser_first[i])}
                for i, p in enumerate(scores.pairs)
            ],
        )  # fmt: skip
        tb = ckpt_dir / "tensorboard"
        if tb.is_dir():
            shutil.copytree(tb, art.path / "tensorboard")
        example = test_pairs[0]
        write_report(
            art.path / "report.html",
            metrics=metrics,
            history=result.history,
            scores=scores,
            store=store,
            excluded=prefs.excluded,
            query_example=scorer.template.render(example.task, example.dimension, example.prompt),
        )
        art.counts.update(
            {
                "n_train_pairs": len(train_pairs),
                "n_test_pairs": len(test_pairs),
                "n_excluded": len(prefs.excluded),
            }
        )
        art.metrics.update(metrics)
    if not keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info(
        "reward model: mean test accuracy %.3f, order consistency %.3f",
        metrics["mean_accuracy"],
        metrics["order_consistency"],
    )
    return metrics


def check_preferences_dir(path: str) -> None:
    """Fail early with a clear message when ``path`` is not a directory."""
    if not Path(path).is_dir():
        raise InputError(f"--preferences: {path} is not a directory (expected a preferences artifact)")
