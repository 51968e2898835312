"""Pipeline definitions. Parameters are typed, documented, grouped by stage prefix, and their
defaults run as they are (tiny profile, embedded default).

A pipeline's stage parameters are not written out here: ``<stage>_<name>`` is derived from the
parameter ``<name>`` of the stage's component (same type, default and description), which in turn
mirrors the stage's config dataclass (``onereward.<stage>.config``; a test checks both links). So
``collect``, ``train`` and ``end_to_end`` share one list per stage, and a new setting reaches the
UI by adding it to the config and the component. ``profile`` and ``seed`` are pipeline-wide: they
go to every component that takes them.

The Label Studio token reaches the annotation steps from the Kubernetes Secret
``label-studio-api`` (key ``api-key``) as ``LABEL_STUDIO_API_KEY``; it is never a parameter. For
task images in S3 / MinIO, export_annotations reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
from the optional Secret ``onereward-s3`` (keys ``aws-access-key-id`` / ``aws-secret-access-key``).
Locally (kfp.local) Kubernetes settings and resources are ignored and the variable is inherited from
the calling environment.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, pipeline_channel

from onereward_kfp.components.build_zoo import build_zoo
from onereward_kfp.components.evaluate import evaluate
from onereward_kfp.components.export_annotations import export_annotations
from onereward_kfp.components.generate_candidates import generate_candidates
from onereward_kfp.components.import_annotations import import_annotations
from onereward_kfp.components.import_models import import_models
from onereward_kfp.components.launch_training import cleanup_trainjobs
from onereward_kfp.components.merge_candidates import merge_candidates, plan_shards
from onereward_kfp.components.policy_references import policy_references
from onereward_kfp.components.select_subset import select_subset
from onereward_kfp.components.simulate_annotations import simulate_annotations
from onereward_kfp.components.synthesize_pool import synthesize_pool
from onereward_kfp.components.train_policy import train_policy
from onereward_kfp.components.train_reward_model import train_reward_model

LABEL_STUDIO_SECRET = "label-studio-api"
LABEL_STUDIO_SECRET_KEYS = {"api-key": "LABEL_STUDIO_API_KEY"}
# Credentials export_annotations uploads the task images to S3 / MinIO with (image_url_prefix s3://).
S3_SECRET = "onereward-s3"
S3_SECRET_KEYS = {"aws-access-key-id": "AWS_ACCESS_KEY_ID", "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY"}

# Stage prefix of pipeline parameters -> the component whose parameters they are.
STAGE_COMPONENTS: dict[str, Any] = {
    "synth": synthesize_pool,
    "select": select_subset,
    "generate": generate_candidates,
    "export": export_annotations,
    "simulate": simulate_annotations,
    "reward": train_reward_model,
    "policy": train_policy,
    "evaluate": evaluate,
}
# Pipeline-wide parameters, passed to every component that takes them.
SHARED_PARAMETERS: dict[str, tuple[type, Any, str]] = {
    "profile": (
        str,
        "tiny",
        "Profile: tiny (embedded default), full (GPU cluster) or a YAML path in the image.",
    ),
    "seed": (int, 0, "Seed of every stochastic step."),
    # Placement of the model steps (select, generate, reward, policy, evaluate); see _model_step.
    "gpu_type": (str, "nvidia.com/gpu", "Accelerator resource the model steps request."),
    "gpus": (
        int,
        0,
        "Accelerators per model step: 0 = CPU only (the tiny profile), 1 for the full profile.",
    ),
    "gpu_node_selector": (
        dict,
        {},
        'Node selector of the model steps, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}.',
    ),
    "gpu_tolerations": (
        list,
        [],
        'Tolerations of the model steps, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}].',
    ),
}
# Component parameters the pipelines set themselves (never pipeline parameters).
WIRED = {
    "generate": ("shard",),
    # The KFP run and task ids name a training step's TrainJob (a retried step reattaches to it).
    "reward": ("run_id", "task_id"),
    "policy": ("run_id", "task_id"),
}
IDS = {"run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "task_id": dsl.PIPELINE_TASK_ID_PLACEHOLDER}

_KFP_TYPES = {"Integer": int, "Float": float, "String": str, "Boolean": bool}

# Volumes from manifests/base (kustomize): the models' Hugging Face cache (filled once by the
# import_models pipeline) and training checkpoints that outlive a pod.
MODELS_PVC, MODELS_MOUNT = "onereward-models", "/models"
CHECKPOINTS_PVC, CHECKPOINTS_MOUNT = "onereward-checkpoints", "/checkpoints"
SHARED_PVC, SHARED_MOUNT = "onereward-artifacts", "/shared"  # a TrainJob's inputs and output
HF_TOKEN_SECRET = "huggingface-token"

# Caching per step (KFP reuses a step's outputs when its inputs and parameters are unchanged):
STEP_CACHING: dict[str, str] = {
    "build_zoo": "on: a pure function of the profile and seed",
    "synthesize_pool": "on: a pure function of its settings",
    "select_subset": "on: deterministic for the pool, models and settings",
    "plan_shards / generate_candidates / merge_candidates": "on: per-candidate seeds; rerunning gives the same bytes",
    "export_annotations / simulate_annotations / import_annotations": "off: they read or change the Label Studio server's state",
    "train_reward_model / policy_references / train_policy": "on: seeded; retried steps resume from their checkpoints",
    "evaluate": "on, unless it talks to Label Studio (human A/B): then off like the annotation steps",
    "import_models": "off: it checks the hub for the models each time (files already there are not fetched)",
}


def stage_parameters(prefix: str) -> dict[str, tuple[type, Any, str]]:
    """``{<prefix>_<name>: (type, default, description)}`` for the parameters of the stage's
    component (artifacts, shared and wired parameters excluded)."""
    spec = STAGE_COMPONENTS[prefix].component_spec
    out = {}
    for name, inp in (spec.inputs or {}).items():
        if inp.type not in _KFP_TYPES or name in SHARED_PARAMETERS or name in WIRED.get(prefix, ()):
            continue
        out[f"{prefix}_{name}"] = (_KFP_TYPES[inp.type], inp.default, inp.description or "")
    return out


class Params(Mapping):
    """The parameters of a pipeline run (channels at compile time), by name; :meth:`stage` picks
    one component's arguments."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def stage(self, prefix: str) -> dict[str, Any]:
        """Arguments of the ``prefix`` stage's component: its ``prefix_*`` parameters, plus the
        shared ones (profile, seed) it takes."""
        inputs = STAGE_COMPONENTS[prefix].component_spec.inputs or {}
        args = {k[len(prefix) + 1 :]: v for k, v in self._values.items() if k.startswith(f"{prefix}_")}
        args = {k: v for k, v in args.items() if k in inputs}
        args.update({k: self._values[k] for k in SHARED_PARAMETERS if k in inputs and k in self._values})
        return args


def stage_pipeline(
    *,
    name: str,
    description: str,
    stages: tuple[str, ...],
    inputs: Mapping[str, tuple[type, Any, str]] | None = None,
    extra: Mapping[str, tuple[type, Any, str]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    shared: bool = True,
) -> Callable[[Callable[[Params], None]], Any]:
    """Make a KFP pipeline from ``build(params)``: its signature is ``inputs`` (required when the
    default is ``inspect.Parameter.empty``), the shared parameters, the derived parameters of
    ``stages`` and ``extra`` ones; ``defaults`` overrides derived defaults for this pipeline
    (e.g. fewer reward steps in the demo). The docstring documents every parameter for the UI."""
    table: dict[str, tuple[type, Any, str]] = {**(inputs or {}), **(SHARED_PARAMETERS if shared else {})}
    for prefix in stages:
        table.update(stage_parameters(prefix))
    table.update(extra or {})
    for key, value in (defaults or {}).items():
        if key not in table:
            raise KeyError(f"pipeline {name}: default for unknown parameter {key!r}")
        typ, _, text = table[key]
        table[key] = (typ, value, text)
    ordered = sorted(table.items(), key=lambda kv: kv[1][1] is not inspect.Parameter.empty)
    signature = inspect.Signature(
        [
            inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=t)
            for k, (t, d, _) in ordered
        ]
    )

    def wrap(build: Callable[[Params], None]) -> Any:
        def pipeline_func(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            build(Params(dict(bound.arguments)))

        pipeline_func.__signature__ = signature  # type: ignore[attr-defined]
        pipeline_func.__name__ = build.__name__
        pipeline_func.__qualname__ = build.__qualname__
        summary = (build.__doc__ or description).strip()
        args_doc = "\n".join(f"    {k}: {' '.join(text.split())}" for k, (_, _, text) in ordered)
        pipeline_func.__doc__ = f"{summary}\n\nArgs:\n{args_doc}\n"
        return pass_loop_inputs(dsl.pipeline(name=name, description=description)(pipeline_func))

    return wrap


def pass_loop_inputs(pipeline: Any) -> Any:
    """Work around a KFP 2.17 compiler gap: a pipeline parameter used only in a task's accelerator
    settings inside a ``dsl.ParallelFor`` (the generate shards' ``gpus`` / ``gpu_type``) is read by
    the task as ``pipelinechannel--<name>`` of the loop's sub-DAG, but the compiler declares it
    neither as the sub-DAG's input nor passes it from the parent. Such a run fails on the cluster and
    under kfp.local ("Parent pipeline input argument 'pipelinechannel--gpus' not found"). This adds
    the declaration and the argument for every sub-DAG input its tasks read and nobody passes."""
    from google.protobuf import json_format

    graph = pipeline.component_spec.implementation.graph
    spec = json_format.MessageToDict(graph)
    components = spec.get("components", {})
    root_inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    prefix = "pipelinechannel--"
    changed = True
    while changed:
        changed = False
        dags = {"root": spec["root"], **{k: c for k, c in components.items() if "dag" in c}}
        for comp_name, comp in dags.items():
            if comp_name == "root":
                continue
            declared = comp.setdefault("inputDefinitions", {}).setdefault("parameters", {})
            for task in comp["dag"].get("tasks", {}).values():
                for arg in task.get("inputs", {}).get("parameters", {}).values():
                    wanted = arg.get("componentInputParameter", "")
                    root_name = wanted[len(prefix) :]
                    if not wanted.startswith(prefix) or wanted in declared or root_name not in root_inputs:
                        continue
                    declared[wanted] = {"parameterType": root_inputs[root_name]["parameterType"]}
                    for parent_name, parent in dags.items():  # every task that runs this sub-DAG
                        for ptask in parent["dag"].get("tasks", {}).values():
                            if ptask.get("componentRef", {}).get("name") != comp_name:
                                continue
                            source = root_name if parent_name == "root" else wanted
                            params = ptask.setdefault("inputs", {}).setdefault("parameters", {})
                            params.setdefault(wanted, {"componentInputParameter": source})
                    changed = True
    graph.Clear()
    json_format.ParseDict(spec, graph)
    return pipeline


# ---- task settings ---------------------------------------------------------------------------


def _label_studio_step(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """A step that talks to Label Studio: the token comes from the Secret (optional, so offline runs
    start on a cluster without it) and caching is off (the step reads or changes server state)."""
    kubernetes.use_secret_as_env(
        task, secret_name=LABEL_STUDIO_SECRET, secret_key_to_env=LABEL_STUDIO_SECRET_KEYS, optional=True
    )
    task.set_caching_options(enable_caching=False)
    # A flaky or restarting server: retry with backoff (the stages are idempotent on rerun).
    task.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")
    return task


# Set on model steps for the cluster (its scratch and models volumes); kfp.local runs each step as
# a process on this machine, which has neither: :func:`local_environment` leaves them out there.
CLUSTER_ONLY_ENV = ("TMPDIR", "HF_HOME", "HF_HUB_OFFLINE")


@contextlib.contextmanager
def local_environment(pipeline: Any) -> Iterator[None]:
    """Run ``pipeline`` (a built pipeline) under kfp.local without the cluster-only environment
    variables, so that local steps keep this machine's TMPDIR and Hugging Face cache. The pipeline's
    spec is restored afterwards (compiled specs always carry them)."""
    from google.protobuf import json_format

    graph = pipeline.component_spec.implementation.graph
    saved = json_format.MessageToDict(graph.deployment_spec)
    local = json_format.MessageToDict(graph.deployment_spec)
    for executor in local.get("executors", {}).values():
        container = executor.get("container", {})
        env = [e for e in container.get("env", []) if e.get("name") not in CLUSTER_ONLY_ENV]
        if "env" in container:
            if env:
                container["env"] = env
            else:
                del container["env"]
    graph.deployment_spec.Clear()
    graph.deployment_spec.update(local)
    try:
        yield
    finally:
        graph.deployment_spec.Clear()
        graph.deployment_spec.update(saved)


def _gpu(task: dsl.PipelineTask, p: Params, cpu: str = "8", memory: str = "64G") -> dsl.PipelineTask:
    """A model step: the accelerators, node selector and tolerations of the pipeline parameters,
    a memory-backed /dev/shm (DataLoader workers, NCCL), scratch space for temporary files, and
    the models volume holding the Hugging Face cache (read offline)."""
    task.set_accelerator_type(p["gpu_type"]).set_accelerator_limit(p["gpus"])
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    kubernetes.add_node_selector_json(task, p["gpu_node_selector"])
    kubernetes.add_toleration_json(task, p["gpu_tolerations"])
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="16Gi"
    )
    # Ephemeral storage for temporary files (KFP sets no container ephemeral-storage request; a
    # generic ephemeral volume gives the step its own scratch space, freed with the pod).
    kubernetes.add_ephemeral_volume(
        task, volume_name="scratch", mount_path="/scratch", access_modes=["ReadWriteOnce"], size="100Gi"
    )
    task.set_env_variable("TMPDIR", "/scratch")
    kubernetes.mount_pvc(task, pvc_name=MODELS_PVC, mount_path=MODELS_MOUNT)
    task.set_env_variable("HF_HOME", f"{MODELS_MOUNT}/huggingface")
    task.set_env_variable("HF_HUB_OFFLINE", "1")
    return task


def _trainer(task: dsl.PipelineTask, p: Params) -> dsl.PipelineTask:
    """A training step: a model step that also mounts the checkpoints volume (point the stage's
    checkpoint_dir under /checkpoints so that a retried or preempted pod resumes) and the shared
    volume a TrainJob reads its inputs from and writes its output to (num_nodes or gpus_per_node
    above 1). Retried with backoff: it resumes from its checkpoint or reattaches to its job."""
    _gpu(task, p, cpu="16", memory="128G")
    kubernetes.mount_pvc(task, pvc_name=CHECKPOINTS_PVC, mount_path=CHECKPOINTS_MOUNT)
    kubernetes.mount_pvc(task, pvc_name=SHARED_PVC, mount_path=SHARED_MOUNT)
    task.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="600s")
    return task


def _cpu(task: dsl.PipelineTask, cpu: str = "2", memory: str = "8G") -> dsl.PipelineTask:
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    return task


# ---- shared wiring ---------------------------------------------------------------------------


def _zoo(p: Params) -> dsl.PipelineTask:
    zoo = build_zoo(profile=p["profile"], seed=p["seed"]).set_display_name("build_zoo")
    return _cpu(zoo)


def _collect_steps(
    pool: pipeline_channel.PipelineChannel, zoo: pipeline_channel.PipelineChannel, p: Params
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """select -> generate (sharded) -> merge -> export; returns (select, export)."""
    select = select_subset(pool=pool, zoo=zoo, **p.stage("select")).set_display_name("select_subset")
    _gpu(select, p)
    # Fan-out over GPU workers: each shard generates a disjoint part of the subset; one merge.
    shards = plan_shards(shards=p["generate_shards"]).set_display_name("plan_shards")
    with dsl.ParallelFor(shards.output, name="generate-shards") as shard:
        generate = generate_candidates(
            subset=select.outputs["subset"], zoo=zoo, shard=shard, **p.stage("generate")
        ).set_display_name("generate_candidates")
        _gpu(generate, p)
    merged = merge_candidates(shards=dsl.Collected(generate.outputs["candidates"])).set_display_name(
        "merge_candidates"
    )
    _cpu(merged)
    export = export_annotations(
        candidates=merged.outputs["candidates"], **p.stage("export")
    ).set_display_name("export_annotations")
    _label_studio_step(_cpu(export))
    kubernetes.use_secret_as_env(
        export, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS, optional=True
    )
    return select, export


def _train_steps(
    annotations: pipeline_channel.PipelineChannel, zoo: pipeline_channel.PipelineChannel, p: Params
):
    """import -> reward SFT."""
    imported = import_annotations(annotations=annotations).set_display_name("import_annotations")
    _label_studio_step(_cpu(imported))
    reward = train_reward_model(
        preferences=imported.outputs["preferences"], zoo=zoo, **IDS, **p.stage("reward")
    ).set_display_name("train_reward_model")
    _trainer(reward, p)
    return reward


# train_policy's rollout settings that its reference rollouts are made with (one source of truth).
REFERENCE_PARAMETERS = ("rollout_steps", "cfg_scale", "guidance", "reference_seeds")


def _policy_steps(
    subset: pipeline_channel.PipelineChannel,
    zoo: pipeline_channel.PipelineChannel,
    reward: dsl.PipelineTask,
    p: Params,
) -> dsl.PipelineTask:
    """reference rollouts of the frozen base (made once) -> RL of the generator against the reward model."""
    references = policy_references(
        subset=subset,
        zoo=zoo,
        profile=p["profile"],
        seed=p["seed"],
        **{k: p[f"policy_{k}"] for k in REFERENCE_PARAMETERS},
    ).set_display_name("policy_references")
    _gpu(references, p)
    policy = train_policy(
        subset=subset,
        reward_model=reward.outputs["reward_model"],
        zoo=zoo,
        references=references.outputs["references"],
        **IDS,
        **p.stage("policy"),
    ).set_display_name("train_policy")
    return _trainer(policy, p)


def _evaluate_step(
    pool: pipeline_channel.PipelineChannel,
    training_items: pipeline_channel.PipelineChannel,
    zoo: pipeline_channel.PipelineChannel,
    reward: dsl.PipelineTask,
    p: Params,
    policy: pipeline_channel.PipelineChannel | None = None,
) -> dsl.PipelineTask:
    """evaluate: the benchmark (pool items not in ``training_items``): the policy (and its EMA)
    against the base, or the base alone when no policy is given."""
    artifacts = {"policy": policy} if policy is not None else {}
    task = evaluate(
        pool=pool,
        training_items=training_items,
        zoo=zoo,
        reward_model=reward.outputs["reward_model"],
        **artifacts,
        **p.stage("evaluate"),
    ).set_display_name("evaluate")
    # The human A/B project may live on a Label Studio server (token from the Secret).
    return _label_studio_step(_gpu(task, p))


GENERATE_SHARDS = {
    "generate_shards": (int, 1, "Parallel generation shards (one GPU each), merged afterwards.")
}


@stage_pipeline(
    name="collect",
    description="select_subset -> generate_candidates -> export_annotations: candidates for human annotation.",
    stages=("select", "generate", "export"),
    inputs={
        "pool_uri": (
            str,
            inspect.Parameter.empty,
            "URI of a pool artifact (object store path or local dir) produced by synth or an import.",
        )
    },
    extra=GENERATE_SHARDS,
)
def collect(p: Params) -> None:
    """Collect candidates for annotation from a source pool."""
    pool = dsl.importer(artifact_uri=p["pool_uri"], artifact_class=Artifact, reimport=False).set_display_name(
        "pool"
    )
    _collect_steps(pool.output, _zoo(p).outputs["zoo"], p)


@stage_pipeline(
    name="train",
    description=(
        "import_annotations -> train_reward_model -> train_policy -> evaluate from a Label Studio project reference."
    ),
    stages=("reward", "policy", "evaluate"),
    inputs={
        "annotations_uri": (
            str,
            inspect.Parameter.empty,
            "URI of a project reference (export_annotations) or annotations artifact.",
        ),
        "pool_uri": (
            str,
            inspect.Parameter.empty,
            "URI of the pool artifact the evaluation benchmark is drawn from (items annotated are held out).",
        ),
        "subset_uri": (
            str,
            inspect.Parameter.empty,
            "URI of the subset artifact (select_subset) whose conditions the policy is trained on.",
        ),
    },
)
def train(p: Params) -> None:
    """Train the reward model from annotations and evaluate against the base on held-out items."""
    annotations = dsl.importer(
        artifact_uri=p["annotations_uri"], artifact_class=Artifact, reimport=False
    ).set_display_name("annotations")
    pool = dsl.importer(artifact_uri=p["pool_uri"], artifact_class=Artifact, reimport=False).set_display_name(
        "pool"
    )
    subset = dsl.importer(
        artifact_uri=p["subset_uri"], artifact_class=Artifact, reimport=False
    ).set_display_name("subset")
    # Whatever ends the run (success, failure, cancel), no TrainJob of it keeps holding GPUs.
    cleanup = cleanup_trainjobs(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("cleanup_trainjobs")
    _cpu(cleanup, cpu="1", memory="1G")
    with dsl.ExitHandler(cleanup, name="train"):
        zoo = _zoo(p).outputs["zoo"]
        reward = _train_steps(annotations.output, zoo, p)
        policy = _policy_steps(subset.output, zoo, reward, p)
        # The benchmark holds out the subset (the RL conditions, and the items annotated for the reward model).
        _evaluate_step(pool.output, subset.output, zoo, reward, p, policy=policy.outputs["policy"])


@stage_pipeline(
    name="end-to-end",
    description="Everything on one machine with simulated annotators: the embedded demo.",
    stages=("synth", "select", "generate", "export", "simulate", "reward", "policy", "evaluate"),
    extra=GENERATE_SHARDS,
    # Simulated people answer the evaluation's blind A/B project. The demo annotates 500 of 640
    # items: the tiny reward VLM (pretrained on the world's degraded pairs) needs about that many
    # items' preferences over generated candidates to reach 0.7 held-out accuracy (the README's
    # reward_pretrain benchmark). train_policy applies the reward gate with its default interval
    # rule: the demo's ~90 held-out items give 14-38 test pairs per task x dimension, so single
    # cells read 0.55-0.61 by chance (the same model scores 0.74 on 1,112 held-out generated pairs
    # of another world, every cell >= 0.67); a cell fails when it is below 0.6 beyond its interval.
    defaults={
        "synth_items": 640,
        "select_size": 500,
        "export_project_title": "onereward-demo",
        # The embedded demo has no Label Studio: simulated annotators answer tasks.json.
        "export_offline": True,
        "evaluate_human": "simulate",
    },
)
def end_to_end(p: Params) -> None:
    """Synthetic pool -> subset -> candidates -> (simulated) annotation -> preferences -> reward model
    -> evaluation against the base on held-out items."""
    zoo = _zoo(p)
    pool = synthesize_pool(**p.stage("synth")).set_display_name("synthesize_pool")
    _cpu(pool)
    select, export = _collect_steps(pool.outputs["pool"], zoo.outputs["zoo"], p)
    simulate = simulate_annotations(
        project=export.outputs["project"], **p.stage("simulate")
    ).set_display_name("simulate_annotations")
    _label_studio_step(_cpu(simulate))
    reward = _train_steps(simulate.outputs["annotations"], zoo.outputs["zoo"], p)
    policy = _policy_steps(select.outputs["subset"], zoo.outputs["zoo"], reward, p)
    _evaluate_step(
        pool.outputs["pool"],
        select.outputs["subset"],
        zoo.outputs["zoo"],
        reward,
        p,
        policy=policy.outputs["policy"],
    )


@stage_pipeline(
    name="import-models",
    description="Download the profile's hub models into the models volume once (Hugging Face cache).",
    stages=(),
    inputs={
        "profile": (
            str,
            "full",
            "Profile whose models to import (full, full-onereward or a YAML path in the image).",
        )
    },
    shared=False,
)
def import_models_pipeline(p: Params) -> None:
    """Fill the models volume: every hub model of the profile, only the files the loaders need."""
    task = import_models(profile=p["profile"]).set_display_name("import_models")
    _cpu(task, cpu="4", memory="16G")
    kubernetes.mount_pvc(task, pvc_name=MODELS_PVC, mount_path=MODELS_MOUNT)
    task.set_env_variable("HF_HOME", f"{MODELS_MOUNT}/huggingface")
    kubernetes.use_secret_as_env(
        task, secret_name=HF_TOKEN_SECRET, secret_key_to_env={"token": "HF_TOKEN"}, optional=True
    )
    task.set_caching_options(enable_caching=False)
    task.set_retry(num_retries=3, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="900s")


# ---- one stage on the artifacts of an earlier run --------------------------------------------


class _Outputs:
    """Stands for a task's ``outputs`` where an imported artifact replaces an upstream step."""

    def __init__(self, **outputs: Any) -> None:
        self.outputs = outputs


def _imported(p: Params, name: str) -> pipeline_channel.PipelineChannel:
    return (
        dsl.importer(artifact_uri=p[f"{name}_uri"], artifact_class=Artifact, reimport=False)
        .set_display_name(name)
        .output
    )


def _uri(name: str, what: str) -> dict[str, tuple[type, Any, str]]:
    return {f"{name}_uri": (str, inspect.Parameter.empty, f"URI of the {what} artifact of an earlier run.")}


@stage_pipeline(
    name="rerun-select-subset",
    description="select_subset alone, on the pool of an earlier run.",
    stages=("select",),
    inputs=_uri("pool", "pool"),
)
def rerun_select_subset(p: Params) -> None:
    """select_subset on an earlier pool artifact."""
    _gpu(select_subset(pool=_imported(p, "pool"), zoo=_zoo(p).outputs["zoo"], **p.stage("select")), p)


@stage_pipeline(
    name="rerun-generate-candidates",
    description="generate_candidates alone (sharded, merged), on the subset of an earlier run.",
    stages=("generate",),
    inputs=_uri("subset", "subset"),
)
def rerun_generate_candidates(p: Params) -> None:
    """generate_candidates (one shard) on an earlier subset artifact."""
    task = generate_candidates(
        subset=_imported(p, "subset"), zoo=_zoo(p).outputs["zoo"], shard="0/1", **p.stage("generate")
    )
    _gpu(task, p)


@stage_pipeline(
    name="rerun-export-annotations",
    description="export_annotations alone, on the candidates of an earlier run.",
    stages=("export",),
    inputs=_uri("candidates", "candidates"),
)
def rerun_export_annotations(p: Params) -> None:
    """export_annotations on an earlier candidates artifact."""
    export = export_annotations(candidates=_imported(p, "candidates"), **p.stage("export"))
    _label_studio_step(_cpu(export))
    kubernetes.use_secret_as_env(
        export, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS, optional=True
    )


@stage_pipeline(
    name="rerun-train-reward-model",
    description="import_annotations -> train_reward_model alone, on the annotations of an earlier run.",
    stages=("reward",),
    inputs=_uri("annotations", "project reference or annotations"),
)
def rerun_train_reward_model(p: Params) -> None:
    """train_reward_model on the answers to an earlier project."""
    _train_steps(_imported(p, "annotations"), _zoo(p).outputs["zoo"], p)


@stage_pipeline(
    name="rerun-train-policy",
    description="policy_references -> train_policy alone, on the subset and reward model of an earlier run.",
    stages=("policy",),
    inputs={**_uri("subset", "subset"), **_uri("reward_model", "reward_model")},
)
def rerun_train_policy(p: Params) -> None:
    """train_policy on an earlier subset and reward model."""
    reward = dsl.importer(artifact_uri=p["reward_model_uri"], artifact_class=Artifact, reimport=False)
    reward.set_display_name("reward_model")
    _policy_steps(_imported(p, "subset"), _zoo(p).outputs["zoo"], _Outputs(reward_model=reward.output), p)


@stage_pipeline(
    name="rerun-evaluate",
    description="evaluate alone: an earlier policy against the base on held-out items of an earlier pool.",
    stages=("evaluate",),
    inputs={
        **_uri("pool", "pool"),
        **_uri("subset", "subset (the items held out of the benchmark)"),
        **_uri("reward_model", "reward_model"),
        **_uri("policy", "policy"),
    },
)
def rerun_evaluate(p: Params) -> None:
    """evaluate an earlier policy on an earlier pool."""
    reward = _Outputs(reward_model=_imported(p, "reward_model"))
    _evaluate_step(
        _imported(p, "pool"),
        _imported(p, "subset"),
        _zoo(p).outputs["zoo"],
        reward,
        p,
        policy=_imported(p, "policy"),
    )


PIPELINES = {
    "collect": collect,
    "train": train,
    "end_to_end": end_to_end,
    "import_models": import_models_pipeline,
    "rerun_select_subset": rerun_select_subset,
    "rerun_generate_candidates": rerun_generate_candidates,
    "rerun_export_annotations": rerun_export_annotations,
    "rerun_train_reward_model": rerun_train_reward_model,
    "rerun_train_policy": rerun_train_policy,
    "rerun_evaluate": rerun_evaluate,
}

# Task (component) name -> the component output holding its artifact. The local runner stores it
# under OUT/<stage name>; STAGE_NAMES renames tasks whose stage has another name.
STAGE_OUTPUTS = {
    "build_zoo": "zoo",
    "synthesize_pool": "pool",
    "select_subset": "subset",
    "merge_candidates": "candidates",
    "export_annotations": "project",
    "simulate_annotations": "annotations",
    "import_annotations": "preferences",
    "train_reward_model": "reward_model",
    "policy_references": "references",
    "train_policy": "policy",
    "evaluate": "evaluation",
}

# Stages in pipeline order (reports and the demo list them so).
STAGE_ORDER = [
    "build_zoo",
    "synthesize_pool",
    "select_subset",
    "generate_candidates",
    "export_annotations",
    "simulate_annotations",
    "import_annotations",
    "train_reward_model",
    "policy_references",
    "train_policy",
    "evaluate",
]

# The merged output of the generate_candidates fan-out is the generate_candidates stage's artifact.
STAGE_NAMES = {"merge_candidates": "generate_candidates"}
