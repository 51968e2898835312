"""select_subset embedding throughput (images/s), decoding and checks included.

Runs the stage's own embedding pass (``onereward.select.embed.embed_pool``: DataLoader, PNG
decode, mode/size checks, content hash, open_clip preprocessing, batched forward) over a folder of
256x256 PNG files, with the cache disabled, for:

- the tiny profile's CLIP (ViT 2x64, patch 16, 64 px),
- a ViT-sized model with random weights (open_clip's ``--vit-arch`` config, default ViT-B-32;
  224 px),

each saved to a folder and loaded back through ``onereward.models.clip.load`` on ``--device``.

Usage: ``python benchmarks/bench_select_embedding.py [--tiny-images 2048] [--vit-images 256]
[--vit-arch ViT-B-32] [--device cpu] [--skip-tiny] [--workers 0,2]``. With a device other than
``cpu`` the results go to ``select_embedding_<device>.json`` (``benchmarks/gpu_run.sh`` runs
ViT-L-14 on CUDA).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402


def write_images(folder: Path, n: int, size: int = 256, seed: int = 0) -> None:
    """PNG files with smooth structure (compress and decode like real images, unlike noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n):
        f = rng.uniform(0.5, 4, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack([np.sin(2 * np.pi * f[c] * (xx + yy * (c - 1)) + phase[c]) for c in range(3)], -1)
        img += rng.normal(0, 0.05, img.shape).astype(np.float32)
        Image.fromarray(((img + 1) * 127.5).clip(0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.png")


def measure(model_dir: Path, pool_dir: Path, batch_size: int, num_workers: int, device: str = "cpu") -> dict:
    import torch

    from onereward.models import clip
    from onereward.select.embed import EmbeddingCache, embed_pool
    from onereward.select.pool import read_pool

    model, preprocess, _ = clip.load(model_dir, device=device)
    pool = read_pool(pool_dir)
    result = embed_pool(
        pool,
        model,
        preprocess,
        EmbeddingCache(None, "bench"),
        batch_size=batch_size,
        num_workers=num_workers,
        progress=False,
    )
    return {
        "images": len(result.items),
        "seconds": round(result.seconds, 2),
        "images_per_second": round(result.images_per_second, 2),
        "dim": int(result.embeddings.shape[1]),
        "input_px": clip.image_size(model),
        "batch_size": batch_size,
        "num_workers": num_workers,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch_threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in model.visual.parameters()) / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-images", type=int, default=2048)
    parser.add_argument("--vit-images", type=int, default=256)
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to try (comma list)")
    parser.add_argument(
        "--vit-arch", default="ViT-B-32", help="open_clip architecture of the ViT-sized model"
    )
    parser.add_argument("--device", default="cpu", help="torch device of the forward pass (cpu, cuda)")
    parser.add_argument("--skip-tiny", action="store_true", help="only the ViT-sized model")
    args = parser.parse_args(argv)
    # result labels as before: ViT-B-32 -> vit_b32, ViT-L-14 -> vit_l14
    vit_name = "vit_" + args.vit_arch.lower().removeprefix("vit-").replace("-", "").replace("/", "")
    if args.skip_tiny:
        args.tiny_images = 0
    from onereward.models import clip

    load = os.getloadavg()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_select_embed_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_images(root / "pool", max(args.tiny_images, args.vit_images))
        print(
            f"wrote {max(args.tiny_images, args.vit_images)} PNGs in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        if not args.skip_tiny:
            clip.build_tiny(root / "tiny", seed=0)
        vit = clip.packaged_config(clip.TINY_ARCH)
        import open_clip

        vit["model_cfg"] = open_clip.get_model_config(args.vit_arch)
        if vit["model_cfg"] is None:
            raise SystemExit(f"--vit-arch: {args.vit_arch!r} is not an open_clip architecture")
        vit["preprocess_cfg"]["size"] = vit["model_cfg"]["vision_cfg"]["image_size"]
        t0 = time.perf_counter()
        clip.build_from_config(vit, root / vit_name, seed=0)
        print(f"built {args.vit_arch} (random weights) in {time.perf_counter() - t0:.1f}s", flush=True)
        subsets = {}
        models = [("vit", vit_name, args.vit_images, 32)]
        if not args.skip_tiny:
            models.insert(0, ("tiny", "tiny", args.tiny_images, 64))
        for _, name, n, _ in models:
            sub = root / f"pool_{n}"
            if not sub.exists():
                sub.mkdir()
                for p in sorted((root / "pool").iterdir())[:n]:
                    os.link(p, sub / p.name)
            subsets[name] = sub
        for _, name, _, batch in models:
            for workers in (int(w) for w in args.workers.split(",")):
                res = measure(root / name, subsets[name], batch, workers, args.device)
                res["model"] = name
                results.append(res)
                rows.append([name, res["params_m"], res["input_px"], workers, res["images"], res["seconds"],
                             res["images_per_second"]])  # fmt: skip
                print(f"{name} workers={workers}: {res}", flush=True)
    print_table(
        f"select embedding throughput (256 px PNG decode + checks + preprocess + forward; load avg {load[0]:.1f})",
        ["model", "vision_params_M", "input_px", "workers", "images", "seconds", "images/s"],
        rows,
    )
    out = {
        "results": results,
        "load_average_at_start": [round(v, 2) for v in load],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "note": "cache disabled; the machine is shared, timings are noisy",
    }
    write_results("select_embedding" if args.device == "cpu" else f"select_embedding_{args.device}", out)
    return out


if __name__ == "__main__":
    main()
