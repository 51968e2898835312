"""One thin KFP component per stage: typed artifacts in, one call into the ``onereward`` library, artifacts out.

Each module defines one ``@dsl.component``; the function body imports the stage's ``run`` from the
library (installed in the image) and publishes the artifact's manifest, report and metrics. Its
settings parameters mirror the stage's config dataclass (descriptions come from there, see
:func:`stage_doc`); artifacts and the profile are described once, in :data:`GLOSSARY`.
"""

from onereward.config import documented

# Parameters that are not settings, by name: one description wherever they appear.
GLOSSARY: dict[str, str] = {
    "profile": "Profile name (tiny, full) or YAML path.",
    "pool": "Pool artifact: items.parquet + images, masks, prompts (synthetic or imported).",
    "zoo": "The profile's models: the tiny zoo, or the full profile's resolved references.",
    "subset": "Subset artifact: representative items with masks, cluster ids and CLIP embeddings.",
    "candidates": "Candidates artifact: N images per item with their sampled parameters.",
    "project": "Label Studio project reference (URL, project ids, task-id map; never a token).",
    "annotations": "Annotations: a project reference, or the offline Label Studio export.",
    "preferences": "Preferences artifact: winner/loser pairs per item and dimension, agreement.",
    "reward_model": "Reward model artifact: HF folder, query template, test accuracy per task x dimension.",
    "policy": "Policy artifact (train_policy): LoRA or full weights of the generator plus their EMA.",
    "references": "Reference rollouts of the frozen base (a candidates artifact made by policy_references).",
    "num_nodes": "Training nodes: above 1 (or gpus_per_node above 1) the step runs as a Kubeflow Trainer TrainJob.",
    "gpus_per_node": "GPUs per training node: above 1 the step runs as a TrainJob (one process per GPU).",
    "run_id": "The KFP run id (wired by the pipeline): names the TrainJob, so a retried step reattaches.",
    "task_id": "The KFP task id (wired by the pipeline).",
    "report": "The stage's report.html (tables, plots, image grids).",
    "metrics": "The stage's scalar metrics (metrics.json, nested keys joined with dots).",
}


def stage_doc(cls, summary: str):
    """``@documented(cls, summary, GLOSSARY)``: the docstring KFP reads parameter descriptions from."""
    return documented(cls, summary, GLOSSARY)
