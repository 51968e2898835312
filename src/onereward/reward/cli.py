"""``onereward train-reward``: train the VLM reward model on a preferences artifact."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.reward.config import RewardConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-reward`` subcommand."""
    p = subparsers.add_parser(
        "train-reward",
        help="train the VLM reward model (pairwise Yes/No SFT) on a preferences artifact",
        description=(
            "Fine-tune the profile's Qwen2.5-VL reward model to answer 'is the first image better than the "
            "second for this task and dimension?' on both orders of every preference pair (paper Eq. 3). "
            "Splits by item, writes a reward_model artifact (HF folder, query template, report with accuracy "
            "per task x dimension, order consistency and calibration). Rerunning the same command after an "
            "interruption resumes from the newest checkpoint. Multi-GPU: `accelerate launch --config_file "
            "configs/accelerate/ddp.yaml -m onereward.cli train-reward ...`."
        ),
    )
    p.add_argument(
        "--preferences", required=True, help="preferences artifact directory (pairs.parquet + images)"
    )
    p.add_argument("--out", required=True, help="output reward_model artifact directory")
    p.add_argument("--profile", default="tiny", help="tiny, full or a profile YAML path (default: tiny)")
    p.add_argument(
        "--zoo", default=None, help="tiny zoo directory for zoo: references (default: the cached zoo)"
    )
    add_arguments(p, RewardConfig)
    p.set_defaults(func=_train_reward)


def _train_reward(args: argparse.Namespace) -> int:
    from onereward.reward.stage import check_preferences_dir, run

    check_preferences_dir(args.preferences)
    metrics = run(
        args.preferences,
        args.out,
        profile=args.profile,
        zoo=args.zoo,
        **overrides_from_args(args, RewardConfig),
    )
    if not metrics:  # a rank other than 0 of a multi-process run: rank 0 wrote and reports
        return 0
    summary = {k: metrics[k] for k in ("mean_accuracy", "order_consistency", "ece", "accuracy")}
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
