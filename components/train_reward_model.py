"""Component train_reward_model: pairwise Yes/No SFT of the VLM reward model."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from onereward_kfp.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE)
def train_reward_model(
    preferences: Input[Artifact],
    zoo: Input[Artifact],
    reward_model: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    profile: str = "tiny",
    max_steps: int = 0,
    finetune: str = "",
    seed: int = 0,
):
    """Fine-tune the VLM to answer "is the first image better?" per task and dimension (Eq. 3).

    Args:
        preferences: input preferences artifact.
        zoo: the profile's models (VLM).
        reward_model: output reward model (HF folder + query template).
        report: accuracy per task x dimension (Table 1 shape), order consistency, calibration.
        metrics: accuracy, mean_accuracy, order_consistency.
        profile: profile name.
        max_steps: training steps (0 = the profile's).
        finetune: full or lora ("" = the profile's).
        seed: split / shuffling / init seed.
    """
    from onereward.kfp_outputs import publish
    from onereward.reward.stage import run

    run(
        preferences.path,
        reward_model.path,
        profile=profile,
        zoo=zoo.path,
        max_steps=max_steps or None,
        finetune=finetune or None,
        seed=seed,
    )
    publish(reward_model, report, metrics)
