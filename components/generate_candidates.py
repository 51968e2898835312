"""Component generate_candidates: N randomised candidates per item (steps, CFG, negatives, strength).

Parameters are the fields of :class:`onereward.generate.config.GenerateConfig` (descriptions come
from there); a profile setting left at -1 (numbers) or "" (text) takes the profile's value.
"""

from typing import Optional

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.generate.config import GenerateConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import gpu_component


@gpu_component
@stage_doc(
    GenerateConfig,
    "Generate candidates with randomly sampled inference parameters (paper section 4.2).",
)
def generate_candidates(
    subset: Input[Artifact],
    zoo: Input[Artifact],
    candidates: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    profile: str = "tiny",
    family: str = "flux_fill",
    num_candidates: int = -1,
    seed: int = 0,
    shard: str = "0/1",
    min_steps: int = -1,
    max_steps: int = -1,
    cfg_min: float = -1.0,
    cfg_max: float = -1.0,
    strength_min: float = -1.0,
    strength_max: float = -1.0,
    negative_prompts: str = "",
    guidance: float = -1.0,
    feather: int = -1,
    policy: Optional[Input[Artifact]] = None,  # noqa: UP045 (KFP reads Optional[...] for optional inputs)
):
    from onereward.config import from_kfp
    from onereward.generate.config import GenerateConfig
    from onereward.generate.stage import run
    from onereward.kfp_outputs import publish

    settings = from_kfp(GenerateConfig, locals())
    settings["policy"] = policy.path if policy is not None else ""  # the artifact, not a setting value
    run(subset.path, candidates.path, profile=profile, zoo=zoo.path, **settings)
    publish(candidates, report, metrics)
