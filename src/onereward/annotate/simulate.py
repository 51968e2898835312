"""Stage simulate_annotations: annotators driven by the synthetic world's oracle.

For each task and dimension the annotator scores every candidate with
``onereward.synth.oracle.score_all``, adds Gaussian noise (``noise`` = standard deviation, drawn
independently per annotator, task, dimension and candidate), and then answers like the paper's
annotators: best = the highest noisy score, worst = the lowest, or "No clear difference" when the
spread of the noisy scores (max - min) is below ``threshold``. Ties go to the lower candidate
index. With ``noise=0`` the answers are exactly the oracle's choices.

Gaussian noise on scores (rather than "answer at random with probability p") models humans
confusing candidates that are close while rarely swapping clearly different ones.

- The answers of annotator ``k`` on an item depend only on ``(seed, k, item_id)``
  (:func:`annotator_rng`), not on the order of the tasks or on the other annotators.
- With a server (the URL in project.json) every annotator is a Label Studio user
  (``simulated-annotator-<k>@onereward.local``) and answers are posted through the API,
  idempotently: an annotator who already answered a task is skipped, and a create whose response
  was lost is not posted twice. Offline the answers are appended to the project's ``tasks.json``
  and written as ``export.json`` in Label Studio's export format, for import_annotations.

Entry point: :func:`run_simulate`; settings: :class:`onereward.annotate.config.SimulateConfig`.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from onereward.annotate.artifact_io import (
    PROJECT_JSON,
    CandidateSet,
    copy_candidate_set,
    read_candidate_set,
    read_project_json,
)
from onereward.annotate.client import LabelStudioClient
from onereward.annotate.config import SimulateConfig
from onereward.annotate.labeling_config import NO_DIFFERENCE, candidate_letters, choice_result
from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb
from onereward.log import Throughput, get_logger
from onereward.report import html_table, write_html_report

log = get_logger("annotate.simulate")

STAGE = "simulate_annotations"
SIMULATED_ANNOTATOR = "simulated-annotator-{k}@onereward.local"


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class Panel:
    """The simulated annotators and the tasks they answer.

    ``client`` is the server's client, or None offline (answers are then appended to ``tasks``,
    numbered from 1 like a fresh Label Studio export).
    """

    client: LabelStudioClient | None
    user_ids: list[int]
    tasks: list[dict[str, Any]]  # Label Studio tasks: id, data, annotations
    next_annotation_id: int = 1

    @property
    def online(self) -> bool:
        return self.client is not None

    def submit(self, task: dict[str, Any], user_id: int, result: list[dict[str, Any]]) -> None:
        """Store one annotator's answer on one task (posted to the server, or appended offline)."""
        if self.client is not None:
            self.client.call(
                f"annotate task {task['id']}",
                _create_annotation_once,
                self.client,
                task["id"],
                user_id,
                result,
                {"retry": False},
            )
            return
        task["annotations"].append(
            {
                "id": self.next_annotation_id,
                "completed_by": user_id,
                "was_cancelled": False,
                "task": task["id"],
                "result": result,
            }
        )
        self.next_annotation_id += 1


@dataclass
class Tally:
    """What the annotators did: annotations stored, and dimension answers by kind
    (``pair``, ``none`` = no clear difference, ``already_answered`` = skipped)."""

    answers: Counter[str] = field(default_factory=Counter)
    n_annotations: int = 0
    annotations_per_second: float = 0.0


def run_simulate(project: str, out: str, **settings: Any) -> dict[str, Any]:
    """simulate_annotations: answer every task of a project with oracle-driven annotators.

    Args:
        project: ``project`` artifact from export_annotations.
        out: output ``annotations`` artifact (project.json, tables, images, simulation.json;
            offline also ``export.json`` in Label Studio's export format).
        settings: fields of :class:`~onereward.annotate.config.SimulateConfig` (None or absent =
            the default). The API token (online) is read from ``LABEL_STUDIO_API_KEY``.

    Returns the metrics (``n_tasks``, ``n_annotations``, answers by kind, ``online``).
    """
    # 1. Check the settings and read the project.
    cfg = SimulateConfig.resolve(None, settings)
    cs = read_candidate_set(project, kind="project", what="--project")
    pj = read_project_json(Path(project), "--project")
    params = {"noise": cfg.noise, "threshold": cfg.threshold, "annotators": cfg.annotators, "seed": cfg.seed}
    with ArtifactWriter(out, kind="annotations", stage=STAGE, parameters=params, inputs=[cs.manifest]) as art:
        # 2. Carry the project over (tables, images, overlays, labeling configs, project.json).
        copy_candidate_set(cs, art.path, extra_dirs=("overlays", "label_configs"))
        write_json_atomic(art.path / PROJECT_JSON, pj)
        # 3. The annotators (users on the server) and the project's tasks.
        panel = open_panel(cfg, pj, Path(project))
        # 4. Every annotator answers every task.
        tally = answer_tasks(cs, panel, cfg)
        # 5. Write the offline export, the simulation record, the metrics and the report.
        if not panel.online:
            write_json_atomic(art.path / "export.json", panel.tasks, compact=True)
        write_json_atomic(
            art.path / "simulation.json", {**params, "annotator_ids": panel.user_ids, "online": panel.online}
        )
        _record_metrics(art, panel, tally)
        _simulate_report(art.path, params, art.metrics)
    return dict(art.metrics)


def open_panel(cfg: SimulateConfig, pj: dict[str, Any], root: Path) -> Panel:
    """The annotators and the tasks of the project's task map: with a server, one user per
    annotator and the tasks as the server holds them (answers already given included); offline,
    users 1..n and the task list of ``tasks.json``."""
    wanted = set(pj["task_map"].values())
    if pj["url"]:
        client = LabelStudioClient(
            pj["url"], max_retries=cfg.max_retries, backoff=cfg.retry_backoff, timeout=cfg.timeout
        )
        client.check_auth()
        user_ids = [client.ensure_user(SIMULATED_ANNOTATOR.format(k=k + 1)) for k in range(cfg.annotators)]
        tasks: list[dict[str, Any]] = []
        for p in pj["projects"].values():
            tasks += [t for t in client.export_tasks(p["project_id"]) if t["id"] in wanted]
        return Panel(client, user_ids, tasks)
    tasks_path = root / "tasks.json"
    if not tasks_path.is_file():
        raise InputError(f"--project: {tasks_path} is missing (an offline project needs its task list)")
    tasks = [t for t in json.loads(tasks_path.read_text()) if t["id"] in wanted]
    return Panel(None, list(range(1, cfg.annotators + 1)), tasks)


def answer_tasks(cs: CandidateSet, panel: Panel, cfg: SimulateConfig) -> Tally:
    """Score each task's candidates with the oracle once, then let every annotator answer it."""
    tally = Tally()
    with Throughput("annotations") as tp:
        for task in tqdm(panel.tasks, desc="simulate", unit="task", leave=False):
            item, scores = task_scores(cs, task)
            done_by = {a.get("completed_by") for a in task.get("annotations") or []}
            task.setdefault("annotations", [])
            for k, user_id in enumerate(panel.user_ids):
                result, choices = annotate_task(
                    scores,
                    task["data"]["dimensions"],
                    noise=cfg.noise,
                    threshold=cfg.threshold,
                    rng=annotator_rng(cfg.seed, k, item["item_id"]),
                )
                tally.answers.update("none" if c.best == "none" else "pair" for c in choices.values())
                if user_id in done_by:
                    tally.answers["already_answered"] += 1
                    continue
                panel.submit(task, user_id, result)
                tp.add(1)
    log.info("simulate_annotations: %s", tp)
    tally.n_annotations, tally.annotations_per_second = tp.count, round(tp.rate, 2)
    return tally


def annotator_rng(seed: int, annotator: int, item_id: str) -> np.random.Generator:
    """The noise of annotator ``annotator`` (0-based) on one item: depends only on these three."""
    return np.random.default_rng([seed, annotator, zlib.crc32(item_id.encode())])


def task_scores(cs: CandidateSet, task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The item a task shows and the oracle's score of each of its candidates per dimension."""
    data = task["data"]
    item = cs.items.get(data.get("item_id"))
    if item is None:
        raise InputError(
            f"--project: task {task['id']} names item {data.get('item_id')!r}, not in items.parquet"
        )
    scores = oracle_scores(
        item["task"],
        cs.path(item["image"]),
        cs.path(item["mask"]),
        item.get("prompt"),
        [cs.path(row["image"]) for row in cs.candidates[item["item_id"]]],
    )
    return item, scores


def _create_annotation_once(
    client: LabelStudioClient,
    task_id: int,
    user_id: int,
    result: list[dict[str, Any]],
    state: dict[str, bool],
) -> None:
    # A create whose response was lost may have been stored: before retrying, look at the task's
    # annotations and skip the create when this annotator's answer is already there.
    if state["retry"]:
        for a in client.sdk.annotations.list(task_id):
            who = a.completed_by
            if (who.get("id") if isinstance(who, dict) else who) == user_id:
                return
    state["retry"] = True
    client.sdk.annotations.create(task_id, result=result, completed_by=user_id)


def _record_metrics(art: ArtifactWriter, panel: Panel, tally: Tally) -> None:
    art.counts.update({"n_tasks": len(panel.tasks), "n_annotations": tally.n_annotations})
    art.metrics.update(
        {
            "n_tasks": len(panel.tasks),
            "n_annotations": tally.n_annotations,
            "n_already_answered": tally.answers["already_answered"],
            "n_dimension_answers_pair": tally.answers["pair"],
            "n_dimension_answers_no_clear_difference": tally.answers["none"],
            "annotations_per_second": tally.annotations_per_second,
            "online": panel.online,
        }
    )


def _simulate_report(root: Path, params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """report.html: the simulation's parameters and metrics."""
    write_html_report(
        root / "report.html",
        STAGE,
        [
            (
                "Simulated annotators",
                html_table(["parameter", "value"], [[k, v] for k, v in {**params, **metrics}.items()]),
            )
        ],
    )


# --- the oracle annotator (also export_annotations' oracle pre-annotations) ---------------------


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
