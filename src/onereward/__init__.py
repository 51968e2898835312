"""onereward: multi-task RLHF for mask-guided image generation with one VLM reward model.

The stage logic lives here and never imports KFP; the KFP components in ``components/`` are thin
wrappers around the ``run`` functions of each stage package.
"""

__version__ = "0.1.0"
