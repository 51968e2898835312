"""The cluster route of export_annotations: task images in S3 (a real S3 server, moto, on 127.0.0.1)
served to annotators by a real Label Studio through a presigned import storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from annotate_helpers import synthetic_candidates
from labelstudio import running_label_studio

from onereward.annotate.export import run_export
from onereward.annotate.importer import run_import
from onereward.annotate.simulate import run_simulate
from onereward.artifacts import ArtifactError
from onereward.errors import InputError
from onereward.testing.local_label_studio import LocalLabelStudio
from onereward.testing.local_s3 import TEST_CREDENTIALS, running_s3

pytestmark = pytest.mark.labelstudio

BUCKET = "onereward-annotation"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_s3(tmp_path_factory.mktemp("s3")) as endpoint:
        boto3.client("s3", endpoint_url=endpoint, **_boto_kwargs()).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[LocalLabelStudio]:
    # Label Studio reads the bucket with its own credentials (as on the cluster). Its SSRF guard
    # blocks private and loopback addresses by default; an in-cluster MinIO (10.x) and this test's
    # 127.0.0.1 server need the default list off, keeping the cloud metadata range blocked
    # (manifests/label-studio/values.yaml sets the same).
    env = {
        **TEST_CREDENTIALS,
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": "169.254.0.0/16",
    }
    with running_label_studio(tmp_path_factory.mktemp("label-studio-s3"), extra_env=env) as server:
        yield server


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_candidates(tmp_path_factory.mktemp("annotate-s3"), n_items=6, seed=5)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in TEST_CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _boto_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def _keys(endpoint: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_kwargs())
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_export_uploads_images_and_label_studio_serves_them_from_s3(
    label_studio: LocalLabelStudio, s3_endpoint: str, candidates: Path, tmp_path: Path, aws_env: None
) -> None:
    srv = label_studio
    kw = dict(
        label_studio_url=srv.url,
        image_url_prefix=f"s3://{BUCKET}/run1",
        s3_endpoint=s3_endpoint,
        project_title="s3-route",
    )
    m = run_export(str(candidates), str(tmp_path / "project"), **kw)
    tasks = json.loads((tmp_path / "project" / "tasks.json").read_text())
    images = {v for t in tasks for v in t["data"].values() if isinstance(v, str) and v.startswith("s3://")}
    objects = _keys(s3_endpoint, "run1/")
    # One object per image shown (6 overlays + 24 candidates), at content-addressed keys.
    assert m["n_tasks"] == 6 and m["image_upload"]["n_uploaded"] == len(images) == len(objects) == 30
    assert {f"s3://{BUCKET}/{k}" for k in objects} == images
    t0 = tasks[0]["data"]
    rel = t0["source_overlay"].split(f"s3://{BUCKET}/run1/", 1)[1]
    assert rel.startswith(t0["item_id"] + "-") and rel.endswith(f"overlays/{t0['item_id']}.png")
    overlay_bytes = (tmp_path / "project" / "overlays" / f"{t0['item_id']}.png").read_bytes()
    assert objects[f"run1/{rel}"] == overlay_bytes

    # Label Studio resolves the s3:// URL through the connected storage to a presigned link on
    # the S3 server, which hands out the exact bytes.
    h = httpx.Client(base_url=srv.url, headers={"Authorization": f"Token {srv.token}"}, timeout=30)
    served = h.get(f"/api/tasks/{tasks[0]['id']}/").json()["data"]["source_overlay"]
    assert served.startswith(f"/tasks/{tasks[0]['id']}/resolve/")
    redirect = h.get(served)
    assert redirect.status_code in (302, 303)
    location = redirect.headers["location"]
    assert location.startswith(s3_endpoint + f"/{BUCKET}/run1/") and "X-Amz-Signature=" in location
    assert httpx.get(location, timeout=30).content == overlay_bytes
    # No credential of either side is in the artifact.
    text = "\n".join(
        p.read_bytes().decode("latin-1") for p in (tmp_path / "project").rglob("*") if p.is_file()
    )
    assert TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in text and srv.token not in text

    # A rerun uploads nothing and adds no task; the annotation round trip works on these tasks.
    again = run_export(str(candidates), str(tmp_path / "project2"), **kw)
    assert again["image_upload"] == {**again["image_upload"], "n_uploaded": 0, "n_present": 30}
    assert again["n_new_tasks"] == 0
    run_simulate(str(tmp_path / "project"), str(tmp_path / "answers"), annotators=1, noise=0.0, threshold=0.0)
    prefs = run_import(str(tmp_path / "answers"), str(tmp_path / "prefs"))
    assert prefs["n_tasks"] == 6 and prefs["n_pairs"] > 0 and prefs["n_invalid"] == 0

    # An object replaced behind our back is never overwritten: a clear error, nothing written.
    boto3.client("s3", endpoint_url=s3_endpoint, **_boto_kwargs()).put_object(
        Bucket=BUCKET, Key=f"run1/{rel}", Body=b"not the overlay"
    )
    with pytest.raises(ArtifactError, match=r"holds other bytes than .*never replaced"):
        run_export(str(candidates), str(tmp_path / "project3"), **kw)
    assert not (tmp_path / "project3").exists()


def test_s3_bad_input_is_a_clear_error(
    label_studio: LocalLabelStudio,
    s3_endpoint: str,
    candidates: Path,
    tmp_path: Path,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kw = dict(label_studio_url=label_studio.url, s3_endpoint=s3_endpoint, project_title="s3-errors")
    with pytest.raises(InputError, match="bucket 'no-such-bucket' does not exist"):
        run_export(str(candidates), str(tmp_path / "a"), image_url_prefix="s3://no-such-bucket/x", **kw)
    with pytest.raises(InputError, match="expected s3://<bucket>/<prefix>"):
        run_export(str(candidates), str(tmp_path / "b"), image_url_prefix="s3:///nobucket", **kw)
    # No credentials anywhere (environment, files, instance metadata): named before any work.
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(InputError, match="AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: not set"):
        run_export(str(candidates), str(tmp_path / "c"), image_url_prefix=f"s3://{BUCKET}/run2", **kw)
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))
