"""Component export_annotations: Label Studio project + tasks for best/worst per dimension."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def export_annotations(
    candidates: Input[Artifact],
    project: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    label_studio_url: str = "",
    document_root: str = "",
    project_title: str = "onereward",
    project_version: str = "v1",
    predictions: str = "none",
):
    """Create or reuse the Label Studio project and import one task per item (idempotent).

    The API token comes from the LABEL_STUDIO_API_KEY environment variable (a Kubernetes Secret on
    the cluster), never from a parameter. With an empty URL the tasks are written offline.

    Args:
        candidates: input candidates artifact.
        project: output project reference (URL, project id, task-id map; no token).
        report: HTML summary.
        metrics: n_tasks and counts.
        label_studio_url: Label Studio base URL ("" = offline, for the embedded demo).
        document_root: Label Studio local-files document root (Local Storage).
        project_title: project title (with the version, the idempotency key).
        project_version: project version.
        predictions: pre-annotations: none or oracle.
    """
    from onereward.annotate.stage import run_export
    from onereward.kfp_outputs import publish

    run_export(
        candidates.path,
        project.path,
        label_studio_url=label_studio_url,
        document_root=document_root,
        project_title=project_title,
        project_version=project_version,
        predictions=predictions,
    )
    publish(project, report, metrics)
