"""Component simulate_annotations: oracle annotators answering the tasks (embedded default, tests).

Parameters are the fields of :class:`onereward.annotate.config.SimulateConfig` (descriptions come
from there).
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.annotate.config import SimulateConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import cpu_component


@cpu_component
@stage_doc(
    SimulateConfig,
    "Answer every task with the synthetic oracle through the Label Studio API (or offline).",
)
def simulate_annotations(
    project: Input[Artifact],
    annotations: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    noise: float = 0.0,
    threshold: float = 0.02,
    annotators: int = 1,
    seed: int = 0,
):
    from onereward.annotate.config import SimulateConfig
    from onereward.annotate.simulate import run_simulate
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish

    run_simulate(project.path, annotations.path, **from_kfp(SimulateConfig, locals()))
    publish(annotations, report, metrics)
