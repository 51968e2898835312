"""``onereward zoo build | import-models | train``: build the tiny model zoo (or record a full
profile's references), fill the Hugging Face cache, train the tiny generators."""

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
            "Build every tiny model of the profile from configs and save it in HF format (safetensors) "
            "under OUT/<model>: the generators and the reward VLM with the weights shipped in "
            "onereward/models/weights, CLIP with seeded random weights; for a profile with real "
            "checkpoints, record the resolved references only."
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
    t = zsub.add_parser(
        "train",
        help="train the tiny models on the synthetic world (reproduces the shipped weights)",
        description=(
            "Train the tiny FLUX-Fill and SD-inpainting generators on the synthetic world (each: its VAE as an "
            "autoencoder, then the flow transformer / the UNet) and pretrain the tiny reward VLM on the world's "
            "procedurally degraded pairs, with the recipe of the weights shipped in onereward/models/weights; "
            "export the weights into OUT/weights/<family> and compare them with the shipped ones (same torch "
            "build and thread count: identical). --install replaces the shipped weights. Reports, loss curves "
            "and TensorBoard logs land in OUT/<family>."
        ),
    )
    t.add_argument("--out", required=True, help="output directory (runs, reports, exported weights)")
    t.add_argument(
        "--family",
        choices=("flux_fill", "sd_inpaint", "reward_vlm", "all"),
        default="all",
        help="which model to train (default: all)",
    )
    t.add_argument("--install", action="store_true", help="copy the new weights into the package")
    t.add_argument(
        "--steps",
        type=int,
        default=None,
        help="override the recipe's denoiser / reward SFT steps (a quick check; the weights then differ from "
        "the shipped ones)",
    )
    t.add_argument("--vae-steps", type=int, default=None, help="override the recipe's autoencoder steps")
    t.add_argument("--items", type=int, default=None, help="override the recipe's synthetic training items")
    t.add_argument(
        "--vlm-items", type=int, default=None, help="override the reward VLM recipe's synthetic items"
    )
    t.add_argument(
        "--holdout", type=int, default=None, help="override the recipe's held-out items (0 = none)"
    )
    t.set_defaults(func=_train)


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


def _train(args: argparse.Namespace) -> int:
    import json

    from onereward.models import trained
    from onereward.zoo.train import MODELS, compare_weights, train_zoo_generators, train_zoo_reward_vlm

    families = MODELS if args.family == "all" else (args.family,)
    given = {
        "steps": args.steps,
        "vae_steps": args.vae_steps,
        "train_items": args.items,
        "holdout_items": args.holdout,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    t0 = time.perf_counter()
    summary = train_zoo_generators(args.out, families=families, install=args.install, overrides=overrides)
    if "reward_vlm" in families:
        vlm = {"steps": args.steps, "items": args.vlm_items}
        vlm_overrides = {k: v for k, v in vlm.items() if v is not None}
        summary.update(train_zoo_reward_vlm(args.out, install=args.install, overrides=vlm_overrides))
    for family, info in summary.items():
        shipped = trained.weights_dir(family)
        if (shipped / trained.INDEX).is_file() and not args.install:
            info["compared_with_shipped"] = compare_weights(family, info["weights"], shipped)
    print(json.dumps(summary, indent=1, default=str))
    print(
        f"zoo train: {', '.join(summary)} in {time.perf_counter() - t0:.0f}s; weights in {args.out}/weights"
    )
    return 0
