"""Stage settings are declared once: every component parameter, pipeline parameter and CLI flag is
a config field with the same type, default and description; "the profile's value" has one
spelling per surface; overrides replace fields and explicit values (0 included) are kept."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing

import pytest

from onereward.cli import subcommands
from onereward.config import (
    KFP_UNSET,
    Config,
    ConfigError,
    from_kfp,
    kfp_default,
    kfp_description,
    literal_choices,
)
from onereward.evaluate.config import EvaluateConfig
from onereward.generate.config import GenerateConfig
from onereward.policy.config import PolicyConfig
from onereward.profile import SECTIONS, load_profile
from onereward.reward.config import RewardConfig
from onereward.select.config import SelectConfig
from onereward.synth.config import SynthConfig
from onereward_kfp.pipelines.definitions import (
    PIPELINES,
    SHARED_PARAMETERS,
    STAGE_COMPONENTS,
    WIRED,
    stage_parameters,
)

KFP_TYPE = {int: "Integer", float: "Float", str: "String", bool: "Boolean"}
# CLI subcommand -> the settings class whose fields it exposes as flags.
CLI_CONFIGS = {
    "select": SelectConfig,
    "generate": GenerateConfig,
    "train-reward": RewardConfig,
    "synth": SynthConfig,
    "train-policy": PolicyConfig,
    "evaluate": EvaluateConfig,
}
# Settings a class demands a choice for (export: a Label Studio URL, or offline said explicitly).
NEEDED = {"ExportConfig": {"offline": True}}
# Component parameters that are not settings (inputs the stage gets besides its config).
NOT_SETTINGS = {"profile", "num_nodes", "gpus_per_node", "run_id", "task_id"}  # + the TrainJob launch


def _config_classes() -> list[type[Config]]:
    found = {c.python_func.settings_class for c in STAGE_COMPONENTS.values()}
    return sorted(found, key=lambda c: c.__name__)


def _base_type(typ):
    return str if literal_choices(typ) is not None else typ


@pytest.mark.parametrize("prefix", sorted(STAGE_COMPONENTS))
def test_component_parameters_mirror_their_config(prefix: str) -> None:
    component = STAGE_COMPONENTS[prefix]
    cls = component.python_func.settings_class
    for name, spec in component.component_spec.inputs.items():
        if spec.type not in KFP_TYPE.values() or name in NOT_SETTINGS:
            continue  # artifacts, the profile
        assert name in {f.name for f in cls.fields()}, (
            f"{prefix}: parameter {name} is not a {cls.__name__} field"
        )
        typ = _base_type(cls.field_type(name))
        assert spec.type == KFP_TYPE[typ], (prefix, name, spec.type, typ)
        assert spec.default == kfp_default(cls, name), (prefix, name, spec.default)
        assert spec.description == kfp_description(cls, name), (prefix, name)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_stage_parameters_mirror_the_components(name: str) -> None:
    signature = inspect.signature(PIPELINES[name].pipeline_func)
    spec = PIPELINES[name].component_spec.inputs
    derived = {}
    for prefix in STAGE_COMPONENTS:
        derived.update(stage_parameters(prefix))
    for pname, param in signature.parameters.items():
        prefix = pname.split("_")[0]
        if pname in SHARED_PARAMETERS or prefix not in STAGE_COMPONENTS or pname not in derived:
            continue
        typ, default, text = derived[pname]
        component_input = STAGE_COMPONENTS[prefix].component_spec.inputs[pname[len(prefix) + 1 :]]
        assert param.annotation is typ and spec[pname].description == " ".join(text.split())
        assert text == component_input.description
        if param.default != default:  # a pipeline may set its own default (the demo's pool size)
            assert name == "end_to_end" and pname in (
                "synth_items",
                "select_size",
                "export_project_title",
                "export_offline",
                "evaluate_human",
            ), pname
    # every exposed component parameter reaches every pipeline that runs the stage
    for prefix in STAGE_COMPONENTS:
        own = {k for k in signature.parameters if k.startswith(f"{prefix}_") and not k.endswith("_uri")}
        own -= {"generate_shards"}
        if own:
            assert own == set(stage_parameters(prefix)), (name, prefix)


def test_shared_and_wired_parameters_exist_on_the_components() -> None:
    for prefix, names in WIRED.items():
        assert set(names) <= set(STAGE_COMPONENTS[prefix].component_spec.inputs)
    assert any("seed" in c.component_spec.inputs for c in STAGE_COMPONENTS.values())


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_field_is_typed_documented_and_valid_by_default(cls: type[Config]) -> None:
    hints = typing.get_type_hints(cls)
    for f in cls.fields():
        assert f.metadata["help"] and "\n" not in f.metadata["help"], f.name
        assert _base_type(hints[f.name]) in (int, float, str, bool), (f.name, hints[f.name])
    cls(**NEEDED.get(cls.__name__, {}))  # the defaults pass the checks (with the choices a class demands)


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_the_kfp_sentinel_is_never_a_valid_profile_setting(cls: type[Config]) -> None:
    """-1 / "" can mean "the profile's value" only because no profile setting accepts them."""
    for name in cls.profile_fields():
        typ = _base_type(cls.field_type(name))
        if typ is bool:
            continue  # bools are not KFP parameters (kfp_default refuses them)
        with pytest.raises(ConfigError):
            cls(**{name: KFP_UNSET[typ]})


def test_kfp_sentinel_means_the_profile_value_and_explicit_values_stay() -> None:
    prof = load_profile("tiny")
    got = from_kfp(GenerateConfig, {"min_steps": -1, "feather": 0, "negative_prompts": "", "seed": 3})
    assert got == {"min_steps": None, "feather": 0, "negative_prompts": None, "seed": 3}
    cfg = GenerateConfig.resolve(prof.generate, got)
    assert cfg.min_steps == prof.generate.min_steps and cfg.seed == 3 and cfg.feather == 0
    # an explicit 0 is a value, not "use the default" (reward's old `value or default` bug)
    reward = RewardConfig.resolve(prof.reward, {"warmup_steps": 0, "weight_decay": 0.0, "seed": 0})
    assert reward.weight_decay == 0.0 and reward.seed == 0


def test_overrides_replace_fields_and_unknown_names_are_errors() -> None:
    prof = load_profile("tiny")
    cfg = GenerateConfig.resolve(prof.generate, {"max_steps": 20, "min_steps": None})
    assert cfg.max_steps == 20 and cfg.min_steps == prof.generate.min_steps
    assert cfg.num_candidates == prof.generate.num_candidates  # the profile's, not the class default
    with pytest.raises(ConfigError, match=r"generate.max_step \(--max-step\): unknown setting"):
        GenerateConfig.resolve(prof.generate, {"max_step": 3})
    with pytest.raises(
        ConfigError, match=r"generate.min_steps \(--min-steps\): need 1 <= min_steps <= max_steps"
    ):
        GenerateConfig.resolve(prof.generate, {"min_steps": 30})
    with pytest.raises(ConfigError, match=r"generate.cfg_min .*expected a number, got 'x'"):
        GenerateConfig.resolve(prof.generate, {"cfg_min": "x"})
    with pytest.raises(ConfigError, match=r"generate.family .*expected one of flux_fill, sd_inpaint"):
        GenerateConfig.resolve(prof.generate, {"family": "unet"})


def test_profile_sections_are_the_stage_configs() -> None:
    prof = load_profile("full")
    for name, cls in SECTIONS.items():
        section = getattr(prof, name)
        assert isinstance(section, cls)
        # a profile section holds profile settings only; run settings keep their defaults
        run_fields = [f for f in cls.fields() if not f.metadata["profile"]]
        assert all(getattr(section, f.name) == f.default for f in run_fields)
    assert prof.generate.max_sequence_length == 512 and prof.reward.bf16 is True


@pytest.mark.parametrize("command", sorted(CLI_CONFIGS))
def test_cli_flags_are_derived_from_the_config(command: str) -> None:
    parser = subcommands()[command]
    flags = {
        action.dest: action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and action.option_strings
    }
    cls = CLI_CONFIGS[command]
    for f in cls.fields():
        assert f.name in flags, f"{command}: no flag for {f.name}"
        action = flags[f.name]
        assert action.default is None  # not given = the profile's value / the default
        assert f.metadata["help"].replace("%", "%%") in action.help  # argparse turns %% back into %
        choices = literal_choices(cls.field_type(f.name))
        if choices:
            assert tuple(action.choices) == choices


def test_explicit_zero_on_the_command_line_reaches_the_stage() -> None:
    from onereward.config import overrides_from_args

    parser = subcommands()["generate"]
    args = parser.parse_args(["--subset", "s", "--out", "o", "--feather", "0", "--cfg-min", "1"])
    assert overrides_from_args(args, GenerateConfig) == {"feather": 0, "cfg_min": 1.0}
    assert dataclasses.replace(GenerateConfig(), feather=0).feather == 0
