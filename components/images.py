"""Container images of the components, in one place, and the component decorators that use them.

The tags carry the package version, written once in pyproject.toml; both images are built from
containers/onereward/Dockerfile (targets ``cpu`` and ``gpu``). The compiled specs name these
defaults; ``onereward pipeline compile --image/--gpu-image`` (or ``ONEREWARD_IMAGE`` /
``ONEREWARD_GPU_IMAGE``) substitutes others, e.g. a private registry or ``name@sha256:...`` digests
for a release, in the compiled YAML only (see pipelines/runner.py ``compile_all``). kfp is
installed in the images, so components never pip-install it at start (``install_kfp_package=False``).
Locally (kfp.local SubprocessRunner) images are ignored and the current Python environment runs the
component.
"""

import functools
from importlib.metadata import version

from kfp import dsl

VERSION = version("onereward-pipeline")
REGISTRY = "ghcr.io/onereward-pipeline"
CPU_IMAGE = f"{REGISTRY}/onereward:{VERSION}"
GPU_IMAGE = f"{REGISTRY}/onereward-gpu:{VERSION}"

# Decorators of every component: ``@cpu_component`` for service and bookkeeping steps,
# ``@gpu_component`` for steps that run models.
cpu_component = functools.partial(dsl.component, base_image=CPU_IMAGE, install_kfp_package=False)
gpu_component = functools.partial(dsl.component, base_image=GPU_IMAGE, install_kfp_package=False)
