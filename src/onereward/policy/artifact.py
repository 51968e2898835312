"""The ``policy`` artifact: a trained generator as weights on top of its base, readable as is by diffusers.

Layout (paths relative to the artifact directory)::

    manifest.json   kind "policy" (ArtifactWriter)
    policy.json     {format_version, family, finetune, algorithm, base, adapters, lora}
    lora/pytorch_lora_weights.safetensors   finetune "lora": the policy's adapter (diffusers format)
    ema/pytorch_lora_weights.safetensors    finetune "lora": the EMA adapter
    transformer/       finetune "full": the policy's transformer (save_pretrained, safetensors)
    ema_transformer/   finetune "full": the EMA transformer
    metrics.json, report.html, tensorboard/   (train_policy)

``policy.json``:

- ``family``: ``flux_fill``; ``finetune``: ``lora`` or ``full``; ``algorithm``: ``refl``,
  ``refl_dynamic``, ``nft`` (or what made the weights, e.g. ``test``);
- ``base``: ``{"generator": <identity>, "model_key": "generator", "profile": <name>}``, where the
  identity is :func:`onereward.generate.stage.generator_identity` of the base (``zoo:flux_fill@<zoo
  content hash>`` for the tiny zoo, the resolved folder or hub id otherwise): the weights only
  make sense on that base, and loaders refuse another one;
- ``adapters``: ``{"policy": "lora", "ema": "ema"}`` (or ``transformer`` / ``ema_transformer``);
- ``lora``: ``{"rank", "alpha", "target_modules"}`` for LoRA, else null.

A LoRA folder is what ``FluxFillPipeline.save_lora_weights`` writes (keys ``transformer.<module>.
lora_A.weight`` / ``lora_B.weight``, the peft ``LoraConfig`` in the safetensors metadata), so
``FluxFillPipeline.load_lora_weights(<artifact>/lora)`` loads it as is; a full folder is a
``FluxTransformer2DModel`` folder (``from_pretrained``).

:func:`load_policy_pipeline` gives the base pipeline of a profile with the policy's (or the EMA's)
weights; :func:`apply_policy` puts them into an already loaded base; :func:`write_policy` writes an
artifact from a transformer holding the adapters (or from two full transformers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from onereward.artifacts import ArtifactWriter, Manifest, read_artifact, write_json_atomic
from onereward.errors import InputError

POLICY_FILE = "policy.json"
FORMAT_VERSION = 1
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# Weights names -> folder, per fine-tuning kind.
ADAPTER_DIRS: dict[str, dict[str, str]] = {
    "lora": {"policy": "lora", "ema": "ema"},
    "full": {"policy": "transformer", "ema": "ema_transformer"},
}
WEIGHTS: tuple[str, ...] = ("policy", "ema")
FAMILIES: tuple[str, ...] = ("flux_fill",)
Weights = Literal["policy", "ema"]


@dataclass(frozen=True)
class PolicyInfo:
    """The contents of ``policy.json``."""

    family: str
    finetune: str
    algorithm: str
    base: dict[str, str]
    adapters: dict[str, str] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.adapters:
            object.__setattr__(self, "adapters", dict(ADAPTER_DIRS.get(self.finetune, {})))

    @classmethod
    def read(cls, path: str | os.PathLike[str], what: str = "--policy") -> PolicyInfo:
        """Read and check ``policy.json``; errors name the file and the field."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{what}: {path} is missing (a policy artifact holds {POLICY_FILE})")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{what}: {path} is not valid JSON ({e})") from e

        def bad(key: str, expected: str) -> InputError:
            return InputError(f"{what}: {path} field {key!r} {expected}, got {data.get(key)!r}")

        if not isinstance(data, dict):
            raise InputError(f"{what}: {path} must hold a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise bad("format_version", f"must be {FORMAT_VERSION} (this version of onereward)")
        if data.get("family") not in FAMILIES:
            raise bad("family", f"must be one of {', '.join(FAMILIES)}")
        if data.get("finetune") not in ADAPTER_DIRS:
            raise bad("finetune", "must be 'lora' or 'full'")
        if not isinstance(data.get("base"), dict) or not isinstance(data["base"].get("generator"), str):
            raise bad("base", "must be an object with a 'generator' identity")
        adapters = data.get("adapters")
        if not isinstance(adapters, dict) or set(adapters) != set(WEIGHTS):
            raise bad("adapters", f"must map {', '.join(WEIGHTS)} to folders")
        if data["finetune"] == "lora" and not isinstance(data.get("lora"), dict):
            raise bad("lora", "must describe the LoRA adapters (rank, alpha, target_modules)")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def weights_dir(self, root: str | os.PathLike[str], weights: str) -> Path:
        """Folder of the ``policy`` or ``ema`` weights inside the artifact ``root``."""
        if weights not in WEIGHTS:
            raise InputError(f"weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")
        return Path(root) / self.adapters[weights]


def read_policy(policy_dir: str | os.PathLike[str], *, what: str = "--policy") -> tuple[Manifest, PolicyInfo]:
    """Verify a policy artifact (kind, schema, content hash) and read its ``policy.json``."""
    manifest = read_artifact(policy_dir, kind="policy", what=what)
    info = PolicyInfo.read(Path(policy_dir) / POLICY_FILE, what=what)
    for weights in WEIGHTS:
        folder = info.weights_dir(policy_dir, weights)
        wanted = folder / LORA_WEIGHTS if info.finetune == "lora" else folder / "config.json"
        if not wanted.is_file():
            raise InputError(
                f"{what}: {wanted} is missing (the {weights} weights of a {info.finetune} policy)"
            )
    return manifest, info


# ---- writing ----------------------------------------------------------------------------------


def lora_metadata(lora_config: Any) -> dict[str, Any]:
    """The peft ``LoraConfig`` as JSON-safe data (what diffusers stores in the safetensors metadata)."""
    data = lora_config.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}


def save_lora_adapter(
    transformer: Any, adapter_name: str, directory: str | os.PathLike[str], lora_config: Any
) -> Path:
    """Write one peft adapter of ``transformer`` in the diffusers LoRA format into ``directory``."""
    from diffusers import FluxFillPipeline
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    FluxFillPipeline.save_lora_weights(
        str(directory),
        transformer_lora_layers=state,
        transformer_lora_adapter_metadata=lora_metadata(lora_config),
        safe_serialization=True,
    )
    return Path(directory) / LORA_WEIGHTS


def save_policy_weights(
    root: str | os.PathLike[str],
    transformer: Any,
    info: PolicyInfo,
    *,
    ema: Any = None,
    lora_config: Any = None,
    adapter_names: dict[str, str] | None = None,
) -> None:
    """Write ``policy.json`` and the weights into ``root`` (a staging directory).

    LoRA: ``transformer`` holds peft adapters; ``adapter_names`` maps ``policy``/``ema`` to their
    adapter names in it (default: the same names). Full: ``transformer`` is the policy's
    transformer and ``ema`` the EMA's (both saved with ``save_pretrained``).
    """
    root = Path(root)
    if info.finetune == "lora":
        if lora_config is None:
            raise ValueError("save_policy_weights: a LoRA policy needs its lora_config")
        names = adapter_names or {w: w for w in WEIGHTS}
        for weights in WEIGHTS:
            save_lora_adapter(transformer, names[weights], info.weights_dir(root, weights), lora_config)
    else:
        if ema is None:
            raise ValueError("save_policy_weights: a full policy needs its EMA transformer")
        for weights, module in (("policy", transformer), ("ema", ema)):
            module.save_pretrained(info.weights_dir(root, weights), safe_serialization=True)
    write_json_atomic(root / POLICY_FILE, info.to_json())


def write_policy(
    out: str | os.PathLike[str],
    transformer: Any,
    info: PolicyInfo,
    *,
    ema: Any = None,
    lora_config: Any = None,
    adapter_names: dict[str, str] | None = None,
    stage: str = "train_policy",
    parameters: dict[str, Any] | None = None,
    inputs: Iterable[Manifest | dict[str, Any]] = (),
    metrics: dict[str, Any] | None = None,
    counts: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Manifest:
    """Write a complete ``policy`` artifact to ``out`` (atomically); ``extra(staging_dir)`` adds files
    (report, curves, TensorBoard logs). Returns the manifest."""
    with ArtifactWriter(out, kind="policy", stage=stage, parameters=parameters, inputs=inputs) as art:
        save_policy_weights(
            art.path, transformer, info, ema=ema, lora_config=lora_config, adapter_names=adapter_names
        )
        if extra is not None:
            extra(art.path)
        art.metrics.update(metrics or {})
        art.counts.update(counts or {"finetune": info.finetune})
        art.timings.update(timings or {})  # phases before the writer (setup, training)
    assert art.manifest is not None
    return art.manifest


# ---- loading ----------------------------------------------------------------------------------


def apply_policy(
    pipe: Any, policy_dir: str | os.PathLike[str], *, weights: str = "policy", fuse: bool = True,
    info: PolicyInfo | None = None, what: str = "--policy",
) -> Any:  # fmt: skip
    """Put the ``policy`` (or ``ema``) weights of a policy artifact into the loaded base ``pipe``.

    LoRA: ``pipe.load_lora_weights`` on the adapter folder; with ``fuse`` the adapter is fused into
    the base weights and the LoRA layers removed (plain sampling speed). Full: the transformer is
    replaced by the artifact's (same dtype and device as the base's). Weights that cannot be read
    (cut short, not safetensors) or do not fit the base's layers are refused with an
    :class:`InputError` naming ``what`` and the file, before ``pipe`` is touched.
    """
    info = info or PolicyInfo.read(Path(policy_dir) / POLICY_FILE)
    folder = info.weights_dir(policy_dir, weights)
    if info.finetune == "lora":
        check_lora_fits(pipe.transformer, folder / LORA_WEIGHTS, what)
        pipe.load_lora_weights(str(folder), adapter_name=weights)
        if fuse:
            pipe.fuse_lora(adapter_names=[weights])
            pipe.unload_lora_weights()
        return pipe
    from diffusers import FluxTransformer2DModel

    old = pipe.transformer
    try:
        transformer = FluxTransformer2DModel.from_pretrained(str(folder), torch_dtype=old.dtype)
    except (OSError, ValueError, RuntimeError) as err:  # safetensors errors included
        raise InputError(
            f"{what}: the {weights} transformer in {folder} cannot be loaded ({_first_line(err)}); "
            "expected the FluxTransformer2DModel folder train_policy wrote"
        ) from None
    _check_same_shapes(old, transformer, folder, what)
    pipe.transformer = transformer.to(old.device).eval()
    return pipe


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _read_safetensors_shapes(path: Path, what: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a safetensors file, reading each tensor once (a file cut short fails
    here, not inside diffusers)."""
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(f"{what}: {path.name} is missing from {path.parent}; expected the policy's weights")
    try:
        shapes = {}
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # safe_open is not iterable
            for key in names:
                shapes[key] = tuple(f.get_tensor(key).shape)
        return shapes
    except Exception as err:  # SafetensorError, OSError, struct errors: all mean an unreadable file
        raise InputError(
            f"{what}: {path.name} in {path.parent} cannot be read ({_first_line(err)}); "
            "expected a complete safetensors file"
        ) from None


def check_lora_fits(transformer: Any, path: Path, what: str = "--policy") -> None:
    """Refuse a LoRA adapter file that is unreadable or whose ``lora_A``/``lora_B`` pairs do not fit
    the base transformer's linear layers (in/out features, one rank per pair)."""
    shapes = _read_safetensors_shapes(path, what)
    modules = dict(transformer.named_modules())
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                name = key.split(marker)[0].removeprefix("transformer.")
                pairs.setdefault(name, {})[part] = shape
    if not pairs:
        raise InputError(f"{what}: {path.name} holds no lora_A/lora_B tensors; expected a LoRA adapter")
    for name, pair in sorted(pairs.items()):
        module = modules.get(name)
        a, b = pair.get("lora_A"), pair.get("lora_B")
        problem = ""
        if module is None or not hasattr(module, "in_features"):
            problem = "names no linear layer of the base transformer"
        elif a is None or b is None:
            problem = "has only one of lora_A / lora_B"
        elif len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            problem = f"has lora_A {list(a)} and lora_B {list(b)} of different ranks"
        elif a[1] != module.in_features or b[0] != module.out_features:
            problem = (
                f"has lora_A {list(a)} / lora_B {list(b)} but the base layer is "
                f"{module.in_features} -> {module.out_features}"
            )
        if problem:
            raise InputError(
                f"{what}: {path.name}: adapter {name!r} {problem}; expected an adapter trained on this base"
            )


def _check_same_shapes(base: Any, other: Any, folder: Path, what: str) -> None:
    ours, theirs = base.state_dict(), other.state_dict()
    for key, tensor in ours.items():
        got = theirs.get(key)
        if got is None or tuple(got.shape) != tuple(tensor.shape):
            found = "missing" if got is None else list(got.shape)
            raise InputError(
                f"{what}: the transformer in {folder} does not fit the base: {key} is {found}, "
                f"expected {list(tensor.shape)}"
            )


def check_base(info: PolicyInfo, identity: str, what: str = "--policy") -> None:
    """Refuse a policy trained on another base generator than ``identity``."""
    if info.base.get("generator") != identity:
        raise InputError(
            f"{what}: policy.json field 'base.generator' is {info.base.get('generator')!r} but this run's base "
            f"generator is {identity!r}; the policy's weights only apply to the base it was trained on"
        )


def load_policy_pipeline(
    policy_dir: str | os.PathLike[str],
    *,
    weights: Weights = "policy",
    profile: str = "tiny",
    zoo: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    fuse: bool = True,
) -> Any:
    """The profile's base ``FluxFillPipeline`` (tiny zoo or mounted checkpoint) with the policy's
    ``policy`` or ``ema`` weights. Refuses a policy whose base is not the profile's generator."""
    from onereward.generate.stage import generator_identity
    from onereward.models import flux_fill
    from onereward.profile import load_profile
    from onereward.zoo import zoo_dir_for

    prof = load_profile(profile)
    _, info = read_policy(policy_dir)
    key = info.base.get("model_key", "generator")
    zoo_arg = str(zoo) if zoo else None
    check_base(info, generator_identity(prof, key, zoo_arg))
    pipe = flux_fill.load(prof.resolve_model(key, zoo_dir_for(prof, zoo_arg)), dtype=dtype, device=device)
    return apply_policy(pipe, policy_dir, weights=weights, fuse=fuse, info=info)
