"""Component build_zoo: the profile's models (tiny: built from configs; full: resolved references)."""

from kfp.dsl import Artifact, Output

from onereward_kfp.components.images import cpu_component


@cpu_component
def build_zoo(zoo: Output[Artifact], profile: str = "tiny", seed: int = 0):
    """Build every tiny model of ``profile`` (or record a full profile's checkpoint references).

    Args:
        zoo: output zoo artifact (one HF-format folder per model + zoo.json).
        profile: profile name (tiny, full) or a YAML path inside the image.
        seed: weight initialisation seed of the tiny models.
    """
    from onereward.kfp_outputs import publish
    from onereward.zoo import build_zoo as run

    run(profile, zoo.path, seed=seed)
    publish(zoo)
