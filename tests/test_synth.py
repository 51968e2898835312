"""The synthetic world: pool artifact layout, determinism, every task's items, bad input, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onereward import tasks
from onereward.artifacts import read_artifact
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb
from onereward.synth import stage as synth_stage
from onereward.synth import world
from onereward.synth.stage import run
from onereward.tables import read_table

TEXT_PROMPT = re.compile(r'^the word "([A-Z]+)" in ([a-z]+) letters$')
SHAPE_PROMPT = re.compile(r"^an? ([a-z]+) ([a-z]+)( on a[ a-z]+ background)?$")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "pool"
    synth_stage.make_pool(out, 40, seed=7)
    return out


def _rows(pool: Path) -> list[dict]:
    return read_table(pool / "items.parquet")


def test_pool_is_a_verified_artifact_with_metrics_and_report(pool: Path) -> None:
    manifest = read_artifact(pool, kind="pool")  # verifies the content hash
    assert manifest.producer["stage"] == "synthesize_pool"
    assert manifest.parameters["n_items"] == 40 and manifest.parameters["seed"] == 7
    metrics = manifest.metrics()
    assert metrics["n_items"] == 40
    # Largest-remainder split of 40 over 0.4 / 0.3 / 0.3.
    assert metrics["counts"] == {"image_fill": 16, "image_extend": 12, "object_removal": 12}
    assert metrics["n_extend_with_prompt"] == 6
    assert metrics["n_text_prompts"] == 4
    assert metrics["items_per_second"] > 0
    # The oracle scores every target of the world high, on every dimension of its task.
    assert set(metrics["oracle_on_targets"]) == set(tasks.TASKS)
    for task, by_dim in metrics["oracle_on_targets"].items():
        assert set(by_dim) == set(
            tasks.dimensions_for(task, "a red circle" if task != tasks.OBJECT_REMOVAL else None)
        )
        for dim, stats in by_dim.items():
            assert stats["min"] > 0.75 and stats["mean"] > 0.9, (task, dim, stats)
    assert manifest.counts["n_items"] == 40
    report = (pool / "report.html").read_text()
    for task in tasks.TASKS:
        assert f"{task} (source | mask | target)" in report
    assert report.count("<img") == 3 * 3 * 6  # 6 items per task, three images each
    assert "Oracle scores of the targets" in report


def test_columns_and_files_follow_the_contract(pool: Path) -> None:
    rows = _rows(pool)
    assert [r["item_id"] for r in rows] == [f"syn7-{i:05d}" for i in range(40)]
    for r in rows:
        assert set(r) == {"item_id", "task", "image", "mask", "prompt", "meta", "target"}
        assert re.fullmatch(r"[A-Za-z0-9_-]+", r["item_id"])
        assert r["image"] == f"images/{r['item_id']}.png"
        assert r["mask"] == f"masks/{r['item_id']}.png"
        assert r["target"] == f"targets/{r['item_id']}.png"
        with Image.open(pool / r["image"]) as im:
            assert (im.mode, im.size) == ("RGB", (64, 64))
        with Image.open(pool / r["mask"]) as im:
            assert im.mode == "L"
            assert set(np.unique(np.asarray(im))) <= {0, 255}
        meta = json.loads(r["meta"])
        assert meta["task"] == r["task"]
        assert meta["background"]["kind"] in world.BACKGROUND_KINDS
        for shape in meta["shapes"]:
            assert shape["kind"] in world.SHAPES and shape["colour"] in world.SHAPE_COLOURS
        # meta renders the target exactly (candidates rely on it)
        assert np.array_equal(
            world.render_scene(meta, without=[meta["removed"]] if "removed" in meta else []),
            load_rgb(pool / r["target"]),
        )


def test_fill_items_have_the_prompted_object_in_the_mask_only_in_the_target(pool: Path) -> None:
    fills = [r for r in _rows(pool) if r["task"] == tasks.IMAGE_FILL]
    n_text = 0
    for r in fills:
        source, target, mask = (
            load_rgb(pool / r["image"]),
            load_rgb(pool / r["target"]),
            load_mask(pool / r["mask"]),
        )
        assert np.array_equal(source[~mask], target[~mask])
        parsed = world.parse_prompt(r["prompt"])
        colour = np.array(world.SHAPE_COLOURS[parsed["colour"]])
        in_target = (target[mask] == colour).all(-1).sum()
        in_source = (source[mask] == colour).all(-1).sum()
        assert in_target >= 8 and in_source == 0, r["prompt"]
        meta = json.loads(r["meta"])
        if TEXT_PROMPT.match(r["prompt"]):
            n_text += 1
            word, colour_name = TEXT_PROMPT.match(r["prompt"]).groups()
            assert meta["text"] == {**meta["text"], "word": word, "colour": colour_name}
            assert in_target == world.text_glyphs(word, 1).sum()
        else:
            m = SHAPE_PROMPT.match(r["prompt"])
            assert m, r["prompt"]
            shape = meta["shapes"][meta["prompted"]]
            assert (shape["colour"], shape["kind"]) == (m.group(1), m.group(2))
            # Only the prompted object has the prompt's colour (distractors avoid it).
            assert (target == colour).all(-1).sum() == world.shape_mask(
                shape["kind"], shape["bbox"], 64
            ).sum()
    assert n_text == 4


def test_extend_items_are_canvases_with_grey_new_area(pool: Path) -> None:
    extends = [r for r in _rows(pool) if r["task"] == tasks.IMAGE_EXTEND]
    with_prompt = [r for r in extends if r["prompt"]]
    assert len(with_prompt) == len(extends) // 2 and len(extends) == 12
    for r in extends:
        source, target, mask = (
            load_rgb(pool / r["image"]),
            load_rgb(pool / r["target"]),
            load_mask(pool / r["mask"]),
        )
        meta = json.loads(r["meta"])
        x0, y0, x1, y1 = meta["keep_box"]
        keep = np.zeros_like(mask)
        keep[y0:y1, x0:x1] = True
        assert np.array_equal(mask, ~keep)
        assert 0.25 <= mask.mean() <= 0.75
        assert (source[mask] == world.CANVAS_GREY).all()
        assert np.array_equal(source[~mask], target[~mask])
        assert not (target[mask] == world.CANVAS_GREY).all()  # the target fills the new area
        if r["prompt"]:
            shape = meta["shapes"][meta["prompted"]]
            sx0, sy0, sx1, sy1 = shape["bbox"]
            assert mask[sy0:sy1, sx0:sx1].all()  # the prompted shape lies in the new area
            assert world.parse_prompt(r["prompt"])["shape"] == shape["kind"]
            colour = np.array(world.SHAPE_COLOURS[shape["colour"]])
            assert (target == colour).all(-1).sum() == world.shape_mask(
                shape["kind"], shape["bbox"], 64
            ).sum()
        assert tasks.dimensions_for(r["task"], r["prompt"]) == (
            tasks.DIMENSIONS[:4] if r["prompt"] else (tasks.CONSISTENCY, tasks.STRUCTURE, tasks.AESTHETICS)
        )


def test_removal_items_mask_the_object_and_the_target_is_the_background(pool: Path) -> None:
    removals = [r for r in _rows(pool) if r["task"] == tasks.OBJECT_REMOVAL]
    assert len(removals) == 12
    for r in removals:
        assert r["prompt"] is None
        source, target, mask = (
            load_rgb(pool / r["image"]),
            load_rgb(pool / r["target"]),
            load_mask(pool / r["mask"]),
        )
        meta = json.loads(r["meta"])
        obj = meta["shapes"][meta["removed"]]
        silhouette = world.shape_mask(obj["kind"], obj["bbox"], 64)
        assert mask[silhouette].all()  # the mask covers the whole object
        assert (source[silhouette] == world.SHAPE_COLOURS[obj["colour"]]).all()
        assert np.array_equal(source[~mask], target[~mask])
        assert np.array_equal(target, world.render_scene(meta, without=[meta["removed"]]))


def test_same_seed_same_bytes_other_seed_other_items(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth_stage.make_pool(a, 9, seed=3)
    synth_stage.make_pool(b, 9, seed=3)
    synth_stage.make_pool(c, 9, seed=4)
    files = sorted(
        p.relative_to(a)
        for p in a.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "metrics.json")
    )
    assert len(files) == 1 + 1 + 9 * 3  # items.parquet, report.html, images/masks/targets
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "items.parquet").read_bytes() != (c / "items.parquet").read_bytes()


def test_other_sizes_and_no_masks(tmp_path: Path) -> None:
    synth_stage.make_pool(tmp_path / "big", 6, seed=1, image_size=96, masks=False)
    rows = _rows(tmp_path / "big")
    for r in rows:
        assert load_rgb(tmp_path / "big" / r["image"]).shape == (96, 96, 3)
        if r["task"] == tasks.OBJECT_REMOVAL:
            assert load_mask(tmp_path / "big" / r["mask"]).shape == (96, 96)
        else:
            assert r["mask"] is None
    assert not (tmp_path / "big" / "masks").exists() or all(
        p.stem in {r["item_id"] for r in rows if r["task"] == tasks.OBJECT_REMOVAL}
        for p in (tmp_path / "big" / "masks").iterdir()
    )


def test_task_mix_is_configurable(tmp_path: Path) -> None:
    items = world.sample_items(10, 0, 64, task_mix={tasks.OBJECT_REMOVAL: 1.0, tasks.IMAGE_FILL: 0.0})
    assert {it["task"] for it in items} == {tasks.OBJECT_REMOVAL}
    items = world.sample_items(8, 0, 64, text_fraction=1.0, task_mix={tasks.IMAGE_FILL: 1.0})
    assert all(TEXT_PROMPT.match(it["prompt"]) for it in items)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"n_items": 0}, "--items"),
        ({"n_items": -3}, "--items"),
        ({"image_size": 50}, "--image-size"),
        ({"image_size": 16}, "--image-size"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_input_names_the_flag_and_writes_nothing(tmp_path: Path, kwargs: dict, flag: str) -> None:
    args = {"n_items": 4, "seed": 0, "image_size": 64, **kwargs}
    with pytest.raises(InputError, match=flag):
        synth_stage.make_pool(tmp_path / "pool", **args)
    assert not any(tmp_path.iterdir())


def test_bad_task_mix_is_rejected() -> None:
    with pytest.raises(InputError, match="task_mix"):
        world.sample_items(4, 0, 64, task_mix={tasks.IMAGE_FILL: 0.0})
    with pytest.raises(InputError, match="text_fraction"):
        world.sample_items(4, 0, 64, text_fraction=1.5)


def test_stage_run_returns_the_metrics(tmp_path: Path) -> None:
    metrics = run(str(tmp_path / "pool"), items=5, seed=2, image_size=64, masks=True)
    assert metrics["n_items"] == 5
    assert sum(metrics["counts"].values()) == 5
    assert all(metrics["counts"][t] >= 1 for t in tasks.TASKS)
    assert metrics == read_artifact(tmp_path / "pool", kind="pool").metrics()


def test_parse_prompt_grammar() -> None:
    assert world.parse_prompt("a red circle") == {"colour": "red", "shape": "circle", "word": None}
    assert world.parse_prompt("an orange square on a striped background")["shape"] == "square"
    assert world.parse_prompt('the word "OPEN" in red letters') == {
        "colour": "red",
        "shape": None,
        "word": "OPEN",
    }
    assert world.parse_prompt("a cat") == {"colour": None, "shape": None, "word": None}
    assert world.parse_prompt(None) == {"colour": None, "shape": None, "word": None}


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onereward.cli import main

    out = tmp_path / "pool"
    assert (
        main(["synth", "--out", str(out), "--items", "6", "--seed", "5", "--image-size", "80", "--no-masks"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_items"] == 6
    manifest = read_artifact(out, kind="pool")
    assert manifest.parameters["image_size"] == 80 and manifest.parameters["masks"] is False
    assert load_rgb(out / _rows(out)[0]["image"]).shape == (80, 80, 3)
    assert main(["synth", "--out", str(tmp_path / "bad"), "--items", "3", "--image-size", "70"]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 16])
def test_dilate_mask_equals_the_square_neighbourhood(radius: int) -> None:
    rng = np.random.default_rng(radius)
    mask = rng.random((37, 53)) < 0.03
    expected = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask), strict=True):
        expected[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = True
    assert np.array_equal(world.dilate_mask(mask, radius), expected)
