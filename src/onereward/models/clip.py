"""OpenCLIP image encoder for select_subset: tiny random-weight build and one loader for all sizes.

A model folder holds ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``, the
layout open_clip reads from a hub repo) and ``open_clip_model.safetensors``. The tiny profile's
folder is built here from ``configs/open_clip_onereward-tiny-vit.json`` with seeded random
weights; the full profile points at a mounted folder of a published checkpoint (same layout) or,
where a hub is reachable, at a hub id. :func:`load` goes through open_clip's own
``create_model_and_transforms``/``get_tokenizer`` in every case, so the tiny model exercises the
real loading path.

Published architectures are kept as data in ``configs/open_clip_<arch>.json`` and registered
with ``open_clip.add_model_config`` under ``<arch>`` (e.g. ``ViT-L-14``, ``onereward-tiny-vit``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onereward.errors import InputError

TINY_ARCH = "onereward-tiny-vit"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
_CONFIG_PREFIX = "open_clip_"

_REGISTERED_DIR: Path | None = None


def packaged_config(arch: str) -> dict[str, Any]:
    """The ``{"model_cfg", "preprocess_cfg"}`` of an architecture kept in ``configs/`` (deep copy)."""
    path = CONFIGS_DIR / f"{_CONFIG_PREFIX}{arch}.json"
    if not path.is_file():
        known = sorted(p.stem[len(_CONFIG_PREFIX) :] for p in CONFIGS_DIR.glob(f"{_CONFIG_PREFIX}*.json"))
        raise InputError(f"arch: no open_clip config {path.name} in {CONFIGS_DIR}; known: {', '.join(known)}")
    data = json.loads(path.read_text())
    return {
        "model_cfg": copy.deepcopy(data["model_cfg"]),
        "preprocess_cfg": copy.deepcopy(data["preprocess_cfg"]),
    }


def register_configs() -> list[str]:
    """Register every ``configs/open_clip_<arch>.json`` with ``open_clip.add_model_config``.

    open_clip keys a config file by its stem and wants the model config at the top level, so the
    packaged files (which also carry a preprocess config) are written once per process as
    ``<arch>.json`` into a private temp folder that is then registered. Returns the arch names.
    """
    global _REGISTERED_DIR
    import open_clip

    names = sorted(p.stem[len(_CONFIG_PREFIX) :] for p in CONFIGS_DIR.glob(f"{_CONFIG_PREFIX}*.json"))
    if _REGISTERED_DIR is None or not _REGISTERED_DIR.is_dir():
        folder = Path(tempfile.mkdtemp(prefix="onereward-openclip-configs-"))
        for name in names:
            (folder / f"{name}.json").write_text(json.dumps(packaged_config(name)["model_cfg"]))
        open_clip.add_model_config(folder)
        _REGISTERED_DIR = folder
    return names


def save(model: torch.nn.Module, config: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Save an open_clip model as a folder open_clip's ``local-dir:`` loader reads back.

    ``config`` is ``{"model_cfg": ..., "preprocess_cfg": ...}``. Written into a temp folder beside
    ``out_dir`` and renamed into place, so an interrupted save never leaves a half-written model.
    """
    from safetensors.torch import save_file

    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        payload = {"model_cfg": config["model_cfg"], "preprocess_cfg": config["preprocess_cfg"]}
        (tmp / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        if out.exists():
            backup = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(out, backup)
            os.replace(tmp, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_from_config(config: dict[str, Any], out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Instantiate an open_clip CLIP from ``config`` with seeded random weights and :func:`save` it.

    Used by :func:`build_tiny` and by the real-shape test (published widths, depth cut down).
    The global torch RNG state is restored afterwards.
    """
    import open_clip

    register_configs()
    cfg = copy.deepcopy(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg["model_cfg"])
    return save(model, cfg, out_dir)


def build_tiny(out_dir: str | os.PathLike[str], seed: int = 0) -> None:
    """Build the tiny profile's CLIP (``onereward-tiny-vit``: ViT 2x64, patch 16 at 64 px; text
    2x64; embed 64) with random weights seeded by ``seed`` into ``out_dir``."""
    build_from_config(packaged_config(TINY_ARCH), out_dir, seed=seed)


def _is_local(ref: str) -> bool:
    return os.path.isabs(ref) or ref.startswith(("./", "../", "~")) or os.path.exists(ref)


def load(
    path_or_ref: str | os.PathLike[str], arch: str = "", device: str = "cpu"
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], Callable[..., torch.Tensor]]:
    """Load an open_clip model; returns ``(model in eval mode, image preprocess, tokenizer)``.

    ``path_or_ref`` is one of:

    - a folder with ``open_clip_config.json`` + weights (our tiny build, or a published checkpoint
      downloaded/mounted as a folder): loaded through open_clip's ``local-dir:`` schema;
    - a folder holding only a weights file (e.g. ``open_clip_pytorch_model.bin``): ``arch`` names the
      architecture (``ViT-L-14``) whose config is taken from ``configs/`` or open_clip's registry;
    - a hub id ``org/name`` (only where a hub is reachable; never in tests or the demo).
    """
    import open_clip

    register_configs()
    ref = os.fspath(path_or_ref)
    if _is_local(ref):
        folder = Path(ref).expanduser()
        if not folder.is_dir():
            raise InputError(f"clip model: {folder} is not a folder (expected an open_clip model folder)")
        if (folder / CONFIG_NAME).is_file():
            name = f"local-dir:{folder}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
            tokenizer = open_clip.get_tokenizer(name)
        else:
            weights = sorted(
                p
                for p in folder.iterdir()
                if p.suffix in (".safetensors", ".bin", ".pth", ".pt") and p.is_file()
            )
            if not weights:
                raise InputError(f"clip model: {folder} has neither {CONFIG_NAME} nor a weights file")
            if not arch:
                raise InputError(
                    f"clip model: {folder} has no {CONFIG_NAME}; set the profile's models.clip.arch "
                    f"(e.g. ViT-L-14) to name its architecture"
                )
            if arch not in open_clip.list_models():
                raise InputError(f"clip model: arch {arch!r} is not a known open_clip architecture")
            preferred = [p for p in weights if p.name.startswith("open_clip")] or weights
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=str(preferred[0]), device=device
            )
            tokenizer = open_clip.get_tokenizer(arch)
    else:
        name = f"hf-hub:{ref}"
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    return model, preprocess, tokenizer


def image_size(model: torch.nn.Module) -> int:
    """Input side length of the model's vision tower (pixels)."""
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@torch.inference_mode()
def encode_images(model: torch.nn.Module, pixels: torch.Tensor) -> np.ndarray:
    """L2-normalised image embeddings, float32 [n, embed_dim], of a preprocessed batch [n, 3, H, W]."""
    device = next(model.parameters()).device
    feats = model.encode_image(pixels.to(device), normalize=True)
    return feats.float().cpu().numpy()


@torch.inference_mode()
def encode_texts(
    model: torch.nn.Module, tokenizer: Callable[..., torch.Tensor], texts: list[str]
) -> np.ndarray:
    """L2-normalised text embeddings, float32 [n, embed_dim]."""
    device = next(model.parameters()).device
    feats = model.encode_text(tokenizer(texts).to(device), normalize=True)
    return feats.float().cpu().numpy()


def model_fingerprint(path_or_ref: str | os.PathLike[str], arch: str = "") -> str:
    """Short hash identifying a model's weights and config (keys the embedding cache).

    Hashes the config and every weights file of a local folder; files over 256 MiB contribute
    their size and their first and last 16 MiB (hashing gigabytes on each run would cost more
    than the cache saves; a retrained checkpoint changes these bytes). A hub id hashes its name.
    """
    ref = os.fspath(path_or_ref)
    h = hashlib.sha256(f"arch={arch}\n".encode())
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        h.update(f"ref={ref}".encode())
        return h.hexdigest()[:16]
    chunk = 16 << 20
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix not in (".json", ".safetensors", ".bin", ".pth", ".pt"):
            continue
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with open(p, "rb") as f:
            if size <= 256 << 20:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            else:
                h.update(f.read(chunk))
                f.seek(size - chunk)
                h.update(f.read(chunk))
    return h.hexdigest()[:16]
