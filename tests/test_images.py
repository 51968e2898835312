"""Container images: one Dockerfile with a CPU and a GPU target, base pinned by digest, installs
the tested versions (constraints), OpenShift-safe; component images derived from the package
version; overrides at compile time touch only the written YAML."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from onereward_kfp.components.images import CPU_IMAGE, GPU_IMAGE, VERSION
from onereward_kfp.pipelines.runner import compile_all

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "containers/onereward/Dockerfile").read_text()


def _images(path: Path) -> set[str]:
    spec = next(yaml.safe_load_all(path.read_text()))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def test_component_images_carry_the_package_version_written_once() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version == VERSION
    assert CPU_IMAGE.endswith(f"/onereward:{version}") and GPU_IMAGE.endswith(f"/onereward-gpu:{version}")
    committed = _images(REPO / "pipelines/compiled/end_to_end.yaml")
    assert committed == {CPU_IMAGE, GPU_IMAGE}


def test_image_overrides_change_only_the_written_specs(tmp_path: Path) -> None:
    digest = "registry.example/onereward@sha256:" + "a" * 64
    compile_all(tmp_path, cpu_image=digest, gpu_image="registry.example/onereward-gpu:rc1")
    assert _images(tmp_path / "end_to_end.yaml") == {digest, "registry.example/onereward-gpu:rc1"}
    assert CPU_IMAGE not in (tmp_path / "collect.yaml").read_text()
    # a plain compile afterwards names the defaults again (test_pipelines compares it with the
    # committed specs byte for byte): overrides never leak into a later compile
    compile_all(tmp_path / "plain")
    assert _images(tmp_path / "plain/end_to_end.yaml") == {CPU_IMAGE, GPU_IMAGE}


def test_components_never_pip_install_kfp_at_start() -> None:
    for spec in (REPO / "pipelines/compiled").glob("*.yaml"):
        text = spec.read_text()
        assert "pip install" not in text and "'kfp==" not in text, spec.name


def test_dockerfile_targets_pins_and_openshift_safety() -> None:
    froms = re.findall(r"^FROM (\S+) AS (\w+)", DOCKERFILE, flags=re.MULTILINE)
    assert {stage for _, stage in froms} == {"base", "cpu", "gpu"}
    base_arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, flags=re.MULTILINE).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base_arg)
    cpu = DOCKERFILE.split("FROM base AS cpu")[1].split("FROM base AS gpu")[0]
    assert "download.pytorch.org/whl/cpu" in cpu and "torch==2.14.1+cpu" in cpu
    assert "assert torch.version.cuda is None" in cpu  # the CPU image carries no CUDA payload
    gpu = DOCKERFILE.split("FROM base AS gpu")[1]
    assert "-c containers/constraints.txt" in gpu and "cuda.startswith('13.')" in gpu
    assert "driver >= 580" in DOCKERFILE  # which NVIDIA driver the CUDA 13.0 build needs
    assert "HOME=/home/onereward" in DOCKERFILE and "chmod -R g=u" in DOCKERFILE and "--gid 0" in DOCKERFILE
    assert re.search(r"^USER 1000$", DOCKERFILE, flags=re.MULTILINE)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests/"} <= set(ignored)


def test_constraints_pin_the_tested_versions_of_every_dependency() -> None:
    lines = [
        line
        for line in (REPO / "containers/constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = dict(line.split("==", 1) for line in lines)
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["kfp"] == "2.17.0" and pins["kfp-kubernetes"] == "2.17.0"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["kfp"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in wanted}
    missing = sorted(n for n in names if n not in pins)
    assert not missing, f"containers/constraints.txt lacks {missing}: run scripts/lock.sh"
