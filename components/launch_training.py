"""Components that run a training stage as a Kubeflow Trainer v2 TrainJob (multi-GPU / multi-node).

``launch_train_reward_model`` is ``train_reward_model`` (same inputs, outputs and settings; the
nodes run ``onereward train-reward`` under ``accelerate launch``) for more than one GPU or node. The
step itself needs no GPU: it copies the inputs to the shared volume, creates the TrainJob (or, when
KFP retries the step, reattaches to the one the earlier attempt created: the name comes from the run
and task ids), streams the nodes' logs, fails with the job's reason, deletes the job on SIGTERM, and
copies the artifact the nodes wrote back into its output (lineage and the job handle in the metadata).
It runs in the GPU image, so that ``image=''`` (the step's own image) is the training image.

``cleanup_trainjobs`` is the pipeline's exit-handler step: it deletes the unfinished TrainJobs of the
run (a cancelled or failed run leaves no job holding GPUs).

The step's pod needs, set by the pipeline: the PVC ``shared_volume`` mounted at ``shared_mount``
(``kubernetes.mount_pvc``), and a service account allowed to create/get/list/watch/delete
``trainjobs.trainer.kubeflow.org`` and get/list ``pods`` and get ``pods/log``. See
:mod:`onereward.cluster.launch` for what lands where on the volume.
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.cluster.config import TrainJobConfig
from onereward.config import documented, kfp_description
from onereward.reward.config import RewardConfig
from onereward_kfp.components import GLOSSARY
from onereward_kfp.components.images import cpu_component, gpu_component

# Descriptions of the launcher's own parameters (the TrainJob settings come from TrainJobConfig).
LAUNCH_GLOSSARY: dict[str, str] = {
    **GLOSSARY,
    **{f.name: kfp_description(TrainJobConfig, f.name) for f in TrainJobConfig.fields()},
    "run_id": "KFP run id (wire dsl.PIPELINE_JOB_ID_PLACEHOLDER); with task_id it names the job, so a retry reattaches.",
    "task_id": "KFP task id (wire dsl.PIPELINE_TASK_ID_PLACEHOLDER).",
    "api_server": "Kubernetes API URL ('' = the pod's in-cluster service account).",
    "finished_too": "Also delete the run's finished TrainJobs (default: only unfinished ones).",
}


@gpu_component
@documented(
    RewardConfig,
    "train_reward_model as a Kubeflow Trainer v2 TrainJob on num_nodes x gpus_per_node processes.",
    LAUNCH_GLOSSARY,
)
def launch_train_reward_model(
    preferences: Input[Artifact],
    zoo: Input[Artifact],
    reward_model: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    run_id: str,
    task_id: str,
    profile: str = "tiny",
    max_steps: int = -1,
    batch_size: int = -1,
    learning_rate: float = -1.0,
    finetune: str = "",
    lora_rank: int = 16,
    seed: int = 0,
    test_fraction: float = 0.2,
    checkpoint_dir: str = "",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
    gpu_resource: str = "nvidia.com/gpu",
    cpu_per_node: str = "",
    memory_per_node: str = "",
    image: str = "",
    runtime: str = "torch-distributed",
    namespace: str = "",
    launcher: str = "accelerate",
    accelerate_config: str = "configs/accelerate/ddp.yaml",
    shared_volume: str = "onereward-artifacts",
    shared_mount: str = "/shared",
    volumes: str = "",
    env: str = "",
    secret_env: str = "",
    node_selector: str = "",
    tolerations: str = "",
    service_account: str = "",
    shm_size: str = "16Gi",
    active_deadline_seconds: int = 0,
    stream_logs: bool = True,
    poll_seconds: float = 5.0,
    api_server: str = "",
):
    from onereward.cluster.config import TrainJobConfig
    from onereward.cluster.launch import StageCommand, cli_flags, launch_stage
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.reward.config import RewardConfig

    scope = locals()
    stage = StageCommand(
        entry_point="train-reward",
        inputs={"preferences": preferences.path, "zoo": zoo.path},
        args=("--profile", profile, *cli_flags(RewardConfig, from_kfp(RewardConfig, scope))),
        checkpoint_flag="checkpoint-dir",
    )
    cfg = TrainJobConfig(**from_kfp(TrainJobConfig, scope))
    job = launch_stage(stage, reward_model.path, cfg, run_id=run_id, task_id=task_id, api_server=api_server)
    reward_model.metadata["trainjob"] = job.handle
    publish(reward_model, report, metrics)


@cpu_component
@documented(
    TrainJobConfig, "Exit handler: delete the TrainJobs of this run that have not finished.", LAUNCH_GLOSSARY
)
def cleanup_trainjobs(
    run_id: str, namespace: str = "", finished_too: bool = False, api_server: str = ""
) -> int:
    from onereward.cluster.trainjob import TrainJobApi, delete_run_trainjobs

    api = TrainJobApi.connect(api_server, namespace)
    deleted = delete_run_trainjobs(api, run_id, finished_too=finished_too)
    print(
        f"deleted {len(deleted)} trainjob(s) of run {run_id} in {api.namespace}: {', '.join(deleted) or '-'}"
    )
    return len(deleted)
