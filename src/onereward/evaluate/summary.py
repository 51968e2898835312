"""From per-item rows to the figures of ``metrics.json`` (the keys are in docs/contracts.md).

Inputs are the evaluation's two tables: *result rows* (one per item and model: automatic metrics,
oracle scores) and *judgement rows* (one per item, model, judge and dimension: a GSB verdict).
Everything here is a pure function of them, so ``onereward evaluate-human`` recomputes the
summary after adding the people's judgements.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from onereward.evaluate import metrics as m
from onereward.evaluate.benchmark import GROUPS, group_dimensions
from onereward.evaluate.gsb import Tally, pooled, tally_cells, usability
from onereward.evaluate.judges import HELD_OUT_REWARD_MODEL, HUMAN, JUDGES, ORACLE, REWARD_MODEL
from onereward.evaluate.models import BASE

# metrics {name: {model: value}}: result-row column -> how items are aggregated.
METRIC_COLUMNS: dict[str, str] = {
    "psnr_outside": "psnr",  # after paste-back (inf per item = identical; capped in the mean)
    "ssim_outside": "mean",
    "mse_outside": "mean",
    "psnr_outside_raw": "psnr",  # the model's output before paste-back (BrushBench without --blended)
    "ssim_outside_raw": "mean",
    "mse_outside_raw": "mean",
    "seam": "mean",
    "clip_score": "mean",
    "ocr_sentence_accuracy": "mean",
    "ocr_edit_distance": "mean",
    "removal_success": "mean",
}
# What each metric says and which way is better (report tables).
METRIC_NOTES: dict[str, str] = {
    "psnr_outside": "dB outside the mask after paste-back, higher better (identical = inf, capped at 100 in the mean)",
    "ssim_outside": "SSIM outside the mask after paste-back, higher better",
    "mse_outside": "MSE outside the mask after paste-back (BrushBench's: sum over channels), lower better",
    "psnr_outside_raw": "dB outside the mask before paste-back (what the model itself keeps), higher better",
    "ssim_outside_raw": "SSIM outside the mask before paste-back, higher better",
    "mse_outside_raw": "MSE outside the mask before paste-back, lower better",
    "seam": "boundary sharpness beyond the surrounding texture (grey levels), lower better",
    "clip_score": "100 * cos(CLIP image, prompt), items with a user prompt, higher better",
    "ocr_sentence_accuracy": "text rendering: share of items whose OCR reads the prompt's text exactly",
    "ocr_edit_distance": "text rendering: normalised edit distance of OCR to the prompt's text, lower better",
    "removal_success": "object removal: share the oracle finds the object gone (synthetic world)",
}


def aggregate_metrics(
    results: Sequence[Mapping[str, Any]], models: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """``{metric: {model: value}}`` over the items that have the metric."""
    out: dict[str, dict[str, float | None]] = {}
    for name, how in METRIC_COLUMNS.items():
        per_model = {}
        for model in models:
            values = [r[name] for r in results if r["model"] == model and r.get(name) is not None]
            values = [float(v) for v in values]
            per_model[model] = m.capped_mean(values) if how == "psnr" else m.mean(values)
        if any(v is not None for v in per_model.values()):
            out[name] = {k: (None if v is None else round(v, 6)) for k, v in per_model.items()}
    return out


def metrics_by_group(
    results: Sequence[Mapping[str, Any]], models: Sequence[str], groups: Sequence[str]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{metric: {model: {group: value}}}`` (Table 2's text rendering and removal columns)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, how in METRIC_COLUMNS.items():
        per: dict[str, dict[str, float | None]] = {}
        for model in models:
            for g in groups:
                values = [
                    float(r[name])
                    for r in results
                    if r["model"] == model and r["group"] == g and r.get(name) is not None
                ]
                if values:
                    v = m.capped_mean(values) if how == "psnr" else m.mean(values)
                    per.setdefault(model, {})[g] = None if v is None else round(v, 6)
        if per:
            out[name] = per
    return out


def gsb_tables(
    judgements: Sequence[Mapping[str, Any]], models: Sequence[str], groups: Sequence[str]
) -> dict[str, Any]:
    """``{judge: {model: {group: {dimension: Tally}}}}`` for the judges that spoke."""
    dims = {g: group_dimensions(g) for g in groups}
    out: dict[str, Any] = {}
    for judge in JUDGES:
        rows = [j for j in judgements if j["judge"] == judge]
        if not rows:
            continue
        out[judge] = {
            model: tally_cells(
                ((r["group"], r["dimension"], r["verdict"]) for r in rows if r["model"] == model),
                groups,
                dims,
            )
            for model in models
            if model != BASE and any(r["model"] == model for r in rows)
        }
    return out


def usability_tables(judgements: Sequence[Mapping[str, Any]], groups: Sequence[str]) -> dict[str, Any]:
    """``{judge: {model: {group: share of items with no Bad dimension}}}``."""
    per: dict[tuple[str, str], dict[str, tuple[str, list[str]]]] = defaultdict(dict)
    for r in judgements:
        entry = per[(r["judge"], r["model"])].setdefault(r["item_id"], (r["group"], []))
        entry[1].append(r["verdict"])
    out: dict[str, Any] = {}
    for (judge, model), items in sorted(per.items()):
        out.setdefault(judge, {})[model] = usability(items, groups)
    return out


def dimension_scores(
    results: Sequence[Mapping[str, Any]], judgements: Sequence[Mapping[str, Any]], models: Sequence[str]
) -> dict[str, Any]:
    """Per-dimension means for Table 2: the oracle's normalised score (0 = noise, 1 = the ideal
    target) of every model, and the reward model's mean P(model better than base), both orders."""
    oracle: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in results:
        scores = json.loads(r["oracle"]) if r.get("oracle") else {}
        for dim, s in scores.items():
            if s.get("normalised") is not None:
                oracle.setdefault(r["model"], {}).setdefault(r["group"], {}).setdefault(dim, []).append(
                    s["normalised"]
                )
    reward: dict[str, dict[str, dict[str, list[float]]]] = {}
    for j in judgements:
        if j["judge"] in (REWARD_MODEL, HELD_OUT_REWARD_MODEL) and j.get("p_model_first") is not None:
            p = 0.5 * (j["p_model_first"] + 1.0 - j["p_base_first"])
            reward.setdefault(j["judge"], {}).setdefault(j["model"], {}).setdefault(
                j["group"], {}
            ).setdefault(j["dimension"], []).append(p)

    def means(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {k: means(v) for k, v in tree.items()}
        return round(float(sum(tree) / len(tree)), 6)

    return {
        "oracle_normalised": means({k: oracle[k] for k in models if k in oracle}),
        "reward_p_better": means(reward),
    }


def summarise(
    results: Sequence[Mapping[str, Any]],
    judgements: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    *,
    primary: str | None,
    reward_judge: str | None,
) -> dict[str, Any]:
    """The GSB, usability, metrics and dimension-score keys of ``metrics.json``.

    ``gsb`` / ``oracle_gsb`` / ``human_gsb``: ``{group: {dimension: {good, same, bad, n, ...}}}``
    of the ``primary`` model against the base by the reward-model judge ``reward_judge`` (the
    held-out reward model when there is one), the oracle and the people.
    """
    groups = [g for g in GROUPS if any(r["group"] == g for r in results)]
    tables = gsb_tables(judgements, models, groups)

    def cells(judge: str | None) -> dict[str, Any] | None:
        by_model = tables.get(judge or "", {})
        if primary is None or primary not in by_model:
            return None
        return {g: {d: t.to_dict() for d, t in dims.items()} for g, dims in by_model[primary].items()}

    out: dict[str, Any] = {
        "gsb": cells(reward_judge) or {},
        "gsb_judge": reward_judge,
        "oracle_gsb": cells(ORACLE),
        "human_gsb": cells(HUMAN),
        "gsb_pooled": {
            judge: {
                model: {g: t.to_dict() for g, t in pooled(by_group).items()}
                for model, by_group in by_model.items()
            }
            for judge, by_model in tables.items()
        },
        "gsb_by_model": {
            judge: {
                model: {g: {d: t.to_dict() for d, t in dims.items()} for g, dims in by_group.items()}
                for model, by_group in by_model.items()
            }
            for judge, by_model in tables.items()
        },
        "usability": usability_tables(judgements, groups),
        "metrics": aggregate_metrics(results, models),
        "metrics_by_group": metrics_by_group(results, models, groups),
        "dimension_scores": dimension_scores(results, judgements, models),
    }
    return {k: v for k, v in out.items() if v is not None}


def headline_tally(metrics: Mapping[str, Any], judge_key: str, group: str) -> Tally | None:
    """The pooled tally of the primary model for a judge's GSB key (report headline)."""
    cells = metrics.get(judge_key)
    if not cells or group not in cells:
        return None
    dims = cells[group].values()
    return Tally(sum(c["good"] for c in dims), sum(c["same"] for c in dims), sum(c["bad"] for c in dims))
