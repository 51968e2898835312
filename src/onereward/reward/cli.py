"""``onereward train-reward``: train the VLM reward model on a preferences artifact."""

from __future__ import annotations

import argparse
import json


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
    p.add_argument(
        "--max-steps", type=int, default=None, help="training steps (default: the profile's reward.max_steps)"
    )
    p.add_argument(
        "--finetune",
        choices=("full", "lora"),
        default=None,
        help="full fine-tune or LoRA (default: the profile's)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="queries per step = 2 x pairs (default: the profile's)"
    )
    p.add_argument(
        "--learning-rate", type=float, default=None, help="AdamW learning rate (default: the profile's)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the pair order and training (default: 0)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of items per task held out (default: 0.2)"
    )
    p.add_argument(
        "--context-images",
        action="store_true",
        help="also show source and mask to the model (off in the paper)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="checkpoint every N steps (default: max_steps/4; 0 = never)",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="checkpoints + TensorBoard logs (default: .<out>.checkpoints beside --out)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --checkpoint-dir")
    p.add_argument(
        "--keep-checkpoints", action="store_true", help="keep the checkpoint directory after success"
    )
    p.add_argument(
        "--answer-norm", choices=("yes_no", "vocab"), default="yes_no",
        help="P(Yes) normalised over {Yes, No} (default) or the full vocabulary softmax",
    )  # fmt: skip
    p.set_defaults(func=_train_reward)


def _train_reward(args: argparse.Namespace) -> int:
    from onereward.reward.stage import check_preferences_dir, run

    check_preferences_dir(args.preferences)
    metrics = run(
        args.preferences,
        args.out,
        profile=args.profile,
        zoo=args.zoo,
        max_steps=args.max_steps,
        finetune=args.finetune,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        test_fraction=args.test_fraction,
        context_images=args.context_images,
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir,
        resume=not args.no_resume,
        answer_norm=args.answer_norm,
        keep_checkpoints=args.keep_checkpoints,
    )
    summary = {k: metrics[k] for k in ("mean_accuracy", "order_consistency", "ece", "accuracy")}
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
