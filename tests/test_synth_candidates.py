"""Synthetic candidates: contract columns, pixels outside the mask, graded oracle scores, subsets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from onereward import tasks
from onereward.artifacts import ArtifactError, ArtifactWriter, read_artifact
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb
from onereward.synth import oracle, world
from onereward.synth import stage as synth_stage
from onereward.synth.candidates import (
    PIXEL_DEGRADATIONS,
    SCENE_DEGRADATIONS,
    SyntheticItem,
    degrade,
    make_candidates,
)
from onereward.tables import read_table, write_table

CONTRACT_COLUMNS = {
    "candidate_id",
    "item_id",
    "index",
    "image",
    "family",
    "prompt",
    "negative_prompt",
    "steps",
    "cfg_scale",
    "strength",
    "seed",
    "guidance",
    "feather",
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cands") / "pool"
    synth_stage.make_pool(out, 24, seed=5)
    return out


@pytest.fixture(scope="module")
def candidates(pool: Path) -> Path:
    out = pool.parent / "candidates"
    make_candidates(pool, out, per_item=4, seed=0)
    return out


def test_candidates_artifact_follows_the_contract(pool: Path, candidates: Path) -> None:
    manifest = read_artifact(candidates, kind="candidates")
    assert manifest.inputs[0]["kind"] == "pool"
    assert manifest.inputs[0]["content_hash"] == read_artifact(pool).content_hash
    items = read_table(candidates / "items.parquet")
    assert items == read_table(pool / "items.parquet")  # the input rows, unchanged
    rows = read_table(candidates / "candidates.parquet")
    assert len(rows) == 24 * 4
    by_item = {it["item_id"]: it for it in items}
    for r in rows:
        assert CONTRACT_COLUMNS | {"meta"} == set(r)
        item = by_item[r["item_id"]]
        assert r["candidate_id"] == f"{r['item_id']}-c{r['index']}"
        assert r["image"] == f"candidates/{r['item_id']}/{r['index']}.png"
        assert r["family"] == "synthetic"
        assert r["prompt"] == tasks.effective_prompt(item["task"], item["prompt"])
        assert (
            r["negative_prompt"],
            r["steps"],
            r["cfg_scale"],
            r["strength"],
            r["guidance"],
            r["feather"],
        ) == (
            "",
            0,
            1.0,
            1.0,
            0.0,
            0,
        )
        assert isinstance(json.loads(r["meta"])["degradations"], list)
    for item in items:
        assert sorted(r["index"] for r in rows if r["item_id"] == item["item_id"]) == [0, 1, 2, 3]
        for col in ("image", "mask", "target"):
            assert (candidates / item[col]).read_bytes() == (pool / item[col]).read_bytes()
    metrics = manifest.metrics()
    assert metrics["n_candidates"] == 96 and metrics["candidates_per_second"] > 0
    assert set(metrics["oracle_std_within_item"]) == set(tasks.DIMENSIONS)
    assert "<img" in (candidates / "report.html").read_text()


def test_pixels_outside_the_mask_are_the_source(candidates: Path) -> None:
    items = {it["item_id"]: it for it in read_table(candidates / "items.parquet")}
    for r in read_table(candidates / "candidates.parquet"):
        item = items[r["item_id"]]
        source, mask = load_rgb(candidates / item["image"]), load_mask(candidates / item["mask"])
        result = load_rgb(candidates / r["image"])
        assert result.shape == source.shape
        assert np.array_equal(result[~mask], source[~mask])


def test_quality_is_graded_and_the_oracle_can_tell(candidates: Path) -> None:
    items = {it["item_id"]: it for it in read_table(candidates / "items.parquet")}
    rows = read_table(candidates / "candidates.parquet")
    clean_margin: dict[str, list[float]] = {}
    for item_id, item in items.items():
        source, mask = load_rgb(candidates / item["image"]), load_mask(candidates / item["mask"])
        mine = sorted((r for r in rows if r["item_id"] == item_id), key=lambda r: r["index"])
        n_degradations = [len(json.loads(r["meta"])["degradations"]) for r in mine]
        assert sorted(n_degradations) == [0, 1, 2, 3]  # one clean, then 1, 2, 3 degradations
        scores = [
            oracle.score_all(item["task"], source, mask, item["prompt"], load_rgb(candidates / r["image"]))
            for r in mine
        ]
        clean = n_degradations.index(0)
        assert np.array_equal(
            load_rgb(candidates / mine[clean]["image"]), load_rgb(candidates / item["target"])
        )
        # Somewhere in the item the candidates differ clearly for the oracle.
        assert max(max(s[d] for s in scores) - min(s[d] for s in scores) for d in scores[0]) > 0.3, item_id
        for dim in scores[0]:
            others = [s[dim] for i, s in enumerate(scores) if i != clean]
            clean_margin.setdefault(dim, []).append(scores[clean][dim] - float(np.mean(others)))
    # The clean candidate is the oracle's favourite on average in every dimension.
    assert set(clean_margin) == set(tasks.DIMENSIONS)
    for dim, margins in clean_margin.items():
        assert np.mean(margins) > 0.15, (dim, np.mean(margins))


def test_same_seed_same_candidates(pool: Path, candidates: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    make_candidates(pool, again, per_item=4, seed=0)
    make_candidates(pool, other, per_item=4, seed=1)
    assert (again / "candidates.parquet").read_bytes() == (candidates / "candidates.parquet").read_bytes()
    for p in sorted((candidates / "candidates").rglob("*.png")):
        assert p.read_bytes() == (again / p.relative_to(candidates)).read_bytes()
    assert (other / "candidates.parquet").read_bytes() != (candidates / "candidates.parquet").read_bytes()


def _subset_from(pool: Path, out: Path, keep: int) -> Path:
    """A subset artifact (contract columns + embeddings) made of the first ``keep`` pool items."""
    rows = read_table(pool / "items.parquet")[:keep]
    with ArtifactWriter(out, kind="subset", stage="test", inputs=[read_artifact(pool)]) as art:
        for i, r in enumerate(rows):
            r.update({"cluster_id": i % 2, "distance": 0.1 * i, "embedding_index": i})
            for col in ("image", "mask", "target"):
                (art.path / r[col]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(pool / r[col], art.path / r[col])
        write_table(art.path / "items.parquet", rows)
        emb = np.eye(keep, 8, dtype=np.float32)
        np.save(art.path / "embeddings.npy", emb)
    return out


def test_works_on_a_subset_and_keeps_its_columns(pool: Path, tmp_path: Path) -> None:
    subset = _subset_from(pool, tmp_path / "subset", keep=6)
    out = tmp_path / "cands"
    manifest = make_candidates(subset, out, per_item=3, seed=2)
    assert manifest.inputs[0]["kind"] == "subset"
    items = read_table(out / "items.parquet")
    assert [it["cluster_id"] for it in items] == [0, 1, 0, 1, 0, 1]
    assert len(read_table(out / "candidates.parquet")) == 18


@pytest.mark.parametrize("name", SCENE_DEGRADATIONS + PIXEL_DEGRADATIONS)
def test_each_degradation_changes_only_the_mask(name: str) -> None:
    raw = world.sample_items(40, 9, 64)
    applicable = [
        SyntheticItem.from_world(r) for r in raw if name in SyntheticItem.from_world(r).applicable()
    ]
    assert applicable, f"no item of the pool takes {name}"
    item = applicable[0]
    result, log = degrade(item, [name], np.random.default_rng(0), severity=0.8)
    assert [entry["name"] for entry in log] == [name]
    assert np.array_equal(result[~item.mask], item.source[~item.mask])
    assert not np.array_equal(result, item.target), name


def test_bad_inputs_are_refused(pool: Path, tmp_path: Path) -> None:
    no_masks = tmp_path / "no_masks"
    synth_stage.make_pool(no_masks, 4, seed=0, masks=False)
    with pytest.raises(InputError, match="mask null"):
        make_candidates(no_masks, tmp_path / "c1")
    with pytest.raises(InputError, match="--per-item"):
        make_candidates(pool, tmp_path / "c2", per_item=0)
    with pytest.raises(ArtifactError, match="--items"):
        make_candidates(tmp_path / "missing", tmp_path / "c3")
    cands = tmp_path / "c4"
    make_candidates(pool, cands, per_item=1)
    with pytest.raises(ArtifactError, match="'candidates'"):
        make_candidates(cands, tmp_path / "c5")  # a candidates artifact is not an items artifact
    item = SyntheticItem.from_world(world.sample_items(1, 0, 64)[0])
    with pytest.raises(InputError, match="unknown"):
        degrade(item, ["sparkles"], np.random.default_rng(0))
    assert not any((tmp_path / name).exists() for name in ("c1", "c2", "c3", "c5"))


def test_cli_round_trip(pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onereward.cli import main

    out = tmp_path / "cli"
    assert (
        main(["synth-candidates", "--items", str(pool), "--out", str(out), "--per-item", "2", "--seed", "4"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_candidates"] == 48
    assert read_artifact(out, kind="candidates").parameters == {"per_item": 2, "seed": 4}
    assert main(["synth-candidates", "--items", str(out), "--out", str(tmp_path / "x")]) == 2
    assert "--items" in capsys.readouterr().err
