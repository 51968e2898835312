"""``onereward pipeline compile|run|list|submit``, ``onereward demo`` and ``onereward profile``.

The KFP glue (``onereward_kfp``) is imported only when one of these commands runs, so the stage
library itself never imports KFP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="compile, run or submit the KFP pipelines",
        description="Compile the KFP pipelines, run one locally, or submit one to a KFP server.",
    )
    psub = p.add_subparsers(dest="pipeline_command", metavar="PIPELINE_COMMAND")
    psub.required = True
    c = psub.add_parser(
        "compile",
        help="compile every pipeline to YAML",
        description="Compile every pipeline (collect, train, end_to_end) to OUT/<name>.yaml for upload to KFP.",
    )
    c.add_argument("--out", default="pipelines/compiled", help="output folder (default: pipelines/compiled)")
    c.add_argument(
        "--image",
        default=os.environ.get("ONEREWARD_IMAGE") or None,
        help="CPU component image instead of the default (default: $ONEREWARD_IMAGE or the versioned tag)",
    )
    c.add_argument(
        "--gpu-image",
        default=os.environ.get("ONEREWARD_GPU_IMAGE") or None,
        help="GPU component image instead of the default (default: $ONEREWARD_GPU_IMAGE or the versioned tag)",
    )
    c.set_defaults(func=_compile)
    r = psub.add_parser(
        "run",
        help="run a pipeline",
        description=(
            "Run a pipeline locally with kfp.local's SubprocessRunner in this Python environment; leaves "
            "OUT/<stage>/ (artifact + manifest.json + metrics.json) for every stage, OUT/run.json and "
            "OUT/report.html. To run on a cluster, upload the compiled YAML instead."
        ),
    )
    r.add_argument("name", help="pipeline name: collect, train or end_to_end")
    r.add_argument(
        "--local", action="store_true", required=True, help="run locally (the only mode of this command)"
    )
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline parameter (repeatable)"
    )
    r.set_defaults(func=_run)
    ls = psub.add_parser(
        "list", help="list pipelines and their parameters", description="List pipelines and parameters."
    )
    ls.set_defaults(func=_list)
    s = psub.add_parser(
        "submit",
        help="upload a pipeline to Kubeflow Pipelines and start a run",
        description=(
            "Compile pipeline NAME, upload it as a version of the pipeline on the KFP server (idempotent: "
            "the version is named <pipeline>-<sha12 of the spec>, so the same spec is uploaded once), find "
            "or create the experiment, start a run with the parameters and print the run URL. The bearer "
            "token comes from $KF_PIPELINES_TOKEN, the file named by $KF_PIPELINES_SA_TOKEN_PATH, or the "
            "kubeconfig's current user token; none is sent to an open endpoint."
        ),
    )
    s.add_argument("name", help="pipeline name (see `onereward pipeline list`)")
    s.add_argument(
        "--host",
        required=True,
        help="KFP API URL, e.g. https://<kubeflow>/pipeline or http://localhost:8888 (port-forward)",
    )
    s.add_argument(
        "--experiment", default="Default", help="experiment name (created if missing; default: Default)"
    )
    s.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline parameter (repeatable)"
    )
    s.add_argument(
        "--version-name", default=None, help="pipeline version name (default: <pipeline>-<sha12 of the spec>)"
    )
    s.add_argument(
        "--pipeline-name",
        default=None,
        help="pipeline name on the server (default: the spec's pipelineInfo.name)",
    )
    s.add_argument("--run-name", default=None, help="run display name (default: NAME and the UTC time)")
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (needed by multi-user KFP)")
    s.add_argument(
        "--service-account",
        default="onereward-pipeline-runner",
        help="service account of the run's pods, allowed to launch TrainJobs (manifests/base/rbac.yaml; "
        "default: onereward-pipeline-runner; '' = KFP's default)",
    )
    s.add_argument("--ui-host", default=None, help="KFP UI URL for the printed run link (default: --host)")
    s.add_argument(
        "--spec",
        default=None,
        help="upload this compiled YAML instead of compiling NAME (e.g. pipelines/compiled/NAME.yaml)",
    )
    s.add_argument(
        "--image",
        default=os.environ.get("ONEREWARD_IMAGE") or None,
        help="CPU component image when compiling (default: $ONEREWARD_IMAGE or the versioned tag)",
    )
    s.add_argument(
        "--gpu-image",
        default=os.environ.get("ONEREWARD_GPU_IMAGE") or None,
        help="GPU component image when compiling (default: $ONEREWARD_GPU_IMAGE or the versioned tag)",
    )
    s.set_defaults(func=_submit)

    d = sub.add_parser(
        "demo",
        help="run the embedded end-to-end demo (tiny profile)",
        description=(
            "Run the end_to_end pipeline locally on the tiny profile: tiny models, synthetic world, "
            "simulated annotators. Prints where the report is."
        ),
    )
    d.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    d.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline parameter"
    )
    d.set_defaults(func=_demo)

    pr = sub.add_parser(
        "profile", help="show or validate a profile", description="Validate a profile and print it."
    )
    pr.add_argument("name", help="profile name (tiny, full) or YAML path")
    pr.set_defaults(func=_profile)


def _compile(args: argparse.Namespace) -> int:
    from onereward_kfp.pipelines.runner import compile_all

    for path in compile_all(args.out, cpu_image=args.image, gpu_image=args.gpu_image):
        print(path)
    return 0


def _run_pipeline(name: str, out: str, params: dict) -> dict | None:
    from onereward_kfp.pipelines.runner import PipelineFailed, run_local

    try:
        return run_local(name, out, params)
    except PipelineFailed as e:
        print(f"onereward: error: {e}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from onereward_kfp.pipelines.runner import parse_params

    params = parse_params(args.name, args.param)
    summary = _run_pipeline(args.name, args.out, params)
    if summary is None:
        return 1
    print(f"pipeline {args.name}: {len(summary['stages'])} stages in {summary['wall_seconds']:.1f}s")
    print(f"report: {Path(args.out).absolute() / 'report.html'}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from onereward.cluster.submit import KfpApiError, submit
    from onereward_kfp.pipelines.runner import parse_params

    params = parse_params(args.name, args.param)
    try:
        done = submit(
            args.name,
            args.host,
            params,
            experiment=args.experiment,
            version_name=args.version_name,
            pipeline_name=args.pipeline_name,
            run_name=args.run_name,
            namespace=args.namespace,
            service_account=args.service_account,
            ui_host=args.ui_host,
            spec_path=args.spec,
            cpu_image=args.image,
            gpu_image=args.gpu_image,
        )
    except KfpApiError as e:
        print(f"onereward pipeline submit: error: {e}", file=sys.stderr)
        return 1
    what = "uploaded" if done.version_uploaded else "reused"
    print(f"version {done.version_name} ({what}); run {done.run_id}", file=sys.stderr)
    print(done.run_url)
    return 0


def _list(args: argparse.Namespace) -> int:
    from onereward_kfp.pipelines.definitions import PIPELINES
    from onereward_kfp.pipelines.runner import pipeline_parameters

    for name in PIPELINES:
        print(name)
        for pname, p in pipeline_parameters(name).items():
            default = "" if p.default is p.empty else f" = {p.default!r}"
            print(f"  {pname}: {getattr(p.annotation, '__name__', p.annotation)}{default}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from onereward_kfp.pipelines.runner import parse_params

    params = parse_params("end_to_end", args.param)
    params.setdefault("profile", "tiny")
    summary = _run_pipeline("end_to_end", args.out, params)
    if summary is None:
        return 1
    out = Path(args.out).absolute()
    print(f"demo: {len(summary['stages'])} stages in {summary['wall_seconds']:.1f}s")
    for stage, info in summary["stages"].items():
        print(f"  {stage:24s} {info['seconds']:7.2f}s  {out / stage}")
    print(f"report: {out / 'report.html'}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from onereward.profile import load_profile

    prof = load_profile(args.name)
    print(json.dumps({"source": prof.source, "sha": prof.sha, **prof.to_dict()}, indent=2))
    return 0
