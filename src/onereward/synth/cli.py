"""``onereward synth`` and ``onereward synth-candidates``."""

from __future__ import annotations

import argparse
import json


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
    p.add_argument("--items", type=int, default=48, help="number of items, >= 1 (default: 48)")
    p.add_argument("--seed", type=int, default=0, help="scene seed; same seed, same bytes (default: 0)")
    p.add_argument(
        "--image-size", type=int, default=64, help="image side in pixels, a multiple of 16 (default: 64)"
    )
    p.add_argument(
        "--no-masks",
        action="store_true",
        help="write mask null for image_fill/image_extend items (select makes masks); removal keeps masks",
    )
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

    metrics = run(
        args.out, items=args.items, seed=args.seed, image_size=args.image_size, masks=not args.no_masks
    )
    print(json.dumps({"out": args.out, **metrics}, sort_keys=True))
    return 0


def _synth_candidates(args: argparse.Namespace) -> int:
    from onereward.synth.candidates import make_candidates

    manifest = make_candidates(args.items, args.out, per_item=args.per_item, seed=args.seed)
    print(json.dumps({"out": args.out, **manifest.metrics()}, sort_keys=True))
    return 0
