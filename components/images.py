"""Container images of the components, in one place.

Pin by digest for a release (``image@sha256:...``); ``ONEREWARD_IMAGE`` / ``ONEREWARD_GPU_IMAGE``
override them when compiling (e.g. for a private registry). Locally (kfp.local SubprocessRunner)
images are ignored and the current Python environment runs the component.
"""

import os

CPU_IMAGE = os.environ.get("ONEREWARD_IMAGE", "ghcr.io/onereward-pipeline/onereward:0.1.0")
GPU_IMAGE = os.environ.get("ONEREWARD_GPU_IMAGE", "ghcr.io/onereward-pipeline/onereward-gpu:0.1.0")
