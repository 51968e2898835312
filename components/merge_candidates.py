"""Components for the generate_candidates fan-out: plan the shards, then merge the shards' outputs."""

from typing import List  # noqa: UP035  (KFP reads typing.List annotations)

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import cpu_component


@cpu_component
def plan_shards(shards: int) -> List[str]:  # noqa: UP006
    """Shard specs "i/n" for a ParallelFor over generate_candidates (one per GPU worker).

    Args:
        shards: number of shards (>= 1).
    """
    if shards < 1:
        raise ValueError(f"generate_shards: expected >= 1, got {shards}")
    return [f"{i}/{shards}" for i in range(shards)]


@cpu_component
def merge_candidates(
    shards: Input[List[Artifact]],  # noqa: UP006
    candidates: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Merge the candidates artifacts of all shards into one (disjoint items, same parameters).

    Args:
        shards: candidates artifacts of the shards.
        candidates: merged candidates artifact.
        report: HTML grid of the merged candidates.
        metrics: summed counts and throughput.
    """
    from onereward.generate.stage import merge
    from onereward.kfp_outputs import publish

    merge([s.path for s in shards], candidates.path)
    publish(candidates, report, metrics)
