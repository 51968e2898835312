"""The models compared and how their results are made: same conditions, same noises, fixed sampling.

Models: ``base`` (the profile's generator), ``policy`` and ``policy_ema`` (a ``policy`` artifact's
weights and its EMA, :func:`onereward.policy.artifact.load_policy_pipeline`), and any further
policy artifact (``<name>`` and ``<name>_ema``, named after its folder).

Every model gets, per benchmark item, one :class:`~onereward.generate.sampler.CandidateSpec` with
the same prompt (:func:`onereward.tasks.effective_prompt`), the same fixed steps / CFG / guidance,
strength 1 and the same seed (:func:`item_seed`), so its initial noise and VAE draws are the same
for every model; the only difference between two models' results is their weights. Results are
pasted back into the source (outside the mask exactly the source); the raw output before
paste-back is kept too (background metrics).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onereward import tasks
from onereward.errors import InputError
from onereward.evaluate.benchmark import BenchmarkItem
from onereward.evaluate.config import EvaluateConfig
from onereward.generate.sampler import CandidateSpec, ItemCondition, check_condition, paste_back

BASE = "base"
_NAME = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True)
class ModelEntry:
    """One compared model: its name in the report, where its weights come from, which ones."""

    name: str
    policy_dir: str | None  # None: the profile's base generator
    weights: str = "policy"  # "policy" or "ema" of the policy artifact


def model_entries(policy: str | None, extra_policies: Iterable[str], *, ema: bool) -> list[ModelEntry]:
    """``base`` first, then each policy (and its EMA when ``ema``); names are unique."""
    entries = [ModelEntry(BASE, None)]
    sources: list[tuple[str, str]] = []
    if policy:
        sources.append(("policy", policy))
    for path in extra_policies:
        sources.append((_NAME.sub("_", Path(path).resolve().name).strip("_") or "policy", path))
    seen = {BASE}
    for stem, path in sources:
        name, k = stem, 2
        while name in seen or f"{name}_ema" in seen:
            name, k = f"{stem}_{k}", k + 1
        seen.update({name, f"{name}_ema"})
        entries.append(ModelEntry(name, str(path), "policy"))
        if ema:
            entries.append(ModelEntry(f"{name}_ema", str(path), "ema"))
    return entries


def item_seed(seed: int, item_id: str) -> int:
    """The noise seed of an item: the same for every model (depends only on seed and item id)."""
    digest = hashlib.sha256(f"evaluate:{int(seed)}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def item_spec(item: BenchmarkItem, cfg: EvaluateConfig) -> CandidateSpec:
    """The fixed sampling parameters of one item (every model uses exactly these)."""
    return CandidateSpec(
        item_id=item.item_id,
        index=0,
        prompt=tasks.effective_prompt(item.task, item.row.get("prompt")),
        negative_prompt=cfg.negative_prompt,
        steps=cfg.steps,
        cfg_scale=cfg.cfg_scale,
        strength=1.0,
        seed=item_seed(cfg.seed, item.item_id),
        guidance=cfg.guidance,
    )


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(entry: ModelEntry, profile: Any, zoo: str | None, cfg: EvaluateConfig, device: str) -> Any:
    """The ``FluxFillPipeline`` of one model (base, or base + the policy's / EMA's weights)."""
    if entry.policy_dir is None:
        from onereward.models import flux_fill
        from onereward.zoo import zoo_dir_for

        return flux_fill.load(
            profile.resolve_model("generator", zoo_dir_for(profile, zoo)), dtype=cfg.dtype, device=device
        )
    from onereward.policy.artifact import load_policy_pipeline

    return load_policy_pipeline(
        entry.policy_dir, weights=entry.weights, profile=profile, zoo=zoo, dtype=cfg.dtype, device=device
    )


@dataclass
class ModelResults:
    """One model's images per item: final (pasted back) and raw (before paste-back), plus timing."""

    final: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    seconds: float


def conditions(
    items: list[BenchmarkItem], sources: dict[str, np.ndarray], masks: dict[str, np.ndarray]
) -> dict[str, ItemCondition]:
    """Checked generator conditions of the benchmark items."""
    out = {}
    for item in items:
        cond = ItemCondition(item.item_id, sources[item.item_id], masks[item.item_id])
        check_condition(cond, where="--pool item")
        out[item.item_id] = cond
    return out


def generate(
    pipe: Any,
    items: list[BenchmarkItem],
    conds: dict[str, ItemCondition],
    cfg: EvaluateConfig,
    resolution: int | None = None,
) -> ModelResults:
    """Every item's result from one model's pipeline (batched; specs from :func:`item_spec`).
    ``resolution``: generate at the aspect bucket of this area (the profile's image_size, as
    generate_candidates does), results back at each item's size."""
    from onereward.generate.flux_sampler import FluxFillSampler

    if type(pipe).__name__ != "FluxFillPipeline":
        raise InputError(f"generator: evaluate compares FLUX-Fill pipelines, got {type(pipe).__name__}")
    sampler = FluxFillSampler(
        pipe, max_sequence_length=cfg.max_sequence_length, batch_size=cfg.batch_size, resolution=resolution
    )
    specs = [item_spec(item, cfg) for item in items]
    t0 = time.perf_counter()
    raw_images = sampler.sample(conds, specs) if specs else []
    seconds = time.perf_counter() - t0
    raw = {s.item_id: img for s, img in zip(specs, raw_images, strict=True)}
    final = {iid: paste_back(conds[iid].image, img, conds[iid].mask, cfg.feather) for iid, img in raw.items()}
    return ModelResults(final=final, raw=raw, seconds=seconds)
