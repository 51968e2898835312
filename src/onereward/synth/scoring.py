"""Oracle figures of a set of candidates in the synthetic world (items with ideal targets).

For every candidate the oracle scores each dimension of its item's task; scores are normalised per
(item, dimension) as in :mod:`onereward.synth.baselines`: ``(r - floor) / max(target - floor,
MIN_SPAN)``. Summaries:

- ``oracle``: ``{task: {dimension: {"mean": mean raw score, "normalised": mean normalised score,
  "n": candidates}}}`` over all candidates of the task's items;
- ``oracle_by_variant``: the same keyed by item variant (:func:`variant`): shape fill and text
  rendering apart, image_extend with and without a prompt apart;
- ``oracle_gap_fraction``: the share of (item, dimension) pairs whose best-minus-worst raw oracle
  score over the item's candidates exceeds ``level`` (a simulated annotator's noise, or its "no
  clear difference" threshold). Only those pairs can become reliable preferences: below it, noise
  decides the winner or the pair is dropped as "no clear difference".

:func:`candidate_oracle_metrics` reads the tables of a ``candidates`` artifact (the generate stage
writes its result into ``metrics.json``); :func:`score_results` and :func:`summarise` work on
arrays in memory (benchmarks, tests, the generator trainer's evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onereward import tasks
from onereward.errors import InputError
from onereward.synth import oracle
from onereward.synth.baselines import Anchors, anchors
from onereward.synth.world import parse_prompt

# Item variants: the tasks of the paper, with text rendering and prompt-less extension apart
# (they differ in what can be learnt and in the dimensions scored).
SHAPE_FILL = "image_fill"
TEXT_RENDERING = "text_rendering"
EXTEND_PROMPT = "image_extend_prompt"
EXTEND_PLAIN = "image_extend"
REMOVAL = "object_removal"
VARIANTS: tuple[str, ...] = (SHAPE_FILL, TEXT_RENDERING, EXTEND_PROMPT, EXTEND_PLAIN, REMOVAL)


def variant(task: str, prompt: str | None) -> str:
    """The item variant of ``(task, prompt)``: one of :data:`VARIANTS`."""
    tasks.check_task(task)
    if task == tasks.IMAGE_FILL:
        return TEXT_RENDERING if parse_prompt(prompt)["word"] else SHAPE_FILL
    if task == tasks.IMAGE_EXTEND:
        return EXTEND_PROMPT if tasks.has_user_prompt(task, prompt) else EXTEND_PLAIN
    return REMOVAL


@dataclass(frozen=True)
class CandidateScore:
    """Oracle scores of one candidate: raw and normalised per dimension."""

    item_id: str
    task: str
    variant: str
    index: int
    raw: dict[str, float]
    normalised: dict[str, float]


def score_results(
    item_id: str,
    task: str,
    source: np.ndarray,
    mask: np.ndarray,
    prompt: str | None,
    target: np.ndarray,
    results: Sequence[np.ndarray],
    *,
    item_anchors: Anchors | None = None,
) -> list[CandidateScore]:
    """Score the candidate ``results`` (HxWx3 uint8, already pasted back) of one item.

    The floor and target anchors are computed once for the item (or passed as ``item_anchors``).
    """
    a = item_anchors or anchors(task, source, mask, prompt, target, item_id=item_id)
    kind = variant(task, prompt)
    out = []
    for index, result in enumerate(results):
        raw = oracle.score_all(task, source, mask, prompt, result)
        out.append(CandidateScore(item_id, task, kind, index, raw, a.normalise(raw)))
    return out


def _mean_table(scores: Sequence[CandidateScore], key: str) -> dict[str, dict[str, dict[str, float]]]:
    acc: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for s in scores:
        group = s.task if key == "task" else s.variant
        for dim, r in s.raw.items():
            acc.setdefault(group, {}).setdefault(dim, []).append((r, s.normalised[dim]))
    return {
        group: {
            dim: {
                "mean": round(float(np.mean([v[0] for v in vals])), 4),
                "normalised": round(float(np.mean([v[1] for v in vals])), 4),
                "n": len(vals),
            }
            for dim, vals in sorted(by_dim.items())
        }
        for group, by_dim in sorted(acc.items())
    }


def gap_fraction(scores: Sequence[CandidateScore], level: float) -> float | None:
    """Share of (item, dimension) pairs whose best-minus-worst raw score exceeds ``level``.

    Items with fewer than two candidates have no gap and are left out; None when no pair remains.
    """
    if level < 0:
        raise InputError(f"level: must be >= 0, got {level}")
    by_item: dict[str, list[CandidateScore]] = {}
    for s in scores:
        by_item.setdefault(s.item_id, []).append(s)
    n = hits = 0
    for cands in by_item.values():
        if len(cands) < 2:
            continue
        for dim in cands[0].raw:
            values = [c.raw[dim] for c in cands]
            n += 1
            hits += (max(values) - min(values)) > level
    return round(hits / n, 4) if n else None


def summarise(scores: Sequence[CandidateScore], *, level: float) -> dict[str, Any]:
    """``oracle`` (per task), ``oracle_by_variant``, ``oracle_gap_fraction`` at ``level`` and counts."""
    return {
        "oracle": _mean_table(scores, "task"),
        "oracle_by_variant": _mean_table(scores, "variant"),
        "oracle_gap_fraction": gap_fraction(scores, level),
        "oracle_gap_level": float(level),
        "oracle_items": len({s.item_id for s in scores}),
    }


def candidate_oracle_metrics(
    items: Sequence[Mapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]],
    *,
    item_root: str | os.PathLike[str],
    candidate_root: str | os.PathLike[str] | None = None,
    level: float,
) -> dict[str, Any] | None:
    """Oracle figures of a candidates table whose items have targets (the synthetic world).

    ``items``: rows with ``item_id, task, image, mask, prompt, target`` (paths relative to
    ``item_root``); ``candidates``: rows with ``item_id, index, image`` (relative to
    ``candidate_root``, default ``item_root``). Items without a target (a user's pool) are left
    out; returns None when no item has one. Candidate images are scored as they are (the generate
    stage has pasted them back). See :func:`summarise` for the keys.
    """
    from onereward.imageio import load_mask, load_rgb

    item_root = Path(item_root)
    cand_root = Path(candidate_root) if candidate_root is not None else item_root
    by_item: dict[str, list[Mapping[str, Any]]] = {}
    for c in candidates:
        by_item.setdefault(c["item_id"], []).append(c)
    scores: list[CandidateScore] = []
    for row in items:
        if not row.get("target") or row["item_id"] not in by_item:
            continue
        iid = row["item_id"]
        for col in ("image", "mask", "target"):
            if not row.get(col) or not (item_root / row[col]).is_file():
                raise InputError(
                    f"items row {iid!r}: field '{col}' names {row.get(col)!r}, which is not a file in {item_root}"
                )
        cands = sorted(by_item[iid], key=lambda c: int(c["index"]))
        results = [load_rgb(cand_root / c["image"]) for c in cands]
        scores.extend(
            score_results(
                iid,
                row["task"],
                load_rgb(item_root / row["image"]),
                load_mask(item_root / row["mask"]),
                row.get("prompt"),
                load_rgb(item_root / row["target"]),
                results,
            )
        )
    if not scores:
        return None
    return summarise(scores, level=level)
