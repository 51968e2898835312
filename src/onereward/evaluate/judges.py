"""The judges of evaluate: the reward model (both orders), the synthetic world's oracle.

Each judge turns the results of every model into *judgement rows*, one per (item, model,
dimension) for every model but the base: what the judge measured and its GSB verdict against the
base (:mod:`onereward.evaluate.gsb`). Human judgements come from the A/B project
(:mod:`onereward.evaluate.human`) in the same row shape.

Row fields: ``item_id, group, model, judge, dimension, verdict`` plus, for the reward model,
``p_model_first`` = P(Yes | model, base) and ``p_base_first`` = P(Yes | base, model); for the
oracle, ``score`` / ``base_score`` (raw oracle scores) and ``normalised`` / ``base_normalised``
(per-item normalisation of :mod:`onereward.synth.baselines`, None without a target).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onereward.evaluate.benchmark import BenchmarkItem
from onereward.evaluate.gsb import reward_verdict, score_verdict
from onereward.evaluate.models import BASE

REWARD_MODEL = "reward_model"
HELD_OUT_REWARD_MODEL = "held_out_reward_model"
ORACLE = "oracle"
HUMAN = "human"
JUDGES: tuple[str, ...] = (REWARD_MODEL, HELD_OUT_REWARD_MODEL, ORACLE, HUMAN)
JUDGE_TITLES: dict[str, str] = {
    REWARD_MODEL: "reward model (the policy's training reward)",
    HELD_OUT_REWARD_MODEL: "held-out reward model",
    ORACLE: "oracle (synthetic world ground truth)",
    HUMAN: "people (blind A/B, Label Studio)",
}


@dataclass(frozen=True)
class Comparison:
    """One question to the reward model: is ``first`` better than ``second`` on ``dimension``?"""

    item: BenchmarkItem
    model: str
    dimension: str
    model_first: bool


def reward_judgements(
    scorer: Any,
    judge: str,
    items: Sequence[BenchmarkItem],
    images: Mapping[str, Mapping[str, np.ndarray]],
    sources: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    *,
    margin: float,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Ask the reward model about every (item, model, dimension) in both orders; GSB rows."""
    models = [m for m in images if m != BASE]
    comps = [
        Comparison(item, model, dim, first)
        for model in models
        for item in items
        for dim in item.dimensions
        for first in (True, False)
    ]
    if not comps:
        return []

    def pair(c: Comparison) -> tuple[np.ndarray, np.ndarray]:
        mine, base = images[c.model][c.item.item_id], images[BASE][c.item.item_id]
        return (mine, base) if c.model_first else (base, mine)

    firsts, seconds = zip(*(pair(c) for c in comps), strict=True)
    context = bool(getattr(scorer.template, "context_images", False))
    p = scorer.p_yes(
        list(firsts),
        list(seconds),
        [c.item.task for c in comps],
        [c.dimension for c in comps],
        [c.item.user_prompt for c in comps],
        sources=[sources[c.item.item_id] for c in comps] if context else None,
        masks=[_mask_rgb(masks[c.item.item_id]) for c in comps] if context else None,
        batch_size=batch_size,
    )
    probs = p.detach().float().cpu().numpy().tolist()
    answers = {
        (c.model, c.item.item_id, c.dimension, c.model_first): v for c, v in zip(comps, probs, strict=True)
    }
    rows = []
    for model in models:
        for item in items:
            for dim in item.dimensions:
                p_first = answers[(model, item.item_id, dim, True)]
                p_second = answers[(model, item.item_id, dim, False)]
                rows.append(
                    {
                        "item_id": item.item_id,
                        "group": item.group,
                        "model": model,
                        "judge": judge,
                        "dimension": dim,
                        "verdict": reward_verdict(p_first, p_second, margin),
                        "p_model_first": float(p_first),
                        "p_base_first": float(p_second),
                    }
                )
    return rows


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(mask, dtype=bool)[..., None].astype(np.uint8) * 255, 3, axis=2)


def oracle_scores(
    items: Sequence[BenchmarkItem],
    images: Mapping[str, Mapping[str, np.ndarray]],
    sources: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray | None],
) -> dict[tuple[str, str], dict[str, dict[str, float | None]]]:
    """``{(model, item_id): {dimension: {"raw", "normalised"}}}`` for every model, base included."""
    from onereward.synth import oracle
    from onereward.synth.baselines import anchors

    out: dict[tuple[str, str], dict[str, dict[str, float | None]]] = {}
    for item in items:
        iid = item.item_id
        prompt = item.row.get("prompt")
        target = targets.get(iid)
        item_anchors = (
            anchors(item.task, sources[iid], masks[iid], prompt, target, item_id=iid)
            if target is not None
            else None
        )
        for model, by_item in images.items():
            raw = oracle.score_all(item.task, sources[iid], masks[iid], prompt, by_item[iid])
            norm = item_anchors.normalise(raw) if item_anchors is not None else {}
            out[(model, iid)] = {d: {"raw": float(v), "normalised": norm.get(d)} for d, v in raw.items()}
    return out


def oracle_judgements(
    items: Sequence[BenchmarkItem],
    scores: Mapping[tuple[str, str], Mapping[str, Mapping[str, float | None]]],
    models: Sequence[str],
    *,
    margin: float,
) -> list[dict[str, Any]]:
    """GSB rows of the oracle: raw score against the base's, beyond ``margin``."""
    rows = []
    for model in models:
        if model == BASE:
            continue
        for item in items:
            mine, base = scores[(model, item.item_id)], scores[(BASE, item.item_id)]
            for dim in item.dimensions:
                rows.append(
                    {
                        "item_id": item.item_id,
                        "group": item.group,
                        "model": model,
                        "judge": ORACLE,
                        "dimension": dim,
                        "verdict": score_verdict(mine[dim]["raw"], base[dim]["raw"], margin),
                        "score": mine[dim]["raw"],
                        "base_score": base[dim]["raw"],
                        "normalised": mine[dim]["normalised"],
                        "base_normalised": base[dim]["normalised"],
                    }
                )
    return rows
