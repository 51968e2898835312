"""The tiny reward VLM ships pretrained on the synthetic world's procedurally degraded pairs: the
shipped weights judge unseen degraded pairs far above chance where random weights cannot, a brief
pretraining from scratch lowers its loss and exports weights a zoo builds from, and bad settings
name their field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from onereward.config import ConfigError
from onereward.models import reward_vlm, trained
from onereward.profile import load_profile
from onereward.reward.data import ImageStore, read_preferences
from onereward.reward.evaluate import metrics_from_scores, score_pairs
from onereward.reward.pretrain import RewardPretrainConfig, build_world
from onereward.reward.scoring import RewardScorer

UNSEEN_SEED = 31337  # neither the recipe's world (7) nor any test pool uses it


def _accuracy(model_dir: Path, prefs_dir: Path) -> float:
    """Mean held-out accuracy at the tiny profile's image sizes (those the pretraining used)."""
    cfg = load_profile("tiny").reward
    scorer = RewardScorer.load(str(model_dir), trainable=False, dtype=torch.float32, device="cpu",
                               min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)  # fmt: skip
    pairs = read_preferences(prefs_dir).pairs
    store = ImageStore(max_pixels=cfg.max_pixels)
    return metrics_from_scores(score_pairs(scorer, pairs, store))["mean_accuracy"]


def test_shipped_reward_vlm_judges_unseen_degraded_pairs(tmp_path: Path) -> None:
    prefs = build_world(tmp_path / "world", RewardPretrainConfig(items=60, world_seed=UNSEEN_SEED))
    reward_vlm.build_trained(tmp_path / "pretrained")
    reward_vlm.build_tiny(tmp_path / "random", seed=0)  # the same architecture, untrained
    pretrained, random = _accuracy(tmp_path / "pretrained", prefs), _accuracy(tmp_path / "random", prefs)
    assert pretrained >= 0.75, pretrained
    assert abs(random - 0.5) < 0.15, random
    index = trained.read_index("reward_vlm")
    assert index["summary"]["holdout_mean_accuracy"] >= 0.8  # the recipe's own held-out figure
    assert index["recipe"]["world_seed"] != UNSEEN_SEED


def test_brief_pretraining_learns_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``onereward zoo train --family reward_vlm`` with a short recipe: the loss falls, the report,
    TensorBoard logs and exported weights are written, and a zoo model builds from them."""
    from onereward.cli import main

    out = tmp_path / "train"
    args = [
        "zoo",
        "train",
        "--out",
        str(out),
        "--family",
        "reward_vlm",
        "--steps",
        "150",
        "--vlm-items",
        "60",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[: printed.rindex("}") + 1])["reward_vlm"]
    metrics = json.loads((out / "reward_vlm" / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["curve"]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.02, losses
    assert (out / "reward_vlm" / "report.html").is_file() and any(
        (out / "reward_vlm" / "tensorboard").iterdir()
    )
    compared = summary["compared_with_shipped"]["model"]
    assert compared["same_shapes"] and not compared["identical"]
    index = trained.read_index("reward_vlm", out / "weights")
    assert index["recipe"]["steps"] == 150 and index["recipe"]["items"] == 60 and index["dtype"] == "float16"
    # The exported weights build a zoo model; it scores as the trained folder does (fp16 storage).
    reward_vlm.build_trained(tmp_path / "built", weights_root=out / "weights")
    prefs = out / "reward_vlm" / "world" / "preferences"
    a, b = _accuracy(out / "reward_vlm" / "model", prefs), _accuracy(tmp_path / "built", prefs)
    assert abs(a - b) < 0.02


@pytest.mark.parametrize(
    ("field", "value"), [("items", 3), ("steps", 0), ("test_fraction", 1.0), ("learning_rate", 0.0)]
)
def test_pretrain_config_errors_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"reward_pretrain\.{field}"):
        RewardPretrainConfig(**{field: value}).validate()
