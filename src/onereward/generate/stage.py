"""Stage generate_candidates: N randomised mask-guided candidates per item (paper section 4.2).

For every (source, mask, prompt) item of a ``subset`` (or a ``pool`` whose items all have masks)
a pre-trained base generator produces N candidates while the inference steps, the negative prompt
(none or a descriptor such as "nsfw", "blurry", "low quality"), the true-CFG scale and the initial
noise strength are sampled at random, so that candidates differ in quality and annotators can
pick a best and a worst. Every sampled value and the seed are recorded per candidate.

- Parameters of an item's candidates depend only on ``(seed, item_id)``, never on the shard or
  on what else runs, so shards, resumed runs and reruns agree.
- Prompts follow DESIGN.md: the user prompt, or the task's fixed prompt for object_removal and for
  image_extend without a prompt (:func:`onereward.tasks.effective_prompt`). image_extend items
  arrive as canvases (source placed in the frame, new area grey) with the new area masked.
- The result outside the mask equals the source exactly; inside, the generated pixels are pasted
  back with an optional feather (recorded per candidate).
- Batching: the candidates of the whole shard are grouped by (generated size, executed steps)
  and each group is cut into batches of ``batch_size``, so batches fill up even when steps x
  strength spread candidates over many step counts; batches run in the order that finishes items
  earliest (:func:`plan_batches`).
- Resumable: the artifact is staged in a fixed folder (``ArtifactWriter(resume=True)``); an
  item's record is written there once all its candidates are saved, and a rerun with the same
  parameters and generator skips those items. A rerun on a finished artifact with the same
  parameters and generator does nothing; another generator model starts over.
- ``shard="i/n"`` takes every n-th item (sorted by id) from offset i; each shard writes its own
  artifact (possibly empty) and :func:`merge` joins exactly the shards ``0/n .. n-1/n``.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import shutil
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from onereward import tasks
from onereward.artifacts import ArtifactError, ArtifactWriter, Manifest, read_artifact, write_json_atomic
from onereward.errors import InputError
from onereward.generate.config import GenerateConfig
from onereward.generate.sampler import CandidateSpec, ItemCondition, Sampler, check_condition, paste_back
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.log import Throughput, get_logger
from onereward.profile import load_profile
from onereward.tables import GENERATED_CANDIDATES_SCHEMA, read_subset_items, read_table, write_table
from onereward.zoo import zoo_dir_for

log = get_logger("generate")

STAGE = "generate_candidates"

PROGRESS_DIR = "_progress"  # per-item records inside the staging folder (removed when finished)

CANDIDATES_SCHEMA = GENERATED_CANDIDATES_SCHEMA


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """The random stream of one item's candidate parameters (independent of shard and order)."""
    return np.random.default_rng([int(seed) & 0x7FFFFFFF, zlib.crc32(item_id.encode())])


def sample_specs(item_id: str, prompt: str, cfg: GenerateConfig) -> list[CandidateSpec]:
    """Draw the parameters of one item's candidates (steps, CFG, negative prompt, strength, seed).

    Steps are uniform integers in [min_steps, max_steps]; CFG scale and strength uniform in their
    ranges (rounded to 2 decimals, so the recorded value is the value used); the negative prompt
    uniform over ``cfg.negatives``. For sd_inpaint a strength is raised to the smallest value
    that still runs one step (``int(steps * strength) >= 1``).
    """
    rng = item_rng(cfg.seed, item_id)
    negatives = cfg.negatives
    specs = []
    for index in range(cfg.num_candidates):
        steps = int(rng.integers(cfg.min_steps, cfg.max_steps + 1))
        cfg_scale = round(float(rng.uniform(cfg.cfg_min, cfg.cfg_max)), 2)
        negative = negatives[int(rng.integers(len(negatives)))]
        strength = round(float(rng.uniform(cfg.strength_min, cfg.strength_max)), 2)
        cand_seed = int(rng.integers(0, 2**31 - 1))
        if cfg.family == "sd_inpaint" and int(steps * strength) < 1:
            strength = math.ceil(100 / steps) / 100
        specs.append(
            CandidateSpec(
                item_id=item_id,
                index=index,
                prompt=prompt,
                negative_prompt=negative,
                steps=steps,
                cfg_scale=cfg_scale,
                strength=min(strength, 1.0),
                seed=cand_seed,
                guidance=float(cfg.guidance) if cfg.family == "flux_fill" else 0.0,
            )
        )
    return specs


def parse_shard(shard: str, where: str = "shard") -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n (the shard of a candidates artifact's parameters)."""
    try:
        return GenerateConfig(shard=str(shard)).shard_index()
    except InputError:
        raise InputError(f"{where}: field 'shard' must be 'i/n' with 0 <= i < n, got {shard!r}") from None


def _load_condition(root: Path, row: dict[str, Any]) -> ItemCondition:
    where = f"--subset item {row['item_id']!r}"
    item = ItemCondition(
        row["item_id"],
        load_rgb(root / row["image"], what=f"{where} field 'image'"),
        load_mask(root / row["mask"], what=f"{where} field 'mask'"),
    )
    check_condition(item, where="--subset item")
    return item


def generator_identity(prof: Any, key: str, zoo: str | None) -> str:
    """What identifies the generator model of a run (part of the resume fingerprint).

    ``zoo:`` references: the zoo artifact's content hash plus the model's name in it; local
    folders: their resolved path; anything else (a hub id on the full profile): the reference.
    """
    from onereward.zoo import zoo_manifest

    ref = prof.model_ref(key).ref
    if ref.startswith("zoo:"):
        return f"{ref}@{zoo_manifest(prof, zoo).content_hash}"
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _fingerprint(params: dict[str, Any], source: Manifest) -> str:
    blob = json.dumps({"params": params, "input": source.content_hash}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_sampler(
    family: str,
    model_dir: str,
    *,
    dtype: str,
    device: str,
    batch_size: int,
    max_sequence_length: int,
    policy: str = "",
    policy_weights: str = "policy",
    resolution: int | None = None,
):
    """Load a generator folder (plus a policy artifact's weights) and wrap it in its family's sampler.

    ``resolution``: items are generated at aspect-ratio buckets of this area (the profile's
    ``image_size``; see :func:`onereward.generate.sampler.fit_size`) and mapped back to their size."""
    if family == "flux_fill":
        from onereward.generate.flux_sampler import FluxFillSampler
        from onereward.models import flux_fill

        pipe = flux_fill.load(model_dir, dtype=dtype, device=device)
        if policy:
            from onereward.policy.artifact import apply_policy

            apply_policy(pipe, policy, weights=policy_weights)
        return FluxFillSampler(
            pipe, max_sequence_length=max_sequence_length, batch_size=batch_size, resolution=resolution
        )
    from onereward.generate.sd_sampler import SDInpaintSampler
    from onereward.models import sd_inpaint

    pipe = sd_inpaint.load(model_dir, dtype=dtype, device=device)
    return SDInpaintSampler(pipe, batch_size=batch_size, resolution=resolution)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Plan:
    """What one run generates: this shard's items and their candidate specs, and the parameters
    recorded in the manifest (their ``fingerprint`` keys resume and reuse)."""

    source: Manifest
    root: Path
    rows: list[dict[str, Any]]
    specs: dict[str, list[CandidateSpec]]
    sizes: dict[str, tuple[int, int]]
    params: dict[str, Any]
    inputs: list[Manifest]

    @property
    def fingerprint(self) -> str:
        return self.params["fingerprint"]


@dataclass
class GenerationStats:
    """Counters of the generation step (zero when every item was resumed)."""

    seconds: float = 0.0
    n_generated: int = 0
    n_text_encodings: int = 0
    n_vae_encodes: int = 0
    batch_sizes: list[int] = field(default_factory=list)


def run(
    subset: str, out: str, *, profile: str = "tiny", zoo: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Generate ``num_candidates`` candidates per item of ``subset`` into the ``candidates`` artifact ``out``.

    Args:
        subset: a ``subset`` artifact, or a ``pool`` artifact whose items all have masks.
        out: output artifact directory (staged beside it in ``.<name>.partial`` while running).
        profile: profile name or YAML path; gives the generator folders and the ``generate`` settings.
        zoo: tiny-zoo artifact dir for ``zoo:`` references (None: the cached zoo of the profile).
        settings: fields of :class:`~onereward.generate.config.GenerateConfig`; None or absent =
            the profile's value.

    Returns the metrics dict, also written to ``metrics.json`` (keys in docs/contracts.md).
    """
    # 1. Settings: the profile's generate section with the overrides.
    prof = load_profile(profile)
    cfg = GenerateConfig.resolve(prof.generate, settings)
    # 2. Read this shard's items and check every condition before any work.
    plan = plan_run(prof, cfg, zoo, subset)
    # 3. A finished artifact of the same plan is the result.
    done = _finished(out, plan.fingerprint)
    if done is not None:
        return done.metrics()
    # 4. Generate into the resumable staging folder, then 5. write tables, metrics and report.
    with ArtifactWriter(
        out, kind="candidates", stage=STAGE, parameters=plan.params, inputs=plan.inputs, resume=True
    ) as art:
        todo = _resume(art.path, plan)
        for row in plan.rows:
            _copy_item_files(plan.root, art.path, row)
        stats = GenerationStats()
        if todo:
            with art.timer("load_model_s"):
                sampler = make_sampler(
                    cfg.family,
                    prof.resolve_model(cfg.model_key, zoo_dir_for(prof, zoo)),
                    dtype=cfg.dtype,
                    device=_resolve_device(cfg.device),
                    batch_size=cfg.batch_size,
                    max_sequence_length=cfg.max_sequence_length,
                    policy=cfg.policy,
                    policy_weights=cfg.policy_weights,
                    resolution=prof.image_size,
                )
            with art.timer("generate_s"):
                stats = _generate(sampler, plan, art.path, todo, cfg)
        metrics = _write_outputs(art, plan, stats, n_resumed=len(plan.rows) - len(todo), cfg=cfg)
    return metrics


def plan_run(prof: Any, cfg: GenerateConfig, zoo: str | None, subset: str) -> Plan:
    """Read this shard's items, check their pixels (a bad mask stops the stage before any work) and
    draw every candidate's parameters; the recorded parameters include the generator's identity."""
    shard_i, shard_n = cfg.shard_index()
    source, root, rows = read_subset_items(subset, stage=STAGE)
    rows = sorted(rows, key=lambda r: r["item_id"])[shard_i::shard_n]
    params: dict[str, Any] = {
        "profile": prof.name,
        "profile_sha": prof.sha,
        "family": cfg.family,
        "num_candidates": cfg.num_candidates,
        "shard": f"{shard_i}/{shard_n}",
        "seed": cfg.seed,
        "min_steps": cfg.min_steps,
        "max_steps": cfg.max_steps,
        "cfg_min": cfg.cfg_min,
        "cfg_max": cfg.cfg_max,
        "strength_min": cfg.strength_min,
        "strength_max": cfg.strength_max,
        "negative_prompts": cfg.negatives,
        "guidance": cfg.guidance,
        "feather": cfg.feather,
        "batch_size": cfg.batch_size,
        "max_sequence_length": cfg.max_sequence_length,
        "dtype": cfg.dtype,
        # The generator model is part of the fingerprint: another model never resumes or reuses this one's work.
        "generator": generator_identity(prof, cfg.model_key, zoo),
    }
    policy = _read_policy(cfg, params["generator"])
    if policy is not None:  # recorded only with a policy, so base runs keep their fingerprints
        params["policy"] = {"content_hash": policy.content_hash, "weights": cfg.policy_weights}
    params["fingerprint"] = _fingerprint(params, source)
    specs = {
        row["item_id"]: sample_specs(row["item_id"], tasks.effective_prompt(row["task"], row["prompt"]), cfg)
        for row in rows
    }
    sd_factor = None
    if cfg.family == "sd_inpaint" and rows:
        from onereward.models.sd_inpaint import vae_scale_factor

        sd_factor = vae_scale_factor(prof.resolve_model(cfg.model_key, zoo_dir_for(prof, zoo)))
    sizes: dict[str, tuple[int, int]] = {}
    for row in rows:
        item = _load_condition(root, row)
        sizes[row["item_id"]] = item.mask.shape
        if sd_factor:
            from onereward.generate.sd_sampler import check_latent_mask

            check_latent_mask(item, sd_factor, where="--subset item", resolution=prof.image_size)
    inputs = [source]
    if prof.model_ref(cfg.model_key).ref.startswith("zoo:"):
        from onereward.zoo import zoo_manifest

        inputs.append(zoo_manifest(prof, zoo))  # lineage: which zoo's generator ran
    if policy is not None:
        inputs.append(policy)
    return Plan(source, root, rows, specs, sizes, params, inputs)


def _read_policy(cfg: GenerateConfig, base_identity: str) -> Manifest | None:
    """The policy artifact's manifest (None without one); refuses another family or base."""
    if not cfg.policy:
        return None
    from onereward.policy.artifact import check_base, read_policy

    manifest, info = read_policy(cfg.policy, what="--policy")
    if info.family != cfg.family:
        raise InputError(
            f"--policy: {cfg.policy}/policy.json field 'family' is {info.family!r}; this run generates with {cfg.family!r}"
        )
    check_base(info, base_identity)
    return manifest


def _finished(out: str, fingerprint: str) -> Manifest | None:
    """The manifest of ``out`` when it is a complete artifact of the same plan, else None."""
    out_path = Path(out)
    if not (out_path / "manifest.json").is_file():
        return None
    try:
        done = read_artifact(out_path, kind="candidates", what="--out")
    except ArtifactError as e:
        log.warning("regenerating %s: %s", out_path, e)
        return None
    if done.parameters.get("fingerprint") != fingerprint:
        return None
    log.info("%s is already complete for these parameters; nothing to do", out_path)
    return done


def _resume(staging: Path, plan: Plan) -> list[dict[str, Any]]:
    """The items still to generate: a staging folder of another plan starts over; an item counts as
    finished when its record and all its candidate images are there."""
    progress = staging / PROGRESS_DIR
    stamp = progress / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") != plan.fingerprint:
        log.warning("staging folder %s holds a run with other parameters; starting over", staging)
        for child in staging.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json_atomic(stamp, {"fingerprint": plan.fingerprint})
    n_cand = plan.params["num_candidates"]
    finished = {
        row["item_id"]
        for row in plan.rows
        if (progress / f"{row['item_id']}.json").is_file()
        and all((staging / _candidate_path(row["item_id"], k)).is_file() for k in range(n_cand))
    }
    todo = [row for row in plan.rows if row["item_id"] not in finished]
    log.info(
        "generate_candidates: %d items (%d resumed, %d to generate), %d candidates each, family %s",
        len(plan.rows), len(finished), len(todo), n_cand, plan.params["family"],
    )  # fmt: skip
    return todo


def _write_outputs(
    art: ArtifactWriter, plan: Plan, stats: GenerationStats, *, n_resumed: int, cfg: GenerateConfig
) -> dict[str, Any]:
    """items.parquet, candidates.parquet, metrics and report.html of the finished staging folder."""
    progress = art.path / PROGRESS_DIR
    cand_rows: list[dict[str, Any]] = []
    for row in plan.rows:
        cand_rows.extend(json.loads((progress / f"{row['item_id']}.json").read_text()))
    # With the input's schema: an empty shard (more shards than items) still has its columns.
    write_table(art.path / "items.parquet", plan.rows, schema=pq.read_schema(plan.root / "items.parquet"))
    write_table(art.path / "candidates.parquet", cand_rows, schema=CANDIDATES_SCHEMA)
    metrics = candidate_metrics(cand_rows, n_items=len(plan.rows))
    metrics.update(oracle_metrics(art.path, plan.rows, cand_rows))
    sizes = stats.batch_sizes
    metrics.update(
        {
            "family": cfg.family,
            "n_generated": stats.n_generated,
            "n_items_resumed": n_resumed,
            "generate_seconds": round(stats.seconds, 3),
            "images_per_second": round(stats.n_generated / stats.seconds, 3) if stats.seconds > 0 else 0.0,
            "n_text_encodings": stats.n_text_encodings,
            "n_vae_encodes": stats.n_vae_encodes,
            "n_batches": len(sizes),
            "mean_batch_size": round(float(np.mean(sizes)), 3) if sizes else 0.0,
            "batch_fill": round(float(np.mean(sizes)) / cfg.batch_size, 3) if sizes else 0.0,
        }
    )
    art.counts.update({"n_items": len(plan.rows), "n_candidates": len(cand_rows)})
    art.metrics.update(metrics)
    write_report(art.path, plan.rows, cand_rows, metrics, max_items=cfg.report_items)
    shutil.rmtree(progress)
    return metrics


def _candidate_path(item_id: str, index: int) -> str:
    return f"candidates/{item_id}/{index}.png"


def _copy_item_files(src_root: Path, dst_root: Path, row: dict[str, Any]) -> None:
    for col in ("image", "mask", "target"):
        rel = row.get(col)
        if rel and (src_root / rel).is_file() and not (dst_root / rel).is_file():
            (dst_root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_root / rel, dst_root / rel)


def plan_batches(keys: list[Any], owners: list[int], batch_size: int) -> list[list[int]]:
    """Batches of spec indices over a whole shard.

    Specs are grouped by ``keys[i]`` (generated size, executed steps), each group, in spec order,
    is cut into batches of ``batch_size`` (so at most one partial batch per key), and the batches
    are ordered by the last item position (``owners[i]``) they contain: items then finish - and
    are recorded for resume - progressively instead of all at the end.
    """
    groups: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out = [idx[s : s + batch_size] for idx in groups.values() for s in range(0, len(idx), batch_size)]
    out.sort(key=lambda b: (max(owners[i] for i in b), min(owners[i] for i in b)))
    return out


def _generate(
    sampler: Sampler, plan: Plan, staging: Path, todo: list[dict[str, Any]], cfg: GenerateConfig
) -> GenerationStats:
    """Generate the candidates of ``todo`` in planned batches into ``staging``.

    An item's record (which marks it finished for resume) is written as soon as its last
    candidate is saved; its source is loaded when first needed and dropped, with the sampler's
    cached VAE encoding, once the item is finished.
    """
    root, sizes, params = plan.root, plan.sizes, plan.params
    position = {row["item_id"]: k for k, row in enumerate(todo)}
    by_id = {row["item_id"]: row for row in todo}
    specs = [s for row in todo for s in plan.specs[row["item_id"]]]
    keys = [sampler.batch_key(sizes[s.item_id], s) for s in specs]
    batches = plan_batches(keys, [position[s.item_id] for s in specs], sampler.batch_size)
    remaining = Counter(s.item_id for s in specs)
    loaded: dict[str, Any] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    bar = tqdm(total=len(specs), desc=f"candidates ({sampler.family})", unit="img", disable=len(todo) < 4)
    with Throughput("candidates") as tp:
        for idx in batches:
            batch = [specs[i] for i in idx]
            for iid in dict.fromkeys(s.item_id for s in batch):
                if iid not in loaded:
                    loaded[iid] = _load_condition(root, by_id[iid])
            images = sampler.sample(
                {iid: loaded[iid] for iid in dict.fromkeys(s.item_id for s in batch)}, batch
            )
            for spec, image in zip(batch, images, strict=True):
                item = loaded[spec.item_id]
                result = paste_back(item.image, image, item.mask, cfg.feather)
                rel = _candidate_path(spec.item_id, spec.index)
                save_png(staging / rel, result)
                records.setdefault(spec.item_id, []).append(_candidate_row(spec, rel, sampler, params, sizes))
                remaining[spec.item_id] -= 1
                if remaining[spec.item_id] == 0:  # the record marks the item finished (written last)
                    cand = sorted(records.pop(spec.item_id), key=lambda c: c["index"])
                    write_json_atomic(staging / PROGRESS_DIR / f"{spec.item_id}.json", cand)
                    loaded.pop(spec.item_id)
                    sampler.release(spec.item_id)
            tp.add(len(batch))
            bar.update(len(batch))
    bar.close()
    log.info("generate_candidates: %s", tp)
    return GenerationStats(
        seconds=tp.elapsed,
        n_generated=tp.count,
        n_text_encodings=sampler.text.n_encoded,
        n_vae_encodes=sampler.n_vae_encodes,
        batch_sizes=[len(b) for b in batches],
    )


def _candidate_row(
    spec: CandidateSpec,
    rel: str,
    sampler: Sampler,
    params: dict[str, Any],
    sizes: dict[str, tuple[int, int]],
) -> dict[str, Any]:
    row = asdict(spec)
    row.update(
        candidate_id=spec.candidate_id,
        image=rel,
        family=sampler.family,
        feather=params["feather"],
        executed_steps=sampler.executed_steps(spec.steps, spec.strength),
        start_sigma=round(sampler.start_sigma(sizes[spec.item_id], spec), 6),
        meta=json.dumps({"max_sequence_length": params["max_sequence_length"], "dtype": params["dtype"]}),
    )
    return {f.name: row[f.name] for f in CANDIDATES_SCHEMA}


def candidate_metrics(cand_rows: list[dict[str, Any]], *, n_items: int) -> dict[str, Any]:
    """Counts and realised parameter ranges of a candidates table."""
    m: dict[str, Any] = {"n_items": n_items, "n_candidates": len(cand_rows)}
    for col in ("steps", "executed_steps", "start_sigma", "cfg_scale", "strength", "guidance"):
        vals = [r[col] for r in cand_rows]
        m[f"{col}_min"] = min(vals) if vals else None
        m[f"{col}_max"] = max(vals) if vals else None
        m[f"{col}_mean"] = round(float(np.mean(vals)), 4) if vals else None
    negatives = Counter(r["negative_prompt"] or "none" for r in cand_rows)
    m["negative_prompt_counts"] = dict(sorted(negatives.items()))
    m["n_distinct_negative_prompts"] = len(negatives)
    return m


def oracle_metrics(root: Path, rows: list[dict[str, Any]], cand_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """In the synthetic world (items with targets): the candidates' oracle scores per task and
    dimension and the share of (item, dimension) pairs whose best and worst candidates the
    simulated annotators can tell apart (:func:`onereward.synth.scoring.candidate_oracle_metrics`;
    the level is the annotators' default noise or 'no clear difference' threshold, the larger).
    Empty for items without targets (a user's photos)."""
    from onereward.annotate.config import SimulateConfig
    from onereward.synth.scoring import candidate_oracle_metrics

    sim = SimulateConfig()
    # Items whose target the input names but does not hold are left out, like items without one.
    scored = [r for r in rows if r.get("target") and (root / r["target"]).is_file()]
    found = candidate_oracle_metrics(scored, cand_rows, item_root=root, level=max(sim.noise, sim.threshold))
    return found or {}


def write_report(
    root: Path,
    rows: list[dict[str, Any]],
    cand_rows: list[dict[str, Any]],
    metrics: dict[str, Any],
    max_items: int,
) -> None:
    """report.html: summary, parameter histograms and a grid source | mask | candidates (+ parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from onereward.report import figure_data_uri, html_table, img_tag, png_data_uri, write_html_report

    summary = html_table(
        ["metric", "value"], [[k, v] for k, v in metrics.items() if not isinstance(v, dict)]
    ) + html_table(["negative prompt", "candidates"], list(metrics.get("negative_prompt_counts", {}).items()))
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.6))
    for ax, col in zip(axes, ("steps", "cfg_scale", "strength", "executed_steps"), strict=True):
        ax.hist([r[col] for r in cand_rows], bins=12, color="#4a7")
        ax.set_title(col)
    hist = f'<img src="{figure_data_uri(fig)}" style="max-width:100%" title="sampled parameters"/>'
    by_item: dict[str, list[dict[str, Any]]] = {}
    for c in cand_rows:
        by_item.setdefault(c["item_id"], []).append(c)
    n_cand = max((len(v) for v in by_item.values()), default=0)
    grid = []
    for row in rows[:max_items]:
        cells = [
            f"<div>{html.escape(row['item_id'])}<br><span class='small'>{html.escape(row['task'])}<br>"
            f"{html.escape(row['prompt'] or '(no prompt)')}</span></div>",
            img_tag(png_data_uri(root / row["image"], 128), "source"),
            img_tag(png_data_uri(_mask_overlay(root / row["image"], root / row["mask"]), 128), "mask (red)"),
        ]
        for c in sorted(by_item.get(row["item_id"], []), key=lambda c: c["index"]):
            caption = (
                f"steps {c['steps']} (ran {c['executed_steps']}) | cfg {c['cfg_scale']:g} | "
                f"strength {c['strength']:g}<br>neg: {html.escape(c['negative_prompt'] or 'none')} | seed {c['seed']}"
            )
            cells.append(
                f"<div>{img_tag(png_data_uri(root / c['image'], 128))}<br><span class='small'>{caption}</span></div>"
            )
        grid.append(cells)
    header = ["item", "source", "mask"] + [chr(ord("A") + k) if k < 26 else str(k) for k in range(n_cand)]
    oracle_rows = [
        [task, dim, v["mean"], v["normalised"], v["n"]]
        for task, dims in metrics.get("oracle_by_variant", {}).items()
        for dim, v in dims.items()
    ]
    oracle_section = (
        [
            (
                "Oracle (synthetic world)",
                f"<p>Normalised: 0 = noise inside the mask, 1 = the item's target. Best and worst of an "
                f"item's candidates differ by more than {metrics.get('oracle_gap_level')} (what the "
                f"simulated annotators tell apart) on a share {metrics.get('oracle_gap_fraction')} of "
                f"(item, dimension) pairs.</p>"
                + html_table(
                    ["task", "dimension", "raw mean", "normalised", "best of n", "candidates"], oracle_rows
                ),
            )
        ]
        if oracle_rows
        else []
    )
    write_html_report(
        root / "report.html",
        "generate_candidates",
        [
            ("Summary", summary),
            *oracle_section,
            ("Sampled parameters", hist),
            (
                f"Candidates (first {min(len(rows), max_items)} of {len(rows)} items)",
                html_table(header, grid),
            ),
        ],
    )


def _mask_overlay(image_path: Path, mask_path: Path) -> np.ndarray:
    """The source with the mask tinted red (a bare white-on-black mask vanishes on a white page)."""
    image, mask = load_rgb(image_path).astype(np.float32), load_mask(mask_path)
    image[mask] = 0.45 * image[mask] + 0.55 * np.array([230.0, 30.0, 30.0])
    return image.astype(np.uint8)


def merge(shard_dirs: list[str], out: str) -> dict[str, Any]:
    """Merge the candidates artifacts of shards (``--shard i/n`` runs) into one artifact ``out``.

    The shards must be exactly ``0/n .. n-1/n`` for one n (each once), come from the same input,
    parameters and generator, and hold disjoint items; empty shards (more shards than items) are
    fine. The merged metrics sum the counts and the shards' throughputs (they ran in parallel).
    """
    if not shard_dirs:
        raise InputError("--shards (shard_dirs): expected at least one candidates artifact")
    manifests = [read_artifact(d, kind="candidates", what=f"--shards {d}") for d in shard_dirs]
    parsed = [
        parse_shard(m.parameters.get("shard", ""), f"--shards {d}")
        for d, m in zip(shard_dirs, manifests, strict=True)
    ]
    n = parsed[0][1]
    got = sorted(f"{i}/{k}" for i, k in parsed)
    if any(k != n for _, k in parsed) or sorted(i for i, _ in parsed) != list(range(n)):
        raise InputError(
            f"--shards (shard_dirs): expected exactly the shards 0/{n} .. {n - 1}/{n}, each once; got "
            f"{', '.join(got)}"
        )
    ref_params = {k: v for k, v in manifests[0].parameters.items() if k not in ("shard", "fingerprint")}
    for d, m in zip(shard_dirs, manifests, strict=True):
        p = {k: v for k, v in m.parameters.items() if k not in ("shard", "fingerprint")}
        if p != ref_params or m.inputs != manifests[0].inputs:
            raise InputError(f"--shards {d}: parameters or input differ from {shard_dirs[0]}; cannot merge")
    rows: list[dict[str, Any]] = []
    cands: list[dict[str, Any]] = []
    seen: set[str] = set()
    params = dict(
        ref_params,
        shards=[m.parameters.get("shard") for m in manifests],
        shard_hashes=[m.content_hash for m in manifests],
    )
    # The merged artifact is the generate_candidates stage's output: its inputs are the shards'
    # common inputs (subset, zoo), so lineage leads straight back to select_subset.
    with ArtifactWriter(
        out, kind="candidates", stage="generate_candidates", parameters=params, inputs=manifests[0].inputs
    ) as art:
        # The shards ran in parallel: the slowest one is the generation wall time of the stage.
        art.timings["shards_total_s_max"] = round(max(m.timings.get("total_s", 0.0) for m in manifests), 4)
        for d in shard_dirs:
            root = Path(d)
            shard_rows = read_table(
                root / "items.parquet", required=("item_id",), what=f"--shards {d} items.parquet"
            )
            dup = seen.intersection(r["item_id"] for r in shard_rows)
            if dup:
                raise InputError(f"--shards {d}: item(s) {sorted(dup)[:5]} also appear in another shard")
            seen.update(r["item_id"] for r in shard_rows)
            rows.extend(shard_rows)
            shard_cands = read_table(root / "candidates.parquet", what=f"--shards {d} candidates.parquet")
            cands.extend(shard_cands)
            for row in shard_rows:
                _copy_item_files(root, art.path, row)
            for c in shard_cands:
                (art.path / c["image"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / c["image"], art.path / c["image"])
        rows.sort(key=lambda r: r["item_id"])
        cands.sort(key=lambda c: (c["item_id"], c["index"]))
        write_table(
            art.path / "items.parquet", rows, schema=pq.read_schema(Path(shard_dirs[0]) / "items.parquet")
        )
        write_table(art.path / "candidates.parquet", cands, schema=CANDIDATES_SCHEMA)
        shard_metrics = [m.metrics() for m in manifests]
        metrics = candidate_metrics(cands, n_items=len(rows))
        metrics.update(oracle_metrics(art.path, rows, cands))
        metrics.update(
            {
                "family": ref_params.get("family"),
                "n_shards": len(manifests),
                "n_generated": sum(int(s.get("n_generated", 0)) for s in shard_metrics),
                "images_per_second": round(
                    sum(float(s.get("images_per_second", 0.0)) for s in shard_metrics), 3
                ),
            }
        )
        art.counts.update({"n_items": len(rows), "n_candidates": len(cands)})
        art.metrics.update(metrics)
        write_report(art.path, rows, cands, metrics, max_items=24)
    return metrics
