"""Pipeline definitions. Parameters are typed, documented, grouped by stage prefix, and their
defaults run as they are (tiny profile, embedded default).

The Label Studio token reaches the annotation steps from the Kubernetes Secret
``label-studio-api`` (key ``api-key``) as ``LABEL_STUDIO_API_KEY``; it is never a parameter. For
task images in S3 / MinIO, export_annotations reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
from the optional Secret ``onereward-s3`` (keys ``aws-access-key-id`` / ``aws-secret-access-key``).
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
# Credentials export_annotations uploads the task images to S3 / MinIO with (image_url_prefix s3://).
S3_SECRET = "onereward-s3"
S3_SECRET_KEYS = {"aws-access-key-id": "AWS_ACCESS_KEY_ID", "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY"}


def _label_studio_step(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """A step that talks to Label Studio: the token comes from the Secret (optional, so offline runs
    start on a cluster without it) and caching is off (the step reads or changes server state)."""
    kubernetes.use_secret_as_env(
        task, secret_name=LABEL_STUDIO_SECRET, secret_key_to_env=LABEL_STUDIO_SECRET_KEYS, optional=True
    )
    task.set_caching_options(enable_caching=False)
    return task


def _gpu(task: dsl.PipelineTask, cpu: str = "8", memory: str = "64G") -> dsl.PipelineTask:
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    return task


def _cpu(task: dsl.PipelineTask, cpu: str = "2", memory: str = "8G") -> dsl.PipelineTask:
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    return task


# Pipeline parameters are grouped by stage prefix (select_*, generate_*, annotate_*, ...).
PARAMETER_PREFIXES = ("select", "generate", "annotate", "reward", "synth")


def _params(scope: dict) -> dict:
    """The pipeline parameters (typed channels) from a pipeline function's local scope."""
    return {
        k: v for k, v in scope.items() if k in ("profile", "seed") or k.split("_")[0] in PARAMETER_PREFIXES
    }


def _collect_steps(
    pool: pipeline_channel.PipelineChannel, zoo: pipeline_channel.PipelineChannel, p: dict
) -> dsl.PipelineTask:
    """select -> generate (sharded) -> merge -> export; ``p`` holds the pipeline's parameters."""
    select = select_subset(
        pool=pool,
        zoo=zoo,
        size=p["select_size"],
        profile=p["profile"],
        per_task=p["select_per_task"],
        backend=p["select_backend"],
        seed=p["seed"],
    ).set_display_name("select_subset")
    _gpu(select)
    # Fan-out over GPU workers: each shard generates a disjoint part of the subset; one merge.
    shards = plan_shards(shards=p["generate_shards"]).set_display_name("plan_shards")
    with dsl.ParallelFor(shards.output, name="generate-shards") as shard:
        generate = generate_candidates(
            subset=select.outputs["subset"],
            zoo=zoo,
            profile=p["profile"],
            family=p["generate_family"],
            num_candidates=p["generate_num_candidates"],
            seed=p["seed"],
            shard=shard,
            min_steps=p["generate_min_steps"],
            max_steps=p["generate_max_steps"],
            cfg_min=p["generate_cfg_min"],
            cfg_max=p["generate_cfg_max"],
            strength_min=p["generate_strength_min"],
            strength_max=p["generate_strength_max"],
            negative_prompts=p["generate_negative_prompts"],
            guidance=p["generate_guidance"],
            feather=p["generate_feather"],
        ).set_display_name("generate_candidates")
        _gpu(generate)
    merged = merge_candidates(shards=dsl.Collected(generate.outputs["candidates"])).set_display_name(
        "merge_candidates"
    )
    _cpu(merged)
    export = export_annotations(
        candidates=merged.outputs["candidates"],
        label_studio_url=p["annotate_label_studio_url"],
        document_root=p["annotate_document_root"],
        image_url_prefix=p["annotate_image_url_prefix"],
        s3_endpoint=p["annotate_s3_endpoint"],
        project_title=p["annotate_project_title"],
        project_version=p["annotate_project_version"],
        predictions=p["annotate_predictions"],
        overlap=p["annotate_overlap"],
    ).set_display_name("export_annotations")
    _label_studio_step(_cpu(export))
    kubernetes.use_secret_as_env(
        export, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS, optional=True
    )
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
    generate_num_candidates: int = -1,
    generate_shards: int = 1,
    generate_min_steps: int = -1,
    generate_max_steps: int = -1,
    generate_cfg_min: float = -1.0,
    generate_cfg_max: float = -1.0,
    generate_strength_min: float = -1.0,
    generate_strength_max: float = -1.0,
    generate_negative_prompts: str = "",
    generate_guidance: float = -1.0,
    generate_feather: int = -1,
    annotate_label_studio_url: str = "",
    annotate_document_root: str = "",
    annotate_image_url_prefix: str = "",
    annotate_s3_endpoint: str = "",
    annotate_project_title: str = "onereward",
    annotate_project_version: str = "v1",
    annotate_predictions: str = "none",
    annotate_overlap: int = 1,
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
        generate_num_candidates: candidates per item (-1 = the profile's).
        generate_shards: parallel generation shards (one GPU each), merged afterwards.
        generate_min_steps: fewest inference steps sampled (-1 = the profile's).
        generate_max_steps: most inference steps sampled (-1 = the profile's).
        generate_cfg_min: lowest true-CFG scale sampled (-1 = the profile's).
        generate_cfg_max: highest true-CFG scale sampled (-1 = the profile's).
        generate_strength_min: lowest initial noise strength sampled (-1 = the profile's).
        generate_strength_max: highest initial noise strength sampled (-1 = the profile's).
        generate_negative_prompts: ";"-separated negative prompts, "none" = no negative ("" = the profile's).
        generate_guidance: FLUX distilled guidance input (-1 = the profile's).
        generate_feather: paste-back feather radius in pixels (-1 = the profile's).
        annotate_label_studio_url: Label Studio URL ("" writes tasks offline).
        annotate_document_root: Label Studio local-files document root (a volume shared with Label Studio).
        annotate_image_url_prefix: s3:// or gs:// prefix serving the images instead (the cluster route).
        annotate_s3_endpoint: S3 endpoint for MinIO ("" = AWS).
        annotate_project_title: Label Studio project title.
        annotate_project_version: project version (title + version identify the project).
        annotate_predictions: pre-annotations: none or oracle.
        annotate_overlap: annotators per task.
    """
    pool = dsl.importer(artifact_uri=pool_uri, artifact_class=Artifact, reimport=False).set_display_name(
        "pool"
    )
    zoo = build_zoo(profile=profile, seed=seed).set_display_name("build_zoo")
    _cpu(zoo)
    _collect_steps(pool.output, zoo.outputs["zoo"], _params(locals()))


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
    _label_studio_step(_cpu(imported))
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
    generate_num_candidates: int = -1,
    generate_shards: int = 1,
    generate_min_steps: int = -1,
    generate_max_steps: int = -1,
    generate_cfg_min: float = -1.0,
    generate_cfg_max: float = -1.0,
    generate_strength_min: float = -1.0,
    generate_strength_max: float = -1.0,
    generate_negative_prompts: str = "",
    generate_guidance: float = -1.0,
    generate_feather: int = -1,
    annotate_label_studio_url: str = "",
    annotate_document_root: str = "",
    annotate_image_url_prefix: str = "",
    annotate_s3_endpoint: str = "",
    annotate_project_title: str = "onereward-demo",
    annotate_project_version: str = "v1",
    annotate_predictions: str = "none",
    annotate_overlap: int = 1,
    annotate_noise: float = 0.0,
    annotate_threshold: float = 0.02,
    annotate_annotators: int = 1,
    reward_max_steps: int = 400,
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
        generate_num_candidates: candidates per item (-1 = the profile's).
        generate_shards: parallel generation shards (one GPU each), merged afterwards.
        generate_min_steps: fewest inference steps sampled (-1 = the profile's).
        generate_max_steps: most inference steps sampled (-1 = the profile's).
        generate_cfg_min: lowest true-CFG scale sampled (-1 = the profile's).
        generate_cfg_max: highest true-CFG scale sampled (-1 = the profile's).
        generate_strength_min: lowest initial noise strength sampled (-1 = the profile's).
        generate_strength_max: highest initial noise strength sampled (-1 = the profile's).
        generate_negative_prompts: ";"-separated negative prompts, "none" = no negative ("" = the profile's).
        generate_guidance: FLUX distilled guidance input (-1 = the profile's).
        generate_feather: paste-back feather radius in pixels (-1 = the profile's).
        annotate_label_studio_url: Label Studio URL ("" = offline simulated annotation).
        annotate_document_root: Label Studio local-files document root (a volume shared with Label Studio).
        annotate_image_url_prefix: s3:// or gs:// prefix serving the images instead (the cluster route).
        annotate_s3_endpoint: S3 endpoint for MinIO ("" = AWS).
        annotate_project_title: Label Studio project title.
        annotate_project_version: project version.
        annotate_predictions: pre-annotations: none or oracle.
        annotate_overlap: annotators per task.
        annotate_noise: simulated annotator noise.
        annotate_threshold: oracle spread below which a dimension is "No clear difference".
        annotate_annotators: simulated annotators per task.
        reward_max_steps: reward-model training steps (0 = the profile's; 400 suits the demo's small pool).
        reward_finetune: full or lora ("" = the profile's).
    """
    zoo = build_zoo(profile=profile, seed=seed).set_display_name("build_zoo")
    _cpu(zoo)
    pool = synthesize_pool(items=synth_items, seed=seed, image_size=synth_image_size).set_display_name(
        "synthesize_pool"
    )
    _cpu(pool)
    export = _collect_steps(pool.outputs["pool"], zoo.outputs["zoo"], _params(locals()))
    simulate = simulate_annotations(
        project=export.outputs["project"],
        noise=annotate_noise,
        threshold=annotate_threshold,
        annotators=annotate_annotators,
        seed=seed,
    ).set_display_name("simulate_annotations")
    _label_studio_step(_cpu(simulate))
    imported = import_annotations(annotations=simulate.outputs["annotations"]).set_display_name(
        "import_annotations"
    )
    _label_studio_step(_cpu(imported))
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
