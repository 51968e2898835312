"""Component select_subset: CLIP embeddings + K-means representative subset per task."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE)
def select_subset(
    pool: Input[Artifact],
    zoo: Input[Artifact],
    subset: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    size: int = 24,
    profile: str = "tiny",
    per_task: bool = True,
    backend: str = "auto",
    seed: int = 0,
    max_bad_fraction: float = 0.2,
):
    """Select a diverse, representative subset of the pool (paper section 5.1).

    Args:
        pool: input pool artifact (synthetic or imported folder).
        zoo: the profile's models (CLIP).
        subset: output subset artifact (items + cluster ids + embeddings).
        report: cluster-size histogram, montage of representatives, coverage.
        metrics: n_pool, n_bad, n_selected, coverage_selected, coverage_random, images_per_second.
        size: target subset size.
        profile: profile name.
        per_task: cluster each task separately (else globally).
        backend: auto, sklearn or faiss.
        seed: clustering / mask seed.
        max_bad_fraction: fail when more than this fraction of the pool is bad.
    """
    from onereward.kfp_outputs import publish
    from onereward.select.stage import run

    run(
        pool.path,
        subset.path,
        size=size,
        profile=profile,
        zoo=zoo.path,
        per_task=per_task,
        backend=backend,
        seed=seed,
        max_bad_fraction=max_bad_fraction,
    )
    publish(subset, report, metrics)
