"""Task images in an S3-compatible bucket (AWS S3, MinIO): the cluster route of export_annotations.

export_annotations uploads every image a task shows (overlay and candidates) under the
``--image-url-prefix`` with the same content-addressed layout as Local Storage
(``<item_id>-<candidate-set hash>/<path in the artifact>``), then connects the bucket to each
project as a presigned import storage. Label Studio turns each ``s3://`` URL into a short-lived
presigned link with its own credentials.

Credentials come from boto3's default chain only: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in the environment (on the cluster, the optional Kubernetes Secret
``onereward-s3`` mapped by the pipeline), a profile, or the pod's role. They are never a
parameter, an artifact field or a log line.

Uploads are idempotent and never replace: an object already at its key with the same bytes is
kept (a rerun uploads nothing); one with different bytes is an :class:`ArtifactError`, because
tasks may already be annotated on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from onereward.artifacts import ArtifactError
from onereward.errors import InputError
from onereward.log import Throughput, get_logger

log = get_logger("annotate.cloud_storage")

CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def split_bucket_url(url: str, what: str = "--image-url-prefix") -> tuple[str, str, str]:
    """``(scheme, bucket, key prefix without slashes at the ends)`` of ``s3://bucket/prefix``."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or scheme not in ("s3", "gs") or not bucket:
        raise InputError(f"{what}: expected s3://<bucket>/<prefix> or gs://<bucket>/<prefix>, got {url!r}")
    return scheme, bucket, prefix.strip("/")


def s3_client(endpoint: str | None) -> Any:
    """A boto3 S3 client for AWS (``endpoint`` None) or an S3-compatible store such as MinIO.

    Fails with an :class:`InputError` naming the variables when no credentials are found.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise InputError(
            f"{' / '.join(CREDENTIAL_ENVS)}: not set, and boto3 found no other credentials; uploading the task "
            "images to S3 needs them (on the cluster: the Secret onereward-s3, see manifests/secrets/onereward-s3.template.yaml)"
        )
    # Path-style addressing works for MinIO and AWS alike; retries cover brief outages.
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint or None, config=config)


def _s3_error(e: Exception, bucket: str, endpoint: str | None) -> InputError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")
    if isinstance(e, NoCredentialsError):
        return InputError(f"{' / '.join(CREDENTIAL_ENVS)}: no S3 credentials found for {where}")
    if isinstance(e, EndpointConnectionError):
        return InputError(
            f"--s3-endpoint: cannot reach {where} ({e}); check the endpoint URL and the network"
        )
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "?")
        if code in ("NoSuchBucket", "404"):
            return InputError(
                f"--image-url-prefix: bucket {bucket!r} does not exist at {where}; create it first"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return InputError(
                f"{' / '.join(CREDENTIAL_ENVS)}: {where} refused the credentials ({code}); they need "
                "s3:ListBucket, s3:GetObject and s3:PutObject on the prefix"
            )
        return InputError(f"--image-url-prefix: {where} answered {code}: {e}")
    return InputError(f"--image-url-prefix: {where}: {type(e).__name__}: {e}")


def upload_images(
    files: Iterable[tuple[str, Path]],
    prefix_url: str,
    *,
    endpoint: str | None = None,
    workers: int = 8,
) -> dict[str, float | int]:
    """Upload ``(key below the prefix, local file)`` pairs under ``prefix_url`` (``s3://bucket/prefix``).

    Lists the prefix once, skips objects that already hold the same bytes (ETag = MD5 for
    single-part uploads; otherwise the object is read back and compared) and refuses to replace
    different bytes. Returns ``{"n_uploaded", "n_present", "seconds", "images_per_second"}``.
    """
    scheme, bucket, prefix = split_bucket_url(prefix_url)
    if scheme != "s3":
        raise InputError(f"--image-url-prefix: uploads go to s3:// (AWS S3, MinIO), got {prefix_url!r}")
    from botocore.exceptions import BotoCoreError, ClientError

    todo = sorted(set(files))
    s3 = s3_client(endpoint)
    key_of = {rel: f"{prefix}/{rel}" if prefix else rel for rel, _ in todo}
    present = _present_objects(s3, bucket, prefix, endpoint)

    def one(item: tuple[str, Path]) -> bool:
        rel, src = item
        return _upload_one(s3, bucket, key_of[rel], src, present.get(key_of[rel]))

    n_uploaded = 0
    with Throughput("images") as tp, ThreadPoolExecutor(max(1, workers)) as pool:
        try:
            for uploaded in tqdm(
                pool.map(one, todo), total=len(todo), desc="upload images", unit="img", leave=False
            ):
                n_uploaded += int(uploaded)
                tp.add(1)
        except (ClientError, BotoCoreError) as e:
            raise _s3_error(e, bucket, endpoint) from None
    log.info(
        "task images in s3://%s/%s: %d uploaded, %d already there (%s)",
        bucket,
        prefix,
        n_uploaded,
        len(todo) - n_uploaded,
        tp,
    )
    return {
        "n_uploaded": n_uploaded,
        "n_present": len(todo) - n_uploaded,
        "seconds": round(tp.elapsed, 3),
        "images_per_second": round(tp.rate, 1),
    }


def _present_objects(s3: Any, bucket: str, prefix: str, endpoint: str | None) -> dict[str, tuple[int, str]]:
    """``{key: (size, ETag)}`` of the objects under ``prefix`` (one listing, paged)."""
    from botocore.exceptions import BotoCoreError, ClientError

    present: dict[str, tuple[int, str]] = {}
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
        )
        for page in pages:
            for obj in page.get("Contents", []):
                present[obj["Key"]] = (int(obj["Size"]), str(obj["ETag"]).strip('"'))
    except (ClientError, BotoCoreError) as e:
        raise _s3_error(e, bucket, endpoint) from None
    return present


def _upload_one(s3: Any, bucket: str, key: str, src: Path, present: tuple[int, str] | None) -> bool:
    """Upload ``src`` to ``key`` unless ``present`` (size, ETag) says it holds these bytes already;
    True when uploaded. Different bytes at the key are never replaced (an ArtifactError)."""
    data = src.read_bytes()
    if present is not None:
        size, etag = present
        same = size == len(data) and (
            etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
            or s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        )
        if same:
            return False
        raise ArtifactError(
            f"--image-url-prefix: s3://{bucket}/{key} holds other bytes than {src}; published images are "
            "never replaced (tasks may already be annotated on them). Use a new --project-version."
        )
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")
    return True
