"""Model families, one module each: ``build_tiny(out_dir, seed)`` builds a tiny random-weight model
from a config and saves it in HF format; ``load(path, ...)`` loads it (or a full checkpoint) through
the same ``from_pretrained`` code. ``configs/`` keeps the published configurations of the
full-size architectures for the real-shape tests."""
