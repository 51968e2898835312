"""CLI subcommands of the annotation stages: ``export``, ``simulate-annotations``, ``import``.

The stage settings are flags derived from :mod:`onereward.annotate.config` (one per field); the
inputs and outputs (``--candidates``, ``--project``, ``--out``) are written here. The API token is
never a flag: it is read from ``LABEL_STUDIO_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onereward.annotate.config import ExportConfig, ImportConfig, SimulateConfig
from onereward.config import add_arguments, overrides_from_args

# Kept here (not imported from annotate.client) so `onereward --help` does not import the
# Label Studio SDK (about 2 s); tests check they equal the client's.
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"


def _print(metrics: dict) -> int:
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    from onereward.annotate.export import run_export

    return _print(run_export(args.candidates, args.out, **overrides_from_args(args, ExportConfig)))


def _simulate(args: argparse.Namespace) -> int:
    from onereward.annotate.simulate import run_simulate

    project = Path(args.project.rstrip("/"))
    out = args.out or str(project.with_name(project.name + "-annotations"))
    return _print(run_simulate(args.project, out, **overrides_from_args(args, SimulateConfig)))


def _import(args: argparse.Namespace) -> int:
    from onereward.annotate.importer import run_import

    return _print(run_import(args.project, args.out, **overrides_from_args(args, ImportConfig)))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``, ``simulate-annotations`` and ``import`` to the ``onereward`` CLI."""
    token_note = f"The API token is read from {TOKEN_ENV} (never from a flag)."
    p = sub.add_parser(
        "export",
        help="export_annotations: put candidates into Label Studio (best/worst per dimension)",
        description="Create or reuse Label Studio projects (one per dimension set, titled "
        "'<title> <version> [<set>]') and import one task per item; reruns add no duplicate tasks. "
        "With --offline instead of a URL the task list is written to tasks.json (a URL or --offline is required: no run creates no tasks silently). Images are served "
        f"from --document-root (default: ${DOCUMENT_ROOT_ENV}) or from --image-url-prefix: s3:// "
        "prefixes are uploaded by export with boto3's credentials (AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY; MinIO with --s3-endpoint), gs:// prefixes must hold the artifact's "
        "overlays/ and candidates/ (sync them yourself). " + token_note,
    )
    p.add_argument("--candidates", required=True, help="candidates artifact directory")
    p.add_argument("--out", required=True, help="output project artifact directory")
    add_arguments(p, ExportConfig)
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
    add_arguments(p, SimulateConfig)
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
    add_arguments(p, ImportConfig)
    p.set_defaults(func=_import)
