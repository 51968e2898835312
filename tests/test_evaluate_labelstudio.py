"""Human GSB through a real Label Studio server: the blind A/B project (left/right at random, no model
names in the tasks), simulated annotators answering through the API exactly as offline, and the
``--human export`` route: people answer later and ``onereward evaluate-human`` imports them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from evaluate_helpers import make_world
from labelstudio import running_label_studio

from onereward import tasks
from onereward.annotate import ab
from onereward.annotate.client import LabelStudioClient
from onereward.annotate.config import SimulateConfig
from onereward.annotate.simulate import open_panel
from onereward.cli import main
from onereward.evaluate.stage import run
from onereward.testing.local_label_studio import LocalLabelStudio

pytestmark = pytest.mark.labelstudio
SIZES = {"fill_items": 3, "extend_items": 2, "removal_items": 2, "ema": False}


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_zoo: Path) -> dict[str, Path]:
    return make_world(tmp_path_factory.mktemp("evaluate-ls"), tiny_zoo)


def _run(world: dict[str, Path], out: Path, **kw) -> dict:
    return run(
        str(world["pool"]),
        str(out),
        reward_model=str(world["reward_model"]),
        zoo=str(world["zoo"]),
        policy=str(world["root"] / "policy"),
        exclude=[str(world["subset"])],
        **{**SIZES, **kw},
    )


def test_simulated_people_answer_the_blind_ab_project_on_the_server_as_offline(
    label_studio: LocalLabelStudio, world: dict[str, Path], tmp_path: Path
) -> None:
    srv = label_studio
    online = _run(
        world, tmp_path / "online", human="simulate", label_studio_url=srv.url,
        document_root=str(srv.document_root), project_title="eval-sim",
    )  # fmt: skip
    offline = _run(world, tmp_path / "offline", human="simulate")
    assert online["human"]["url"] == srv.url and all(online["human"]["projects"].values())
    assert online["human_gsb"] == offline["human_gsb"]  # same seed: the same answers through the API
    assert online["human"]["agreement"] == offline["human"]["agreement"]
    # blind: what the server holds names no model, and the sides are mixed
    client = LabelStudioClient(srv.url)
    tasks = [t for pid in online["human"]["projects"].values() for t in client.export_tasks(pid)]
    assert len(tasks) == online["n_items"]
    text = json.dumps([t["data"] for t in tasks])
    for name in ("policy", "base", "candidate"):
        assert name not in text, name
    assert all(len(t["annotations"]) == 3 for t in tasks)  # three simulated annotators each
    assignment = json.loads((tmp_path / "online" / "human" / "assignment.json").read_text())
    assert {s["left"] for s in assignment.values()} == {"policy", "base"}
    project = client.sdk.projects.get(online["human"]["projects"]["ab_prompted"])
    assert "Left is better" in project.label_config and 'alias="same"' in project.label_config
    # a rerun with the same title and version adds no task
    _run(
        world, tmp_path / "again", human="simulate", label_studio_url=srv.url,
        document_root=str(srv.document_root), project_title="eval-sim",
    )  # fmt: skip
    again = [t for pid in online["human"]["projects"].values() for t in client.export_tasks(pid)]
    assert len(again) == len(tasks) and all(len(t["annotations"]) == 3 for t in again)


def test_export_for_people_then_evaluate_human_imports_their_answers(
    label_studio: LocalLabelStudio, world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = label_studio
    m = _run(
        world, tmp_path / "exported", human="export", label_studio_url=srv.url,
        document_root=str(srv.document_root), project_title="eval-people", annotators=2,
    )  # fmt: skip
    assert m["human"]["status"].startswith("awaiting answers") and "human_gsb" not in m
    # two "people" answer through the API: always the policy's side, except "about the same" on structure
    root = tmp_path / "exported" / "human"
    project = json.loads((root / "project.json").read_text())
    assignment = json.loads((root / "assignment.json").read_text())
    panel = open_panel(SimulateConfig(annotators=2), project, root)

    def scores(item_id: str, side: str) -> dict[str, float]:
        better = 1.0 if assignment[item_id][side] == "policy" else 0.0
        return {d: (0.5 if d == "structure" else better) for d in tasks.DIMENSIONS}

    ab.simulate_answers(panel, scores, noise=0.0, threshold=0.1, seed=0)
    out = tmp_path / "with-people"
    assert main(["evaluate-human", "--evaluation", str(tmp_path / "exported"), "--out", str(out)]) == 0
    got = json.loads((out / "metrics.json").read_text())
    assert got["human"]["status"] == "answered" and got["human"]["n_tasks_answered"] == m["n_items"]
    for group, dims in got["human_gsb"].items():
        for dim, cell in dims.items():
            want = "same" if dim == "structure" else "good"
            assert cell[want] == cell["n"] == m["items_per_group"][group], (group, dim)
    assert got["gsb"] == m["gsb"] and got["metrics"] == m["metrics"]  # the rest carried over
    assert "Human A/B" in (out / "report.html").read_text()
    # an evaluation without an A/B project: one line naming the input
    assert (
        main(
            [
                "evaluate-human",
                "--evaluation",
                str(tmp_path / "with-people" / "human"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "--evaluation" in capsys.readouterr().err
