"""``onereward pipeline submit`` against a local stand-in for the KFP v2beta1 REST API.

No real KFP API server can run on the development machine (it needs Kubernetes, MySQL and an
object store), so :class:`FakeKfp` is a real HTTP server on 127.0.0.1 (``http.server`` in a thread)
that implements the endpoints ``onereward.cluster.submit`` calls, keeps pipelines, versions,
experiments and runs in memory, and records every request (method, path, query, headers, body).
The tests assert on those recorded requests: the uploaded body is the compiled spec, a second
submit of the same spec uploads nothing, the run carries the parameters and the version reference,
the Authorization header comes from the environment or the kubeconfig, and every failure is one
line naming the input, without the token.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from onereward.cli import main

TOKEN = "kfp-secret-token-5b1e0c"
REPO = Path(__file__).resolve().parents[1]
COMMITTED = str(REPO / "pipelines" / "compiled" / "train.yaml")  # any compiled spec will do for --spec


def required_params(name: str = "train") -> dict[str, str]:
    """A URI for every parameter of pipeline ``name`` without a default (they are artifact URIs)."""
    from onereward_kfp.pipelines.runner import pipeline_parameters

    return {k: f"s3://bucket/runs/{k}" for k, p in pipeline_parameters(name).items() if p.default is p.empty}


def param_args(values: dict[str, object]) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--param", f"{k}={v}")]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def multipart(self) -> dict[str, bytes]:
        """Parts of a multipart/form-data body by field name."""
        raw = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode() + self.body
        message = email.parser.BytesParser().parsebytes(raw)
        return {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.get_payload()
        }


@dataclass
class FakeKfp:
    """In-memory KFP v2beta1 API: only what ``onereward pipeline submit`` calls."""

    token: str | None = None  # when set, requests need "Authorization: Bearer <token>"
    refuse: int | None = None  # answer every request with this status (401 / 403)
    multi_user: bool = False
    fail_runs: bool = False  # POST /runs answers 500
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- routing -------------------------------------------------------------------------------
    def handle(self, req: Recorded) -> tuple[int, Any]:
        if self.refuse:
            return self.refuse, {"error_message": "access denied", "code": 7}
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error_message": "Unauthenticated", "code": 16}
        api = "/apis/v2beta1"
        if not req.path.startswith(api):
            return 404, {"error_message": "Not Found"}
        path, q = req.path[len(api) :], req.query
        if (req.method, path) == ("GET", "/healthz"):
            return 200, {"commit_sha": "abc", "tag_name": "2.5.0", "multi_user": self.multi_user}
        if (req.method, path) == ("GET", "/pipelines"):
            return 200, _page("pipelines", _filtered(self.pipelines.values(), q))
        if (req.method, path) == ("POST", "/pipelines"):
            body = req.json()
            pipeline = {**body, "pipeline_id": str(uuid.uuid4()), "created_at": "2026-01-01T00:00:00Z"}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if req.method == "GET" and path.startswith("/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[2]
            if pid not in self.pipelines:
                return 404, {"error_message": f"pipeline {pid} not found"}
            mine = [v for v in self.versions.values() if v["pipeline_id"] == pid]
            return 200, _page("pipeline_versions", _filtered(mine, q))
        if (req.method, path) == ("POST", "/pipelines/upload_version"):
            if q.get("pipelineid") not in self.pipelines:
                return 404, {"error_message": "pipeline not found"}
            spec = req.multipart()["uploadfile"]
            version = {
                "pipeline_id": q["pipelineid"],
                "pipeline_version_id": str(uuid.uuid4()),
                "name": q.get("name"),
                "display_name": q.get("display_name"),
                "description": q.get("description", ""),
                "spec_sha256": hashlib.sha256(spec).hexdigest(),
            }
            self.versions[version["pipeline_version_id"]] = version
            return 200, version
        if (req.method, path) == ("GET", "/experiments"):
            found = _filtered(self.experiments.values(), q)
            found = [e for e in found if e.get("namespace", "") == q.get("namespace", "")]
            return 200, _page("experiments", found)
        if (req.method, path) == ("POST", "/experiments"):
            exp = {"namespace": "", **req.json(), "experiment_id": str(uuid.uuid4())}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if (req.method, path) == ("POST", "/runs"):
            if self.fail_runs:
                return 500, {"error_message": "Internal error: failed to create a run\ndetails", "code": 13}
            body = req.json()
            ref = body.get("pipeline_version_reference", {})
            if ref.get("pipeline_version_id") not in self.versions:
                return 400, {"error_message": "unknown pipeline version"}
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error_message": f"no route {req.method} {req.path}"}


def _filtered(items, query: dict[str, str]) -> list[dict]:
    """Apply a v2beta1 ``filter`` (display_name EQUALS, the only predicate submit sends)."""
    items = list(items)
    if "filter" not in query:
        return items
    for pred in json.loads(query["filter"])["predicates"]:
        assert pred["operation"] in ("EQUALS", 1) and pred["key"] == "display_name", pred
        items = [i for i in items if i.get("display_name") == pred["stringValue"]]
    return items


def _page(key: str, items: list[dict]) -> dict:
    return {key: items, "total_size": len(items)} if items else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeKfp

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        parts = urlsplit(self.path)
        req = Recorded(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        self.server.fake.requests.append(req)  # type: ignore[attr-defined]
        status, payload = self.server.fake.handle(req)  # type: ignore[attr-defined]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def kfp_server():
    fake = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token, kubeconfig or image override leaks in from the developer's environment."""
    for var in (
        "KF_PIPELINES_TOKEN",
        "KF_PIPELINES_SA_TOKEN_PATH",
        "KUBECONFIG",
        "ONEREWARD_IMAGE",
        "ONEREWARD_GPU_IMAGE",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def _submit(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["pipeline", "submit", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _write_kubeconfig(path: Path, user: dict) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "work",
        "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example:6443"}}],
        "contexts": [
            {"name": "other", "context": {"cluster": "c", "user": "nobody"}},
            {"name": "work", "context": {"cluster": "c", "user": "me", "namespace": "team"}},
        ],
        "users": [{"name": "nobody", "user": {"token": "wrong-token"}}, {"name": "me", "user": user}],
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


# ---- the happy path ------------------------------------------------------------------------------


def test_submit_uploads_the_compiled_spec_once_and_starts_runs(
    kfp_server: FakeKfp, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    kfp_server.token = TOKEN
    args = [
        "train",
        "--host",
        kfp_server.url,
        "--experiment",
        "reward-sft",
        *param_args(required_params()),
    ]
    rc, out, err = _submit(capsys, *args, "--param", "seed=3")
    assert rc == 0, err

    # The upload body is exactly what `onereward pipeline compile` writes.
    assert main(["pipeline", "compile", "--out", str(tmp_path / "compiled")]) == 0
    capsys.readouterr()
    compiled = (tmp_path / "compiled" / "train.yaml").read_bytes()
    sha = hashlib.sha256(compiled).hexdigest()
    (upload,) = kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert upload.multipart()["uploadfile"] == compiled
    (pipeline,) = kfp_server.pipelines.values()
    assert pipeline["display_name"] == "train"  # the spec's pipelineInfo.name
    assert upload.query["pipelineid"] == pipeline["pipeline_id"]
    assert upload.query["name"] == upload.query["display_name"] == f"train-{sha[:12]}"
    assert sha in upload.query["description"]
    # The pipeline was created empty (JSON, no spec) before the version upload.
    (create,) = kfp_server.calls("POST", "/apis/v2beta1/pipelines")
    assert create.json()["display_name"] == "train" and "uploadfile" not in create.body.decode()

    (run_req,) = kfp_server.calls("POST", "/apis/v2beta1/runs")
    run = run_req.json()
    (version,) = kfp_server.versions.values()
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert run["runtime_config"]["parameters"] == {**required_params(), "seed": 3}  # typed
    assert run["service_account"] == "onereward-pipeline-runner"  # the account allowed to launch TrainJobs
    (exp,) = kfp_server.experiments.values()
    assert exp["display_name"] == "reward-sft" and run["experiment_id"] == exp["experiment_id"]
    (run_id,) = kfp_server.runs
    assert out.strip() == f"{kfp_server.url}/#/runs/details/{run_id}"  # stdout: only the URL
    assert "(uploaded)" in err

    # The same spec again: nothing new uploaded or created, a second run on the same version.
    rc, out2, err2 = _submit(capsys, *args)
    assert rc == 0, err2
    assert len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")) == 1
    assert len(kfp_server.calls("POST", "/apis/v2beta1/pipelines")) == 1
    assert len(kfp_server.calls("POST", "/apis/v2beta1/experiments")) == 1
    second = kfp_server.calls("POST", "/apis/v2beta1/runs")[-1].json()
    assert second["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    assert second["runtime_config"]["parameters"] == required_params()
    assert (
        "(reused)" in err2 and out2.strip() == f"{kfp_server.url}/#/runs/details/{list(kfp_server.runs)[-1]}"
    )

    # Every request carried the token; no output ever shows it.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in kfp_server.requests)
    assert TOKEN not in out + err + out2 + err2


def test_a_changed_spec_uploads_a_new_version_and_an_explicit_name_is_not_reused_for_it(
    kfp_server: FakeKfp, capsys, tmp_path
):
    spec = tmp_path / "train.yaml"
    spec.write_bytes(Path(COMMITTED).read_bytes())
    base = [
        "train",
        "--host",
        kfp_server.url,
        "--spec",
        str(spec),
        *param_args(required_params()),
    ]
    assert _submit(capsys, *base)[0] == 0
    spec.write_bytes(spec.read_bytes() + b"# changed\n")
    assert _submit(capsys, *base)[0] == 0
    uploads = kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert len(uploads) == 2 and uploads[0].query["name"] != uploads[1].query["name"]
    assert uploads[1].multipart()["uploadfile"] == spec.read_bytes()
    assert len(kfp_server.pipelines) == 1  # versions of one pipeline

    assert _submit(capsys, *base, "--version-name", "release-1")[0] == 0
    spec.write_bytes(spec.read_bytes() + b"# changed again\n")
    rc, _, err = _submit(capsys, *base, "--version-name", "release-1")
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("onereward pipeline: error: --version-name release-1:")
    assert len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")) == 3


def test_multi_user_server_needs_a_namespace_and_gets_it(kfp_server: FakeKfp, capsys):
    kfp_server.multi_user = True
    base = ["train", "--host", kfp_server.url, *param_args(required_params())]
    base += ["--spec", COMMITTED]
    rc, _, err = _submit(capsys, *base)
    assert rc == 2 and "--namespace: the KFP server" in err.strip().splitlines()[-1]
    assert not kfp_server.calls("POST", "/apis/v2beta1/runs")

    rc, out, err = _submit(
        capsys, *base, "--namespace", "team-a", "--ui-host", "https://kf.example/_/pipeline"
    )
    assert rc == 0, err
    assert kfp_server.calls("GET", "/apis/v2beta1/experiments")[-1].query["namespace"] == "team-a"
    assert kfp_server.calls("POST", "/apis/v2beta1/experiments")[-1].json()["namespace"] == "team-a"
    assert kfp_server.calls("POST", "/apis/v2beta1/pipelines")[-1].json()["namespace"] == "team-a"
    assert out.strip().startswith("https://kf.example/_/pipeline/#/runs/details/")


# ---- tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["env", "file", "kubeconfig", "kubeconfig-file", "none"])
def test_authorization_header_comes_from_env_file_or_kubeconfig(
    source: str, kfp_server: FakeKfp, capsys, monkeypatch, tmp_path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    if source == "env":
        monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    elif source == "file":
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    elif source == "kubeconfig":
        monkeypatch.setenv("KUBECONFIG", str(_write_kubeconfig(tmp_path / "kubeconfig", {"token": TOKEN})))
    elif source == "kubeconfig-file":  # ~/.kube/config with a tokenFile user
        kube = Path.home() / ".kube"
        kube.mkdir()
        _write_kubeconfig(kube / "config", {"tokenFile": str(token_file)})
    rc, out, err = _submit(
        capsys, "train", "--host", kfp_server.url, "--spec", COMMITTED,
        *param_args(required_params()),
    )  # fmt: skip
    assert rc == 0, err
    sent = {r.headers.get("authorization") for r in kfp_server.requests}
    assert sent == ({None} if source == "none" else {f"Bearer {TOKEN}"})
    assert TOKEN not in out + err


def test_kubeconfig_user_without_a_static_token_sends_none(
    kfp_server: FakeKfp, capsys, monkeypatch, tmp_path
):
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "false"}}
    monkeypatch.setenv(
        "KUBECONFIG", f"{tmp_path / 'missing'}:{_write_kubeconfig(tmp_path / 'kc', exec_user)}"
    )
    rc, _, err = _submit(
        capsys, "train", "--host", kfp_server.url, "--spec", COMMITTED,
        *param_args(required_params()),
    )  # fmt: skip
    assert rc == 0, err
    assert {r.headers.get("authorization") for r in kfp_server.requests} == {None}


# ---- one-line errors -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad-host", "--host http://127.0.0.1:{port}: cannot reach the KFP API server (ConnectError"),
        ("not-a-url", "--host 127.0.0.1:8888: expected an http:// or https:// URL"),
        (
            "401",
            "was refused (401 Unauthorized) with the token from $KF_PIPELINES_TOKEN; set KF_PIPELINES_TOKEN",
        ),
        ("403", "was refused (403 Forbidden) with the token from $KF_PIPELINES_TOKEN"),
        ("404", "/apis/v2beta1/healthz not found (404); expected the KFP API endpoint"),
        ("unknown-pipeline", "pipeline: unknown pipeline 'nope'; expected one of"),
        ("param-no-equals", "--param: expected key=value, got 'seed'"),
        ("param-type", "--param seed: expected int, got 'many'"),
        ("param-unknown", "--param colour: pipeline 'train' has no parameter 'colour'"),
        ("param-missing", "pipeline 'train' needs it (no default)"),
        ("server-500", "KFP API POST /apis/v2beta1/runs: 500 Internal error: failed to create a run"),
    ],
)
def test_errors_are_one_line_naming_the_input(
    case: str, expected: str, kfp_server: FakeKfp, capsys, monkeypatch
):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    host, name = kfp_server.url, "train"
    params = [*param_args(required_params())]
    port = _free_port()
    if case == "bad-host":
        host = f"http://127.0.0.1:{port}"
    elif case == "not-a-url":
        host = "127.0.0.1:8888"
    elif case in ("401", "403"):
        kfp_server.refuse = int(case)
    elif case == "404":
        host = f"{kfp_server.url}/wrong-prefix"
    elif case == "unknown-pipeline":
        name = "nope"
        params = []
    elif case == "param-no-equals":
        params += ["--param", "seed"]
    elif case == "param-type":
        params += ["--param", "seed=many"]
    elif case == "param-unknown":
        params += ["--param", "colour=red"]
    elif case == "param-missing":
        params = []
    elif case == "server-500":
        kfp_server.fail_runs = True
    rc, out, err = _submit(capsys, name, "--host", host, "--spec", COMMITTED, *params)
    line = _error_line(err)
    assert rc == (1 if case == "server-500" else 2)
    assert line.startswith("onereward pipeline"), line
    assert expected.format(port=port) in line, line
    assert out == "" and TOKEN not in err
    if case.startswith("param") or case == "unknown-pipeline":
        assert kfp_server.requests == []  # refused before talking to the server


@pytest.mark.parametrize(
    "command",
    ["pipeline submit", "cluster launch-trainjob", "cluster delete-trainjobs", "cluster validate-trainjob"],
)
def test_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith(f"usage: onereward {command}") and len(out.splitlines()) > 5
