"""Component train_reward_model: pairwise Yes/No SFT of the VLM reward model.

Parameters are the fields of :class:`onereward.reward.config.RewardConfig` (descriptions come from
there); a profile setting left at -1 (numbers) or "" (text) takes the profile's value.
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.reward.config import RewardConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import gpu_component


@gpu_component
@stage_doc(
    RewardConfig,
    'Fine-tune the VLM to answer "is the first image better?" per task and dimension (Eq. 3).',
)
def train_reward_model(
    preferences: Input[Artifact],
    zoo: Input[Artifact],
    reward_model: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
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
    run_id: str = "",
    task_id: str = "",
):
    from onereward.cluster.launch import distributed, launch_distributed
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.reward.config import RewardConfig
    from onereward.reward.stage import run

    settings = from_kfp(RewardConfig, locals())
    if distributed(num_nodes, gpus_per_node):  # the same stage as a TrainJob on the cluster's GPUs
        job = launch_distributed(
            "train-reward", {"preferences": preferences.path, "zoo": zoo.path}, RewardConfig, settings,
            profile=profile, out=reward_model.path, num_nodes=num_nodes, gpus_per_node=gpus_per_node,
            run_id=run_id, task_id=task_id,
        )  # fmt: skip
        reward_model.metadata["trainjob"] = job.handle
    else:
        run(preferences.path, reward_model.path, profile=profile, zoo=zoo.path, **settings)
    publish(reward_model, report, metrics)
