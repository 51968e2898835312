"""Human GSB: a blind A/B Label Studio project of one model against the base (paper Figure 7).

Everything lives in the evaluation artifact's ``human/`` folder:

- ``images/<item_id>/left.png``, ``right.png`` and ``overlays/<item_id>.png`` (what annotators see;
  file names tell nothing about the models);
- ``assignment.json``: ``{item_id: {"left": model, "right": model}}``, the hidden sides
  (:func:`onereward.annotate.ab.assign_sides`); never part of a task;
- ``project.json`` (export's project reference, one project per dimension set), ``tasks.json``
  (the task list; offline numbered 1, 2, ...), ``label_configs/``;
- offline answers (simulated) in ``export.json`` (Label Studio's export format); answers read
  from a server are kept in ``answers_export.json``.

Modes (``--human``): ``simulate`` builds the project (offline, or on ``--label-studio-url``) and
lets oracle-driven annotators answer it (synthetic world), then imports the answers; ``export``
builds it on the server for people and stops: ``onereward evaluate-human`` imports the answers
later into a new evaluation artifact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onereward.annotate import ab
from onereward.annotate.config import ExportConfig, ImportConfig, SimulateConfig
from onereward.annotate.export import connect, mask_overlay, place_offline, place_on_server, project_reference
from onereward.annotate.importer import open_answers, read_answers
from onereward.annotate.simulate import open_panel
from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.evaluate.benchmark import BenchmarkItem
from onereward.evaluate.config import EvaluateConfig
from onereward.evaluate.gsb import BAD, GOOD, SAME
from onereward.evaluate.judges import HUMAN
from onereward.evaluate.models import BASE
from onereward.imageio import save_png

HUMAN_DIR = "human"
ASSIGNMENT = "assignment.json"


def export_config(cfg: EvaluateConfig) -> ExportConfig:
    """The export settings of the A/B project (the overlap is the number of annotators)."""
    return ExportConfig(
        label_studio_url=cfg.label_studio_url,
        offline=not cfg.label_studio_url,  # the A/B project lives in the artifact without a server
        document_root=cfg.document_root,
        project_title=cfg.project_title,
        project_version=cfg.project_version,
        overlap=cfg.annotators,
    )


def build_project(
    art: ArtifactWriter,
    items: Sequence[BenchmarkItem],
    images: Mapping[str, Mapping[str, np.ndarray]],
    sources: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    cfg: EvaluateConfig,
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Write the A/B tasks of ``cfg.human_model`` against the base and place them (offline or on the
    server); returns (project.json, assignment)."""
    if cfg.human_model not in images or cfg.human_model == BASE:
        raise InputError(
            f"--human-model: {cfg.human_model!r} is not a compared model other than the base "
            f"(compared: {', '.join(images)})"
        )
    ecfg = export_config(cfg)
    client = connect(ecfg)  # a wrong token or a down server fails here, before the slow work
    root = art.path / HUMAN_DIR
    assignment: dict[str, dict[str, str]] = {}
    drafts = []
    for item in items:
        iid = item.item_id
        sides = ab.assign_sides(cfg.seed, iid, cfg.human_model, BASE)
        assignment[iid] = sides
        rels = {
            "overlay": f"{HUMAN_DIR}/overlays/{iid}.png",
            "left": f"{HUMAN_DIR}/images/{iid}/left.png",
            "right": f"{HUMAN_DIR}/images/{iid}/right.png",
        }
        save_png(art.path / rels["overlay"], mask_overlay(sources[iid], masks[iid]))
        save_png(art.path / rels["left"], images[sides["left"]][iid])
        save_png(art.path / rels["right"], images[sides["right"]][iid])
        content = (art.path / rels["left"]).read_bytes() + (art.path / rels["right"]).read_bytes()
        drafts.append(
            ab.ab_task_draft(
                iid, item.task, item.row.get("prompt"), rels["overlay"], rels["left"], rels["right"], content
            )
        )
    configs = ab.ab_configs(drafts)
    for name, config in configs.items():
        (root / "label_configs").mkdir(parents=True, exist_ok=True)
        (root / "label_configs" / f"{name}.xml").write_text(config.xml)
    if client is None:
        placement = place_offline(drafts, configs)
    else:
        placement = place_on_server(client, art, drafts, configs, ecfg, describe=ab.describe_project)
    project = project_reference(ecfg, configs, drafts, placement)
    project["model"], project["base"] = cfg.human_model, BASE
    write_json_atomic(root / "project.json", project)
    write_json_atomic(root / "tasks.json", placement.payloads)
    write_json_atomic(root / ASSIGNMENT, assignment)
    return project, assignment


def simulate(
    art: ArtifactWriter,
    project: dict[str, Any],
    assignment: Mapping[str, Mapping[str, str]],
    oracle: Mapping[tuple[str, str], Mapping[str, Mapping[str, float | None]]],
    cfg: EvaluateConfig,
) -> dict[str, int]:
    """Oracle-driven annotators answer every A/B task (through the API, or into ``export.json``)."""
    root = art.path / HUMAN_DIR
    scfg = SimulateConfig(
        noise=cfg.annotator_noise, threshold=cfg.annotator_threshold, annotators=cfg.annotators, seed=cfg.seed
    )
    panel = open_panel(scfg, project, root)

    def scores(item_id: str, side: str) -> dict[str, float]:
        model = assignment[item_id][side]
        return {d: float(v["raw"]) for d, v in oracle[(model, item_id)].items()}

    counts = ab.simulate_answers(
        panel, scores, noise=cfg.annotator_noise, threshold=cfg.annotator_threshold, seed=cfg.seed
    )
    if not panel.online:
        write_json_atomic(root / "export.json", panel.tasks, compact=True)
    return dict(counts)


def collect(art: ArtifactWriter, human_root: Path, project: dict[str, Any]) -> ab.ABAnswers:
    """Read and merge the answers of the A/B project (``human_root``'s export.json, else the server)."""
    source = open_answers(human_root, project, ImportConfig())
    tasks_json, _ = read_answers(source, art, wanted=set(project["task_map"].values()))
    if source.online:
        write_json_atomic(art.path / HUMAN_DIR / "answers_export.json", tasks_json, compact=True)
    shas = {name: p["label_config_sha"] for name, p in project["projects"].items()}
    return ab.collect_answers(tasks_json, shas)


def human_judgements(
    items: Sequence[BenchmarkItem],
    answers: ab.ABAnswers,
    assignment: Mapping[str, Mapping[str, str]],
    model: str,
) -> list[dict[str, Any]]:
    """GSB rows of the people: an answer for the side holding ``model`` is Good, for the base's Bad."""
    rows = []
    for item in items:
        chosen = answers.choices.get(item.item_id)
        if chosen is None:
            continue  # not answered (yet), skipped or invalid
        sides = assignment[item.item_id]
        for dim in item.dimensions:
            if dim not in chosen:
                continue
            value = chosen[dim]
            verdict = SAME if value == ab.SAME else (GOOD if sides[value] == model else BAD)
            rows.append(
                {
                    "item_id": item.item_id,
                    "group": item.group,
                    "model": model,
                    "judge": HUMAN,
                    "dimension": dim,
                    "verdict": verdict,
                    "support": float(answers.support[item.item_id][dim]),
                }
            )
    return rows


def read_assignment(root: Path) -> dict[str, dict[str, str]]:
    """``human/assignment.json`` of an evaluation artifact."""
    path = root / HUMAN_DIR / ASSIGNMENT
    if not path.is_file():
        raise InputError(
            f"--evaluation: {path} is missing (the evaluation built no A/B project; rerun with --human)"
        )
    return json.loads(path.read_text())
