"""Stage import_annotations: turn Label Studio answers into winner/loser pairs per (item, dimension).

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

- The answers come from the input's ``export.json`` (an offline ``annotations`` artifact), or
  else from the server named in ``project.json``: its export snapshots are read in a background
  thread while the inputs are linked into the output (the server builds them in its own process).
- Only the tasks of the project's task map are read; the export read is kept as ``export.json``.

Entry point: :func:`run_import`; settings: :class:`onereward.annotate.config.ImportConfig`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from onereward import tasks as task_table
from onereward.annotate.agreement import krippendorff_alpha_nominal, pairwise_agreement
from onereward.annotate.artifact_io import (
    CandidateSet,
    copy_candidate_set,
    read_candidate_set,
    read_project_json,
)
from onereward.annotate.client import LabelStudioClient
from onereward.annotate.config import ImportConfig
from onereward.annotate.labeling_config import (
    DIMENSION_SETS,
    NO_DIFFERENCE,
    OVERLAY_KEY,
    build_labeling_config,
    candidate_letters,
)
from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.report import html_table, img_tag, png_data_uri, write_html_report
from onereward.tables import PAIRS_SCHEMA, write_table

log = get_logger("annotate.importer")
T = TypeVar("T")

STAGE = "import_annotations"
EXPORT_JSON = "export.json"


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class AnswerSource:
    """Where the answers come from: the input's export.json, or the server's export being read
    in the background (``fetch`` holds ``(tasks, seconds)``)."""

    name: str  # "export.json" or the server's URL (recorded in the manifest)
    path: Path | None = None
    fetch: Future | None = None

    @property
    def online(self) -> bool:
        return self.fetch is not None


def run_import(project: str, out: str, **settings: Any) -> dict[str, Any]:
    """import_annotations: validate and merge the annotations into a ``preferences`` artifact.

    Args:
        project: a ``project`` artifact (annotations live on the server named in project.json)
            or an ``annotations`` artifact (offline: its export.json; online: the server).
        out: output ``preferences`` artifact: pairs.parquet (one row per item and dimension),
            export.json (the raw export read), invalid.json, report.html.
        settings: fields of :class:`~onereward.annotate.config.ImportConfig` (None or absent =
            the default). The API token (online) is read from ``LABEL_STUDIO_API_KEY``.

    Returns the metrics: n_tasks, n_pairs, counts {task: {dimension: n}}, agreement, n_invalid,
    and the counts of dropped answers.
    """
    started = time.perf_counter()
    # 1. Check the settings and read the project.
    cfg = ImportConfig.resolve(None, settings)
    cs = read_candidate_set(project, kind=("project", "annotations"), what="--project")
    root = Path(project)
    pj = read_project_json(root, "--project")
    # 2. Find the answers; a server's export starts now, in the background.
    source = open_answers(root, pj, cfg)
    with ArtifactWriter(
        out, kind="preferences", stage=STAGE, parameters={"source": source.name}, inputs=[cs.manifest]
    ) as art:
        with art.timer("copy_s"):
            copy_candidate_set(cs, art.path)
        # 3. Read the answers to the project's tasks.
        tasks_json, fetch_s = read_answers(source, art, wanted=set(pj["task_map"].values()))
        # 4. Validate them, merge the annotators of each task and dimension, pair the images.
        with art.timer("process_s"):
            config_shas = {name: p["label_config_sha"] for name, p in pj["projects"].items()}
            result = process_export(tasks_json, config_shas)
        art.timings["fetch_s"] = round(fetch_s, 4)
        rows = pair_rows(cs, result)
        # 5. Write the pairs, the export read, the invalid annotations, the metrics and the report.
        write_table(art.path / "pairs.parquet", rows, schema=PAIRS_SCHEMA)
        with art.timer("write_s"):
            write_json_atomic(art.path / EXPORT_JSON, tasks_json, compact=True)
        write_json_atomic(art.path / "invalid.json", result.invalid)
        counts = pair_counts(rows)
        agreement = agreement_by_dimension(result.units)
        _record_metrics(art, tasks_json, rows, counts, agreement, result, source=source, started=started)
        _import_report(art.path, rows, counts, agreement, result, art.metrics)
    log.info(
        "import_annotations: %d pairs from %d tasks (%d invalid annotations)",
        len(rows),
        len(tasks_json),
        len(result.invalid),
    )
    return dict(art.metrics)


def open_answers(root: Path, pj: dict[str, Any], cfg: ImportConfig) -> AnswerSource:
    """The input's export.json when it has one; else the server's export, started in the
    background after the token is checked (a wrong token or a down server fails here, before
    anything is written)."""
    export_path = root / EXPORT_JSON
    if export_path.is_file():
        return AnswerSource(EXPORT_JSON, path=export_path)
    if not pj["url"]:
        raise InputError(
            f"--project: {root} has no annotations: project.json field 'url' is null and export.json is missing; "
            "run `onereward simulate-annotations` on it (or export to a Label Studio server) first"
        )
    client = LabelStudioClient(
        pj["url"], max_retries=cfg.max_retries, backoff=cfg.retry_backoff, timeout=cfg.timeout
    )
    client.check_auth()

    def fetch_all() -> tuple[list[dict[str, Any]], float]:
        t_fetch = time.perf_counter()
        got: list[dict[str, Any]] = []
        for p in pj["projects"].values():
            got += client.export_tasks(p["project_id"])
        return got, time.perf_counter() - t_fetch

    return AnswerSource(pj["url"], fetch=_in_background(fetch_all, name="label-studio-export"))


def read_answers(
    source: AnswerSource, art: ArtifactWriter, *, wanted: set[int]
) -> tuple[list[dict[str, Any]], float]:
    """The tasks (with annotations) whose id is in ``wanted``, and the seconds the server export took."""
    fetch_s = 0.0
    if source.fetch is not None:
        with art.timer("fetch_wait_s"):
            tasks_json, fetch_s = source.fetch.result()
    else:
        assert source.path is not None
        try:
            tasks_json = json.loads(source.path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"--project: {source.path} is not valid JSON ({e})") from None
    if not isinstance(tasks_json, list):
        raise InputError(f"--project: the export from {source.name} is not a list of tasks")
    bad = [i for i, t in enumerate(tasks_json) if not isinstance(t, dict)]
    if bad:
        raise InputError(
            f"--project: the export from {source.name}: entry {bad[0]} is a {type(tasks_json[bad[0]]).__name__}, "
            f"not a task object ({len(bad)} such entries); expected Label Studio's JSON export format"
        )
    return [t for t in tasks_json if t.get("id") in wanted], fetch_s


def pair_rows(cs: CandidateSet, result: ImportResult) -> list[dict[str, Any]]:
    """Rows of pairs.parquet (:data:`onereward.tables.PAIRS_SCHEMA`): each merged pair with its
    images and the item's user prompt (None for tasks without one)."""
    by_cand = {r["candidate_id"]: r for r in cs.candidate_rows}
    rows = []
    for p in result.pairs:
        item = cs.items[p["item_id"]]
        user_prompt = (
            item.get("prompt") if task_table.has_user_prompt(item["task"], item.get("prompt")) else None
        )
        rows.append(
            {
                "pair_id": f"{p['item_id']}-{p['dimension']}",
                "item_id": p["item_id"],
                "task": p["task"],
                "dimension": p["dimension"],
                "prompt": user_prompt,
                "winner": p["winner"],
                "loser": p["loser"],
                "winner_image": by_cand[p["winner"]]["image"],
                "loser_image": by_cand[p["loser"]]["image"],
                "source_image": item["image"],
                "mask_image": item["mask"],
                "annotators": json.dumps(p["annotators"]),
                "n_annotators": int(p["n_annotators"]),
                "agreement": float(p["agreement"]),
                "ls_task_id": int(p["ls_task_id"]),
            }
        )
    return rows


def pair_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``{task: {dimension: pairs}}`` over every (task, dimension) of the task table (zeros kept)."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for task, dim in task_table.task_dimension_pairs():
        counts[task][dim] = 0
    for r in rows:
        counts[r["task"]][r["dimension"]] += 1
    return dict(counts)


def _record_metrics(
    art: ArtifactWriter,
    tasks_json: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    counts: dict[str, dict[str, int]],
    agreement: dict[str, dict[str, float | int | None]],
    result: ImportResult,
    *,
    source: AnswerSource,
    started: float,
) -> None:
    c = result.counts
    art.counts.update({"n_pairs": len(rows), "n_tasks": len(tasks_json)})
    art.metrics.update(
        {
            "n_tasks": len(tasks_json),
            "n_tasks_annotated": result.n_tasks_annotated,
            "n_pairs": len(rows),
            "counts": counts,
            "agreement": agreement,
            "n_invalid": len(result.invalid),
            "n_cancelled": c["cancelled"],
            "n_tasks_without_annotations": c["tasks_without_annotations"],
            "n_best_equals_worst": c["best_equals_worst"],
            "n_no_clear_difference": c["dropped_no_clear_difference"],
            "n_ties": c["dropped_tie"],
            "source": "server" if source.online else EXPORT_JSON,
            "tasks_per_second": round(len(tasks_json) / max(time.perf_counter() - started, 1e-9), 2),
        }
    )


def _in_background(fn: Callable[[], T], *, name: str) -> Future:
    """Start ``fn()`` in a daemon thread; the Future holds its result or its exception.

    A daemon thread, not an executor: when the main thread fails first (a missing input image,
    say), the process can exit without waiting for a long server export to finish.
    """
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the caller of result()
                future.set_exception(e)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


# --- validating and merging the answers ---------------------------------------------------------


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
    result = annotation.get("result") or []
    if not isinstance(result, list):
        return {}, [f"result: expected a list of answers, got {type(result).__name__}"]
    for r in result:
        if not isinstance(r, dict):
            problems.append(f"result entry {r!r}: expected an object")
            continue
        name = r.get("from_name")
        if not isinstance(name, str) or name not in controls:
            problems.append(f"unknown control {name!r}")
            continue
        if r.get("to_name") != OVERLAY_KEY:
            problems.append(f"{name}: to_name {r.get('to_name')!r}, expected {OVERLAY_KEY!r}")
            continue
        if r.get("type") != "choices":
            problems.append(f"{name}: type {r.get('type')!r}, expected 'choices'")
            continue
        value = r.get("value")
        values = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
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
        _process_task(t, config_shas, out)
    return out


def _process_task(t: dict[str, Any], config_shas: dict[str, str] | None, out: ImportResult) -> None:
    """Add one task's pairs, agreement units, invalid annotations and counts to ``out``."""
    data = t.get("data") or {}
    anns = t.get("annotations") or []
    if not anns:
        out.counts["tasks_without_annotations"] += 1
        return
    if not isinstance(data, dict) or not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        # Not Label Studio's format (edited by hand?): report the task rather than crash on it.
        out.invalid.append(
            _invalid(t, None, None, ["task: 'data' must be an object and 'annotations' a list of objects"])
        )
        out.counts["invalid_tasks"] += 1
        return
    bad_task = task_problems(data, config_shas)
    if bad_task:
        # Not one of our tasks (or edited by hand): report it rather than crash on it.
        out.invalid.append(_invalid(t, None, None, bad_task))
        out.counts["invalid_tasks"] += 1
        return
    votes = _task_votes(t, anns, out)
    if votes is None:
        out.counts["tasks_without_valid_annotations"] += 1
        return
    out.n_tasks_annotated += 1
    _merge_task(t, votes, out)


def _task_votes(
    t: dict[str, Any], anns: list[dict[str, Any]], out: ImportResult
) -> dict[str, list[Vote]] | None:
    """``{dimension: votes}`` of the latest valid annotation of each annotator (None: none valid).

    Cancelled and invalid annotations are counted / reported in ``out``; a best == worst answer
    drops only that dimension of that annotator."""
    votes: dict[str, list[Vote]] = defaultdict(list)
    n_valid = 0
    for annotator, a in latest_per_annotator(anns, out.counts).items():
        if a.get("was_cancelled"):
            out.counts["cancelled"] += 1
            continue
        choices, problems = validate_annotation(t.get("data") or {}, a)
        if problems:
            out.invalid.append(_invalid(t, a.get("id"), annotator, problems))
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
    return votes if n_valid else None


def _merge_task(t: dict[str, Any], votes: dict[str, list[Vote]], out: ImportResult) -> None:
    """Merge each dimension's votes (:func:`merge_votes`) into a winner/loser pair, or count the drop."""
    data = t.get("data") or {}
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
                "item_id": data.get("item_id"),
                "task": data["edit_task"],
                "dimension": dim,
                "winner": cand_ids[letters.index(best)],
                "loser": cand_ids[letters.index(worst)],
                "ls_task_id": t.get("id"),
                "annotators": sorted({v.annotator for v in unit}),
                "n_annotators": len(unit),
                "agreement": share,
            }
        )


def _invalid(
    t: dict[str, Any], annotation_id: Any, annotator: str | None, problems: list[str]
) -> dict[str, Any]:
    """An entry of invalid.json: the task, the annotation (None: the whole task) and why."""
    data = t.get("data")
    return {
        "task_id": t.get("id"),
        "item_id": data.get("item_id") if isinstance(data, dict) else None,
        "annotation_id": annotation_id,
        "annotator": annotator,
        "problems": problems,
    }


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


# --- report -------------------------------------------------------------------------------------


def _import_report(
    root: Path,
    rows: list[dict[str, Any]],
    counts: dict[str, dict[str, int]],
    agreement: dict[str, dict[str, float | int | None]],
    result: ImportResult,
    metrics: dict[str, Any],
) -> None:
    """report.html: pairs per task x dimension, agreement, drops, invalid answers, example pairs."""
    dims = [d for d in task_table.DIMENSIONS]
    count_rows = [
        [task] + [counts[task].get(d, "") if d in counts[task] else "-" for d in dims] for task in counts
    ]
    agree_rows = [
        [d, _fmt(a["pairwise"]), _fmt(a["krippendorff_alpha"]), a["n_units"]] for d, a in agreement.items()
    ]
    dropped = [
        [k, metrics[k]]
        for k in (
            "n_invalid",
            "n_cancelled",
            "n_tasks_without_annotations",
            "n_best_equals_worst",
            "n_no_clear_difference",
            "n_ties",
        )
    ]
    invalid_rows = [
        [i["task_id"], i["item_id"], i["annotator"], "; ".join(i["problems"])] for i in result.invalid[:30]
    ]
    examples = [_example_pair(root, r) for r in rows[:12]]
    write_html_report(
        root / "report.html",
        "import_annotations",
        [
            ("Pairs per task x dimension", html_table(["task", *dims], count_rows)),
            (
                "Agreement per dimension (tasks with 2+ annotators)",
                html_table(["dimension", "pairwise", "Krippendorff alpha", "tasks"], agree_rows),
            ),
            ("Dropped", html_table(["what", "count"], dropped)),
            (
                "Invalid annotations (first 30)",
                html_table(["task", "item", "annotator", "problems"], invalid_rows),
            ),
            (
                "Example pairs",
                html_table(["item", "dimension", "source", "winner", "loser", "agreement"], examples),
            ),
        ],
    )


def _example_pair(root: Path, r: dict[str, Any]) -> list[str]:
    """One report row: a pair with the source, winner and loser as thumbnails."""
    return [
        r["item_id"],
        r["dimension"],
        img_tag(png_data_uri(root / r["source_image"], 80), "source"),
        img_tag(png_data_uri(root / r["winner_image"], 80), r["winner"]),
        img_tag(png_data_uri(root / r["loser_image"], 80), r["loser"]),
        f"{r['agreement']:.2f}",
    ]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
