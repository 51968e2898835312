"""Component synthesize_pool: the synthetic source pool (procedural scenes, masks, prompts).

Parameters are the fields of :class:`onereward.synth.config.SynthConfig` (descriptions come from there).
"""

from kfp.dsl import HTML, Artifact, Metrics, Output

from onereward.synth.config import SynthConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import cpu_component


@cpu_component
@stage_doc(
    SynthConfig,
    "Write a pool of synthetic items for every task (image_fill, image_extend, object_removal).",
)
def synthesize_pool(
    pool: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    items: int = 48,
    seed: int = 0,
    image_size: int = 64,
    masks: bool = True,
):
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish
    from onereward.synth.config import SynthConfig
    from onereward.synth.stage import run

    run(pool.path, **from_kfp(SynthConfig, locals()))
    publish(pool, report, metrics)
