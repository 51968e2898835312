"""The tiny model zoo: every model of the tiny profile built from configs with seeded random weights.

``build_zoo(profile, out)`` calls each family's ``build_tiny`` (``onereward.models.*``) into
``out/<name>`` and writes a ``zoo`` artifact; every model is then loaded back through the same
``from_pretrained(local_dir)`` code the full profile uses. For a profile whose models are not
``zoo:`` references (``full``) the zoo artifact only records the resolved references.

``ensure_zoo(profile)`` builds the zoo once into a cache directory keyed by the profile's hash
(``$ONEREWARD_CACHE`` or ``~/.cache/onereward``) and reuses it afterwards.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import time
from pathlib import Path
from typing import Any

from onereward.artifacts import ArtifactError, ArtifactWriter, Manifest, read_artifact, write_json_atomic
from onereward.log import get_logger
from onereward.profile import Profile, load_profile

log = get_logger("zoo")

# zoo folder name -> (profile model key, module with build_tiny/load)
ZOO_MODELS: dict[str, tuple[str, str]] = {
    "clip": ("clip", "onereward.models.clip"),
    "flux_fill": ("generator", "onereward.models.flux_fill"),
    "sd_inpaint": ("generator_sd", "onereward.models.sd_inpaint"),
    "reward_vlm": ("reward_model", "onereward.models.reward_vlm"),
}


def code_sha() -> str:
    """Hash of the code and packaged configs that build the tiny models (and the package version):
    part of the zoo cache key, so changing a builder never reuses a stale cached zoo."""
    from onereward import __version__

    models_dir = Path(__file__).resolve().parents[1] / "models"
    h = hashlib.sha256(__version__.encode())
    for p in sorted([*models_dir.glob("*.py"), *models_dir.glob("configs/*")]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """Root of onereward's caches (``$ONEREWARD_CACHE`` or ``~/.cache/onereward``)."""
    return Path(os.environ.get("ONEREWARD_CACHE", Path.home() / ".cache" / "onereward"))


def build_zoo(profile: str | Profile, out: str | os.PathLike[str], *, seed: int = 0) -> Manifest:
    """Build (tiny) or record (full) every model of ``profile`` into the zoo artifact ``out``."""
    prof = load_profile(profile)
    params: dict[str, Any] = {
        "profile": prof.name,
        "profile_sha": prof.sha,
        "models_sha": prof.models_sha,
        "code_sha": code_sha(),
        "seed": seed,
    }
    with ArtifactWriter(out, kind="zoo", stage="build_zoo", parameters=params) as art:
        models: dict[str, Any] = {}
        for folder, (key, module_name) in ZOO_MODELS.items():
            ref = prof.model_ref(key)
            if ref.ref.startswith("zoo:"):
                if ref.ref[4:] != folder:
                    raise ArtifactError(
                        f"{prof.source}: models.{key}.ref: expected 'zoo:{folder}', got {ref.ref!r}"
                    )
                module = importlib.import_module(module_name)
                t0 = time.perf_counter()
                module.build_tiny(art.path / folder, seed=seed)
                secs = time.perf_counter() - t0
                art.timings[f"build_{folder}_s"] = round(secs, 3)
                n_bytes = sum(p.stat().st_size for p in (art.path / folder).rglob("*") if p.is_file())
                models[folder] = {"profile_key": key, "ref": ref.ref, "built": True, "bytes": n_bytes}
                log.info("built %s in %.2fs (%.1f MB)", folder, secs, n_bytes / 1e6)
            else:
                models[folder] = {"profile_key": key, "ref": ref.ref, "built": False}
        write_json_atomic(art.path / "zoo.json", {"profile": prof.to_dict(), "models": models})
        art.counts["n_models_built"] = sum(1 for m in models.values() if m["built"])
        art.metrics.update(
            {
                "n_models_built": art.counts["n_models_built"],
                "build_seconds": round(sum(v for k, v in art.timings.items() if k.startswith("build_")), 3),
            }
        )
    assert art.manifest is not None
    return art.manifest


def ensure_zoo(profile: str | Profile, *, seed: int = 0) -> Path:
    """Path of the cached zoo for ``profile`` (built on first use, under a file lock)."""
    prof = load_profile(profile)
    root = cache_root() / "zoo"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prof.name}-{prof.models_sha}-{code_sha()}-seed{seed}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.exists():
                try:
                    read_artifact(target, kind="zoo", what="zoo cache")
                    return target
                except ArtifactError as e:
                    log.warning("rebuilding the zoo cache: %s", e)
            log.info("building the %s zoo into %s (once; cached by profile hash)", prof.name, target)
            build_zoo(prof, target, seed=seed)
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_VERIFIED: dict[tuple[str, float], str] = {}


def verify_zoo(profile: str | Profile, zoo: str | os.PathLike[str]) -> Manifest:
    """Check that ``zoo`` is an intact zoo artifact built for this profile's models.

    Verifies kind, schema and content hash (once per process and manifest) and that the zoo's
    recorded ``models_sha`` matches the profile's ``models`` section.
    """
    prof = load_profile(profile)
    mpath = Path(zoo) / "manifest.json"
    key = (str(Path(zoo).resolve()), mpath.stat().st_mtime if mpath.exists() else 0.0)
    manifest = read_artifact(zoo, kind="zoo", verify_hash=key not in _VERIFIED, what="--zoo")
    _VERIFIED[key] = manifest.content_hash
    built_for = manifest.parameters.get("models_sha")
    if built_for is not None and built_for != prof.models_sha:
        raise ArtifactError(
            f"--zoo: {mpath} field 'producer.parameters.models_sha' is {built_for}, but profile "
            f"{prof.name!r} ({prof.source}) has models {prof.models_sha}: the zoo was built for another profile"
        )
    return manifest


def zoo_manifest(profile: str | Profile, zoo: str | os.PathLike[str] | None) -> Manifest:
    """The zoo a stage uses (explicit, or the cached one), verified: for the stage's ``inputs``."""
    prof = load_profile(profile)
    return verify_zoo(prof, zoo) if zoo else read_artifact(ensure_zoo(prof), kind="zoo", verify_hash=False)


def zoo_dir_for(profile: str | Profile, zoo: str | os.PathLike[str] | None) -> Path | None:
    """Validate an explicit zoo artifact dir (or return None to let profiles use the cache)."""
    if zoo is None or str(zoo) == "":
        return None
    verify_zoo(profile, zoo)
    return Path(zoo)
