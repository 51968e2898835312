"""Quality gate: policy training refuses a reward model that is not accurate enough.

A reward model's ``metrics.json`` holds its test accuracy per task x dimension (``accuracy``) and
the number of test pairs behind each figure (``n_test_pairs``). Policy training calls
:func:`check` before it starts, with one of two rules:

- ``point``: every required cell's accuracy must reach the threshold;
- ``interval`` (the default): a test set of a few dozen pairs per cell reads +-0.15 around the
  model's real accuracy, so a cell fails only when its accuracy is below the threshold beyond its
  Wilson 95% interval (the upper bound is below the threshold), and the pooled accuracy over all
  required cells (pair-weighted) must itself reach the threshold. With large test sets the two
  rules agree; a cell without a pair count is judged by the point rule.

A cell that is required but was never tested fails under both rules. A failure raises
:class:`RewardGateError` naming the cells with their figures, unless ``override=True`` (then the
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
from onereward.stats import wilson_interval

log = get_logger("reward.gate")

DEFAULT_THRESHOLD = 0.6
RULES = ("interval", "point")


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
    rule: str = "point"
    pairs: dict[tuple[str, str], int | None] = field(default_factory=dict)
    intervals: dict[tuple[str, str], tuple[float, float] | None] = field(default_factory=dict)
    pooled: float | None = None  # pair-weighted accuracy over the required cells (interval rule)
    pooled_failed: bool = False


def _read_accuracy(
    reward_model_dir: str | os.PathLike[str],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """``accuracy`` and ``n_test_pairs`` ({} when absent) of the model's metrics.json."""
    root = Path(reward_model_dir)
    manifest = read_artifact(root, kind="reward_model", verify_hash=False, what="reward_model")
    metrics = manifest.metrics()
    accuracy = metrics.get("accuracy")
    if not isinstance(accuracy, dict):
        raise RewardGateError(
            f"reward_model: {root / 'metrics.json'} has no 'accuracy' {{task: {{dimension: value}}}}"
        )
    pairs = metrics.get("n_test_pairs")
    return accuracy, pairs if isinstance(pairs, dict) else {}


def _describe(result: GateResult, cell: tuple[str, str]) -> str:
    value = result.accuracy[cell]
    if value is None:
        return f"{cell[0]}/{cell[1]}=untested"
    text = f"{cell[0]}/{cell[1]}={value:.3f}"
    n, interval = result.pairs.get(cell), result.intervals.get(cell)
    if n is not None and interval is not None:
        text += f" ({n} pairs, 95% [{interval[0]:.3f}, {interval[1]:.3f}])"
    return text


def check(
    reward_model_dir: str | os.PathLike[str],
    threshold: float = DEFAULT_THRESHOLD,
    required: Iterable[tuple[str, str]] | None = None,
    override: bool = False,
    rule: str = "interval",
) -> GateResult:
    """Check the reward model's test accuracy for every ``required`` (task, dimension) cell.

    ``required`` None means every cell in the model's metrics. A cell that is required but has no
    test accuracy fails too. ``rule``: ``interval`` or ``point`` (module docstring). Raises
    :class:`RewardGateError` on failure unless ``override``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold: expected a value in [0, 1], got {threshold}")
    if rule not in RULES:
        raise InputError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
    accuracy, pair_counts = _read_accuracy(reward_model_dir)
    cells = (
        list(required)
        if required is not None
        else [(t, d) for t in sorted(accuracy) for d in sorted(accuracy[t])]
    )
    if not cells:
        raise RewardGateError(
            f"reward_model: {reward_model_dir} reports no accuracy for any task x dimension"
        )
    result = GateResult(passed=False, threshold=threshold, rule=rule)
    hits = total = 0.0
    for cell in cells:
        task, dim = cell
        value = accuracy.get(task, {}).get(dim)
        n = pair_counts.get(task, {}).get(dim) if isinstance(pair_counts.get(task), dict) else None
        n = int(n) if isinstance(n, int | float) and n > 0 else None
        result.accuracy[cell] = value
        result.pairs[cell] = n
        result.intervals[cell] = wilson_interval(value * n, n) if value is not None and n else None
        if value is None:
            result.failing.append(cell)
            continue
        interval = result.intervals[cell]
        if rule == "interval" and interval is not None:
            hits, total = hits + value * n, total + n
            if interval[1] < threshold:
                result.failing.append(cell)
        elif value < threshold:
            result.failing.append(cell)
    if rule == "interval" and total:
        result.pooled = hits / total
        result.pooled_failed = result.pooled < threshold
    result.passed = not result.failing and not result.pooled_failed
    if not result.passed:
        parts = []
        if result.failing:
            detail = ", ".join(_describe(result, c) for c in result.failing)
            beyond = rule == "interval" and any(result.intervals.get(c) for c in result.failing)
            parts.append(
                f"test accuracy below {threshold} for {detail}"
                + (" (interval rule: a cell fails when its whole 95% interval is below)" if beyond else "")
            )
        if result.pooled_failed:
            parts.append(
                f"pooled test accuracy {result.pooled:.3f} over {int(total)} pairs of the needed cells "
                f"is below {threshold}"
            )
        message = (
            f"reward_model: {reward_model_dir}: {'; '.join(parts)}; "
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
        | {"rule": result.rule, "pooled": result.pooled}
        | {"passed": result.passed, "overridden": result.overridden}
    )
