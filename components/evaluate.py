"""Component evaluate: benchmark the policy (and its EMA) against the base.

Parameters are the fields of :class:`onereward.evaluate.config.EvaluateConfig` (descriptions come
from there); a profile setting left at -1 (numbers) or "" (text) takes the profile's value. The
Label Studio token (human A/B project on a server) comes from LABEL_STUDIO_API_KEY, never from a
parameter.
"""

from typing import Optional

from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from onereward.config import documented
from onereward.evaluate.config import EvaluateConfig
from onereward_kfp.components import GLOSSARY
from onereward_kfp.components.images import gpu_component

EVALUATE_GLOSSARY = {
    **GLOSSARY,
    "training_items": "An artifact whose items were used in training (the RL subset); held out of the benchmark.",
    "held_out_reward_model": "A second reward model judge the policy was not trained against (optional).",
    "evaluation": "Evaluation artifact: benchmark items, every model's results, judgements, metrics, report.",
    "summary": "The evaluation as Markdown: Table 2 shape, GSB tables, automatic metrics.",
}


@gpu_component
@documented(
    EvaluateConfig,
    "Benchmark policies against the base: GSB per task x dimension (reward model in both orders, oracle, "
    "blind A/B people), usability, automatic metrics, image grids (paper section 5.2).",
    EVALUATE_GLOSSARY,
)
def evaluate(
    pool: Input[Artifact],
    training_items: Input[Artifact],
    zoo: Input[Artifact],
    reward_model: Input[Artifact],
    evaluation: Output[Artifact],
    report: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    policy: Optional[Input[Artifact]] = None,  # noqa: UP045 (KFP reads Optional[...] for optional inputs)
    held_out_reward_model: Optional[Input[Artifact]] = None,  # noqa: UP045
    profile: str = "tiny",
    fill_items: int = -1,
    extend_items: int = -1,
    removal_items: int = -1,
    seed: int = 0,
    steps: int = -1,
    cfg_scale: float = -1.0,
    negative_prompt: str = "",
    guidance: float = -1.0,
    feather: int = -1,
    ema: bool = True,
    margin: float = -1.0,
    oracle_margin: float = 0.02,
    removal_threshold: float = 0.5,
    ocr: str = "",
    human: str = "none",
    human_model: str = "policy",
    label_studio_url: str = "",
    document_root: str = "",
    project_title: str = "onereward-eval",
    project_version: str = "v1",
    annotators: int = 3,
    annotator_noise: float = 0.02,
    annotator_threshold: float = 0.05,
):
    import shutil
    from pathlib import Path

    from onereward.config import from_kfp
    from onereward.evaluate.config import EvaluateConfig
    from onereward.evaluate.stage import run
    from onereward.kfp_outputs import publish

    run(
        pool.path,
        evaluation.path,
        reward_model=reward_model.path,
        profile=profile,
        zoo=zoo.path,
        policy=policy.path if policy is not None else None,
        exclude=[training_items.path],
        held_out_reward_model=held_out_reward_model.path if held_out_reward_model is not None else None,
        **from_kfp(EvaluateConfig, locals()),
    )
    publish(evaluation, report, metrics)
    Path(summary.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(evaluation.path) / "report.md", summary.path)
