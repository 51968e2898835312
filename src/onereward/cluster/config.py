"""Settings of a distributed training job (one declaration; see :mod:`onereward.config`).

:class:`TrainJobConfig` says where and how a training stage runs as a Kubeflow Trainer v2 TrainJob:
nodes, GPUs, image, runtime, volumes, placement. The same fields are the flags of
``onereward cluster launch-trainjob`` and the parameters of the ``launch_train_reward_model``
component. List-like settings are plain strings (one KFP parameter each), parsed and validated here:

- ``volumes``: ``claim:/mount[:ro]``, comma-separated;
- ``env``: ``NAME=value``, comma-separated; ``secret_env``: ``NAME=secret:key``, comma-separated;
- ``node_selector``: ``key=value``, comma-separated;
- ``tolerations``: ``key[=value]:Effect``, comma-separated (``Exists`` when there is no value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal, NoReturn

from onereward.config import Config, ConfigError, setting

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class VolumeSpec:
    """A PVC mounted into every node."""

    claim: str
    mount: str
    read_only: bool = False


@dataclass(frozen=True)
class TrainJobConfig(Config):
    """Where and how a training stage runs as a Kubeflow Trainer v2 TrainJob (runtime torch-distributed)."""

    section: ClassVar[str] = "trainjob"

    num_nodes: int = setting(1, "Training nodes (pods) of the TrainJob.")
    gpus_per_node: int = setting(
        1, "GPUs per node, one training process each (0 = one CPU process per node)."
    )
    gpu_resource: str = setting("nvidia.com/gpu", "Extended resource name the GPUs are requested as.")
    cpu_per_node: str = setting("", "CPU request and limit per node, e.g. 32 ('' = the runtime's).")
    memory_per_node: str = setting("", "Memory request and limit per node, e.g. 512Gi ('' = the runtime's).")
    image: str = setting("", "Training image ('' = the image of the launching pod itself).")
    runtime: str = setting("torch-distributed", "ClusterTrainingRuntime the job runs on (spec.runtimeRef).")
    namespace: str = setting(
        "", "Namespace of the job ('' = the launching pod's namespace, else the kubeconfig's)."
    )
    launcher: Literal["accelerate", "torchrun"] = setting(
        "accelerate",
        "Process launcher on each node: accelerate launch (strategy from accelerate_config) or torchrun.",
    )
    accelerate_config: str = setting(
        "configs/accelerate/ddp.yaml",
        "accelerate config file inside the image (DDP or FSDP); machine and process counts come from the job.",
    )
    shared_volume: str = setting(
        "onereward-artifacts",
        "PVC claim mounted in the launcher and in every node: the job's inputs, output and checkpoints.",
    )
    shared_mount: str = setting(
        "/shared", "Mount path of shared_volume (the same in the launcher and the nodes)."
    )
    volumes: str = setting(
        "", "More PVCs for the nodes: claim:/mount[:ro], comma-separated (e.g. the model volume)."
    )
    env: str = setting("", "Environment of the training processes: NAME=value, comma-separated.")
    secret_env: str = setting(
        "", "Environment from Secrets: NAME=secret:key, comma-separated (e.g. HF_TOKEN=hf-token:token)."
    )
    node_selector: str = setting("", "Node selector of the nodes: key=value, comma-separated.")
    tolerations: str = setting(
        "", "Tolerations of the nodes: key[=value]:Effect, comma-separated (e.g. nvidia.com/gpu:NoSchedule)."
    )
    service_account: str = setting("", "Service account of the nodes ('' = the namespace's default).")
    shm_size: str = setting("16Gi", "Size of the memory-backed /dev/shm of each node ('' = none).")
    active_deadline_seconds: int = setting(0, "Fail the job after this many seconds (0 = no deadline).")
    stream_logs: bool = setting(True, "Stream the nodes' logs into the launcher's log.")
    poll_seconds: float = setting(5.0, "Seconds between looks for new pods to stream logs from.")

    def validate(self) -> None:
        self.require(self.num_nodes >= 1, "num_nodes", "expected an integer >= 1")
        self.require(self.gpus_per_node >= 0, "gpus_per_node", "expected an integer >= 0")
        self.require(
            "/" in self.gpu_resource, "gpu_resource", "expected a resource name such as nvidia.com/gpu"
        )
        for name in ("cpu_per_node", "memory_per_node", "shm_size"):
            self._match(name, _QUANTITY, "a quantity such as 8, 500m or 64Gi", optional=True)
        self._match("runtime", _DNS_SUBDOMAIN, "a runtime name such as torch-distributed")
        self._match("namespace", _DNS_LABEL, "a namespace name", optional=True)
        self._match("shared_volume", _DNS_SUBDOMAIN, "a PVC claim name", optional=True)
        self._match("service_account", _DNS_SUBDOMAIN, "a service account name", optional=True)
        self.require(
            self.launcher != "accelerate" or bool(self.accelerate_config),
            "accelerate_config",
            "expected a config file path when launcher is accelerate",
        )
        self.require(self.shared_mount.startswith("/"), "shared_mount", "expected an absolute path")
        self.require(self.active_deadline_seconds >= 0, "active_deadline_seconds", "expected an integer >= 0")
        self.require(self.poll_seconds > 0, "poll_seconds", "expected a number > 0")
        # The list-like settings parse (each parser fails naming its field).
        self.volume_specs()
        self.env_pairs()
        self.secret_env_refs()
        self.node_selector_pairs()
        self.toleration_specs()

    # ---- parsed views of the list-like settings ------------------------------------------------
    @property
    def procs_per_node(self) -> int:
        """Training processes per node: one per GPU, or one on a CPU node."""
        return max(1, self.gpus_per_node)

    def volume_specs(self) -> list[VolumeSpec]:
        out = []
        for item in _items(self.volumes):
            parts = item.split(":")
            ro = len(parts) == 3 and parts[2] == "ro"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not ro):
                self._bad("volumes", f"expected claim:/mount[:ro] items, got {item!r}")
            claim, mount = parts[0], parts[1]
            if not _DNS_SUBDOMAIN.match(claim) or not mount.startswith("/"):
                self._bad("volumes", f"expected a claim name and an absolute mount path, got {item!r}")
            out.append(VolumeSpec(claim, mount, ro))
        return out

    def env_pairs(self) -> list[tuple[str, str]]:
        return [self._pair("env", item, "NAME=value", _ENV_NAME) for item in _items(self.env)]

    def secret_env_refs(self) -> list[tuple[str, str, str]]:
        out = []
        for item in _items(self.secret_env):
            name, ref = self._pair("secret_env", item, "NAME=secret:key", _ENV_NAME)
            secret, _, key = ref.partition(":")
            if not _DNS_SUBDOMAIN.match(secret) or not key:
                self._bad("secret_env", f"expected NAME=secret:key items, got {item!r}")
            out.append((name, secret, key))
        return out

    def node_selector_pairs(self) -> dict[str, str]:
        return dict(
            self._pair("node_selector", item, "key=value", _LABEL_KEY) for item in _items(self.node_selector)
        )

    def toleration_specs(self) -> list[dict[str, str]]:
        out = []
        for item in _items(self.tolerations):
            selector, sep, effect = item.rpartition(":")
            if not sep or effect not in EFFECTS:
                self._bad(
                    "tolerations",
                    f"expected key[=value]:Effect items, Effect one of {', '.join(EFFECTS)}; got {item!r}",
                )
            key, has_value, value = selector.partition("=")
            if key and not _LABEL_KEY.match(key):
                self._bad("tolerations", f"expected a label key before ':', got {item!r}")
            tol = {"key": key, "operator": "Equal" if has_value else "Exists", "effect": effect}
            if has_value:
                tol["value"] = value
            if not key:
                del tol["key"]
            out.append(tol)
        return out

    def _match(self, field: str, pattern: re.Pattern[str], what: str, optional: bool = False) -> None:
        value = getattr(self, field)
        ok = (optional and value == "") or bool(pattern.match(value))
        self.require(ok, field, f"expected '' or {what}" if optional else f"expected {what}")

    def _bad(self, field: str, detail: str) -> NoReturn:
        raise ConfigError(self.section, field, detail)

    def _pair(self, field: str, item: str, form: str, key_pattern: re.Pattern[str]) -> tuple[str, str]:
        key, sep, value = item.partition("=")
        if not sep or not key_pattern.match(key.strip()):
            self._bad(field, f"expected {form} items, got {item!r}")
        return key.strip(), value.strip()


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
