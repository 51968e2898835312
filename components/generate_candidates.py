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
    num_candidates: int = 4,
    seed: int = 0,
    shard: str = "0/1",
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
    """
    from onereward.generate.stage import run
    from onereward.kfp_outputs import publish

    run(
        subset.path,
        candidates.path,
        profile=profile,
        zoo=zoo.path,
        family=family,
        num_candidates=num_candidates,
        seed=seed,
        shard=shard,
    )
    publish(candidates, report, metrics)
