"""Component simulate_annotations: oracle annotators answering the tasks (embedded default, tests)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
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
    """Answer every task with the synthetic oracle through the Label Studio API (or offline).

    Args:
        project: input project reference.
        annotations: output annotations (Label Studio export format, or the project reference).
        report: HTML summary.
        metrics: counts of answered tasks and choices.
        noise: annotator noise.
        threshold: oracle score spread below which a dimension is "No clear difference".
        annotators: simulated annotators per task.
        seed: noise seed.
    """
    from onereward.annotate.stage import run_simulate
    from onereward.kfp_outputs import publish

    run_simulate(
        project.path, annotations.path, noise=noise, threshold=threshold, annotators=annotators, seed=seed
    )
    publish(annotations, report, metrics)
