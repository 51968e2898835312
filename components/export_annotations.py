"""Component export_annotations: Label Studio project + tasks for best/worst per dimension.

Parameters are fields of :class:`onereward.annotate.config.ExportConfig` (descriptions come from
there). The API token comes from the LABEL_STUDIO_API_KEY environment variable (a Kubernetes
Secret on the cluster), never from a parameter.
"""

from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward.annotate.config import ExportConfig
from onereward_kfp.components import stage_doc
from onereward_kfp.components.images import cpu_component


@cpu_component
@stage_doc(
    ExportConfig,
    "Create or reuse the Label Studio projects and import one task per item (idempotent).\n\n"
    "The API token comes from the LABEL_STUDIO_API_KEY environment variable (a Kubernetes Secret on\n"
    "the cluster), never from a parameter. With an empty URL the tasks are written offline.",
)
def export_annotations(
    candidates: Input[Artifact],
    project: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    label_studio_url: str = "",
    offline: bool = False,
    document_root: str = "",
    image_url_prefix: str = "",
    s3_endpoint: str = "",
    project_title: str = "onereward",
    project_version: str = "v1",
    predictions: str = "none",
    overlap: int = 1,
    chunk_size: int = 500,
):
    from onereward.annotate.config import ExportConfig
    from onereward.annotate.export import run_export
    from onereward.config import from_kfp
    from onereward.kfp_outputs import publish

    run_export(candidates.path, project.path, **from_kfp(ExportConfig, locals()))
    publish(project, report, metrics)
