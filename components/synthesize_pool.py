"""Component synthesize_pool: the synthetic source pool (procedural scenes, masks, prompts)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from onereward_kfp.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def synthesize_pool(
    pool: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    items: int = 48,
    seed: int = 0,
    image_size: int = 64,
    masks: bool = True,
):
    """Write a pool of synthetic items for every task (image_fill, image_extend, object_removal).

    Args:
        pool: output pool artifact (items.parquet, images/, masks/, targets/).
        report: HTML montage per task.
        metrics: n_items, counts per task, items_per_second.
        items: number of items.
        seed: scene seed (same seed, same bytes).
        image_size: side in pixels (multiple of 16).
        masks: write masks for fill/extend items (removal items always have masks).
    """
    from onereward.kfp_outputs import publish
    from onereward.synth.stage import run

    run(pool.path, items=items, seed=seed, image_size=image_size, masks=masks)
    publish(pool, report, metrics)
