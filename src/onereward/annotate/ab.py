"""Blind A/B projects: people compare two results of one item, shown left and right at random.

The human GSB of evaluate (paper Figure 7): per item the annotator sees the prompt, the source
with the edit region tinted red, and two results, ``Left`` and ``Right``; per evaluation dimension
of the item's task they answer *Left is better*, *About the same* or *Right is better*. Which
model is on which side is drawn per item (:func:`assign_sides`) and kept out of the task (no model
names, ids or paths that tell): it lives only in the caller's artifact, which maps the answers
back to Good / Same / Bad for a model against the base.

This module reuses the annotation machinery and adds only what differs:

- the labeling config (:func:`build_ab_labeling_config`): one single-choice radio group
  ``<dimension>_ab`` per dimension, values aliased ``left`` / ``same`` / ``right``; one project
  per dimension set (``ab_prompted``, ``ab_unprompted_extend``, ``ab_removal``) so every group
  is required and relevant;
- the tasks (:func:`ab_task_draft`), placed with export's :func:`~onereward.annotate.export.
  place_offline` / :func:`~onereward.annotate.export.place_on_server` (same idempotent import,
  image hosting and project reuse as export_annotations), project.json from
  :func:`~onereward.annotate.export.project_reference`;
- simulated answers (:func:`simulate_answers`): simulate_annotations' panel (Label Studio users
  through the API, or appended offline), annotators' noise drawn by
  :func:`~onereward.annotate.simulate.annotator_rng`;
- reading the answers (:func:`collect_answers`): import_annotations' export reading, latest
  annotation per annotator, validation against the config, and agreement statistics. Several
  annotators are merged per (item, dimension) by strict majority; without one (a split panel)
  the unit counts as *same*.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from onereward import tasks as task_table
from onereward.annotate.agreement import krippendorff_alpha_nominal, pairwise_agreement
from onereward.annotate.export import KEY_FIELD, TaskDraft, display_prompt
from onereward.annotate.importer import latest_per_annotator
from onereward.annotate.labeling_config import DIMENSION_SETS, OVERLAY_KEY, PROMPT_KEY, dimension_set_name
from onereward.annotate.simulate import Panel, annotator_rng

AB_PREFIX = "ab_"
LEFT, SAME, RIGHT = "left", "same", "right"
AB_VALUES: tuple[str, ...] = (LEFT, SAME, RIGHT)
AB_LABELS = {LEFT: "Left is better", SAME: "About the same", RIGHT: "Right is better"}
LEFT_KEY, RIGHT_KEY = "image_left", "image_right"


def ab_control(dimension: str) -> str:
    """Control name (``from_name``) of a dimension's A/B question."""
    return f"{dimension}_ab"


def ab_set_name(task: str, prompt: str | None) -> str:
    """The A/B project (dimension set) an item belongs to: ``ab_`` + export's set name."""
    return AB_PREFIX + dimension_set_name(task, prompt)


@dataclass(frozen=True)
class ABLabelingConfig:
    """A generated A/B config (the fields export's placement reads: name, dimensions, xml, sha,
    n_candidates) and what a valid result holds."""

    name: str
    dimensions: tuple[str, ...]
    xml: str
    n_candidates: int = 2

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.xml.encode()).hexdigest()

    def control_names(self) -> dict[str, str]:
        """``{from_name: dimension}``."""
        return {ab_control(d): d for d in self.dimensions}


def build_ab_labeling_config(name: str) -> ABLabelingConfig:
    """The XML config of A/B project ``name`` (``ab_<dimension set>``)."""
    base = name[len(AB_PREFIX) :] if name.startswith(AB_PREFIX) else None
    if base not in DIMENSION_SETS:
        raise ValueError(
            f"A/B project: unknown {name!r}; expected one of {sorted(AB_PREFIX + s for s in DIMENSION_SETS)}"
        )
    dims = DIMENSION_SETS[base]
    lines = [
        "<View>",
        "  <Style>.lsf-toolbar { display: none; }</Style>",
        '  <Header value="Prompt" size="5"/>',
        f'  <Text name="{PROMPT_KEY}_text" value="${PROMPT_KEY}"/>',
        '  <View style="display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap">',
    ]
    for key, title, width in (
        (OVERLAY_KEY, "Source (edit region in red)", 176),
        (LEFT_KEY, "Left", 256),
        (RIGHT_KEY, "Right", 256),
    ):
        lines += [
            '    <View style="flex: 0 0 auto">',
            f'      <Header value="{title}" size="6"/>',
            f'      <Image name="{key}" value="${key}" width="{width}px" zoom="false"/>',
            "    </View>",
        ]
    lines.append("  </View>")
    for dim in dims:
        title = dim.replace("_", " ").capitalize()
        lines += [
            '  <View style="margin-top: 10px; padding: 6px 10px; background: #f6f6f6; border-radius: 4px">',
            f'    <Header value={quoteattr(title + ": " + task_table.DIMENSION_DEFINITIONS[dim])} size="5"/>',
            f'    <Choices name="{ab_control(dim)}" toName="{OVERLAY_KEY}" choice="single-radio" required="true" '
            f'showInline="true" requiredMessage={quoteattr(f"{title}: choose left, same or right")}>',
        ]
        lines += [f'      <Choice value="{AB_LABELS[v]}" alias="{v}"/>' for v in AB_VALUES]
        lines += ["    </Choices>", "  </View>"]
    lines.append("</View>")
    return ABLabelingConfig(name=name, dimensions=dims, xml="\n".join(lines) + "\n")


def describe_project(name: str, config: Any) -> str:
    """Label Studio description of an A/B project."""
    return (
        f"onereward blind A/B evaluation ({name}: {', '.join(config.dimensions)}). For each dimension say "
        "whether the left or the right result is better, or that they are about the same."
    )


def assign_sides(seed: int, item_id: str, first: str, second: str) -> dict[str, str]:
    """``{"left": model, "right": model}``: a fair coin per item, depending only on (seed, item_id)."""
    rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, zlib.crc32(item_id.encode()), 0xAB])
    return {"left": first, "right": second} if rng.random() < 0.5 else {"left": second, "right": first}


def ab_task_draft(
    item_id: str,
    task: str,
    prompt: str | None,
    overlay_rel: str,
    left_rel: str,
    right_rel: str,
    content: bytes,
) -> TaskDraft:
    """One A/B task; ``content`` (the two images' bytes) keys it, so changed results make a new task.

    The data holds no model name: only the item, its prompt, its dimensions and three images.
    """
    dset = ab_set_name(task, prompt)
    key = f"{item_id}:{hashlib.sha256(content).hexdigest()[:16]}"
    data = {
        KEY_FIELD: key,
        "item_id": item_id,
        "edit_task": task,
        PROMPT_KEY: display_prompt(task, prompt),
        "dimension_set": dset,
        "dimensions": list(task_table.dimensions_for(task, prompt)),
    }
    images = {OVERLAY_KEY: overlay_rel, LEFT_KEY: left_rel, RIGHT_KEY: right_rel}
    return TaskDraft(item_id, dset, key, data, images)


def ab_configs(drafts: list[TaskDraft]) -> dict[str, ABLabelingConfig]:
    """The configs of the A/B projects the drafts need (sorted by name)."""
    return {name: build_ab_labeling_config(name) for name in sorted({d.dimension_set for d in drafts})}


def ab_result(dimension: str, value: str) -> dict[str, Any]:
    """One Label Studio result entry answering a dimension."""
    return {
        "from_name": ab_control(dimension),
        "to_name": OVERLAY_KEY,
        "type": "choices",
        "value": {"choices": [value]},
    }


def noisy_choice(
    left: float, right: float, *, noise: float, threshold: float, rng: np.random.Generator
) -> str:
    """A simulated annotator's answer from the two results' scores (higher is better)."""
    if noise > 0:
        left, right = left + rng.normal(0.0, noise), right + rng.normal(0.0, noise)
    if abs(left - right) < threshold:
        return SAME
    return LEFT if left > right else RIGHT


def simulate_answers(
    panel: Panel,
    scores: Callable[[str, str], Mapping[str, float]],
    *,
    noise: float,
    threshold: float,
    seed: int,
) -> Counter[str]:
    """Every annotator of ``panel`` answers every task; ``scores(item_id, side)`` gives the oracle's
    score per dimension of the ``left`` / ``right`` result. Annotators who already answered a task
    are skipped (reruns post nothing twice). Returns the answers by value (and ``already_answered``)."""
    counts: Counter[str] = Counter()
    for task in panel.tasks:
        data = task["data"]
        left, right = scores(data["item_id"], LEFT), scores(data["item_id"], RIGHT)
        done_by = {a.get("completed_by") for a in task.get("annotations") or []}
        task.setdefault("annotations", [])
        for k, user_id in enumerate(panel.user_ids):
            rng = annotator_rng(seed, k, data["item_id"])
            result = []
            for dim in data["dimensions"]:
                value = noisy_choice(left[dim], right[dim], noise=noise, threshold=threshold, rng=rng)
                counts[value] += 1
                result.append(ab_result(dim, value))
            if user_id in done_by:
                counts["already_answered"] += 1
                continue
            panel.submit(task, user_id, result)
    return counts


@dataclass
class ABAnswers:
    """The merged answers of an A/B export: ``{item_id: {dimension: value}}`` with the support
    share and the number of annotators, agreement per dimension, invalid annotations, counts."""

    choices: dict[str, dict[str, str]] = field(default_factory=dict)
    support: dict[str, dict[str, float]] = field(default_factory=dict)
    n_annotators: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def validate_ab_annotation(
    data: dict[str, Any], annotation: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """Check one annotation against its task's A/B config: ({dimension: value}, problems)."""
    try:
        config = build_ab_labeling_config(str(data.get("dimension_set")))
    except ValueError as e:
        return {}, [str(e)]
    if list(data.get("dimensions") or []) != list(config.dimensions):
        return {}, [f"task data: dimensions {data.get('dimensions')!r}, expected {list(config.dimensions)!r}"]
    controls = config.control_names()
    answers: dict[str, str] = {}
    problems: list[str] = []
    for r in annotation.get("result") or []:
        name = r.get("from_name")
        values = (r.get("value") or {}).get("choices")
        if name not in controls:
            problems.append(f"unknown control {name!r}")
        elif r.get("to_name") != OVERLAY_KEY or r.get("type") != "choices":
            problems.append(f"{name}: expected a choices result on {OVERLAY_KEY!r}")
        elif not isinstance(values, list) or len(values) != 1 or values[0] not in AB_VALUES:
            problems.append(f"{name}: expected one of {list(AB_VALUES)}, got {values!r}")
        elif controls[name] in answers:
            problems.append(f"{name}: answered twice")
        else:
            answers[controls[name]] = values[0]
    missing = [d for d in config.dimensions if d not in answers]
    if missing:
        problems.append(f"not answered: {', '.join(missing)}")
    return answers, problems


def collect_answers(
    tasks_json: list[dict[str, Any]], config_shas: Mapping[str, str] | None = None
) -> ABAnswers:
    """Validate and merge an A/B project's export (see the module docstring)."""
    out = ABAnswers()
    units: dict[str, list[list[str]]] = defaultdict(list)
    for t in tasks_json:
        data = t.get("data") or {}
        iid = data.get("item_id")
        anns = t.get("annotations") or []
        if not anns:
            out.counts["tasks_without_annotations"] += 1
            continue
        dset = str(data.get("dimension_set"))
        if config_shas is not None and dset in config_shas:
            try:
                sha = build_ab_labeling_config(dset).sha
            except ValueError:
                sha = None
            if sha != config_shas[dset]:
                out.invalid.append(
                    {"task_id": t.get("id"), "item_id": iid, "problems": ["labeling config differs"]}
                )
                continue
        votes: dict[str, list[str]] = defaultdict(list)
        for who, a in latest_per_annotator(anns, out.counts).items():
            if a.get("was_cancelled"):
                out.counts["cancelled"] += 1
                continue
            answers, problems = validate_ab_annotation(data, a)
            if problems:
                out.invalid.append(
                    {"task_id": t.get("id"), "item_id": iid, "annotator": who, "problems": problems}
                )
                continue
            for dim, value in answers.items():
                votes[dim].append(value)
        if not votes:
            out.counts["tasks_without_valid_annotations"] += 1
            continue
        out.choices[iid], out.support[iid] = {}, {}
        out.n_annotators[iid] = max(len(v) for v in votes.values())
        for dim, values in votes.items():
            units[dim].append(values)
            value, n = Counter(values).most_common(1)[0]
            majority = 2 * n > len(values)
            if not majority:
                out.counts["split_as_same"] += 1
            out.choices[iid][dim] = value if majority else SAME
            out.support[iid][dim] = n / len(values)
    out.agreement = {
        dim: {
            "pairwise": pairwise_agreement([u for u in labels if len(u) >= 2]),
            "krippendorff_alpha": krippendorff_alpha_nominal([u for u in labels if len(u) >= 2]),
            "n_units": sum(len(u) >= 2 for u in labels),
        }
        for dim, labels in sorted(units.items())
    }
    return out
