"""Pipelines: every spec compiles, the committed specs are current, no secrets in specs, and a
real local run of the end_to_end pipeline leaves every stage's artifact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from onereward.artifacts import read_artifact
from onereward.cli import main
from onereward.tables import read_table
from onereward_kfp.pipelines.definitions import PIPELINES, STAGE_NAMES, STAGE_ORDER, STAGE_OUTPUTS
from onereward_kfp.pipelines.runner import compile_all

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "pipelines" / "compiled"


def _spec(path: Path) -> dict:
    """The pipeline spec (first YAML document; kfp-kubernetes appends the platform spec)."""
    return next(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out)
    return out


def test_every_pipeline_compiles(compiled: Path) -> None:
    for name in PIPELINES:
        spec = _spec(compiled / f"{name}.yaml")
        assert spec["pipelineInfo"]["name"] == name.replace("_", "-")
        assert spec["root"]["inputDefinitions"]["parameters"], "pipelines expose typed parameters"


def test_committed_specs_are_current(compiled: Path) -> None:
    for name in PIPELINES:
        committed = COMMITTED / f"{name}.yaml"
        assert committed.exists(), f"{committed} is missing: run `onereward pipeline compile`"
        assert committed.read_text() == (compiled / f"{name}.yaml").read_text(), (
            f"{committed} is stale: run `onereward pipeline compile` and commit the result"
        )


def test_specs_carry_no_secrets_and_read_the_token_from_a_secret(compiled: Path) -> None:
    text = (compiled / "end_to_end.yaml").read_text()
    spec = _spec(compiled / "end_to_end.yaml")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert not [
        p for p in params if "token" in p.lower() or "api_key" in p.lower() or "password" in p.lower()
    ]
    assert "secretName: label-studio-api" in text and "envVar: LABEL_STUDIO_API_KEY" in text
    platform = list(yaml.safe_load_all(text))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("exec-simulate-annotations", "exec-import-annotations"):
        (secret,) = platform[executor]["secretAsEnv"]
        assert secret["optional"] is True  # offline runs start on a cluster without the Secret
    # export also gets the S3 credentials for the task images (only that step, also optional)
    secrets = {s["secretName"]: s for s in platform["exec-export-annotations"]["secretAsEnv"]}
    assert set(secrets) == {"label-studio-api", "onereward-s3"}
    assert all(s["optional"] is True for s in secrets.values())
    assert {k["envVar"] for k in secrets["onereward-s3"]["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert sum("onereward-s3" in str(v.get("secretAsEnv")) for v in platform.values()) == 1
    tasks = spec["root"]["dag"]["tasks"]
    for task in ("export-annotations", "simulate-annotations", "import-annotations"):
        assert tasks[task]["cachingOptions"].get("enableCache", False) is False  # live server state


def test_gpu_stages_request_gpus(compiled: Path) -> None:
    spec = _spec(compiled / "end_to_end.yaml")
    executors = spec["deploymentSpec"]["executors"]
    gpu = {k for k, v in executors.items() if v["container"].get("resources", {}).get("accelerator")}
    assert {"exec-generate-candidates", "exec-train-reward-model", "exec-select-subset"} <= gpu


@pytest.mark.slow
def test_demo_runs_the_end_to_end_pipeline_locally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`onereward demo` = a real kfp.local run of end_to_end: every stage leaves its artifact."""
    out = tmp_path / "demo"
    # small sizes; two generation shards exercise the ParallelFor fan-out and the merge
    params = {
        "synth_items": 24,
        "select_size": 12,
        "generate_num_candidates": 4,
        "generate_shards": 2,
        "simulate_annotators": 2,
        "simulate_noise": 0.02,
        "reward_max_steps": 20,
        # 12 items leave 2 test items: too few test pairs for the reward gate to mean anything
        "policy_gate_override": True,
    }
    argv = ["demo", "--out", str(out)]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed

    summary = json.loads((out / "run.json").read_text())
    assert set(summary["stages"]) == set(STAGE_ORDER), f"stages collected: {sorted(summary['stages'])}"
    listed = [m.group(1) for m in re.finditer(r"^\s+([a-z_]+) +[0-9.]+s  /", printed, flags=re.MULTILINE)]
    assert listed == STAGE_ORDER  # the demo lists the stages in pipeline order
    kinds = {
        "build_zoo": "zoo",
        "synthesize_pool": "pool",
        "select_subset": "subset",
        "generate_candidates": "candidates",
        "export_annotations": "project",
        "simulate_annotations": "annotations",
        "import_annotations": "preferences",
        "train_reward_model": "reward_model",
        "policy_references": "candidates",
        "train_policy": "policy",
        "evaluate": "evaluation",
    }
    for stage, kind in kinds.items():
        m = read_artifact(out / stage)
        assert m.kind == kind and (out / stage / "metrics.json").exists()
    assert {STAGE_NAMES.get(t, t) for t in STAGE_OUTPUTS} == set(kinds)

    sel = json.loads((out / "select_subset" / "metrics.json").read_text())
    assert sel["n_pool"] == 24 and sel["n_selected"] == 12
    gen = json.loads((out / "generate_candidates" / "metrics.json").read_text())
    assert gen["n_candidates"] == 4 * gen["n_items"] == 48
    pref = json.loads((out / "import_annotations" / "metrics.json").read_text())
    assert pref["n_pairs"] > 0 and pref["n_tasks"] == 12
    rm = json.loads((out / "train_reward_model" / "metrics.json").read_text())
    assert 0.0 <= rm["mean_accuracy"] <= 1.0
    # every stage reports its throughput
    throughput = {
        "synthesize_pool": "items_per_second",
        "select_subset": "images_per_second",
        "generate_candidates": "images_per_second",
        "export_annotations": "tasks_per_second",
        "simulate_annotations": "annotations_per_second",
        "import_annotations": "tasks_per_second",
        "train_reward_model": "train_steps_per_second",
        "policy_references": "images_per_second",
        "train_policy": "samples_per_second",
        "evaluate": "items_per_second",
    }
    for stage, key in throughput.items():
        assert json.loads((out / stage / "metrics.json").read_text())[key] > 0, (stage, key)

    # lineage: each stage's manifest names its inputs' hashes
    pool = read_artifact(out / "synthesize_pool")
    subset = read_artifact(out / "select_subset")
    assert pool.content_hash in {i["content_hash"] for i in subset.inputs}
    zoo = read_artifact(out / "build_zoo")
    assert zoo.content_hash in {i["content_hash"] for i in subset.inputs}
    # the same manifest fields reach the KFP artifact metadata (lineage in the UI)
    outputs = json.loads(next((out / ".kfp").glob("*/select-subset/executor_output.json")).read_text())
    meta = outputs["artifacts"]["subset"]["artifacts"][0]["metadata"]
    assert meta["content_hash"] == subset.content_hash and meta["kind"] == "subset"
    assert (out / "report.html").exists()
    # the evaluation: held-out items (none of the subset's), its headline opens the run's report
    ev = json.loads((out / "evaluate" / "metrics.json").read_text())
    subset_ids = {r["item_id"] for r in read_table(out / "select_subset" / "items.parquet")}
    assert (
        ev["n_items"] > 0
        and not {r["item_id"] for r in read_table(out / "evaluate" / "items.parquet")} & subset_ids
    )
    # the policy: trained on the subset's conditions against the demo's reward model, with the
    # reference rollouts made once; the evaluation compares it with the base
    policy = read_artifact(out / "train_policy")
    assert {i["content_hash"] for i in policy.inputs} >= {
        subset.content_hash,
        read_artifact(out / "train_reward_model").content_hash,
        read_artifact(out / "policy_references").content_hash,
    }
    pm = json.loads((out / "train_policy" / "metrics.json").read_text())
    assert pm["reference_cache"] == "used" and 0.0 <= pm["reward_last"] <= 1.0
    run_report = (out / "report.html").read_text()
    assert run_report.index("Evaluation:") < run_report.index("Stages")
