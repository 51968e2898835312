"""The annotation components called directly (``component.python_func``), offline: fast unit tests
of the KFP glue (parameters -> settings -> stage -> published outputs), no pipeline run."""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

import pytest
from annotate_helpers import synthetic_candidates
from kfp.dsl import HTML, Artifact, Metrics

from onereward.annotate.config import ExportConfig, ImportConfig, SimulateConfig
from onereward.annotate.export import run_export
from onereward.annotate.simulate import run_simulate
from onereward.artifacts import read_artifact
from onereward.config import ConfigError, kfp_default, kfp_description, literal_choices
from onereward.tables import read_table
from onereward_kfp.components.export_annotations import export_annotations
from onereward_kfp.components.import_annotations import import_annotations
from onereward_kfp.components.simulate_annotations import simulate_annotations

COMPONENTS = [
    (export_annotations, ExportConfig, ("candidates", "project", "report", "metrics")),
    (simulate_annotations, SimulateConfig, ("project", "annotations", "report", "metrics")),
    (import_annotations, ImportConfig, ("annotations", "preferences", "report", "metrics")),
]


def _outputs(root: Path, name: str) -> tuple[Artifact, HTML, Metrics]:
    """KFP output objects on local paths (what the launcher hands a component)."""
    return (
        Artifact(uri=str(root / name), metadata={}),
        HTML(uri=str(root / f"{name}-report.html"), metadata={}),
        Metrics(uri=str(root / f"{name}-metrics.json"), metadata={}),
    )


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_candidates(tmp_path_factory.mktemp("components-annotate"), n_items=6, seed=2)


def test_offline_chain_through_the_components(candidates: Path, tmp_path: Path) -> None:
    project, report, metrics = _outputs(tmp_path, "project")
    export_annotations.python_func(
        candidates=Artifact(uri=str(candidates)),
        project=project,
        report=report,
        metrics=metrics,
        offline=True,
        project_title="components",
        chunk_size=7,
    )
    manifest = read_artifact(project.path, kind="project")
    assert manifest.parameters["project_title"] == "components" and manifest.parameters["chunk_size"] == 7
    assert manifest.parameters["label_studio_url"] is None  # "" = offline
    assert project.metadata["kind"] == "project" and metrics.metadata["n_tasks"] == 6
    assert Path(report.path).read_text() == (Path(project.path) / "report.html").read_text()

    annotations, report, metrics = _outputs(tmp_path, "annotations")
    simulate_annotations.python_func(
        project=project,
        annotations=annotations,
        report=report,
        metrics=metrics,
        annotators=2,
        noise=0.1,
        seed=3,
    )
    sim = json.loads((Path(annotations.path) / "simulation.json").read_text())
    assert (sim["annotators"], sim["noise"], sim["seed"], sim["threshold"]) == (2, 0.1, 3, 0.02)
    assert metrics.metadata["n_annotations"] == 12 and metrics.metadata["online"] == 0.0

    preferences, report, metrics = _outputs(tmp_path, "preferences")
    import_annotations.python_func(
        annotations=annotations, preferences=preferences, report=report, metrics=metrics
    )
    pairs = read_table(Path(preferences.path) / "pairs.parquet")
    assert pairs and metrics.metadata["n_pairs"] == len(pairs) and metrics.metadata["n_tasks"] == 6
    assert read_artifact(preferences.path, kind="preferences").parameters == {"source": "export.json"}


def test_components_pass_their_settings_unchanged(candidates: Path, tmp_path: Path) -> None:
    """A component's output equals the stage's run with the same settings, byte for byte."""
    project, report, metrics = _outputs(tmp_path, "project")
    export_annotations.python_func(
        candidates=Artifact(uri=str(candidates)),
        project=project,
        report=report,
        metrics=metrics,
        offline=True,
        predictions="oracle",
    )
    run_export(str(candidates), str(tmp_path / "direct-project"), predictions="oracle", offline=True)
    assert (Path(project.path) / "tasks.json").read_bytes() == (
        tmp_path / "direct-project" / "tasks.json"
    ).read_bytes()

    annotations, report, metrics = _outputs(tmp_path, "annotations")
    settings = {"noise": 0.3, "threshold": 0.05, "annotators": 3, "seed": 9}
    simulate_annotations.python_func(
        project=project, annotations=annotations, report=report, metrics=metrics, **settings
    )
    run_simulate(project.path, str(tmp_path / "direct-annotations"), **settings)
    export = (Path(annotations.path) / "export.json").read_bytes()
    assert export == (tmp_path / "direct-annotations" / "export.json").read_bytes()


def test_a_bad_parameter_names_its_setting(candidates: Path, tmp_path: Path) -> None:
    project, report, metrics = _outputs(tmp_path, "project")
    with pytest.raises(ConfigError, match=r"export\.chunk_size \(--chunk-size\): expected an integer >= 1"):
        export_annotations.python_func(
            candidates=Artifact(uri=str(candidates)),
            project=project,
            report=report,
            metrics=metrics,
            offline=True,
            chunk_size=0,
        )
    annotations, report, metrics = _outputs(tmp_path, "annotations")
    with pytest.raises(ConfigError, match="simulate.noise"):
        simulate_annotations.python_func(
            project=project, annotations=annotations, report=report, metrics=metrics, noise=-1.0
        )
    assert not Path(project.path).exists() and not Path(annotations.path).exists()


@pytest.mark.parametrize(
    ("component", "config", "artifacts"), COMPONENTS, ids=["export", "simulate", "import"]
)
def test_component_parameters_are_config_fields(component, config, artifacts) -> None:
    """Every parameter that is not an artifact is a setting: same type, default and description;
    the API token is never a parameter."""
    params = inspect.signature(component.python_func).parameters
    assert tuple(params)[: len(artifacts)] == artifacts
    spec = component.component_spec.inputs or {}
    for name in tuple(params)[len(artifacts) :]:
        typ = config.field_type(name)
        assert params[name].annotation == (str if literal_choices(typ) is not None else typ), name
        assert params[name].default == kfp_default(config, name), name
        assert spec[name].description == kfp_description(config, name), name
        assert "token" not in name and "api_key" not in name
    assert typing.get_type_hints(config)  # the settings are typed


def test_export_component_keeps_its_parameter_list() -> None:
    """The pipelines wire these names; the stage's other settings (reward_model, max_retries) keep
    their defaults in a pipeline run."""
    params = list(inspect.signature(export_annotations.python_func).parameters)[4:]
    assert params == [
        "label_studio_url", "offline", "document_root", "image_url_prefix", "s3_endpoint", "project_title",
        "project_version", "predictions", "overlap", "chunk_size",
    ]  # fmt: skip
    assert list(inspect.signature(simulate_annotations.python_func).parameters)[4:] == [
        "noise",
        "threshold",
        "annotators",
        "seed",
    ]
    assert list(inspect.signature(import_annotations.python_func).parameters)[4:] == []
