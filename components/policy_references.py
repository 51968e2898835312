"""Component policy_references: Algorithm 1's reference rollouts, made once (a mode of generate_candidates).

Parameters are the rollout fields of :class:`onereward.policy.config.PolicyConfig`; the pipelines
pass train_policy's values, so the cache always matches the training run.
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.policy.config import PolicyConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import gpu_component


@gpu_component
@stage_doc(
    PolicyConfig,
    "Roll out the frozen base once per subset item and reference noise seed (train_policy reads them).",
)
def policy_references(
    subset: Input[Artifact],
    zoo: Input[Artifact],
    references: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    profile: str = "tiny",
    seed: int = 0,
    rollout_steps: int = -1,
    cfg_scale: float = -1.0,
    guidance: float = -1.0,
    reference_seeds: int = -1,
):
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.policy.config import PolicyConfig
    from onereward.policy.references import run_references

    run_references(
        subset.path, references.path, profile=profile, zoo=zoo.path, **from_kfp(PolicyConfig, locals())
    )
    publish(references, report, metrics)
