"""Run one library stage (``train-reward``, ``train-policy``) as a TrainJob on a shared volume.

A KFP step's artifacts are local paths in the step's pod, which the training nodes cannot see. So
:func:`launch_stage` (called by the ``launch_train_reward_model`` component and by
``onereward cluster launch-trainjob``):

1. derives the job name from the KFP run and task ids (:func:`onereward.cluster.trainjob.trainjob_name`);
2. copies each input artifact to ``<shared_mount>/trainjobs/<job>/inputs/<flag>`` (skipped when the
   copy is already there with the same content hash: a retry copies nothing);
3. builds the node command ``onereward <entry point> --<flag> <input copy> ... --out
   <job dir>/output <settings>`` and, when the stage has a checkpoint flag the settings leave unset,
   ``--<checkpoint flag> <job dir>/checkpoints`` (so a retried job resumes from its checkpoints);
4. creates the TrainJob or reattaches to it, streams its logs and waits (deleting it on SIGTERM);
5. copies ``<job dir>/output`` (the stage's artifact, written by the nodes) to the step's output path.

The step's pod must mount ``shared_volume`` at ``shared_mount`` (kfp-kubernetes ``mount_pvc``); the
job's nodes mount it at the same path.
"""

from __future__ import annotations

import os
import shutil
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onereward.artifacts import MANIFEST_NAME
from onereward.cluster.config import TrainJobConfig
from onereward.cluster.trainjob import (
    TrainJobApi,
    TrainJobLauncher,
    build_trainjob,
    check_name,
    deleting_on_sigterm,
    trainjob_name,
)
from onereward.config import Config, flag_name
from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("cluster.launch")


@dataclass(frozen=True)
class StageCommand:
    """One library stage as the nodes run it: ``onereward <entry_point> --<flag> <input> ... --<output_flag> DIR <args>``."""

    entry_point: str
    inputs: Mapping[str, str] = field(default_factory=dict)  # flag (no dashes) -> local artifact dir
    args: tuple[str, ...] = ()  # the settings flags
    output_flag: str = "out"
    checkpoint_flag: str | None = None  # e.g. "checkpoint-dir": pointed at the shared volume unless in args


@dataclass(frozen=True)
class Launched:
    """The job a stage ran as, and where its output went."""

    namespace: str
    name: str
    output: Path

    @property
    def handle(self) -> str:
        return f"{self.namespace}/{self.name}"


def cli_flags(cls: type[Config], overrides: Mapping[str, Any]) -> list[str]:
    """The CLI flags that reproduce ``overrides`` (fields of ``cls``). Left out: None (not given: the
    profile's value) and a run setting equal to its default (a profile setting is always passed, as its
    default need not be the profile's value)."""
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in cls.fields()}
    out: list[str] = []
    for name, value in overrides.items():
        if value is None or (not cls.is_profile_setting(name) and value == defaults[name]):
            continue
        if hints[name] is bool:
            out.append(f"--{flag_name(name)}" if value else f"--no-{flag_name(name)}")
        else:
            out += [f"--{flag_name(name)}", str(value)]
    return out


def job_dir(cfg: TrainJobConfig, name: str) -> Path:
    """The job's folder on the shared volume (the same path in the launcher and in the nodes)."""
    return Path(cfg.shared_mount) / "trainjobs" / name


def launch_stage(
    stage: StageCommand,
    out: str | os.PathLike[str],
    cfg: TrainJobConfig,
    *,
    run_id: str = "",
    task_id: str = "",
    name: str = "",
    api: TrainJobApi | None = None,
    api_server: str = "",
) -> Launched:
    """Run ``stage`` as a TrainJob and leave its output artifact in ``out`` (steps in the module docstring)."""
    # 1. settings
    if not cfg.shared_volume:
        raise InputError("trainjob.shared_volume (--shared-volume): expected the PVC claim the nodes share")
    mount = Path(cfg.shared_mount)
    if not mount.is_dir() or not os.access(mount, os.W_OK):
        raise InputError(
            f"trainjob.shared_mount (--shared-mount) {mount}: not a writable directory here; mount PVC "
            f"{cfg.shared_volume} at this path in the launching pod (kfp-kubernetes mount_pvc)"
        )
    name = check_name(name) if name else trainjob_name(run_id, task_id, prefix=stage.entry_point)
    work = job_dir(cfg, name)
    # 2. inputs
    for flag, local in stage.inputs.items():
        stage_input(Path(local), work / "inputs" / flag, what=f"--{flag}")
    # 3. the job
    api = api or TrainJobApi.connect(api_server, cfg.namespace)
    doc = plan_stage(
        stage,
        cfg,
        name=name,
        namespace=api.namespace,
        image=cfg.image or api.own_image(),
        run_id=run_id,
        task_id=task_id,
    )
    # 4. run
    launcher = TrainJobLauncher(api, stream_logs=cfg.stream_logs, poll_s=cfg.poll_seconds)
    with deleting_on_sigterm(api, name):
        launcher.run(doc)
    # 5. output
    produced = work / "output"
    if not (produced / MANIFEST_NAME).is_file():
        raise InputError(f"trainjob {api.namespace}/{name}: completed but wrote no artifact at {produced}")
    copy_dir(produced, Path(out))
    log.info("trainjob %s/%s: output copied from %s to %s", api.namespace, name, produced, out)
    return Launched(api.namespace, name, Path(out))


def stage_args(stage: StageCommand, cfg: TrainJobConfig, name: str) -> list[str]:
    """The stage's arguments on the nodes: inputs, output and checkpoints on the shared volume."""
    work = job_dir(cfg, name)
    args: list[str] = []
    for flag in stage.inputs:
        args += [f"--{flag}", str(work / "inputs" / flag)]
    args += [f"--{stage.output_flag}", str(work / "output"), *stage.args]
    if stage.checkpoint_flag and f"--{stage.checkpoint_flag}" not in stage.args:
        args += [f"--{stage.checkpoint_flag}", str(work / "checkpoints")]
    return args


def plan_stage(
    stage: StageCommand,
    cfg: TrainJobConfig,
    *,
    name: str,
    namespace: str,
    image: str,
    run_id: str = "",
    task_id: str = "",
) -> dict[str, Any]:
    """The TrainJob document that runs ``stage`` (what :func:`launch_stage` creates; ``--dry-run`` prints it)."""
    if not cfg.shared_volume:
        raise InputError("trainjob.shared_volume (--shared-volume): expected the PVC claim the nodes share")
    return build_trainjob(
        cfg,
        name=name,
        namespace=namespace,
        image=image,
        entry_point=stage.entry_point,
        args=stage_args(stage, cfg, name),
        run_id=run_id,
        task_id=task_id,
    )


def stage_input(src: Path, dst: Path, what: str) -> Path:
    """Copy the artifact ``src`` to ``dst`` unless ``dst`` already holds it (same manifest), atomically."""
    if not src.is_dir():
        raise InputError(f"{what} {src}: expected an artifact directory")
    if dst.is_dir() and _manifest_bytes(dst) is not None and _manifest_bytes(dst) == _manifest_bytes(src):
        log.info("%s: already on the shared volume at %s", what, dst)
        return dst
    copy_dir(src, dst)
    return dst


def copy_dir(src: Path, dst: Path) -> None:
    """Replace ``dst`` with a copy of ``src`` (staged beside it, then renamed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=False)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
    os.replace(tmp, dst)


def _manifest_bytes(path: Path) -> bytes | None:
    try:
        return (path / MANIFEST_NAME).read_bytes()
    except OSError:
        return None


# The volumes and environment every training node gets on the cluster (manifests/base): the models'
# Hugging Face cache read offline, and the checkpoints volume.
CLUSTER_VOLUMES = "onereward-models:/models:ro,onereward-checkpoints:/checkpoints"
CLUSTER_ENV = "HF_HOME=/models/huggingface,HF_HUB_OFFLINE=1"


def distributed(num_nodes: int, gpus_per_node: int) -> bool:
    """True when a training step asks for more than one process: it then runs as a TrainJob."""
    return num_nodes > 1 or gpus_per_node > 1


def launch_distributed(
    entry_point: str,
    inputs: Mapping[str, str],
    settings_cls: type[Config],
    settings: Mapping[str, Any],
    *,
    profile: str,
    out: str,
    num_nodes: int,
    gpus_per_node: int,
    run_id: str,
    task_id: str,
    api_server: str = "",
    **trainjob: Any,
) -> Launched:
    """A training component's multi-GPU path: the same stage (``onereward <entry_point>``) with the
    same settings, as a TrainJob of ``num_nodes`` x ``gpus_per_node`` processes on the cluster's
    volumes; its artifact lands in ``out``. The launching pod mounts the shared volume at /shared.
    ``trainjob``: other :class:`TrainJobConfig` fields (the defaults suit manifests/base)."""
    stage = StageCommand(
        entry_point=entry_point,
        inputs=dict(inputs),
        args=("--profile", profile, *cli_flags(settings_cls, settings)),
        checkpoint_flag="checkpoint-dir",
    )
    cfg = TrainJobConfig.resolve(
        None,
        {"volumes": CLUSTER_VOLUMES, "env": CLUSTER_ENV, **trainjob},
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
    )
    return launch_stage(stage, out, cfg, run_id=run_id, task_id=task_id, api_server=api_server)
