"""``onereward evaluate`` and ``onereward evaluate-human`` subcommands."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.evaluate.config import EvaluateConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the evaluate subcommands."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate: benchmark policies against the base (GSB per task x dimension, metrics, report)",
        description=(
            "Draw a benchmark of held-out items per task from a pool, generate every model's result with the "
            "same conditions, noises and fixed sampling parameters (the base, the policy, its EMA, further "
            "policies), judge each against the base per dimension (reward model in both orders, the oracle in "
            "the synthetic world, people through a blind A/B Label Studio project), measure background "
            "preservation, seams, CLIP score, OCR and removal, and write an evaluation artifact with "
            "report.html (paper section 5.2, Table 2, Figure 7)."
        ),
    )
    p.add_argument("--pool", required=True, help="pool (or subset) artifact the benchmark items come from")
    p.add_argument("--out", required=True, help="output evaluation artifact directory")
    p.add_argument(
        "--reward-model",
        required=True,
        help="reward_model artifact (or VLM folder) the policy was trained against",
    )
    p.add_argument(
        "--policy", default=None, help="policy artifact to compare with the base (none: the base alone)"
    )
    p.add_argument(
        "--extra-policy",
        action="append",
        default=[],
        metavar="DIR",
        help="a further policy artifact (repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="DIR",
        help="artifact whose items were used in training, e.g. the RL subset (repeatable); held out by item id",
    )
    p.add_argument(
        "--held-out-reward-model",
        default=None,
        help="a second reward-model judge the policy was not trained against (heads the report when given)",
    )
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    p.add_argument(
        "--zoo", default=None, help="tiny zoo artifact dir (default: the cached zoo of the profile)"
    )
    add_arguments(p, EvaluateConfig)
    p.set_defaults(func=_evaluate)

    h = subparsers.add_parser(
        "evaluate-human",
        help="import the answers of an evaluation's blind A/B project into a new evaluation artifact",
        description=(
            "After `onereward evaluate --human export`, when the annotators are done: read the A/B project's "
            "answers from Label Studio, turn them into Good/Same/Bad of the model against the base, and write a "
            "new evaluation artifact with the human GSB in metrics.json and report.html."
        ),
    )
    h.add_argument("--evaluation", required=True, help="evaluation artifact that built the A/B project")
    h.add_argument("--out", required=True, help="output evaluation artifact directory")
    h.set_defaults(func=_evaluate_human)


def _evaluate(args: argparse.Namespace) -> int:
    from onereward.evaluate.stage import run

    metrics = run(
        args.pool,
        args.out,
        reward_model=args.reward_model,
        profile=args.profile,
        zoo=args.zoo,
        policy=args.policy,
        extra_policies=args.extra_policy,
        exclude=args.exclude,
        held_out_reward_model=args.held_out_reward_model,
        **overrides_from_args(args, EvaluateConfig),
    )
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in ("models", "primary", "n_items", "gsb", "usability", "metrics")
                if k in metrics
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0


def _evaluate_human(args: argparse.Namespace) -> int:
    from onereward.evaluate.stage import import_human

    metrics = import_human(args.evaluation, args.out)
    print(json.dumps({k: metrics.get(k) for k in ("human", "human_gsb")}, indent=2, sort_keys=True))
    return 0
