"""import_annotations: turn Label Studio answers into winner/loser pairs per (item, dimension).

The server accepts any value for a Choices control, so every annotation is validated here against
the labeling config of its task's dimension set: known control names only, one value per
control, values among the candidate letters or ``none``, and every dimension answered (best and
worst). An annotation that fails is reported (``invalid.json``) and excluded as a whole;
cancelled (skipped) annotations and tasks without annotations are counted and dropped.

Per annotator and dimension the answer is a label: ``"B>D"`` (best B, worst D) or ``none`` ("No
clear difference" on best or worst). ``best == worst`` is a contradiction and is dropped from
that annotator's answers. Several annotators of one task are merged per dimension by a strict
majority, best and worst separately (see merge_votes); only the latest annotation of each
annotator on a task counts (a retried submission must not vote twice). Agreement per
dimension: pairwise agreement and Krippendorff's alpha (nominal) over tasks with two or more
valid answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from onereward.annotate.agreement import krippendorff_alpha_nominal, pairwise_agreement
from onereward.annotate.labeling_config import (
    DIMENSION_SETS,
    NO_DIFFERENCE,
    OVERLAY_KEY,
    build_labeling_config,
    candidate_letters,
)

NONE_LABEL = NO_DIFFERENCE


@dataclass
class Vote:
    """One annotator's valid answer on one dimension."""

    annotator: str
    best: str  # a candidate letter or "none"
    worst: str  # a candidate letter or "none"

    @property
    def label(self) -> str:
        """``"B>D"``, or ``none`` when either answer is "No clear difference" (agreement units)."""
        return vote_label(self.best, self.worst) or f"{self.best}>{self.worst}"


@dataclass
class ImportResult:
    """Everything import_annotations computes from an export."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=Counter)
    units: dict[str, list[list[str]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # dimension -> labels
    n_tasks: int = 0
    n_tasks_annotated: int = 0


def validate_annotation(
    data: dict[str, Any], annotation: dict[str, Any]
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Check one annotation against its task's config; returns ({dimension: (best, worst)}, problems)."""
    problems: list[str] = []
    dset = data.get("dimension_set")
    cand_ids = data.get("candidate_ids") or []
    if dset not in DIMENSION_SETS or len(cand_ids) < 2:
        return {}, [f"task data: dimension_set {dset!r} / candidate_ids {cand_ids!r} are not ours"]
    config = build_labeling_config(dset, len(cand_ids))
    controls = config.control_names()
    allowed = config.allowed_values()
    answers: dict[str, dict[str, str]] = defaultdict(dict)
    for r in annotation.get("result") or []:
        name = r.get("from_name")
        if name not in controls:
            problems.append(f"unknown control {name!r}")
            continue
        if r.get("to_name") != OVERLAY_KEY:
            problems.append(f"{name}: to_name {r.get('to_name')!r}, expected {OVERLAY_KEY!r}")
            continue
        if r.get("type") != "choices":
            problems.append(f"{name}: type {r.get('type')!r}, expected 'choices'")
            continue
        values = (r.get("value") or {}).get("choices")
        if not isinstance(values, list) or len(values) != 1:
            problems.append(f"{name}: expected exactly one choice, got {values!r}")
            continue
        if values[0] not in allowed:
            problems.append(f"{name}: choice {values[0]!r} not in {sorted(allowed)}")
            continue
        dim, which = controls[name]
        if which in answers[dim]:
            problems.append(f"{name}: answered twice")
            continue
        answers[dim][which] = values[0]
    choices: dict[str, tuple[str, str]] = {}
    for dim in config.dimensions:
        got = answers.get(dim, {})
        missing = [w for w in ("best", "worst") if w not in got]
        if missing:
            problems.append(f"{dim}: {' and '.join(missing)} not answered")
        else:
            choices[dim] = (got["best"], got["worst"])
    return choices, problems


def vote_label(best: str, worst: str) -> str | None:
    """Label of a (best, worst) answer: ``none``, ``"B>D"``, or None for the contradiction best == worst."""
    if NO_DIFFERENCE in (best, worst):
        return NONE_LABEL
    if best == worst:
        return None
    return f"{best}>{worst}"


def _strict_majority(values: list[str]) -> tuple[str | None, float]:
    """The value given by more than half of ``values`` (or None) and its share."""
    if not values:
        return None, 0.0
    value, n = Counter(values).most_common(1)[0]
    share = n / len(values)
    return (value if 2 * n > len(values) else None), share


def merge_votes(votes: list[Vote]) -> tuple[str | None, float, str]:
    """Merged label of one (task, dimension) unit, its support share, and why no pair (or "").

    Best and worst are merged separately, each by strict majority: the winner is the letter
    chosen as best by more than 50% of the annotators who answered the dimension, the loser
    likewise for worst. No strict majority on either side (ties included) drops the unit
    (``"tie"``); a ``none`` majority on either side gives ``"no_clear_difference"``; a merged
    winner equal to the merged loser gives ``"best_equals_worst"``. The share is the smaller
    of the two majorities' shares. Example: best votes B,B,C and worst votes D,D,A give
    ``("B>D", 2/3, "")``; five annotators splitting 2/1/1/1 on best (B,B,A,C,D: B has 40%, no
    strict majority) drop the unit as ``"tie"`` even though B is the plurality.
    """
    if not votes:
        return None, 0.0, "no_votes"
    best, best_share = _strict_majority([v.best for v in votes])
    worst, worst_share = _strict_majority([v.worst for v in votes])
    share = min(best_share, worst_share)
    if best is None or worst is None:
        return None, share, "tie"
    if NONE_LABEL in (best, worst):
        return None, share, "no_clear_difference"
    if best == worst:
        return None, share, "best_equals_worst"
    return f"{best}>{worst}", share, ""


TASK_FIELDS = ("candidate_ids", "dimensions", "edit_task", "dimension_set")


def annotator_of(annotation: dict[str, Any]) -> str:
    """The id of the user who completed an annotation, as a string."""
    who = annotation.get("completed_by")
    return str(who.get("id") if isinstance(who, dict) else who)


def latest_per_annotator(anns: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """``{annotator: annotation}`` keeping each annotator's latest annotation of a task.

    A submission retried after a lost response (or an annotator answering twice) must count once;
    "latest" is the greatest (updated_at, created_at, id).
    """
    by: dict[str, dict[str, Any]] = {}
    for a in anns:
        who = annotator_of(a)
        if who in by:
            counts["duplicate_annotations"] += 1
        key = (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), a.get("id") or 0)
        prev = by.get(who)
        if prev is None or key >= (
            str(prev.get("updated_at") or ""),
            str(prev.get("created_at") or ""),
            prev.get("id") or 0,
        ):
            by[who] = a
    return by


def task_problems(data: dict[str, Any], config_shas: dict[str, str] | None) -> list[str]:
    """Why a task's data is not one of ours (missing fields, a config other than the project's)."""
    missing = [f for f in TASK_FIELDS if not data.get(f)]
    if missing:
        return [f"task data lacks {', '.join(missing)}"]
    dset, cand_ids = data["dimension_set"], data["candidate_ids"]
    if dset not in DIMENSION_SETS or not isinstance(cand_ids, list) or len(cand_ids) < 2:
        return [f"task data: dimension_set {dset!r} / candidate_ids {cand_ids!r} are not ours"]
    config = build_labeling_config(dset, len(cand_ids))
    if list(data["dimensions"]) != list(config.dimensions):
        return [f"task data: dimensions {data['dimensions']!r}, expected {list(config.dimensions)!r}"]
    if config_shas is not None:
        want = config_shas.get(dset)
        if want != config.sha:
            return [
                f"labeling config of dimension set {dset!r} with {len(cand_ids)} candidates has sha "
                f"{config.sha[:12]}, project.json label_config_sha is {str(want)[:12]} (exported by "
                "another version?)"
            ]
    return []


def process_export(
    tasks_json: list[dict[str, Any]], config_shas: dict[str, str] | None = None
) -> ImportResult:
    """Validate, filter and merge a Label Studio JSON export into pairs (paths filled in later).

    ``config_shas`` (``{dimension set: label_config_sha}`` from project.json) makes every task's
    rebuilt config be checked against the one the project was exported with; a task whose data
    lacks our fields or whose config differs is reported in ``invalid`` and skipped.
    """
    out = ImportResult()
    out.n_tasks = len(tasks_json)
    for t in tasks_json:
        data = t.get("data") or {}
        task_id = t.get("id")
        item_id = data.get("item_id")
        anns = t.get("annotations") or []
        if not anns:
            out.counts["tasks_without_annotations"] += 1
            continue
        bad_task = task_problems(data, config_shas)
        if bad_task:
            # Not one of our tasks (or edited by hand): report it rather than crash on it.
            out.invalid.append(
                {
                    "task_id": task_id,
                    "item_id": item_id,
                    "annotation_id": None,
                    "annotator": None,
                    "problems": bad_task,
                }
            )
            out.counts["invalid_tasks"] += 1
            continue
        votes: dict[str, list[Vote]] = defaultdict(list)
        n_valid = 0
        for annotator, a in latest_per_annotator(anns, out.counts).items():
            if a.get("was_cancelled"):
                out.counts["cancelled"] += 1
                continue
            choices, problems = validate_annotation(data, a)
            if problems:
                out.invalid.append(
                    {
                        "task_id": task_id,
                        "item_id": item_id,
                        "annotation_id": a.get("id"),
                        "annotator": annotator,
                        "problems": problems,
                    }
                )
                continue
            n_valid += 1
            for dim, (best, worst) in choices.items():
                label = vote_label(best, worst)
                if label is None:
                    out.counts["best_equals_worst"] += 1
                    continue
                if label == NONE_LABEL:
                    out.counts["no_clear_difference_answers"] += 1
                votes[dim].append(Vote(annotator, best, worst))
        if not n_valid:
            out.counts["tasks_without_valid_annotations"] += 1
            continue
        out.n_tasks_annotated += 1
        cand_ids = data["candidate_ids"]
        letters = candidate_letters(len(cand_ids))
        for dim in data["dimensions"]:
            unit = votes.get(dim, [])
            out.units[dim].append([v.label for v in unit])
            label, share, why = merge_votes(unit)
            if label is None:
                out.counts[f"dropped_{why}"] += 1
                continue
            best, worst = label.split(">")
            out.pairs.append(
                {
                    "item_id": item_id,
                    "task": data["edit_task"],
                    "dimension": dim,
                    "winner": cand_ids[letters.index(best)],
                    "loser": cand_ids[letters.index(worst)],
                    "ls_task_id": task_id,
                    "annotators": sorted({v.annotator for v in unit}),
                    "n_annotators": len(unit),
                    "agreement": share,
                }
            )
    return out


def agreement_by_dimension(units: dict[str, list[list[str]]]) -> dict[str, dict[str, float | int | None]]:
    """``{dimension: {"pairwise", "krippendorff_alpha", "n_units"}}`` over units with 2+ answers."""
    out: dict[str, dict[str, float | int | None]] = {}
    for dim, labels in sorted(units.items()):
        multi = [u for u in labels if len(u) >= 2]
        out[dim] = {
            "pairwise": pairwise_agreement(multi),
            "krippendorff_alpha": krippendorff_alpha_nominal(multi),
            "n_units": len(multi),
        }
    return out
