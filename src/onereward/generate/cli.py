"""``onereward generate`` and ``onereward generate-merge`` subcommands."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.generate.config import GenerateConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the generate subcommands."""
    p = subparsers.add_parser(
        "generate",
        help="generate_candidates: N randomised candidates per item of a subset",
        description=(
            "Generate N candidates per (source, mask, prompt) item of a subset (or a pool whose items all "
            "have masks) with randomly sampled inference steps, CFG scale, negative prompt and initial noise "
            "strength (paper section 4.2); writes a candidates artifact with report.html. Resumable: a "
            "rerun with the same parameters skips finished items."
        ),
    )
    p.add_argument("--subset", required=True, help="subset (or pool) artifact directory")
    p.add_argument("--out", required=True, help="output candidates artifact directory")
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    p.add_argument(
        "--zoo", default=None, help="tiny zoo artifact dir (default: the cached zoo of the profile)"
    )
    add_arguments(p, GenerateConfig)
    p.set_defaults(func=_generate)

    m = subparsers.add_parser(
        "generate-merge",
        help="merge candidates artifacts of --shard runs into one",
        description="Merge the candidates artifacts written by `onereward generate --shard i/n` runs.",
    )
    m.add_argument("--shards", nargs="+", required=True, help="candidates artifact directories of the shards")
    m.add_argument("--out", required=True, help="merged candidates artifact directory")
    m.set_defaults(func=_merge)


def _generate(args: argparse.Namespace) -> int:
    from onereward.generate.stage import run

    metrics = run(
        args.subset, args.out, profile=args.profile, zoo=args.zoo, **overrides_from_args(args, GenerateConfig)
    )
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from onereward.generate.stage import merge

    print(json.dumps(merge(args.shards, args.out), indent=2, sort_keys=True))
    return 0
