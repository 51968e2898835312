"""Label Studio faults (issue 16): the server stopped during export and during import, slow answers,
401 and 500, injected by a proxy (faultproxy.py) in front of a real server. Expected: retries with
backoff, a clear one-line final error, nothing half-written, and a rerun that completes with no
duplicate tasks and no lost annotations. The real token never shows in an output or a log.

One server for the module (tests/labelstudio.py); short timeouts and backoff keep the waits short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from labelstudio import running_label_studio
from rkit import LEDGER, LOG_TEXTS, SECRETS, CliResult, find_secrets, refused, run_ok

from onereward.tables import read_table
from onereward.testing.local_label_studio import LocalLabelStudio

pytestmark = pytest.mark.labelstudio

W = dict[str, Path]
IMPORT_CHUNK = r"^/api/projects/\d+/import"
SNAPSHOT_DOWNLOAD = r"^/api/projects/\d+/exports/\d+/download"
ANNOTATE = r"^/api/tasks/\d+/annotations"
BACKOFF = 0.2  # --retry-backoff: waits of 0.2, 0.4, 0.8 s
RETRIES = 3


WRITTEN: list[Path] = []  # every folder the tests of this module wrote (searched for the token)
BUCKET = "rel-annotation"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (moto) on 127.0.0.1 with one bucket."""
    import boto3

    from onereward.testing.local_s3 import TEST_CREDENTIALS, running_s3

    with running_s3(tmp_path_factory.mktemp("rel-s3")) as endpoint:
        creds = {"aws_access_key_id": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                 "aws_secret_access_key": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "region_name": "us-east-1"}  # fmt: skip
        boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    """The module's server. It reads S3 buckets with its own credentials (as on the cluster); its
    SSRF guard is relaxed for the 127.0.0.1 S3 server, cloud metadata kept blocked (as in
    test_annotate_s3.py)."""
    from onereward.testing.local_s3 import TEST_CREDENTIALS

    env = {
        **TEST_CREDENTIALS,
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": "169.254.0.0/16",
    }
    with running_label_studio(tmp_path_factory.mktemp("rel-label-studio"), extra_env=env) as server:
        yield server
    _no_secret_anywhere([server.token, *SECRETS.values()], WRITTEN)


@pytest.fixture
def proxy(label_studio: LocalLabelStudio, tmp_path: Path) -> Iterator[FaultProxy]:
    WRITTEN.append(tmp_path)
    p = FaultProxy(label_studio.url, on_fault=lambda kind: LEDGER.fault(f"label studio {kind}")).start()
    yield p
    p.stop()
    if label_studio.process is None or label_studio.process.poll() is not None:
        label_studio.start()  # a test that stopped the server leaves it running for the next


def _retry_flags(timeout: float = 5.0) -> list[str]:
    return ["--max-retries", str(RETRIES), "--retry-backoff", str(BACKOFF), "--timeout", str(timeout)]


def _export(srv: LocalLabelStudio, proxy: FaultProxy, candidates: Path, out: Path, title: str, **kw) -> list:
    return ["export", "--candidates", candidates, "--out", out, "--label-studio-url", proxy.url,
            "--document-root", srv.document_root, "--project-title", title, "--chunk-size", "2",
            *_retry_flags(**kw)]  # fmt: skip


def _token(srv: LocalLabelStudio) -> dict[str, str]:
    return {"LABEL_STUDIO_API_KEY": srv.token}


def _keys(srv: LocalLabelStudio, title: str) -> list[str]:
    """The onereward key of every task in the projects titled ``<title> ...`` (read directly)."""
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    keys: list[str] = []
    for p in sdk.projects.list(page_size=100):
        if p.title.startswith(f"{title} "):
            keys += [t.data["onereward_key"] for t in sdk.tasks.list(project=p.id)]
    return keys


def _n_items(candidates: Path) -> int:
    return len(read_table(candidates / "items.parquet"))


def _metrics(res: CliResult) -> dict:
    return json.loads(res.stdout)


def _stop(srv: LocalLabelStudio) -> None:
    LEDGER.fault("label studio stopped")
    srv.stop()


def test_500_answers_are_retried_with_backoff_and_nothing_is_imported_twice(
    label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv, cand = label_studio, rel_world["candidates"]
    # two chunks answered 500 before the server sees them, then one stored by the server whose
    # answer is lost (500 after the work): the retry must find it stored and not send it again
    proxy.add(path=IMPORT_CHUNK, method="POST", action="status", status=500, times=2)
    proxy.add(path=IMPORT_CHUNK, method="POST", action="status", status=500, times=1, after=True)
    res = run_ok("export with 500s", _export(srv, proxy, cand, tmp_path / "p", "rel500"), env=_token(srv))
    assert "HTTP 500" in res.stderr and f"retry 1/{RETRIES}" in res.stderr
    assert _metrics(res)["n_new_tasks"] == _n_items(cand)
    keys = _keys(srv, "rel500")
    assert len(keys) == len(set(keys)) == _n_items(cand)  # every task once


def test_a_persistent_500_is_a_clear_error_after_backoff_and_the_rerun_completes(
    label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv, cand = label_studio, rel_world["candidates"]
    proxy.add(path=IMPORT_CHUNK, method="POST", action="status", status=500, times=float("inf"))
    out = tmp_path / "p"
    argv = _export(srv, proxy, cand, out, "rel500x")
    res = refused("export: persistent 500", None, argv, out=out, env=_token(srv),
                  names=["--label-studio-url", "HTTP 500", f"after {RETRIES + 1} attempts"])  # fmt: skip
    attempts = [e.t for e in proxy.requests(IMPORT_CHUNK, "POST")]
    assert len(attempts) == RETRIES + 1
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(g >= BACKOFF * 2**k * 0.9 for k, g in enumerate(gaps)), gaps  # exponential backoff
    assert res.stderr.count("retry ") == RETRIES
    proxy.rules.clear()
    again = run_ok("export rerun after 500", argv, env=_token(srv))
    assert _metrics(again)["n_tasks"] == _n_items(cand)
    keys = _keys(srv, "rel500x")
    assert len(keys) == len(set(keys)) == _n_items(cand)


@pytest.mark.parametrize("stage", ["export", "simulate-annotations", "import"])
def test_401_is_reported_at_once_naming_the_token_variable(
    stage: str, label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv = label_studio
    project = tmp_path / "project"
    run_ok("export for 401", _export(srv, proxy, rel_world["candidates"], project, "rel401"), env=_token(srv))
    proxy.log.clear()
    proxy.add(path=".*", action="status", status=401, times=float("inf"))
    out = tmp_path / "out"
    argv = {
        "export": _export(srv, proxy, rel_world["candidates"], out, "rel401"),
        "simulate-annotations": ["simulate-annotations", "--project", project, "--out", out, *_retry_flags()],
        "import": ["import", "--project", project, "--out", out, *_retry_flags()],
    }[stage]
    refused(f"{stage}: 401", None, argv, out=out, env=_token(srv), protect=[project],
            names=["LABEL_STUDIO_API_KEY", "401", proxy.url])  # fmt: skip
    assert len(proxy.requests(".*")) == 1  # a rejected token is not retried


def test_slow_answers_time_out_and_are_retried_and_a_server_that_stays_slow_is_a_clear_error(
    label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv, cand = label_studio, rel_world["candidates"]
    proxy.add(path=r"^/api/tasks", method="GET", action="delay", seconds=2.5, times=2)
    res = run_ok(
        "export slow", _export(srv, proxy, cand, tmp_path / "p", "relslow", timeout=1.0), env=_token(srv)
    )
    assert "ReadTimeout" in res.stderr
    keys = _keys(srv, "relslow")
    assert len(keys) == len(set(keys)) == _n_items(cand)
    # slow for good: the import gives up after its retries with one clear line
    run_ok("simulate for slow import", ["simulate-annotations", "--project", tmp_path / "p", "--out",
           tmp_path / "answers", *_retry_flags()], env=_token(srv))  # fmt: skip
    proxy.add(path=r"^/api/projects/\d+/exports", action="delay", seconds=2.5, times=float("inf"))
    out = tmp_path / "prefs"
    refused("import: slow for good", None,
            ["import", "--project", tmp_path / "answers", "--out", out, *_retry_flags(timeout=1.0)],
            names=["--label-studio-url", "not reachable", "ReadTimeout", f"after {RETRIES + 1} attempts"],
            out=out, env=_token(srv))  # fmt: skip


def test_server_stopped_during_export_then_rerun_adds_the_rest_once(
    label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv, cand = label_studio, rel_world["candidates"]
    n = _n_items(cand)
    # the server goes away right after it stored the second chunk
    proxy.add(
        path=IMPORT_CHUNK, method="POST", action="call", after=True, callback=lambda: _stop(srv), skip=1
    )
    out = tmp_path / "p"
    argv = _export(srv, proxy, cand, out, "reldown")
    refused("export: server stopped", None, argv, out=out, env=_token(srv),
            names=["--label-studio-url", "not reachable", f"after {RETRIES + 1} attempts"])  # fmt: skip
    srv.start()
    stored = len(_keys(srv, "reldown"))
    assert 0 < stored < n
    again = run_ok("export rerun after stop", argv, env=_token(srv))
    assert _metrics(again)["n_new_tasks"] == n - stored
    keys = _keys(srv, "reldown")
    assert len(keys) == len(set(keys)) == n


def test_server_stopped_during_import_then_rerun_loses_no_annotation(
    label_studio, proxy, rel_world: W, tmp_path: Path
) -> None:
    srv, cand = label_studio, rel_world["candidates"]
    project, answers = tmp_path / "project", tmp_path / "answers"
    run_ok("export for import", _export(srv, proxy, cand, project, "relimp"), env=_token(srv))
    # an annotation stored by the server whose answer is lost: simulate must not post it twice
    proxy.add(path=ANNOTATE, method="POST", action="status", status=500, after=True, times=1)
    sim = run_ok("simulate with a lost answer",
                 ["simulate-annotations", "--project", project, "--out", answers, "--annotators", "2", *_retry_flags()],
                 env=_token(srv))  # fmt: skip
    assert _metrics(sim)["n_annotations"] == 2 * _n_items(cand)
    reference = run_ok("import reference", ["import", "--project", answers, "--out", tmp_path / "ref", *_retry_flags()],
                       env=_token(srv))  # fmt: skip
    ref_pairs = read_table(tmp_path / "ref" / "pairs.parquet")
    assert _metrics(reference)["n_pairs"] == len(ref_pairs) > 0
    # the server is stopped while import downloads the export snapshot
    proxy.add(path=SNAPSHOT_DOWNLOAD, method="GET", action="call", callback=lambda: _stop(srv), times=1)
    out = tmp_path / "prefs"
    argv = ["import", "--project", answers, "--out", out, *_retry_flags()]
    refused("import: server stopped", None, argv, out=out, env=_token(srv), protect=[answers],
            names=["--label-studio-url", "not reachable"])  # fmt: skip
    srv.start()
    again = run_ok("import rerun after stop", argv, env=_token(srv))
    pairs = read_table(out / "pairs.parquet")
    key = lambda r: (r["item_id"], r["dimension"], r["winner"], r["loser"], r["n_annotators"])  # noqa: E731
    assert sorted(map(key, pairs)) == sorted(map(key, ref_pairs))  # no annotation lost or doubled
    assert _metrics(again)["n_pairs"] == len(ref_pairs)


def test_the_s3_route_uploads_with_the_s3_keys_and_writes_them_nowhere(
    label_studio, proxy, s3_endpoint: str, rel_world: W, tmp_path: Path
) -> None:
    """export uploads the task images to S3 with the sentinel keys of its environment (the S3
    server accepts them) and connects the bucket to the project; the keys are in no file or log
    (searched when the module ends, with the real token)."""
    import boto3

    srv, cand = label_studio, rel_world["candidates"]
    argv = ["export", "--candidates", cand, "--out", tmp_path / "p", "--label-studio-url", proxy.url,
            "--image-url-prefix", f"s3://{BUCKET}/rel", "--s3-endpoint", s3_endpoint, "--project-title", "rels3",
            *_retry_flags()]  # fmt: skip
    res = run_ok("export s3 route", argv, env={**_token(srv), "AWS_EC2_METADATA_DISABLED": "true"})
    m = _metrics(res)
    assert m["n_tasks"] == _n_items(cand) and m["image_upload"]["n_uploaded"] > 0
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=SECRETS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=SECRETS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")  # fmt: skip
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="rel/")["KeyCount"] == m["image_upload"]["n_uploaded"]


def _no_secret_anywhere(values: list[str], roots: list[Path]) -> None:
    """The real server token and the sentinel secrets are in no file the tests wrote and in no
    console output or log."""
    hits = find_secrets(values, [r for r in roots if r.exists()], LOG_TEXTS)
    assert not hits, hits
