"""Helpers of the evaluate tests: a small policy artifact (LoRA adapters on the tiny base) and a
deliberately position-biased judge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from onereward.artifacts import ArtifactWriter, Manifest, read_artifact

LORA_TARGETS = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"]


def make_policy(
    zoo: Path, out: Path, *, scale: float = 0.05, seed: int = 0, inputs: list[Manifest] | None = None
) -> Path:
    """A ``policy`` artifact on the tiny zoo's base: LoRA adapters ``policy`` and ``ema`` whose B
    matrices are random (N(0, scale), EMA at half the scale), so each differs from the base. Unlike
    :func:`onereward.testing.policy.make_policy_artifact` its manifest records ``inputs`` (the
    training subset), as train_policy's does: evaluate checks that those items are held out."""
    from peft import LoraConfig

    from onereward.generate.stage import generator_identity
    from onereward.models import flux_fill
    from onereward.policy.artifact import PolicyInfo, write_policy
    from onereward.profile import load_profile

    prof = load_profile("tiny")
    pipe = flux_fill.load(Path(zoo) / "flux_fill")
    transformer = pipe.transformer
    config = LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=True)
    gen = torch.Generator().manual_seed(seed)
    for name, factor in (("policy", 1.0), ("ema", 0.5)):
        transformer.add_adapter(config, adapter_name=name)
        for pname, p in transformer.named_parameters():
            if "lora_B" in pname and f".{name}." in pname:
                p.data = torch.randn(p.shape, generator=gen) * scale * factor
    info = PolicyInfo(
        family="flux_fill",
        finetune="lora",
        algorithm="test",
        base={
            "generator": generator_identity(prof, "generator", str(zoo)),
            "model_key": "generator",
            "profile": "tiny",
        },
        lora={"rank": 4, "alpha": 4, "target_modules": LORA_TARGETS},
    )
    write_policy(out, transformer, info, lora_config=config, stage="test_policy", inputs=inputs or [])
    return out


class PositionBiasedJudge:
    """A judge that prefers whatever it sees first: P(Yes) = 0.5 + bias + (a better than b) * skill,
    where "better" is a pixel statistic (the brighter image). Asked in both orders, the bias says
    Yes both times and cancels; the skill part flips with the order."""

    def __init__(self, bias: float, skill: float = 0.0) -> None:
        self.bias, self.skill = bias, skill
        self.template = type("T", (), {"context_images": False})()

    def p_yes(
        self, images_a: Any, images_b: Any, tasks: Any, dimensions: Any, prompts: Any, **_: Any
    ) -> torch.Tensor:
        out = []
        for a, b in zip(images_a, images_b, strict=True):
            sign = np.sign(
                float(np.asarray(a, dtype=np.float64).mean() - np.asarray(b, dtype=np.float64).mean())
            )
            out.append(min(1.0, max(0.0, 0.5 + self.bias + self.skill * sign)))
        return torch.tensor(out)


def make_world(root: Path, zoo: Path, *, n_items: int = 40, seed: int = 4) -> dict[str, Path]:
    """A synthetic pool, the "training subset" (half its items) and two policies trained on it
    (manifest inputs name the subset): ``policy`` (random LoRA deltas) and ``same_policy`` (zero
    deltas: the base's weights exactly)."""
    from onereward.synth.stage import make_pool
    from onereward.tables import read_table, write_table
    from onereward.testing.policy import make_reward_model_artifact

    make_pool(root / "pool", n_items, seed=seed)
    rows = read_table(root / "pool" / "items.parquet")
    training = [r for r in rows if int(r["item_id"][-2:]) % 2 == 0]
    with ArtifactWriter(root / "subset", kind="subset", stage="test_subset") as art:
        write_table(
            art.path / "items.parquet", [{"item_id": r["item_id"], "task": r["task"]} for r in training]
        )
    subset = read_artifact(root / "subset")
    make_policy(zoo, root / "policy", scale=0.3, inputs=[subset])
    make_policy(zoo, root / "same_policy", scale=0.0, inputs=[subset])
    make_reward_model_artifact(root / "reward_model", zoo=zoo)
    return {
        "root": root,
        "pool": root / "pool",
        "subset": root / "subset",
        "zoo": zoo,
        "reward_model": root / "reward_model",
    }
