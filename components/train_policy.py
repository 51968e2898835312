"""Component train_policy: multi-task RL of the generator against the one reward model.

Parameters are the fields of :class:`onereward.policy.config.PolicyConfig` (descriptions come from
there); a profile setting left at -1 (numbers) or "" (text) takes the profile's value.
"""

from typing import Optional

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.policy.config import PolicyConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import gpu_component


@gpu_component
@stage_doc(
    PolicyConfig,
    "RL of the generator against the reward model: ReFL (paper Algorithms 1, 2) or DiffusionNFT.",
)
def train_policy(
    subset: Input[Artifact],
    reward_model: Input[Artifact],
    zoo: Input[Artifact],
    policy: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    references: Optional[Input[Artifact]] = None,  # noqa: UP045 (KFP reads Optional[...] for optional inputs)
    profile: str = "tiny",
    algorithm: str = "refl",
    seed: int = 0,
    max_steps: int = -1,
    batch_size: int = -1,
    micro_batch_size: int = -1,
    learning_rate: float = -1.0,
    finetune: str = "",
    lora_rank: int = -1,
    ema_decay: float = -1.0,
    rollout_steps: int = -1,
    t1: int = -1,
    t2: int = -1,
    reward_lambda: float = -1.0,
    reward_orders: str = "",
    cfg_scale: float = -1.0,
    guidance: float = -1.0,
    reference_seeds: int = -1,
    nft_group_size: int = -1,
    nft_rollout_steps: int = -1,
    nft_learning_rate: float = -1.0,
    nft_beta: float = -1.0,
    nft_tau_mu: float = -1.0,
    nft_tau_sigma: float = -1.0,
    nft_reward: str = "pairwise",
    nft_dimension_norm: str = "",
    nft_constraint_rate: float = -1.0,
    task_probabilities: str = "image_fill=0.5,image_extend=0.25,object_removal=0.25",  # a literal: KFP runs the source
    dimension_weights: str = "",
    probe_items: int = -1,
    gate_threshold: float = 0.6,
    gate_rule: str = "interval",
    gate_override: bool = False,
    checkpoint_dir: str = "",
    num_nodes: int = 1,
    gpus_per_node: int = 1,
    run_id: str = "",
    task_id: str = "",
):
    from onereward.cluster.launch import distributed, launch_distributed
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.policy.config import PolicyConfig
    from onereward.policy.stage import run

    settings = from_kfp(PolicyConfig, locals())
    if distributed(num_nodes, gpus_per_node):  # the same stage as a TrainJob on the cluster's GPUs
        inputs = {"subset": subset.path, "reward-model": reward_model.path, "zoo": zoo.path}
        if references is not None:
            inputs["references"] = references.path
        job = launch_distributed(
            "train-policy", inputs, PolicyConfig, settings, profile=profile, out=policy.path,
            num_nodes=num_nodes, gpus_per_node=gpus_per_node, run_id=run_id, task_id=task_id,
        )  # fmt: skip
        policy.metadata["trainjob"] = job.handle
    else:
        run(
            subset.path, reward_model.path, policy.path, profile=profile, zoo=zoo.path,
            references=references.path if references is not None else None, **settings,
        )  # fmt: skip
    publish(policy, report, metrics)
