"""Pipeline definitions. Parameters are typed, documented, grouped by stage prefix, and their
defaults run as they are (tiny profile, embedded default).

The Label Studio token reaches the annotation steps from the Kubernetes Secret
``label-studio-api`` (key ``api-key``) as ``LABEL_STUDIO_API_KEY``; it is never a parameter.
Locally (kfp.local) Kubernetes settings and resources are ignored and the variable is inherited from
the calling environment.
"""

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, pipeline_channel

from onereward_kfp.components.build_zoo import build_zoo
from onereward_kfp.components.export_annotations import export_annotations
from onereward_kfp.components.generate_candidates import generate_candidates
from onereward_kfp.components.import_annotations import import_annotations
from onereward_kfp.components.merge_candidates import merge_candidates, plan_shards
from onereward_kfp.components.select_subset import select_subset
from onereward_kfp.components.simulate_annotations import simulate_annotations
from onereward_kfp.components.synthesize_pool import synthesize_pool
from onereward_kfp.components.train_reward_model import train_reward_model

LABEL_STUDIO_SECRET = "label-studio-api"
LABEL_STUDIO_SECRET_KEYS = {"api-key": "LABEL_STUDIO_API_KEY"}


def _label_studio_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(
        task, secret_name=LABEL_STUDIO_SECRET, secret_key_to_env=LABEL_STUDIO_SECRET_KEYS
    )
    return task


def _gpu(task: dsl.PipelineTask, cpu: str = "8", memory: str = "64G") -> dsl.PipelineTask:
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    return task


def _cpu(task: dsl.PipelineTask, cpu: str = "2", memory: str = "8G") -> dsl.PipelineTask:
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    return task


def _collect_steps(
    pool: pipeline_channel.PipelineChannel,
    zoo: pipeline_channel.PipelineChannel,
    profile: str,
    seed: int,
    select_size: int,
    select_per_task: bool,
    select_backend: str,
    generate_family: str,
    generate_num_candidates: int,
    generate_shards: int,
    annotate_label_studio_url: str,
    annotate_document_root: str,
    annotate_project_title: str,
    annotate_project_version: str,
    annotate_predictions: str,
) -> dsl.PipelineTask:
    select = select_subset(
        pool=pool,
        zoo=zoo,
        size=select_size,
        profile=profile,
        per_task=select_per_task,
        backend=select_backend,
        seed=seed,
    ).set_display_name("select_subset")
    _gpu(select)
    # Fan-out over GPU workers: each shard generates a disjoint part of the subset; one merge.
    shards = plan_shards(shards=generate_shards).set_display_name("plan_shards")
    with dsl.ParallelFor(shards.output, name="generate-shards") as shard:
        generate = generate_candidates(
            subset=select.outputs["subset"],
            zoo=zoo,
            profile=profile,
            family=generate_family,
            num_candidates=generate_num_candidates,
            seed=seed,
            shard=shard,
        ).set_display_name("generate_candidates")
        _gpu(generate)
    merged = merge_candidates(shards=dsl.Collected(generate.outputs["candidates"])).set_display_name(
        "merge_candidates"
    )
    _cpu(merged)
    export = export_annotations(
        candidates=merged.outputs["candidates"],
        label_studio_url=annotate_label_studio_url,
        document_root=annotate_document_root,
        project_title=annotate_project_title,
        project_version=annotate_project_version,
        predictions=annotate_predictions,
    ).set_display_name("export_annotations")
    _label_studio_env(_cpu(export))
    return export


@dsl.pipeline(
    name="collect",
    description="select_subset -> generate_candidates -> export_annotations: candidates for human annotation.",
)
def collect(
    pool_uri: str,
    profile: str = "tiny",
    seed: int = 0,
    select_size: int = 24,
    select_per_task: bool = True,
    select_backend: str = "auto",
    generate_family: str = "flux_fill",
    generate_num_candidates: int = 4,
    generate_shards: int = 1,
    annotate_label_studio_url: str = "",
    annotate_document_root: str = "",
    annotate_project_title: str = "onereward",
    annotate_project_version: str = "v1",
    annotate_predictions: str = "none",
):
    """Collect candidates for annotation from a source pool.

    Args:
        pool_uri: URI of a pool artifact (object store path or local dir) produced by synth or an import.
        profile: tiny or full.
        seed: seed of every stochastic step.
        select_size: subset size.
        select_per_task: cluster each task separately.
        select_backend: clustering backend: auto, sklearn, faiss.
        generate_family: generator family: flux_fill or sd_inpaint.
        generate_num_candidates: candidates per item.
        generate_shards: parallel generation shards (one GPU each), merged afterwards.
        annotate_label_studio_url: Label Studio URL ("" writes tasks offline).
        annotate_document_root: Label Studio local-files document root.
        annotate_project_title: Label Studio project title.
        annotate_project_version: project version (title + version identify the project).
        annotate_predictions: pre-annotations: none or oracle.
    """
    pool = dsl.importer(artifact_uri=pool_uri, artifact_class=Artifact, reimport=False).set_display_name(
        "pool"
    )
    zoo = build_zoo(profile=profile, seed=seed).set_display_name("build_zoo")
    _cpu(zoo)
    _collect_steps(
        pool.output,
        zoo.outputs["zoo"],
        profile,
        seed,
        select_size,
        select_per_task,
        select_backend,
        generate_family,
        generate_num_candidates,
        generate_shards,
        annotate_label_studio_url,
        annotate_document_root,
        annotate_project_title,
        annotate_project_version,
        annotate_predictions,
    )


@dsl.pipeline(
    name="train",
    description="import_annotations -> train_reward_model from a Label Studio project reference.",
)
def train(
    annotations_uri: str,
    profile: str = "tiny",
    seed: int = 0,
    reward_max_steps: int = 0,
    reward_finetune: str = "",
):
    """Train the reward model from annotations.

    Args:
        annotations_uri: URI of a project reference (export_annotations) or annotations artifact.
        profile: tiny or full.
        seed: seed of every stochastic step.
        reward_max_steps: reward-model training steps (0 = the profile's).
        reward_finetune: full or lora ("" = the profile's).
    """
    annotations = dsl.importer(
        artifact_uri=annotations_uri, artifact_class=Artifact, reimport=False
    ).set_display_name("annotations")
    zoo = build_zoo(profile=profile, seed=seed).set_display_name("build_zoo")
    _cpu(zoo)
    imported = import_annotations(annotations=annotations.output).set_display_name("import_annotations")
    _label_studio_env(_cpu(imported))
    reward = train_reward_model(
        preferences=imported.outputs["preferences"],
        zoo=zoo.outputs["zoo"],
        profile=profile,
        max_steps=reward_max_steps,
        finetune=reward_finetune,
        seed=seed,
    ).set_display_name("train_reward_model")
    _gpu(reward)


@dsl.pipeline(
    name="end-to-end",
    description="Everything on one machine with simulated annotators: the embedded demo.",
)
def end_to_end(
    profile: str = "tiny",
    seed: int = 0,
    synth_items: int = 48,
    synth_image_size: int = 64,
    select_size: int = 24,
    select_per_task: bool = True,
    select_backend: str = "auto",
    generate_family: str = "flux_fill",
    generate_num_candidates: int = 4,
    generate_shards: int = 1,
    annotate_label_studio_url: str = "",
    annotate_document_root: str = "",
    annotate_project_title: str = "onereward-demo",
    annotate_project_version: str = "v1",
    annotate_predictions: str = "none",
    annotate_noise: float = 0.0,
    annotate_threshold: float = 0.02,
    annotate_annotators: int = 1,
    reward_max_steps: int = 0,
    reward_finetune: str = "",
):
    """Synthetic pool -> subset -> candidates -> (simulated) annotation -> preferences -> reward model.

    Args:
        profile: tiny or full.
        seed: seed of every stochastic step.
        synth_items: synthetic pool size.
        synth_image_size: synthetic image side in pixels.
        select_size: subset size.
        select_per_task: cluster each task separately.
        select_backend: clustering backend: auto, sklearn, faiss.
        generate_family: generator family: flux_fill or sd_inpaint.
        generate_num_candidates: candidates per item.
        generate_shards: parallel generation shards (one GPU each), merged afterwards.
        annotate_label_studio_url: Label Studio URL ("" = offline simulated annotation).
        annotate_document_root: Label Studio local-files document root.
        annotate_project_title: Label Studio project title.
        annotate_project_version: project version.
        annotate_predictions: pre-annotations: none or oracle.
        annotate_noise: simulated annotator noise.
        annotate_threshold: oracle spread below which a dimension is "No clear difference".
        annotate_annotators: simulated annotators per task.
        reward_max_steps: reward-model training steps (0 = the profile's).
        reward_finetune: full or lora ("" = the profile's).
    """
    zoo = build_zoo(profile=profile, seed=seed).set_display_name("build_zoo")
    _cpu(zoo)
    pool = synthesize_pool(items=synth_items, seed=seed, image_size=synth_image_size).set_display_name(
        "synthesize_pool"
    )
    _cpu(pool)
    export = _collect_steps(
        pool.outputs["pool"],
        zoo.outputs["zoo"],
        profile,
        seed,
        select_size,
        select_per_task,
        select_backend,
        generate_family,
        generate_num_candidates,
        generate_shards,
        annotate_label_studio_url,
        annotate_document_root,
        annotate_project_title,
        annotate_project_version,
        annotate_predictions,
    )
    simulate = simulate_annotations(
        project=export.outputs["project"],
        noise=annotate_noise,
        threshold=annotate_threshold,
        annotators=annotate_annotators,
        seed=seed,
    ).set_display_name("simulate_annotations")
    _label_studio_env(_cpu(simulate))
    imported = import_annotations(annotations=simulate.outputs["annotations"]).set_display_name(
        "import_annotations"
    )
    _label_studio_env(_cpu(imported))
    reward = train_reward_model(
        preferences=imported.outputs["preferences"],
        zoo=zoo.outputs["zoo"],
        profile=profile,
        max_steps=reward_max_steps,
        finetune=reward_finetune,
        seed=seed,
    ).set_display_name("train_reward_model")
    _gpu(reward)


PIPELINES = {"collect": collect, "train": train, "end_to_end": end_to_end}

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
]

# The merged output of the generate_candidates fan-out is the generate_candidates stage's artifact.
STAGE_NAMES = {"merge_candidates": "generate_candidates"}
