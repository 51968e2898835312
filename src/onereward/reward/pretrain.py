"""Pretraining of the tiny reward VLM on the synthetic world: the zoo's ``reward_vlm`` weights.

A real reward model starts from a pretrained VLM (Qwen2.5-VL-7B) that already sees images and reads
instructions; the demo's preference SFT then only adapts it. The tiny profile's VLM would otherwise
start from random weights and learn to judge images from the demo's few hundred pairs alone (about
0.55 held-out accuracy on generated candidates from 100 annotated items). Its stand-in for
pretraining: pairwise Yes/No SFT (the same :func:`onereward.reward.train.train` and query template)
on the synthetic world's **procedurally degraded** candidates (:mod:`onereward.synth.candidates`:
graded wrong colour / shape / word, missing object, blur, seams, partial fills...), labelled best
and worst per dimension by the oracle (:mod:`onereward.reward.oracle_preferences`). No generator
output is used, so the demo's reward model still learns the generator's failures from its own
annotations.

``pretrain_reward_vlm(out, cfg)`` builds the world (its own seed: no demo, test or benchmark pool
uses it), trains, scores the held-out degraded pairs and writes ``out/model`` (an HF folder),
``out/metrics.json``, ``out/report.html`` and TensorBoard logs; ``onereward zoo train --family
reward_vlm`` exports the weights into ``models/weights/reward_vlm`` (:mod:`onereward.models.trained`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from onereward.config import Config, setting
from onereward.log import get_logger
from onereward.reward.config import RewardConfig

log = get_logger("reward.pretrain")


@dataclass(frozen=True)
class RewardPretrainConfig(Config):
    """The degraded-pairs world and the SFT settings of the tiny reward VLM's pretraining."""

    section: ClassVar[str] = "reward_pretrain"

    items: int = setting(5000, "Synthetic items (the world's default task mix).")
    candidates: int = setting(4, "Degraded candidates per item (0-3 degradations each, graded).")
    world_seed: int = setting(7, "Seed of the items and their degradations (no demo or test pool uses it).")
    min_margin: float = setting(0.02, "Oracle spread below which an (item, dimension) gives no pair.")
    test_fraction: float = setting(0.1, "Share of the items held out to score the pretrained model.")
    steps: int = setting(8000, "SFT steps.")
    batch_size: int = setting(16, "Queries per step (both orders of batch_size / 2 pairs).")
    learning_rate: float = setting(0.002, "AdamW learning rate (linear warmup, cosine decay).")
    seed: int = setting(0, "Seed of the initial weights, the split and the training RNG.")
    threads: int = setting(1, "CPU threads torch uses (weights are bit-identical only for the same count).")

    def validate(self) -> None:
        self.require(self.items >= 10, "items", "expected an integer >= 10")
        self.require(self.candidates >= 2, "candidates", "expected an integer >= 2")
        self.require(self.min_margin >= 0, "min_margin", "expected a number >= 0")
        self.require(0.0 < self.test_fraction < 1.0, "test_fraction", "expected a fraction in (0, 1)")
        self.require(self.steps >= 1, "steps", "expected an integer >= 1")
        self.require(self.learning_rate > 0, "learning_rate", "expected a number > 0")
        self.require(self.threads >= 1, "threads", "expected an integer >= 1")

    def sft(self) -> RewardConfig:
        """The SFT settings (the tiny profile's image sizes; no checkpoints kept)."""
        from onereward.profile import load_profile

        return RewardConfig.resolve(
            load_profile("tiny").reward,
            {
                "max_steps": self.steps,
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "seed": self.seed,
                "finetune": "full",
                "test_fraction": self.test_fraction,
                "keep_checkpoints": 0,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PretrainResult:
    model_dir: Path
    metrics: dict[str, Any]


def build_world(root: Path, cfg: RewardPretrainConfig) -> Path:
    """Pool -> degraded candidates -> oracle best/worst preferences; returns the preferences dir
    (reused when a finished one is there: a rerun after an interruption goes on with the SFT)."""
    from onereward.reward.oracle_preferences import write_oracle_preferences
    from onereward.synth.candidates import make_candidates
    from onereward.synth.stage import run as synthesize

    prefs = root / "preferences"
    if (prefs / "manifest.json").is_file():
        return prefs
    synthesize(str(root / "pool"), items=cfg.items, seed=cfg.world_seed)
    make_candidates(root / "pool", root / "candidates", per_item=cfg.candidates, seed=cfg.world_seed)
    write_oracle_preferences(root / "candidates", prefs, min_margin=cfg.min_margin)
    return prefs


def pretrain_reward_vlm(
    out: str | os.PathLike[str], cfg: RewardPretrainConfig | None = None, *, size: Any = None
) -> PretrainResult:
    """Pretrain a fresh tiny reward VLM (``size``: :class:`~onereward.models.reward_vlm.TinySize`,
    default the zoo's) on the degraded-pairs world into ``out``."""

    cfg = cfg or RewardPretrainConfig()
    cfg.validate()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _pretrain(Path(out), cfg, size)
    finally:
        torch.set_num_threads(threads)


def _pretrain(out: Path, cfg: RewardPretrainConfig, size: Any) -> PretrainResult:
    from onereward.models import reward_vlm
    from onereward.reward.data import ImageStore, read_preferences, split_by_item
    from onereward.reward.evaluate import score_pairs
    from onereward.reward.report import write_report
    from onereward.reward.stage import load_trainable_scorer, sft_metrics
    from onereward.reward.train import train

    sft = cfg.sft()
    out.mkdir(parents=True, exist_ok=True)
    # 1. The world and its split by item.
    t0 = time.perf_counter()
    prefs = read_preferences(build_world(out / "world", cfg), what="pretraining preferences")
    train_pairs, test_pairs = split_by_item(prefs.pairs, test_fraction=cfg.test_fraction, seed=cfg.seed)
    world_s = time.perf_counter() - t0
    log.info("pretraining world: %d pairs (%d train / %d test) in %.0fs", len(prefs.pairs),
             len(train_pairs), len(test_pairs), world_s)  # fmt: skip
    # 2. A fresh VLM with seeded random weights, trained on both orders of every pair.
    init = out / "init"
    reward_vlm.build_tiny(init, seed=cfg.seed, size=size)
    scorer = load_trainable_scorer(str(init), sft, torch.device("cpu"))
    store = ImageStore(max_images=len(prefs.pairs) * 2 + 16, max_pixels=sft.max_pixels)
    t1 = time.perf_counter()
    # No checkpoints are kept (minutes of training): a rerun starts the SFT afresh, logs included.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)
    result = train(scorer, train_pairs, store, sft, checkpoint_dir=out / "checkpoints", resume=False)
    train_s = time.perf_counter() - t1
    # 3. Held-out degraded pairs, the model folder, the report.
    scores = score_pairs(scorer, test_pairs, store)
    metrics = sft_metrics(scores, result, prefs, train_pairs, test_pairs, scorer)
    metrics.update(
        {
            "timings": {
                "world_s": round(world_s, 1),
                "train_s": round(train_s, 1),
                "total_s": round(time.perf_counter() - t0, 1),
            },
            "curve": result.history,
            "settings": cfg.to_dict(),
        }
    )
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    scorer.model.save_pretrained(model_dir, safe_serialization=True)
    scorer.vlm.processor.save_pretrained(model_dir)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    tb = out / "checkpoints" / "tensorboard"
    if tb.is_dir():
        shutil.copytree(tb, out / "tensorboard")
    example = test_pairs[0]
    write_report(
        out / "report.html",
        metrics=metrics,
        history=result.history,
        scores=scores,
        store=store,
        excluded=prefs.excluded,
        query_example=scorer.template.render(example.task, example.dimension, example.prompt),
    )
    shutil.rmtree(init, ignore_errors=True)
    log.info("pretrained reward VLM: held-out degraded pairs mean accuracy %.3f (%d steps, %.0fs)",
             metrics["mean_accuracy"], result.steps, train_s)  # fmt: skip
    return PretrainResult(model_dir=model_dir, metrics=metrics)
