"""The exit-handler step of pipelines whose training steps may run as Kubeflow Trainer v2 TrainJobs.

train_reward_model and train_policy run as a TrainJob themselves when asked for more than one GPU or
node (``num_nodes`` / ``gpus_per_node``; :func:`onereward.cluster.launch.launch_distributed`): the
step copies its inputs to the shared volume, creates the job (or, when KFP retries the step,
reattaches to the one the earlier attempt created: the name comes from the run and task ids), streams
the nodes' logs, fails with the job's reason, deletes the job on SIGTERM, and copies the artifact the
nodes wrote back into its output. ``cleanup_trainjobs`` deletes the unfinished TrainJobs of the run
(a cancelled or failed run leaves no job holding GPUs).
"""

from onereward.cluster.config import TrainJobConfig
from onereward.config import documented, kfp_description
from onereward_kfp.components import GLOSSARY
from onereward_kfp.components.images import cpu_component

# Descriptions of the launcher's own parameters (the TrainJob settings come from TrainJobConfig).
LAUNCH_GLOSSARY: dict[str, str] = {
    **GLOSSARY,
    **{f.name: kfp_description(TrainJobConfig, f.name) for f in TrainJobConfig.fields()},
    "run_id": "KFP run id (wire dsl.PIPELINE_JOB_ID_PLACEHOLDER); with task_id it names the job, so a retry reattaches.",
    "task_id": "KFP task id (wire dsl.PIPELINE_TASK_ID_PLACEHOLDER).",
    "api_server": "Kubernetes API URL ('' = the pod's in-cluster service account).",
    "finished_too": "Also delete the run's finished TrainJobs (default: only unfinished ones).",
}


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
