"""What the compiled pipelines ask of a cluster: model steps placed by pipeline parameters (GPUs,
node selector, tolerations; none for the tiny profile), a memory-backed /dev/shm, scratch space,
the models volume read offline, checkpoints and the shared volume for training, retries with
backoff on steps that talk to services, caching per step; a pipeline that fills the models
volume; one-stage pipelines fed by earlier artifacts. Checked on the compiled specs (no KFP backend
can run here)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from onereward_kfp.pipelines.definitions import PIPELINES, SHARED_PARAMETERS, STEP_CACHING
from onereward_kfp.pipelines.runner import compile_all

MODEL_STEPS = ("exec-select-subset", "exec-generate-candidates", "exec-train-reward-model", "exec-train-policy",
               "exec-policy-references", "exec-evaluate")  # fmt: skip
SERVICE_STEPS = ("export-annotations", "simulate-annotations", "import-annotations")


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    out = tmp_path_factory.mktemp("specs")
    compile_all(out)
    return {
        name: tuple(yaml.safe_load_all((out / f"{name}.yaml").read_text()))  # (pipeline spec, platform spec)
        for name in PIPELINES
    }


def _executors(platform: dict) -> dict:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_model_steps_are_placed_by_pipeline_parameters_and_the_tiny_default_asks_no_gpu(specs) -> None:
    spec, platform = specs["end_to_end"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["gpus"]["defaultValue"] == 0  # the tiny profile (the default) requests no GPU
    assert params["gpu_type"]["defaultValue"] == "nvidia.com/gpu"
    assert (
        params["gpu_node_selector"]["parameterType"] == "STRUCT"
        and params["gpu_tolerations"]["parameterType"] == "LIST"
    )
    executors = _executors(platform)
    for name in MODEL_STEPS:
        container = spec["deploymentSpec"]["executors"][name]["container"]
        accelerator = container["resources"]["accelerator"]
        assert "gpus" in accelerator["resourceCount"] and "gpu_type" in accelerator["resourceType"], name
        k8s = executors[name]
        assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith(
            "gpu_node_selector"
        )
        assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations")
        assert {
            "medium": "Memory",
            "mountPath": "/dev/shm",
            "sizeLimit": "16Gi",
            "volumeName": "dshm",
        } in k8s["emptyDirMounts"]
        assert k8s["genericEphemeralVolume"][0]["mountPath"] == "/scratch"
        assert any(
            m["mountPath"] == "/models" and m["constant"] == "onereward-models" for m in k8s["pvcMount"]
        )
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env == {"HF_HOME": "/models/huggingface", "HF_HUB_OFFLINE": "1", "TMPDIR": "/scratch"}, name
    for name in ("exec-train-reward-model", "exec-train-policy"):
        assert {m["mountPath"] for m in executors[name]["pvcMount"]} == {"/models", "/checkpoints", "/shared"}


def test_service_steps_retry_with_backoff_and_do_not_cache(specs) -> None:
    spec, _ = specs["end_to_end"]
    tasks = spec["root"]["dag"]["tasks"]
    for name in SERVICE_STEPS:
        retry = tasks[name]["retryPolicy"]
        assert (
            retry["maxRetryCount"] == 3
            and retry["backoffDuration"] == "30s"
            and retry["backoffFactor"] == 2.0
        )
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False
    assert set(STEP_CACHING)  # caching is documented per step (README "On a cluster")


def test_import_models_fills_the_models_volume_with_the_token_from_a_secret(specs) -> None:
    spec, platform = specs["import_models"]
    assert spec["root"]["inputDefinitions"]["parameters"]["profile"]["defaultValue"] == "full"
    k8s = _executors(platform)["exec-import-models"]
    assert k8s["pvcMount"][0]["mountPath"] == "/models"
    (secret,) = k8s["secretAsEnv"]
    assert secret["secretName"] == "huggingface-token" and secret["optional"] is True
    assert secret["keyToEnv"] == [{"envVar": "HF_TOKEN", "secretKey": "token"}]
    env = {
        e["name"]: e["value"]
        for e in spec["deploymentSpec"]["executors"]["exec-import-models"]["container"]["env"]
    }
    assert env == {"HF_HOME": "/models/huggingface"}
    assert spec["root"]["dag"]["tasks"]["import-models"]["cachingOptions"].get("enableCache", False) is False
    text = yaml.safe_dump(spec)
    assert "hf_" not in text.lower().replace("hf_home", "").replace("hf_token", "").replace("hf_hub", "")


@pytest.mark.parametrize(
    ("name", "uris"),
    [
        ("rerun_select_subset", {"pool_uri"}),
        ("rerun_generate_candidates", {"subset_uri"}),
        ("rerun_export_annotations", {"candidates_uri"}),
        ("rerun_train_reward_model", {"annotations_uri"}),
        ("rerun_train_policy", {"subset_uri", "reward_model_uri"}),
        ("rerun_evaluate", {"pool_uri", "subset_uri", "reward_model_uri", "policy_uri"}),
    ],
)
def test_one_stage_pipelines_take_earlier_artifacts_by_uri(specs, name: str, uris: set[str]) -> None:
    spec, _ = specs[name]
    params = spec["root"]["inputDefinitions"]["parameters"]
    required = {k for k, v in params.items() if not v.get("isOptional")}
    assert required == uris
    importers = [t for t in spec["root"]["dag"]["tasks"].values() if "importer" in t["componentRef"]["name"]]
    assert len(importers) == len(uris)
    signature = inspect.signature(PIPELINES[name].pipeline_func).parameters
    assert set(SHARED_PARAMETERS) <= set(signature)  # placed like every model step


def test_collect_cannot_run_without_a_label_studio_url_unless_offline_is_said(specs) -> None:
    spec, _ = specs["collect"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert (
        params["export_label_studio_url"]["defaultValue"] == ""
        and params["export_offline"]["defaultValue"] is False
    )
    e2e, _ = specs["end_to_end"]
    assert e2e["root"]["inputDefinitions"]["parameters"]["export_offline"]["defaultValue"] is True


def test_readme_states_the_minimum_kfp_backend() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "Kubeflow Pipelines backend 2.5" in readme


def test_every_input_a_sub_dag_reads_is_declared_and_passed(specs) -> None:
    """Each task in a sub-DAG (the generate shards' ParallelFor) reads only inputs its sub-DAG
    declares, and every task running that sub-DAG passes them (KFP 2.17 leaves out parameters used
    only in accelerator settings; pass_loop_inputs adds them). Without it a run fails on the
    cluster and under kfp.local: "Parent pipeline input argument 'pipelinechannel--gpus' not found"."""
    n_dags = 0
    for name, (spec, _) in specs.items():
        dags = {"root": spec["root"], **{k: c for k, c in spec["components"].items() if "dag" in c}}
        for comp_name, comp in dags.items():
            declared = set(comp.get("inputDefinitions", {}).get("parameters", {}))
            for task_name, task in comp["dag"]["tasks"].items():
                for arg in task.get("inputs", {}).get("parameters", {}).values():
                    wanted = arg.get("componentInputParameter")
                    assert wanted is None or wanted in declared, (name, comp_name, task_name, wanted)
                callee = task.get("componentRef", {}).get("name")
                if callee in dags:
                    n_dags += 1
                    needs = set(dags[callee].get("inputDefinitions", {}).get("parameters", {}))
                    passed = set(task.get("inputs", {}).get("parameters", {}))
                    assert needs <= passed | {n for n in needs if n.endswith("-loop-item")}, (name, task_name)
    assert n_dags >= 3  # the shards' loops of collect, train and end_to_end at least
