"""TrainJob documents and the TrainJob launcher against a local stand-in for the Kubernetes API.

No Kubernetes API server (nor kind, k3s) can run on the development machine, so :class:`FakeKube`
is a real HTTP server on 127.0.0.1 (``http.server`` in a thread) that implements the endpoints the
launcher uses through the ``kubernetes`` client: trainjobs create / get / list / watch (a chunked
stream of watch events) / delete, pods list, get and log (a chunked stream of lines). Each job
follows a scripted list of condition changes, delivered on the watch; its pods appear when it is
created. Every request is recorded (method, path, query, headers, body) and the tests assert on them:
create, reattach on retry (no second POST), failure propagation, cancel (DELETE issued on SIGTERM),
the exit-handler cleanup, and the document's validity against the vendored CRD schema.

(No ``from __future__ import annotations`` here: KFP reads the test pipeline's parameter types.)
"""

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from onereward.artifacts import ArtifactWriter, read_artifact
from onereward.cli import main
from onereward.cluster.config import TrainJobConfig
from onereward.cluster.launch import StageCommand, launch_stage, plan_stage
from onereward.cluster.trainjob import (
    ANNOTATION_SPEC,
    VENDORED_CRD,
    ClusterApiError,
    TrainJobApi,
    build_trainjob,
    trainjob_errors,
    trainjob_name,
)
from onereward.errors import InputError

TOKEN = "kube-secret-token-93fa"
TJ = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs"
REPO = Path(__file__).resolve().parents[1]


# ---- the fake Kubernetes API ---------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Script:
    """What a created job does: condition changes delivered one per watch event, then either the
    watch ends or (``hang``) it stays open with nothing to say, like a long training run."""

    transitions: list[tuple[str, str, str]] = field(
        default_factory=lambda: [("Complete", "JobsCompleted", "done")]
    )
    hang: bool = False
    nodes: int = 2
    log_lines: int = 3
    on_complete: Any = None  # called with the job (the "nodes" write their output)


@dataclass
class FakeKube:
    url: str = ""
    token: str | None = None
    refuse: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, "trainjobs"|"pods") -> status
    script: Script = field(default_factory=Script)
    jobs: dict[str, dict] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    watching: threading.Event = field(default_factory=threading.Event)
    version: int = 100

    def calls(self, method: str, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def trainjob_calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and "/trainjobs" in r.path]

    def bump(self, job: dict) -> None:
        self.version += 1
        job["metadata"]["resourceVersion"] = str(self.version)

    def add_job(self, doc: dict, phase: str | None = None, reason: str = "", message: str = "") -> dict:
        job = copy.deepcopy(doc)
        job["metadata"].update(uid=f"uid-{len(self.jobs)}", creationTimestamp="2026-01-01T00:00:00Z")
        job["status"] = {"conditions": [_condition(phase, reason, message)]} if phase else {}
        job["_pending"] = list(self.script.transitions)
        self.bump(job)
        self.jobs[job["metadata"]["name"]] = job
        return job

    def advance(self, job: dict) -> None:
        phase, reason, message = job["_pending"].pop(0)
        job["status"] = {"conditions": [_condition(phase, reason, message)]}
        self.bump(job)
        if phase == "Complete" and self.script.on_complete:
            self.script.on_complete(job)


def _condition(phase: str, reason: str, message: str) -> dict:
    return {"type": phase, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:01Z"}  # fmt: skip


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routing ---------------------------------------------------------------------------------
    def _serve(self) -> None:
        fake: FakeKube = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        parts = urlsplit(self.path)
        req = Recorded(
            self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
            {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length) if length else b"",
        )  # fmt: skip
        fake.requests.append(req)
        if fake.token and req.headers.get("authorization") != f"Bearer {fake.token}":
            return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
        segs = req.path.strip("/").split("/")
        kind = "trainjobs" if "trainjobs" in segs else "pods"
        if (req.method, kind) in fake.refuse:
            code = fake.refuse[(req.method, kind)]
            return self._send(
                code,
                _status(
                    code,
                    "Forbidden",
                    f'{kind} is forbidden: User "system:serviceaccount:kubeflow:pipeline-runner" cannot {req.method.lower()} resource "{kind}"',
                ),
            )
        if kind == "trainjobs":
            return self._trainjobs(fake, req, segs)
        return self._pods(fake, req, segs)

    def _trainjobs(self, fake: FakeKube, req: Recorded, segs: list[str]) -> None:
        name = segs[6] if len(segs) > 6 else None
        if req.method == "POST":
            doc = req.json()
            if doc["metadata"]["name"] in fake.jobs:
                return self._send(409, _status(409, "AlreadyExists", "already exists"))
            return self._send(201, _public(fake.add_job(doc)))
        if req.method == "GET" and name:
            job = fake.jobs.get(name)
            return (
                self._send(200, _public(job))
                if job
                else self._send(
                    404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                )
            )
        if req.method == "DELETE" and name:
            job = fake.jobs.pop(name, None)
            return (
                self._send(200, _public(job))
                if job
                else self._send(404, _status(404, "NotFound", "not found"))
            )
        if req.method == "GET" and req.query.get("watch", "").lower() == "true":
            return self._watch(fake, req.query["fieldSelector"].split("=", 1)[1])
        if req.method == "GET":
            key, _, value = req.query.get("labelSelector", "").partition("=")
            items = [
                _public(j) for j in fake.jobs.values() if not key or j["metadata"]["labels"].get(key) == value
            ]
            return self._send(
                200,
                {
                    "apiVersion": "trainer.kubeflow.org/v1alpha1",
                    "kind": "TrainJobList",
                    "items": items,
                    "metadata": {},
                },
            )
        return self._send(405, _status(405, "MethodNotAllowed", req.method))

    def _watch(self, fake: FakeKube, name: str) -> None:
        self._start_chunked("application/json")
        fake.watching.set()
        job = fake.jobs.get(name)
        while job is not None and job["_pending"] and not fake.stop.is_set():
            time.sleep(0.05)
            fake.advance(job)
            self._chunk((json.dumps({"type": "MODIFIED", "object": _public(job)}) + "\n").encode())
        while fake.script.hang and not fake.stop.is_set() and name in fake.jobs:
            time.sleep(0.05)  # an open watch with nothing to say
        if name not in fake.jobs and job is not None:
            self._chunk((json.dumps({"type": "DELETED", "object": _public(job)}) + "\n").encode())
        time.sleep(0.05)
        self._end_chunked()

    def _pods(self, fake: FakeKube, req: Recorded, segs: list[str]) -> None:
        ns = segs[3]
        pods = {
            p["metadata"]["name"]: p
            for job in fake.jobs.values()
            for p in _pods_of(job, ns, fake.script.nodes)
        }
        pods["launcher-pod"] = _pod(
            "launcher-pod", ns, "main", "registry.example/onereward-gpu@sha256:abc", {}
        )
        if len(segs) == 5:  # list
            key, _, value = req.query.get("labelSelector", "").partition("=")
            items = [p for p in pods.values() if p["metadata"]["labels"].get(key) == value]
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        pod = pods.get(segs[5])
        if pod is None:
            return self._send(404, _status(404, "NotFound", "pod not found"))
        if len(segs) == 6:
            return self._send(200, pod)
        rank = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        self._start_chunked("text/plain")
        for step in range(fake.script.log_lines):
            self._chunk(f"rank {rank}: step {step} loss 0.{step}\n".encode())
        self._end_chunked()


def _pods_of(job: dict, ns: str, nodes: int) -> list[dict]:
    name = job["metadata"]["name"]

    def labels(i: int) -> dict[str, str]:
        return {"jobset.sigs.k8s.io/jobset-name": name, "batch.kubernetes.io/job-completion-index": str(i)}

    return [
        _pod(f"{name}-node-{i}-0-x{i}q", ns, "node", job["spec"]["trainer"]["image"], labels(i))
        for i in range(nodes)
    ]


def _pod(name: str, ns: str, container: str, image: str, labels: dict) -> dict:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": container, "image": image}]},
        "status": {"phase": "Running"},
    }  # fmt: skip


_Handler.do_GET = _Handler.do_POST = _Handler.do_DELETE = _Handler._serve  # type: ignore[method-assign]


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch):
    fake = FakeKube(token=TOKEN)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("ONEREWARD_KUBE_TOKEN", TOKEN)
    yield fake
    fake.stop.set()
    server.shutdown()
    server.server_close()


# ---- helpers -------------------------------------------------------------------------------------


def _artifact(path: Path, kind: str, **counts: int) -> Path:
    with ArtifactWriter(path, kind=kind, stage=f"test_{kind}", parameters={}) as art:
        (art.path / "data.txt").write_text(kind)
        art.counts.update(counts)
        art.metrics["mean_accuracy"] = 0.75
    return path


def _nodes_write_output(job: dict) -> None:
    """Stand-in for the training nodes: write the stage's artifact where the job's args say."""
    args = job["spec"]["trainer"]["args"]
    _artifact(Path(args[args.index("--out") + 1]), "reward_model", n_steps=7)


def _cfg(shared: Path, **kw: Any) -> TrainJobConfig:
    base = dict(num_nodes=2, gpus_per_node=4, shared_volume="onereward-shared", shared_mount=str(shared),
                image="registry.example/onereward-gpu:0.1.0", poll_seconds=0.05)  # fmt: skip
    return TrainJobConfig(**{**base, **kw})


@pytest.fixture
def stage_inputs(tmp_path: Path) -> dict[str, str]:
    return {
        "preferences": str(_artifact(tmp_path / "in" / "preferences", "preferences", n_pairs=10)),
        "zoo": str(_artifact(tmp_path / "in" / "zoo", "zoo")),
    }


def _stage(inputs: dict[str, str], *args: str) -> StageCommand:
    return StageCommand(
        "train-reward", inputs=inputs, args=("--profile", "tiny", *args), checkpoint_flag="checkpoint-dir"
    )


# ---- the document --------------------------------------------------------------------------------


def test_trainjob_document_is_valid_against_the_vendored_crd_and_runs_the_library_entry_point(tmp_path):
    cfg = _cfg(
        tmp_path, num_nodes=4, gpus_per_node=8, cpu_per_node="64", memory_per_node="512Gi",
        volumes="onereward-models:/models:ro", env="NCCL_DEBUG=WARN", secret_env="HF_TOKEN=hf-token:token",
        node_selector="nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", tolerations="nvidia.com/gpu:NoSchedule",
        service_account="onereward-trainer", active_deadline_seconds=86400,
    )  # fmt: skip
    name = trainjob_name("run-1", "task-2", "train-reward")
    doc = plan_stage(_stage({"preferences": "/x", "zoo": "/y"}, "--max-steps", "2000"), cfg, name=name,
                     namespace="team-a", image=cfg.image, run_id="run-1", task_id="task-2")  # fmt: skip
    assert trainjob_errors(doc) == []
    assert doc["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and doc["kind"] == "TrainJob"
    spec, trainer = doc["spec"], doc["spec"]["trainer"]
    assert spec["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi"}
    assert trainer["command"] == ["accelerate", "launch"]
    args = trainer["args"]
    assert args[args.index("--num_processes") + 1] == "32" and args[args.index("--num_machines") + 1] == "4"
    assert args[args.index("--machine_rank") + 1] == "$(PET_NODE_RANK)"
    work = f"{tmp_path}/trainjobs/{name}"
    entry = args[args.index("-m") :]
    assert entry[:3] == ["-m", "onereward.cli", "train-reward"]
    assert entry[3:] == ["--preferences", f"{work}/inputs/preferences", "--zoo", f"{work}/inputs/zoo",
                         "--out", f"{work}/output", "--profile", "tiny", "--max-steps", "2000",
                         "--checkpoint-dir", f"{work}/checkpoints"]  # fmt: skip
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    } in trainer["env"]
    (patch,) = spec["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"
    ]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert pod["containers"][0]["name"] == "node" and set(mounts) == {str(tmp_path), "/models", "/dev/shm"}
    assert mounts["/models"]["readOnly"] is True
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"onereward-shared", "onereward-models"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "onereward-trainer" and spec["activeDeadlineSeconds"] == 86400

    torchrun = build_trainjob(_cfg(tmp_path, launcher="torchrun", gpus_per_node=0, shm_size=""), name="t-1",
                              namespace="ns", image="img", entry_point="train-policy", args=["--x", "$(HOME)"])  # fmt: skip
    assert trainjob_errors(torchrun) == []
    assert (
        torchrun["spec"]["trainer"]["command"] == ["torchrun"]
        and "resourcesPerNode" not in torchrun["spec"]["trainer"]
    )
    assert torchrun["spec"]["trainer"]["args"][-1] == "$$(HOME)"  # a literal $( is not expanded by Kubernetes
    assert torchrun["spec"]["trainer"]["numProcPerNode"] == 1


def test_schema_validation_catches_unknown_fields_bad_names_and_missing_runtime(tmp_path, capsys):
    doc = build_trainjob(_cfg(tmp_path), name="train-reward-1", namespace="ns", image="img",
                         entry_point="train-reward", args=[])  # fmt: skip
    bad = copy.deepcopy(doc)
    bad["spec"]["trainer"]["numProcsPerNode"] = 8  # typo: the API server would drop it silently
    del bad["spec"]["runtimeRef"]
    bad["metadata"]["name"] = "9-Train"
    errors = trainjob_errors(bad)
    assert any("spec.trainer" in e and "numProcsPerNode" in e for e in errors)
    assert any("'runtimeRef' is a required property" in e for e in errors)
    assert any("RFC 1035" in e for e in errors)

    files = tmp_path / "jobs.yaml"
    files.write_text(yaml.safe_dump_all([{"kind": "ConfigMap", "apiVersion": "v1"}, doc]))
    assert main(["cluster", "validate-trainjob", str(files)]) == 0
    assert "1 TrainJob document(s) valid, 1 other(s) skipped" in capsys.readouterr().out
    files.write_text(yaml.safe_dump(bad))
    assert main(["cluster", "validate-trainjob", str(files)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        f"onereward cluster: error: {files}: TrainJob 9-Train:"
    )
    assert "(and 2 more)" in err

    header = VENDORED_CRD.read_text().splitlines()[:6]
    assert any("kubeflow/trainer" in h and "v2.3.0" in h for h in header) and any(
        "Apache-2.0" in h for h in header
    )


def test_job_name_is_deterministic_per_run_and_task_and_a_dns_label():
    a = trainjob_name("0b7c5d2e-aaaa-bbbb-cccc-1234567890ab", "4711", "train-reward")
    assert a == trainjob_name("0b7c5d2e-aaaa-bbbb-cccc-1234567890ab", "4711", "train-reward")
    assert a != trainjob_name("0b7c5d2e-aaaa-bbbb-cccc-1234567890ab", "4712", "train-reward")
    long = trainjob_name("r", "t", "9 Very_Long Stage Name For A Policy Trainer That Goes On")
    for name in (a, long):
        assert len(name) <= 40 and name[0].isalpha() and name == name.lower()
        assert trainjob_errors({"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                                "metadata": {"name": name}, "spec": {"runtimeRef": {"name": "x"}}}) == []  # fmt: skip
    with pytest.raises(InputError, match="--run-id/--task-id"):
        trainjob_name("", "t")


def test_config_errors_name_the_setting():
    with pytest.raises(
        InputError, match=r"trainjob.volumes \(--volumes\): expected claim:/mount\[:ro\] items, got 'models'"
    ):
        TrainJobConfig(volumes="models")
    with pytest.raises(InputError, match=r"trainjob.tolerations .*got 'gpu:Sometimes'"):
        TrainJobConfig(tolerations="gpu:Sometimes")
    with pytest.raises(InputError, match=r"trainjob.memory_per_node .*quantity"):
        TrainJobConfig(memory_per_node="lots")


# ---- the launcher --------------------------------------------------------------------------------


def test_launch_creates_the_job_streams_logs_and_copies_the_output(
    kube: FakeKube, stage_inputs, tmp_path, capsys
):
    kube.script = Script(transitions=[("Suspended", "Queued", "waiting for quota"), ("Complete", "JobsCompleted", "done")],
                         on_complete=_nodes_write_output)  # fmt: skip
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = _cfg(shared)
    api = TrainJobApi.connect(kube.url, "team-a")
    done = launch_stage(_stage(stage_inputs, "--max-steps", "7"), tmp_path / "out", cfg,
                        run_id="run-1", task_id="task-1", api=api)  # fmt: skip
    name = trainjob_name("run-1", "task-1", "train-reward")
    assert done.handle == f"team-a/{name}"
    assert read_artifact(tmp_path / "out", kind="reward_model").counts["n_steps"] == 7

    (post,) = kube.trainjob_calls("POST")
    assert post.path == TJ.format(ns="team-a")
    sent = post.json()
    assert sent == plan_stage(_stage(stage_inputs, "--max-steps", "7"), cfg, name=name, namespace="team-a",
                              image=cfg.image, run_id="run-1", task_id="task-1")  # fmt: skip
    assert trainjob_errors(sent) == []
    # The inputs went to the shared volume, where the job's args point.
    for flag in ("preferences", "zoo"):
        copied = shared / "trainjobs" / name / "inputs" / flag
        assert read_artifact(copied).content_hash == read_artifact(stage_inputs[flag]).content_hash
    # Watched by name from the created version; pods found by the JobSet label; logs followed.
    watches = [r for r in kube.trainjob_calls("GET") if r.query.get("watch", "").lower() == "true"]
    assert watches and watches[0].query["fieldSelector"] == f"metadata.name={name}"
    assert watches[0].query["resourceVersion"] == str(int(kube.version) - 2)  # the version create returned
    pod_lists = kube.calls("GET", "/namespaces/team-a/pods")
    assert pod_lists and pod_lists[0].query["labelSelector"] == f"jobset.sigs.k8s.io/jobset-name={name}"
    logs = [r for r in kube.requests if r.path.endswith("/log")]
    assert {r.path.split("/")[-2] for r in logs} == {f"{name}-node-0-0-x0q", f"{name}-node-1-0-x1q"}
    assert all(r.query["follow"].lower() == "true" and r.query["container"] == "node" for r in logs)
    out = capsys.readouterr()
    assert (
        "[node-0-0-x0q] rank 0: step 2 loss 0.2" in out.out
        and "[node-1-0-x1q] rank 1: step 0 loss 0.0" in out.out
    )
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in kube.requests)
    assert TOKEN not in out.out + out.err
    assert not kube.trainjob_calls("DELETE")


def test_retry_reattaches_to_the_running_job_instead_of_creating_a_second(
    kube: FakeKube, stage_inputs, tmp_path
):
    kube.script = Script(on_complete=_nodes_write_output)
    (tmp_path / "shared").mkdir()
    cfg = _cfg(tmp_path / "shared")
    name = trainjob_name("run-1", "task-1", "train-reward")
    stage = _stage(stage_inputs)
    # The earlier attempt created the job and died while it was running.
    kube.add_job(
        plan_stage(
            stage, cfg, name=name, namespace="default", image=cfg.image, run_id="run-1", task_id="task-1"
        )
    )
    api = TrainJobApi.connect(kube.url)
    launch_stage(stage, tmp_path / "out", cfg, run_id="run-1", task_id="task-1", api=api)
    assert kube.trainjob_calls("POST") == []  # reattached
    assert read_artifact(tmp_path / "out").kind == "reward_model"

    # A retry after the job completed: nothing created, nothing watched, the output is collected.
    n_watches = len([r for r in kube.requests if r.query.get("watch")])
    launch_stage(stage, tmp_path / "out2", cfg, run_id="run-1", task_id="task-1", api=api)
    assert (
        kube.trainjob_calls("POST") == []
        and len([r for r in kube.requests if r.query.get("watch")]) == n_watches
    )
    assert read_artifact(tmp_path / "out2").kind == "reward_model"


def test_retry_after_a_failed_job_deletes_it_and_creates_it_again(kube: FakeKube, stage_inputs, tmp_path):
    kube.script = Script(on_complete=_nodes_write_output)
    (tmp_path / "shared").mkdir()
    cfg = _cfg(tmp_path / "shared")
    name = trainjob_name("run-1", "task-1", "train-reward")
    stage = _stage(stage_inputs)
    doc = plan_stage(
        stage, cfg, name=name, namespace="default", image=cfg.image, run_id="run-1", task_id="task-1"
    )
    kube.add_job(doc, "Failed", "BackoffLimitExceeded", "node-1 exited 1")
    launch_stage(
        stage, tmp_path / "out", cfg, run_id="run-1", task_id="task-1", api=TrainJobApi.connect(kube.url)
    )
    assert [r.path.rsplit("/", 1)[1] for r in kube.trainjob_calls("DELETE")] == [name]
    assert kube.trainjob_calls("DELETE")[0].query["propagationPolicy"] == "Foreground"
    assert len(kube.trainjob_calls("POST")) == 1
    assert kube.requests.index(kube.trainjob_calls("DELETE")[0]) < kube.requests.index(
        kube.trainjob_calls("POST")[0]
    )


def test_an_existing_job_with_another_spec_is_an_error(kube: FakeKube, stage_inputs, tmp_path):
    (tmp_path / "shared").mkdir()
    cfg = _cfg(tmp_path / "shared")
    name = trainjob_name("run-1", "task-1", "train-reward")
    other = plan_stage(
        _stage(stage_inputs, "--max-steps", "1"), cfg, name=name, namespace="default", image=cfg.image
    )
    kube.add_job(other)
    with pytest.raises(
        InputError, match=f"trainjob default/{name}: exists with another spec \\({ANNOTATION_SPEC}"
    ):
        launch_stage(_stage(stage_inputs), tmp_path / "out", cfg, run_id="run-1", task_id="task-1",
                     api=TrainJobApi.connect(kube.url))  # fmt: skip
    assert kube.trainjob_calls("POST") == [] and kube.trainjob_calls("DELETE") == []


def _launch_cli(kube: FakeKube, tmp_path: Path, stage_inputs: dict[str, str], *extra: str) -> list[str]:
    (tmp_path / "shared").mkdir(exist_ok=True)
    return [
        "cluster", "launch-trainjob", "--entry-point", "train-reward", "--api-server", kube.url,
        "--input", f"preferences={stage_inputs['preferences']}", "--input", f"zoo={stage_inputs['zoo']}",
        "--out", str(tmp_path / "out"), "--run-id", "run-7", "--task-id", "task-3",
        "--shared-volume", "onereward-shared", "--shared-mount", str(tmp_path / "shared"),
        "--image", "registry.example/onereward-gpu:0.1.0", "--num-nodes", "2", "--gpus-per-node", "8",
        "--poll-seconds", "0.05", "--checkpoint-flag", "checkpoint-dir", *extra, "--", "--profile", "full",
    ]  # fmt: skip


def test_a_failed_job_fails_the_launcher_with_its_reason_in_one_line(
    kube: FakeKube, stage_inputs, tmp_path, capsys
):
    kube.script = Script(
        transitions=[("Failed", "BackoffLimitExceeded", "Job has reached\nthe specified backoff limit")]
    )
    rc = main(_launch_cli(kube, tmp_path, stage_inputs))
    out = capsys.readouterr()
    name = trainjob_name("run-7", "task-3", "train-reward")
    assert rc == 1
    assert out.err.strip().splitlines()[-1] == (
        f"onereward cluster: error: trainjob default/{name} failed: BackoffLimitExceeded: "
        "Job has reached the specified backoff limit"
    )
    assert len(kube.trainjob_calls("POST")) == 1 and kube.trainjob_calls("DELETE") == []
    assert kube.trainjob_calls("POST")[0].json()["spec"]["trainer"]["args"][-2:] == [
        "--checkpoint-dir",
        f"{tmp_path}/shared/trainjobs/{name}/checkpoints",
    ]
    assert not (tmp_path / "out").exists() and TOKEN not in out.out + out.err


def test_sigterm_deletes_the_job(kube: FakeKube, stage_inputs, tmp_path):
    kube.script = Script(transitions=[], hang=True)  # a long training run
    env = {**os.environ, "ONEREWARD_KUBE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "onereward.cli", *_launch_cli(kube, tmp_path, stage_inputs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert kube.watching.wait(60), "the launcher never watched the job"
        name = trainjob_name("run-7", "task-3", "train-reward")
        assert name in kube.jobs
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    (delete,) = kube.trainjob_calls("DELETE")
    assert (
        delete.path == TJ.format(ns="default") + f"/{name}"
        and delete.query["propagationPolicy"] == "Foreground"
    )
    assert name not in kube.jobs
    assert err.strip().splitlines()[-1] == "onereward cluster: cancelled (SIGTERM); the trainjob was deleted"
    assert TOKEN not in out + err


def test_cleanup_deletes_the_unfinished_jobs_of_the_run(kube: FakeKube, tmp_path, capsys):
    cfg = _cfg(tmp_path)
    docs = {
        key: build_trainjob(
            cfg,
            name=f"job-{key}",
            namespace="default",
            image="img",
            entry_point="train-reward",
            args=[],
            run_id=run,
            task_id=key,
        )  # fmt: skip
        for key, run in (("a", "run-1"), ("b", "run-1"), ("c", "run-2"))
    }
    kube.add_job(docs["a"])  # running
    kube.add_job(docs["b"], "Complete", "JobsCompleted", "done")
    kube.add_job(docs["c"])  # another run's
    assert main(["cluster", "delete-trainjobs", "--run-id", "run-1", "--api-server", kube.url]) == 0
    assert capsys.readouterr().out.strip() == "deleted trainjob default/job-a"
    assert kube.trainjob_calls("GET")[0].query["labelSelector"] == "onereward.dev/kfp-run-id=run-1"
    assert set(kube.jobs) == {"job-b", "job-c"}

    from onereward_kfp.components.launch_training import cleanup_trainjobs

    assert cleanup_trainjobs.python_func(run_id="run-1", finished_too=True, api_server=kube.url) == 1
    assert set(kube.jobs) == {"job-c"}


def test_api_errors_are_one_line_with_what_to_check(kube: FakeKube, stage_inputs, tmp_path, capsys):
    kube.refuse[("POST", "trainjobs")] = 403
    rc = main(_launch_cli(kube, tmp_path, stage_inputs))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and line.startswith(
        "onereward cluster: error: kubernetes API: cannot create trainjobs in namespace default (403 "
    )
    assert "needs RBAC on trainjobs.trainer.kubeflow.org (create, get, list, watch, delete)" in line

    kube.refuse[("POST", "trainjobs")] = 404
    rc = main(_launch_cli(kube, tmp_path, stage_inputs))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        rc == 1
        and "is Kubeflow Trainer v2 installed (CRD trainjobs.trainer.kubeflow.org, version v1alpha1)?" in line
    )

    kube.token = "another-token"
    with pytest.raises(
        ClusterApiError, match=r"cannot get trainjobs in namespace default \(401 Unauthorized\)"
    ):
        TrainJobApi.connect(kube.url).get("x")

    dead = TrainJobApi.connect("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ClusterApiError, match=r"kubernetes API http://127.0.0.1:9: cannot get trainjobs \("):
        dead.get("x")
    rc = main(_launch_cli(kube, tmp_path, stage_inputs, "--shared-mount", str(tmp_path / "not-mounted")))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and f"--shared-mount) {tmp_path / 'not-mounted'}: not a writable directory here" in line


# ---- the component -------------------------------------------------------------------------------


def test_a_multi_gpu_training_step_runs_the_same_stage_as_a_trainjob(
    kube: FakeKube, stage_inputs, tmp_path, monkeypatch
):
    """train_reward_model's distributed path (num_nodes or gpus_per_node above 1): launch_distributed
    runs `onereward train-reward` with the step's settings as a TrainJob on the cluster's volumes."""
    from onereward.cluster.launch import launch_distributed
    from onereward.config import from_kfp
    from onereward.reward.config import RewardConfig

    kube.script = Script(on_complete=_nodes_write_output, nodes=1)
    monkeypatch.setenv("HOSTNAME", "launcher-pod")  # image '' = the launcher pod's own image
    (tmp_path / "shared").mkdir()
    settings = from_kfp(
        RewardConfig, {"max_steps": 7, "finetune": "lora", "batch_size": -1, "learning_rate": -1.0, "seed": 0}
    )
    job = launch_distributed(
        "train-reward", {"preferences": stage_inputs["preferences"], "zoo": stage_inputs["zoo"]}, RewardConfig,
        settings, profile="full", out=str(tmp_path / "kfp" / "reward_model"), num_nodes=1, gpus_per_node=8,
        run_id="run-9", task_id="task-9", api_server=kube.url, shared_volume="onereward-shared",
        shared_mount=str(tmp_path / "shared"), poll_seconds=0.05,
    )  # fmt: skip
    name = trainjob_name("run-9", "task-9", "train-reward")
    assert job.handle == f"default/{name}" and (tmp_path / "kfp" / "reward_model" / "manifest.json").is_file()
    sent = kube.trainjob_calls("POST")[0].json()
    assert trainjob_errors(sent) == []
    trainer = sent["spec"]["trainer"]
    assert trainer["image"] == "registry.example/onereward-gpu@sha256:abc"  # read from the launcher's pod
    assert trainer["numProcPerNode"] == 8 and sent["spec"]["trainer"].get("numNodes", 1) == 1
    args = trainer["args"][trainer["args"].index("train-reward") + 1 :]
    # Sentinels (-1, "") stay out: the profile decides; explicit settings go through as flags.
    assert "--batch-size" not in args and "--learning-rate" not in args and "--seed" not in args
    assert args[args.index("--profile") + 1] == "full" and args[args.index("--max-steps") + 1] == "7"
    assert args[args.index("--finetune") + 1] == "lora"
    assert args[args.index("--checkpoint-dir") + 1] == f"{tmp_path}/shared/trainjobs/{name}/checkpoints"
    env = {e["name"]: e.get("value") for e in trainer.get("env", [])}
    assert (
        env["HF_HOME"] == "/models/huggingface" and env["HF_HUB_OFFLINE"] == "1"
    )  # the models volume, offline
    assert kube.calls("GET", "/pods/launcher-pod")


@pytest.mark.parametrize("component_name", ["train_reward_model", "train_policy"])
def test_training_components_route_more_than_one_gpu_to_a_trainjob(component_name, tmp_path, monkeypatch):
    import importlib

    from kfp.dsl import HTML, Artifact, Metrics

    import onereward.cluster.launch as launch

    calls = []

    def recorded(entry_point, inputs, settings_cls, settings, **kw):
        calls.append((entry_point, sorted(inputs), settings_cls.__name__, kw))
        return launch.Launched("default", "job-1", tmp_path / "out")

    monkeypatch.setattr(launch, "launch_distributed", recorded)
    monkeypatch.setattr("onereward_kfp.components.launch_training.GLOSSARY", {}, raising=False)
    component = getattr(importlib.import_module(f"onereward_kfp.components.{component_name}"), component_name)
    out_name = "reward_model" if component_name == "train_reward_model" else "policy"
    outputs = {out_name: Artifact(name=out_name, uri=str(tmp_path / "out")), "report": HTML(name="r", uri=str(tmp_path / "r")),
               "metrics": Metrics(name="m", uri=str(tmp_path / "m"))}  # fmt: skip
    inputs = {k: Artifact(name=k, uri=str(tmp_path / k)) for k in component.component_spec.inputs
              if component.component_spec.inputs[k].type not in ("Integer", "Float", "String", "Boolean")
              and k not in outputs and k != "references"}  # fmt: skip
    monkeypatch.setattr("onereward.kfp_outputs.publish", lambda *a, **k: {})
    component.python_func(**inputs, **outputs, gpus_per_node=4, run_id="run-1", task_id="task-1")
    (entry, names, cls, kw) = calls[0]
    assert entry == ("train-reward" if component_name == "train_reward_model" else "train-policy")
    assert (
        kw["gpus_per_node"] == 4
        and kw["num_nodes"] == 1
        and kw["run_id"] == "run-1"
        and kw["task_id"] == "task-1"
    )
    assert outputs[out_name].metadata["trainjob"] == "default/job-1"


def test_the_train_pipeline_wires_ids_volumes_retries_and_the_cleanup_exit_handler(tmp_path):
    from onereward_kfp.pipelines.runner import compile_all

    compile_all(tmp_path)
    text = (tmp_path / "train.yaml").read_text()
    spec, platform = list(yaml.safe_load_all(text))
    assert "exit-handler-1" in json.dumps(spec["root"]["dag"]["tasks"]) and "cleanup-trainjobs" in text
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-train-reward-model", "exec-train-policy"):
        mounts = {m["mountPath"] for m in executors[name]["pvcMount"]}
        assert {"/shared", "/checkpoints", "/models"} <= mounts, (name, mounts)
    tasks = spec["root"]["dag"]["tasks"]["exit-handler-1"]
    trainer = next(
        t
        for k, t in spec["components"]["comp-exit-handler-1"]["dag"]["tasks"].items()
        if k == "train-reward-model"
    )
    ids = trainer["inputs"]["parameters"]
    assert ids["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert ids["task_id"]["runtimeValue"]["constant"] == "{{$.pipeline_task_uuid}}"
    assert trainer["retryPolicy"]["maxRetryCount"] == 2 and tasks


def test_the_cluster_package_imports_neither_kfp_nor_kubernetes():
    code = (
        "import sys, onereward.cluster.submit, onereward.cluster.trainjob, onereward.cluster.launch, "
        "onereward.cluster.cli, onereward.pipeline_cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kfp', 'kubernetes', 'httpx', 'onereward_kfp'}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert run.stdout.strip() == "[]"
