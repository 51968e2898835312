"""``onereward zoo build``: build the tiny model zoo (or record a full profile's references)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="tiny model zoo", description="Build and inspect the model zoo.")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    zsub.required = True
    b = zsub.add_parser(
        "build",
        help="build every model of a profile",
        description=(
            "Build every tiny model of the profile from configs with seeded random weights and save it "
            "in HF format (safetensors) under OUT/<model>; for a profile with real checkpoints, record "
            "the resolved references only."
        ),
    )
    b.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path (default: tiny)")
    b.add_argument("--out", required=True, help="output zoo artifact directory")
    b.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    b.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from onereward.zoo import build_zoo

    t0 = time.perf_counter()
    manifest = build_zoo(args.profile, args.out, seed=args.seed)
    print(
        f"zoo: {manifest.path} ({manifest.counts.get('n_models_built', 0)} models built in {time.perf_counter() - t0:.1f}s)"
    )
    return 0
