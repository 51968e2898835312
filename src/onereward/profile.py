"""Profiles: which models, sizes, step counts and batch sizes a run uses, as validated data.

Two profiles ship with the package (``profiles/tiny.yaml`` and ``profiles/full.yaml``); a path to
another YAML file works too. A profile is validated once, when loaded: an unknown key, a wrong type
or a missing model folder gives a :class:`ProfileError` naming the file and the key.

Model references (``models.<name>.ref``) take three forms:

- ``zoo:<name>``: a model of the tiny zoo (built from configs by ``onereward zoo build``),
- an absolute or ``./``-relative path to a local (e.g. mounted) HF-format folder,
- a hub id ``org/name`` (only usable where a hub is reachable; never in tests or the demo).

The code path is the same for every form: the reference resolves to a folder or id that goes
through ``from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from onereward.config import Config
from onereward.errors import ProfileError
from onereward.evaluate.config import EvaluateConfig
from onereward.generate.config import GenerateConfig
from onereward.model_refs import looks_like_path
from onereward.policy.config import PolicyConfig
from onereward.reward.config import RewardConfig
from onereward.select.config import SelectConfig

__all__ = ["BUILTIN_PROFILES", "SECTIONS", "ModelRef", "Models", "Profile", "ProfileError", "load_profile"]

BUILTIN_PROFILES = ("tiny", "full", "full-onereward")


# Sections of a profile: each is the settings class of the stage of the same name, holding the
# profile settings (the defaults of a run); see onereward.config.
SECTIONS: dict[str, type[Config]] = {
    "select": SelectConfig,
    "generate": GenerateConfig,
    "reward": RewardConfig,
    "evaluate": EvaluateConfig,
    "policy": PolicyConfig,
}


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from.

    ref: ``zoo:<name>``, a local folder, or a hub id.
    arch: architecture name where the loader needs one (open_clip model name, e.g. ``ViT-L-14``).
    family: generator family, ``flux_fill`` or ``sd_inpaint``.
    """

    ref: str
    arch: str = ""
    family: str = ""


@dataclass(frozen=True)
class Models:
    """Models a profile uses."""

    clip: ModelRef
    generator: ModelRef  # FLUX.1-Fill-style flow transformer + VAE + CLIP/T5 text encoders
    generator_sd: ModelRef  # SD-inpainting-style UNet (second family)
    reward_model: ModelRef  # Qwen2.5-VL


@dataclass(frozen=True)
class Profile:
    """A validated profile. ``source`` is the file it came from; ``sha`` hashes its content."""

    name: str
    description: str
    image_size: int
    models: Models
    select: SelectConfig = field(default_factory=SelectConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    source: str = ""

    @property
    def is_tiny(self) -> bool:
        """True when every model comes from the tiny zoo."""
        return all(getattr(self.models, f.name).ref.startswith("zoo:") for f in dataclasses.fields(Models))

    def to_dict(self) -> dict[str, Any]:
        """The profile as data: its sections hold their profile settings only."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        for name in SECTIONS:
            data[name] = data[name].profile_dict()
        data["models"] = dataclasses.asdict(self.models)
        return data

    @property
    def sha(self) -> str:
        """Content hash of the profile (keys the tiny zoo cache)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def models_sha(self) -> str:
        """Hash of the ``models`` section only: what a zoo built for this profile depends on."""
        blob = json.dumps(dataclasses.asdict(self.models), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def model_ref(self, name: str) -> ModelRef:
        if name not in {f.name for f in dataclasses.fields(Models)}:
            raise ProfileError(f"{self.source}: models.{name}: no such model in the profile")
        return getattr(self.models, name)

    def resolve_model(self, name: str, zoo_dir: str | os.PathLike[str] | None = None) -> str:
        """The local folder to pass to ``from_pretrained`` for model ``name``.

        ``zoo:`` references resolve against ``zoo_dir``; when it is None the tiny zoo is built once
        into the cache (see :func:`onereward.zoo.ensure_zoo`). Local paths must exist. Hub ids
        resolve to their snapshot in the Hugging Face cache, downloaded first unless
        ``HF_HUB_OFFLINE`` is set (:mod:`onereward.model_refs`).
        """
        ref = self.model_ref(name).ref
        if ref.startswith("zoo:"):
            from onereward.zoo import ensure_zoo, verify_zoo

            if zoo_dir is None:
                zoo_dir = ensure_zoo(self)
            else:
                verify_zoo(self, zoo_dir)
            path = Path(zoo_dir) / ref[4:]
            if not path.exists():
                raise ProfileError(
                    f"{self.source}: models.{name}.ref is {ref!r} but {path} does not exist "
                    f"(build the zoo with `onereward zoo build --profile {self.name} --out DIR`)"
                )
            return str(path)
        from onereward.model_refs import resolve_ref

        return resolve_ref(ref, key=name, where=f"{self.source}: models.{name}.ref")


def _check(value: Any, typ: Any, where: str) -> Any:
    """Validate ``value`` against a (simple) type annotation; return the converted value."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except ProfileError as e:
                errors.append(str(e))
        raise ProfileError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, where)
    if typ is bool:
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: expected true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ProfileError(f"{where}: expected a string, got {value!r}")
        return value
    raise ProfileError(f"{where}: unsupported type {typ}")


def _join(where: str, name: str) -> str:
    """Key path for messages: ``file: a.b`` (``where`` is ``file: `` at the top level)."""
    return f"{where}{name}" if not where or where.endswith(": ") else f"{where}.{name}"


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ProfileError(f"{_join(where, unknown[0])}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProfileError(f"{key}: required key is missing")
            continue
        if name in SECTIONS and cls is Profile:
            kwargs[name] = SECTIONS[name].from_profile_section(data[name], key)
        else:
            kwargs[name] = _check(data[name], hints[name], key)
    return cls(**kwargs)


def _validate_values(p: Profile, where: str) -> None:
    def positive(key: str, v: float) -> None:
        if v <= 0:
            raise ProfileError(f"{where}{key}: must be > 0, got {v}")

    positive("image_size", p.image_size)
    if p.image_size % 16:
        raise ProfileError(f"{where}image_size: must be a multiple of 16, got {p.image_size}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", p.name) or p.name.startswith("."):
        raise ProfileError(
            f"{where}name: expected letters, digits, '_', '-', '.' (it names cache folders), got {p.name!r}"
        )
    families = {"generator": "flux_fill", "generator_sd": "sd_inpaint", "clip": "", "reward_model": ""}
    for key, family in families.items():
        got = getattr(p.models, key).family
        if got != family:
            raise ProfileError(f"{where}models.{key}.family: expected {family!r}, got {got!r}")
    zoo_folders = {
        "clip": "clip",
        "generator": "flux_fill",
        "generator_sd": "sd_inpaint",
        "reward_model": "reward_vlm",
    }
    for f in dataclasses.fields(Models):
        ref = getattr(p.models, f.name).ref
        if not ref:
            raise ProfileError(f"{where}models.{f.name}.ref: must not be empty")
        if ref.startswith("zoo:") and ref != f"zoo:{zoo_folders[f.name]}":
            raise ProfileError(
                f"{where}models.{f.name}.ref: the tiny zoo holds this model as 'zoo:{zoo_folders[f.name]}', got {ref!r}"
            )
        if looks_like_path(ref) and not Path(ref).expanduser().exists():
            raise ProfileError(f"{where}models.{f.name}.ref: model folder {ref} does not exist")


def _read_yaml(spec: str) -> tuple[dict[str, Any], str, Path | None]:
    """(data, source name, folder of the file) of a built-in profile name or a YAML path."""
    if spec in BUILTIN_PROFILES:
        text = resources.files("onereward.profiles").joinpath(f"{spec}.yaml").read_text()
        source, folder = f"profiles/{spec}.yaml", None
    else:
        path = Path(spec)
        if not path.is_file():
            raise ProfileError(
                f"profile: {spec!r} is neither a built-in profile ({', '.join(BUILTIN_PROFILES)}) nor a file"
            )
        text, source, folder = path.read_text(), str(path), path.parent
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(f"{source}: not valid YAML{at}: {problem}") from e
    if not isinstance(data, dict):
        raise ProfileError(
            f"{source}: expected a mapping of profile keys at the top level, got {type(data).__name__}"
        )
    return data, source, folder


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, mappings merged key by key (a section overrides single settings)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _with_base(
    data: dict[str, Any], source: str, folder: Path | None, seen: tuple[str, ...]
) -> dict[str, Any]:
    """Resolve ``base: <profile>``: the base's data (recursively) with this file's keys over it."""
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ProfileError(f"{source}: base: expected a profile name or YAML path, got {base!r}")
    spec = (
        base
        if base in BUILTIN_PROFILES or folder is None
        else str(folder / base)
        if not Path(base).is_absolute()
        else base
    )
    if spec in seen:
        raise ProfileError(f"{source}: base: {base!r} makes a cycle ({' -> '.join((*seen, spec))})")
    base_data, base_source, base_folder = _read_yaml(spec)
    return _merged(_with_base(base_data, base_source, base_folder, (*seen, spec)), data)


def load_profile(name_or_path: str | os.PathLike[str] | Profile) -> Profile:
    """Load a built-in profile by name (``tiny``, ``full``, ``full-onereward``) or a YAML file by
    path, and validate it. A profile may start from another with ``base: <name or path>`` and
    override single keys (mappings merge key by key)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    spec = os.fspath(name_or_path)
    data, source, folder = _read_yaml(spec)
    data = _with_base(data, source, folder, (spec,))
    where = f"{source}: "
    profile = _build(Profile, data, where)
    _validate_values(profile, where)
    return dataclasses.replace(profile, source=source)
