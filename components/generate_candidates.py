"""Component generate_candidates: N randomised candidates per item (steps, CFG, negatives, strength)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE)
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
):
    """Generate candidates with randomly sampled inference parameters (paper section 4.2).

    Args:
        subset: input subset artifact.
        zoo: the profile's models (generator).
        candidates: output candidates artifact (table + PNGs + sampled parameters).
        report: HTML grid (source | mask | candidates with parameters).
        metrics: n_items, n_candidates, images_per_second, realised parameter ranges.
        profile: profile name.
        family: generator family, flux_fill or sd_inpaint.
        num_candidates: candidates per item.
        seed: base seed of the parameter sampling and noises.
        shard: "i/n" to generate only shard i of n (ParallelFor fan-out).
        min_steps: fewest inference steps sampled.
        max_steps: most inference steps sampled.
        cfg_min: lowest true-CFG scale sampled.
        cfg_max: highest true-CFG scale sampled.
        strength_min: lowest initial noise strength sampled (1 = pure noise).
        strength_max: highest initial noise strength sampled.
        negative_prompts: ";"-separated negative prompts to sample from ("none" = no negative).
        guidance: distilled guidance input (FLUX).
        feather: paste-back feather radius in pixels (0 = hard paste).

    -1 (or "" for negative_prompts) means the profile's ``generate`` value.
    """
    from onereward.generate.stage import run
    from onereward.kfp_outputs import publish

    def profile_default(value):
        return None if value in (-1, "") else value

    run(
        subset.path,
        candidates.path,
        profile=profile,
        zoo=zoo.path,
        family=family,
        num_candidates=profile_default(num_candidates),
        seed=seed,
        shard=shard,
        min_steps=profile_default(min_steps),
        max_steps=profile_default(max_steps),
        cfg_min=profile_default(cfg_min),
        cfg_max=profile_default(cfg_max),
        strength_min=profile_default(strength_min),
        strength_max=profile_default(strength_max),
        negative_prompts=profile_default(negative_prompts),
        guidance=profile_default(guidance),
        feather=profile_default(feather),
    )
    publish(candidates, report, metrics)
