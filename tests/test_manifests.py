"""Kubernetes manifests, validated offline: every kustomize overlay renders (kubectl kustomize) with
its own namespace, the core kinds pass kubernetes-validate --strict, Secret templates hold no
secrets, the Label Studio chart is pinned. (No API server can run here; TrainJob documents are
checked against the vendored Trainer CRD schema in tests/test_cluster_trainjob.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
OVERLAYS = sorted(p.parent for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))


def _render(overlay: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, (
        "kubectl is needed to render the overlays: scripts/setup.sh installs Debian's kubernetes-client"
    )
    run = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def test_there_are_overlays_and_the_base_sets_no_namespace() -> None:
    assert len(OVERLAYS) >= 2
    for path in (MANIFESTS / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                assert "namespace" not in doc.get("metadata", {}), path


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_into_its_namespace_and_passes_strict_validation(
    overlay: Path, tmp_path: Path
) -> None:
    docs = _render(overlay)
    namespace = yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("PersistentVolumeClaim", "onereward-artifacts"),
        ("PersistentVolumeClaim", "onereward-checkpoints"),
        ("PersistentVolumeClaim", "onereward-models"),
        ("Role", "onereward-training"),
        ("RoleBinding", "onereward-training"),
        ("ServiceAccount", "onereward-pipeline-runner"),
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {namespace}
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "onereward-pipeline-runner", "namespace": namespace}
    ]
    role = next(d for d in docs if d["kind"] == "Role")
    trainjobs = next(r for r in role["rules"] if "trainjobs" in r["resources"])
    assert {"create", "get", "watch", "delete"} <= set(trainjobs["verbs"])
    rendered = tmp_path / f"{overlay.name}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    run = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.31.0", str(rendered)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed") == len(docs)


def test_secret_templates_are_valid_and_hold_no_secrets() -> None:
    templates = sorted((MANIFESTS / "secrets").glob("*.template.yaml"))
    assert {p.name for p in templates} >= {
        "label-studio-api.template.yaml",
        "onereward-s3.template.yaml",
        "huggingface-token.template.yaml",
    }
    run = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.31.0", *map(str, templates)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for path in [*templates, MANIFESTS / "label-studio" / "secrets.template.yaml"]:
        for doc in yaml.safe_load_all(path.read_text()):
            for key, value in (doc.get("stringData") or {}).items():
                assert re.fullmatch(r"<[^<>]+>", value), (
                    f"{path.name}: {key} holds a value, not a placeholder"
                )
            assert "data" not in doc, path


def test_label_studio_chart_and_app_versions_are_pinned() -> None:
    readme = (MANIFESTS / "label-studio" / "README.md").read_text()
    assert "heartex/label-studio --version 2.0.8" in readme
    values = yaml.safe_load((MANIFESTS / "label-studio" / "values.yaml").read_text())
    installed = re.search(
        r"LABEL_STUDIO_VERSION:-([0-9.]+)", (REPO / "scripts" / "install_label_studio.sh").read_text()
    )
    assert values["global"]["image"]["tag"] == installed.group(1)  # the version the tests run against
