"""Compile every pipeline, and run one locally with ``kfp.local.SubprocessRunner(use_venv=False)``.

A local run leaves, for every stage, ``OUT/<stage_name>/`` holding that stage's artifact (with
``manifest.json`` and ``metrics.json``), plus ``OUT/run.json`` (parameters, per-stage timings and
metrics) and ``OUT/report.html`` (one page linking every stage's report). KFP's own pipeline root
is kept under ``OUT/.kfp/`` for debugging.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from pathlib import Path
from typing import Any

from onereward.artifacts import read_artifact, write_json_atomic
from onereward.errors import InputError
from onereward.log import get_logger
from onereward.report import html_table, write_html_report

log = get_logger("pipeline")


def compile_all(
    out_dir: str | os.PathLike[str], *, cpu_image: str | None = None, gpu_image: str | None = None
) -> list[Path]:
    """Compile every pipeline to ``out_dir/<name>.yaml``; returns the written paths.

    ``cpu_image`` / ``gpu_image`` replace the default component images (components/images.py) in
    the written YAML; the defaults never depend on the environment, so the committed specs stay
    reproducible whatever a developer compiles elsewhere.
    """
    from kfp import compiler

    from onereward_kfp.components.images import CPU_IMAGE, GPU_IMAGE
    from onereward_kfp.pipelines.definitions import PIPELINES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    swap = {k: v for k, v in ((CPU_IMAGE, cpu_image), (GPU_IMAGE, gpu_image)) if v and v != k}
    for image in swap.values():
        if any(c.isspace() for c in image) or not image:
            raise InputError(f"--image: expected an image reference such as registry/name:tag, got {image!r}")
    written = []
    for name, fn in PIPELINES.items():
        target = out / f"{name}.yaml"
        tmp = out / f".{name}.tmp.yaml"
        compiler.Compiler().compile(pipeline_func=fn, package_path=str(tmp))
        if swap:
            text = tmp.read_text()
            for old, new in swap.items():
                text = text.replace(f"image: {old}\n", f"image: {new}\n")
            tmp.write_text(text)
        os.replace(tmp, target)
        written.append(target)
    return written


def pipeline_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Typed parameters of pipeline ``name`` (from its Python signature)."""
    from onereward_kfp.pipelines.definitions import PIPELINES

    if name not in PIPELINES:
        raise InputError(f"pipeline: unknown pipeline {name!r}; expected one of {', '.join(PIPELINES)}")
    return dict(inspect.signature(PIPELINES[name].pipeline_func).parameters)


def parse_params(name: str, pairs: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into typed pipeline arguments (errors name the key)."""
    params = pipeline_parameters(name)
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--param: expected key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        if key not in params:
            raise InputError(
                f"--param {key}: pipeline {name!r} has no parameter {key!r}; known: {', '.join(params)}"
            )
        typ = params[key].annotation
        typ = (
            {"int": int, "float": float, "bool": bool, "str": str}.get(typ, typ)
            if isinstance(typ, str)
            else typ
        )
        try:
            if typ is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                out[key] = raw.lower() in ("true", "1", "yes")
            elif typ in (int, float):
                out[key] = typ(raw)
            else:
                out[key] = raw
        except ValueError as e:
            raise InputError(f"--param {key}: expected {getattr(typ, '__name__', typ)}, got {raw!r}") from e
    return out


class PipelineFailed(RuntimeError):
    """A task of a local pipeline run failed (its log was printed above)."""


def check_params(name: str, params: dict[str, Any]) -> None:
    """Validate arguments before anything runs: required parameters present, the profile loads."""
    from onereward.profile import load_profile

    for pname, p in pipeline_parameters(name).items():
        if p.default is p.empty and pname not in params:
            raise InputError(f"--param {pname}: pipeline {name!r} needs it (no default)")
    if "profile" in params:
        load_profile(params["profile"])  # ProfileError names the file and key


def run_local(
    name: str, out_dir: str | os.PathLike[str], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run pipeline ``name`` locally and collect each stage's artifact under ``out_dir/<stage>``."""
    from kfp import local

    from onereward_kfp.pipelines.definitions import (
        PIPELINES,
        STAGE_NAMES,
        STAGE_ORDER,
        STAGE_OUTPUTS,
        local_environment,
    )

    params = dict(params or {})
    check_params(name, params)
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    # Stage folders of an earlier run into the same OUT would look like this run's: remove them
    # (only our own artifacts and run summaries), so a failed run never leaves stale stages behind.
    for stage in STAGE_ORDER:
        if (out / stage / "manifest.json").is_file():
            shutil.rmtree(out / stage)
    for leftover in ("run.json", "report.html"):
        (out / leftover).unlink(missing_ok=True)
    kfp_root = out / ".kfp"
    kfp_root.mkdir(exist_ok=True)
    before = {p.name for p in kfp_root.iterdir()}
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(kfp_root), raise_on_error=True
    )
    log.info("running pipeline %s locally into %s with %s", name, out, params or "defaults")
    t0 = time.perf_counter()
    try:
        with local_environment(PIPELINES[name]):
            PIPELINES[name](**params)
    except RuntimeError as e:
        text = _plain(str(e))
        failed = (
            text.split("Inner task failed:")[-1].strip().rstrip(".") if "Inner task failed" in text else text
        )
        raise PipelineFailed(
            f"pipeline {name}: task {failed} failed (its log is above; task outputs under {kfp_root})"
        ) from e
    wall = time.perf_counter() - t0
    new_runs = sorted(
        (p for p in kfp_root.iterdir() if p.name not in before and p.is_dir()),
        key=lambda p: p.stat().st_mtime,
    )
    if not new_runs:
        raise RuntimeError(f"kfp.local wrote no run directory under {kfp_root}")
    run_dir = new_runs[-1]
    stages: dict[str, Any] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        task = task_dir.name.replace("-", "_")
        output = STAGE_OUTPUTS.get(task)
        if output is None or not (task_dir / output).is_dir():
            continue  # helper tasks, and the shards inside for-loop folders (merged afterwards)
        stage = STAGE_NAMES.get(task, task)
        target = out / stage
        tmp = out / f".{stage}.collect.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(task_dir / output, tmp, symlinks=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        manifest = read_artifact(target, what=f"stage {stage}")
        stages[stage] = {
            "kind": manifest.kind,
            "content_hash": manifest.content_hash,
            "timings": manifest.timings,
            "seconds": stage_seconds(manifest.timings),
            "counts": manifest.counts,
            "metrics": manifest.metrics(),
        }
    stages = {
        s: stages[s] for s in sorted(stages, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else 99)
    }
    summary = {
        "pipeline": name,
        "parameters": params,
        "wall_seconds": round(wall, 2),
        "kfp_run_dir": str(run_dir),
        "stages": stages,
    }
    write_json_atomic(out / "run.json", summary)
    _write_run_report(out, summary)
    log.info("pipeline %s finished in %.1fs; %d stages under %s", name, wall, len(stages), out)
    return summary


def stage_seconds(timings: dict[str, float]) -> float:
    """A stage's seconds from its manifest timings: the artifact writer's ``total_s``, or the sum of
    the stage's named phases when those began before the writer did (e.g. model loading)."""
    phases = sum(v for k, v in timings.items() if k != "total_s" and not k.startswith("build_"))
    return round(max(timings.get("total_s", 0.0), phases), 2)


def _plain(text: str) -> str:
    """Drop terminal colour codes that kfp puts around task names."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _write_run_report(out: Path, summary: dict[str, Any]) -> Path:
    rows = []
    for stage, info in summary["stages"].items():
        metrics = {k: v for k, v in info["metrics"].items() if not isinstance(v, (dict, list))}
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:8]
        )
        link = (
            f'<a href="{stage}/report.html">{stage}</a>' if (out / stage / "report.html").exists() else stage
        )
        rows.append([link, info["kind"], f"{info['seconds']:.2f}", shown])
    body = html_table(["stage", "artifact", "seconds", "metrics"], rows)
    params = html_table(
        ["parameter", "value"], [[k, v] for k, v in summary["parameters"].items()] or [["(defaults)", ""]]
    )
    sections = [("Stages", body), ("Parameters", params)]
    # The evaluation's headline (GSB bars of the policy against the base, a base | policy grid)
    # opens the run's report when the pipeline evaluated.
    headline = out / "evaluate" / "headline.html"
    if headline.is_file():
        link = '<p><a href="evaluate/report.html">the full evaluation report</a></p>'
        sections.insert(0, ("Evaluation: policy vs base", headline.read_text() + link))
    return write_html_report(
        out / "report.html",
        f"onereward pipeline {summary['pipeline']} ({summary['wall_seconds']:.1f}s)",
        sections,
    )
