"""``onereward train-policy`` and ``onereward policy-references`` subcommands."""

from __future__ import annotations

import argparse
import json

from onereward.config import add_arguments, overrides_from_args
from onereward.policy.config import PolicyConfig

# The settings that shape a reference rollout (policy-references takes only these).
REFERENCE_SETTINGS = (
    "rollout_steps", "cfg_scale", "guidance", "max_sequence_length", "dtype", "seed", "reference_seeds",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the policy subcommands."""
    p = subparsers.add_parser(
        "train-policy",
        help="train_policy: multi-task RL of the generator against the one reward model",
        description=(
            "Fine-tune the profile's FLUX-Fill generator on a subset's conditions with the reward model: "
            "refl (paper Algorithm 1, frozen reference), refl_dynamic (Algorithm 2, EMA reference) or nft "
            "(DiffusionNFT). Writes a policy artifact (LoRA or full weights + EMA, report, curves). A rerun "
            "resumes from the newest checkpoint."
        ),
    )
    p.add_argument("--subset", required=True, help="subset artifact directory (the conditions)")
    p.add_argument("--reward-model", required=True, help="reward_model artifact directory")
    p.add_argument("--out", required=True, help="output policy artifact directory")
    p.add_argument(
        "--references", default=None, help="reference rollouts (from `onereward policy-references`), optional"
    )
    p.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    p.add_argument(
        "--zoo", default=None, help="tiny zoo artifact dir (default: the cached zoo of the profile)"
    )
    add_arguments(p, PolicyConfig)
    p.set_defaults(func=_train)

    r = subparsers.add_parser(
        "policy-references",
        help="pre-generate Algorithm 1's reference rollouts (a mode of generate_candidates)",
        description=(
            "Roll out the frozen base generator once per item of a subset and reference noise seed, with the "
            "policy's rollout settings, into a candidates artifact that `train-policy --references` reads."
        ),
    )
    r.add_argument("--subset", required=True, help="subset artifact directory")
    r.add_argument("--out", required=True, help="output candidates artifact directory")
    r.add_argument("--profile", default="tiny", help="profile name (tiny, full) or YAML path")
    r.add_argument(
        "--zoo", default=None, help="tiny zoo artifact dir (default: the cached zoo of the profile)"
    )
    add_arguments(
        r, PolicyConfig, skip=tuple(f.name for f in PolicyConfig.fields() if f.name not in REFERENCE_SETTINGS)
    )
    r.set_defaults(func=_references)


def _train(args: argparse.Namespace) -> int:
    from onereward.policy.stage import run

    metrics = run(
        args.subset, args.reward_model, args.out, profile=args.profile, zoo=args.zoo,
        references=args.references, **overrides_from_args(args, PolicyConfig),
    )  # fmt: skip
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    print(json.dumps(shown, indent=2, sort_keys=True))
    return 0


def _references(args: argparse.Namespace) -> int:
    from onereward.policy.references import run_references

    overrides = {k: v for k, v in overrides_from_args(args, PolicyConfig).items() if k in REFERENCE_SETTINGS}
    metrics = run_references(args.subset, args.out, profile=args.profile, zoo=args.zoo, **overrides)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2, sort_keys=True))
    return 0
