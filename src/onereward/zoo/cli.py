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
    i = zsub.add_parser(
        "import-models",
        help="download a profile's hub models into the Hugging Face cache",
        description=(
            "Download every hub model of the profile (e.g. full: FLUX.1-Fill-dev, Qwen2.5-VL-7B-Instruct, "
            "OpenCLIP ViT-L/14) into the Hugging Face cache ($HF_HOME), only the files the loaders need; "
            "files already there are not fetched again. The token comes from $HF_TOKEN. On a cluster "
            "the import_models pipeline runs this into the models volume once."
        ),
    )
    i.add_argument("--profile", default="full", help="profile name (tiny, full) or YAML path (default: full)")
    i.set_defaults(func=_import_models)


def _build(args: argparse.Namespace) -> int:
    from onereward.zoo import build_zoo

    t0 = time.perf_counter()
    manifest = build_zoo(args.profile, args.out, seed=args.seed)
    print(
        f"zoo: {manifest.path} ({manifest.counts.get('n_models_built', 0)} models built in {time.perf_counter() - t0:.1f}s)"
    )
    return 0


def _import_models(args: argparse.Namespace) -> int:
    import json

    from onereward.model_refs import import_models

    print(json.dumps(import_models(args.profile), indent=2))
    return 0
