"""Stage select_subset: CLIP embeddings + K-means representative subset (paper section 5.1).

Pipeline of the stage: read the pool and check every item (bad ones are skipped and listed) ->
embed with open_clip (cached by image content hash) -> per task (or globally) K-means to the
target size -> nearest-to-centroid representatives without near-duplicates -> masks for items
that have none -> the ``subset`` artifact (docs/contracts.md) with ``report.html``.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from onereward import tasks
from onereward.artifacts import ArtifactWriter
from onereward.errors import InputError
from onereward.imageio import save_png
from onereward.log import get_logger
from onereward.models import clip
from onereward.profile import load_profile
from onereward.select import cluster
from onereward.select.embed import EmbeddingCache, EmbedResult, embed_pool
from onereward.select.masks import MaskSettings, make_mask
from onereward.select.pool import BadItem, Pool, PoolItem, decode_mask, read_pool
from onereward.select.report import overlay, write_report
from onereward.tables import write_table
from onereward.zoo import cache_root, zoo_manifest

log = get_logger("select")

SUBSET_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("task", pa.string()),
        ("image", pa.string()),
        ("mask", pa.string()),
        ("prompt", pa.string()),
        ("meta", pa.string()),
        ("target", pa.string()),
        ("cluster_id", pa.int64()),
        ("distance", pa.float64()),
        ("embedding_index", pa.int64()),
    ]
)
BAD_SCHEMA = pa.schema([("item_id", pa.string()), ("origin", pa.string()), ("reason", pa.string())])
CLUSTER_SCHEMA = pa.schema(
    [("group", pa.string()), ("cluster_id", pa.int64()), ("size", pa.int64()), ("n_selected", pa.int64())]
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _csv(value: str, name: str, cast: type = str) -> tuple[Any, ...]:
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    try:
        return tuple(cast(p) for p in parts)
    except ValueError as e:
        raise InputError(f"{name}: expected a comma-separated list of {cast.__name__}, got {value!r}") from e


def _check_parameters(
    size: int, per_cluster: int, max_bad_fraction: float, dedup: float, coverage_sample: int
) -> None:
    if size < 1:
        raise InputError(f"size: must be >= 1, got {size}")
    if per_cluster < 1:
        raise InputError(f"per_cluster: must be >= 1, got {per_cluster}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise InputError(f"max_bad_fraction: must be in [0, 1], got {max_bad_fraction}")
    if not 0.0 < dedup <= 1.0:
        raise InputError(f"dedup_threshold: must be in (0, 1], got {dedup}")
    if coverage_sample < 1:
        raise InputError(f"coverage_sample: must be >= 1, got {coverage_sample}")


def _bad_summary(bad: list[BadItem], n_pool: int, limit: float) -> str:
    reasons = Counter(b.reason.split(" (")[0] for b in bad).most_common(3)
    examples = ", ".join(f"{b.item_id or b.origin}: {b.reason}" for b in bad[:3])
    return (
        f"--pool: {len(bad)} of {n_pool} items are bad ({len(bad) / n_pool:.1%} > max_bad_fraction {limit:.1%}); "
        f"most common: {'; '.join(f'{r} x{c}' for r, c in reasons)}; e.g. {examples}"
    )


def _decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _write_png(dest: Path, data: bytes, array: np.ndarray | None = None) -> None:
    """Write ``data`` unchanged when it is an RGB PNG and ``array`` is None, else encode as RGB PNG."""
    if array is None and data.startswith(PNG_SIGNATURE):
        with Image.open(io.BytesIO(data)) as im:
            if im.mode == "RGB":
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                return
    save_png(dest, array if array is not None else _decode_rgb(data))


def _merge_meta(meta: str, extra: dict[str, Any]) -> str:
    try:
        data = json.loads(meta) if meta else {}
    except json.JSONDecodeError:
        data = {"source_meta": meta}
    if not isinstance(data, dict):
        data = {"source_meta": data}
    data["select"] = extra
    return json.dumps(data, sort_keys=True)


def _write_item(
    root: Path,
    pool: Pool,
    item: PoolItem,
    *,
    thresholded: bool,
    seed: int,
    masks: MaskSettings,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, str]:
    """Copy/convert one selected item's image, mask and target into the artifact.

    Returns (row without the cluster columns, image, mask, mask source)."""
    data = pool.read_bytes(item.image)
    image = _decode_rgb(data)
    info: dict[str, Any]
    if item.mask is not None:
        mask, _ = decode_mask(pool.read_bytes(item.mask), (image.shape[1], image.shape[0]), masks.threshold)
        info = {"mask_source": "provided"}
        if thresholded:
            info.update(mask_thresholded=True, mask_rule=f"grey >= {masks.threshold}")
        new_image = None
    else:
        new, mask, info = make_mask(item.task, image, item.item_id, seed, masks)
        new_image = new if new is not image else None
        image = new
    image_rel, mask_rel = f"images/{item.item_id}.png", f"masks/{item.item_id}.png"
    _write_png(root / image_rel, data, new_image)
    save_png(root / mask_rel, mask)
    target_rel = None
    # A target is the ideal result for the pool's own mask; a mask made here invalidates it.
    if item.target is not None and info["mask_source"] in ("provided", "canvas_border"):
        try:
            target_data = pool.read_bytes(item.target)
            target = _decode_rgb(target_data)
        except (OSError, ValueError) as e:
            log.warning(
                "item %s: target %s unreadable (%s); dropped", item.item_id, item.target.describe(), e
            )
        else:
            if target.shape == image.shape:
                target_rel = f"targets/{item.item_id}.png"
                _write_png(
                    root / target_rel, target_data, None if target_data.startswith(PNG_SIGNATURE) else target
                )
            else:
                log.warning(
                    "item %s: target size %s differs from the image's; dropped", item.item_id, target.shape
                )
    row = {
        "item_id": item.item_id,
        "task": item.task,
        "image": image_rel,
        "mask": mask_rel,
        "prompt": item.prompt,
        "meta": _merge_meta(item.meta, info),
        "target": target_rel,
    }
    return row, image, mask, str(info["mask_source"])


def run(
    pool: str,
    out: str,
    *,
    size: int,
    profile: str = "tiny",
    zoo: str | None = None,
    per_task: bool = True,
    backend: str = "auto",
    seed: int = 0,
    max_bad_fraction: float = 0.2,
    per_cluster: int = 1,
    dedup_threshold: float | None = None,
    min_image_size: int = 32,
    mask_threshold: int = 128,
    assign_tasks: str = tasks.IMAGE_EXTEND,
    extend_ratios: str = "0.25,0.5",
    extend_sides: str = "left,right,top,bottom,all",
    fill_kinds: str = "box,brush",
    fill_area_min: float = 0.1,
    fill_area_max: float = 0.3,
    faiss_min_items: int = 50_000,
    two_level: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    coverage_sample: int = 50_000,
    threads: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Select a diverse, representative subset of ``pool`` and write it as a ``subset`` artifact.

    Args:
        pool: a ``pool`` artifact directory, an HF ``datasets`` folder (``save_to_disk``), or a
            folder of images with an optional sidecar (items.jsonl / metadata.jsonl / *.csv).
        out: output directory of the ``subset`` artifact (replaced atomically).
        size: target number of selected items (fewer when the pool has fewer good unique items).
        profile: ``tiny``, ``full`` or a profile YAML; gives the CLIP model and batch settings.
        zoo: folder holding ``clip/`` for ``zoo:`` model references (None: the cached tiny zoo).
        per_task: cluster each task separately, the size split proportionally to the tasks'
            pool sizes (True), or cluster the whole pool at once (False).
        backend: K-means engine: ``auto`` (faiss from ``faiss_min_items`` items), ``sklearn`` or ``faiss``.
        seed: seed of K-means, generated masks, task assignment and the random baseline.
        max_bad_fraction: the stage fails when more than this fraction of the pool is bad.
        per_cluster: representatives taken per cluster (m); K = ceil(size / m).
        dedup_threshold: cosine similarity at which two images are near-duplicates (only the one
            nearer its centroid is kept); None: the profile's ``select.dedup_threshold``.
        min_image_size: images with a side shorter than this many pixels are bad.
        mask_threshold: grey level >= this marks the edit region of a non-binary mask.
        assign_tasks: comma-separated tasks given (by seeded hash of the item id) to items whose
            source names no task.
        extend_ratios: comma-separated canvas expansion ratios for image_extend items without mask.
        extend_sides: comma-separated sides (left, right, top, bottom, all) to expand.
        fill_kinds: comma-separated fill mask kinds (box, brush) for image_fill items without mask.
        fill_area_min: smallest fraction of the image a generated fill mask covers.
        fill_area_max: largest fraction of the image a generated fill mask covers.
        faiss_min_items: ``auto`` backend switches to faiss from this many items per group.
        two_level: two-level K-means: ``auto`` (from 1024 clusters), ``on`` or ``off``.
        batch_size: embedding batch size; None: the profile's ``select.batch_size``.
        num_workers: DataLoader workers decoding images; None: the profile's ``select.num_workers``.
        cache_dir: embedding cache root (``<cache_dir>/embeddings/<model hash>/``); None:
            ``$ONEREWARD_CACHE`` or ``~/.cache/onereward``.
        use_cache: False embeds everything and reads/writes no cache.
        coverage_sample: coverage is measured on at most this many pool items (seeded sample).
        threads: cap on faiss/BLAS threads while clustering (0: all cores; 1 is faster on an
            oversubscribed machine).
        device: torch device for the CLIP forward passes.
        progress: show a tqdm progress bar while embedding.

    Returns:
        The metrics (also in ``metrics.json``): n_pool, n_bad, n_selected, coverage_selected,
        coverage_random, images_per_second and details.
    """
    t_start = time.perf_counter()
    prof = load_profile(profile)
    dedup = float(prof.select.dedup_threshold if dedup_threshold is None else dedup_threshold)
    _check_parameters(size, per_cluster, max_bad_fraction, dedup, coverage_sample)
    mask_settings = MaskSettings(
        extend_ratios=_csv(extend_ratios, "extend_ratios", float),
        extend_sides=_csv(extend_sides, "extend_sides"),
        fill_kinds=_csv(fill_kinds, "fill_kinds"),
        fill_area=(fill_area_min, fill_area_max),
        threshold=mask_threshold,
    ).validate()
    cluster.choose_backend(1, backend)  # validates the name before any work
    if two_level not in cluster.TWO_LEVEL:
        raise InputError(f"two_level: expected one of {', '.join(cluster.TWO_LEVEL)}, got {two_level!r}")
    src = read_pool(pool, assign_tasks=_csv(assign_tasks, "assign_tasks"), seed=seed)
    no_mask = [it.item_id for it in src.items if it.task == tasks.OBJECT_REMOVAL and it.mask is None]
    if no_mask:
        raise InputError(
            f"--pool: {len(no_mask)} object_removal item(s) have no mask (e.g. {', '.join(no_mask[:5])}); "
            "object_removal needs the mask of the object to remove in field 'mask'"
        )

    model_ref = prof.model_ref("clip")
    model_dir = prof.resolve_model("clip", zoo)
    model, preprocess, _ = clip.load(model_dir, arch=model_ref.arch, device=device)
    model_key = clip.model_fingerprint(model_dir, model_ref.arch)
    cache_root_dir = (Path(cache_dir) if cache_dir else cache_root()) if use_cache else None
    cache = EmbeddingCache(cache_root_dir, model_key).load()
    log.info(
        "select: %d pool items, model %s (%s), %d cached embeddings",
        src.n_total,
        model_dir,
        model_key,
        len(cache),
    )
    emb: EmbedResult = embed_pool(
        src,
        model,
        preprocess,
        cache,
        batch_size=batch_size or prof.select.batch_size,
        num_workers=prof.select.num_workers if num_workers is None else num_workers,
        min_size=min_image_size,
        mask_threshold=mask_threshold,
        progress=progress,
    )
    bad = src.bad + emb.bad
    n_pool = src.n_total
    if n_pool == 0:
        raise InputError(f"--pool: {pool} holds no items")
    if len(bad) / n_pool > max_bad_fraction:
        raise InputError(_bad_summary(bad, n_pool, max_bad_fraction))
    if not emb.items:
        raise InputError(f"--pool: none of the {n_pool} items is usable")
    x = emb.embeddings

    # Groups to cluster, and the share of the target size each one gets.
    group_rows: dict[str, np.ndarray] = {}
    keys = [it.task for it in emb.items] if per_task else ["all"] * len(emb.items)
    for g in sorted(set(keys), key=lambda t: tasks.TASKS.index(t) if t in tasks.TASKS else -1):
        group_rows[g] = np.array([i for i, k in enumerate(keys) if k == g], dtype=np.int64)
    unique_rows: dict[str, np.ndarray] = {}
    n_exact = 0
    for g, rows in group_rows.items():
        seen: set[str] = set()
        keep = []
        for r in rows:  # identical files are one candidate (the first one)
            if emb.shas[r] not in seen:
                seen.add(emb.shas[r])
                keep.append(r)
        unique_rows[g] = np.array(keep, dtype=np.int64)
        n_exact += len(rows) - len(keep)
    shares = cluster.split_proportionally(np.array([len(unique_rows[g]) for g in unique_rows]), size)
    if shares.sum() < size:
        log.warning(
            "select: only %d good unique items for a target of %d; selecting all of them", shares.sum(), size
        )

    selected_rows: list[np.ndarray] = []
    selected_dist: list[np.ndarray] = []
    selected_cluster: list[np.ndarray] = []
    cluster_table: list[dict[str, Any]] = []
    cluster_sizes: dict[str, np.ndarray] = {}
    groups_info: dict[str, dict[str, Any]] = {}
    offset = 0
    n_dup_skipped = 0
    with cluster.limit_threads(threads):
        t_cluster = time.perf_counter()
        for (g, rows), share in zip(unique_rows.items(), shares, strict=True):
            if share == 0:
                continue
            xg = x[rows]
            k = math.ceil(int(share) / per_cluster)
            result = cluster.kmeans(
                xg, k, backend=backend, seed=seed, faiss_min_items=faiss_min_items, two_level=two_level
            )
            sel = cluster.select_representatives(
                xg, result, int(share), per_cluster=per_cluster, dedup_threshold=dedup
            )
            n_dup_skipped += sel.n_duplicates_skipped
            selected_rows.append(rows[sel.indices])
            selected_dist.append(sel.distances)
            selected_cluster.append(result.labels[sel.indices] + offset)
            sizes = np.bincount(result.labels, minlength=len(result.centroids))
            picked = np.bincount(result.labels[sel.indices], minlength=len(result.centroids))
            cluster_sizes[g] = sizes
            cluster_table.extend(
                {"group": g, "cluster_id": offset + c, "size": int(sizes[c]), "n_selected": int(picked[c])}
                for c in range(len(sizes))
            )
            groups_info[g] = {
                "n_items": int(len(group_rows[g])),
                "n_selected": int(len(sel.indices)),
                "n_clusters": int(len(result.centroids)),
                "backend": result.backend,
                "two_level": result.two_level,
                "inertia": round(result.inertia, 6),
                "seconds": round(result.seconds, 3),
            }
            offset += len(result.centroids)
        cluster_seconds = time.perf_counter() - t_cluster
        sel_rows = np.concatenate(selected_rows)
        sel_dist = np.concatenate(selected_dist)
        sel_cluster = np.concatenate(selected_cluster)

        # Coverage of the selection vs a random subset with the same number of items per group.
        cov_sel, n_measured = cluster.coverage(x, sel_rows, sample=coverage_sample, seed=seed)
        per_group = Counter(keys[r] for r in sel_rows)
        random_rows = cluster.random_subset(group_rows, per_group, seed=seed + 1)
        cov_rand, _ = cluster.coverage(x, random_rows, sample=coverage_sample, seed=seed)

    # Output order: group, then cluster, then distance (stable, readable).
    order = np.lexsort((sel_dist, sel_cluster))
    sel_rows, sel_dist, sel_cluster = sel_rows[order], sel_dist[order], sel_cluster[order]
    parameters = {
        "pool": str(pool),
        "size": size,
        "profile": prof.name,
        "profile_sha": prof.sha,
        "clip_model": model_ref.ref,
        "clip_fingerprint": model_key,
        "per_task": per_task,
        "backend": backend,
        "seed": seed,
        "max_bad_fraction": max_bad_fraction,
        "per_cluster": per_cluster,
        "dedup_threshold": dedup,
        "min_image_size": min_image_size,
        "mask_threshold": mask_threshold,
        "assign_tasks": assign_tasks,
        "extend_ratios": extend_ratios,
        "extend_sides": extend_sides,
        "fill_kinds": fill_kinds,
        "fill_area": [fill_area_min, fill_area_max],
        "faiss_min_items": faiss_min_items,
        "two_level": two_level,
        "coverage_sample": coverage_sample,
        "threads": threads,
    }
    inputs = [src.manifest] if src.manifest is not None else []
    if model_ref.ref.startswith("zoo:"):
        inputs.append(zoo_manifest(prof, zoo))  # lineage: which zoo's CLIP embedded the pool
    with ArtifactWriter(
        out, kind="subset", stage="select_subset", parameters=parameters, inputs=inputs
    ) as art:
        rows_out: list[dict[str, Any]] = []
        mask_sources: Counter = Counter()
        all_sizes = np.concatenate([cluster_sizes[g] for g in cluster_sizes])
        shown = set(np.argsort(-all_sizes, kind="stable")[:60].tolist())  # the 60 largest clusters
        tile_candidates: list[tuple[int, int, np.ndarray, str]] = []
        with art.timer("write_s"):
            for pos, (r, d, c) in enumerate(zip(sel_rows, sel_dist, sel_cluster, strict=True)):
                item = emb.items[r]
                row, image, mask, source = _write_item(
                    art.path, src, item, thresholded=emb.mask_thresholded[r], seed=seed, masks=mask_settings
                )
                row.update(cluster_id=int(c), distance=round(float(d), 6), embedding_index=pos)
                rows_out.append(row)
                mask_sources[source] += 1
                if int(c) in shown:
                    tile_candidates.append(
                        (-int(all_sizes[c]), pos, overlay(image, mask), f"{int(c)}/{item.task}")
                    )
            write_table(art.path / "items.parquet", rows_out, schema=SUBSET_SCHEMA)
            np.save(art.path / "embeddings.npy", np.ascontiguousarray(x[sel_rows], dtype=np.float32))
            write_table(
                art.path / "bad_items.parquet",
                [{"item_id": b.item_id, "origin": b.origin, "reason": b.reason} for b in bad],
                schema=BAD_SCHEMA,
            )
            write_table(art.path / "clusters.parquet", cluster_table, schema=CLUSTER_SCHEMA)
        tiles = [(tile, caption) for _, _, tile, caption in sorted(tile_candidates, key=lambda t: t[:2])[:60]]
        n_thresholded = sum(1 for r in sel_rows if emb.mask_thresholded[r])
        metrics: dict[str, Any] = {
            "n_pool": n_pool,
            "n_bad": len(bad),
            "n_valid": len(emb.items),
            "n_selected": len(rows_out),
            "coverage_selected": round(cov_sel, 6),
            "coverage_random": round(cov_rand, 6),
            "coverage_n_measured": n_measured,
            "images_per_second": round(emb.images_per_second, 2),
            "n_embedded": emb.n_embedded,
            "n_cache_hits": emb.n_cache_hits,
            "n_exact_duplicates": n_exact,
            "n_duplicates_skipped": n_dup_skipped,
            "n_clusters": offset,
            "n_masks_generated": mask_sources.get("generated", 0),
            "n_masks_thresholded": n_thresholded,
            "per_task": {t: int(sum(1 for r in rows_out if r["task"] == t)) for t in tasks.TASKS},
            "groups": groups_info,
            "embed_seconds": round(emb.seconds, 3),
            "cluster_seconds": round(cluster_seconds, 3),
        }
        write_report(
            art.path,
            metrics=metrics,
            parameters=parameters,
            cluster_sizes=cluster_sizes,
            tiles=tiles,
            bad=bad,
            mask_sources=mask_sources,
            mask_rule=f"grey level >= {mask_threshold} is the edit region ({n_thresholded} selected items)",
        )
        art.metrics.update(metrics)
        art.counts.update(n_pool=n_pool, n_bad=len(bad), n_selected=len(rows_out), n_clusters=offset)
        art.timings.update(embed_s=round(emb.seconds, 3), cluster_s=round(cluster_seconds, 3))
    log.info(
        "select: %d of %d items selected (coverage %.4f vs random %.4f) in %.1fs -> %s",
        len(rows_out),
        n_pool,
        cov_sel,
        cov_rand,
        time.perf_counter() - t_start,
        out,
    )
    return metrics
