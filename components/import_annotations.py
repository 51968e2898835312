"""Component import_annotations: validated, merged winner/loser pairs per (item, dimension)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def import_annotations(
    annotations: Input[Artifact],
    preferences: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Export annotations from Label Studio (or read the offline export), validate and merge them.

    Args:
        annotations: project reference or offline annotations artifact.
        preferences: output preferences artifact (pairs.parquet + images).
        report: counts per task x dimension, agreement.
        metrics: n_tasks, n_pairs, counts, agreement, n_invalid.
    """
    from onereward.annotate.stage import run_import
    from onereward.kfp_outputs import publish

    run_import(annotations.path, preferences.path)
    publish(preferences, report, metrics)
