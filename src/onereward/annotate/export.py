"""Stage export_annotations: put every item with its candidates into Label Studio as one task.

Tasks are grouped by dimension set (see :mod:`labeling_config`); each set has its own project
titled ``"<title> <version> [<set>]"``, created once and reused on reruns (same title and version
give the same project). Each task carries ``onereward_key = <item_id>:<candidate-set hash>``; a
rerun imports only the tasks whose key the project does not hold yet, so no task is duplicated,
and a changed candidate set (new images) becomes a new task.

Images reach annotators through Label Studio storage, never as data URIs: copied under the Local
Storage document root (``--document-root`` or ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``) and
served at ``/data/local-files/?d=...``; or, on a cluster, read from ``image_url_prefix``: an
``s3://`` prefix (AWS S3, MinIO) that export uploads the images to itself
(:mod:`onereward.annotate.cloud_storage`), or a ``gs://`` / ``http(s)://`` prefix the artifact's
``overlays/`` and ``candidates/`` folders were synced to; an s3/gs bucket is connected to each
project as a presigned import storage (see manifests/label-studio/README.md).

Without a Label Studio URL (the embedded demo) nothing leaves the artifact: ``tasks.json`` holds
the task list with image paths relative to the artifact, numbered 1, 2, ... for
simulate_annotations. The API token is never a setting: it is read from ``LABEL_STUDIO_API_KEY``.

Entry point: :func:`run_export`; settings: :class:`onereward.annotate.config.ExportConfig`.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from onereward import tasks as task_table
from onereward.annotate import cloud_storage
from onereward.annotate.artifact_io import (
    PROJECT_JSON,
    CandidateSet,
    copy_candidate_set,
    link_or_copy,
    read_candidate_set,
)
from onereward.annotate.client import DOCUMENT_ROOT_ENV, LabelStudioClient
from onereward.annotate.config import ExportConfig
from onereward.annotate.labeling_config import (
    OVERLAY_KEY,
    PROMPT_KEY,
    LabelingConfig,
    build_labeling_config,
    candidate_key,
    candidate_letters,
    choice_result,
    dimension_set_name,
)
from onereward.annotate.simulate import annotate_task, choose, oracle_scores
from onereward.artifacts import ArtifactError, ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.log import Throughput, get_logger
from onereward.report import html_table, img_tag, png_data_uri, write_html_report

log = get_logger("annotate.export")

STAGE = "export_annotations"
KEY_FIELD = "onereward_key"
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class Placement:
    """Where the tasks went: the task list written to tasks.json, the task id of every item, and
    per dimension set the project id (None offline) and how many tasks this run added."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    task_map: dict[str, int] = field(default_factory=dict)
    project_ids: dict[str, int | None] = field(default_factory=dict)
    n_new: dict[str, int] = field(default_factory=dict)


@dataclass
class ImageHosting:
    """How annotators' browsers reach the task images, and the storage each project connects."""

    url_of: Callable[[TaskDraft, str], str]  # (task, image path in the artifact) -> URL in the task
    local_dir: Path | None = None  # Local Storage folder (under the document root)
    cloud_prefix: str | None = None  # s3:// or gs:// bucket prefix (http(s) needs no storage)


def run_export(candidates: str, out: str, **settings: Any) -> dict[str, Any]:
    """export_annotations: create/reuse the Label Studio projects and import one task per item.

    Args:
        candidates: ``candidates`` artifact directory (items, N candidates per item).
        out: output ``project`` artifact directory (project.json, tables, images, overlays,
            label_configs/, tasks.json, report.html).
        settings: fields of :class:`~onereward.annotate.config.ExportConfig` (None or absent =
            the default). The API token is read from ``LABEL_STUDIO_API_KEY``.

    Returns the metrics (``n_tasks``, ``n_new_tasks``, ``n_projects``, tasks per task and set).
    """
    started = time.perf_counter()
    # 1. Check the settings and read the candidates; with a server, check the token, the server
    #    and where the images will be served from before the slow local work.
    cfg = ExportConfig.resolve(None, settings)
    cs = read_candidate_set(candidates, kind="candidates", what="--candidates")
    params = export_parameters(cfg)
    client = connect(cfg)
    with ArtifactWriter(out, kind="project", stage=STAGE, parameters=params, inputs=[cs.manifest]) as art:
        # 2. Copy the candidates, draw the mask overlays and describe one task per item.
        with art.timer("copy_s"):
            copy_candidate_set(cs, art.path)
        with art.timer("tasks_s"):
            drafts = build_task_drafts(
                cs, art.path, predictions=cfg.predictions, reward_model=cfg.reward_model
            )
        # 3. One labeling config per dimension set.
        configs = group_configs(cs, drafts)
        write_label_configs(art.path, configs)
        # 4. Put the tasks into their projects (offline: number them for tasks.json).
        if client is None:
            placement = place_offline(drafts, configs)
        else:
            with art.timer("server_s"):
                placement = place_on_server(client, art, drafts, configs, cfg)
        # 5. Write the project reference, the task list, the metrics and the report.
        project = project_reference(cfg, configs, drafts, placement)
        write_json_atomic(art.path / PROJECT_JSON, project)
        write_json_atomic(art.path / "tasks.json", placement.payloads)
        _record_metrics(art, drafts, project, placement, started=started, online=client is not None)
        _export_report(art.path, drafts, project, configs, placement.n_new)
    log.info("export_annotations: %d tasks in %d project(s) -> %s", len(drafts), len(configs), out)
    return dict(art.metrics)


def document_root(cfg: ExportConfig) -> str | None:
    """Label Studio's local-files document root: the setting, else ``$LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``."""
    return cfg.document_root or os.environ.get(DOCUMENT_ROOT_ENV) or None


def export_parameters(cfg: ExportConfig) -> dict[str, Any]:
    """The parameters recorded in the manifest (unset text settings as None; never the token)."""
    return {
        "label_studio_url": cfg.label_studio_url or None,
        "document_root": document_root(cfg),
        "image_url_prefix": cfg.image_url_prefix or None,
        "s3_endpoint": cfg.s3_endpoint or None,
        "project_title": cfg.project_title,
        "project_version": cfg.project_version,
        "chunk_size": cfg.chunk_size,
        "predictions": cfg.predictions,
        "reward_model": cfg.reward_model or None,
        "overlap": cfg.overlap,
    }


def connect(cfg: ExportConfig) -> LabelStudioClient | None:
    """The server's client (None offline), after checking the token, the server and the image
    storage: S3 credentials for an s3:// prefix, else a document root that is a directory."""
    if not cfg.label_studio_url:
        return None
    client = LabelStudioClient(
        cfg.label_studio_url, max_retries=cfg.max_retries, backoff=cfg.retry_backoff, timeout=cfg.timeout
    )
    client.check_auth()
    if cfg.image_url_prefix.startswith("s3://"):
        cloud_storage.s3_client(cfg.s3_endpoint or None)  # credentials present?
    if not cfg.image_url_prefix:
        root = document_root(cfg)
        if not root:
            raise InputError(
                f"--document-root: images need a place Label Studio can serve them from: pass --document-root "
                f"or set {DOCUMENT_ROOT_ENV} (local files), or --image-url-prefix (S3/GCS/MinIO storage)"
            )
        if not Path(root).is_dir():
            raise InputError(f"--document-root: {root} is not a directory (Label Studio's local-files root)")
    return client


def write_label_configs(root: Path, configs: dict[str, LabelingConfig]) -> None:
    """``label_configs/<dimension set>.xml``: the labeling config of each project."""
    for name, config in configs.items():
        (root / "label_configs").mkdir(exist_ok=True)
        (root / "label_configs" / f"{name}.xml").write_text(config.xml)


def place_offline(drafts: list[TaskDraft], configs: dict[str, LabelingConfig]) -> Placement:
    """Without a server: tasks numbered 1, 2, ... in item order, image paths relative to the artifact."""
    return Placement(
        payloads=[task_payload(d, lambda rel: rel, task_id=i + 1) for i, d in enumerate(drafts)],
        task_map={d.item_id: i + 1 for i, d in enumerate(drafts)},
        project_ids={name: None for name in configs},
        n_new={name: sum(d.dimension_set == name for d in drafts) for name in configs},
    )


def place_on_server(
    client: LabelStudioClient,
    art: ArtifactWriter,
    drafts: list[TaskDraft],
    configs: dict[str, LabelingConfig],
    cfg: ExportConfig,
    *,
    describe: Callable[[str, Any], str] | None = None,
) -> Placement:
    """Publish the images, then per dimension set ensure the project and its storage and import
    the tasks it does not hold yet. ``describe(set name, config)`` gives a project's description
    (default: the best/worst protocol's; the blind A/B projects of evaluate pass their own)."""
    hosting = host_images(art, drafts, cfg)
    placement = Placement()
    for name, config in configs.items():
        description = (
            describe(name, config)
            if describe is not None
            else (
                f"onereward annotation ({name}: {', '.join(config.dimensions)}). For each dimension pick the "
                "best and the worst candidate, or 'No clear difference'."
            )
        )
        title = project_title(cfg.project_title, cfg.project_version, name)
        pid = ensure_project(client, title, config, description, overlap=cfg.overlap)
        if hosting.local_dir is not None:
            ensure_local_storage(client, pid, hosting.local_dir)
        elif hosting.cloud_prefix:
            ensure_cloud_storage(client, pid, hosting.cloud_prefix, s3_endpoint=cfg.s3_endpoint or None)
        mine = [d for d in drafts if d.dimension_set == name]
        pairs = [(d.key, task_payload(d, lambda rel, d=d: hosting.url_of(d, rel))) for d in mine]
        have, n_new = import_tasks(client, pid, pairs, chunk_size=cfg.chunk_size)
        for d, (_, payload) in zip(mine, pairs, strict=True):
            placement.task_map[d.item_id] = have[d.key]
            placement.payloads.append({"id": have[d.key], **payload})
        placement.project_ids[name] = pid
        placement.n_new[name] = n_new
    return placement


def host_images(art: ArtifactWriter, drafts: list[TaskDraft], cfg: ExportConfig) -> ImageHosting:
    """Publish the task images where Label Studio serves them from and say how tasks name them.

    Local Storage and s3:// uploads use the content-addressed layout of :func:`published_rel`;
    gs:// and http(s):// prefixes name the artifact's own paths (synced there by the user).
    """
    root = art.path
    if cfg.image_url_prefix:
        prefix = cfg.image_url_prefix.rstrip("/")
        if not prefix.startswith("s3://"):
            return ImageHosting(lambda d, rel: f"{prefix}/{rel}", cloud_prefix=cfg.image_url_prefix)
        files = {(published_rel(d, rel), root / rel) for d in drafts for rel in d.images.values()}
        with art.timer("upload_s"):
            art.metrics["image_upload"] = cloud_storage.upload_images(
                files, prefix, endpoint=cfg.s3_endpoint or None
            )
        return ImageHosting(
            lambda d, rel: f"{prefix}/{published_rel(d, rel)}", cloud_prefix=cfg.image_url_prefix
        )
    doc_root = Path(document_root(cfg) or "")  # connect() checked it is a directory
    folder = f"{slug(cfg.project_title)}-{slug(cfg.project_version)}"
    storage_dir = (doc_root / "onereward" / folder).resolve()
    publish_images(root, drafts, storage_dir)
    return ImageHosting(
        lambda d, rel: local_files_url(doc_root, storage_dir / published_rel(d, rel)), local_dir=storage_dir
    )


def project_reference(
    cfg: ExportConfig, configs: dict[str, LabelingConfig], drafts: list[TaskDraft], placement: Placement
) -> dict[str, Any]:
    """project.json: the server, the projects (one per dimension set) and every item's task id."""
    projects = {
        name: {
            "project_id": placement.project_ids.get(name),
            "title": project_title(cfg.project_title, cfg.project_version, name),
            "dimensions": list(config.dimensions),
            "n_candidates": config.n_candidates,
            "label_config_sha": config.sha,
            "n_tasks": sum(d.dimension_set == name for d in drafts),
        }
        for name, config in configs.items()
    }
    config_sha = hashlib.sha256("".join(configs[n].sha for n in sorted(configs)).encode()).hexdigest()
    first_id = next((p["project_id"] for p in projects.values() if p["project_id"] is not None), None)
    return {
        "url": cfg.label_studio_url.rstrip("/") or None,
        "project_id": first_id,
        "title": cfg.project_title,
        "version": cfg.project_version,
        "task_map": placement.task_map,
        "label_config_sha": config_sha,
        "n_tasks": len(drafts),
        "projects": projects,
    }


def _record_metrics(
    art: ArtifactWriter,
    drafts: list[TaskDraft],
    project: dict[str, Any],
    placement: Placement,
    *,
    started: float,
    online: bool,
) -> None:
    per_task = Counter(d.data["edit_task"] for d in drafts)
    n_projects = len(project["projects"])
    art.counts.update({"n_tasks": len(drafts), "n_projects": n_projects})
    art.metrics.update(
        {
            "n_tasks": len(drafts),
            "n_new_tasks": sum(placement.n_new.values()),
            "n_projects": n_projects,
            "tasks_per_task": dict(per_task),
            "tasks_per_dimension_set": {n: p["n_tasks"] for n, p in project["projects"].items()},
            "online": online,
            "tasks_per_second": round(len(drafts) / max(time.perf_counter() - started, 1e-9), 2),
        }
    )


# --- tasks --------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A folder-safe form of a project title/version."""
    return _SLUG.sub("-", text).strip("-") or "project"


def project_title(title: str, version: str, dimension_set: str) -> str:
    """Label Studio title of the project that holds one dimension set."""
    return f"{title} {version} [{dimension_set}]"


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The source with the edit region tinted red and outlined, as annotators see it."""
    out = image.astype(np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    out[mask] = 0.55 * out[mask] + 0.45 * red
    # Outline: mask pixels with a non-mask 4-neighbour, so the region's extent stays visible.
    padded = np.pad(mask, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out[mask & ~interior] = red
    return out.clip(0, 255).astype(np.uint8)


def candidate_set_hash(cs: CandidateSet, item_id: str) -> str:
    """sha256 (16 hex) over candidate ids and image bytes, in index order."""
    h = hashlib.sha256()
    for row in cs.candidates[item_id]:
        h.update(row["candidate_id"].encode() + b"\0")
        h.update(hashlib.sha256(cs.path(row["image"]).read_bytes()).digest())
    return h.hexdigest()[:16]


def display_prompt(task: str, prompt: str | None) -> str:
    """What annotators read as the prompt (fixed prompts are labelled as such)."""
    if task_table.has_user_prompt(task, prompt):
        return str(prompt).strip()
    return f"(no user prompt; task {task}: {task_table.effective_prompt(task, prompt)})"


@dataclass
class TaskDraft:
    """One Label Studio task before its image references are resolved."""

    item_id: str
    dimension_set: str
    key: str
    data: dict[str, Any]
    images: dict[str, str]  # data key -> path relative to the project artifact
    predictions: list[dict[str, Any]] = field(default_factory=list)


def build_task_drafts(
    cs: CandidateSet, out: Path, *, predictions: str, reward_model: str = ""
) -> list[TaskDraft]:
    """Write mask overlays into ``out/overlays`` and describe one task per item (sorted by item id).

    ``predictions``: "none", "oracle" (noise-free oracle choices) or "reward_model" (round-robin
    comparisons of the candidates by the reward model at ``reward_model``).
    """
    scorer = None
    if predictions == "reward_model":
        from onereward.reward.scoring import RewardScorer  # torch and transformers only when asked

        scorer = RewardScorer.load(reward_model)
    drafts: list[TaskDraft] = []
    for item_id in tqdm(sorted(cs.items), desc="tasks", unit="item", leave=False):
        item = cs.items[item_id]
        task = task_table.check_task(item["task"], where=f"items.parquet row {item_id!r} field 'task'")
        overlay_rel = f"overlays/{item_id}.png"
        save_png(
            out / overlay_rel,
            mask_overlay(load_rgb(cs.path(item["image"])), load_mask(cs.path(item["mask"]))),
        )
        rows = cs.candidates[item_id]
        letters = candidate_letters(len(rows))
        dset = dimension_set_name(task, item.get("prompt"))
        data: dict[str, Any] = {
            KEY_FIELD: f"{item_id}:{candidate_set_hash(cs, item_id)}",
            "item_id": item_id,
            "edit_task": task,
            PROMPT_KEY: display_prompt(task, item.get("prompt")),
            "dimension_set": dset,
            "dimensions": list(task_table.dimensions_for(task, item.get("prompt"))),
            "candidate_ids": [r["candidate_id"] for r in rows],
        }
        images = {OVERLAY_KEY: overlay_rel}
        for letter, row in zip(letters, rows, strict=True):
            images[candidate_key(letter)] = row["image"]
        draft = TaskDraft(item_id, dset, data[KEY_FIELD], data, images)
        if predictions == "oracle":
            draft.predictions = [oracle_prediction(cs, item_id, data["dimensions"])]
        elif scorer is not None:
            draft.predictions = [reward_model_prediction(scorer, cs, item_id, data["dimensions"])]
        drafts.append(draft)
    return drafts


def oracle_prediction(cs: CandidateSet, item_id: str, dimensions: list[str]) -> dict[str, Any]:
    """A pre-annotation with the noise-free oracle's best/worst (threshold 0)."""
    item = cs.items[item_id]
    rows = cs.candidates[item_id]
    scores = oracle_scores(
        item["task"],
        cs.path(item["image"]),
        cs.path(item["mask"]),
        item.get("prompt"),
        [cs.path(r["image"]) for r in rows],
    )
    result, _ = annotate_task(scores, dimensions, noise=0.0, threshold=0.0, rng=np.random.default_rng(0))
    return {"model_version": "oracle", "result": result}


def reward_model_prediction(
    scorer: Any, cs: CandidateSet, item_id: str, dimensions: list[str]
) -> dict[str, Any]:
    """A pre-annotation from the reward model: every ordered pair of candidates is compared per
    dimension; a candidate's score is its mean win probability (both orders, so position bias
    cancels); best = highest, worst = lowest."""
    item = cs.items[item_id]
    images = [load_rgb(cs.path(r["image"])) for r in cs.candidates[item_id]]
    source = load_rgb(cs.path(item["image"]))
    mask = np.repeat(load_mask(cs.path(item["mask"]))[..., None].astype(np.uint8) * 255, 3, axis=2)
    n = len(images)
    ordered = [(i, j) for i in range(n) for j in range(n) if i != j]
    comps = [(dim, i, j) for dim in dimensions for i, j in ordered]
    p_yes = scorer.p_yes(
        [images[i] for _, i, _ in comps],
        [images[j] for _, _, j in comps],
        [item["task"]] * len(comps),
        [dim for dim, _, _ in comps],
        [item.get("prompt")] * len(comps),
        sources=[source] * len(comps),
        masks=[mask] * len(comps),
    )
    p = p_yes.detach().float().cpu().numpy()
    result: list[dict[str, Any]] = []
    for d_index, dim in enumerate(dimensions):
        wins = np.zeros(n)
        block = p[d_index * len(ordered) : (d_index + 1) * len(ordered)]
        for (i, j), pij in zip(ordered, block, strict=True):
            wins[i] += pij / (2 * (n - 1))
            wins[j] += (1 - pij) / (2 * (n - 1))
        c = choose(wins, 0.0)
        result += [choice_result(dim, "best", c.best), choice_result(dim, "worst", c.worst)]
    return {"model_version": "reward_model", "result": result}


def task_payload(draft: TaskDraft, url_of: Any, *, task_id: int | None = None) -> dict[str, Any]:
    """Label Studio import format of one task, with image references from ``url_of(rel_path)``."""
    data = dict(draft.data)
    for key, rel in draft.images.items():
        data[key] = url_of(rel)
    payload: dict[str, Any] = {"data": data}
    if task_id is not None:
        payload["id"] = task_id
    if draft.predictions:
        payload["predictions"] = draft.predictions
    return payload


def group_configs(cs: CandidateSet, drafts: list[TaskDraft]) -> dict[str, LabelingConfig]:
    """One labeling config per dimension set present; every item of a set needs the same N."""
    n_by_set: dict[str, set[int]] = {}
    for d in drafts:
        n_by_set.setdefault(d.dimension_set, set()).add(len(d.data["candidate_ids"]))
    configs = {}
    for name, ns in sorted(n_by_set.items()):
        if len(ns) != 1:
            raise InputError(
                f"candidates.parquet: items of dimension set {name!r} have different numbers of candidates "
                f"{sorted(ns)}; a project needs the same number per task"
            )
        configs[name] = build_labeling_config(name, ns.pop())
    return configs


# --- server side ------------------------------------------------------------------------------


def local_files_url(doc_root: Path, path: Path) -> str:
    """URL Label Studio serves a file under its Local Storage document root at."""
    rel = path.resolve().relative_to(doc_root.resolve()).as_posix()
    return "/data/local-files/?d=" + quote(rel, safe="/")


def published_rel(draft: TaskDraft, rel: str) -> str:
    """Where an image of ``draft`` is published, relative to the storage folder.

    Keyed by item id and candidate-set hash (the task key), so a rerun with changed candidates
    publishes to a new folder and never replaces the images of tasks already annotated.
    """
    return f"{draft.item_id}-{draft.key.rsplit(':', 1)[-1]}/{rel}"


def publish_images(project_dir: Path, drafts: list[TaskDraft], storage_dir: Path) -> int:
    """Publish every referenced image into the Local Storage folder; returns how many were new.

    Files already published with the same bytes are kept (reruns skip them); a published file
    with different bytes is never overwritten: that is an ArtifactError naming both paths.
    """
    todo = sorted({(published_rel(d, rel), rel) for d in drafts for rel in d.images.values()})
    n_new = 0
    for pub, rel in tqdm(todo, desc="publish images", unit="img", leave=False):
        src, dst = project_dir / rel, storage_dir / pub
        if dst.exists():
            if dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
                continue
            raise ArtifactError(
                f"--document-root: published image {dst} differs from {src}; published images are "
                "never replaced (tasks may already be annotated on them). Use a new --project-version."
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst)
        n_new += 1
    return n_new


def ensure_project(
    client: LabelStudioClient, title: str, config: LabelingConfig, description: str, *, overlap: int = 1
) -> int:
    """Id of the project called ``title``, created (or its config updated) to match ``config``."""
    existing = client.find_project(title)
    if existing is None:

        def create_once(state: dict[str, bool]) -> Any:
            # A create whose response was lost may have happened: look the title up again before
            # retrying, so a retry never makes a second project with the same title.
            if state["retry"]:
                found = client.find_project_once(title)
                if found is not None:
                    return found
            state["retry"] = True
            return client.sdk.projects.create(
                title=title,
                label_config=config.xml,
                description=description,
                show_skip_button=True,
                maximum_annotations=overlap,
            )

        project = client.call(f"create project {title!r}", create_once, {"retry": False})
        log.info("created Label Studio project %d %r", project.id, title)
        return int(project.id)
    if getattr(existing, "maximum_annotations", overlap) != overlap:
        # overlap is the number of annotators per task: honour a changed value on a rerun.
        client.call(
            f"set the overlap of project {existing.id} to {overlap}",
            client.sdk.projects.update,
            existing.id,
            maximum_annotations=overlap,
        )
        log.info("set the overlap of project %d %r to %d", existing.id, title, overlap)
    if (existing.label_config or "").strip() != config.xml.strip():
        # The generated config changed (e.g. a new definition text); Label Studio itself refuses
        # changes that would invalidate existing annotations, with a clear 400.
        client.call(
            f"update the labeling config of project {existing.id}",
            client.sdk.projects.update,
            existing.id,
            label_config=config.xml,
        )
        log.info("updated the labeling config of project %d %r", existing.id, title)
    return int(existing.id)


def ensure_local_storage(client: LabelStudioClient, project_id: int, path: Path) -> None:
    """Connect ``path`` as the project's Local Storage (needed for Label Studio to serve its files)."""
    storages = client.call(
        f"list local storages of project {project_id}",
        client.sdk.import_storage.local.list,
        project=project_id,
    )
    if any(Path(s.path or "") == path for s in storages):
        return
    client.call(
        f"connect local storage {path} to project {project_id}",
        client.sdk.import_storage.local.create,
        project=project_id,
        path=str(path),
        title="onereward images",
        use_blob_urls=False,
    )


def ensure_cloud_storage(
    client: LabelStudioClient, project_id: int, prefix_url: str, *, s3_endpoint: str | None
) -> None:
    """Connect the bucket holding ``prefix_url`` (s3:// or gs://) to the project, presigned.

    No credentials are passed: Label Studio falls back to its own deployment's credentials (the
    Secret mounted into its pod, see manifests/label-studio), so none travel through the pipeline.
    http(s) prefixes need no storage.
    """
    scheme, _, rest = prefix_url.partition("://")
    if scheme not in ("s3", "gs"):
        return
    bucket, _, prefix = rest.partition("/")
    api = client.sdk.import_storage.s3 if scheme == "s3" else client.sdk.import_storage.gcs
    storages = client.call(f"list {scheme} storages of project {project_id}", api.list, project=project_id)
    if any(s.bucket == bucket and (s.prefix or "") == prefix for s in storages):
        return
    kwargs: dict[str, Any] = {"project": project_id, "bucket": bucket, "prefix": prefix, "presign": True,
                              "title": "onereward images", "use_blob_urls": False}  # fmt: skip
    if scheme == "s3" and s3_endpoint:
        kwargs["s3endpoint"] = s3_endpoint
    client.call(f"connect {scheme}://{bucket}/{prefix} to project {project_id}", api.create, **kwargs)


def _task_keys_once(client: LabelStudioClient, project_id: int) -> dict[str, int]:
    # The data manager's task list (task fields only) is about twice as fast as a JSON export.
    keys: dict[str, int] = {}
    for t in client.sdk.tasks.list(project=project_id, fields="task_only", page_size=1000):
        key = (t.data or {}).get(KEY_FIELD)
        if key:
            keys.setdefault(key, int(t.id))
    return keys


def existing_task_ids(client: LabelStudioClient, project_id: int) -> dict[str, int]:
    """``{onereward_key: task id}`` of the tasks already in the project."""
    return client.call(f"list the tasks of project {project_id}", _task_keys_once, client, project_id)


def import_tasks(
    client: LabelStudioClient,
    project_id: int,
    payloads: list[tuple[str, dict[str, Any]]],
    *,
    chunk_size: int,
) -> tuple[dict[str, int], int]:
    """Import ``(key, task)`` pairs in chunks, skipping keys the project holds; returns (key->id, n_new).

    A retried chunk first re-reads the project's keys, so a chunk the server stored before the
    connection dropped is not imported twice.
    """
    have = existing_task_ids(client, project_id)
    todo = [(k, p) for k, p in payloads if k not in have]
    n_new = 0

    def import_chunk(chunk: list[tuple[str, dict[str, Any]]], state: dict[str, bool]) -> int:
        if state["retry"]:
            have.update(_task_keys_once(client, project_id))
        state["retry"] = True
        pending = [(k, p) for k, p in chunk if k not in have]
        if not pending:
            return 0
        resp = client.sdk.projects.import_tasks(
            project_id, request=[p for _, p in pending], return_task_ids=True
        )
        ids = list(resp.task_ids or [])
        if len(ids) == len(pending):
            have.update({k: int(i) for (k, _), i in zip(pending, ids, strict=True)})
        else:  # the server did not say which ids it gave; read them back
            have.update(_task_keys_once(client, project_id))
        return len(pending)

    with Throughput("tasks") as tp:
        chunks = range(0, len(todo), chunk_size)
        for start in tqdm(chunks, desc=f"import into project {project_id}", unit="chunk", leave=False):
            chunk = todo[start : start + chunk_size]
            n = client.call(
                f"import {len(chunk)} tasks into project {project_id}", import_chunk, chunk, {"retry": False}
            )
            n_new += n
            tp.add(n)
    # Count what this run added, not what each chunk's last attempt sent: a chunk the server
    # stored before its response was lost is found on the reread and sends nothing the 2nd time.
    n_new = sum(1 for k, _ in todo if k in have)
    if n_new:
        log.info("imported %s into project %d", tp, project_id)
    return have, n_new


# --- report -------------------------------------------------------------------------------------


def _example_row(d: TaskDraft, root: Path) -> list[str]:
    """One report row: the task's item, task, prompt, and its overlay and candidates as thumbnails."""
    letters = candidate_letters(len(d.data["candidate_ids"]))
    imgs = [img_tag(png_data_uri(root / d.images[OVERLAY_KEY], 96), "source + mask")]
    imgs += [img_tag(png_data_uri(root / d.images[candidate_key(x)], 96), x) for x in letters]
    return [
        d.item_id,
        d.data["edit_task"],
        html.escape(d.data["prompt"]),
        "<div>" + " ".join(imgs) + "</div>",
    ]


def _export_report(
    root: Path,
    drafts: list[TaskDraft],
    project: dict[str, Any],
    configs: dict[str, LabelingConfig],
    new_by_set: dict[str, int],
) -> None:
    """report.html: the projects, one example task per dimension set, the labeling configs."""
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
            examples.append(_example_row(d, root))
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
