"""Kubeflow Trainer v2 TrainJobs: build the document, validate it, launch and babysit the job.

**Document** (:func:`build_trainjob`): ``trainer.kubeflow.org/v1alpha1`` ``TrainJob`` on the
``torch-distributed`` ClusterTrainingRuntime. ``spec.trainer`` carries the image, the command (the
library's own CLI under ``accelerate launch`` or ``torchrun``), env, ``numNodes``,
``numProcPerNode`` and ``resourcesPerNode`` (GPUs, CPU, memory). Volumes, mounts, ``/dev/shm``,
node selector, tolerations and the service account go through ``spec.runtimePatches`` (the v1alpha1
way to patch the runtime's pod template: one patch owned by manager ``onereward.dev/launcher``,
for replicated job and container ``node``). The torch plugin of the Trainer sets ``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` in the node
container; torchrun reads them itself, and ``accelerate launch`` gets them through Kubernetes'
``$(VAR)`` expansion of the container args.

**Validation** (:func:`validate_trainjob`): against the ``openAPIV3Schema`` of the vendored CRD
(``manifests/vendor/trainer.kubeflow.org_trainjobs.v2.3.0.yaml``) with jsonschema, closed the way a
structural schema prunes (an unknown field is an error here instead of silently dropped by the API
server), plus the CRD's CEL rules on the name (RFC 1035 label, at most 63 characters).

**Launcher** (:class:`TrainJobLauncher`), the pattern of google-cloud-pipeline-components' job
launchers:

- the job name is derived from the KFP run id and task id (:func:`trainjob_name`), which stay the
  same when KFP retries the step, so a retry finds the job of the earlier attempt and **reattaches**
  to it (no second create); a job that already completed is taken as done; a job that failed is
  deleted and created again (that is what a retry is for); an existing job with another spec is an
  error;
- the nodes' logs are streamed (pods labelled ``jobset.sigs.k8s.io/jobset-name=<job>``, followed
  through ``pods/<pod>/log?follow=true``), each line prefixed with the pod;
- the job is watched until its ``Complete`` or ``Failed`` condition; a failure raises
  :class:`TrainJobFailed` with the reason and message in one line;
- on SIGTERM (the step is cancelled) the job is deleted (:func:`deleting_on_sigterm`); a pipeline's
  exit handler can also delete every unfinished job of the run (:func:`delete_run_trainjobs`).

The Kubernetes API is reached through the ``kubernetes`` client (``CustomObjectsApi``,
``CoreV1Api``), imported only when a client is made. No Kubernetes API server can run on the
development machine: the tests drive this module against a local HTTP server that implements the
endpoints used here (trainjobs create/get/list/watch/delete, pods list and log) and records them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from onereward.cluster.config import TrainJobConfig
from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("cluster.trainjob")

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
API_VERSION = f"{GROUP}/{VERSION}"
NODE = "node"  # replicated job and container name of the trainer in the torch runtimes
MANAGER = "onereward.dev/launcher"  # owner of our runtime patch
POD_SELECTOR_KEY = "jobset.sigs.k8s.io/jobset-name"  # JobSet labels every pod with its (= the job's) name
LABEL_RUN, LABEL_STAGE = "onereward.dev/kfp-run-id", "onereward.dev/stage"
ANNOTATION_RUN, ANNOTATION_TASK = "onereward.dev/kfp-run-id", "onereward.dev/kfp-task-id"
ANNOTATION_SPEC = "onereward.dev/spec-sha256"
KUBE_TOKEN_ENV = "ONEREWARD_KUBE_TOKEN"  # bearer token for an explicit --api-server
VENDORED_CRD = (
    Path(__file__).resolve().parents[3]
    / "manifests"
    / "vendor"
    / "trainer.kubeflow.org_trainjobs.v2.3.0.yaml"
)
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the CRD's CEL rule on metadata.name
NAME_MAX = 40  # below the CRD's 63: JobSet derives child Job and pod names from it


class TrainJobFailed(RuntimeError):
    """The TrainJob failed, or disappeared before finishing (message: one line with the reason)."""


class ClusterApiError(RuntimeError):
    """The Kubernetes API refused or failed a call (message: one line with what to check)."""


class Cancelled(BaseException):
    """The launcher got SIGTERM/SIGINT (BaseException, so that no ``except Exception`` swallows it)."""


# ---- names and labels ----------------------------------------------------------------------------


def trainjob_name(run_id: str, task_id: str, prefix: str = "onereward") -> str:
    """Deterministic job name for (run, task): ``<prefix>-<sha256(run/task)[:10]>``, an RFC 1035
    label of at most :data:`NAME_MAX` characters. The same ids give the same name on a retry."""
    if not run_id or not task_id:
        raise InputError("--run-id/--task-id: expected both (the KFP run and task ids), or give --name")
    slug = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    slug = re.sub(r"^[^a-z]+", "", slug)[: NAME_MAX - 11].rstrip("-") or "onereward"
    digest = hashlib.sha256(f"{run_id}/{task_id}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name) or len(name) > NAME_MAX:
        raise InputError(
            f"--name {name!r}: expected a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter) "
            f"of at most {NAME_MAX} characters"
        )
    return name


def label_value(value: str) -> str:
    """``value`` made a valid label value (at most 63 of ``[-A-Za-z0-9_.]``, alphanumeric ends)."""
    cleaned = re.sub(r"[^-A-Za-z0-9_.]+", "-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


# ---- the document --------------------------------------------------------------------------------


def node_command(cfg: TrainJobConfig, entry_point: str, args: list[str]) -> tuple[list[str], list[str]]:
    """``(command, args)`` of the node container: ``onereward <entry_point> <args>`` under the launcher.

    ``$(PET_*)`` are expanded by Kubernetes from the env the Trainer's torch plugin sets; a literal
    ``$(`` in ``args`` is escaped (``$$(``) so that Kubernetes leaves it alone.
    """
    stage = ["-m", "onereward.cli", entry_point, *(a.replace("$(", "$$(") for a in args)]
    if cfg.launcher == "torchrun":
        return ["torchrun"], stage  # reads PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_* itself
    launch = [
        "--config_file", cfg.accelerate_config,
        "--num_machines", str(cfg.num_nodes),
        "--num_processes", str(cfg.num_nodes * cfg.procs_per_node),
        "--machine_rank", "$(PET_NODE_RANK)",
        "--main_process_ip", "$(PET_MASTER_ADDR)",
        "--main_process_port", "$(PET_MASTER_PORT)",
    ]  # fmt: skip
    return ["accelerate", "launch"], [*launch, *stage]


def build_trainjob(
    cfg: TrainJobConfig,
    *,
    name: str,
    namespace: str,
    image: str,
    entry_point: str,
    args: list[str],
    run_id: str = "",
    task_id: str = "",
) -> dict[str, Any]:
    """The TrainJob document running ``onereward <entry_point> <args>`` on ``cfg.num_nodes`` nodes."""
    check_name(name)
    if not image:
        raise InputError("trainjob.image (--image): expected the training image")
    command, node_args = node_command(cfg, entry_point, args)
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if cfg.gpus_per_node:
        limits[cfg.gpu_resource] = str(cfg.gpus_per_node)
    for key, value in (("cpu", cfg.cpu_per_node), ("memory", cfg.memory_per_node)):
        if value:
            limits[key] = requests[key] = value
    env = [{"name": k, "value": v} for k, v in cfg.env_pairs()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for k, secret, key in cfg.secret_env_refs()
    ]
    trainer: dict[str, Any] = {
        "image": image,
        "command": command,
        "args": node_args,
        "numNodes": cfg.num_nodes,
        "numProcPerNode": cfg.procs_per_node,
    }
    if env:
        trainer["env"] = env
    if limits:
        trainer["resourcesPerNode"] = {"limits": limits, **({"requests": requests} if requests else {})}
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": cfg.runtime},
        "trainer": trainer,
    }
    if cfg.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = cfg.active_deadline_seconds
    patch = _pod_patch(cfg)
    if patch:
        spec["runtimePatches"] = [
            {
                "manager": MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": patch}}}]
                        }
                    }
                },
            }
        ]
    labels = {"app.kubernetes.io/managed-by": "onereward", LABEL_STAGE: label_value(entry_point)}
    annotations = {ANNOTATION_SPEC: spec_sha256(spec)}
    if run_id:
        labels[LABEL_RUN] = label_value(run_id)
        annotations[ANNOTATION_RUN] = run_id
    if task_id:
        annotations[ANNOTATION_TASK] = task_id
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def _pod_patch(cfg: TrainJobConfig) -> dict[str, Any]:
    """The pod template patch: volumes and their mounts in container ``node``, placement, account."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if cfg.shared_volume:
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": cfg.shared_volume}})
        mounts.append({"name": "shared", "mountPath": cfg.shared_mount})
    for i, vol in enumerate(cfg.volume_specs()):
        name = f"volume-{i}"
        claim = {"claimName": vol.claim, **({"readOnly": True} if vol.read_only else {})}
        volumes.append({"name": name, "persistentVolumeClaim": claim})
        mounts.append({"name": name, "mountPath": vol.mount, **({"readOnly": True} if vol.read_only else {})})
    if cfg.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    pod: dict[str, Any] = {}
    if volumes:
        pod["volumes"] = volumes
        pod["containers"] = [{"name": NODE, "volumeMounts": mounts}]
    if cfg.node_selector_pairs():
        pod["nodeSelector"] = cfg.node_selector_pairs()
    if cfg.toleration_specs():
        pod["tolerations"] = cfg.toleration_specs()
    if cfg.service_account:
        pod["serviceAccountName"] = cfg.service_account
    return {"spec": pod} if pod else {}


def spec_sha256(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a job's spec (recorded in an annotation, compared on reattach)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- validation ----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def crd_schema(crd_path: str = str(VENDORED_CRD)) -> dict[str, Any]:
    """The served version's ``openAPIV3Schema`` of the TrainJob CRD, closed like a structural schema."""
    try:
        crd = yaml.load(Path(crd_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as e:
        raise InputError(f"--crd {crd_path}: cannot read the TrainJob CRD ({e.strerror})") from None
    versions = [v for v in crd["spec"]["versions"] if v["name"] == VERSION and v.get("served", True)]
    if crd["spec"]["names"]["kind"] != KIND or not versions:
        raise InputError(f"--crd {crd_path}: expected the {KIND} CRD serving {VERSION}")
    return _closed(versions[0]["schema"]["openAPIV3Schema"])


def _closed(schema: Any) -> Any:
    """Copy of ``schema`` where objects with ``properties`` reject unknown fields, as the API server's
    pruning would silently drop them (unless ``x-kubernetes-preserve-unknown-fields`` keeps them)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def trainjob_errors(doc: dict[str, Any], crd_path: str | Path = VENDORED_CRD) -> list[str]:
    """Every schema error of ``doc`` as ``path: message`` (empty when valid)."""
    import jsonschema

    schema = crd_schema(str(crd_path))
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    name = (doc.get("metadata") or {}).get("name", "")
    if not _NAME_RE.match(name):  # the CRD's CEL rules, which jsonschema does not evaluate
        errors.append(f"metadata.name: {name!r} does not match RFC 1035 DNS label format")
    if len(name) > 63:
        errors.append(f"metadata.name: {name!r} is longer than 63 characters")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        errors.append(f"apiVersion/kind: expected {API_VERSION} {KIND}")
    return errors


def validate_trainjob(
    doc: dict[str, Any], crd_path: str | Path = VENDORED_CRD, what: str = "trainjob"
) -> None:
    """Raise :class:`InputError` naming the first invalid field of ``doc`` (and how many others)."""
    errors = trainjob_errors(doc, crd_path)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(f"{what}: {errors[0]}{more}")


# ---- job state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """The phase of a TrainJob from its conditions: Created, Suspended, Complete or Failed."""

    phase: str
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in ("Complete", "Failed")

    def describe(self) -> str:
        detail = ": ".join(x for x in (self.reason, _one_line(self.message)) if x)
        return f"{self.phase} ({detail})" if detail else self.phase


def job_state(job: dict[str, Any]) -> JobState:
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    for phase in ("Failed", "Complete", "Suspended"):
        cond = conditions.get(phase)
        if cond and cond.get("status") == "True":
            return JobState(phase, cond.get("reason", ""), cond.get("message", ""))
    return JobState("Created")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:400]


# ---- Kubernetes API ------------------------------------------------------------------------------


class TrainJobApi:
    """TrainJob and pod calls through the ``kubernetes`` client, with one-line errors.

    ``connect()``: an explicit ``api_server`` URL (e.g. ``kubectl proxy`` on http://127.0.0.1:8001, or
    a test server; bearer token from ``$ONEREWARD_KUBE_TOKEN``), else the in-cluster service account
    (inside a pod), else the kubeconfig.
    """

    def __init__(self, api_client: Any, namespace: str):
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.host = api_client.configuration.host

    @classmethod
    def connect(cls, api_server: str = "", namespace: str = "") -> TrainJobApi:
        from kubernetes import client, config

        if api_server:
            if not api_server.startswith(("http://", "https://")):
                raise InputError(f"--api-server {api_server}: expected an http:// or https:// URL")
            conf = client.Configuration(host=api_server.rstrip("/"))
            token = os.environ.get(KUBE_TOKEN_ENV, "").strip()
            if token:
                conf.api_key = {"authorization": token}
                conf.api_key_prefix = {"authorization": "Bearer"}
            conf.retries = 1
            return cls(client.ApiClient(conf), namespace or "default")
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            sa_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            own = sa_ns.read_text().strip() if sa_ns.is_file() else "default"
            return cls(client.ApiClient(), namespace or own)
        try:
            config.load_kube_config()
            _, active = config.list_kube_config_contexts()
        except Exception as e:  # the kubeconfig loader raises several unrelated types
            raise InputError(
                f"--api-server: none given, not inside a pod, and no usable kubeconfig ({_one_line(e)})"
            ) from None
        return cls(client.ApiClient(), namespace or active.get("context", {}).get("namespace") or "default")

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 404 and missing_ok:
                return None
            raise ClusterApiError(_api_message(what, self.namespace, e)) from None
        except HTTPError as e:
            raise ClusterApiError(
                f"kubernetes API {self.host}: cannot {what} ({type(e).__name__}: {_one_line(e)[:200]})"
            ) from None

    # -- trainjobs ------------------------------------------------------------------------------
    def _trainjobs(self, verb: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(group, version, namespace, "trainjobs", *args)`` with errors naming ``verb``."""
        return self._call(
            f"{verb} trainjobs", method, GROUP, VERSION, self.namespace, PLURAL, *args, **kwargs
        )

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._trainjobs("create", self.custom.create_namespaced_custom_object, doc)

    def get(self, name: str) -> dict[str, Any] | None:
        return self._trainjobs("get", self.custom.get_namespaced_custom_object, name, missing_ok=True)

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        found = self._trainjobs(
            "list", self.custom.list_namespaced_custom_object, label_selector=label_selector
        )
        return found.get("items") or []

    def delete(self, name: str) -> bool:
        """Delete the job and (foreground) its JobSet, Jobs and pods; False when it was already gone."""
        method = self.custom.delete_namespaced_custom_object
        done = self._trainjobs("delete", method, name, propagation_policy="Foreground", missing_ok=True)
        return done is not None

    def watch(self, name: str, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "raw_object"}``) of job ``name`` from ``resource_version`` until the
        server ends the watch (about ``timeout_s``). Raises ``ApiException`` 410 when the version expired."""
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            _request_timeout=(10, timeout_s + 30),
        )
        try:
            yield from stream
        except ApiException as e:
            if e.status == 410:
                raise
            raise ClusterApiError(_api_message("watch trainjobs", self.namespace, e)) from None

    # -- pods ------------------------------------------------------------------------------------
    def pods(self, job_name: str) -> list[Any]:
        found = self._call(
            "list pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{POD_SELECTOR_KEY}={job_name}",
        )
        return list(found.items or [])

    def follow_log(self, pod: str, container: str = NODE) -> Iterator[str]:
        """Lines of a pod container's log, following it until the container ends."""
        from kubernetes import watch

        yield from watch.Watch().stream(
            self.core.read_namespaced_pod_log, name=pod, namespace=self.namespace, container=container
        )

    def own_image(self) -> str:
        """The image of the pod this process runs in (KFP's executor container ``main``)."""
        pod_name = os.environ.get("HOSTNAME", "")
        if not pod_name:
            raise InputError(
                "trainjob.image (--image): expected an image (not inside a pod: no HOSTNAME to look up)"
            )
        pod = self._call("get pods", self.core.read_namespaced_pod, pod_name, self.namespace)
        containers = {c.name: c.image for c in pod.spec.containers}
        return containers.get("main") or next(iter(containers.values()))


def _api_message(what: str, namespace: str, e: Any) -> str:
    detail = e.reason or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        detail = json.loads(e.body).get("message") or detail
    hint = ""
    if e.status in (401, 403):
        hint = (
            "; the launcher's service account needs RBAC on trainjobs.trainer.kubeflow.org "
            "(create, get, list, watch, delete) and on pods (get, list) and pods/log (get)"
        )
    elif e.status == 404 and "trainjobs" in what:
        hint = f"; is Kubeflow Trainer v2 installed (CRD {PLURAL}.{GROUP}, version {VERSION})?"
    return f"kubernetes API: cannot {what} in namespace {namespace} ({e.status} {_one_line(detail)}){hint}"


# ---- the launcher --------------------------------------------------------------------------------


class PodLogStreamer:
    """Follows the log of every pod of a job (new pods are looked for every ``poll_s``) and writes
    each line as ``[<pod>] <line>``. Each pod is followed once, from its start."""

    def __init__(self, api: TrainJobApi, job_name: str, poll_s: float, write: Callable[[str], None]):
        self.api, self.job_name, self.poll_s, self.write = api, job_name, poll_s, write
        self._stop = threading.Event()
        self._started: set[str] = set()
        self._followers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll_loop, name=f"logs-{job_name}", daemon=True)

    def start(self) -> PodLogStreamer:
        self._poller.start()
        return self

    def finish(self, timeout_s: float = 15.0) -> None:
        """Catch pods not seen yet, let the followers drain the ends of their logs, stop."""
        self._stop.set()
        self._poller.join(timeout_s)
        self._look_for_pods()
        deadline = time.monotonic() + timeout_s
        for t in list(self._followers):
            t.join(max(0.0, deadline - time.monotonic()))

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._look_for_pods()
            self._stop.wait(self.poll_s)

    def _look_for_pods(self) -> None:
        try:
            pods = self.api.pods(self.job_name)
        except ClusterApiError as e:
            log.warning("log streaming: %s", e)
            return
        for pod in pods:
            name, phase = pod.metadata.name, (pod.status.phase if pod.status else None)
            if phase not in ("Running", "Succeeded", "Failed"):
                continue  # Pending: no log to follow yet
            with self._lock:
                if name in self._started:
                    continue
                self._started.add(name)
            t = threading.Thread(target=self._follow, args=(name,), name=f"log-{name}", daemon=True)
            self._followers.append(t)
            t.start()

    def _follow(self, pod: str) -> None:
        short = pod[len(self.job_name) + 1 :] if pod.startswith(self.job_name + "-") else pod
        try:
            for line in self.api.follow_log(pod):
                self.write(f"[{short}] {line}")
        except Exception as e:  # the container may not have started; the next poll tries again
            log.debug("log of %s: %s", pod, e)
            with self._lock:
                self._started.discard(pod)


class TrainJobLauncher:
    """Create or reattach to a TrainJob, stream its logs, wait for it to finish (see the module docstring)."""

    def __init__(
        self,
        api: TrainJobApi,
        *,
        stream_logs: bool = True,
        poll_s: float = 5.0,
        watch_timeout_s: int = 300,
        write: Callable[[str], None] | None = None,
    ):
        self.api = api
        self.stream_logs = stream_logs
        self.poll_s = poll_s
        self.watch_timeout_s = watch_timeout_s
        self.write = write or _print_line

    def run(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Run ``doc`` to completion; returns the finished job. Raises :class:`TrainJobFailed`."""
        name = doc["metadata"]["name"]
        where = f"trainjob {self.api.namespace}/{name}"
        job = self.start(doc)
        state = job_state(job)
        if state.phase == "Complete":
            log.info("%s already completed: reattached (nothing to run)", where)
            return job
        streamer = PodLogStreamer(self.api, name, self.poll_s, self.write) if self.stream_logs else None
        if streamer:
            streamer.start()
        try:
            return self.wait(name, job)
        finally:
            if streamer:
                streamer.finish()

    def start(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Create the job, or reattach to the one an earlier attempt created (see module docstring)."""
        name = doc["metadata"]["name"]
        where = f"trainjob {self.api.namespace}/{name}"
        existing = self.api.get(name)
        if existing is not None:
            state = job_state(existing)
            if state.phase == "Failed":
                log.info(
                    "%s of an earlier attempt failed (%s): deleting it and starting again",
                    where,
                    state.describe(),
                )
                self.api.delete(name)
                self._wait_gone(name)
            else:
                theirs = (existing.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_SPEC)
                ours = doc["metadata"]["annotations"][ANNOTATION_SPEC]
                if theirs != ours:
                    raise InputError(
                        f"{where}: exists with another spec ({ANNOTATION_SPEC} {str(theirs)[:12]}, expected "
                        f"{ours[:12]}); delete it or launch under another name"
                    )
                log.info(
                    "%s exists (%s): reattached instead of creating a second job", where, state.describe()
                )
                return existing
        created = self.api.create(doc)
        log.info(
            "%s created: %d node(s) x %d process(es), image %s",
            where,
            doc["spec"]["trainer"]["numNodes"],
            doc["spec"]["trainer"]["numProcPerNode"],
            doc["spec"]["trainer"]["image"],
        )
        return created

    def wait(self, name: str, job: dict[str, Any]) -> dict[str, Any]:
        """Watch job ``name`` until it is Complete (returned) or Failed (:class:`TrainJobFailed`)."""
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        where = f"trainjob {self.api.namespace}/{name}"
        shown = ""

        def report(job: dict[str, Any]) -> JobState:
            nonlocal shown
            state = job_state(job)
            if state.describe() != shown:
                shown = state.describe()
                log.info("%s: %s", where, shown)
            return state

        while True:
            state = report(job)
            if state.phase == "Complete":
                return job
            if state.phase == "Failed":
                raise TrainJobFailed(
                    f"{where} failed: {state.reason or 'no reason given'}: {_one_line(state.message)}"
                )
            rv = job.get("metadata", {}).get("resourceVersion", "")
            try:
                for event in self.api.watch(name, rv, self.watch_timeout_s):
                    if event["type"] == "DELETED":
                        raise TrainJobFailed(f"{where} was deleted before it finished")
                    if event["type"] in ("ADDED", "MODIFIED"):
                        job = event["raw_object"]
                        if report(job).finished:
                            break
                else:
                    job = self._reread(name, where)  # the watch ended (timeout): read, then watch again
            except ApiException:  # 410 Gone: the version expired; read the current one
                job = self._reread(name, where)
            except HTTPError as e:  # the watch connection broke: read (fails if the API is down), watch again
                log.info("%s: watch interrupted (%s); watching again", where, type(e).__name__)
                time.sleep(min(2.0, self.poll_s))
                job = self._reread(name, where)

    def _reread(self, name: str, where: str) -> dict[str, Any]:
        job = self.api.get(name)
        if job is None:
            raise TrainJobFailed(f"{where} was deleted before it finished")
        return job

    def _wait_gone(self, name: str, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.api.get(name) is not None:
            if time.monotonic() > deadline:
                raise TrainJobFailed(
                    f"trainjob {self.api.namespace}/{name}: still deleting after {timeout_s:.0f}s"
                )
            time.sleep(min(2.0, self.poll_s))


_print_lock = threading.Lock()


def _print_line(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def deleting_on_sigterm(api: TrainJobApi, name: str) -> Iterator[None]:
    """Inside: SIGTERM and SIGINT raise :class:`Cancelled`, upon which job ``name`` is deleted and
    :class:`Cancelled` propagates (the step was cancelled). Signals are only caught in the main thread."""

    def cancel(signum: int, _frame: Any) -> None:
        raise Cancelled(signal.Signals(signum).name)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, cancel) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    except Cancelled as e:
        # Further signals must not interrupt the delete itself.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        log.warning("%s: cancelled, deleting trainjob %s/%s", e, api.namespace, name)
        api.delete(name)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def delete_run_trainjobs(api: TrainJobApi, run_id: str, *, finished_too: bool = False) -> list[str]:
    """Delete the TrainJobs of KFP run ``run_id`` that have not finished (all with ``finished_too``);
    returns their names. For a pipeline's exit handler: a cancelled or failed run leaves no job running."""
    if not run_id:
        raise InputError("--run-id: expected the KFP run id")
    deleted = []
    for job in api.list(f"{LABEL_RUN}={label_value(run_id)}"):
        name = job["metadata"]["name"]
        if (job["metadata"].get("annotations") or {}).get(ANNOTATION_RUN, run_id) != run_id:
            continue  # a label collision after cleaning: not this run's
        if finished_too or not job_state(job).finished:
            api.delete(name)
            deleted.append(name)
    return deleted
