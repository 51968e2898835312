"""Stage evaluate on the tiny profile: the benchmark is held out from training, every model sees the
same conditions and noises, the judges' verdicts land in metrics.json in the documented shape,
results are deterministic, a model identical to the base is Same, bad inputs are one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from evaluate_helpers import make_world

from onereward.artifacts import read_artifact
from onereward.cli import main
from onereward.errors import InputError
from onereward.evaluate.benchmark import GROUPS, group_dimensions
from onereward.evaluate.stage import run
from onereward.imageio import load_rgb
from onereward.tables import read_table

SIZES = {"fill_items": 4, "extend_items": 4, "removal_items": 3}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_zoo: Path) -> dict[str, Path]:
    return make_world(tmp_path_factory.mktemp("evaluate"), tiny_zoo)


def _run(world: dict[str, Path], out: Path, policy: str = "policy", **kw) -> dict:
    return run(
        str(world["pool"]),
        str(out),
        reward_model=str(world["reward_model"]),
        zoo=str(world["zoo"]),
        policy=str(world["root"] / policy),
        exclude=[str(world["subset"])],
        **{**SIZES, "human": "simulate", **kw},
    )


@pytest.fixture(scope="module")
def evaluated(world: dict[str, Path]) -> tuple[Path, dict]:
    out = world["root"] / "eval"
    return out, _run(world, out)


def test_benchmark_models_judges_and_metrics_shape(
    world: dict[str, Path], evaluated: tuple[Path, dict]
) -> None:
    out, m = evaluated
    assert read_artifact(out).kind == "evaluation"
    assert m["models"] == ["base", "policy", "policy_ema"] and m["primary"] == "policy"
    assert set(m["judges"]) == {"reward_model", "oracle", "human"}
    # held out from training by item: no benchmark item is in the subset
    items = read_table(out / "items.parquet")
    trained = {r["item_id"] for r in read_table(world["subset"] / "items.parquet")}
    assert items and not {r["item_id"] for r in items} & trained
    assert m["benchmark"]["n_excluded"] == len(trained)
    assert m["items_per_group"] == {
        "image_fill": 4,
        "image_extend_prompt": 2,
        "image_extend_no_prompt": 2,
        "object_removal": 3,
    }
    # gsb / oracle_gsb / human_gsb: {task: {dimension: {good, same, bad, n}}}, every item counted
    for key in ("gsb", "oracle_gsb", "human_gsb"):
        assert set(m[key]) == set(GROUPS), key
        for group, dims in m[key].items():
            assert list(dims) == list(group_dimensions(group))
            for cell in dims.values():
                assert cell["good"] + cell["same"] + cell["bad"] == cell["n"] == m["items_per_group"][group]
    assert m["gsb_judge"] == "reward_model"
    assert set(m["usability"]) == {"reward_model", "oracle", "human"}
    assert set(m["usability"]["oracle"]) == {"policy", "policy_ema"}
    assert all(0.0 <= v <= 1.0 for v in m["usability"]["oracle"]["policy"].values())
    # metrics {name: {model: value}}
    assert set(m["metrics"]["psnr_outside"]) == {"base", "policy", "policy_ema"}
    assert m["metrics"]["psnr_outside"]["policy"] == 100.0 and m["metrics"]["mse_outside"]["policy"] == 0.0
    assert m["metrics"]["ssim_outside"]["base"] == pytest.approx(1.0)
    assert m["metrics"]["psnr_outside_raw"]["base"] < 60.0  # the model itself changes the background
    for name in ("seam", "clip_score", "ocr_sentence_accuracy", "ocr_edit_distance", "removal_success"):
        assert set(m["metrics"][name]) == {"base", "policy", "policy_ema"}, name
    assert m["human"]["status"] == "answered" and m["human"]["n_tasks_answered"] == len(items)
    assert set(m["seconds_per_item_model"]) >= {
        "generate",
        "reward_model",
        "oracle",
        "human",
        "background",
        "ocr",
    }
    # per item: a pasted-back result has infinite PSNR outside the mask
    results = pq.read_table(out / "results.parquet").to_pylist()
    assert len(results) == 3 * len(items) and all(math.isinf(r["psnr_outside"]) for r in results)
    # reports: the HTML with the Table 2 shape, grids, Markdown, the headline for the run report
    html = (out / "report.html").read_text()
    for text in ("Table 2 shape", "GSB by the reward model", "Automatic metrics", "Image grids", "Human A/B"):
        assert text in html, text
    assert "<img" in (out / "headline.html").read_text()
    assert "## Table 2 shape" in (out / "report.md").read_text()


def test_every_model_sees_the_same_conditions_and_noises(evaluated: tuple[Path, dict]) -> None:
    """The results differ only through the weights: outside the mask all equal the source, and
    the models' raw outputs stay close (small LoRA deltas on the same noise)."""
    out, _ = evaluated
    deltas = {"policy": [], "policy_ema": []}
    for item in read_table(out / "items.parquet")[:4]:
        source = load_rgb(out / item["image"])
        mask = np.asarray(load_rgb(out / item["mask"]))[..., 0] > 127
        outs = {
            mo: load_rgb(out / "results" / mo / f"{item['item_id']}.png")
            for mo in ("base", "policy", "policy_ema")
        }
        raws = {mo: load_rgb(out / "raw" / mo / f"{item['item_id']}.png").astype(int) for mo in outs}
        for img in outs.values():
            assert (img[~mask] == source[~mask]).all()
        assert np.abs(raws["policy"] - raws["base"]).mean() < 40
        for mo in deltas:
            deltas[mo].append(np.abs(raws[mo] - raws["base"]).mean())
    # The EMA's adapter (random, half the policy's scale) moves the outputs less, over the items.
    assert 0 < np.mean(deltas["policy_ema"]) < np.mean(deltas["policy"])


def test_results_are_deterministic(world: dict[str, Path], evaluated: tuple[Path, dict]) -> None:
    first, m1 = evaluated
    second = world["root"] / "eval_again"
    m2 = _run(world, second)
    for table in ("items.parquet", "results.parquet", "judgements.parquet"):
        assert pq.read_table(first / table).to_pylist() == pq.read_table(second / table).to_pylist(), table
    for png in sorted((first / "results").rglob("*.png")):
        assert png.read_bytes() == (second / png.relative_to(first)).read_bytes()
    for key in ("gsb", "oracle_gsb", "human_gsb", "usability", "metrics"):
        assert m1[key] == m2[key], key
    assert json.loads((first / "human" / "assignment.json").read_text()) == json.loads(
        (second / "human" / "assignment.json").read_text()
    )


def test_a_policy_identical_to_the_base_is_same(world: dict[str, Path]) -> None:
    """Zero LoRA deltas: the same pixels as the base, so every judge says Same (noise-free simulated
    people; with noise they split evenly, see test_evaluate_gsb)."""
    m = _run(world, world["root"] / "eval_same", policy="same_policy", ema=False, annotator_noise=0.0)
    for key in ("gsb", "oracle_gsb", "human_gsb"):
        assert all(c["same"] == c["n"] > 0 for dims in m[key].values() for c in dims.values()), key
    assert m["usability"]["oracle"]["policy"] == {g: 1.0 for g in GROUPS}


def test_a_policy_whose_training_items_are_not_held_out_is_refused(
    world: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"--exclude: policy .* was trained on the subset"):
        run(
            str(world["pool"]),
            str(tmp_path / "e"),
            reward_model=str(world["reward_model"]),
            zoo=str(world["zoo"]),
            policy=str(world["root"] / "policy"),
        )
    assert not (tmp_path / "e").exists()


def test_cli_base_alone_and_one_line_errors(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "evaluate",
        "--pool",
        str(world["pool"]),
        "--reward-model",
        str(world["zoo"] / "reward_vlm"),
        "--zoo",
        str(world["zoo"]),
    ]
    assert (
        main(
            [
                *argv,
                "--out",
                str(tmp_path / "base"),
                "--fill-items",
                "2",
                "--extend-items",
                "0",
                "--removal-items",
                "1",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"] == ["base"] and printed["primary"] is None and printed["n_items"] == 3
    # a policy artifact of the wrong kind, an impossible margin: one line naming the input and field
    assert main([*argv, "--out", str(tmp_path / "x"), "--policy", str(world["subset"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--policy" in err and "subset" in err
    assert main([*argv, "--out", str(tmp_path / "x"), "--margin", "0.7"]) == 2
    assert "evaluate.margin (--margin)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
