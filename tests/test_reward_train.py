"""Reward SFT and the train_reward_model stage: both orders, exact resume, artifact, CLI, bad input."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import numpy as np
import pytest
import torch

from onereward.artifacts import ArtifactWriter, read_artifact
from onereward.cli import main as cli_main
from onereward.errors import InputError
from onereward.imageio import save_png
from onereward.models import reward_vlm
from onereward.reward import stage
from onereward.reward.config import RewardConfig
from onereward.reward.data import ImageStore, both_orders, read_preferences, split_by_item
from onereward.reward.evaluate import metrics_from_scores, score_pairs
from onereward.reward.oracle_preferences import make_oracle_preferences
from onereward.reward.scoring import RewardScorer
from onereward.reward.train import pairs_for_step, sft_loss, train
from onereward.tables import read_table, write_table


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a shared 2-core machine a second thread
    only spins (measured: 5x the CPU seconds per training step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_world")
    make_oracle_preferences(root / "prefs", 45, seed=7)
    reward_vlm.build_tiny(root / "zoo" / "reward_vlm", seed=0)
    # the tiny profile with the reward VLM given as a local folder (the mounted-checkpoint form of a
    # model reference), so the tests need not build the whole zoo
    text = resources.files("onereward.profiles").joinpath("tiny.yaml").read_text()
    text = text.replace(
        'reward_model: {ref: "zoo:reward_vlm"}', f'reward_model: {{ref: "{root / "zoo" / "reward_vlm"}"}}'
    )
    (root / "profile.yaml").write_text(text)
    return root


def test_batches_cover_pairs_without_repeats_and_are_seeded():
    steps = [pairs_for_step(10, 4, seed=1, step=s) for s in range(4)]
    assert (
        sorted(steps[0] + steps[1]) != list(range(10)) and len(set(steps[0] + steps[1])) == 8
    )  # epoch 0, drop last
    assert steps[2] != steps[0] and len(set(steps[2] + steps[3])) == 8  # epoch 1 reshuffled
    assert steps == [pairs_for_step(10, 4, seed=1, step=s) for s in range(4)]
    assert pairs_for_step(10, 4, seed=2, step=0) != steps[0]


def test_loss_is_eq3_over_both_orders(world):
    scorer = RewardScorer.load(world / "zoo" / "reward_vlm")
    pairs = read_preferences(world / "prefs").pairs[:3]
    comparisons = both_orders(pairs)
    store = ImageStore()
    loss, _ = sft_loss(scorer, scorer.model, comparisons, store)
    p_wl = scorer.p_yes([store.get(p.winner_image) for p in pairs], [store.get(p.loser_image) for p in pairs],
                        [p.task for p in pairs], [p.dimension for p in pairs], [p.prompt for p in pairs])  # fmt: skip
    p_lw = scorer.p_yes([store.get(p.loser_image) for p in pairs], [store.get(p.winner_image) for p in pairs],
                        [p.task for p in pairs], [p.dimension for p in pairs], [p.prompt for p in pairs])  # fmt: skip
    expected = -0.5 * (torch.log(p_wl) + torch.log(1 - p_lw)).mean()
    assert torch.allclose(loss.detach(), expected, atol=1e-5)


def _fresh_scorer(world):
    return RewardScorer.load(world / "zoo" / "reward_vlm", trainable=True)


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(world, tmp_path):
    train_pairs, _ = split_by_item(read_preferences(world / "prefs").pairs, seed=0)
    cfg = RewardConfig(
        batch_size=4, learning_rate=1e-3, max_steps=6, checkpoint_every=3, warmup_steps=1, log_every=1
    )
    full = _fresh_scorer(world)
    result = train(full, train_pairs, ImageStore(), cfg, checkpoint_dir=tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "step-00000003" / "state.json").is_file()
    assert any((tmp_path / "ckpt" / "tensorboard").iterdir())
    # a second process starting over with the same command resumes at step 3 and ends identical
    resumed = _fresh_scorer(world)
    again = train(resumed, train_pairs, ImageStore(), cfg, checkpoint_dir=tmp_path / "ckpt")
    assert again.resumed_from == 3 and result.resumed_from == 0
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in result.history]
    initial = _fresh_scorer(world).model.state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)  # training changed the weights
    # checkpoints of another run are refused, not silently mixed in
    with pytest.raises(InputError, match="different run"):
        train(_fresh_scorer(world), train_pairs, ImageStore(), RewardConfig(batch_size=4, learning_rate=5e-4, max_steps=6),
              checkpoint_dir=tmp_path / "ckpt")  # fmt: skip


def test_lora_trains_adapters_and_merges_back(world):
    train_pairs, _ = split_by_item(read_preferences(world / "prefs").pairs, seed=0)
    scorer = _fresh_scorer(world)
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    result = train(
        scorer,
        train_pairs,
        ImageStore(),
        RewardConfig(batch_size=4, learning_rate=1e-2, max_steps=2, finetune="lora", lora_rank=4),
    )
    after = scorer.model.state_dict()
    assert set(after) == set(before)  # merged: a plain Qwen2.5-VL again
    assert result.trainable_parameters < sum(v.numel() for v in before.values()) / 2
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("proj" in k or "qkv" in k for k in changed)


def test_stage_writes_reward_model_artifact_and_cli(world, tmp_path):
    out = tmp_path / "rm"
    metrics = stage.run(
        str(world / "prefs"), str(out), profile=str(world / "profile.yaml"), max_steps=4, batch_size=8
    )
    manifest = read_artifact(out, kind="reward_model")
    assert manifest.inputs[0]["kind"] == "preferences"
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "mean_accuracy", "order_consistency", "ece"):
        assert key in on_disk and key in metrics
    cells = [(t, d) for t, dims in on_disk["accuracy"].items() for d, v in dims.items() if 0.0 <= v <= 1.0]
    assert (
        cells
        and abs(on_disk["mean_accuracy"] - sum(on_disk["accuracy"][t][d] for t, d in cells) / len(cells))
        < 1e-9
    )
    assert 0.0 <= on_disk["order_consistency"] <= 1.0
    assert json.loads((out / "query_template.json").read_text())["version"] == "phi-v1"
    assert (out / "model" / "model.safetensors").is_file() and (out / "report.html").stat().st_size > 1000
    splits = json.loads((out / "splits.json").read_text())
    assert not set(splits["train_items"]) & set(splits["test_items"])
    assert not (tmp_path / ".rm.checkpoints").exists()  # removed after success
    # the saved model reproduces the recorded test scores through the scoring API
    rows = read_table(out / "test_scores.parquet")
    scorer = RewardScorer.load(out)
    pairs = {p.pair_id: p for p in read_preferences(world / "prefs").pairs}
    store = ImageStore()
    sample = [pairs[r["pair_id"]] for r in rows[:4]]
    p = scorer.p_yes([store.get(s.winner_image) for s in sample], [store.get(s.loser_image) for s in sample],
                     [s.task for s in sample], [s.dimension for s in sample], [s.prompt for s in sample])  # fmt: skip
    assert torch.allclose(p, torch.tensor([r["p_yes_winner_first"] for r in rows[:4]]), atol=1e-5)

    code = cli_main(["train-reward", "--preferences", str(world / "prefs"), "--out", str(tmp_path / "rm2"),
                     "--profile", str(world / "profile.yaml"), "--max-steps", "2", "--batch-size", "4"])  # fmt: skip
    assert code == 0 and read_artifact(tmp_path / "rm2", kind="reward_model")


def test_stage_bad_inputs(world, tmp_path, capsys):
    assert (
        cli_main(["train-reward", "--preferences", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "--preferences" in capsys.readouterr().err
    with pytest.raises(InputError, match="batch_size"):
        stage.run(
            str(world / "prefs"),
            str(tmp_path / "o"),
            profile=str(world / "profile.yaml"),
            max_steps=2,
            batch_size=3,
        )
    # one item cannot be split by item: a clear error, nothing written
    rows = [r for r in read_table(world / "prefs" / "pairs.parquet")]
    one = [r for r in rows if r["item_id"] == rows[0]["item_id"]]
    with ArtifactWriter(tmp_path / "one", kind="preferences", stage="test") as art:
        for sub in ("images", "masks", "candidates"):
            shutil.copytree(world / "prefs" / sub, art.path / sub)
        write_table(art.path / "pairs.parquet", one)
    with pytest.raises(InputError, match="test split is empty"):
        stage.run(
            str(tmp_path / "one"), str(tmp_path / "o"), profile=str(world / "profile.yaml"), max_steps=2
        )
    assert not (tmp_path / "o").exists()


def _darkened_preferences(root, n_items=48, seed=0):
    """Preferences where the winner is the scene and the loser the same scene at half brightness."""
    rng = np.random.default_rng(seed)
    rows = []
    with ArtifactWriter(root, kind="preferences", stage="test") as art:
        for i in range(n_items):
            base = rng.integers(60, 256, 3)
            scene = np.clip(base + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            task, dim, prompt = [("image_fill", "aesthetics", "a red circle"), ("image_extend", "consistency", None),
                                 ("object_removal", "removal_quality", None)][i % 3]  # fmt: skip
            save_png(art.path / f"c/{i}-w.png", scene)
            save_png(art.path / f"c/{i}-l.png", (scene * 0.5).astype(np.uint8))
            rows.append({"pair_id": f"p{i}", "item_id": f"i{i}", "task": task, "dimension": dim, "prompt": prompt,
                         "winner": f"i{i}-w", "loser": f"i{i}-l", "winner_image": f"c/{i}-w.png",
                         "loser_image": f"c/{i}-l.png", "source_image": None, "mask_image": None,
                         "annotators": "[]", "n_annotators": 1, "agreement": 1.0})  # fmt: skip
        write_table(art.path / "pairs.parquet", rows)
    return root


def test_training_learns_a_visual_preference_on_held_out_items(world, tmp_path):
    """Learning, not memorising: a rule on pixels (brighter wins) transfers to unseen items."""
    prefs = _darkened_preferences(tmp_path / "prefs")
    metrics = stage.run(
        str(prefs),
        str(tmp_path / "rm"),
        profile=str(world / "profile.yaml"),
        max_steps=100,
        batch_size=16,
        test_fraction=0.25,
    )
    assert metrics["n_test_pair_total"] == 12
    test_ids = set(json.loads((tmp_path / "rm" / "splits.json").read_text())["test_items"])
    pairs = [p for p in read_preferences(prefs).pairs if p.item_id in test_ids]
    untrained = metrics_from_scores(
        score_pairs(RewardScorer.load(world / "zoo" / "reward_vlm"), pairs, ImageStore())
    )
    assert untrained["query_accuracy"] <= 0.6  # the random model is at chance on these pairs
    assert metrics["query_accuracy"] >= 0.75, metrics["accuracy"]
