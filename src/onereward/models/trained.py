"""Trained weights of the tiny zoo models, shipped with the package (``models/weights/<family>/``).

The tiny zoo's FLUX-Fill and SD-inpainting models are trained on the synthetic world
(:mod:`onereward.generate.train`) and its reward VLM is pretrained on the world's procedurally
degraded pairs (:mod:`onereward.reward.pretrain`) by ``onereward zoo train``, which writes what
this module reads:

- one ``<part>.safetensors`` per trained component (``vae``, ``transformer`` / ``unet``, the text
  encoders: the denoiser was trained against these very embeddings, so they ship too; the reward
  VLM's ``model``);
- ``weights.json``: the family, the architecture (``TinySize`` fields), a generator VAE's
  calibrated ``scaling_factor`` / ``shift_factor``, the storage dtype, the recipe (the training
  settings), a summary of the run (time, held-out scores) and the sha256 of every file.

Weights are stored in ``float16`` (half the bytes; the tiny models sample the same within a level
of 255) and loaded into float32 modules. The architecture is rebuilt from code
(``tiny_components``), so a folder built from these weights is a regular diffusers pipeline folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from onereward.errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
INDEX = "weights.json"
FORMAT_VERSION = 1
# Components whose weights ship, per family (tokenizers and the scheduler are built from code).
PARTS: dict[str, tuple[str, ...]] = {
    "flux_fill": ("vae", "transformer", "text_encoder", "text_encoder_2"),
    "sd_inpaint": ("vae", "unet", "text_encoder"),
    "reward_vlm": ("model",),
}
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def weights_dir(family: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of a family's shipped weights (``root`` overrides the package's ``models/weights``)."""
    if family not in PARTS:
        raise InputError(
            f"family: unknown trained model family {family!r}; expected one of {', '.join(PARTS)}"
        )
    return Path(root) / family if root is not None else WEIGHTS_DIR / family


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_weights(
    components: Mapping[str, Any],
    family: str,
    dest: str | os.PathLike[str],
    *,
    size: Any,
    recipe: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    dtype: str = "float16",
) -> Path:
    """Write the trained parts of ``components`` (a pipeline's components) into ``dest``.

    ``size``: the architecture dataclass (``TinySize``) they were built with; ``recipe``: the
    training settings; ``summary``: figures of the run to keep beside them. Returns ``dest``.
    """
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in PARTS[family]:
        state = {
            k: v.detach().to(_DTYPES[dtype]).contiguous() if v.dtype.is_floating_point else v.contiguous()
            for k, v in components[part].state_dict().items()
        }
        path = dest / f"{part}.safetensors"
        save_file(state, str(path))
        files[part] = _sha256(path)
    index = {
        "format": FORMAT_VERSION,
        "family": family,
        "size": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(size).items()},
        "dtype": dtype,
        "recipe": dict(recipe),
        "summary": dict(summary or {}),
        "files": files,
    }
    if "vae" in components:  # a generator: its VAE's calibrated latent scaling
        vae = components["vae"].config
        index["vae"] = {"scaling_factor": vae.scaling_factor, "shift_factor": vae.shift_factor}
    (dest / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return dest


def read_index(family: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``weights.json`` of a family's shipped weights (InputError when they are missing)."""
    folder = weights_dir(family, root)
    path = folder / INDEX
    if not path.is_file():
        raise InputError(
            f"{family}: no trained weights at {folder} ({INDEX} missing); run `onereward zoo train --install`"
        )
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT_VERSION or index.get("family") != family:
        raise InputError(
            f"{path}: field 'format'/'family' is {index.get('format')}/{index.get('family')}; "
            f"expected {FORMAT_VERSION}/{family}"
        )
    return index


def load_weights(
    components: dict[str, Any],
    family: str,
    root: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
) -> dict[str, Any]:
    """Load a family's shipped weights into ``components`` (in place; float32 modules stay float32)
    and set a generator VAE's calibrated scaling. With ``verify`` each file's sha256 is checked against
    ``weights.json``. Returns the index."""
    from safetensors.torch import load_file

    folder = weights_dir(family, root)
    index = read_index(family, root)
    for part in PARTS[family]:
        path = folder / f"{part}.safetensors"
        if verify and _sha256(path) != index["files"].get(part):
            raise InputError(
                f"{path}: sha256 differs from {folder / INDEX} field 'files.{part}' (corrupt or edited)"
            )
        module = components[part]
        own = module.state_dict()
        state = {k: v.to(own[k].dtype) if k in own else v for k, v in load_file(str(path)).items()}
        module.load_state_dict(state, strict=True)
    if "vae" in index:
        components["vae"].register_to_config(**index["vae"])
    return index


def trained_components(
    family: str, size_cls: Any, make_components: Any, root: str | os.PathLike[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A family's components with its shipped weights: the architecture from ``weights.json``'s
    ``size`` (``size_cls``, lists as tuples), built by ``make_components(seed, size)``, then
    :func:`load_weights`. Returns (components, index)."""
    index = read_index(family, root)
    size = size_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in index["size"].items()})
    components = make_components(int(index["recipe"].get("seed", 0)), size)
    load_weights(components, family, root)
    return components, index


def weights_sha(root: str | os.PathLike[str] | None = None) -> str:
    """Hash of every shipped weights file (part of the zoo's cache key)."""
    base = Path(root) if root is not None else WEIGHTS_DIR
    h = hashlib.sha256()
    for path in sorted(base.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(base)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
