"""``onereward cluster launch-trainjob | delete-trainjobs | validate-trainjob``."""

from __future__ import annotations

import argparse
import sys

from onereward.cluster.config import TrainJobConfig
from onereward.config import add_arguments, overrides_from_args

EXIT_CANCELLED = 128 + 15  # what a shell reports for a process ended by SIGTERM


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cluster`` and its subcommands."""
    c = subparsers.add_parser(
        "cluster",
        help="distributed training jobs on Kubernetes (Kubeflow Trainer v2 TrainJobs)",
        description="Launch, clean up and validate Kubeflow Trainer v2 TrainJobs for the training stages.",
    )
    csub = c.add_subparsers(dest="cluster_command", metavar="CLUSTER_COMMAND")
    csub.required = True

    lj = csub.add_parser(
        "launch-trainjob",
        help="run a training stage as a TrainJob and wait for it",
        description=(
            "Run `onereward ENTRY_POINT ...` on NUM_NODES x GPUS_PER_NODE processes as a Kubeflow Trainer v2 "
            "TrainJob (runtime torch-distributed): inputs are copied to the shared volume, the job is created "
            "(or, on a retry with the same run and task ids, reattached to), its pods' logs are streamed, a "
            "failure exits 1 with the reason, SIGTERM deletes the job (exit 143), and the output artifact is "
            "copied to --out. Arguments after `--` go to the entry point (settings flags)."
        ),
    )
    lj.add_argument(
        "--entry-point", required=True, help="onereward subcommand the nodes run, e.g. train-reward"
    )
    lj.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="FLAG=DIR",
        help="an input artifact: the entry point's flag (no dashes) and a local directory (repeatable)",
    )
    lj.add_argument(
        "--out", required=True, help="where the stage's output artifact is copied when the job is done"
    )
    lj.add_argument("--output-flag", default="out", help="the entry point's output flag (default: out)")
    lj.add_argument(
        "--checkpoint-flag",
        default=None,
        help="the entry point's checkpoint flag, pointed at the shared volume (e.g. checkpoint-dir)",
    )
    lj.add_argument("--run-id", default="", help="KFP run id (with --task-id, derives the job name)")
    lj.add_argument("--task-id", default="", help="KFP task id")
    lj.add_argument("--name", default="", help="job name instead of the one derived from the ids")
    lj.add_argument(
        "--api-server",
        default="",
        help="Kubernetes API URL, e.g. http://127.0.0.1:8001 (kubectl proxy); bearer token from "
        "$ONEREWARD_KUBE_TOKEN (default: in-cluster service account, else the kubeconfig)",
    )
    lj.add_argument(
        "--dry-run", action="store_true", help="print the TrainJob document (YAML) and exit; needs --image"
    )
    add_arguments(lj, TrainJobConfig, profile_note=False)
    lj.add_argument("stage_args", nargs=argparse.REMAINDER, help="after --: the entry point's settings flags")
    lj.set_defaults(func=_launch)

    dj = csub.add_parser(
        "delete-trainjobs",
        help="delete the unfinished TrainJobs of a KFP run",
        description="Delete the TrainJobs labelled with a KFP run id that have not finished (--all: every one).",
    )
    dj.add_argument("--run-id", required=True, help="KFP run id")
    dj.add_argument("--all", action="store_true", help="also delete finished jobs")
    dj.add_argument("--namespace", default="", help="namespace ('' = own / kubeconfig's)")
    dj.add_argument("--api-server", default="", help="Kubernetes API URL (see launch-trainjob)")
    dj.set_defaults(func=_delete)

    vj = csub.add_parser(
        "validate-trainjob",
        help="check TrainJob YAML documents against the vendored Trainer CRD schema",
        description=(
            "Validate every TrainJob document in the YAML files against the openAPIV3Schema of the vendored "
            "CRD (unknown fields are errors) and its name rules. Other kinds are skipped."
        ),
    )
    vj.add_argument("files", nargs="+", help="YAML files (multi-document allowed)")
    vj.add_argument(
        "--crd", default=None, help="CRD file (default: manifests/vendor/trainer.kubeflow.org_trainjobs.*)"
    )
    vj.set_defaults(func=_validate)


def _launch(args: argparse.Namespace) -> int:
    import yaml

    from onereward.cluster.launch import StageCommand, launch_stage, plan_stage
    from onereward.cluster.trainjob import (
        Cancelled,
        ClusterApiError,
        TrainJobFailed,
        check_name,
        trainjob_name,
    )
    from onereward.errors import InputError

    cfg = TrainJobConfig.resolve(None, overrides_from_args(args, TrainJobConfig))
    inputs = {}
    for item in args.input:
        flag, sep, path = item.partition("=")
        if not sep or not flag or not path:
            raise InputError(f"--input: expected FLAG=DIR, got {item!r}")
        inputs[flag.lstrip("-")] = path
    stage_args = args.stage_args[1:] if args.stage_args[:1] == ["--"] else args.stage_args
    stage = StageCommand(
        entry_point=args.entry_point,
        inputs=inputs,
        args=tuple(stage_args),
        output_flag=args.output_flag,
        checkpoint_flag=args.checkpoint_flag,
    )
    if args.dry_run:
        name = (
            check_name(args.name) if args.name else trainjob_name(args.run_id, args.task_id, args.entry_point)
        )
        doc = plan_stage(
            stage,
            cfg,
            name=name,
            namespace=cfg.namespace or "default",
            image=cfg.image,
            run_id=args.run_id,
            task_id=args.task_id,
        )
        print(yaml.safe_dump(doc, sort_keys=False), end="")
        return 0
    try:
        done = launch_stage(
            stage,
            args.out,
            cfg,
            run_id=args.run_id,
            task_id=args.task_id,
            name=args.name,
            api_server=args.api_server,
        )
    except (TrainJobFailed, ClusterApiError) as e:
        print(f"onereward cluster: error: {e}", file=sys.stderr)
        return 1
    except Cancelled as e:
        print(f"onereward cluster: cancelled ({e}); the trainjob was deleted", file=sys.stderr)
        return EXIT_CANCELLED
    print(f"trainjob {done.handle}: output in {done.output}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from onereward.cluster.trainjob import ClusterApiError, TrainJobApi, delete_run_trainjobs

    try:
        api = TrainJobApi.connect(args.api_server, args.namespace)
        deleted = delete_run_trainjobs(api, args.run_id, finished_too=args.all)
    except ClusterApiError as e:
        print(f"onereward cluster: error: {e}", file=sys.stderr)
        return 1
    for name in deleted:
        print(f"deleted trainjob {api.namespace}/{name}")
    if not deleted:
        print(f"no trainjob of run {args.run_id} to delete in {api.namespace}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from onereward.cluster.trainjob import KIND, VENDORED_CRD, validate_trainjob
    from onereward.errors import InputError

    crd = args.crd or VENDORED_CRD
    for path in args.files:
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({type(e).__name__})") from None
        jobs = [d for d in docs if d.get("kind") == KIND]
        for i, doc in enumerate(jobs):
            name = (doc.get("metadata") or {}).get("name", f"#{i}")
            validate_trainjob(doc, crd, what=f"{path}: TrainJob {name}")
        print(f"{path}: {len(jobs)} TrainJob document(s) valid, {len(docs) - len(jobs)} other(s) skipped")
    return 0
