"""select_subset embedding throughput (images/s), decoding and checks included.

Runs the stage's own embedding pass (``onereward.select.embed.embed_pool``: DataLoader, PNG
decode, mode/size checks, content hash, open_clip preprocessing, batched forward) over a folder of
256x256 PNG files, with the cache disabled, for:

- the tiny profile's CLIP (ViT 2x64, patch 16, 64 px),
- a ViT-B/32-sized model with random weights (open_clip's ViT-B-32 config, 224 px),

each saved to a folder and loaded back through ``onereward.models.clip.load``.

Usage: ``python benchmarks/bench_select_embedding.py [--tiny-images 2048] [--vit-images 256]``
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


def measure(model_dir: Path, pool_dir: Path, batch_size: int, num_workers: int) -> dict:
    import torch

    from onereward.models import clip
    from onereward.select.embed import EmbeddingCache, embed_pool
    from onereward.select.pool import read_pool

    model, preprocess, _ = clip.load(model_dir)
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
        "torch_threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in model.visual.parameters()) / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-images", type=int, default=2048)
    parser.add_argument("--vit-images", type=int, default=256)
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to try (comma list)")
    args = parser.parse_args(argv)
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
        clip.build_tiny(root / "tiny", seed=0)
        vit = clip.packaged_config(clip.TINY_ARCH)
        import open_clip

        vit["model_cfg"] = open_clip.get_model_config("ViT-B-32")
        vit["preprocess_cfg"]["size"] = 224
        clip.build_from_config(vit, root / "vit_b32", seed=0)
        subsets = {}
        for name, n in (("tiny", args.tiny_images), ("vit_b32", args.vit_images)):
            sub = root / f"pool_{n}"
            if not sub.exists():
                sub.mkdir()
                for p in sorted((root / "pool").iterdir())[:n]:
                    os.link(p, sub / p.name)
            subsets[name] = sub
        for name, batch in (("tiny", 64), ("vit_b32", 32)):
            for workers in (int(w) for w in args.workers.split(",")):
                res = measure(root / name, subsets[name], batch, workers)
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
    write_results("select_embedding", out)
    return out


if __name__ == "__main__":
    main()
