"""Small ``policy`` artifacts for tests and benchmarks (no training): the base plus perturbed weights.

:func:`make_policy_artifact` loads the profile's base transformer, adds the ``policy`` and ``ema``
weights the way train_policy does (:class:`onereward.policy.model.PolicyModel`), moves them away
from the base by seeded random amounts (``scale``) so that the policy's images differ from the
base's, and writes a real artifact with :func:`onereward.policy.artifact.write_policy`.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from onereward.artifacts import Manifest


def make_policy_artifact(
    out: str | os.PathLike[str],
    *,
    profile: str = "tiny",
    zoo: str | os.PathLike[str] | None = None,
    finetune: str = "lora",
    rank: int = 4,
    seed: int = 0,
    scale: float = 0.05,
    ema_scale: float | None = None,
    targets: list[str] | None = None,
) -> Manifest:
    """Write a policy artifact whose ``policy`` weights are the base's moved by ``scale`` (relative)
    and whose ``ema`` weights are moved by ``ema_scale`` (default: half of ``scale``)."""
    from onereward.generate.stage import generator_identity
    from onereward.models import flux_fill
    from onereward.policy.artifact import PolicyInfo, write_policy
    from onereward.policy.config import DEFAULT_LORA_TARGETS
    from onereward.policy.model import PolicyModel
    from onereward.profile import load_profile
    from onereward.zoo import zoo_dir_for

    prof = load_profile(profile)
    zoo_arg = str(zoo) if zoo else None
    pipe = flux_fill.load(prof.resolve_model("generator", zoo_dir_for(prof, zoo_arg)))
    targets = targets or [t for t in DEFAULT_LORA_TARGETS.split(",")]
    model = PolicyModel(pipe.transformer, finetune=finetune, lora_rank=rank, lora_targets=targets)
    gen = torch.Generator().manual_seed(seed)
    ema_scale = scale / 2 if ema_scale is None else ema_scale
    with torch.no_grad():
        for which, amount in (("policy", scale), ("ema", ema_scale)):
            for name, t in model.named_state(which).items():
                if not t.is_floating_point():
                    continue
                if finetune == "lora" and "lora_A" in name:
                    continue  # keep A, move B away from zero: the adapter's product moves
                ref = t.detach().float().std().item() if finetune == "full" and t.numel() > 1 else 1.0
                t.add_(torch.randn(t.shape, generator=gen) * amount * (ref or 1.0))
    info = PolicyInfo(
        family="flux_fill",
        finetune=finetune,
        algorithm="test",
        base={
            "generator": generator_identity(prof, "generator", zoo_arg),
            "model_key": "generator",
            "profile": prof.name,
        },
        lora={"rank": rank, "alpha": rank, "target_modules": targets} if finetune == "lora" else None,
    )
    ema: Any = model.copies.get("ema")
    return write_policy(
        out, model.transformer, info, ema=ema, lora_config=model.lora_config, stage="test",
        parameters={"seed": seed, "scale": scale, "ema_scale": ema_scale},
    )  # fmt: skip


def make_reward_model_artifact(
    out: str | os.PathLike[str],
    *,
    profile: str = "tiny",
    zoo: str | os.PathLike[str] | None = None,
    accuracy: float | dict[str, dict[str, float]] = 0.8,
) -> Manifest:
    """A ``reward_model`` artifact holding the profile's (untrained) VLM and the default query
    template, with the given test ``accuracy`` (one value for every task x dimension, or a table):
    real scoring code, gate figures chosen by the test."""
    import shutil
    from pathlib import Path

    from onereward import tasks
    from onereward.artifacts import ArtifactWriter
    from onereward.profile import load_profile
    from onereward.reward.scoring import MODEL_SUBDIR
    from onereward.reward.template import default_template
    from onereward.zoo import zoo_dir_for

    prof = load_profile(profile)
    model_dir = Path(prof.resolve_model("reward_model", zoo_dir_for(prof, str(zoo) if zoo else None)))
    if not isinstance(accuracy, dict):
        table: dict[str, dict[str, float]] = {}
        for task, dim in tasks.task_dimension_pairs():
            table.setdefault(task, {})[dim] = float(accuracy)
        accuracy = table
    values = [v for dims in accuracy.values() for v in dims.values()]
    with ArtifactWriter(out, kind="reward_model", stage="test", parameters={"model": str(model_dir)}) as art:
        shutil.copytree(model_dir, art.path / MODEL_SUBDIR)
        default_template().save(art.path)
        art.metrics.update({"accuracy": accuracy, "mean_accuracy": sum(values) / max(1, len(values))})
    assert art.manifest is not None
    return art.manifest
