"""CLI subcommands of the annotation stages: ``export``, ``simulate-annotations``, ``import``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Kept here (not imported from annotate.client) so `onereward --help` does not import the
# Label Studio SDK (about 2 s); tests check they equal the client's.
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"


def _print(metrics: dict) -> int:
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    from onereward.annotate.stage import run_export

    return _print(
        run_export(
            args.candidates,
            args.out,
            label_studio_url=args.label_studio_url,
            document_root=args.document_root,
            image_url_prefix=args.image_url_prefix,
            s3_endpoint=args.s3_endpoint,
            project_title=args.project_title,
            project_version=args.project_version,
            chunk_size=args.chunk_size,
            predictions=args.predictions,
            reward_model=args.reward_model,
            overlap=args.overlap,
        )
    )


def _simulate(args: argparse.Namespace) -> int:
    from onereward.annotate.stage import run_simulate

    out = args.out or str(
        Path(args.project.rstrip("/")).with_name(Path(args.project.rstrip("/")).name + "-annotations")
    )
    return _print(
        run_simulate(
            args.project,
            out,
            noise=args.noise,
            threshold=args.threshold,
            annotators=args.annotators,
            seed=args.seed,
        )
    )


def _import(args: argparse.Namespace) -> int:
    from onereward.annotate.stage import run_import

    return _print(run_import(args.project, args.out))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``, ``simulate-annotations`` and ``import`` to the ``onereward`` CLI."""
    token_note = f"The API token is read from {TOKEN_ENV} (never from a flag)."
    p = sub.add_parser(
        "export",
        help="export_annotations: put candidates into Label Studio (best/worst per dimension)",
        description="Create or reuse Label Studio projects (one per dimension set, titled "
        "'<title> <version> [<set>]') and import one task per item; reruns add no duplicate tasks. "
        "Without --label-studio-url the task list is written offline (tasks.json). " + token_note,
    )
    p.add_argument("--candidates", required=True, help="candidates artifact directory")
    p.add_argument("--out", required=True, help="output project artifact directory")
    p.add_argument(
        "--label-studio-url", default="", help="Label Studio URL, e.g. http://127.0.0.1:8080 ('' = offline)"
    )
    p.add_argument(
        "--document-root",
        default="",
        help=f"Label Studio's local-files document root (default: ${DOCUMENT_ROOT_ENV}); images are copied under it",
    )
    p.add_argument(
        "--image-url-prefix",
        default="",
        help="serve images from cloud storage instead: s3://bucket/prefix (uploaded by export with "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; MinIO with --s3-endpoint) or gs://bucket/prefix (sync the "
        "artifact's overlays/ and candidates/ there yourself)",
    )
    p.add_argument("--s3-endpoint", default="", help="S3 endpoint for MinIO/S3-compatible stores ('' = AWS)")
    p.add_argument("--project-title", default="onereward", help="project title (default: onereward)")
    p.add_argument(
        "--project-version", default="v1", help="project version; same title+version = same project"
    )
    p.add_argument("--chunk-size", type=int, default=500, help="tasks per import request (default 500)")
    p.add_argument(
        "--predictions",
        choices=("none", "oracle", "reward_model"),
        default="none",
        help="pre-annotations shown to annotators (default none)",
    )
    p.add_argument("--reward-model", default="", help="reward_model artifact for --predictions reward_model")
    p.add_argument("--overlap", type=int, default=1, help="annotators per task in new projects (default 1)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "simulate-annotations",
        help="simulate_annotations: oracle-driven annotators answer the tasks (API or offline)",
        description="Answer every task of a project with simulated annotators: oracle scores plus Gaussian noise, "
        "best = highest, worst = lowest, 'No clear difference' under --threshold. With a server (URL in the "
        "project) answers go through the API; offline an export.json is written. " + token_note,
    )
    p.add_argument("--project", required=True, help="project artifact from `onereward export`")
    p.add_argument("--out", default="", help="output annotations artifact (default: <project>-annotations)")
    p.add_argument(
        "--noise", type=float, default=0.0, help="std of Gaussian noise on oracle scores (default 0)"
    )
    p.add_argument("--threshold", type=float, default=0.02, help="'No clear difference' below this spread")
    p.add_argument("--annotators", type=int, default=1, help="simulated annotators per task (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser(
        "import",
        help="import_annotations: validate, merge and write winner/loser preference pairs",
        description="Read the annotations (from the server named in the project, or an offline export.json), "
        "validate each against the labeling config, drop cancelled/'no clear difference'/best==worst answers, "
        "merge annotators by majority and report agreement. " + token_note,
    )
    p.add_argument("--project", required=True, help="project or annotations artifact")
    p.add_argument("--out", required=True, help="output preferences artifact directory")
    p.set_defaults(func=_import)
