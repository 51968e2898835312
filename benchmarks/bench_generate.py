"""generate_candidates throughput: our batched samplers vs a naive per-candidate diffusers loop.

Tiny profile (CPU or GPU): a synthetic pool, candidate parameters sampled by the stage's own
``sample_specs``; for each family, our sampler over all candidates vs one diffusers pipeline call
per candidate with the same seed and settings, side by side, with the largest pixel difference
between the two outputs. ``FluxFillPipeline`` has no true CFG or negative prompt, so the flux
comparison runs at cfg 1 (distilled guidance only); a third row times ours with true CFG and
negative prompts (no diffusers counterpart). ``StableDiffusionInpaintPipeline`` takes negative
prompts and CFG, so the sd comparison uses the sampled values as they are. Target: >= 2x.

With CUDA: the full-size FLUX.1-Fill-dev architecture (published configs, all 19 + 38 blocks,
CLIP-L, T5-XXL, the real VAE) with random bf16 weights, seconds per candidate and peak GPU memory
through our sampler (true CFG, so two transformer rows per candidate) at 512 and 1024 px one
candidate at a time, and at 1024 px in a batch of 4 (the full profile's batch size). Without
CUDA that part is skipped and says so.

Batch fill (no model needed): mean candidates per generator batch, for the tiny and the full
profile's sampled parameters over a shard of ``--fill-items`` items, with the stage's whole-shard
planning (:func:`~onereward.generate.stage.plan_batches`) and with the former per-chunk grouping
(chunks of ``4 * batch_size // candidates`` items).

Usage: ``python benchmarks/bench_generate.py [--items 16] [--candidates 4] [--gpu-steps 28]
[--fill-items 256] [--fill-only] [--gpu-only]`` (``--gpu-only``: only the full-size CUDA part, as
``benchmarks/gpu_run.sh`` runs it on a bare CUDA machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import peak_rss_mb, print_table, write_results  # noqa: E402
from PIL import Image  # noqa: E402

from onereward import tasks  # noqa: E402
from onereward.generate.config import GenerateConfig  # noqa: E402
from onereward.generate.sampler import CandidateSpec, ItemCondition, batches  # noqa: E402
from onereward.generate.stage import plan_batches, sample_specs  # noqa: E402
from onereward.imageio import load_mask, load_rgb  # noqa: E402
from onereward.profile import load_profile  # noqa: E402
from onereward.tables import read_table  # noqa: E402


def _pool(root: Path, n_items: int) -> tuple[dict[str, ItemCondition], list[dict[str, Any]]]:
    from onereward.synth.stage import make_pool

    make_pool(root / "pool", n_items, seed=0)
    rows = read_table(root / "pool" / "items.parquet")
    items = {
        r["item_id"]: ItemCondition(
            r["item_id"], load_rgb(root / "pool" / r["image"]), load_mask(root / "pool" / r["mask"])
        )
        for r in rows
    }
    return items, rows


def _profile_specs(profile: str, item_ids: list[str], family: str, n: int) -> list[CandidateSpec]:
    """The stage's own parameter draws with a profile's ``generate`` settings."""
    cfg = GenerateConfig.resolve(load_profile(profile).generate, family=family, num_candidates=n, seed=0)
    return [spec for iid in item_ids for spec in sample_specs(iid, "a prompt", cfg)]


def batch_fill(n_items: int) -> list[dict[str, Any]]:
    """Mean batch size of the stage's whole-shard plan vs the former per-chunk grouping."""
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.generate.sd_sampler import SDInpaintSampler

    out = []
    for profile in ("tiny", "full"):
        gen = load_profile(profile).generate
        bs, n = gen.batch_size, gen.num_candidates
        ids = [f"item{k:05d}" for k in range(n_items)]
        for family, executed in (
            ("flux_fill", FluxFillSampler.executed_steps),
            ("sd_inpaint", SDInpaintSampler.executed_steps),
        ):
            specs = _profile_specs(profile, ids, family, n)
            keys = [executed(s.steps, s.strength) for s in specs]  # one image size per profile
            owners = [int(s.item_id[4:]) for s in specs]
            chunk = max(1, 4 * bs // n) * n  # the former plan: 4 * bs // n items per chunk
            before = [
                len(b)
                for start in range(0, len(specs), chunk)
                for b in batches(keys[start : start + chunk], bs)
            ]
            after = [len(b) for b in plan_batches(keys, owners, bs)]
            out.append(
                {
                    "profile": profile,
                    "family": family,
                    "items": n_items,
                    "batch_size": bs,
                    "steps": f"{gen.min_steps}-{gen.max_steps}",
                    "distinct_executed_steps": len(set(keys)),
                    "before_mean_batch": round(float(np.mean(before)), 2),
                    "after_mean_batch": round(float(np.mean(after)), 2),
                    "before_fill": round(float(np.mean(before)) / bs, 3),
                    "after_fill": round(float(np.mean(after)) / bs, 3),
                    "before_batches": len(before),
                    "after_batches": len(after),
                }
            )
    return out


# Photo sizes of a mixed pool (camera and phone formats, web crops): width, height.
PHOTO_SIZES = (
    (4000, 3000), (3000, 4000), (4032, 3024), (3024, 4032), (6000, 4000), (4000, 6000), (1920, 1080),
    (1080, 1920), (2048, 2048), (1600, 1200), (1280, 960), (3840, 2160), (2560, 1440), (1500, 1000),
    (1000, 1500), (1200, 1600), (800, 600), (640, 480), (1024, 768), (3264, 2448),
)  # fmt: skip


def mixed_size_fill(n_items: int, seed: int = 0) -> dict[str, Any]:
    """Batch fill of the full profile's flux plan on a mixed-size pool: candidates grouped by exact
    (grid-snapped) size, as before, vs by aspect-ratio bucket at the profile's image_size."""
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.generate.sampler import fit_size

    prof = load_profile("full")
    gen = prof.generate
    rng = np.random.default_rng(seed)
    sizes = {}
    for k in range(n_items):
        w, h = PHOTO_SIZES[int(rng.integers(len(PHOTO_SIZES)))]
        crop = rng.uniform(0.8, 1.0, size=2)  # web pools hold crops too
        sizes[f"item{k:05d}"] = (int(h * crop[0]), int(w * crop[1]))
    specs = _profile_specs("full", list(sizes), "flux_fill", gen.num_candidates)
    owners = [int(s.item_id[4:]) for s in specs]
    steps = [FluxFillSampler.executed_steps(s.steps, s.strength) for s in specs]
    out: dict[str, Any] = {"items": n_items, "batch_size": gen.batch_size, "image_size": prof.image_size}
    for name, resolution in (("exact_size", None), ("buckets", prof.image_size)):
        keys = [(fit_size(sizes[s.item_id], 16, resolution), k) for s, k in zip(specs, steps, strict=True)]
        plan = [len(b) for b in plan_batches(keys, owners, gen.batch_size)]
        generated = {fit_size(hw, 16, resolution) for hw in sizes.values()}
        out[name] = {
            "distinct_sizes": len(generated),
            "max_megapixels": round(max(h * w for h, w in generated) / 1e6, 2),
            "batches": len(plan),
            "fill": round(float(np.mean(plan)) / gen.batch_size, 3),
        }
    return out


def _specs(rows: list[dict[str, Any]], family: str, n: int, *, true_cfg: bool) -> list[CandidateSpec]:
    specs = _profile_specs("tiny", [r["item_id"] for r in rows], family, n)
    by_id = {r["item_id"]: tasks.effective_prompt(r["task"], r["prompt"]) for r in rows}
    specs = [dataclasses.replace(s, prompt=by_id[s.item_id]) for s in specs]
    if not true_cfg:  # FluxFillPipeline cannot do true CFG: compare at cfg 1 without negatives
        specs = [dataclasses.replace(s, cfg_scale=1.0, negative_prompt="") for s in specs]
    return specs


def _naive(
    pipe: Any, family: str, items: dict[str, ItemCondition], specs: list[CandidateSpec], seq: int
) -> list:
    out = []
    for s in specs:
        item = items[s.item_id]
        h, w = item.mask.shape
        kwargs: dict[str, Any] = {
            "prompt": s.prompt,
            "image": Image.fromarray(item.image),
            "mask_image": Image.fromarray(item.mask.astype(np.uint8) * 255),
            "height": h,
            "width": w,
            "num_inference_steps": s.steps,
            "strength": s.strength,
            "generator": torch.Generator().manual_seed(s.seed),
        }
        if family == "flux_fill":
            kwargs.update(guidance_scale=s.guidance, max_sequence_length=seq)
        else:
            kwargs.update(guidance_scale=s.cfg_scale, negative_prompt=s.negative_prompt or None)
        out.append(np.asarray(pipe(**kwargs).images[0]))
    return out


def _timed(fn, n: int) -> tuple[list, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, n / (time.perf_counter() - t0)


def tiny(n_items: int, n_cand: int, device: str) -> list[dict[str, Any]]:
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.generate.sd_sampler import SDInpaintSampler
    from onereward.models import flux_fill, sd_inpaint

    gen = load_profile("tiny").generate
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items, rows = _pool(root, n_items)
        flux_fill.build_tiny(root / "flux", seed=0)
        sd_inpaint.build_tiny(root / "sd", seed=0)
        cases = [
            ("flux_fill", flux_fill.load(root / "flux", device=device), FluxFillSampler, False),
            ("flux_fill", None, FluxFillSampler, True),
            ("sd_inpaint", sd_inpaint.load(root / "sd", device=device), SDInpaintSampler, True),
        ]
        flux_pipe = cases[0][1]
        for family, pipe, sampler_cls, true_cfg in cases:
            pipe = pipe or flux_pipe
            specs = _specs(rows, family, n_cand, true_cfg=true_cfg)
            sampler = sampler_cls(
                pipe, max_sequence_length=gen.max_sequence_length, batch_size=gen.batch_size
            )
            first = next(iter(items))
            sampler.sample({first: items[first]}, [s for s in specs if s.item_id == first])  # warm-up
            ours, ours_rate = _timed(
                lambda sampler=sampler, specs=specs: sampler.sample(items, specs), len(specs)
            )
            row = {
                "family": family,
                "true_cfg_and_negatives": true_cfg,
                "candidates": len(specs),
                "ours_cand_per_s": round(ours_rate, 2),
                "naive_cand_per_s": None,
                "speedup": None,
                "max_pixel_diff": None,
            }
            if not (family == "flux_fill" and true_cfg):
                _naive(pipe, family, items, specs[:1], gen.max_sequence_length)  # warm-up
                naive, naive_rate = _timed(
                    lambda pipe=pipe, family=family, specs=specs: _naive(
                        pipe, family, items, specs, gen.max_sequence_length
                    ),
                    len(specs),
                )
                row.update(
                    naive_cand_per_s=round(naive_rate, 2),
                    speedup=round(ours_rate / naive_rate, 2),
                    max_pixel_diff=int(
                        max(
                            np.abs(a.astype(int) - b.astype(int)).max()
                            for a, b in zip(ours, naive, strict=True)
                        )
                    ),
                )
            rows_out.append(row)
    return rows_out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_gb(device: str, peak: bool) -> float | None:
    if not device.startswith("cuda"):
        return None
    value = torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
    return round(value / 2**30, 2)


def gpu_full(
    steps: int,
    cases: tuple[tuple[int, int], ...] = ((512, 1), (1024, 1), (1024, 4)),
    *,
    device: str = "cuda",
    depths: tuple[int, int, int, int] = (19, 38, 12, 24),
) -> list[dict[str, Any]]:
    """Full-size FLUX.1-Fill-dev (random bf16 weights) through our sampler, one row per
    ``(size_px, batch)`` case: seconds per candidate and peak GPU memory.

    The components are created directly on ``device`` in bf16 (random init of 12B + 4.7B
    parameters takes minutes on a CPU, seconds on a GPU). Each case first runs a 2-step warm-up
    of the same batch, which also fills the sampler's per-prompt text cache and per-item VAE
    encoding cache: the timed run is the denoising loop (``steps`` steps, true CFG, so two
    transformer rows per candidate) plus the VAE decode, which is what every further candidate of
    an item costs in the stage. ``depths`` (double blocks, single blocks, CLIP layers, T5 layers)
    and ``device`` exist for a CPU smoke test of this code path; the benchmark uses the published
    ones on CUDA.
    """
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.models import flux_fill

    t0 = time.perf_counter()
    comps = flux_fill.real_shape_components(
        num_layers=depths[0],
        num_single_layers=depths[1],
        clip_layers=depths[2],
        t5_layers=depths[3],
        dtype=torch.bfloat16,
        device=device,
    )
    pipe = flux_fill.pipeline_from_components(comps)
    pipe.set_progress_bar_config(disable=True)
    _sync(device)
    build_s = time.perf_counter() - t0
    params_b = round(sum(p.numel() for p in pipe.transformer.parameters()) / 1e9, 2)
    t5_params_b = round(sum(p.numel() for p in pipe.text_encoder_2.parameters()) / 1e9, 2)
    weights_gb = _gpu_gb(device, peak=False)
    print(
        f"built FLUX.1-Fill-dev-shaped pipeline on {device} in {build_s:.1f}s: transformer {params_b}B, "
        f"T5 {t5_params_b}B parameters, {weights_gb} GB allocated",
        flush=True,
    )
    out = []
    for size, batch in cases:
        sampler = FluxFillSampler(pipe, max_sequence_length=512, batch_size=batch)
        rng = np.random.default_rng(0)
        mask = np.zeros((size, size), bool)
        mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
        item = ItemCondition("g", (rng.random((size, size, 3)) * 255).astype(np.uint8), mask)
        specs = [
            CandidateSpec("g", k, "a red circle", "blurry", steps, 4.0, 1.0, k, 1.0) for k in range(batch)
        ]
        sampler.sample({"g": item}, [dataclasses.replace(s, steps=2) for s in specs])  # warm-up
        _sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sampler.sample({"g": item}, specs)
        _sync(device)
        secs = time.perf_counter() - t0
        row = {
            "size_px": size,
            "batch": batch,
            "steps": steps,
            "true_cfg": True,
            "transformer_rows_per_step": 2 * batch,
            "seconds_per_batch": round(secs, 3),
            "seconds_per_candidate": round(secs / batch, 3),
            "seconds_per_step": round(secs / steps, 4),
            "peak_gpu_mem_gb": _gpu_gb(device, peak=True),
            "weights_gpu_mem_gb": weights_gb,
            "build_seconds": round(build_s, 1),
            "transformer_params_b": params_b,
            "t5_params_b": t5_params_b,
            "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        }
        print(f"flux {size}px batch {batch}: {row}", flush=True)
        out.append(row)
    return out


def _gpu_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    print_table(
        f"FLUX.1-Fill-dev full size, random bf16 weights, our sampler (true CFG) on {rows[0]['device']}",
        ["px", "batch", "steps", "s/batch", "s/candidate", "s/step", "peak GPU GB"],
        [
            [
                r["size_px"],
                r["batch"],
                r["steps"],
                r["seconds_per_batch"],
                r["seconds_per_candidate"],
                r["seconds_per_step"],
                r["peak_gpu_mem_gb"],
            ]
            for r in rows
        ],
    )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--gpu-steps", type=int, default=28)
    parser.add_argument("--fill-items", type=int, default=256, help="items of the batch-fill comparison")
    parser.add_argument("--fill-only", action="store_true", help="only the batch-fill comparison (no model)")
    parser.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the full-size FLUX.1-Fill-dev part on CUDA (results in generate_gpu.json)",
    )
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.gpu_only:
        if not torch.cuda.is_available():
            print("full-size FLUX.1-Fill-dev on GPU: skipped (CUDA not available)", flush=True)
            return {"gpu_full": "skipped: CUDA not available"}
        gpu_rows = _gpu_table(gpu_full(args.gpu_steps))
        result = {"gpu_full": gpu_rows}
        write_results("generate_gpu", result)
        return result
    fill_rows = batch_fill(args.fill_items)
    print_table(
        f"batch fill over a shard of {args.fill_items} items: former per-chunk grouping vs whole-shard plan",
        [
            "profile",
            "family",
            "batch",
            "steps",
            "exec. step counts",
            "before mean",
            "after mean",
            "before fill",
            "after fill",
            "batches before",
            "batches after",
        ],
        [
            [
                r["profile"],
                r["family"],
                r["batch_size"],
                r["steps"],
                r["distinct_executed_steps"],
                r["before_mean_batch"],
                r["after_mean_batch"],
                r["before_fill"],
                r["after_fill"],
                r["before_batches"],
                r["after_batches"],
            ]
            for r in fill_rows
        ],
    )
    mixed = mixed_size_fill(args.fill_items)
    print_table(
        f"full profile on a mixed-size photo pool ({args.fill_items} items, flux): exact sizes vs aspect buckets",
        ["grouping", "distinct sizes", "largest (MP)", "batches", "fill"],
        [
            [k, v["distinct_sizes"], v["max_megapixels"], v["batches"], v["fill"]]
            for k, v in mixed.items()
            if isinstance(v, dict)
        ],
    )
    if args.fill_only:
        write_results("generate_fill", {"batch_fill": fill_rows, "mixed_size_fill": mixed})
        return {"batch_fill": fill_rows, "mixed_size_fill": mixed}
    tiny_rows = tiny(args.items, args.candidates, device)
    print_table(
        f"generate_candidates, tiny profile on {device} ({args.items} items x {args.candidates} candidates, 64 px)",
        ["family", "true CFG+neg", "cands", "ours/s", "naive/s", "speedup", "max px diff"],
        [
            [
                r["family"],
                r["true_cfg_and_negatives"],
                r["candidates"],
                r["ours_cand_per_s"],
                r["naive_cand_per_s"] if r["naive_cand_per_s"] is not None else "n/a",
                r["speedup"] if r["speedup"] is not None else "n/a",
                r["max_pixel_diff"] if r["max_pixel_diff"] is not None else "n/a",
            ]
            for r in tiny_rows
        ],
    )
    result: dict[str, Any] = {
        "batch_fill": fill_rows,
        "tiny": tiny_rows,
        "tiny_device": device,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if torch.cuda.is_available():
        result["gpu_full"] = _gpu_table(gpu_full(args.gpu_steps))
    else:
        print("full-size FLUX.1-Fill-dev on GPU: skipped (CUDA not available)", flush=True)
        result["gpu_full"] = "skipped: CUDA not available"
    write_results("generate", result)
    return result


if __name__ == "__main__":
    main()
