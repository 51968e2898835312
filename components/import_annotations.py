"""Component import_annotations: validated, merged winner/loser pairs per (item, dimension).

Settings are the fields of :class:`onereward.annotate.config.ImportConfig`; none is a parameter
yet (the defaults apply).
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.annotate.config import ImportConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import cpu_component


@cpu_component
@stage_doc(
    ImportConfig,
    "Export annotations from Label Studio (or read the offline export), validate and merge them.",
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
