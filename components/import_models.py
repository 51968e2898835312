"""Component import_models: the full profile's hub models into the models volume, once.

Runs ``onereward zoo import-models``: every hub model of the profile is downloaded (only the files
the loaders need) into the Hugging Face cache at ``HF_HOME``, which the import_models pipeline
points at the models PVC; files already there are not fetched again. The token comes from the
optional Secret ``huggingface-token`` as ``HF_TOKEN``, never from a parameter.
"""

from kfp.dsl import Artifact, Output

from onereward_kfp.components.images import cpu_component


@cpu_component
def import_models(models: Output[Artifact], profile: str = "full"):
    """Download the profile's hub models into the Hugging Face cache (HF_HOME, the models volume).

    Args:
        models: Record of what was imported: per model its ref, snapshot folder and bytes (models.json).
        profile: Profile whose models to import (full, full-onereward or a YAML path in the image).
    """
    import json
    import os

    from onereward.model_refs import import_models as run

    imported = run(profile)
    os.makedirs(models.path, exist_ok=True)
    with open(os.path.join(models.path, "models.json"), "w") as f:
        json.dump(imported, f, indent=2, sort_keys=True)
    models.metadata.update({k: v.get("path", v["ref"]) for k, v in imported.items()})
