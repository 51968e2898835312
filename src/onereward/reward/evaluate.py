"""Test-split metrics of a reward model: accuracy per task x dimension (the paper's Table 1),
order consistency and calibration (ECE), from both orders of every test pair."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onereward.log import Throughput, get_logger
from onereward.reward.data import ImageStore, PreferencePair
from onereward.reward.scoring import RewardScorer

log = get_logger("reward.evaluate")


@dataclass
class PairScores:
    """P(Yes | winner, loser) and P(Yes | loser, winner) for each evaluated pair."""

    pairs: list[PreferencePair]
    p_winner_first: np.ndarray
    p_loser_first: np.ndarray
    pairs_per_second: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def score_pairs(
    scorer: RewardScorer, pairs: list[PreferencePair], store: ImageStore, *, batch_size: int = 32
) -> PairScores:
    """Score both orders of every pair with the no-grad path (one forward pass per query)."""
    n = len(pairs)
    firsts = [store.get(p.winner_image) for p in pairs] + [store.get(p.loser_image) for p in pairs]
    seconds = [store.get(p.loser_image) for p in pairs] + [store.get(p.winner_image) for p in pairs]
    tasks = [p.task for p in pairs] * 2
    dims = [p.dimension for p in pairs] * 2
    prompts = [p.prompt for p in pairs] * 2
    kwargs: dict[str, Any] = {}
    if scorer.template.context_images:
        kwargs["sources"] = [store.get(p.source_image) for p in pairs] * 2  # type: ignore[arg-type]
        kwargs["masks"] = [store.get(p.mask_image) for p in pairs] * 2  # type: ignore[arg-type]
    with Throughput("pairs") as tp:
        p = scorer.p_yes(firsts, seconds, tasks, dims, prompts, batch_size=batch_size, **kwargs).cpu().numpy()
        tp.add(n)
    log.info("scored %s", tp)
    return PairScores(pairs, p[:n].astype(np.float64), p[n:].astype(np.float64), pairs_per_second=tp.rate)


def expected_calibration_error(
    confidence_yes: np.ndarray, label_yes: np.ndarray, n_bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """ECE of P(Yes) against the labels: sum over confidence bins of |accuracy - confidence| weighted
    by the bin's share; confidence is max(p, 1 - p) of the predicted answer. Returns (ece, bins)."""
    p = np.asarray(confidence_yes, dtype=np.float64)
    y = np.asarray(label_yes, dtype=bool)
    predicted_yes = p >= 0.5
    confidence = np.where(predicted_yes, p, 1.0 - p)
    correct = predicted_yes == y
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    ece, bins = 0.0, []
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        sel = (confidence >= lo) & ((confidence < hi) if i < n_bins - 1 else (confidence <= hi))
        if not sel.any():
            continue
        acc, conf = float(correct[sel].mean()), float(confidence[sel].mean())
        ece += sel.mean() * abs(acc - conf)
        bins.append(
            {"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "accuracy": acc, "confidence": conf}
        )
    return float(ece), bins


def metrics_from_scores(scores: PairScores) -> dict[str, Any]:
    """``accuracy`` {task: {dimension: v}}, ``mean_accuracy`` (mean over cells), ``order_consistency``,
    ``ece`` and supporting counts.

    A query is correct when P(Yes | winner, loser) > 0.5 or P(Yes | loser, winner) < 0.5; a cell's
    accuracy is the mean over both queries of its pairs. ``order_consistency`` is
    1 - mean |P(Yes | a, b) + P(Yes | b, a) - 1| (1 = the two orders always agree).
    ``accuracy_symmetric`` decides each pair once by P(Yes | w, l) - P(Yes | l, w) > 0.
    """
    pw, pl = scores.p_winner_first, scores.p_loser_first
    correct_w, correct_l = pw > 0.5, pl < 0.5
    cells: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(scores.pairs):
        cells.setdefault((p.task, p.dimension), []).append(i)
    accuracy: dict[str, dict[str, float]] = {}
    symmetric: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for (task, dim), idx in sorted(cells.items()):
        ix = np.array(idx)
        accuracy.setdefault(task, {})[dim] = float((correct_w[ix].mean() + correct_l[ix].mean()) / 2)
        symmetric.setdefault(task, {})[dim] = float((pw[ix] > pl[ix]).mean())
        counts.setdefault(task, {})[dim] = len(idx)
    values = [v for d in accuracy.values() for v in d.values()]
    ece, bins = expected_calibration_error(
        np.concatenate([pw, pl]), np.concatenate([np.ones_like(pw, bool), np.zeros_like(pl, bool)])
    )
    deviation = np.abs(pw + pl - 1.0)
    return {
        "accuracy": accuracy,
        "mean_accuracy": float(np.mean(values)) if values else 0.0,
        "order_consistency": float(1.0 - deviation.mean()) if len(deviation) else 0.0,
        "order_deviation_max": float(deviation.max()) if len(deviation) else 0.0,
        "accuracy_symmetric": symmetric,
        "ece": ece,
        "calibration_bins": bins,
        "n_test_pairs": counts,
        "query_accuracy": float((correct_w.sum() + correct_l.sum()) / (2 * len(pw))) if len(pw) else 0.0,
    }
