"""Component unit tests through ``component.python_func`` (fast, no KFP runner): each thin
component turns its parameters into a stage call (the -1 / "" sentinels into the profile's values)
and publishes the artifact's manifest, report and metrics to the KFP output objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Metrics

from onereward.artifacts import read_artifact
from onereward.profile import load_profile
from onereward_kfp.components.build_zoo import build_zoo
from onereward_kfp.components.generate_candidates import generate_candidates
from onereward_kfp.components.merge_candidates import merge_candidates, plan_shards
from onereward_kfp.components.select_subset import select_subset
from onereward_kfp.components.synthesize_pool import synthesize_pool


def _out(tmp_path: Path, name: str, cls=Artifact):
    return cls(name=name, uri=str(tmp_path / name))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = tmp_path_factory.mktemp("components")
    out = _out(root, "pool")
    synthesize_pool.python_func(
        pool=out,
        report=_out(root, "pool_report", HTML),
        metrics=_out(root, "pool_metrics", Metrics),
        items=12,
        seed=1,
    )
    return out


def test_synthesize_pool_publishes_lineage_report_and_metrics(pool: Artifact) -> None:
    manifest = read_artifact(pool.path)
    assert manifest.kind == "pool" and manifest.counts["n_items"] == 12
    assert pool.metadata["content_hash"] == manifest.content_hash and pool.metadata["kind"] == "pool"
    assert Path(pool.path).with_name("pool_report").read_text().startswith("<!doctype html>")


def test_select_and_generate_take_the_profile_values_for_sentinels(
    pool: Artifact, tiny_zoo: Path, tmp_path: Path
):
    zoo = Artifact(name="zoo", uri=str(tiny_zoo))
    subset = _out(tmp_path, "subset")
    metrics = _out(tmp_path, "select_metrics", Metrics)
    select_subset.python_func(
        pool=pool, zoo=zoo, subset=subset, report=_out(tmp_path, "r1", HTML), metrics=metrics, size=6,
        dedup_threshold=-1.0, batch_size=-1, num_workers=-1,
    )  # fmt: skip
    manifest = read_artifact(subset.path)
    assert manifest.counts["n_selected"] == 6
    assert manifest.parameters["dedup_threshold"] == load_profile("tiny").select.dedup_threshold
    assert metrics.metadata["n_selected"] == 6.0

    shards = plan_shards.python_func(shards=2)
    assert shards == ["0/2", "1/2"]
    outs = []
    for shard in shards:
        cand = _out(tmp_path, f"cand{shard[0]}")
        generate_candidates.python_func(
            subset=subset, zoo=zoo, candidates=cand, report=_out(tmp_path, f"r{shard[0]}", HTML),
            metrics=_out(tmp_path, f"m{shard[0]}", Metrics), shard=shard, num_candidates=2, min_steps=-1,
            max_steps=3, feather=0,
        )  # fmt: skip
        outs.append(cand)
    params = read_artifact(outs[0].path).parameters
    tiny = load_profile("tiny").generate
    assert params["min_steps"] == tiny.min_steps and params["max_steps"] == 3  # sentinel vs explicit
    assert params["cfg_min"] == tiny.cfg_min and params["feather"] == 0 and params["num_candidates"] == 2
    merged = _out(tmp_path, "merged")
    merge_candidates.python_func(
        shards=outs,
        candidates=merged,
        report=_out(tmp_path, "rm", HTML),
        metrics=_out(tmp_path, "mm", Metrics),
    )
    m = read_artifact(merged.path)
    assert m.counts == {"n_items": 6, "n_candidates": 12}
    assert json.loads((Path(merged.path) / "metrics.json").read_text())["n_shards"] == 2


def test_plan_shards_refuses_zero() -> None:
    with pytest.raises(ValueError, match="generate_shards: expected >= 1, got 0"):
        plan_shards.python_func(shards=0)


def test_bad_setting_in_a_component_is_a_clear_error(pool: Artifact, tiny_zoo: Path, tmp_path: Path) -> None:
    from onereward.config import ConfigError

    with pytest.raises(ConfigError, match=r"select.size \(--size\): expected an integer >= 1, got 0"):
        select_subset.python_func(
            pool=pool, zoo=Artifact(name="zoo", uri=str(tiny_zoo)), subset=_out(tmp_path, "s"),
            report=_out(tmp_path, "r", HTML), metrics=_out(tmp_path, "m", Metrics), size=0,
        )  # fmt: skip
    assert not (tmp_path / "s").exists()  # nothing written


def test_build_zoo_records_the_profile(tmp_path: Path) -> None:
    zoo = _out(tmp_path, "zoo")
    build_zoo.python_func(zoo=zoo, profile="full", seed=0)  # full: references only, nothing built
    manifest = read_artifact(zoo.path)
    assert manifest.kind == "zoo" and manifest.counts["n_models_built"] == 0
