"""train_policy: seconds per iteration of refl / refl_dynamic / nft with and without the reference
cache, and their reward and oracle curves on held-out probe conditions (tiny profile, CPU).

The world (unless ``--subset`` and ``--reward-model`` are given): a synthetic pool, N candidates
per item from the profile's base generator (generate_candidates), noise-free oracle preferences
over those candidates, and a reward model trained on them (train_reward_model): a reward model
trained on the generator's own candidates, as the quality target asks. Every policy run then
trains on the pool's conditions (probe items held out) and reports its metrics; the table shows
s/iteration (reference part and policy part), P(Yes) of the policy against the base on the
probe set (first -> last evaluation), the oracle (normalised) and the oracle win rate over the
base pooled over dimensions with its Wilson 95% interval.

``--gpu-only`` instead times one ReFL iteration at full size on CUDA: a FLUX.1-Fill-dev-shaped
transformer (random bf16 weights, LoRA, gradient checkpointing, bf16 autocast) and a
Qwen2.5-VL-7B-shaped reward model at 512 px, with and without the reference cache; FLOPs are
counted with torch's FlopCounterMode and the model FLOP utilisation is FLOPs / (seconds x peak)
with the bf16 dense peak of an H100 / H200 (989 TFLOPS). ``--gpu-smoke`` runs that code path at
tiny depth on the CPU (it checks the code, not the figures). ``benchmarks/gpu_run.sh policy``
runs ``--gpu-only``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402

PEAK_BF16_TFLOPS = 989.0  # H100 SXM / H200 dense bf16


# ---- the tiny world -----------------------------------------------------------------------------


def build_world(
    root: Path,
    *,
    items: int,
    candidates: int,
    reward_steps: int,
    zoo: str | None,
    seed: int,
    profile: str = "tiny",
) -> dict[str, str]:
    """Pool -> base candidates -> oracle preferences -> reward model trained on them."""
    from onereward.generate.stage import run as generate
    from onereward.reward.oracle_preferences import write_oracle_preferences
    from onereward.reward.stage import run as train_reward
    from onereward.synth.stage import run as synth

    t0 = time.perf_counter()
    synth(str(root / "pool"), items=items, seed=seed)
    generate(
        str(root / "pool"),
        str(root / "candidates"),
        profile=profile,
        zoo=zoo,
        num_candidates=candidates,
        seed=seed,
    )
    write_oracle_preferences(root / "candidates", root / "prefs")
    rm = train_reward(
        str(root / "prefs"), str(root / "rm"), profile=profile, zoo=zoo, max_steps=reward_steps, seed=seed
    )
    print(
        f"world: {items} items, {candidates} candidates each, reward model mean accuracy "
        f"{rm['mean_accuracy']:.3f} on held-out pairs ({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
    return {"subset": str(root / "pool"), "reward_model": str(root / "rm"), "reward_accuracy": rm["accuracy"],
            "reward_mean_accuracy": rm["mean_accuracy"]}  # fmt: skip


RUNS: dict[str, dict[str, Any]] = {
    # name: (algorithm, settings, use the reference cache)
    "refl": {"algorithm": "refl", "cache": False},
    "refl+cache": {"algorithm": "refl", "cache": True},
    "refl fresh noise": {"algorithm": "refl", "cache": False, "reference_seeds": 0},
    "refl_dynamic": {"algorithm": "refl_dynamic", "cache": False},
    "nft": {"algorithm": "nft", "cache": False},
    "nft+cache": {"algorithm": "nft", "cache": True},
}


def policy_runs(world: dict[str, Any], root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from onereward.policy.references import run_references
    from onereward.policy.stage import run

    settings = {
        "max_steps": args.steps,
        "eval_every": args.eval_every,
        "threads": args.threads,
        "seed": args.seed,
        "gate_override": args.gate_override,
    }
    settings.update(json.loads(args.settings))
    names = args.runs.split(",")
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(
            f"--runs: unknown run(s) {', '.join(unknown)}; expected names from {', '.join(RUNS)}"
        )
    refs = root / "references"
    t0 = time.perf_counter()
    if any(RUNS[n]["cache"] for n in names):  # only runs with the cache read the references
        run_references(
            world["subset"],
            str(refs),
            profile=args.profile,
            zoo=args.zoo,
            **{k: settings[k] for k in ("seed",) if k in settings},
        )
    refs_s = time.perf_counter() - t0
    rows = []
    seeds = run_seeds(args)
    for name, seed in [(n, s) for n in names for s in seeds]:
        spec = dict(RUNS[name])
        algorithm, cache = spec.pop("algorithm"), spec.pop("cache")
        out = root / f"policy-{name.replace(' ', '_').replace('+', '_')}"
        if len(seeds) > 1:
            out = out.with_name(f"{out.name}-seed{seed}")
        t0 = time.perf_counter()
        metrics = run(
            world["subset"], world["reward_model"], str(out), profile=args.profile, zoo=args.zoo, references=str(refs) if cache else None,
            algorithm=algorithm, **{**settings, **spec, "seed": seed},
        )  # fmt: skip
        wall = time.perf_counter() - t0
        curves = json.loads((out / "curves.json").read_text())
        evals = [e for e in curves["evals"] if e["weights"] == "policy"]
        pooled = metrics.get("oracle_win_rate", {}).get("pooled", {})
        row = {
            "run": name if len(seeds) == 1 else f"{name} seed {seed}",
            "name": name,
            "seed": seed,
            "algorithm": algorithm,
            "reference_cache": cache,
            "seconds_per_iteration": metrics["seconds_per_iteration"],
            "reference_seconds_per_iteration": metrics["reference_seconds_per_iteration"],
            "policy_seconds_per_iteration": metrics["policy_seconds_per_iteration"],
            "samples_per_second": metrics["samples_per_second"],
            "wall_seconds": round(wall, 1),
            "reward_curve": [(e["step"], round(e["p_yes_mean"], 4)) for e in evals],
            "oracle_curve": [(e["step"], round(e["oracle_mean"], 4)) for e in evals],
            "reward_first": metrics["reward_first"],
            "reward_last": metrics["reward_last"],
            "oracle_first": metrics["oracle_first"],
            "oracle_last": metrics["oracle_last"],
            "oracle_base": metrics["oracle_base"],
            "win_rate": pooled,
            "win_rate_cells": metrics.get("oracle_win_rate", {}).get("cells"),
            "oracle_falls": metrics["oracle_falls"],
            "oracle_losing": metrics.get("oracle_losing", []),
            "hacking_flags": metrics["n_hacking_flags"],
            "outside_mask_change": [metrics["outside_mask_change_base"], metrics["outside_mask_change_last"]],
        }
        rows.append(row)
        w = pooled.get("all", {})
        print(
            f"{name}: {row['seconds_per_iteration']:.3f} s/it (reference {row['reference_seconds_per_iteration']:.3f}), "
            f"P(Yes) {row['reward_first']:.3f} -> {row['reward_last']:.3f}, oracle {row['oracle_first']:.3f} -> "
            f"{row['oracle_last']:.3f}, win rate {w.get('rate')} [{w.get('low', 0):.3f}, {w.get('high', 1):.3f}]",
            flush=True,
        )
    rows.append({"run": "policy_references", "wall_seconds": round(refs_s, 1)})
    return rows


def run_seeds(args: argparse.Namespace) -> list[int]:
    """``--seeds`` (every run once per seed: training draws and the probe split) or ``--seed``."""
    if not args.seeds:
        return [args.seed]
    try:
        return [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None


def pooled_over_seeds(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{run name: {"task/dimension" or "all": {wins, losses, ties, rate, low, high, seeds}}}: the
    verdicts of every seed of a run added up, with the Wilson 95% interval of the sum."""
    from onereward.stats import wilson_interval

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        for task, dims in (r["win_rate_cells"] or {}).items():
            for dim, w in dims.items():
                for key in (f"{task}/{dim}", "all"):
                    c = out.setdefault(r["name"], {}).setdefault(
                        key, {"wins": 0, "losses": 0, "ties": 0, "seeds": 0}
                    )
                    for k in ("wins", "losses", "ties"):
                        c[k] += w[k]
                    c["seeds"] += key != "all"
    for cells in out.values():
        for c in cells.values():
            n = c["wins"] + c["losses"]
            c["rate"] = c["wins"] / n if n else None
            c["low"], c["high"] = wilson_interval(c["wins"], n) if n else (0.0, 1.0)
    return out


def tiny(args: argparse.Namespace) -> dict[str, Any]:
    import os

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-policy-"))
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    if args.subset and args.reward_model:
        world: dict[str, Any] = {"subset": args.subset, "reward_model": args.reward_model}
    else:
        world = build_world(
            root / "world", items=args.items, candidates=args.candidates, reward_steps=args.reward_steps,
            zoo=args.zoo, seed=args.seed, profile=args.profile,
        )  # fmt: skip
    rows = policy_runs(world, root, args)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    runs = [r for r in rows if "algorithm" in r]
    print_table(
        f"train_policy on the tiny profile, {args.steps} steps, {args.threads} thread(s) "
        f"(load average {' '.join(load_before)} -> {' '.join(load_after)} on {os.cpu_count()} CPUs)",
        [
            "run",
            "s/it",
            "ref s/it",
            "policy s/it",
            "P(Yes) first",
            "last",
            "oracle base",
            "first",
            "last",
            "win rate",
            "95% interval",
            "falls",
            "lost",
            "flags",
        ],  # fmt: skip
        [
            [
                r["run"],
                r["seconds_per_iteration"],
                r["reference_seconds_per_iteration"],
                r["policy_seconds_per_iteration"],
                r["reward_first"],
                r["reward_last"],
                r["oracle_base"],
                r["oracle_first"],
                r["oracle_last"],
                r["win_rate"].get("all", {}).get("rate"),
                f"[{r['win_rate'].get('all', {}).get('low', 0):.3f}, {r['win_rate'].get('all', {}).get('high', 1):.3f}]",
                len(r["oracle_falls"]),
                len(r["oracle_losing"]),
                r["hacking_flags"],
            ]  # fmt: skip
            for r in runs
        ],
    )
    # The target is per task x dimension: every cell's oracle win rate (wins / losses / ties).
    cells = sorted({(t, d) for r in runs for t, dims in (r["win_rate_cells"] or {}).items() for d in dims})
    if cells:

        def cell(r: dict[str, Any], task: str, dim: str) -> str:
            w = (r["win_rate_cells"] or {}).get(task, {}).get(dim)
            if not w:
                return "-"
            rate = "-" if w["rate"] is None else f"{w['rate']:.2f}"
            return f"{rate} ({w['wins']}/{w['losses']}/{w['ties']})"

        print_table(
            "oracle win rate over the base per task x dimension: rate (wins/losses/ties)",
            ["task/dimension", *(r["run"] for r in runs)],
            [[f"{t}/{d}", *(cell(r, t, d) for r in runs)] for t, d in cells],
        )
    pooled = pooled_over_seeds(runs) if len(run_seeds(args)) > 1 else {}
    if pooled:

        def summed(c: dict[str, Any]) -> str:
            rate = "-" if c["rate"] is None else f"{c['rate']:.2f}"
            return f"{rate} [{c['low']:.2f}, {c['high']:.2f}] ({c['wins']}/{c['losses']}/{c['ties']})"

        keys = [f"{t}/{d}" for t, d in cells] + ["all"]
        print_table(
            f"oracle win rate summed over seeds {args.seeds}: rate [95% interval] (wins/losses/ties)",
            ["task/dimension", *pooled],
            [[k, *(summed(pooled[n][k]) if k in pooled[n] else "-" for n in pooled)] for k in keys],
        )
    result = {
        "tiny": {
            "steps": args.steps,
            "threads": args.threads,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "world": {k: v for k, v in world.items() if k not in ("subset", "reward_model")},
            "settings": json.loads(args.settings),
            "runs": rows,
            "seeds": run_seeds(args),
            "win_rate_over_seeds": pooled,
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    }
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return result


# ---- one ReFL iteration at full size ------------------------------------------------------------


def _condition(size: int, task: str, seed: int):
    import numpy as np

    from onereward.generate.sampler import ItemCondition
    from onereward.policy.conditions import Condition

    rng = np.random.default_rng(seed)
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    prompt = "a red circle" if task != "object_removal" else None
    return Condition(
        f"{task}-{seed}", task, prompt, image, mask, ItemCondition(f"{task}-{seed}", image, mask)
    )


def refl_iteration(*, smoke: bool, size: int, iterations: int, lora_rank: int) -> dict[str, Any]:
    """Time ReFL iterations (LoRA, bf16 autocast, checkpointing) with a full-size FLUX-Fill and a
    7B-shaped reward model (``smoke``: the same code at depth 1 and real widths on the CPU)."""
    from accelerate import Accelerator
    from torch.utils.flop_counter import FlopCounterMode

    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.models import flux_fill, reward_vlm
    from onereward.policy.conditions import ConditionSet
    from onereward.policy.config import PolicyConfig
    from onereward.policy.model import PolicyModel
    from onereward.policy.refl import Refl
    from onereward.policy.rewards import PairwiseReward
    from onereward.policy.rollouts import Rollouts
    from onereward.reward.scoring import RewardScorer
    from onereward.reward.template import default_template

    cuda = torch.cuda.is_available() and not smoke
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    depth = {"num_layers": 19, "num_single_layers": 38, "clip_layers": 12, "t5_layers": 24} if not smoke else {
        "num_layers": 1, "num_single_layers": 1, "clip_layers": 1, "t5_layers": 1, "t5_vocab_size": 1024,
        "vae_layers_per_block": 1,
    }  # fmt: skip
    t0 = time.perf_counter()
    pipe = flux_fill.pipeline_from_components(
        flux_fill.real_shape_components(dtype=dtype, device=device, **depth)
    )
    pipe.set_progress_bar_config(disable=True)
    tokenizer = reward_vlm.build_tokenizer()
    config = reward_vlm.real_shape_config(
        text_layers=28 if not smoke else 1, vision_depth=32 if not smoke else 1, tokenizer=tokenizer
    )
    if not smoke:
        config.text_config.vocab_size = reward_vlm.published_config()["vocab_size"]
        config.vision_config.fullatt_block_indexes = [7, 15, 23, 31]
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device(device):
        vlm = (
            Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval().requires_grad_(False)
        )
    processor = reward_vlm.build_processor(tokenizer, min_pixels=size * size, max_pixels=size * size)
    yes, no = tokenizer.convert_tokens_to_ids([reward_vlm.YES_TOKEN, reward_vlm.NO_TOKEN])
    scorer = RewardScorer(reward_vlm.RewardVLM(vlm, processor, yes, no, "7b-random"), default_template())
    build_s = time.perf_counter() - t0
    cfg = PolicyConfig(
        rollout_steps=28 if not smoke else 4, t1=14 if not smoke else 1, t2=27 if not smoke else 3, batch_size=1,
        micro_batch_size=1, lora_rank=lora_rank, gradient_checkpointing=True, max_sequence_length=512 if not smoke else 32,
        mixed_precision="bf16" if cuda else "no", dtype="bfloat16" if cuda else "float32", guidance=30.0,
        task_probabilities="image_fill=1", reference_seeds=0,
    )  # fmt: skip
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not cuda)
    model = PolicyModel(pipe.transformer, finetune="lora", lora_rank=lora_rank, lora_targets=cfg.targets)
    pipe.transformer.enable_gradient_checkpointing()
    pipe.vae.enable_gradient_checkpointing()
    sampler = FluxFillSampler(pipe, max_sequence_length=cfg.max_sequence_length, batch_size=1)
    rollouts = Rollouts(sampler, model, cfg_scale=1.0, guidance=cfg.guidance, feather=0)
    conds = [_condition(size, "image_fill", k) for k in range(4)]
    cset = ConditionSet(
        manifest=None, train={"image_fill": conds}, probe=[], probabilities={"image_fill": 1.0}
    )  # type: ignore[arg-type]
    refl = Refl(cfg, cset, rollouts, PairwiseReward(scorer), accelerator)
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.wrapped, optimizer = accelerator.prepare(model.transformer, optimizer)

    class Cached:
        """A reference cache holding the reference images of the draws (the iteration's other half)."""

        def __init__(self, images: dict[tuple[str, int], Any]) -> None:
            self.images = images

        def get(self, item_id: str, seed: int):
            return self.images[(item_id, seed)]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def one(step: int) -> dict[str, float]:
        sync()
        t = time.perf_counter()
        stats = refl.step(step)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.ema_update("ema", 0.999)
        sync()
        return {
            "seconds": time.perf_counter() - t,
            "reference": stats.reference_seconds,
            "policy": stats.policy_seconds,
        }

    out: dict[str, Any] = {"build_seconds": round(build_s, 1), "size_px": size, "device": torch.cuda.get_device_name() if cuda else "cpu",
                           "transformer_params_b": round(sum(p.numel() for p in pipe.transformer.parameters() if p.requires_grad is False) / 1e9, 2),
                           "trainable_params_m": round(sum(p.numel() for p in params) / 1e6, 2), "rollout_steps": cfg.rollout_steps}  # fmt: skip
    for mode in ("no cache", "cache"):
        if mode == "cache":  # the cached references of the next draws, made beforehand (not timed)
            images = {}
            for step in range(1, 2 + iterations):
                samples, ref_seeds, _, _ = refl.draws(step)
                ref = refl.reference_images(samples, ref_seeds)
                for c, s, im in zip(samples, ref_seeds, ref, strict=True):
                    images[(c.item_id, s)] = (
                        (im.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
                    )
            refl.references = Cached(images)  # type: ignore[assignment]
        one(0 if mode == "no cache" else 1)  # warm-up
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with FlopCounterMode(display=False) as counter:
            one(1 if mode == "no cache" else 2)
        flops = counter.get_total_flops()
        times = [one(s) for s in range(2, 2 + iterations)] if iterations else []
        secs = sum(t["seconds"] for t in times) / max(1, len(times))
        row = {
            "seconds_per_iteration": round(secs, 3),
            "reference_seconds": round(sum(t["reference"] for t in times) / max(1, len(times)), 3),
            "policy_seconds": round(sum(t["policy"] for t in times) / max(1, len(times)), 3),
            "pflop_per_iteration": round(flops / 1e15, 4),
            "mfu": round(flops / (secs * PEAK_BF16_TFLOPS * 1e12), 4) if secs > 0 and cuda else None,
            "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        }
        out[mode] = row
        print(f"ReFL iteration ({mode}): {row}", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48, help="pool items of the built world")
    parser.add_argument("--candidates", type=int, default=4, help="candidates per item for the reward model")
    parser.add_argument("--reward-steps", type=int, default=400, help="reward model SFT steps")
    parser.add_argument("--steps", type=int, default=60, help="policy steps per run")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds: every run once per seed (training draws and probe split), the "
        "oracle verdicts also summed over the seeds (one run's cells move with its seed)",
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated runs out of {', '.join(RUNS)}"
    )
    parser.add_argument(
        "--settings", default="{}", help="JSON of further PolicyConfig settings for every run"
    )
    parser.add_argument(
        "--subset", default=None, help="use this subset (or pool) instead of building the world"
    )
    parser.add_argument("--reward-model", default=None, help="use this reward model instead of training one")
    parser.add_argument("--zoo", default=None, help="tiny zoo artifact (default: the cached zoo)")
    parser.add_argument(
        "--profile", default="tiny", help="profile name or YAML path (a generator of your own)"
    )
    parser.add_argument(
        "--gate-override",
        action="store_true",
        help="train on a reward model that fails the gate (timings only)",
    )
    parser.add_argument("--workdir", default=None, help="keep the world and the policies here")
    parser.add_argument("--gpu-only", action="store_true", help="only the full-size ReFL iteration on CUDA")
    parser.add_argument(
        "--gpu-smoke", action="store_true", help="the full-size code path at depth 1 on the CPU"
    )
    parser.add_argument("--gpu-size", type=int, default=512)
    parser.add_argument("--gpu-iterations", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=64)
    args = parser.parse_args(argv)
    unknown = [n for n in args.runs.split(",") if n not in RUNS]
    if unknown:  # before the world is built
        parser.error(f"--runs: unknown run(s) {', '.join(unknown)}; expected names from {', '.join(RUNS)}")
    if args.gpu_only or args.gpu_smoke:
        if args.gpu_only and not torch.cuda.is_available():
            print("full-size ReFL iteration: skipped (CUDA not available)", flush=True)
            return {"gpu": "skipped: CUDA not available"}
        size = args.gpu_size if args.gpu_only else 64
        result = {"gpu" if args.gpu_only else "gpu_smoke": refl_iteration(
            smoke=args.gpu_smoke, size=size, iterations=args.gpu_iterations, lora_rank=args.lora_rank
        )}  # fmt: skip
        write_results("policy_gpu" if args.gpu_only else "policy_gpu_smoke", result)
        return result
    result = tiny(args)
    write_results("policy", result, also_to=Path(args.workdir) if args.workdir else None)
    return result


if __name__ == "__main__":
    main()
