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
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.profile import load_profile
from onereward.reward.config import RewardConfig
from onereward.reward.data import ImageStore, read_preferences, split_by_item
from onereward.reward.evaluate import metrics_from_scores, score_pairs
from onereward.reward.report import write_report
from onereward.reward.scoring import MODEL_SUBDIR, RewardScorer
from onereward.reward.template import default_template
from onereward.reward.train import train
from onereward.tables import TEST_SCORES_SCHEMA, write_table

log = get_logger("reward.stage")

STAGE = "train_reward_model"


def default_checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """``.<name>.checkpoints`` beside the output artifact (survives a failed run for resuming)."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.checkpoints"


def run(
    preferences: str, out: str, *, profile: str = "tiny", zoo: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Train the reward model on ``preferences`` and write the ``reward_model`` artifact to ``out``.

    Args:
        preferences: ``preferences`` artifact directory (pairs.parquet + images).
        out: output artifact directory (written atomically).
        profile: ``tiny``, ``full`` or a profile YAML path; its ``reward`` section gives the
            defaults and ``models.reward_model`` the VLM to fine-tune.
        zoo: tiny-zoo directory for ``zoo:`` model references (None = the cached zoo).
        settings: fields of :class:`~onereward.reward.config.RewardConfig`; None or absent = the
            profile's value. A rerun with the same ``checkpoint_dir`` resumes from its newest
            complete checkpoint of the same run.

    Returns the metrics dict (also in ``out/metrics.json``).
    """
    # 1. Settings, and the preferences split by item.
    prof = load_profile(profile)
    cfg = RewardConfig.resolve(prof.reward, settings)
    prefs = read_preferences(preferences, what="--preferences", context_images=cfg.context_images)
    train_pairs, test_pairs = split_by_item(
        prefs.pairs, test_fraction=cfg.test_fraction, seed=cfg.seed, what="--preferences"
    )
    log.info(
        "preferences: %d pairs usable, %d excluded %s; train %d / test %d pairs",
        len(prefs.pairs), len(prefs.excluded), prefs.exclusion_counts(), len(train_pairs), len(test_pairs),
    )  # fmt: skip
    # 2. The processes: one per device under torchrun / accelerate launch (each picks its own
    # device before anything is loaded), else this one. Every rank trains; rank 0 alone evaluates
    # and writes the artifact.
    state = PartialState(cpu=not torch.cuda.is_available())
    model_dir = prof.resolve_model("reward_model", zoo)
    scorer = load_trainable_scorer(model_dir, cfg, state.device)
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else default_checkpoint_dir(out)
    store = ImageStore(max_images=cfg.image_cache, max_pixels=cfg.max_pixels)
    # 3. Train (resumable from checkpoint_dir).
    t0 = time.perf_counter()
    result = train(scorer, train_pairs, store, cfg, checkpoint_dir=ckpt_dir, resume=cfg.resume)
    train_s = time.perf_counter() - t0
    if not state.is_main_process:
        state.wait_for_everyone()
        return {}
    inputs = [prefs.manifest]
    if prof.model_ref("reward_model").ref.startswith("zoo:"):
        from onereward.zoo import zoo_manifest

        inputs.append(zoo_manifest(prof, zoo))  # lineage: which zoo's VLM was fine-tuned
    with ArtifactWriter(
        out, kind="reward_model", stage=STAGE, parameters=_parameters(prof, cfg, model_dir), inputs=inputs
    ) as art:
        art.timings["train_s"] = round(train_s, 4)
        # 4. Score both orders of every held-out pair.
        with art.timer("evaluate_s"):
            scores = score_pairs(scorer, test_pairs, store)
        metrics = sft_metrics(scores, result, prefs, train_pairs, test_pairs, scorer)
        metrics["n_processes"] = state.num_processes
        # 5. Write the model folder, the template, the split, the scores and the report.
        _write_model(art, scorer, cfg, prefs, train_pairs, test_pairs, scores, result.state_dict)
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
    if not cfg.keep_checkpoint_dir:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info(
        "reward model: mean test accuracy %.3f, order consistency %.3f",
        metrics["mean_accuracy"],
        metrics["order_consistency"],
    )
    state.wait_for_everyone()
    return metrics


def load_trainable_scorer(model_dir: str, cfg: RewardConfig, device: Any) -> RewardScorer:
    """The trainable VLM on this process's device, in float32: the optimiser updates fp32 master
    weights (bf16 runs as autocast, ``cfg.bf16``), so small learning rates still move every weight.
    Stepping bf16 weights directly loses updates below bf16's resolution (about 0.4 % of a weight)."""
    return RewardScorer.load(
        model_dir,
        trainable=True,
        dtype=torch.float32,
        device=device,
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
        answer_norm=cfg.answer_norm,
        template=default_template(context_images=cfg.context_images),
        what="profile model reward_model",
    )


def _parameters(prof: Any, cfg: RewardConfig, model_dir: str) -> dict[str, Any]:
    """The resolved parameters recorded in the manifest."""
    return {
        "profile": prof.name,
        "model": model_dir,
        "train": {
            "batch_size": cfg.batch_size,
            "bf16": cfg.bf16,
            "checkpoint_every": cfg.checkpoint_interval,
            "finetune": cfg.finetune,
            "gradient_checkpointing": cfg.gradient_checkpointing and torch.cuda.is_available(),
            "keep_checkpoints": cfg.keep_checkpoints,
            "learning_rate": cfg.learning_rate,
            "log_every": cfg.log_interval,
            "lora_rank": cfg.lora_rank,
            "max_steps": cfg.max_steps,
            "seed": cfg.seed,
            "warmup_steps": cfg.warmup,
            "weight_decay": cfg.weight_decay,
        },
        "test_fraction": cfg.test_fraction,
        "context_images": cfg.context_images,
        "answer_norm": cfg.answer_norm,
        "min_pixels": cfg.min_pixels,
        "max_pixels": cfg.max_pixels,
    }


def sft_metrics(scores, result, prefs, train_pairs, test_pairs, scorer: RewardScorer) -> dict[str, Any]:
    """Test-split metrics of a trained reward model with the counts and throughputs of its run."""
    metrics = metrics_from_scores(scores)
    metrics.update(
        {
            "n_train_pairs": len(train_pairs),
            "n_test_pair_total": len(test_pairs),
            "n_train_items": len({p.item_id for p in train_pairs}),
            "n_test_items": len({p.item_id for p in test_pairs}),
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
    return metrics


def _write_model(
    art: ArtifactWriter,
    scorer: RewardScorer,
    cfg: RewardConfig,
    prefs,
    train_pairs,
    test_pairs,
    scores,
    state_dict: dict[str, Any] | None = None,
) -> None:
    """model/ (HF folder), the query template, splits.json, excluded.json and test_scores.parquet.

    ``state_dict``: the full weights gathered from the ranks (FSDP); None = the model's own."""
    model_out = art.path / MODEL_SUBDIR
    scorer.model.save_pretrained(model_out, safe_serialization=True, state_dict=state_dict)
    scorer.vlm.processor.save_pretrained(model_out)
    scorer.template.save(art.path)
    write_json_atomic(
        art.path / "splits.json",
        {
            "seed": cfg.seed,
            "test_fraction": cfg.test_fraction,
            "train_items": sorted({p.item_id for p in train_pairs}),
            "test_items": sorted({p.item_id for p in test_pairs}),
        },
    )
    write_json_atomic(art.path / "excluded.json", [dataclasses.asdict(e) for e in prefs.excluded])
    write_table(
        art.path / "test_scores.parquet",
        [
            {
                "pair_id": p.pair_id,
                "item_id": p.item_id,
                "task": p.task,
                "dimension": p.dimension,
                "p_yes_winner_first": float(scores.p_winner_first[i]),
                "p_yes_loser_first": float(scores.p_loser_first[i]),
            }
            for i, p in enumerate(scores.pairs)
        ],
        schema=TEST_SCORES_SCHEMA,
    )


def check_preferences_dir(path: str) -> None:
    """Fail early with a clear message when ``path`` is not a directory."""
    if not Path(path).is_dir():
        raise InputError(f"--preferences: {path} is not a directory (expected a preferences artifact)")
