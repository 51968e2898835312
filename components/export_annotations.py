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
    image_url_prefix: str = "",
    s3_endpoint: str = "",
    project_title: str = "onereward",
    project_version: str = "v1",
    predictions: str = "none",
    overlap: int = 1,
    chunk_size: int = 500,
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
        document_root: Label Studio local-files document root (Local Storage; a volume shared with the
            Label Studio pod).
        image_url_prefix: instead, the cluster route: an s3:// prefix (AWS S3 or MinIO) the step
            uploads the task images to (credentials from the optional Secret onereward-s3), or a
            gs:// prefix the artifact's overlays/ and candidates/ are synced to; the bucket is
            connected to the projects as import storage read with Label Studio's own credentials.
        s3_endpoint: S3 endpoint for MinIO or other S3-compatible stores ("" = AWS).
        project_title: project title (with the version, the idempotency key).
        project_version: project version.
        predictions: pre-annotations: none or oracle.
        overlap: annotators per task.
        chunk_size: tasks per import request.
    """
    from onereward.annotate.stage import run_export
    from onereward.kfp_outputs import publish

    run_export(
        candidates.path,
        project.path,
        label_studio_url=label_studio_url,
        document_root=document_root,
        image_url_prefix=image_url_prefix,
        s3_endpoint=s3_endpoint,
        project_title=project_title,
        project_version=project_version,
        predictions=predictions,
        overlap=overlap,
        chunk_size=chunk_size,
    )
    publish(project, report, metrics)
