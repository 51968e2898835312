"""Component select_subset: CLIP embeddings + K-means representative subset per task.

Parameters are the fields of :class:`onereward.select.config.SelectConfig` (descriptions come from
there); a profile setting left at -1 (numbers) or "" (text) takes the profile's value.
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.select.config import SelectConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import gpu_component


@gpu_component
@stage_doc(
    SelectConfig,
    "Select a diverse, representative subset of the pool (paper section 5.1).",
)
def select_subset(
    pool: Input[Artifact],
    zoo: Input[Artifact],
    subset: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    profile: str = "tiny",
    size: int = 24,
    per_task: bool = True,
    backend: str = "auto",
    cluster_device: str = "auto",
    seed: int = 0,
    max_bad_fraction: float = 0.2,
    per_cluster: int = 1,
    dedup_threshold: float = -1.0,
    min_image_size: int = 32,
    mask_threshold: int = 128,
    assign_tasks: str = "image_extend",
    extend_ratios: str = "0.25,0.5",
    extend_sides: str = "left,right,top,bottom,all",
    fill_kinds: str = "box,brush",
    fill_area_min: float = 0.1,
    fill_area_max: float = 0.3,
    batch_size: int = -1,
    num_workers: int = -1,
):
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.select.config import SelectConfig
    from onereward.select.stage import run

    run(pool.path, subset.path, profile=profile, zoo=zoo.path, **from_kfp(SelectConfig, locals()))
    publish(subset, report, metrics)
