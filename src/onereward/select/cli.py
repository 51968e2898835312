"""``onereward select``: run select_subset alone on a pool (artifact, datasets folder or images)."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.select.config import SelectConfig


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
    )
    p.add_argument(
        "--pool", required=True, help="pool artifact, HF datasets folder, or folder of images (+ sidecar)"
    )
    p.add_argument("--out", required=True, help="output subset artifact directory")
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path (default: tiny)")
    p.add_argument("--zoo", default=None, help="zoo folder holding clip/ (default: the cached tiny zoo)")
    add_arguments(p, SelectConfig)
    p.set_defaults(func=_select)


def _select(args: argparse.Namespace) -> int:
    from onereward.select.stage import run

    metrics = run(
        args.pool, args.out, profile=args.profile, zoo=args.zoo, **overrides_from_args(args, SelectConfig)
    )
    keys = ("n_pool", "n_bad", "n_selected", "coverage_selected", "coverage_random", "images_per_second")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0
