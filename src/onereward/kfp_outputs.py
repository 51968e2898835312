"""Publish a stage's artifact to KFP output objects without importing KFP.

Components call :func:`publish` with the KFP ``Output[...]`` objects (anything with ``.path``,
``.metadata`` and, for metrics, ``.log_metric``): the manifest fields go into the artifact metadata
(lineage in the UI), the stage's ``report.html`` is copied to the HTML output, and scalar metrics
(nested dicts flattened as ``a.b``) are logged to the Metrics output.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from onereward.artifacts import kfp_metadata, read_artifact


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{"a.b": value}`` (bools as 0/1; other leaves dropped)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float)):
            flat[name] = float(value)
    return flat


def publish(artifact: Any, report: Any = None, metrics: Any = None) -> dict[str, Any]:
    """Fill KFP outputs from the artifact directory at ``artifact.path``; returns the metrics dict."""
    manifest = read_artifact(artifact.path, verify_hash=False)
    artifact.metadata.update(kfp_metadata(manifest))
    stage_metrics = manifest.metrics()
    if report is not None:
        src = Path(artifact.path) / "report.html"
        dst = Path(report.path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, dst)
        else:
            dst.write_text(
                f"<html><body><h1>{manifest.producer.get('stage')}</h1><pre>{stage_metrics}</pre></body></html>"
            )
    if metrics is not None:
        for key, value in flatten_metrics(stage_metrics).items():
            metrics.log_metric(key, value)
    return stage_metrics
