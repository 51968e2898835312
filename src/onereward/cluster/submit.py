"""Submit a pipeline to Kubeflow Pipelines through its v2beta1 REST API (``onereward pipeline submit``).

Steps (:func:`submit`):

1. **spec**: compile pipeline NAME with the same code as ``onereward pipeline compile``
   (``onereward_kfp.pipelines.runner.compile_all``, imported here, never at module level), or read
   an already compiled YAML (``--spec``). Its sha256 names the version: ``<pipeline>-<sha12>``.
2. **server**: ``GET /apis/v2beta1/healthz``; a multi-user server needs ``--namespace``.
3. **pipeline**: found by display name (``GET /apis/v2beta1/pipelines?filter=...``) or created
   empty (``POST /apis/v2beta1/pipelines``). We create it without a spec and then upload the spec as
   a version, rather than with ``pipelines/upload``, because ``pipelines/upload`` also creates a first
   version named after the pipeline, whose name would not carry the spec hash.
4. **version**: found by name (``GET /apis/v2beta1/pipelines/{id}/versions?filter=...``) or uploaded
   (``POST /apis/v2beta1/pipelines/upload_version``, multipart ``uploadfile``). The same spec
   therefore never uploads twice; the version's description records the full sha256.
5. **experiment**: found by display name or created (``/apis/v2beta1/experiments``).
6. **run**: ``POST /apis/v2beta1/runs`` with the version reference and the typed parameters; the run
   URL is ``<ui host>/#/runs/details/<run_id>``.

The bearer token comes from :mod:`onereward.cluster.credentials` and is never logged (only its
source is). Errors are one line naming the input (``--host``, ``--param``, NAME) and what was
expected. No KFP API server can run on the development machine: the tests drive this module against
a local HTTP server that implements exactly these endpoints and records the requests.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onereward import __version__
from onereward.cluster.credentials import TOKEN_ENV, TOKEN_FILE_ENV, BearerToken, kfp_token
from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("cluster.submit")

API = "/apis/v2beta1"


class KfpApiError(RuntimeError):
    """The KFP API server answered an error that is not about our inputs (message: one line)."""


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit` did: the ids it used or created and the run URL."""

    pipeline_id: str
    pipeline_created: bool
    version_id: str
    version_name: str
    version_uploaded: bool
    experiment_id: str
    run_id: str
    run_url: str


# ---- spec ----------------------------------------------------------------------------------------


def compile_spec(name: str, *, cpu_image: str | None = None, gpu_image: str | None = None) -> bytes:
    """The compiled YAML of pipeline ``name``, exactly as ``onereward pipeline compile`` writes it
    (with the same image substitutions)."""
    from onereward_kfp.pipelines.definitions import PIPELINES
    from onereward_kfp.pipelines.runner import compile_all

    if name not in PIPELINES:
        raise InputError(f"pipeline: unknown pipeline {name!r}; expected one of {', '.join(PIPELINES)}")
    with tempfile.TemporaryDirectory(prefix="onereward-submit-") as tmp:
        compile_all(tmp, cpu_image=cpu_image, gpu_image=gpu_image)
        return (Path(tmp) / f"{name}.yaml").read_bytes()


def spec_sha256(spec: bytes) -> str:
    """sha256 of the compiled spec's bytes (the version's identity)."""
    return hashlib.sha256(spec).hexdigest()


def spec_pipeline_name(spec: bytes, where: str) -> str:
    """``pipelineInfo.name`` of a compiled spec (the default pipeline name on the server)."""
    try:
        first = next(iter(yaml.safe_load_all(spec)), None)
    except yaml.YAMLError as e:
        raise InputError(f"{where}: not a compiled pipeline spec (YAML error {type(e).__name__})") from None
    name = (first or {}).get("pipelineInfo", {}).get("name") if isinstance(first, dict) else None
    if not name:
        raise InputError(f"{where}: not a compiled pipeline spec (no pipelineInfo.name)")
    return str(name)


def required_missing(name: str, params: dict[str, Any]) -> list[str]:
    """Parameters of pipeline ``name`` without a default that ``params`` does not give."""
    from onereward_kfp.pipelines.runner import pipeline_parameters

    return [
        p for p, info in pipeline_parameters(name).items() if info.default is info.empty and p not in params
    ]


# ---- REST client ---------------------------------------------------------------------------------


class KfpApi:
    """The few v2beta1 calls :func:`submit` makes, over ``httpx``, with one-line errors."""

    def __init__(self, host: str, token: BearerToken | None, *, timeout: float = 30.0):
        import httpx

        if not host.startswith(("http://", "https://")):
            raise InputError(f"--host {host}: expected an http:// or https:// URL of the KFP API")
        self.host = host.rstrip("/")
        self.token = token
        headers = {"Accept": "application/json", **(token.headers() if token else {})}
        self._http = httpx.Client(base_url=self.host, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KfpApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One request to ``<host>/apis/v2beta1<path>``; the decoded JSON body (``{}`` when empty)."""
        import httpx

        url = f"{API}{path}"
        try:
            resp = self._http.request(method, url, **kwargs)
        except httpx.TransportError as e:
            raise InputError(
                f"--host {self.host}: cannot reach the KFP API server ({type(e).__name__}: {_first_line(e)})"
            ) from None
        if resp.status_code in (401, 403):
            how = f"the token from {self.token.source}" if self.token else "no token"
            raise InputError(
                f"--host {self.host}: {method} {url} was refused ({resp.status_code} {resp.reason_phrase}) "
                f"with {how}; set {TOKEN_ENV} or {TOKEN_FILE_ENV}, or use a kubeconfig user with a token"
            )
        if resp.status_code == 404 and path == "/healthz":
            raise InputError(
                f"--host {self.host}: {url} not found (404); expected the KFP API endpoint, e.g. "
                "https://<kubeflow host>/pipeline or http://localhost:8888 (port-forward of svc/ml-pipeline)"
            )
        if resp.status_code >= 400:
            raise KfpApiError(f"KFP API {method} {url}: {resp.status_code} {_error_message(resp)}")
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise KfpApiError(f"KFP API {method} {url}: expected JSON, got {resp.text[:80]!r}") from None

    # -- endpoints --------------------------------------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        return self.call("GET", "/healthz")

    def find_pipeline(self, display_name: str, namespace: str | None) -> dict[str, Any] | None:
        params = {"filter": _name_filter(display_name), "page_size": 2, **_ns(namespace)}
        found = self.call("GET", "/pipelines", params=params).get("pipelines") or []
        found = [p for p in found if p.get("display_name") == display_name]
        if len(found) > 1:
            raise KfpApiError(f"KFP API: {len(found)} pipelines are named {display_name!r}; expected one")
        return found[0] if found else None

    def create_pipeline(self, display_name: str, description: str, namespace: str | None) -> dict[str, Any]:
        body = {"display_name": display_name, "name": display_name, "description": description}
        if namespace:
            body["namespace"] = namespace
        return self.call("POST", "/pipelines", json=body)

    def find_version(self, pipeline_id: str, name: str) -> dict[str, Any] | None:
        params = {"filter": _name_filter(name), "page_size": 2}
        found = self.call("GET", f"/pipelines/{pipeline_id}/versions", params=params).get("pipeline_versions")
        found = [v for v in found or [] if v.get("display_name") == name]
        return found[0] if found else None

    def upload_version(self, pipeline_id: str, name: str, description: str, spec: bytes) -> dict[str, Any]:
        params = {"pipelineid": pipeline_id, "name": name, "display_name": name, "description": description}
        files = {"uploadfile": (f"{name}.yaml", spec, "application/x-yaml")}
        return self.call("POST", "/pipelines/upload_version", params=params, files=files)

    def find_experiment(self, display_name: str, namespace: str | None) -> dict[str, Any] | None:
        params = {"filter": _name_filter(display_name), "page_size": 2, **_ns(namespace)}
        found = self.call("GET", "/experiments", params=params).get("experiments") or []
        found = [e for e in found if e.get("display_name") == display_name]
        return found[0] if found else None

    def create_experiment(self, display_name: str, namespace: str | None) -> dict[str, Any]:
        body = {"display_name": display_name, "description": "created by onereward pipeline submit"}
        if namespace:
            body["namespace"] = namespace
        return self.call("POST", "/experiments", json=body)

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/runs", json=body)


def _ns(namespace: str | None) -> dict[str, str]:
    return {"namespace": namespace} if namespace else {}


def _name_filter(name: str) -> str:
    """A v2beta1 list filter: ``display_name`` equals ``name`` (the form kfp.Client sends)."""
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _error_message(resp: Any) -> str:
    try:
        body = resp.json()
        text = body.get("error_message") or body.get("message") or json.dumps(body)
    except ValueError:
        text = resp.text or resp.reason_phrase
    return _first_line(text)[:300]


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0] if lines else type(value).__name__


# ---- submit --------------------------------------------------------------------------------------


def submit(
    name: str,
    host: str,
    params: dict[str, Any],
    *,
    experiment: str = "Default",
    version_name: str | None = None,
    pipeline_name: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    ui_host: str | None = None,
    spec_path: str | None = None,
    cpu_image: str | None = None,
    gpu_image: str | None = None,
    token: BearerToken | None = None,
    use_env_token: bool = True,
) -> Submitted:
    """Upload pipeline ``name`` (idempotent by spec hash), create a run with ``params``, return ids and URL.

    ``params`` are typed values (``onereward_kfp.pipelines.runner.parse_params``); ``cpu_image`` /
    ``gpu_image`` replace the component images when compiling (ignored with ``spec_path``). ``token`` overrides
    the lookup of :func:`onereward.cluster.credentials.kfp_token` (done when ``use_env_token``).
    """
    # 1. spec
    missing = required_missing(name, params)
    if missing:
        raise InputError(f"--param {missing[0]}: pipeline {name!r} needs it (no default)")
    if spec_path:
        try:
            spec = Path(spec_path).read_bytes()
        except OSError as e:
            raise InputError(f"--spec {spec_path}: cannot read ({e.strerror})") from None
    else:
        spec = compile_spec(name, cpu_image=cpu_image, gpu_image=gpu_image)
    sha = spec_sha256(spec)
    display = pipeline_name or spec_pipeline_name(spec, spec_path or f"pipeline {name}")
    version = version_name or f"{display}-{sha[:12]}"
    description = f"onereward {__version__}; spec sha256 {sha}"
    if token is None and use_env_token:
        token = kfp_token()
    log.info("token: %s", f"from {token.source}" if token else "none (open endpoint)")

    with KfpApi(host, token) as api:
        # 2. server
        health = api.healthz()
        if health.get("multi_user") and not namespace:
            raise InputError(
                f"--namespace: the KFP server at {api.host} is multi-user; give your profile namespace"
            )
        # 3. pipeline
        pipeline = api.find_pipeline(display, namespace)
        created = pipeline is None
        if pipeline is None:
            pipeline = api.create_pipeline(display, f"onereward pipeline {name}", namespace)
            log.info("created pipeline %s (%s)", display, pipeline.get("pipeline_id"))
        pipeline_id = pipeline["pipeline_id"]
        # 4. version
        found = api.find_version(pipeline_id, version)
        if found is not None and sha not in (found.get("description") or "") and version_name:
            raise InputError(
                f"--version-name {version}: pipeline {display!r} already has this version with another spec; "
                "choose another name or leave it out (the default name carries the spec hash)"
            )
        uploaded = found is None
        if found is None:
            found = api.upload_version(pipeline_id, version, description, spec)
            log.info(
                "uploaded version %s (%s, %d bytes)", version, found.get("pipeline_version_id"), len(spec)
            )
        else:
            log.info(
                "version %s already uploaded (%s): reusing it", version, found.get("pipeline_version_id")
            )
        version_id = found["pipeline_version_id"]
        # 5. experiment
        exp = api.find_experiment(experiment, namespace) or api.create_experiment(experiment, namespace)
        # 6. run
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "display_name": run_name or f"{name} {stamp}",
            "description": f"onereward pipeline submit {name} ({version})",
            "experiment_id": exp["experiment_id"],
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": params},
        }
        if service_account:
            body["service_account"] = service_account
        run = api.create_run(body)
    run_id = run.get("run_id")
    if not run_id:
        raise KfpApiError(f"KFP API POST {API}/runs: the answer has no run_id ({sorted(run)})")
    url = f"{(ui_host or host).rstrip('/')}/#/runs/details/{run_id}"
    return Submitted(
        pipeline_id=pipeline_id,
        pipeline_created=created,
        version_id=version_id,
        version_name=version,
        version_uploaded=uploaded,
        experiment_id=exp["experiment_id"],
        run_id=run_id,
        run_url=url,
    )
