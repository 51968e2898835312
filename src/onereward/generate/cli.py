"""``onereward generate`` and ``onereward generate-merge`` subcommands."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the generate subcommands."""
    from onereward.generate import FAMILIES

    p = subparsers.add_parser(
        "generate",
        help="generate_candidates: N randomised candidates per item of a subset",
        description=(
            "Generate N candidates per (source, mask, prompt) item of a subset (or a pool whose items all "
            "have masks) with randomly sampled inference steps, CFG scale, negative prompt and initial noise "
            "strength (paper section 4.2); writes a candidates artifact with report.html. Resumable: a "
            "rerun with the same parameters skips finished items."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--subset", required=True, help="subset (or pool) artifact directory")
    p.add_argument("--out", required=True, help="output candidates artifact directory")
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    p.add_argument(
        "--zoo", default=None, help="tiny zoo artifact dir (default: the cached zoo of the profile)"
    )
    p.add_argument("--family", default="flux_fill", choices=FAMILIES, help="generator family")
    p.add_argument("--num-candidates", type=int, default=None, help="candidates per item (default: profile)")
    p.add_argument("--shard", default="0/1", help="i/n: generate every n-th item from offset i (fan-out)")
    p.add_argument("--seed", type=int, default=0, help="root seed (parameters and noise per item id)")
    p.add_argument(
        "--min-steps", type=int, default=None, help="smallest inference-step count (default: profile)"
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="largest inference-step count (default: profile)"
    )
    p.add_argument(
        "--cfg-min", type=float, default=None, help="smallest true-CFG scale, >= 1 (default: profile)"
    )
    p.add_argument("--cfg-max", type=float, default=None, help="largest true-CFG scale (default: profile)")
    p.add_argument(
        "--strength-min",
        type=float,
        default=None,
        help="smallest initial noise strength, > 0 (default: profile)",
    )
    p.add_argument(
        "--strength-max",
        type=float,
        default=None,
        help="largest initial noise strength, <= 1 (default: profile)",
    )
    p.add_argument(
        "--negative-prompts",
        default=None,
        help="';'-separated negative prompt choices; 'none' = no negative prompt (default: profile)",
    )
    p.add_argument(
        "--guidance", type=float, default=None, help="flux distilled-guidance input (default: profile)"
    )
    p.add_argument(
        "--feather",
        type=int,
        default=None,
        help="paste-back feather radius in pixels, 0 = hard (default: profile)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="candidates per generator batch (default: profile)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--report-items", type=int, default=24, help="items shown in report.html")
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
        args.subset,
        args.out,
        profile=args.profile,
        zoo=args.zoo,
        family=args.family,
        num_candidates=args.num_candidates,
        shard=args.shard,
        seed=args.seed,
        min_steps=args.min_steps,
        max_steps=args.max_steps,
        cfg_min=args.cfg_min,
        cfg_max=args.cfg_max,
        strength_min=args.strength_min,
        strength_max=args.strength_max,
        negative_prompts=args.negative_prompts,
        guidance=args.guidance,
        feather=args.feather,
        batch_size=args.batch_size,
        device=args.device,
        report_items=args.report_items,
    )
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from onereward.generate.stage import merge

    print(json.dumps(merge(args.shards, args.out), indent=2, sort_keys=True))
    return 0
