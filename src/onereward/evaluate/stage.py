"""Stage evaluate: benchmark trained policies against their base (paper section 5.2, Table 2, Figure 7).

A benchmark of held-out items per task (:mod:`~onereward.evaluate.benchmark`) goes through every
compared model (:mod:`~onereward.evaluate.models`: the base, the policy, its EMA, further
policies) with the same conditions, the same noises and fixed sampling parameters. The results
are judged against the base's, per (item, dimension):

- by the reward model, asked in both orders (Good only when both agree beyond a margin), and
  optionally by a held-out reward model, which then heads the report: the policy was not trained
  against it;
- by the synthetic world's oracle (ground truth; only when every benchmark item has a target);
- by people through a blind A/B Label Studio project (:mod:`~onereward.evaluate.human`; simulated
  annotators in the demo);

and measured by automatic metrics (:mod:`~onereward.evaluate.metrics`, :mod:`~onereward.evaluate.ocr`):
background PSNR / SSIM / MSE outside the mask (BrushBench's way), a seam metric, CLIP score,
OCR sentence accuracy and edit distance, and (synthetic world) removal success.

Determinism: the benchmark depends on (seed, item ids), each item's noise on (seed, item_id), the
simulated annotators on (seed, annotator, item_id); the same inputs give the same tables.

The artifact (kind ``evaluation``): ``items.parquet`` (+ ``images/``, ``masks/``, ``targets/``),
``results/<model>/<item_id>.png`` and ``raw/<model>/<item_id>.png`` (before paste-back),
``results.parquet`` (per item and model), ``judgements.parquet`` (per item, model, judge and
dimension), ``human/`` (the A/B project), ``metrics.json`` (keys in docs/contracts.md),
``report.html``, ``report.md`` and ``headline.html``.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onereward.artifacts import ArtifactWriter, Manifest, read_artifact
from onereward.errors import InputError
from onereward.evaluate import human as human_ab
from onereward.evaluate import judges, summary
from onereward.evaluate import metrics as am
from onereward.evaluate.benchmark import (
    FILL,
    REMOVAL,
    Benchmark,
    BenchmarkItem,
    read_pool_rows,
    select_benchmark,
    training_item_ids,
)
from onereward.evaluate.config import EvaluateConfig
from onereward.evaluate.models import (
    BASE,
    ModelEntry,
    conditions,
    generate,
    item_seed,
    load_pipeline,
    model_entries,
    resolve_device,
)
from onereward.evaluate.ocr import TextReader, expected_text
from onereward.evaluate.report import write_reports
from onereward.imageio import load_mask, load_rgb, save_png
from onereward.log import get_logger
from onereward.profile import load_profile
from onereward.tables import (
    EVAL_ITEMS_SCHEMA,
    EVAL_RESULTS_SCHEMA,
    JUDGEMENTS_SCHEMA,
    read_table,
    write_table,
)
from onereward.zoo import zoo_dir_for

log = get_logger("evaluate")

STAGE = "evaluate"
# Inputs of a policy that name the conditions it trained on (train_policy reads a subset; its
# reference rollouts, a candidates artifact, are made from that subset's items).
TRAINING_KINDS = ("subset", "pool")
SELECTION_RULE = (
    "items of the pool with a mask, minus every item id of the --exclude artifacts (the training "
    "subset) and of the policy's training inputs, ranked per task by sha256(seed:item_id), first n"
)


@dataclass
class Inputs:
    """What the run reads besides the pool: models, judges and the items to hold out."""

    entries: list[ModelEntry]
    reward_models: dict[str, str]  # judge name -> reward model folder
    exclude_ids: set[str]
    manifests: list[Manifest] = field(default_factory=list)


@dataclass
class World:
    """The benchmark items' pixels: source (canvas), mask, ideal target (synthetic world only)."""

    sources: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    targets: dict[str, np.ndarray | None]

    @property
    def synthetic(self) -> bool:
        return bool(self.targets) and all(t is not None for t in self.targets.values())


def run(
    pool: str,
    out: str,
    *,
    reward_model: str,
    profile: str = "tiny",
    zoo: str | None = None,
    policy: str | None = None,
    extra_policies: Sequence[str] = (),
    exclude: Sequence[str] = (),
    held_out_reward_model: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate the base and the given policies on the benchmark drawn from ``pool`` into ``out``.

    Args:
        pool: ``pool`` (or ``subset``) artifact the benchmark items are drawn from (masks needed).
        out: output ``evaluation`` artifact directory.
        reward_model: the ``reward_model`` artifact (or a VLM folder) the policy was trained against.
        profile: profile name or YAML path (the generator, CLIP and the ``evaluate`` settings).
        zoo: tiny-zoo artifact for ``zoo:`` references (None: the profile's cached zoo).
        policy: the ``policy`` artifact to compare (None: the base alone, e.g. before RL).
        extra_policies: further ``policy`` artifacts.
        exclude: artifacts whose items were used in training (the subset); held out by item id.
        held_out_reward_model: a second reward model judge, not the policy's training reward.
        settings: fields of :class:`~onereward.evaluate.config.EvaluateConfig` (None = the profile's).

    Returns the metrics dict, also written to ``metrics.json``.
    """
    started = time.perf_counter()
    # 1. Settings: the profile's evaluate section with the overrides.
    prof = load_profile(profile)
    cfg = EvaluateConfig.resolve(prof.evaluate, settings)
    device = resolve_device(cfg.device)
    # 2. Inputs: the pool, the models, the judges and the items used in training; all checked first.
    pool_manifest, pool_root, rows = read_pool_rows(pool)
    inputs = read_inputs(policy, extra_policies, exclude, reward_model, held_out_reward_model, cfg)
    # 3. The benchmark set: held-out items per task in a fixed order.
    bench = select_benchmark(rows, inputs.exclude_ids, cfg.sizes, cfg.seed)
    if not bench.items:
        raise InputError(
            f"--pool {pool}: no benchmark item left (available after excluding {bench.n_excluded} training "
            f"items: {bench.available}; skipped: {bench.n_skipped})"
        )
    for group, missing in bench.shortfall.items():
        log.warning("evaluate: %s has %d items fewer than the %d wanted", group, missing, bench.wanted[group])
    params = {
        **cfg.to_dict(),
        "models": [e.name for e in inputs.entries],
        "judges": list(inputs.reward_models),
    }
    with ArtifactWriter(
        out, kind="evaluation", stage=STAGE, parameters=params, inputs=[pool_manifest, *inputs.manifests]
    ) as art:
        # 4. Copy the benchmark items into the artifact and load their pixels.
        world = copy_items(art.path, pool_root, bench, cfg.seed)
        if cfg.human == "simulate" and not world.synthetic:
            raise InputError(
                "--human simulate: simulated annotators need the synthetic world's oracle, but the benchmark "
                "items have no targets; use --human export for people"
            )
        # 5. Every model's results: same conditions, same noises, fixed sampling.
        with art.timer("generate_s"):
            images, raw, gen_seconds = generate_all(
                inputs.entries, bench.items, world, prof, zoo, cfg, device
            )
        save_results(art.path, images, raw)
        models = [e.name for e in inputs.entries]
        judgements: list[dict[str, Any]] = []
        # 6. Judges: the reward model(s) in both orders, the oracle in the synthetic world.
        for judge, folder in inputs.reward_models.items():
            with art.timer(f"{judge}_s"):
                judgements += judge_with_reward_model(folder, judge, bench.items, images, world, cfg, device)
        oracle: dict[tuple[str, str], Any] = {}
        if world.synthetic:
            with art.timer("oracle_s"):
                oracle = judges.oracle_scores(bench.items, images, world.sources, world.masks, world.targets)
                judgements += judges.oracle_judgements(bench.items, oracle, models, margin=cfg.oracle_margin)
        # 7. Automatic metrics per item and model.
        results = result_rows(art, bench.items, images, raw, world, oracle, prof, zoo, cfg, device)
        # 8. Human GSB: the blind A/B project (simulated answers in the demo).
        human_info: dict[str, Any] | None = None
        if cfg.human != "none" and len(models) == 1:
            human_info = {"mode": cfg.human, "status": "skipped: only the base was evaluated (no policy)"}
        elif cfg.human != "none":
            with art.timer("human_s"):
                rows_h, human_info = human_gsb(art, bench.items, images, world, oracle, cfg)
            judgements += rows_h
        # 9. Tables, metrics and reports.
        write_tables(art.path, bench, results, judgements, cfg.seed)
        metrics = build_metrics(
            bench, models, results, judgements, inputs, human_info, art.timings, gen_seconds
        )
        elapsed = time.perf_counter() - started
        metrics["evaluate_seconds"] = round(elapsed, 2)
        metrics["items_per_second"] = round(len(bench.items) * len(models) / max(elapsed, 1e-9), 3)
        art.metrics.update(metrics)
        art.counts.update(
            {"n_items": len(bench.items), "n_models": len(models), "n_judgements": len(judgements)}
        )
        write_reports(
            art.path, metrics, [i.row for i in bench.items], models, _result_index(results), cfg.report_items
        )
    log.info("evaluate: %d items x %d models -> %s", len(bench.items), len(models), out)
    return dict(art.metrics)


# ---- 2. inputs --------------------------------------------------------------------------------


def read_inputs(
    policy: str | None,
    extra_policies: Sequence[str],
    exclude: Sequence[str],
    reward_model: str,
    held_out_reward_model: str | None,
    cfg: EvaluateConfig,
) -> Inputs:
    """Check the policies, the reward models and the training items to hold out, before any work.

    A policy whose manifest names the conditions it trained on (a subset or pool input) must find
    that very artifact (same content hash) among ``exclude``: otherwise its training items could
    enter the benchmark.
    """
    from onereward.policy.artifact import read_policy

    exclude_ids, exclude_manifests = training_item_ids(exclude)
    held = {m.content_hash for m in exclude_manifests}
    manifests: list[Manifest] = list(exclude_manifests)
    for path in [p for p in [policy, *extra_policies] if p]:
        manifest, _ = read_policy(path, what=f"--policy {path}")
        manifests.append(manifest)
        for ref in manifest.inputs:
            if ref.get("kind") in TRAINING_KINDS and ref.get("content_hash") not in held:
                raise InputError(
                    f"--exclude: policy {path} was trained on the {ref['kind']} with content hash "
                    f"{str(ref.get('content_hash'))[:12]} (its manifest's inputs); pass that artifact with --exclude "
                    "so its items are held out of the benchmark"
                )
    judges_: dict[str, str] = {}
    for judge, path in (
        (judges.REWARD_MODEL, reward_model),
        (judges.HELD_OUT_REWARD_MODEL, held_out_reward_model),
    ):
        if not path:
            continue
        if (Path(path) / "manifest.json").is_file():
            manifests.append(read_artifact(path, kind="reward_model", what=f"--{judge.replace('_', '-')}"))
        elif not Path(path).is_dir():
            raise InputError(
                f"--{judge.replace('_', '-')}: {path} is not a reward_model artifact or a VLM folder"
            )
        judges_[judge] = str(path)
    entries = model_entries(policy, extra_policies, ema=cfg.ema)
    if cfg.human != "none" and len(entries) > 1 and cfg.human_model not in {e.name for e in entries}:
        raise InputError(
            f"--human-model: {cfg.human_model!r} is not among the compared models ({', '.join(e.name for e in entries)})"
        )
    return Inputs(entries=entries, reward_models=judges_, exclude_ids=exclude_ids, manifests=manifests)


# ---- 4. items ---------------------------------------------------------------------------------


def copy_items(root: Path, pool_root: Path, bench: Benchmark, seed: int) -> World:
    """Copy each item's image, mask and target into the artifact; load them as arrays."""
    world = World({}, {}, {})
    for item in bench.items:
        iid, row = item.item_id, item.row
        world.sources[iid] = load_rgb(pool_root / row["image"])
        world.masks[iid] = load_mask(pool_root / row["mask"])
        target = row.get("target")
        world.targets[iid] = (
            load_rgb(pool_root / target) if target and (pool_root / target).is_file() else None
        )
        for col in ("image", "mask", "target"):
            if row.get(col) and (pool_root / row[col]).is_file():
                dst = root / row[col]
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes((pool_root / row[col]).read_bytes())
        row["seed"] = item_seed(seed, iid)
        row["group"] = item.group
    return world


# ---- 5. generation ----------------------------------------------------------------------------


def generate_all(
    entries: Sequence[ModelEntry],
    items: Sequence[BenchmarkItem],
    world: World,
    prof: Any,
    zoo: str | None,
    cfg: EvaluateConfig,
    device: str,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Each model's final and raw results, one model in memory at a time."""
    conds = conditions(list(items), world.sources, world.masks)
    images, raw, seconds = {}, {}, {}
    for entry in entries:
        pipe = load_pipeline(entry, prof, zoo, cfg, device)
        res = generate(pipe, list(items), conds, cfg, resolution=prof.image_size)
        images[entry.name], raw[entry.name], seconds[entry.name] = res.final, res.raw, round(res.seconds, 4)
        log.info("evaluate: %s generated %d items in %.2fs", entry.name, len(items), res.seconds)
        del pipe
        gc.collect()
    return images, raw, seconds


def save_results(
    root: Path, images: dict[str, dict[str, np.ndarray]], raw: dict[str, dict[str, np.ndarray]]
) -> None:
    for model, by_item in images.items():
        for iid, img in by_item.items():
            save_png(root / "results" / model / f"{iid}.png", img)
            save_png(root / "raw" / model / f"{iid}.png", raw[model][iid])


# ---- 6. judges --------------------------------------------------------------------------------


def judge_with_reward_model(
    folder: str,
    judge: str,
    items: Sequence[BenchmarkItem],
    images: dict[str, dict[str, np.ndarray]],
    world: World,
    cfg: EvaluateConfig,
    device: str,
) -> list[dict[str, Any]]:
    """Load a reward model and judge every model against the base in both orders."""
    from onereward.models.flux_fill import torch_dtype
    from onereward.reward.scoring import RewardScorer

    if len(images) < 2:
        return []
    scorer = RewardScorer.load(folder, device=device, dtype=torch_dtype(cfg.dtype))
    rows = judges.reward_judgements(
        scorer,
        judge,
        items,
        images,
        world.sources,
        world.masks,
        margin=cfg.margin,
        batch_size=cfg.judge_batch_size,
    )
    del scorer
    gc.collect()
    return rows


# ---- 7. automatic metrics ---------------------------------------------------------------------


def result_rows(
    art: ArtifactWriter,
    items: Sequence[BenchmarkItem],
    images: dict[str, dict[str, np.ndarray]],
    raw: dict[str, dict[str, np.ndarray]],
    world: World,
    oracle: dict[tuple[str, str], Any],
    prof: Any,
    zoo: str | None,
    cfg: EvaluateConfig,
    device: str,
) -> list[dict[str, Any]]:
    """One row per (item, model): background (final and raw), seam, CLIP score, OCR, removal, oracle."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    with art.timer("background_s"):
        for model in images:
            for item in items:
                iid = item.item_id
                final = am.background(images[model][iid], world.sources[iid], world.masks[iid])
                before = am.background(raw[model][iid], world.sources[iid], world.masks[iid])
                score = oracle.get((model, iid))
                rows[(model, iid)] = {
                    "item_id": iid,
                    "group": item.group,
                    "model": model,
                    "image": f"results/{model}/{iid}.png",
                    "raw_image": f"raw/{model}/{iid}.png",
                    "psnr_outside": final["psnr"],
                    "ssim_outside": final["ssim"],
                    "mse_outside": final["mse"],
                    "psnr_outside_raw": before["psnr"],
                    "ssim_outside_raw": before["ssim"],
                    "mse_outside_raw": before["mse"],
                    "oracle": json.dumps(score, sort_keys=True) if score is not None else None,
                    "removal_success": (
                        float(am.removal_success(score["removal_quality"]["raw"], cfg.removal_threshold))
                        if score is not None and item.group == REMOVAL
                        else None
                    ),
                }
    with art.timer("seam_s"):
        for (model, iid), row in rows.items():
            row["seam"] = am.seam(images[model][iid], world.masks[iid])
    prompted = [i for i in items if i.user_prompt]
    with art.timer("clip_s"):
        if prompted:
            scorer = am.ClipScorer(
                prof.resolve_model("clip", zoo_dir_for(prof, zoo)), prof.models.clip.arch, device=device
            )
            for model in images:
                scores = am.clip_scores(
                    scorer, [images[model][i.item_id] for i in prompted], [i.user_prompt for i in prompted]
                )
                for item, s in zip(prompted, scores, strict=True):
                    rows[(model, item.item_id)]["clip_score"] = s
    texts = [(i, expected_text(i.user_prompt)) for i in items if i.group == FILL]
    texts = [(i, t) for i, t in texts if t]
    with art.timer("ocr_s"):
        if texts:
            reader = TextReader(cfg.ocr)
            for model in images:
                for item, want in texts:
                    s = reader.score(images[model][item.item_id], world.masks[item.item_id], want)
                    rows[(model, item.item_id)].update(
                        {
                            "ocr_read": s.read,
                            "ocr_expected": s.expected,
                            "ocr_sentence_accuracy": float(s.exact),
                            "ocr_edit_distance": s.distance,
                        }
                    )
    art.counts["n_text_items"] = len(texts)
    art.counts["n_prompted_items"] = len(prompted)
    return list(rows.values())


def _result_index(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["item_id"]): r for r in results}


# ---- 8. human GSB -----------------------------------------------------------------------------


def human_gsb(
    art: ArtifactWriter,
    items: Sequence[BenchmarkItem],
    images: dict[str, dict[str, np.ndarray]],
    world: World,
    oracle: dict[tuple[str, str], Any],
    cfg: EvaluateConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build the A/B project; with ``simulate`` answer and import it now. Returns (rows, info)."""
    project, assignment = human_ab.build_project(art, items, images, world.sources, world.masks, cfg)
    info: dict[str, Any] = {
        "mode": cfg.human,
        "model": cfg.human_model,
        "url": project["url"],
        "projects": {name: p["project_id"] for name, p in project["projects"].items()},
        "n_tasks": project["n_tasks"],
        "annotators": cfg.annotators,
    }
    if cfg.human == "export":
        info["status"] = "awaiting answers: run `onereward evaluate-human` when the annotators are done"
        return [], info
    counts = human_ab.simulate(art, project, assignment, oracle, cfg)
    answers = human_ab.collect(art, art.path / human_ab.HUMAN_DIR, project)
    info.update(human_info(answers, counts))
    return human_ab.human_judgements(items, answers, assignment, cfg.human_model), info


def human_info(answers: Any, simulated: dict[str, int] | None = None) -> dict[str, Any]:
    """What the report and metrics.json say about the A/B answers."""
    info: dict[str, Any] = {
        "status": "answered",
        "n_tasks_answered": len(answers.choices),
        "n_invalid": len(answers.invalid),
        "agreement": answers.agreement,
        "n_split_as_same": int(answers.counts.get("split_as_same", 0)),
    }
    if simulated is not None:
        info["simulated_answers"] = {k: int(v) for k, v in simulated.items()}
    return info


# ---- 9. tables and metrics --------------------------------------------------------------------


def write_tables(
    root: Path, bench: Benchmark, results: list[dict[str, Any]], judgements: list[dict[str, Any]], seed: int
) -> None:
    item_rows = [{k: i.row.get(k) for k in EVAL_ITEMS_SCHEMA.names} for i in bench.items]
    write_table(root / "items.parquet", item_rows, schema=EVAL_ITEMS_SCHEMA)
    write_table(
        root / "results.parquet",
        [{k: r.get(k) for k in EVAL_RESULTS_SCHEMA.names} for r in results],
        schema=EVAL_RESULTS_SCHEMA,
    )
    write_table(
        root / "judgements.parquet",
        [{k: j.get(k) for k in JUDGEMENTS_SCHEMA.names} for j in judgements],
        schema=JUDGEMENTS_SCHEMA,
    )


def primary_model(models: Sequence[str]) -> str | None:
    """The model the headline compares with the base: the policy (else the first non-base model)."""
    rest = [m for m in models if m != BASE]
    return "policy" if "policy" in rest else (rest[0] if rest else None)


def build_metrics(
    bench: Benchmark,
    models: list[str],
    results: list[dict[str, Any]],
    judgements: list[dict[str, Any]],
    inputs: Inputs,
    human: dict[str, Any] | None,
    timings: dict[str, float],
    gen_seconds: dict[str, float],
) -> dict[str, Any]:
    """metrics.json: the summary of :mod:`~onereward.evaluate.summary` plus the benchmark, the
    human project and the seconds per evaluated item and model of each judge and metric."""
    reward_judge = (
        judges.HELD_OUT_REWARD_MODEL if judges.HELD_OUT_REWARD_MODEL in inputs.reward_models else
        judges.REWARD_MODEL if judges.REWARD_MODEL in inputs.reward_models else None
    )  # fmt: skip
    primary = primary_model(models)
    metrics = summary.summarise(results, judgements, models, primary=primary, reward_judge=reward_judge)
    n_items, n_models = len(bench.items), len(models)
    n_text = sum(1 for r in results if r.get("ocr_expected") is not None) // max(1, n_models)
    n_prompted = sum(1 for r in results if r.get("clip_score") is not None) // max(1, n_models)
    pairs = n_items * max(0, n_models - 1)

    def per(key: str, units: int) -> float | None:
        return round(timings[key] / units, 5) if key in timings and units else None

    seconds = {
        "generate": round(sum(gen_seconds.values()) / max(1, n_items * n_models), 5),
        "reward_model": per("reward_model_s", pairs),
        "held_out_reward_model": per("held_out_reward_model_s", pairs),
        "oracle": per("oracle_s", n_items * n_models),
        "human": per("human_s", n_items),
        "background": per("background_s", n_items * n_models),
        "seam": per("seam_s", n_items * n_models),
        "clip_score": per("clip_s", n_prompted * n_models),
        "ocr": per("ocr_s", n_text * n_models),
    }
    metrics.update(
        {
            "models": models,
            "primary": primary,
            "judges": sorted({j["judge"] for j in judgements}),
            "n_items": n_items,
            "items_per_group": bench.chosen,
            "benchmark": {
                "wanted": bench.wanted,
                "available": bench.available,
                "chosen": bench.chosen,
                "shortfall": bench.shortfall,
                "n_excluded": bench.n_excluded,
                "n_skipped": bench.n_skipped,
                "rule": SELECTION_RULE,
            },
            "seconds_per_item_model": {k: v for k, v in seconds.items() if v is not None},
            "generate_seconds": gen_seconds,
        }
    )
    if human is not None:
        metrics["human"] = human
    return metrics


# ---- evaluate-human: the people's answers, later --------------------------------------------


def import_human(evaluation: str, out: str) -> dict[str, Any]:
    """Read the answers of an evaluation's A/B project (``--human export``) into a new evaluation
    artifact ``out``: the same tables and images plus the human judgements, metrics and reports."""
    import shutil

    manifest = read_artifact(evaluation, kind="evaluation", what="--evaluation")
    root = Path(evaluation)
    project_path = root / human_ab.HUMAN_DIR / "project.json"
    if not project_path.is_file():
        raise InputError(
            f"--evaluation: {project_path} is missing (the evaluation built no A/B project; rerun with --human)"
        )
    project = json.loads(project_path.read_text())
    assignment = human_ab.read_assignment(root)
    old = manifest.metrics()
    item_rows = read_table(
        root / "items.parquet", required=("item_id", "group"), what="--evaluation items.parquet"
    )
    results = read_table(root / "results.parquet", what="--evaluation results.parquet")
    judgements = [
        j
        for j in read_table(root / "judgements.parquet", what="--evaluation judgements.parquet")
        if j["judge"] != judges.HUMAN
    ]
    with ArtifactWriter(
        out,
        kind="evaluation",
        stage="evaluate_human",
        parameters={"evaluation": str(evaluation)},
        inputs=[manifest],
    ) as art:
        for src in root.rglob("*"):
            rel = src.relative_to(root)
            if src.is_file() and rel.parts[0] not in ("manifest.json", "metrics.json"):
                (art.path / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, art.path / rel)
        answers = human_ab.collect(art, root / human_ab.HUMAN_DIR, project)
        items = [BenchmarkItem(r, r["group"]) for r in item_rows]
        judgements += human_ab.human_judgements(items, answers, assignment, project["model"])
        write_table(
            art.path / "judgements.parquet",
            [{k: j.get(k) for k in JUDGEMENTS_SCHEMA.names} for j in judgements],
            schema=JUDGEMENTS_SCHEMA,
        )
        models = list(old.get("models") or sorted({r["model"] for r in results}))
        metrics = dict(old)
        metrics.update(
            summary.summarise(
                results, judgements, models, primary=old.get("primary"), reward_judge=old.get("gsb_judge")
            )
        )
        metrics["judges"] = sorted({j["judge"] for j in judgements})
        metrics["human"] = {**(old.get("human") or {}), **human_info(answers)}
        art.metrics.update(metrics)
        art.counts.update({"n_items": len(items), "n_judgements": len(judgements)})
        report_items = int(manifest.parameters.get("report_items", EvaluateConfig().report_items))
        write_reports(art.path, metrics, item_rows, models, _result_index(results), report_items)
    return dict(art.metrics)
