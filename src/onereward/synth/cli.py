"""``onereward synth`` and ``onereward synth-candidates``."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.synth.config import SynthConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add the synthetic-world subcommands to the ``onereward`` parser."""
    p = sub.add_parser(
        "synth",
        help="write a synthetic source pool (procedural scenes for every task)",
        description=(
            "Write a pool artifact of procedural scenes (textured backgrounds, shapes in named colours, "
            "rendered words) with items for image_fill (incl. text-rendering prompts), image_extend (with "
            "and without prompt) and object_removal, each with mask, prompt, target and scene facts."
        ),
    )
    p.add_argument("--out", required=True, help="output artifact directory")
    add_arguments(p, SynthConfig)
    p.set_defaults(func=_synth)

    c = sub.add_parser(
        "synth-candidates",
        help="write synthetic candidates of graded quality for a pool or subset",
        description=(
            "Write a candidates artifact with N results per item of a synthetic pool or subset, built from "
            "the item's target with random degradations (wrong colour, colour seam, blur, noise, object left "
            "in place, broken structure, partial fill ...); pixels outside the mask are the source's."
        ),
    )
    c.add_argument("--items", required=True, help="pool or subset artifact directory (synthetic world)")
    c.add_argument("--out", required=True, help="output candidates artifact directory")
    c.add_argument("--per-item", type=int, default=4, help="candidates per item, >= 1 (default: 4)")
    c.add_argument("--seed", type=int, default=0, help="degradation seed (default: 0)")
    c.set_defaults(func=_synth_candidates)


def _synth(args: argparse.Namespace) -> int:
    from onereward.synth.stage import run

    metrics = run(args.out, **overrides_from_args(args, SynthConfig))
    print(json.dumps({"out": args.out, **metrics}, sort_keys=True))
    return 0


def _synth_candidates(args: argparse.Namespace) -> int:
    from onereward.synth.candidates import make_candidates

    manifest = make_candidates(args.items, args.out, per_item=args.per_item, seed=args.seed)
    print(json.dumps({"out": args.out, **manifest.metrics()}, sort_keys=True))
    return 0
