"""``onereward select``: run select_subset alone on a pool (artifact, datasets folder or images)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``select`` subcommand."""
    p = sub.add_parser(
        "select",
        help="select a representative subset of a pool (CLIP + K-means)",
        description=(
            "Embed every image of the pool with open_clip (cached by content hash), cluster per task "
            "(or globally) with K-means and keep the items nearest to the centroids, without "
            "near-duplicates. Bad files are skipped and listed in the report. Items without masks get "
            "canvas expansions (image_extend) or box/brush masks (image_fill). Writes a subset "
            "artifact with report.html and metrics.json."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--pool", required=True, help="pool artifact, HF datasets folder, or folder of images (+ sidecar)"
    )
    p.add_argument("--out", required=True, help="output subset artifact directory")
    p.add_argument("--size", type=int, required=True, help="target number of selected items")
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    p.add_argument("--zoo", default=None, help="zoo folder holding clip/ (default: the cached tiny zoo)")
    p.add_argument("--global", dest="per_task", action="store_false", help="cluster all tasks together")
    p.add_argument("--backend", default="auto", choices=("auto", "sklearn", "faiss"), help="K-means engine")
    p.add_argument("--seed", type=int, default=0, help="seed of clustering, masks and the random baseline")
    p.add_argument("--max-bad-fraction", type=float, default=0.2, help="fail when more of the pool is bad")
    p.add_argument("--per-cluster", type=int, default=1, help="representatives per cluster")
    p.add_argument(
        "--dedup-threshold",
        type=float,
        default=None,
        help="cosine similarity of near-duplicates (default: the profile's select.dedup_threshold)",
    )
    p.add_argument("--min-image-size", type=int, default=32, help="shortest allowed image side (px)")
    p.add_argument("--mask-threshold", type=int, default=128, help="grey level >= this is the edit region")
    p.add_argument("--assign-tasks", default="image_extend", help="tasks for items without one (comma list)")
    p.add_argument("--extend-ratios", default="0.25,0.5", help="canvas expansion ratios (comma list)")
    p.add_argument("--extend-sides", default="left,right,top,bottom,all", help="sides to expand (comma list)")
    p.add_argument("--fill-kinds", default="box,brush", help="generated fill mask kinds (comma list)")
    p.add_argument(
        "--fill-area-min", type=float, default=0.1, help="smallest generated fill mask area fraction"
    )
    p.add_argument(
        "--fill-area-max", type=float, default=0.3, help="largest generated fill mask area fraction"
    )
    p.add_argument(
        "--faiss-min-items", type=int, default=50_000, help="auto backend uses faiss from this size"
    )
    p.add_argument("--two-level", default="auto", choices=("auto", "on", "off"), help="two-level K-means")
    p.add_argument("--batch-size", type=int, default=None, help="embedding batch (default: profile)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: profile)")
    p.add_argument("--cache-dir", default=None, help="embedding cache root (default: $ONEREWARD_CACHE)")
    p.add_argument(
        "--no-cache", dest="use_cache", action="store_false", help="do not read or write the cache"
    )
    p.add_argument("--coverage-sample", type=int, default=50_000, help="pool items measured for coverage")
    p.add_argument(
        "--threads", type=int, default=0, help="cap on faiss/BLAS threads while clustering (0: all)"
    )
    p.add_argument("--device", default="cpu", help="torch device for CLIP")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=_select)


def _select(args: argparse.Namespace) -> int:
    from onereward.select.stage import run

    params = {k: v for k, v in vars(args).items() if k not in ("command", "func", "pool", "out")}
    metrics = run(args.pool, args.out, **params)
    keys = ("n_pool", "n_bad", "n_selected", "coverage_selected", "coverage_random", "images_per_second")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0
