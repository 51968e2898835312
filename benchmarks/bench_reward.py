"""Benchmark of train_reward_model: the tiny profile's quality target and throughputs.

1. Quality: synthetic pool -> synthetic candidates -> export (offline) -> simulated annotators
   (noise-free oracle) -> import -> ``onereward.reward.stage.run`` with the tiny profile. Prints the
   test accuracy per task x dimension (Table 1 shape), the mean (target >= 0.75), order
   consistency, ECE, wall and CPU seconds of training.
2. Throughput (tiny): pairs scored per second without gradients, P(Yes) with gradients to the pixels,
   training steps per second.
3. GPU only (skipped without CUDA): the 7B architecture (published config, random weights, bf16):
   pairs scored per second without and with gradients to the pixels, and peak memory
   (``--gpu-only`` runs just this part; ``benchmarks/gpu_run.sh`` runs it on a bare CUDA machine).

``OMP_NUM_THREADS=1 python benchmarks/bench_reward.py [--items 2000] [--steps N] [--skip-quality]``
(one intra-op thread: the tiny model gains nothing from more, and on a shared 2-core machine a
second thread only spins; measured 2026-11-23: 2000 items -> 4696 train / 1167 test pairs, 2000
steps in 190 s wall / 142 s CPU, mean test accuracy 0.762, order consistency 0.955, ECE 0.016).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, print_table, write_results  # noqa: E402


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_preferences(root: Path, n_items: int, seed: int) -> Path:
    """The offline annotation chain on the synthetic world (falls back to the oracle helper)."""
    from onereward.synth.candidates import make_candidates
    from onereward.synth.stage import make_pool

    make_pool(root / "pool", n_items, seed=seed)
    make_candidates(root / "pool", root / "candidates", per_item=4, seed=seed)
    try:
        from onereward.annotate.export import run_export
        from onereward.annotate.importer import run_import
        from onereward.annotate.simulate import run_simulate
    except ImportError:
        from onereward.reward.oracle_preferences import write_oracle_preferences

        write_oracle_preferences(root / "candidates", root / "preferences")
        return root / "preferences"
    run_export(str(root / "candidates"), str(root / "project"), offline=True)
    run_simulate(str(root / "project"), str(root / "annotations"), noise=0.0, seed=seed)
    run_import(str(root / "annotations"), str(root / "preferences"))
    return root / "preferences"


def quality(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from onereward import tasks
    from onereward.models import reward_vlm
    from onereward.reward import stage

    t0 = time.perf_counter()
    prefs = build_preferences(root, args.items, args.seed)
    data_s = time.perf_counter() - t0
    # the tiny profile with its reward VLM as a local folder (no need to build the whole zoo)
    reward_vlm.build_tiny(root / "reward_vlm", seed=0)
    text = resources.files("onereward.profiles").joinpath("tiny.yaml").read_text()
    profile = root / "profile.yaml"
    profile.write_text(
        text.replace(
            'reward_model: {ref: "zoo:reward_vlm"}', f'reward_model: {{ref: "{root / "reward_vlm"}"}}'
        )
    )
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    metrics = stage.run(
        str(prefs), str(root / "reward_model"), profile=str(profile), max_steps=args.steps, seed=args.seed
    )
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    rows = []
    for task in tasks.TASKS:
        for dim, value in sorted(metrics["accuracy"].get(task, {}).items()):
            rows.append([task, dim, metrics["n_test_pairs"][task][dim], round(value, 3)])
    rows.append(["mean", "", metrics["n_test_pair_total"], round(metrics["mean_accuracy"], 3)])
    print_table(
        "reward model test accuracy (tiny profile, oracle preferences)",
        ["task", "dimension", "test pairs", "accuracy"],
        rows,
    )
    print_table(
        "reward model training",
        ["figure", "value"],
        [
            ["train pairs", metrics["n_train_pairs"]],
            ["steps", metrics["train_steps"]],
            ["train steps/s", round(metrics["train_steps_per_second"], 2)],
            ["stage wall s", round(wall, 1)],
            ["stage CPU s", round(cpu, 1)],
            ["order consistency", round(metrics["order_consistency"], 3)],
            ["ECE", round(metrics["ece"], 3)],
            ["data prep s", round(data_s, 1)],
        ],
    )
    return {
        "accuracy": metrics["accuracy"],
        "mean_accuracy": metrics["mean_accuracy"],
        "target_mean_accuracy": 0.75,
        "order_consistency": metrics["order_consistency"],
        "ece": metrics["ece"],
        "n_train_pairs": metrics["n_train_pairs"],
        "n_test_pairs": metrics["n_test_pair_total"],
        "train_steps": metrics["train_steps"],
        "train_steps_per_second": metrics["train_steps_per_second"],
        "stage_wall_s": wall,
        "stage_cpu_s": cpu,
        "test_pairs_per_second": metrics["test_pairs_per_second"],
    }


def throughput(root: Path, n_pairs: int = 128) -> dict[str, Any]:
    import numpy as np
    import torch

    from onereward.models import reward_vlm
    from onereward.reward.scoring import RewardScorer

    folder = root / "tput_vlm"
    reward_vlm.build_tiny(folder, seed=0)
    scorer = RewardScorer.load(folder)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (n_pairs, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (n_pairs, 64, 64, 3), dtype=np.uint8)
    tasks_, dims, prompts = ["image_fill"] * n_pairs, ["aesthetics"] * n_pairs, ["a red circle"] * n_pairs
    scorer.p_yes(list(a[:8]), list(b[:8]), tasks_[:8], dims[:8], prompts[:8])  # warm-up
    t0 = time.perf_counter()
    scorer.p_yes(list(a), list(b), tasks_, dims, prompts, batch_size=32)
    no_grad = n_pairs / (time.perf_counter() - t0)
    x = torch.from_numpy(a[:16]).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    y = torch.from_numpy(b[:16]).permute(0, 3, 1, 2).float().div(255)
    t0 = time.perf_counter()
    reps = 4
    for _ in range(reps):
        scorer.p_yes(x, y, tasks_[:16], dims[:16], prompts[:16], grad=True).sum().backward()
    with_grad = reps * 16 / (time.perf_counter() - t0)
    print_table(
        "tiny reward VLM throughput (CPU, 64 px)",
        ["path", "pairs/s"],
        [
            ["no grad (processor, batch 32)", round(no_grad, 1)],
            ["grad to pixels (batch 16, fwd+bwd)", round(with_grad, 1)],
        ],
    )
    return {"tiny_pairs_per_second_no_grad": no_grad, "tiny_pairs_per_second_grad": with_grad}


def gpu_7b(
    n_pairs: int = 32,
    image_size: int = 512,
    *,
    device: str = "cuda",
    text_layers: int = 28,
    vision_depth: int = 32,
    grad_pairs: int = 2,
    grad_reps: int = 3,
) -> dict[str, Any]:
    """The published 7B architecture in bf16 with random weights (needs CUDA).

    The model is created directly on ``device`` in bf16 (``_from_config``: no float32 copy, no
    CPU init of 8B parameters). Figures: pairs/s without gradients (batch 8, the tensor path),
    pairs/s of the differentiable path (forward + backward to the pixels, ``grad_pairs`` pairs per
    pass, the RL/ReFL use), and the peak GPU memory over both (weights included, model build
    excluded). ``device``, ``text_layers`` and ``vision_depth`` exist for a CPU smoke test of this
    code path; the benchmark uses the published depths on CUDA.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from onereward.models import reward_vlm
    from onereward.reward.scoring import RewardScorer
    from onereward.reward.template import default_template

    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("GPU benchmark skipped: no CUDA device", flush=True)
        return {"gpu": None}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    tokenizer = reward_vlm.build_tokenizer()
    config = reward_vlm.real_shape_config(
        text_layers=text_layers, vision_depth=vision_depth, tokenizer=tokenizer
    )
    config.text_config.vocab_size = reward_vlm.published_config()["vocab_size"]  # full 152064-row head
    if vision_depth == 32:
        config.vision_config.fullatt_block_indexes = [7, 15, 23, 31]  # the published ones
    t0 = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model = model.eval().requires_grad_(False)
    sync()
    build_s = time.perf_counter() - t0
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None
    print(
        f"built Qwen2.5-VL-7B-shaped model on {device} in {build_s:.1f}s: {params_b:.2f}B parameters "
        f"({model.dtype}), attention {model.config._attn_implementation}",
        flush=True,
    )
    processor = reward_vlm.build_processor(
        tokenizer, min_pixels=image_size * image_size, max_pixels=image_size * image_size
    )
    yes, no = tokenizer.convert_tokens_to_ids([reward_vlm.YES_TOKEN, reward_vlm.NO_TOKEN])
    scorer = RewardScorer(reward_vlm.RewardVLM(model, processor, yes, no, "7b-random"), default_template())
    x = torch.rand(n_pairs, 3, image_size, image_size, device=device)
    y = torch.rand(n_pairs, 3, image_size, image_size, device=device)
    t_, d_, p_ = ["image_fill"] * n_pairs, ["text_alignment"] * n_pairs, ["a red circle"] * n_pairs
    seq_len = int(scorer.prepare(x[:1], y[:1], t_[:1], d_[:1], p_[:1])["input_ids"].shape[1])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    scorer.p_yes(x[:8], y[:8], t_[:8], d_[:8], p_[:8], batch_size=8)  # warm-up
    sync()
    t0 = time.perf_counter()
    scorer.p_yes(x, y, t_, d_, p_, batch_size=8)
    sync()
    rate = n_pairs / (time.perf_counter() - t0)
    peak_no_grad = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    g = grad_pairs

    def grad_pass() -> float:
        xg = x[:g].clone().requires_grad_(True)
        scorer.p_yes(xg, y[:g], t_[:g], d_[:g], p_[:g], grad=True).sum().backward()
        return float(xg.grad.abs().sum())

    grad_pass()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(grad_reps):
        grad_pass()
    sync()
    grad_rate = grad_reps * g / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    name = torch.cuda.get_device_name() if cuda else device

    def r(v: float | None, nd: int = 2) -> float | None:
        return None if v is None else round(v, nd)

    print_table(
        f"Qwen2.5-VL-7B architecture, random weights, bf16, {image_size} px, {seq_len} tokens/pair, on {name}",
        ["figure", "value"],
        [
            ["parameters (B)", round(params_b, 2)],
            ["build s", round(build_s, 1)],
            ["pairs/s (no grad, batch 8)", round(rate, 2)],
            [f"pairs/s (grad to pixels, fwd+bwd, batch {g})", round(grad_rate, 2)],
            ["weights GiB", r(weights_gib, 1)],
            ["peak GPU GiB (no grad, batch 8)", r(peak_no_grad, 1)],
            [f"peak GPU GiB (incl. grad pass, batch {g})", r(peak, 1)],
        ],
    )
    return {
        "gpu": {
            "device": name,
            "parameters_b": params_b,
            "build_seconds": build_s,
            "image_size": image_size,
            "tokens_per_pair": seq_len,
            "pairs_per_second": rate,
            "no_grad_batch": 8,
            "pairs_per_second_grad": grad_rate,
            "grad_batch": g,
            "weights_gib": weights_gib,
            "peak_memory_gib_no_grad": peak_no_grad,
            "peak_memory_gib": peak,
            "attn_implementation": model.config._attn_implementation,
        }
    }


def sft_7b(
    *,
    device: str = "cuda",
    text_layers: int = 28,
    vision_depth: int = 32,
    steps: int = 6,
    image_size: int = 448,
) -> dict[str, Any]:
    """Reward SFT steps of the published 7B architecture through our trainer, in mixed precision:
    float32 master weights, bf16 autocast, gradient checkpointing, full fine-tune, lr 1e-6 (the full
    profile's), on one fixed batch of 4 pairs (8 queries). Figures: the loss per step (it must fall),
    the share of weights that changed, s/step and peak GPU memory. ``device`` / depths exist for a
    CPU smoke test of this code path (``--sft-smoke``); the GPU run uses the published depths."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from onereward.models import reward_vlm
    from onereward.reward.config import RewardConfig
    from onereward.reward.data import ImageStore, read_preferences
    from onereward.reward.oracle_preferences import make_oracle_preferences
    from onereward.reward.scoring import RewardScorer
    from onereward.reward.template import default_template
    from onereward.reward.train import train

    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("GPU SFT benchmark skipped: no CUDA device", flush=True)
        return {"gpu_sft": None}
    tokenizer = reward_vlm.build_tokenizer()
    config = reward_vlm.real_shape_config(
        text_layers=text_layers, vision_depth=vision_depth, tokenizer=tokenizer
    )
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)  # fp32 master
    processor = reward_vlm.build_processor(tokenizer, min_pixels=image_size**2, max_pixels=image_size**2)
    yes, no = tokenizer.convert_tokens_to_ids([reward_vlm.YES_TOKEN, reward_vlm.NO_TOKEN])
    scorer = RewardScorer(reward_vlm.RewardVLM(model, processor, yes, no, "7b-random"), default_template())
    with tempfile.TemporaryDirectory() as tmp:
        make_oracle_preferences(Path(tmp) / "prefs", 6, seed=0)
        pairs = read_preferences(Path(tmp) / "prefs").pairs[:4]  # one fixed batch
        before = {
            k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()
        }  # fp32, ~30 GB host RAM
        cfg = RewardConfig(
            batch_size=8, learning_rate=1e-6, max_steps=steps, bf16=True, gradient_checkpointing=True,
            warmup_steps=1, log_every=1, keep_checkpoints=0,
        )  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train(scorer, pairs, ImageStore(), cfg)
    after = scorer.model.state_dict()
    changed = sum(int((after[k].to("cpu") != before[k]).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    losses = [round(h["loss"], 5) for h in result.history]
    out = {
        "gpu_sft": {
            "device": torch.cuda.get_device_name() if cuda else device,
            "parameters_b": round(total / 1e9, 2),
            "losses": losses,
            "loss_fell": losses[-1] < losses[0],
            "weights_changed": round(changed / total, 4),
            "seconds_per_step": round(1 / result.steps_per_second, 3) if result.steps_per_second else None,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        }
    }
    print(json.dumps(out, indent=2), flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="synthetic items (about 2.9 pairs each)")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the tiny profile's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quality", action="store_true", help="only the throughput parts")
    parser.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the 7B part on CUDA (results in reward_gpu.json), as benchmarks/gpu_run.sh runs it",
    )
    parser.add_argument(
        "--sft-smoke",
        action="store_true",
        help="the 7B SFT code path at depth 1 on the CPU (a check, no figures)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("ONEREWARD_LOG_LEVEL", "WARNING")
    if args.sft_smoke:
        return sft_7b(device="cpu", text_layers=1, vision_depth=1, steps=3, image_size=112)
    if args.gpu_only:
        results = gpu_7b()
        results.update(sft_7b())
        if results["gpu"] is not None:
            write_results("reward_gpu", results)
        return results
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_reward_") as tmp:
        root = Path(tmp)
        if not args.skip_quality:
            results["quality"] = quality(args, root)
        results["throughput"] = throughput(root)
        results.update(gpu_7b())
    results["peak_rss_mb"] = peak_rss_mb()
    write_results("reward", results)
    return results


if __name__ == "__main__":
    main()
