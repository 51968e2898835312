"""Stage settings, declared once.

Every stage has one frozen dataclass of settings (``SelectConfig``, ``GenerateConfig``,
``ExportConfig`` ...), next to the stage's code. A field is declared with :func:`setting`:

    min_steps: int = setting(4, "Fewest inference steps sampled per candidate.", profile=True)

- **typed**: ``int``, ``float``, ``str``, ``bool`` or ``Literal[...]`` of strings (the choices);
- **documented** in one line (``help``), which the CLI flag, the KFP component parameter and the
  pipeline parameter all show;
- **defaulted**: the dataclass default;
- **validated** in one place: the class's :meth:`Config.check` (called on construction and on
  every ``replace``) raises :class:`ConfigError`, an ``InputError`` naming the field.

Profile settings (``profile=True``) depend on the model size (batch sizes, step counts, learning
rates, pixel budgets). A profile's section of the same name *is* an instance of the class
(``profile.generate`` is a ``GenerateConfig``): the profile gives the defaults of a run and
explicit overrides replace fields (:meth:`Config.resolve`). Run settings (``profile=False``:
seeds, shards, URLs, input choices) are not read from profiles.

**One convention for "the profile's value"**: an override of ``None`` (the default of every CLI
flag and of every keyword of a stage's ``run``) means "not given": the profile's value for a
profile setting, the dataclass default otherwise. KFP cannot carry ``None`` through a local run,
so on the KFP surface (component and pipeline parameters) a profile setting defaults to the
sentinel :data:`KFP_UNSET` of its type (``-1`` for numbers, ``""`` for strings), which
:func:`from_kfp` turns back into ``None``; profile settings that are numbers must therefore be
>= 0 (checked by the tests), and profile settings of type ``bool`` are not exposed on KFP.

CLI flags are derived from the fields (:func:`add_arguments`, :func:`overrides_from_args`): a new
field needs no hand-written flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NoReturn

from onereward.errors import InputError, ProfileError

# The KFP-side "not given: use the profile's value" sentinel per parameter type.
KFP_UNSET: dict[type, Any] = {int: -1, float: -1.0, str: ""}


class ConfigError(InputError):
    """A setting is invalid. ``field`` is the setting's name, ``detail`` what was expected."""

    def __init__(self, section: str, field: str, detail: str):
        self.section, self.field, self.detail = section, field, detail
        super().__init__(f"{section}.{field} (--{flag_name(field)}): {detail}")


def setting(default: Any, help: str, *, profile: bool = False) -> Any:
    """Declare a config field: its default, its one-line help and whether profiles set it."""
    if not help or "\n" in help:
        raise ValueError("setting: help must be one line")
    return dataclasses.field(default=default, metadata={"help": help, "profile": profile})


def flag_name(field: str) -> str:
    """``min_steps`` -> ``min-steps`` (the CLI flag without dashes)."""
    return field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every stage's settings. Subclasses set ``section`` (the profile key / stage name)
    and implement :meth:`validate` with :meth:`require` calls."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.check()

    # ---- validation --------------------------------------------------------------------------
    def check(self) -> None:
        """Types of every field, then the class's own rules (:meth:`validate`)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            coerced = coerce(getattr(self, f.name), hints[f.name], self.section, f.name)
            if coerced is not getattr(self, f.name):
                object.__setattr__(self, f.name, coerced)  # e.g. an int given for a float field
        self.validate()

    def validate(self) -> None:
        """Value rules of the subclass (ranges, relations between fields)."""

    def require(self, ok: bool, field: str, expected: str) -> None:
        """Raise :class:`ConfigError` for ``field`` unless ``ok``: ``expected`` says what was wanted."""
        if not ok:
            self.fail(field, expected)

    def fail(self, field: str, expected: str) -> NoReturn:
        raise ConfigError(self.section, field, f"{expected}, got {getattr(self, field)!r}")

    # ---- fields ------------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def field_help(cls, name: str) -> str:
        return _field(cls, name).metadata["help"]

    @classmethod
    def is_profile_setting(cls, name: str) -> bool:
        return bool(_field(cls, name).metadata.get("profile"))

    @classmethod
    def profile_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.fields() if f.metadata.get("profile"))

    @classmethod
    def field_type(cls, name: str) -> Any:
        return typing.get_type_hints(cls)[name]

    def profile_dict(self) -> dict[str, Any]:
        """The profile settings only (what a profile's section holds)."""
        return {name: getattr(self, name) for name in self.profile_fields()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def resolve(cls, base: Config | None = None, overrides: Mapping[str, Any] | None = None, **kw: Any):
        """The settings of one run: ``base`` (the profile's section; None = the defaults) with every
        override that is not None replacing its field. Unknown names are a :class:`ConfigError`."""
        given = {**(overrides or {}), **kw}
        known = {f.name for f in cls.fields()}
        for name in given:
            if name not in known:
                raise ConfigError(cls.section, name, f"unknown setting (known: {', '.join(sorted(known))})")
        changes = {k: v for k, v in given.items() if v is not None}
        if base is None:  # the defaults with the overrides, checked together (a default may need one)
            return cls(**changes)
        if not isinstance(base, cls):
            raise TypeError(f"resolve: base must be a {cls.__name__}, got {type(base).__name__}")
        return dataclasses.replace(base, **changes) if changes else base

    @classmethod
    def from_profile_section(cls, data: Any, where: str):
        """Build the profile's section from YAML data: only profile settings may appear.
        Errors are :class:`ProfileError` naming ``where`` (``file: section``) and the key."""
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a mapping, got {type(data).__name__}")
        allowed = cls.profile_fields()
        for key in data:
            if key not in allowed:
                raise ProfileError(f"{where}.{key}: unknown key (known: {', '.join(sorted(allowed))})")
        try:
            return cls(**data)
        except ConfigError as e:
            raise ProfileError(f"{where}.{e.field}: {e.detail}") from None


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def literal_choices(typ: Any) -> tuple[Any, ...] | None:
    """The choices of a ``Literal[...]`` type (None for other types)."""
    return typing.get_args(typ) if typing.get_origin(typ) is Literal else None


def coerce(value: Any, typ: Any, section: str, field: str) -> Any:
    """Check ``value`` against a simple annotation; return it (ints are accepted for floats)."""

    def bad(expected: str) -> NoReturn:
        raise ConfigError(section, field, f"expected {expected}, got {value!r}")

    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, section, field)
            except ConfigError:
                continue
        bad(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    choices = literal_choices(typ)
    if choices is not None:
        if value not in choices:
            bad(f"one of {', '.join(map(str, choices))}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            bad("true/false")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            bad("an integer")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad("a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            bad("a string")
        return value
    raise TypeError(f"{section}.{field}: unsupported setting type {typ}")


# ---- command line -----------------------------------------------------------------------------


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type[Config],
    *,
    skip: tuple[str, ...] = (),
    profile_note: bool = True,
) -> None:
    """One ``--flag`` per field of ``cls`` (except ``skip``), typed, with choices and help.

    Every flag defaults to None ("not given"); bools get ``--x / --no-x``. The help says the
    default: the profile's value for profile settings, the dataclass default otherwise.
    """
    group = parser.add_argument_group(f"{cls.section} settings")
    hints = typing.get_type_hints(cls)
    for f in cls.fields():
        if f.name in skip:
            continue
        typ = hints[f.name]
        text = f.metadata["help"]
        default = (
            f"default: the profile's {cls.section}.{f.name}"
            if f.metadata.get("profile") and profile_note
            else f"default: {f.default!r}"
        )
        # argparse %-formats help strings: a literal "95%" must reach it as "95%%"
        kwargs: dict[str, Any] = {
            "default": None, "dest": f.name, "help": f"{text} ({default})".replace("%", "%%"),
        }  # fmt: skip
        choices = literal_choices(typ)
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices is not None:
            kwargs["choices"] = choices
        else:
            kwargs["type"] = typ
            kwargs["metavar"] = {int: "N", float: "X", str: "TEXT"}[typ]
        group.add_argument(f"--{flag_name(f.name)}", **kwargs)


def overrides_from_args(args: argparse.Namespace, cls: type[Config]) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (None = not given)."""
    return {f.name: getattr(args, f.name) for f in cls.fields() if getattr(args, f.name, None) is not None}


# ---- KFP --------------------------------------------------------------------------------------


def kfp_default(cls: type[Config], name: str) -> Any:
    """The default a KFP parameter for field ``name`` must have: the sentinel for profile settings."""
    f = _field(cls, name)
    if f.metadata.get("profile"):
        typ = typing.get_type_hints(cls)[name]
        base = str if literal_choices(typ) is not None else typ
        if base not in KFP_UNSET:
            raise TypeError(f"{cls.__name__}.{name}: profile settings of type {typ} cannot be KFP parameters")
        return KFP_UNSET[base]
    return f.default


def kfp_description(cls: type[Config], name: str) -> str:
    """The description a KFP parameter for field ``name`` must have (the field's help, plus what
    the sentinel means for profile settings)."""
    text = cls.field_help(name)
    if cls.is_profile_setting(name):
        unset = kfp_default(cls, name)
        text += f" {unset!r} = the profile's value."
    return text


def from_kfp(cls: type[Config], scope: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides from a component's parameter values: the fields of ``cls`` found in ``scope`` (the
    component's parameters by name), with the sentinel of a profile setting turned into None."""
    out: dict[str, Any] = {}
    for f in cls.fields():
        if f.name not in scope:
            continue
        value = scope[f.name]
        unset = (
            f.metadata.get("profile") and not isinstance(value, bool) and value == kfp_default(cls, f.name)
        )
        out[f.name] = None if unset else value
    return out


def documented(cls: type[Config], summary: str, glossary: Mapping[str, str]):
    """Decorator for a component function: its docstring becomes ``summary`` plus ``Args`` for every
    parameter: the fields of ``cls`` described by :func:`kfp_description`, the others (artifacts,
    the profile) by ``glossary`` (KFP shows these descriptions in the UI)."""

    def wrap(fn):
        import inspect

        fields = {f.name for f in cls.fields()}
        names = list(inspect.signature(fn).parameters)
        unknown = [n for n in names if n not in fields and n not in glossary]
        if unknown:
            raise TypeError(
                f"{fn.__name__}: parameters {unknown} are neither in the glossary nor {cls.__name__} fields"
            )
        args = {n: glossary[n] for n in names if n not in fields}
        fn.__doc__ = kfp_docstring(cls, summary, args, tuple(n for n in names if n in fields))
        fn.settings_class = cls  # the tests check the component's parameters against it
        return fn

    return wrap


def kfp_docstring(cls: type[Config], summary: str, extra: Mapping[str, str], names: tuple[str, ...]) -> str:
    """A component docstring whose ``Args`` are ``extra`` (artifacts, profile...) then the fields
    ``names`` of ``cls`` described as :func:`kfp_description` says (KFP reads descriptions from it)."""
    lines = [summary, "", "Args:"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    lines += [f"    {n}: {kfp_description(cls, n)}" for n in names]
    return "\n".join(lines) + "\n"
