"""export_annotations: put every item with its candidates into Label Studio as one task.

Tasks are grouped by dimension set (see :mod:`labeling_config`); each set has its own project
titled ``"<title> <version> [<set>]"``, created once and reused on reruns (same title and version
give the same project). Each task carries ``onereward_key = <item_id>:<candidate-set hash>``; a
rerun imports only the tasks whose key the project does not hold yet, so no task is duplicated,
and a changed candidate set (new images) becomes a new task.

Images reach annotators through Label Studio storage, never as data URIs: copied under the Local
Storage document root (``--document-root`` or ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``) and
served at ``/data/local-files/?d=...``; or, on a cluster with S3/GCS/MinIO, read from
``image_url_prefix`` (e.g. ``s3://bucket/onereward/<title>-<version>``) after the artifact's
``overlays/`` and ``candidates/`` folders were synced there and the bucket was connected as
the project's cloud storage (see manifests/label-studio/README.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from onereward import tasks as task_table
from onereward.annotate.artifact_io import CandidateSet, link_or_copy
from onereward.annotate.client import LabelStudioClient
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
from onereward.artifacts import ArtifactError
from onereward.errors import InputError
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.log import Throughput, get_logger

log = get_logger("annotate.export")

KEY_FIELD = "onereward_key"
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


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
    from onereward.annotate.simulate import annotate_task, oracle_scores

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
    from onereward.annotate.simulate import choose

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
