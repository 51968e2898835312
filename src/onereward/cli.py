"""The ``onereward`` command line. Each area registers its own subcommands.

Every subcommand has ``--help``. Errors in the inputs (bad profile, foreign manifest, missing file)
are reported as one line on stderr with a non-zero exit code, not as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from onereward import __version__

# Modules that expose ``register(subparsers)``; each adds its subcommands with
# ``set_defaults(func=...)`` where func(args) returns an exit code.
AREAS = (
    "onereward.zoo.cli",  # zoo build
    "onereward.synth.cli",  # synth
    "onereward.select.cli",  # select
    "onereward.generate.cli",  # generate
    "onereward.annotate.cli",  # export, simulate-annotations, import
    "onereward.reward.cli",  # train-reward
    "onereward.policy.cli",  # train-policy, policy-references
    "onereward.evaluate.cli",  # evaluate, evaluate-human
    "onereward.pipeline_cli",  # pipeline compile/run/submit, demo, profile
    "onereward.cluster.cli",  # cluster launch-trainjob / delete-trainjobs / validate-trainjob
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onereward",
        description="Multi-task RLHF for mask-guided image generation with one VLM reward model.",
    )
    parser.add_argument("--version", action="version", version=f"onereward {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in AREAS:
        try:
            area = importlib.import_module(module)
        except ModuleNotFoundError as e:
            # An area that is not installed (e.g. a trimmed image) simply has no subcommands;
            # any other import error is a bug and propagates.
            if e.name and module.startswith(e.name):
                continue
            raise
        area.register(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand parser by its full name, e.g. ``"zoo build"``."""
    parser = parser or build_parser()
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    full = f"{prefix} {name}".strip()
                    found[full] = child
                    walk(child, full)

    walk(parser, "")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from onereward.errors import USER_ERRORS

    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"onereward {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
