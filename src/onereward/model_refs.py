"""One model resolver: a profile's model reference -> a local folder that ``from_pretrained`` reads.

A ``ref`` takes three forms, the same for CLIP, both generator families and the reward VLM:

- ``zoo:<name>``: a model of the tiny zoo (the profile resolves these; see ``Profile.resolve_model``);
- a local (e.g. mounted) folder: an absolute path or one starting ``./``, ``../`` or ``~``;
- a hub id ``org/name``: looked up in the Hugging Face cache (``$HF_HOME``, ``$HF_HUB_CACHE``) and,
  unless ``HF_HUB_OFFLINE=1``, downloaded into it on first use (token: ``$HF_TOKEN``). On a
  cluster the ``import_models`` step fills the cache on the models volume once and every model
  step runs offline against it.

Only the files a loader needs are fetched (:data:`HUB_FILES`): a diffusers pipeline's component
folders but not the repository's single-file checkpoint, safetensors but not duplicate pickles or
fp16 variants. When nothing is found, :class:`~onereward.errors.ProfileError` names the model, the
reference and every place tried.
"""

from __future__ import annotations

import os
from pathlib import Path

from onereward.errors import ProfileError

# Files to fetch per profile model key (fnmatch patterns relative to the repository root).
_DIFFUSERS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]
HUB_FILES: dict[str, list[str]] = {
    "clip": ["open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin", "*.txt"],
    "generator": _DIFFUSERS,
    "generator_sd": _DIFFUSERS,
    "reward_model": ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"],
}
HUB_SKIP = ["*.fp16.safetensors", "*.ckpt", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.gguf"]


def looks_like_path(ref: str) -> bool:
    """True for references that name a local folder rather than a hub id."""
    return ref.startswith(("/", "./", "../", "~"))


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set to a true value: use the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache() -> Path:
    """The Hugging Face hub cache that lookups and downloads use."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_snapshot(repo_id: str, *, key: str, where: str, download: bool | None = None) -> Path:
    """The local snapshot folder of hub model ``repo_id`` (profile model ``key``).

    The cache is tried first (no network); then, when ``download`` (default: not
    ``HF_HUB_OFFLINE``), the hub. ``where`` names the profile field for errors.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = HUB_FILES.get(key)
    if patterns is None:
        raise ProfileError(f"{where}: no hub file list for model {key!r} (known: {', '.join(HUB_FILES)})")
    tried = [f"the Hugging Face cache {hub_cache()}"]
    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=patterns, ignore_patterns=HUB_SKIP, local_files_only=True
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    download = (not hub_offline()) if download is None else download
    if download:
        from huggingface_hub import constants

        tried.append(f"the hub at {constants.ENDPOINT}")
        try:
            return Path(snapshot_download(repo_id, allow_patterns=patterns, ignore_patterns=HUB_SKIP))
        except (HfHubHTTPError, OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            tried[-1] += f" ({reason})"
    else:
        tried.append("not the hub (HF_HUB_OFFLINE is set)")
    raise ProfileError(
        f"{where}: model {repo_id!r} was not found; tried {'; '.join(tried)}. Import it once with "
        "`onereward zoo import-models --profile <profile>` (the import_models pipeline on a cluster), "
        "set HF_HOME to the cache that holds it, or point the ref at a local folder"
    )


def resolve_ref(ref: str, *, key: str, where: str) -> str:
    """A non-zoo reference -> local folder (hub ids through :func:`hub_snapshot`)."""
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            raise ProfileError(f"{where}: model folder {path} does not exist")
        return str(path)
    if ref.count("/") != 1 or any(not part for part in ref.split("/")):
        raise ProfileError(
            f"{where}: {ref!r} is neither zoo:<name>, a local folder (/..., ./..., ~/...) nor a hub id org/name"
        )
    return str(hub_snapshot(ref, key=key, where=where))


def import_models(profile: object) -> dict[str, dict[str, object]]:
    """Download every hub model of ``profile`` into the Hugging Face cache (once; cached files are
    not fetched again) and return, per profile model key, its ref, snapshot folder and size.

    zoo and local references need no import and are listed with ``imported: False``.
    """
    from onereward.log import get_logger
    from onereward.profile import Models, load_profile

    log = get_logger("model_refs")
    prof = load_profile(profile)  # type: ignore[arg-type]
    out: dict[str, dict[str, object]] = {}
    for name in Models.__dataclass_fields__:
        ref = prof.model_ref(name).ref
        if ref.startswith("zoo:") or looks_like_path(ref):
            out[name] = {"ref": ref, "imported": False}
            continue
        where = f"{prof.source}: models.{name}.ref"
        folder = hub_snapshot(ref, key=name, where=where, download=True)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        log.info("imported %s (%s): %.1f MB in %s", name, ref, size / 1e6, folder)
        out[name] = {"ref": ref, "imported": True, "path": str(folder), "bytes": size}
    return out
