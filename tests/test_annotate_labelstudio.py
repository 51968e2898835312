"""export -> simulate -> import against a real Label Studio server, plus its fault cases."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from annotate_helpers import oracle_pairs, subset_candidates, synthetic_candidates
from label_studio_sdk import LabelStudio
from label_studio_sdk.projects.client import ProjectsClient
from labelstudio import running_label_studio

from onereward.annotate.client import LabelStudioUnavailable
from onereward.annotate.export import run_export
from onereward.annotate.importer import run_import
from onereward.annotate.labeling_config import choice_result
from onereward.annotate.simulate import run_simulate
from onereward.errors import InputError
from onereward.tables import read_table
from onereward.testing.local_label_studio import LocalLabelStudio

pytestmark = pytest.mark.labelstudio


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    """A real server for this module (installed and migrated on first use, see tests/labelstudio.py)."""
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_candidates(tmp_path_factory.mktemp("annotate-ls"), n_items=9, seed=3)


def _all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_round_trip_pairs_equal_the_oracle(
    label_studio,
    candidates: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    srv = label_studio
    export_kw = dict(
        label_studio_url=srv.url, document_root=str(srv.document_root), project_title="roundtrip"
    )
    m = run_export(str(candidates), str(tmp_path / "project"), chunk_size=4, **export_kw)
    assert m["n_tasks"] == 9 and m["n_new_tasks"] == 9
    project = json.loads((tmp_path / "project" / "project.json").read_text())
    assert project["url"] == srv.url and len(project["task_map"]) == 9
    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    ids = {name: p["project_id"] for name, p in project["projects"].items()}
    n_on_server = sum(len(list(sdk.tasks.list(project=pid))) for pid in ids.values())
    assert n_on_server == 9
    # Images come from Local Storage (no data URIs) and the server serves the exact overlay bytes.
    task0 = json.loads((tmp_path / "project" / "tasks.json").read_text())[0]
    url = task0["data"]["source_overlay"]
    assert url.startswith("/data/local-files/?d=")
    req = urllib.request.Request(srv.url + url, headers={"Authorization": f"Token {srv.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        served = r.read()
    assert served == (tmp_path / "project" / "overlays" / f"{task0['data']['item_id']}.png").read_bytes()
    # A rerun with the same title and version reuses the projects and adds no task.
    m2 = run_export(str(candidates), str(tmp_path / "project2"), chunk_size=4, **export_kw)
    assert m2["n_new_tasks"] == 0
    project2 = json.loads((tmp_path / "project2" / "project.json").read_text())
    assert project2["task_map"] == project["task_map"]
    assert sum(len(list(sdk.tasks.list(project=pid))) for pid in ids.values()) == 9
    # The token is in no artifact file.
    assert srv.token not in _all_text(tmp_path)

    sim = run_simulate(
        str(tmp_path / "project"), str(tmp_path / "answers"), annotators=2, noise=0.0, threshold=0.0
    )
    assert sim["n_annotations"] == 18 and sim["online"] is True
    again = run_simulate(str(tmp_path / "project"), str(tmp_path / "answers2"), annotators=2, threshold=0.0)
    assert again["n_annotations"] == 0 and again["n_already_answered"] == 18  # idempotent

    metrics = run_import(str(tmp_path / "answers"), str(tmp_path / "prefs"))
    pairs = read_table(tmp_path / "prefs" / "pairs.parquet")
    expected = oracle_pairs(candidates)
    assert metrics["n_tasks"] == 9 and metrics["n_invalid"] == 0
    want = {k: v for k, v in expected.items() if v is not None}
    assert metrics["n_pairs"] == len(pairs) == len(want) > 0
    for row in pairs:
        assert (row["winner"], row["loser"]) == want[(row["item_id"], row["dimension"])]
        assert row["n_annotators"] == 2 and row["agreement"] == 1.0
        assert len(set(json.loads(row["annotators"]))) == 2
        assert (tmp_path / "prefs" / row["winner_image"]).is_file()
    assert all(a["pairwise"] == 1.0 for a in metrics["agreement"].values())
    assert sum(sum(d.values()) for d in metrics["counts"].values()) == len(pairs)
    # Import reads export snapshots and deletes them: none is left behind on the server.
    assert [list(sdk.projects.exports.list(pid)) for pid in ids.values()] == [[] for _ in ids]
    # ... and in no log line or console output.
    out, err = capfd.readouterr()
    assert srv.token not in caplog.text + out + err


def test_server_down_then_rerun_completes_without_duplicates(
    label_studio, candidates: Path, tmp_path: Path
) -> None:
    srv = label_studio
    kw = dict(
        label_studio_url=srv.url, document_root=str(srv.document_root), project_title="faults", chunk_size=2
    )
    items = sorted(json.loads(json.dumps([r["item_id"] for r in read_table(candidates / "items.parquet")])))
    first = subset_candidates(candidates, tmp_path / "first", items[:4])
    assert run_export(str(first), str(tmp_path / "p1"), **kw)["n_new_tasks"] == 4  # an earlier, partial run
    srv.stop()
    try:
        with pytest.raises(LabelStudioUnavailable) as err:
            run_export(str(candidates), str(tmp_path / "p2"), max_retries=2, **kw)
        assert srv.url in str(err.value) and "not reachable" in str(err.value)
        assert not (tmp_path / "p2").exists()  # nothing half-written
    finally:
        srv.start()
    m = run_export(str(candidates), str(tmp_path / "p2"), **kw)
    assert m["n_new_tasks"] == 5 and m["n_tasks"] == 9
    project = json.loads((tmp_path / "p2" / "project.json").read_text())
    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    keys = []
    for p in project["projects"].values():
        keys += [t.data["onereward_key"] for t in sdk.tasks.list(project=p["project_id"])]
    assert len(keys) == len(set(keys)) == 9


def _server_keys(sdk: LabelStudio, title_prefix: str) -> list[str]:
    keys: list[str] = []
    for p in sdk.projects.list(page_size=100):
        if p.title.startswith(title_prefix):
            keys += [t.data["onereward_key"] for t in sdk.tasks.list(project=p.id)]
    return keys


def test_lost_response_and_server_gone_mid_import_then_rerun(
    label_studio, candidates: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = label_studio
    kw = dict(label_studio_url=srv.url, document_root=str(srv.document_root), chunk_size=2)
    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    real_import = ProjectsClient.import_tasks
    calls: list[int] = []

    def lose_second_response(self, *args, **kwargs):
        resp = real_import(self, *args, **kwargs)  # the server stores the chunk ...
        calls.append(1)
        if len(calls) == 2:  # ... but the client never hears back
            raise httpx.ReadTimeout("response lost")
        return resp

    monkeypatch.setattr(ProjectsClient, "import_tasks", lose_second_response)
    m = run_export(str(candidates), str(tmp_path / "lost"), project_title="lost", **kw)
    # 9 tasks in chunks of 2 over 3 projects (5 + 3 + 1) = 6 chunks; the retry rereads the keys,
    # finds the lost chunk stored and sends nothing again, and the count still includes it.
    assert len(calls) == 6 and m["n_new_tasks"] == 9
    keys = _server_keys(sdk, "lost ")
    assert len(keys) == len(set(keys)) == 9

    calls.clear()

    def server_goes_away(self, *args, **kwargs):
        resp = real_import(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            srv.stop()  # the server dies after storing the second chunk
        return resp

    monkeypatch.setattr(ProjectsClient, "import_tasks", server_goes_away)
    try:
        with pytest.raises(LabelStudioUnavailable):
            run_export(str(candidates), str(tmp_path / "gone"), project_title="gone", max_retries=1, **kw)
        assert not (tmp_path / "gone").exists()
    finally:
        if srv.process is None or srv.process.poll() is not None:
            srv.start()
    monkeypatch.setattr(ProjectsClient, "import_tasks", real_import)
    stored = len(_server_keys(sdk, "gone "))
    assert 3 <= stored < 9  # two chunks made it before the server went away
    m2 = run_export(str(candidates), str(tmp_path / "gone"), project_title="gone", **kw)
    assert m2["n_new_tasks"] == 9 - stored and m2["n_tasks"] == 9
    keys = _server_keys(sdk, "gone ")
    assert len(keys) == len(set(keys)) == 9


def test_lost_create_response_makes_no_second_project_and_duplicate_titles_are_an_error(
    label_studio, candidates: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = label_studio
    kw = dict(label_studio_url=srv.url, document_root=str(srv.document_root), project_title="lostcreate")
    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    real_create = ProjectsClient.create
    calls: list[int] = []

    def lose_first_response(self, *args, **kwargs):
        project = real_create(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("response lost")
        return project

    monkeypatch.setattr(ProjectsClient, "create", lose_first_response)
    run_export(str(candidates), str(tmp_path / "p"), **kw)
    titles = [p.title for p in sdk.projects.list(page_size=100) if p.title.startswith("lostcreate ")]
    assert len(titles) == len(set(titles)) == 3 and len(calls) == 3
    monkeypatch.setattr(ProjectsClient, "create", real_create)
    sdk.projects.create(title=titles[0])  # someone made a second project with the same title
    with pytest.raises(InputError) as err:
        run_export(str(candidates), str(tmp_path / "p2"), **kw)
    assert f"2 projects are titled {titles[0]!r}" in str(err.value) and srv.url in str(err.value)
    assert not (tmp_path / "p2").exists()


def test_wrong_token_is_a_clear_error(label_studio, candidates: Path, tmp_path: Path, monkeypatch) -> None:
    srv = label_studio
    export_kw = dict(
        label_studio_url=srv.url, document_root=str(srv.document_root), project_title="wrongtoken"
    )
    run_export(str(candidates), str(tmp_path / "ok"), **export_kw)  # with the right token
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    for what, call, out in [
        ("simulate", lambda o: run_simulate(str(tmp_path / "ok"), o), "sim"),
        ("import", lambda o: run_import(str(tmp_path / "ok"), o), "imp"),
    ]:
        with pytest.raises(InputError) as err:
            call(str(tmp_path / out))
        msg = str(err.value)
        assert "LABEL_STUDIO_API_KEY" in msg and "401" in msg and srv.url in msg, what
        assert "0" * 40 not in msg and not (tmp_path / out).exists(), what
    with pytest.raises(InputError) as err:
        run_export(
            str(candidates),
            str(tmp_path / "p"),
            label_studio_url=label_studio.url,
            document_root=str(label_studio.document_root),
        )
    msg = str(err.value)
    assert "LABEL_STUDIO_API_KEY" in msg and "401" in msg and label_studio.url in msg and "0" * 40 not in msg
    assert not (tmp_path / "p").exists()


def test_invalid_partial_cancelled_and_contradictory_answers_are_excluded(
    label_studio,
    candidates: Path,
    tmp_path: Path,
) -> None:
    srv = label_studio
    run_export(
        str(candidates),
        str(tmp_path / "project"),
        label_studio_url=srv.url,
        document_root=str(srv.document_root),
        project_title="invalid",
    )
    project = json.loads((tmp_path / "project" / "project.json").read_text())
    tasks = {t["data"]["item_id"]: t for t in json.loads((tmp_path / "project" / "tasks.json").read_text())}
    prompted = sorted(i for i, t in tasks.items() if t["data"]["dimension_set"] == "prompted")
    assert len(prompted) >= 5
    sdk = LabelStudio(base_url=srv.url, api_key=srv.token)
    dims = ["text_alignment", "consistency", "structure", "aesthetics"]

    def full(best: str = "A", worst: str = "B") -> list[dict]:
        return [choice_result(d, w, best if w == "best" else worst) for d in dims for w in ("best", "worst")]

    bad_choice = full()
    bad_choice[0] = choice_result("text_alignment", "best", "Z")  # the server accepts it; we must not
    partial = full()[:-1]  # aesthetics_worst missing
    contradictory = full()
    contradictory[2:4] = [
        choice_result("consistency", "best", "C"),
        choice_result("consistency", "worst", "C"),
    ]
    no_diff = full()
    no_diff[4:6] = [choice_result("structure", "best", "none"), choice_result("structure", "worst", "none")]
    tid = project["task_map"]
    sdk.annotations.create(tid[prompted[0]], result=bad_choice)
    sdk.annotations.create(tid[prompted[1]], result=partial)
    sdk.annotations.create(tid[prompted[2]], result=[], was_cancelled=True)
    sdk.annotations.create(tid[prompted[3]], result=contradictory)
    sdk.annotations.create(tid[prompted[4]], result=no_diff)
    m = run_import(str(tmp_path / "project"), str(tmp_path / "prefs"))
    assert m["n_invalid"] == 2 and m["n_cancelled"] == 1 and m["n_best_equals_worst"] == 1
    invalid = json.loads((tmp_path / "prefs" / "invalid.json").read_text())
    problems = {i["item_id"]: " ".join(i["problems"]) for i in invalid}
    assert "'Z'" in problems[prompted[0]] and "aesthetics: worst not answered" in problems[prompted[1]]
    pairs = read_table(tmp_path / "prefs" / "pairs.parquet")
    by_item: dict[str, set[str]] = {}
    for r in pairs:
        by_item.setdefault(r["item_id"], set()).add(r["dimension"])
    assert prompted[0] not in by_item and prompted[1] not in by_item and prompted[2] not in by_item
    assert by_item[prompted[3]] == {"text_alignment", "structure", "aesthetics"}  # consistency dropped
    assert by_item[prompted[4]] == {"text_alignment", "consistency", "aesthetics"}  # structure: none
    assert m["n_no_clear_difference"] == 1
    assert m["n_pairs"] == len(pairs)
    assert os.environ.get("LABEL_STUDIO_API_KEY") == srv.token
