"""Quality gate: policy training refuses a reward model that is not accurate enough.

A reward model's ``metrics.json`` holds its test accuracy per task x dimension. Policy training
calls :func:`check` before it starts; a required cell below the threshold (or missing, i.e. never
tested) raises :class:`RewardGateError` naming the cells, unless ``override=True`` (then the
failure is logged as a warning and returned).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from onereward.artifacts import read_artifact
from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("reward.gate")

DEFAULT_THRESHOLD = 0.6


class RewardGateError(InputError):
    """The reward model's test accuracy is below the threshold for a required task x dimension."""


@dataclass
class GateResult:
    """Outcome of a gate check: every checked cell's accuracy and the failing ones."""

    passed: bool
    threshold: float
    accuracy: dict[tuple[str, str], float | None] = field(default_factory=dict)
    failing: list[tuple[str, str]] = field(default_factory=list)
    overridden: bool = False


def _read_accuracy(reward_model_dir: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    root = Path(reward_model_dir)
    manifest = read_artifact(root, kind="reward_model", verify_hash=False, what="reward_model")
    metrics = manifest.metrics()
    accuracy = metrics.get("accuracy")
    if not isinstance(accuracy, dict):
        raise RewardGateError(
            f"reward_model: {root / 'metrics.json'} has no 'accuracy' {{task: {{dimension: value}}}}"
        )
    return accuracy


def check(
    reward_model_dir: str | os.PathLike[str],
    threshold: float = DEFAULT_THRESHOLD,
    required: Iterable[tuple[str, str]] | None = None,
    override: bool = False,
) -> GateResult:
    """Check the reward model's test accuracy for every ``required`` (task, dimension) cell.

    ``required`` None means every cell in the model's metrics. A cell that is required but has no
    test accuracy fails too. Raises :class:`RewardGateError` on failure unless ``override``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold: expected a value in [0, 1], got {threshold}")
    accuracy = _read_accuracy(reward_model_dir)
    cells = (
        list(required)
        if required is not None
        else [(t, d) for t in sorted(accuracy) for d in sorted(accuracy[t])]
    )
    if not cells:
        raise RewardGateError(
            f"reward_model: {reward_model_dir} reports no accuracy for any task x dimension"
        )
    checked: dict[tuple[str, str], float | None] = {}
    failing = []
    for task, dim in cells:
        value = accuracy.get(task, {}).get(dim)
        checked[(task, dim)] = value
        if value is None or value < threshold:
            failing.append((task, dim))
    result = GateResult(passed=not failing, threshold=threshold, accuracy=checked, failing=failing)
    if failing:
        detail = ", ".join(
            f"{t}/{d}={'untested' if checked[(t, d)] is None else format(checked[(t, d)], '.3f')}"
            for t, d in failing
        )
        message = (
            f"reward_model: {reward_model_dir}: test accuracy below {threshold} for {detail}; "
            "retrain the reward model with more or cleaner preferences, or override the gate explicitly"
        )
        if not override:
            raise RewardGateError(message)
        result.overridden = True
        log.warning("gate overridden: %s", message)
    return result


def summary(result: GateResult) -> str:
    """One line per checked cell, for logs and reports."""
    return json.dumps(
        {f"{t}/{d}": v for (t, d), v in result.accuracy.items()}
        | {"passed": result.passed, "overridden": result.overridden}
    )
