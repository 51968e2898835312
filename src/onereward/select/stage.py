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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onereward import tasks
from onereward.artifacts import ArtifactWriter
from onereward.errors import InputError
from onereward.imageio import save_png
from onereward.log import get_logger
from onereward.models import clip
from onereward.profile import load_profile
from onereward.select import cluster
from onereward.select.config import SelectConfig
from onereward.select.embed import EmbeddingCache, EmbedResult, embed_pool
from onereward.select.masks import MaskSettings, make_mask
from onereward.select.pool import BadItem, ItemProblem, Pool, PoolItem, decode_image, decode_mask, read_pool
from onereward.select.report import overlay, write_report
from onereward.tables import BAD_ITEMS_SCHEMA, CLUSTERS_SCHEMA, SUBSET_SCHEMA, write_table
from onereward.zoo import cache_root, zoo_manifest

log = get_logger("select")

STAGE = "select_subset"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bad_summary(bad: list[BadItem], n_pool: int, limit: float) -> str:
    reasons = Counter(b.reason.split(" (")[0] for b in bad).most_common(3)
    examples = ", ".join(f"{b.item_id or b.origin}: {b.reason}" for b in bad[:3])
    return (
        f"--pool: {len(bad)} of {n_pool} items are bad ({len(bad) / n_pool:.1%} > max_bad_fraction {limit:.1%}); "
        f"most common: {'; '.join(f'{r} x{c}' for r, c in reasons)}; e.g. {examples}"
    )


def _decode_rgb(data: bytes, background: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """The image as HxWx3 uint8 RGB by the pool's conversion rules, and the rule ("" = it was RGB)."""
    im, rule = decode_image(data, "image", 1, background)
    return np.asarray(im, dtype=np.uint8).copy(), rule


def _write_png(dest: Path, data: bytes, array: np.ndarray) -> None:
    """Write ``data`` unchanged when it is an RGB PNG holding ``array``'s pixels, else encode
    ``array`` as an RGB PNG."""
    if data.startswith(PNG_SIGNATURE):
        with Image.open(io.BytesIO(data)) as im:
            if im.mode == "RGB" and "transparency" not in im.info and im.size == array.shape[1::-1]:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                return
    save_png(dest, array)


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
    background: tuple[int, int, int],
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, str]:
    """Copy/convert one selected item's image, mask and target into the artifact. An image that was
    not RGB is converted (:func:`onereward.select.pool.to_rgb`) and the rule recorded in its meta.

    Returns (row without the cluster columns, image, mask, mask source)."""
    data = pool.read_bytes(item.image)
    image, conversion = _decode_rgb(data, background)
    source_image = image
    info: dict[str, Any]
    if item.mask is not None:
        mask, _ = decode_mask(pool.read_bytes(item.mask), (image.shape[1], image.shape[0]), masks.threshold)
        info = {"mask_source": "provided"}
        if thresholded:
            info.update(mask_thresholded=True, mask_rule=f"grey >= {masks.threshold}")
    else:
        image, mask, info = make_mask(item.task, image, item.item_id, seed, masks)
    if conversion:
        info["image_conversion"] = conversion
    image_rel, mask_rel = f"images/{item.item_id}.png", f"masks/{item.item_id}.png"
    if image is source_image:
        _write_png(root / image_rel, data, image)
    else:
        save_png(root / image_rel, image)
    save_png(root / mask_rel, mask)
    target_rel = None
    # A target is the ideal result for the pool's own mask; a mask made here invalidates it.
    if item.target is not None and info["mask_source"] in ("provided", "canvas_border"):
        try:
            target_data = pool.read_bytes(item.target)
            target, target_conversion = _decode_rgb(target_data, background)
        except (OSError, ValueError, ItemProblem) as e:
            log.warning(
                "item %s: target %s unreadable (%s); dropped", item.item_id, item.target.describe(), e
            )
        else:
            if target.shape == image.shape:
                target_rel = f"targets/{item.item_id}.png"
                _write_png(root / target_rel, target_data, target)
                if target_conversion:
                    info["target_conversion"] = target_conversion
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


@dataclass
class Selection:
    """The clustering result over every group: selected rows (into the embedded items), their
    cluster and distance, the per-cluster table and the per-group figures."""

    rows: np.ndarray
    distances: np.ndarray
    clusters: np.ndarray
    cluster_table: list[dict[str, Any]]
    cluster_sizes: dict[str, np.ndarray]
    groups: dict[str, dict[str, Any]]
    group_rows: dict[str, np.ndarray]
    keys: list[str]
    n_clusters: int
    n_exact_duplicates: int
    n_duplicates_skipped: int
    seconds: float
    coverage_selected: float = 0.0
    coverage_random: float = 0.0
    coverage_n_measured: int = 0


def run(
    pool: str, out: str, *, profile: str = "tiny", zoo: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Select a diverse, representative subset of ``pool`` and write it as a ``subset`` artifact.

    Args:
        pool: a ``pool`` artifact directory, an HF ``datasets`` folder (``save_to_disk``), or a
            folder of images with an optional sidecar (items.jsonl / metadata.jsonl / *.csv).
        out: output directory of the ``subset`` artifact (replaced atomically).
        profile: ``tiny``, ``full`` or a profile YAML; gives the CLIP model and the ``select`` settings.
        zoo: folder holding ``clip/`` for ``zoo:`` model references (None: the cached tiny zoo).
        settings: fields of :class:`~onereward.select.config.SelectConfig`; None or absent = the
            profile's value.

    Returns:
        The metrics (also in ``metrics.json``): n_pool, n_bad, n_selected, coverage_selected,
        coverage_random, images_per_second and details.
    """
    t_start = time.perf_counter()
    # 1. Settings (validated), mask rules and the clustering options.
    prof = load_profile(profile)
    cfg = SelectConfig.resolve(prof.select, settings)
    masks = _mask_settings(cfg)
    # 2. Read the pool; every item is checked, bad ones are listed and skipped.
    src = _read_pool(pool, cfg)
    # 3. Embed with the profile's CLIP (cached by image content hash).
    emb, clip_info = _embed(prof, zoo, src, cfg)
    bad = src.bad + emb.bad
    _check_usable(pool, src.n_total, bad, emb, cfg)
    # 4. Cluster per task (or globally) and take the representatives; 5. coverage vs random.
    with cluster.limit_threads(cfg.threads):
        sel = _select(emb, cfg)
        _measure_coverage(emb.embeddings, sel, cfg)
    # 6. Write the subset artifact.
    parameters = _parameters(pool, prof, cfg, clip_info)
    inputs = [src.manifest] if src.manifest is not None else []
    if clip_info["ref"].startswith("zoo:"):
        inputs.append(zoo_manifest(prof, zoo))  # lineage: which zoo's CLIP embedded the pool
    with ArtifactWriter(out, kind="subset", stage=STAGE, parameters=parameters, inputs=inputs) as art:
        metrics = _write_subset(art, src, emb, bad, sel, cfg, masks, parameters)
    log.info(
        "select: %d of %d items selected (coverage %.4f vs random %.4f) in %.1fs -> %s",
        metrics["n_selected"], src.n_total, sel.coverage_selected, sel.coverage_random,
        time.perf_counter() - t_start, out,
    )  # fmt: skip
    return metrics


def _mask_settings(cfg: SelectConfig) -> MaskSettings:
    cluster.choose_backend(1, cfg.backend)  # validates the name before any work
    return MaskSettings(
        extend_ratios=cfg.csv("extend_ratios", float),
        extend_sides=cfg.csv("extend_sides"),
        fill_kinds=cfg.csv("fill_kinds"),
        fill_area=(cfg.fill_area_min, cfg.fill_area_max),
        threshold=cfg.mask_threshold,
    ).validate()


def _read_pool(pool: str, cfg: SelectConfig) -> Pool:
    src = read_pool(
        pool, assign_tasks=cfg.csv("assign_tasks"), seed=cfg.seed, max_prompt_chars=cfg.max_prompt_chars
    )
    no_mask = [it.item_id for it in src.items if it.task == tasks.OBJECT_REMOVAL and it.mask is None]
    if no_mask:
        raise InputError(
            f"--pool: {len(no_mask)} object_removal item(s) have no mask (e.g. {', '.join(no_mask[:5])}); "
            "object_removal needs the mask of the object to remove in field 'mask'"
        )
    return src


def _embed(prof: Any, zoo: str | None, src: Pool, cfg: SelectConfig) -> tuple[EmbedResult, dict[str, str]]:
    model_ref = prof.model_ref("clip")
    model_dir = prof.resolve_model("clip", zoo)
    model, preprocess, _ = clip.load(model_dir, arch=model_ref.arch, device=cfg.device)
    model_key = clip.model_fingerprint(model_dir, model_ref.arch)
    cache_root_dir = (Path(cfg.cache_dir) if cfg.cache_dir else cache_root()) if cfg.use_cache else None
    cache = EmbeddingCache(cache_root_dir, model_key).load()
    log.info(
        "select: %d pool items, model %s (%s), %d cached embeddings",
        src.n_total,
        model_dir,
        model_key,
        len(cache),
    )
    emb = embed_pool(
        src,
        model,
        preprocess,
        cache,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        min_size=cfg.min_image_size,
        mask_threshold=cfg.mask_threshold,
        progress=cfg.progress,
        background=cfg.background(),
    )
    return emb, {"ref": model_ref.ref, "fingerprint": model_key}


def _check_usable(pool: str, n_pool: int, bad: list[BadItem], emb: EmbedResult, cfg: SelectConfig) -> None:
    if n_pool == 0:
        raise InputError(f"--pool: {pool} holds no items")
    if len(bad) / n_pool > cfg.max_bad_fraction:
        raise InputError(_bad_summary(bad, n_pool, cfg.max_bad_fraction))
    if not emb.items:
        raise InputError(f"--pool: none of the {n_pool} items is usable")


def _select(emb: EmbedResult, cfg: SelectConfig) -> Selection:
    """K-means per group (task, or "all") to the group's share of the size, then the representatives
    nearest to the centroids without near-duplicates. Identical files count once."""
    x = emb.embeddings
    keys = [it.task for it in emb.items] if cfg.per_task else ["all"] * len(emb.items)
    group_rows: dict[str, np.ndarray] = {}
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
    shares = cluster.split_proportionally(np.array([len(unique_rows[g]) for g in unique_rows]), cfg.size)
    if shares.sum() < cfg.size:
        log.warning(
            "select: only %d good unique items for a target of %d; selecting all of them",
            shares.sum(),
            cfg.size,
        )
    picked_rows, picked_dist, picked_cluster = [], [], []
    cluster_table: list[dict[str, Any]] = []
    cluster_sizes: dict[str, np.ndarray] = {}
    groups: dict[str, dict[str, Any]] = {}
    offset = n_dup_skipped = 0
    t0 = time.perf_counter()
    for (g, rows), share in zip(unique_rows.items(), shares, strict=True):
        if share == 0:
            continue
        xg = x[rows]
        k = math.ceil(int(share) / cfg.per_cluster)
        result = cluster.kmeans(
            xg,
            k,
            backend=cfg.backend,
            seed=cfg.seed,
            faiss_min_items=cfg.faiss_min_items,
            two_level=cfg.two_level,
            device=cfg.cluster_device,
        )
        sel = cluster.select_representatives(
            xg, result, int(share), per_cluster=cfg.per_cluster, dedup_threshold=cfg.dedup_threshold
        )
        n_dup_skipped += sel.n_duplicates_skipped
        picked_rows.append(rows[sel.indices])
        picked_dist.append(sel.distances)
        picked_cluster.append(result.labels[sel.indices] + offset)
        sizes = np.bincount(result.labels, minlength=len(result.centroids))
        chosen = np.bincount(result.labels[sel.indices], minlength=len(result.centroids))
        cluster_sizes[g] = sizes
        cluster_table.extend(
            {"group": g, "cluster_id": offset + c, "size": int(sizes[c]), "n_selected": int(chosen[c])}
            for c in range(len(sizes))
        )
        groups[g] = {
            "n_items": int(len(group_rows[g])),
            "n_selected": int(len(sel.indices)),
            "n_clusters": int(len(result.centroids)),
            "backend": result.backend,
            "device": result.device,
            "device_fallback": result.fallback,
            "two_level": result.two_level,
            "inertia": round(result.inertia, 6),
            "seconds": round(result.seconds, 3),
        }
        offset += len(result.centroids)
    sel_rows, sel_dist, sel_cluster = (np.concatenate(v) for v in (picked_rows, picked_dist, picked_cluster))
    # Output order: group, then cluster, then distance (stable, readable).
    order = np.lexsort((sel_dist, sel_cluster))
    return Selection(
        rows=sel_rows[order],
        distances=sel_dist[order],
        clusters=sel_cluster[order],
        cluster_table=cluster_table,
        cluster_sizes=cluster_sizes,
        groups=groups,
        group_rows=group_rows,
        keys=keys,
        n_clusters=offset,
        n_exact_duplicates=n_exact,
        n_duplicates_skipped=n_dup_skipped,
        seconds=time.perf_counter() - t0,
    )


def _measure_coverage(x: np.ndarray, sel: Selection, cfg: SelectConfig) -> None:
    """Coverage of the selection vs a random subset with the same number of items per group."""
    sel.coverage_selected, sel.coverage_n_measured = cluster.coverage(
        x, sel.rows, sample=cfg.coverage_sample, seed=cfg.seed
    )
    per_group = Counter(sel.keys[r] for r in sel.rows)
    random_rows = cluster.random_subset(sel.group_rows, per_group, seed=cfg.seed + 1)
    sel.coverage_random, _ = cluster.coverage(x, random_rows, sample=cfg.coverage_sample, seed=cfg.seed)


def _parameters(pool: str, prof: Any, cfg: SelectConfig, clip_info: dict[str, str]) -> dict[str, Any]:
    """The resolved parameters recorded in the manifest."""
    return {
        "pool": str(pool),
        "size": cfg.size,
        "profile": prof.name,
        "profile_sha": prof.sha,
        "clip_model": clip_info["ref"],
        "clip_fingerprint": clip_info["fingerprint"],
        "per_task": cfg.per_task,
        "backend": cfg.backend,
        "seed": cfg.seed,
        "max_bad_fraction": cfg.max_bad_fraction,
        "per_cluster": cfg.per_cluster,
        "dedup_threshold": cfg.dedup_threshold,
        "min_image_size": cfg.min_image_size,
        "mask_threshold": cfg.mask_threshold,
        "alpha_background": cfg.alpha_background,
        "max_prompt_chars": cfg.max_prompt_chars,
        "assign_tasks": cfg.assign_tasks,
        "extend_ratios": cfg.extend_ratios,
        "extend_sides": cfg.extend_sides,
        "fill_kinds": cfg.fill_kinds,
        "fill_area": [cfg.fill_area_min, cfg.fill_area_max],
        "faiss_min_items": cfg.faiss_min_items,
        "two_level": cfg.two_level,
        "cluster_device": cfg.cluster_device,
        "coverage_sample": cfg.coverage_sample,
        "threads": cfg.threads,
    }


def _write_subset(
    art: ArtifactWriter,
    src: Pool,
    emb: EmbedResult,
    bad: list[BadItem],
    sel: Selection,
    cfg: SelectConfig,
    masks: MaskSettings,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Items (images, masks, targets), embeddings, tables, metrics and report.html."""
    rows_out: list[dict[str, Any]] = []
    mask_sources: Counter = Counter()
    all_sizes = np.concatenate([sel.cluster_sizes[g] for g in sel.cluster_sizes])
    shown = set(np.argsort(-all_sizes, kind="stable")[:60].tolist())  # the 60 largest clusters
    tile_candidates: list[tuple[int, int, np.ndarray, str]] = []
    with art.timer("write_s"):
        for pos, (r, d, c) in enumerate(zip(sel.rows, sel.distances, sel.clusters, strict=True)):
            item = emb.items[r]
            row, image, mask, source = _write_item(
                art.path,
                src,
                item,
                thresholded=emb.mask_thresholded[r],
                seed=cfg.seed,
                masks=masks,
                background=cfg.background(),
            )
            row.update(cluster_id=int(c), distance=round(float(d), 6), embedding_index=pos)
            rows_out.append(row)
            mask_sources[source] += 1
            if int(c) in shown:
                tile_candidates.append(
                    (-int(all_sizes[c]), pos, overlay(image, mask), f"{int(c)}/{item.task}")
                )
        write_table(art.path / "items.parquet", rows_out, schema=SUBSET_SCHEMA)
        np.save(art.path / "embeddings.npy", np.ascontiguousarray(emb.embeddings[sel.rows], dtype=np.float32))
        write_table(
            art.path / "bad_items.parquet",
            [{"item_id": b.item_id, "origin": b.origin, "reason": b.reason} for b in bad],
            schema=BAD_ITEMS_SCHEMA,
        )
        write_table(art.path / "clusters.parquet", sel.cluster_table, schema=CLUSTERS_SCHEMA)
    tiles = [(tile, caption) for _, _, tile, caption in sorted(tile_candidates, key=lambda t: t[:2])[:60]]
    n_thresholded = sum(1 for r in sel.rows if emb.mask_thresholded[r])
    converted = Counter(rule.split(" ", 1)[0] for rule in emb.conversions if rule)
    metrics: dict[str, Any] = {
        "n_pool": src.n_total,
        "n_bad": len(bad),
        "n_valid": len(emb.items),
        "n_selected": len(rows_out),
        "coverage_selected": round(sel.coverage_selected, 6),
        "coverage_random": round(sel.coverage_random, 6),
        "coverage_n_measured": sel.coverage_n_measured,
        "images_per_second": round(emb.images_per_second, 2),
        "n_embedded": emb.n_embedded,
        "n_cache_hits": emb.n_cache_hits,
        "n_exact_duplicates": sel.n_exact_duplicates,
        "n_duplicates_skipped": sel.n_duplicates_skipped,
        "n_clusters": sel.n_clusters,
        "n_masks_generated": mask_sources.get("generated", 0),
        "n_masks_thresholded": n_thresholded,
        # valid images that were not 8-bit RGB, converted by the recorded rule (per original mode)
        "n_images_converted": sum(converted.values()),
        "images_converted_by_mode": dict(sorted(converted.items())),
        "n_selected_converted": sum(1 for r in sel.rows if emb.conversions[r]),
        "per_task": {t: int(sum(1 for r in rows_out if r["task"] == t)) for t in tasks.TASKS},
        "groups": sel.groups,
        "embed_seconds": round(emb.seconds, 3),
        "cluster_seconds": round(sel.seconds, 3),
    }
    write_report(
        art.path,
        metrics=metrics,
        parameters=parameters,
        cluster_sizes=sel.cluster_sizes,
        tiles=tiles,
        bad=bad,
        mask_sources=mask_sources,
        mask_rule=f"grey level >= {cfg.mask_threshold} is the edit region ({n_thresholded} selected items)",
    )
    art.metrics.update(metrics)
    art.counts.update(n_pool=src.n_total, n_bad=len(bad), n_selected=len(rows_out), n_clusters=sel.n_clusters)
    art.timings.update(embed_s=round(emb.seconds, 3), cluster_s=round(sel.seconds, 3))
    return metrics
