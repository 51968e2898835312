"""A simulated annotator driven by the synthetic world's oracle.

For each task and dimension the annotator scores every candidate with
``onereward.synth.oracle.score_all``, adds Gaussian noise (``noise`` = standard deviation, drawn
independently per annotator, task, dimension and candidate), and then answers like the paper's
annotators: best = the highest noisy score, worst = the lowest, or "No clear difference" when the
spread of the noisy scores (max - min) is below ``threshold``. Ties go to the lower candidate
index. With ``noise=0`` the answers are exactly the oracle's choices.

Gaussian noise on scores (rather than "answer at random with probability p") models humans
confusing candidates that are close while rarely swapping clearly different ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onereward.annotate.labeling_config import NO_DIFFERENCE, candidate_letters, choice_result
from onereward.imageio import load_mask, load_rgb


@dataclass(frozen=True)
class Choice:
    """An annotator's answer on one dimension: letters, or ``none`` for no clear difference."""

    best: str
    worst: str


def oracle_scores(
    task: str, source_path, mask_path, prompt: str | None, candidate_paths
) -> dict[str, np.ndarray]:
    """Oracle score of every candidate per dimension: ``{dimension: array [n_candidates]}``."""
    from onereward.synth.oracle import score_all  # the synthetic world is only needed here

    source = load_rgb(source_path)
    mask = load_mask(mask_path)
    per_candidate = [score_all(task, source, mask, prompt, load_rgb(p)) for p in candidate_paths]
    dims = list(per_candidate[0])
    return {d: np.array([float(s[d]) for s in per_candidate], dtype=np.float64) for d in dims}


def choose(scores: np.ndarray, threshold: float) -> Choice:
    """Best/worst letters from (possibly noisy) scores, or no clear difference under ``threshold``."""
    letters = candidate_letters(len(scores))
    if float(scores.max() - scores.min()) < threshold:
        return Choice(NO_DIFFERENCE, NO_DIFFERENCE)
    return Choice(letters[int(np.argmax(scores))], letters[int(np.argmin(scores))])


def annotate_task(
    scores: dict[str, np.ndarray],
    dimensions: list[str],
    *,
    noise: float,
    threshold: float,
    rng: np.random.Generator,
) -> tuple[list[dict], dict[str, Choice]]:
    """Answer one task: Label Studio ``result`` entries and the choices per dimension."""
    result: list[dict] = []
    choices: dict[str, Choice] = {}
    for dim in dimensions:
        s = scores[dim]
        if noise > 0:
            s = s + rng.normal(0.0, noise, size=s.shape)
        c = choose(s, threshold)
        choices[dim] = c
        result.append(choice_result(dim, "best", c.best))
        result.append(choice_result(dim, "worst", c.worst))
    return result, choices
