"""Entry points of the three annotation stages: export_annotations, simulate_annotations,
import_annotations (see the module docs of export.py, simulate.py and importer.py).

Pipeline shape in both modes: ``export -> simulate -> import``. With a Label Studio URL the
project lives on the server: simulate answers through the API and import reads the server's
export. Without one (the embedded demo), export writes ``tasks.json``, simulate writes
``export.json`` in Label Studio's export format, and import reads that file. For real human
annotation, import takes the export's ``project`` artifact directly.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from onereward import tasks as task_table
from onereward.annotate import cloud_storage
from onereward.annotate import export as ex
from onereward.annotate.artifact_io import (
    PROJECT_JSON,
    CandidateSet,
    copy_candidate_set,
    read_candidate_set,
    read_project_json,
)
from onereward.annotate.client import DOCUMENT_ROOT_ENV, LabelStudioClient
from onereward.annotate.importer import agreement_by_dimension, process_export
from onereward.annotate.labeling_config import candidate_key, candidate_letters
from onereward.annotate.simulate import annotate_task, oracle_scores
from onereward.artifacts import ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.log import Throughput, get_logger
from onereward.report import html_table, img_tag, png_data_uri, write_html_report
from onereward.tables import write_table

log = get_logger("annotate.stage")
T = TypeVar("T")

PREDICTION_SOURCES = ("none", "oracle", "reward_model")
SIMULATED_ANNOTATOR = "simulated-annotator-{k}@onereward.local"


# --- export_annotations -------------------------------------------------------------------------


def run_export(
    candidates: str,
    out: str,
    *,
    label_studio_url: str = "",
    document_root: str = "",
    image_url_prefix: str = "",
    s3_endpoint: str = "",
    project_title: str = "onereward",
    project_version: str = "v1",
    chunk_size: int = 500,
    predictions: str = "none",
    reward_model: str = "",
    overlap: int = 1,
    max_retries: int = 4,
) -> dict[str, Any]:
    """export_annotations: create/reuse the Label Studio projects and import one task per item.

    Parameters:
        candidates: ``candidates`` artifact directory (items, N candidates per item).
        out: output ``project`` artifact directory (project.json, tables, images, overlays,
            label_configs/, tasks.json, report.html).
        label_studio_url: server URL; "" = offline (task list only in tasks.json, for the
            simulated annotator of the embedded demo). Token from ``LABEL_STUDIO_API_KEY``.
        document_root: Label Studio's local-files document root (the server's
            ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, shared with it); default: that env var.
            Images are copied under ``<root>/onereward/<title>-<version>/``.
        image_url_prefix: instead of local files, cloud storage. ``s3://bucket/prefix`` (AWS S3,
            MinIO): export uploads every task image there itself, content-addressed like Local
            Storage, with boto3's credentials (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``);
            see :mod:`onereward.annotate.cloud_storage`. ``gs://...`` or ``http(s)://...``: the
            artifact's ``overlays/`` and ``candidates/`` folders must be synced under the prefix by
            you. An s3/gs bucket is connected to each project as a presigned import storage, read
            with the credentials of the Label Studio deployment itself.
        s3_endpoint: S3 endpoint URL for MinIO or other S3-compatible stores ("" = AWS).
        project_title, project_version: the projects are titled ``"<title> <version> [<set>]"``;
            the same title and version reuse the same projects.
        chunk_size: tasks per import request.
        predictions: pre-annotations shown to annotators: "none", "oracle" (the noise-free
            oracle's choices, synthetic world) or "reward_model" (needs ``reward_model``).
        reward_model: a ``reward_model`` artifact or VLM folder, for ``predictions="reward_model"``.
        overlap: annotators per task (Label Studio's ``maximum_annotations`` of new projects).
        max_retries: retries with exponential backoff when the server is unreachable.
    Returns the metrics (``n_tasks``, ``n_new_tasks``, ``n_projects``, tasks per task and set).
    """
    started = time.perf_counter()
    if image_url_prefix and not image_url_prefix.startswith(("s3://", "gs://", "http://", "https://")):
        raise InputError(f"--image-url-prefix: expected s3://, gs:// or http(s)://, got {image_url_prefix!r}")
    if predictions not in PREDICTION_SOURCES:
        raise InputError(f"--predictions: expected one of {PREDICTION_SOURCES}, got {predictions!r}")
    if predictions == "reward_model" and not reward_model:
        raise InputError("--reward-model: required with --predictions reward_model (a reward_model artifact)")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"--chunk-size: expected an integer >= 1, got {chunk_size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise InputError(f"--overlap: expected an integer >= 1, got {overlap!r}")
    for name, value in (("--project-title", project_title), ("--project-version", project_version)):
        if not value or not value.strip():
            raise InputError(f"{name}: must not be empty")
    cs = read_candidate_set(candidates, kind="candidates", what="--candidates")
    params = {
        "label_studio_url": label_studio_url or None,
        "document_root": document_root or os.environ.get(DOCUMENT_ROOT_ENV) or None,
        "image_url_prefix": image_url_prefix or None,
        "s3_endpoint": s3_endpoint or None,
        "project_title": project_title,
        "project_version": project_version,
        "chunk_size": chunk_size,
        "predictions": predictions,
        "reward_model": reward_model or None,
        "overlap": overlap,
    }
    client = None
    if label_studio_url:
        # Fail fast (token, reachability, image storage) before the slow local work.
        client = LabelStudioClient(label_studio_url, max_retries=max_retries)
        client.check_auth()
        if params["image_url_prefix"] and params["image_url_prefix"].startswith("s3://"):
            cloud_storage.s3_client(params["s3_endpoint"])  # credentials present?
        if not params["image_url_prefix"]:
            if not params["document_root"]:
                raise InputError(
                    f"--document-root: images need a place Label Studio can serve them from: pass --document-root "
                    f"or set {DOCUMENT_ROOT_ENV} (local files), or --image-url-prefix (S3/GCS/MinIO storage)"
                )
            if not Path(params["document_root"]).is_dir():
                raise InputError(
                    f"--document-root: {params['document_root']} is not a directory (Label Studio's local-files root)"
                )
    with ArtifactWriter(
        out, kind="project", stage="export_annotations", parameters=params, inputs=[cs.manifest]
    ) as art:
        with art.timer("copy_s"):
            copy_candidate_set(cs, art.path)
        with art.timer("tasks_s"):
            drafts = ex.build_task_drafts(cs, art.path, predictions=predictions, reward_model=reward_model)
        configs = ex.group_configs(cs, drafts)
        for name, cfg in configs.items():
            (art.path / "label_configs").mkdir(exist_ok=True)
            (art.path / "label_configs" / f"{name}.xml").write_text(cfg.xml)
        config_sha = hashlib.sha256("".join(configs[n].sha for n in sorted(configs)).encode()).hexdigest()
        projects: dict[str, dict[str, Any]] = {}
        task_map: dict[str, int] = {}
        new_by_set: dict[str, int] = {}
        if not label_studio_url:
            payloads = [ex.task_payload(d, lambda rel: rel, task_id=i + 1) for i, d in enumerate(drafts)]
            task_map = {d.item_id: i + 1 for i, d in enumerate(drafts)}
            for name in configs:
                new_by_set[name] = sum(d.dimension_set == name for d in drafts)
        else:
            with art.timer("server_s"):
                payloads, task_map, projects, new_by_set = _export_to_server(
                    client,
                    art.path,
                    drafts,
                    configs,
                    params,
                    chunk_size=chunk_size,
                    metrics=art.metrics,
                    timer=art.timer,
                )
        for name, cfg in configs.items():
            projects.setdefault(name, {"project_id": None})
            projects[name].update(
                {
                    "title": ex.project_title(project_title, project_version, name),
                    "dimensions": list(cfg.dimensions),
                    "n_candidates": cfg.n_candidates,
                    "label_config_sha": cfg.sha,
                    "n_tasks": sum(d.dimension_set == name for d in drafts),
                }
            )
        first_id = next((p["project_id"] for p in projects.values() if p["project_id"] is not None), None)
        project = {
            "url": label_studio_url.rstrip("/") or None,
            "project_id": first_id,
            "title": project_title,
            "version": project_version,
            "task_map": task_map,
            "label_config_sha": config_sha,
            "n_tasks": len(drafts),
            "projects": projects,
        }
        write_json_atomic(art.path / PROJECT_JSON, project)
        write_json_atomic(art.path / "tasks.json", payloads)
        per_task = Counter(d.data["edit_task"] for d in drafts)
        art.counts.update({"n_tasks": len(drafts), "n_projects": len(configs)})
        art.metrics.update(
            {
                "n_tasks": len(drafts),
                "n_new_tasks": sum(new_by_set.values()),
                "n_projects": len(configs),
                "tasks_per_task": dict(per_task),
                "tasks_per_dimension_set": {n: p["n_tasks"] for n, p in projects.items()},
                "online": bool(label_studio_url),
                "tasks_per_second": round(len(drafts) / max(time.perf_counter() - started, 1e-9), 2),
            }
        )
        _export_report(art.path, cs, drafts, project, configs, new_by_set)
    log.info("export_annotations: %d tasks in %d project(s) -> %s", len(drafts), len(configs), out)
    return dict(art.metrics)


def _export_to_server(
    client: LabelStudioClient,
    root: Path,
    drafts: list[ex.TaskDraft],
    configs: dict,
    params: dict[str, Any],
    *,
    chunk_size: int,
    metrics: dict[str, Any],
    timer: Callable[[str], Any],
) -> tuple[list[dict], dict[str, int], dict[str, dict[str, Any]], dict[str, int]]:
    title, version = params["project_title"], params["project_version"]
    storage_dir: Path | None = None
    published = False  # True: task URLs use the content-addressed layout of ex.published_rel
    if params["image_url_prefix"]:
        prefix = params["image_url_prefix"].rstrip("/")
        if prefix.startswith("s3://"):
            files = {(ex.published_rel(d, rel), root / rel) for d in drafts for rel in d.images.values()}
            with timer("upload_s"):
                metrics["image_upload"] = cloud_storage.upload_images(
                    files, prefix, endpoint=params["s3_endpoint"]
                )
            published = True

        def url_of(rel: str) -> str:
            return f"{prefix}/{rel}"
    else:
        doc_root = Path(params["document_root"])
        storage_dir = (doc_root / "onereward" / f"{ex.slug(title)}-{ex.slug(version)}").resolve()
        ex.publish_images(root, drafts, storage_dir)
        published = True

        def url_of(rel: str) -> str:
            return ex.local_files_url(doc_root, storage_dir / rel)  # type: ignore[operator]

    payloads: list[dict] = []
    task_map: dict[str, int] = {}
    projects: dict[str, dict[str, Any]] = {}
    new_by_set: dict[str, int] = {}
    for name, cfg in configs.items():
        ptitle = ex.project_title(title, version, name)
        description = (
            f"onereward annotation ({name}: {', '.join(cfg.dimensions)}). For each dimension pick the best and "
            "the worst candidate, or 'No clear difference'."
        )
        pid = ex.ensure_project(client, ptitle, cfg, description, overlap=params["overlap"])
        if storage_dir is not None:
            ex.ensure_local_storage(client, pid, storage_dir)
        elif params["image_url_prefix"]:
            ex.ensure_cloud_storage(
                client, pid, params["image_url_prefix"], s3_endpoint=params["s3_endpoint"]
            )
        mine = [d for d in drafts if d.dimension_set == name]
        if published:
            pairs = [
                (d.key, ex.task_payload(d, lambda rel, d=d: url_of(ex.published_rel(d, rel)))) for d in mine
            ]
        else:
            pairs = [(d.key, ex.task_payload(d, url_of)) for d in mine]
        have, n_new = ex.import_tasks(client, pid, pairs, chunk_size=chunk_size)
        for d, (_, p) in zip(mine, pairs, strict=True):
            task_map[d.item_id] = have[d.key]
            payloads.append({"id": have[d.key], **p})
        projects[name] = {"project_id": pid}
        new_by_set[name] = n_new
    return payloads, task_map, projects, new_by_set


def _example_row(cs: CandidateSet, d: ex.TaskDraft, root: Path) -> list[str]:
    letters = candidate_letters(len(d.data["candidate_ids"]))
    imgs = [img_tag(png_data_uri(root / d.images[ex.OVERLAY_KEY], 96), "source + mask")]
    imgs += [img_tag(png_data_uri(root / d.images[candidate_key(x)], 96), x) for x in letters]
    return [
        d.item_id,
        d.data["edit_task"],
        html.escape(d.data["prompt"]),
        "<div>" + " ".join(imgs) + "</div>",
    ]


def _export_report(root: Path, cs: CandidateSet, drafts, project, configs, new_by_set) -> None:
    rows = [
        [
            name,
            p.get("project_id"),
            p["title"],
            p["n_tasks"],
            new_by_set.get(name, 0),
            ", ".join(p["dimensions"]),
        ]
        for name, p in project["projects"].items()
    ]
    seen: set[str] = set()
    examples = []
    for d in drafts:
        if d.dimension_set not in seen:
            seen.add(d.dimension_set)
            examples.append(_example_row(cs, d, root))
    sections = [
        (
            "Projects",
            f"<p>server: {html.escape(str(project['url']))} (offline: tasks.json)</p>"
            + html_table(["dimension set", "project id", "title", "tasks", "new tasks", "dimensions"], rows),
        ),
        (
            "One task per dimension set (source with mask, candidates A, B, ...)",
            html_table(["item", "task", "prompt", "images"], examples),
        ),
    ]
    for name, cfg in configs.items():
        sections.append((f"Labeling config: {name}", f"<pre>{html.escape(cfg.xml)}</pre>"))
    write_html_report(root / "report.html", "export_annotations", sections)


# --- simulate_annotations ------------------------------------------------------------------------


def run_simulate(
    project: str,
    out: str,
    *,
    noise: float = 0.0,
    threshold: float = 0.02,
    annotators: int = 1,
    seed: int = 0,
    max_retries: int = 4,
) -> dict[str, Any]:
    """simulate_annotations: answer every task with oracle-driven annotators.

    Parameters:
        project: ``project`` artifact from export_annotations.
        out: output ``annotations`` artifact (project.json, tables, images, simulation.json;
            offline also ``export.json`` in Label Studio's export format).
        noise: standard deviation of Gaussian noise added to each oracle score (0 = the oracle).
        threshold: "No clear difference" when the spread (max - min) of a dimension's noisy scores
            is below this.
        annotators: number of simulated annotators per task (each a Label Studio user online).
        seed: seed of the noise; answers depend only on (seed, annotator, item).
        max_retries: retries with backoff when the server is unreachable.
    With a server (the URL in project.json) answers are posted through the API, idempotently (an
    annotator who already answered a task is skipped). Returns the metrics.
    """
    if noise < 0:
        raise InputError(f"--noise: must be >= 0, got {noise}")
    if threshold < 0:
        raise InputError(f"--threshold: must be >= 0, got {threshold}")
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise InputError(f"--annotators: expected an integer >= 1, got {annotators!r}")
    cs = read_candidate_set(project, kind="project", what="--project")
    root = Path(project)
    pj = read_project_json(root, "--project")
    params = {"noise": noise, "threshold": threshold, "annotators": annotators, "seed": seed}
    wanted = set(pj["task_map"].values())
    with ArtifactWriter(
        out, kind="annotations", stage="simulate_annotations", parameters=params, inputs=[cs.manifest]
    ) as art:
        copy_candidate_set(cs, art.path, extra_dirs=("overlays", "label_configs"))
        write_json_atomic(art.path / PROJECT_JSON, pj)
        answers: Counter[str] = Counter()
        client = None
        if pj["url"]:
            client = LabelStudioClient(pj["url"], max_retries=max_retries)
            client.check_auth()
            user_ids = [client.ensure_user(SIMULATED_ANNOTATOR.format(k=k + 1)) for k in range(annotators)]
            tasks_json = []
            for p in pj["projects"].values():
                tasks_json += [t for t in client.export_tasks(p["project_id"]) if t["id"] in wanted]
        else:
            user_ids = list(range(1, annotators + 1))
            tasks_path = root / "tasks.json"
            if not tasks_path.is_file():
                raise InputError(
                    f"--project: {tasks_path} is missing (an offline project needs its task list)"
                )
            tasks_json = [t for t in json.loads(tasks_path.read_text()) if t["id"] in wanted]
        next_annotation_id = 1
        with Throughput("annotations") as tp:
            for t in tqdm(tasks_json, desc="simulate", unit="task", leave=False):
                data = t["data"]
                item = cs.items.get(data.get("item_id"))
                if item is None:
                    raise InputError(
                        f"--project: task {t['id']} names item {data.get('item_id')!r}, not in items.parquet"
                    )
                cand_paths = [cs.path(cs_row["image"]) for cs_row in cs.candidates[item["item_id"]]]
                scores = oracle_scores(
                    item["task"],
                    cs.path(item["image"]),
                    cs.path(item["mask"]),
                    item.get("prompt"),
                    cand_paths,
                )
                done_by = {a.get("completed_by") for a in t.get("annotations") or []}
                t.setdefault("annotations", [])
                for k, uid in enumerate(user_ids):
                    rng = np.random.default_rng([seed, k, zlib.crc32(item["item_id"].encode())])
                    result, choices = annotate_task(
                        scores, data["dimensions"], noise=noise, threshold=threshold, rng=rng
                    )
                    answers.update("none" if c.best == "none" else "pair" for c in choices.values())
                    if uid in done_by:
                        answers["already_answered"] += 1
                        continue
                    if client is not None:
                        client.call(
                            f"annotate task {t['id']}",
                            _create_annotation_once,
                            client,
                            t["id"],
                            uid,
                            result,
                            {"retry": False},
                        )
                    else:
                        t["annotations"].append(
                            {
                                "id": next_annotation_id,
                                "completed_by": uid,
                                "was_cancelled": False,
                                "task": t["id"],
                                "result": result,
                            }
                        )
                        next_annotation_id += 1
                    tp.add(1)
        log.info("simulate_annotations: %s", tp)
        if client is None:
            write_json_atomic(art.path / "export.json", tasks_json, compact=True)
        write_json_atomic(
            art.path / "simulation.json", {**params, "annotator_ids": user_ids, "online": client is not None}
        )
        art.counts.update({"n_tasks": len(tasks_json), "n_annotations": tp.count})
        art.metrics.update(
            {
                "n_tasks": len(tasks_json),
                "n_annotations": tp.count,
                "n_already_answered": answers["already_answered"],
                "n_dimension_answers_pair": answers["pair"],
                "n_dimension_answers_no_clear_difference": answers["none"],
                "annotations_per_second": round(tp.rate, 2),
                "online": client is not None,
            }
        )
        write_html_report(
            art.path / "report.html",
            "simulate_annotations",
            [
                (
                    "Simulated annotators",
                    html_table(
                        ["parameter", "value"], [[k, v] for k, v in {**params, **art.metrics}.items()]
                    ),
                )
            ],
        )
    return dict(art.metrics)


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


# --- import_annotations -------------------------------------------------------------------------


def run_import(project: str, out: str, *, max_retries: int = 4) -> dict[str, Any]:
    """import_annotations: validate and merge the annotations into a ``preferences`` artifact.

    Parameters:
        project: a ``project`` artifact (annotations live on the server named in project.json)
            or an ``annotations`` artifact (offline: its export.json; online: the server).
        out: output ``preferences`` artifact: pairs.parquet (one row per item and dimension),
            export.json (the raw export read), invalid.json, report.html.
        max_retries: retries with backoff when the server is unreachable.
    Returns the metrics: n_tasks, n_pairs, counts {task: {dimension: n}}, agreement, n_invalid,
    and the counts of dropped answers.
    """
    started = time.perf_counter()
    manifest_kind = ("project", "annotations")
    cs = read_candidate_set(project, kind=manifest_kind, what="--project")
    root = Path(project)
    pj = read_project_json(root, "--project")
    wanted = set(pj["task_map"].values())
    export_path = root / "export.json"
    fetch_s = 0.0
    fetch: Future | None = None
    if export_path.is_file():
        source = "export.json"
    elif pj["url"]:
        client = LabelStudioClient(pj["url"], max_retries=max_retries)
        client.check_auth()  # a wrong token or a down server fails here, before anything is written

        def fetch_all() -> tuple[list[dict[str, Any]], float]:
            t_fetch = time.perf_counter()
            got: list[dict[str, Any]] = []
            for p in pj["projects"].values():
                got += client.export_tasks(p["project_id"])
            return got, time.perf_counter() - t_fetch

        # The server builds the export in its own process; link the inputs meanwhile.
        fetch = _in_background(fetch_all, name="label-studio-export")
        source = pj["url"]
    else:
        raise InputError(
            f"--project: {root} has no annotations: project.json field 'url' is null and export.json is missing; "
            "run `onereward simulate-annotations` on it (or export to a Label Studio server) first"
        )
    with ArtifactWriter(
        out,
        kind="preferences",
        stage="import_annotations",
        parameters={"source": source},
        inputs=[cs.manifest],
    ) as art:
        with art.timer("copy_s"):
            copy_candidate_set(cs, art.path)
        if fetch is not None:
            with art.timer("fetch_wait_s"):
                tasks_json, fetch_s = fetch.result()
        else:
            try:
                tasks_json = json.loads(export_path.read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"--project: {export_path} is not valid JSON ({e})") from None
        if not isinstance(tasks_json, list):
            raise InputError(f"--project: the export from {source} is not a list of tasks")
        tasks_json = [t for t in tasks_json if t.get("id") in wanted]
        with art.timer("process_s"):
            config_shas = {name: p["label_config_sha"] for name, p in pj["projects"].items()}
            result = process_export(tasks_json, config_shas)
        art.timings["fetch_s"] = round(fetch_s, 4)
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
        write_table(art.path / "pairs.parquet", rows, schema=PAIRS_SCHEMA)
        with art.timer("write_s"):
            write_json_atomic(art.path / "export.json", tasks_json, compact=True)
        write_json_atomic(art.path / "invalid.json", result.invalid)
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for task, dim in task_table.task_dimension_pairs():
            counts[task][dim] = 0
        for r in rows:
            counts[r["task"]][r["dimension"]] += 1
        agreement = agreement_by_dimension(result.units)
        c = result.counts
        art.counts.update({"n_pairs": len(rows), "n_tasks": len(tasks_json)})
        art.metrics.update(
            {
                "n_tasks": len(tasks_json),
                "n_tasks_annotated": result.n_tasks_annotated,
                "n_pairs": len(rows),
                "counts": dict(counts),
                "agreement": agreement,
                "n_invalid": len(result.invalid),
                "n_cancelled": c["cancelled"],
                "n_tasks_without_annotations": c["tasks_without_annotations"],
                "n_best_equals_worst": c["best_equals_worst"],
                "n_no_clear_difference": c["dropped_no_clear_difference"],
                "n_ties": c["dropped_tie"],
                "source": "server" if source != "export.json" else "export.json",
                "tasks_per_second": round(len(tasks_json) / max(time.perf_counter() - started, 1e-9), 2),
            }
        )
        _import_report(art.path, rows, dict(counts), agreement, result, art.metrics)
    log.info(
        "import_annotations: %d pairs from %d tasks (%d invalid annotations)",
        len(rows),
        len(tasks_json),
        len(result.invalid),
    )
    return dict(art.metrics)


def _pairs_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("pair_id", pa.string()),
            ("item_id", pa.string()),
            ("task", pa.string()),
            ("dimension", pa.string()),
            ("prompt", pa.string()),
            ("winner", pa.string()),
            ("loser", pa.string()),
            ("winner_image", pa.string()),
            ("loser_image", pa.string()),
            ("source_image", pa.string()),
            ("mask_image", pa.string()),
            ("annotators", pa.string()),
            ("n_annotators", pa.int64()),
            ("agreement", pa.float64()),
            ("ls_task_id", pa.int64()),
        ]
    )


PAIRS_SCHEMA = _pairs_schema()


def _import_report(root: Path, rows, counts, agreement, result, metrics) -> None:
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
    examples = [
        [
            r["item_id"],
            r["dimension"],
            img_tag(png_data_uri(root / r["source_image"], 80), "source"),
            img_tag(png_data_uri(root / r["winner_image"], 80), r["winner"]),
            img_tag(png_data_uri(root / r["loser_image"], 80), r["loser"]),
            f"{r['agreement']:.2f}",
        ]
        for r in rows[:12]
    ]
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


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
