"""Component import_annotations: validated, merged winner/loser pairs per (item, dimension).

Settings are the fields of :class:`onereward.annotate.config.ImportConfig`; none is a parameter
yet (the defaults apply).
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.annotate.config import ImportConfig
from onereward.config import documented
from onereward_kfp.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
@documented(
    ImportConfig,
    "Export annotations from Label Studio (or read the offline export), validate and merge them.",
    annotations="Project reference or offline annotations artifact.",
    preferences="Output preferences artifact (pairs.parquet + images).",
    report="Counts per task x dimension, agreement.",
    metrics="n_tasks, n_pairs, counts, agreement, n_invalid.",
)
def import_annotations(
    annotations: Input[Artifact],
    preferences: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    from onereward.annotate.config import ImportConfig
    from onereward.annotate.importer import run_import
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish

    run_import(annotations.path, preferences.path, **from_kfp(ImportConfig, locals()))
    publish(preferences, report, metrics)
