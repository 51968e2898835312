"""Annotation stages without a server (the embedded demo's path) and their building blocks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import oracle_pairs, subset_candidates, synthetic_candidates

from onereward import tasks
from onereward.annotate.agreement import krippendorff_alpha_nominal, pairwise_agreement
from onereward.annotate.export import mask_overlay, run_export
from onereward.annotate.importer import Vote, merge_votes, process_export, run_import, validate_annotation
from onereward.annotate.labeling_config import DIMENSION_SETS, build_labeling_config, choice_result
from onereward.annotate.simulate import choose, run_simulate
from onereward.artifacts import ArtifactError, read_artifact
from onereward.errors import InputError
from onereward.tables import read_table

PAIR_COLUMNS = [
    "pair_id", "item_id", "task", "dimension", "prompt", "winner", "loser", "winner_image", "loser_image",
    "source_image", "mask_image", "annotators", "n_annotators", "agreement",
]  # fmt: skip


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_candidates(tmp_path_factory.mktemp("annotate-offline"), n_items=12, seed=5)


@pytest.fixture(scope="module")
def project(candidates: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("annotate-offline-project") / "project"
    run_export(str(candidates), str(out), offline=True)
    return out


def test_labeling_config_has_required_best_and_worst_radios_per_dimension() -> None:
    for name, dims in DIMENSION_SETS.items():
        cfg = build_labeling_config(name, 4)
        root = ET.fromstring(cfg.xml)
        choices = {c.get("name"): c for c in root.iter("Choices")}
        assert set(choices) == {f"{d}_{w}" for d in dims for w in ("best", "worst")}
        for c in choices.values():
            assert c.get("choice") == "single-radio" and c.get("required") == "true"
            values = [(x.get("value"), x.get("alias")) for x in c.iter("Choice")]
            assert values == [
                ("A", None),
                ("B", None),
                ("C", None),
                ("D", None),
                ("No clear difference", "none"),
            ]
        headers = " ".join(h.get("value", "") for h in root.iter("Header"))
        for d in dims:
            assert tasks.DIMENSION_DEFINITIONS[d] in headers
        images = [i.get("value") for i in root.iter("Image")]
        assert images == ["$source_overlay", "$candidate_A", "$candidate_B", "$candidate_C", "$candidate_D"]
    assert DIMENSION_SETS["removal"] == ("removal_quality",)
    assert "text_alignment" not in DIMENSION_SETS["unprompted_extend"]


def test_offline_round_trip_equals_the_oracle(candidates: Path, project: Path, tmp_path: Path) -> None:
    pj = json.loads((project / "project.json").read_text())
    assert (
        pj["url"] is None and pj["project_id"] is None and pj["n_tasks"] == 12 and len(pj["task_map"]) == 12
    )
    tasks_json = json.loads((project / "tasks.json").read_text())
    for t in tasks_json:  # relative paths inside the artifact, never data URIs
        assert all(not str(v).startswith("data:") for v in t["data"].values())
        assert (project / t["data"]["candidate_A"]).is_file() and (
            project / t["data"]["source_overlay"]
        ).is_file()
    sim = run_simulate(str(project), str(tmp_path / "answers"), threshold=0.0)
    assert sim["n_annotations"] == 12 and not sim["online"]
    read_artifact(tmp_path / "answers", kind="annotations")
    metrics = run_import(str(tmp_path / "answers"), str(tmp_path / "prefs"))
    read_artifact(tmp_path / "prefs", kind="preferences")
    pairs = read_table(tmp_path / "prefs" / "pairs.parquet")
    assert list(pairs[0])[: len(PAIR_COLUMNS)] == PAIR_COLUMNS
    want = {k: v for k, v in oracle_pairs(candidates).items() if v is not None}
    assert len(pairs) == metrics["n_pairs"] == len(want)
    for row in pairs:
        assert (row["winner"], row["loser"]) == want[(row["item_id"], row["dimension"])]
        assert row["winner"] != row["loser"]
        for col in ("winner_image", "loser_image", "source_image", "mask_image"):
            assert (tmp_path / "prefs" / row[col]).is_file()
        if row["task"] == "object_removal":
            assert row["prompt"] is None
    assert set(metrics) >= {"n_tasks", "n_pairs", "counts", "agreement", "n_invalid"}
    assert metrics["n_tasks"] == 12 and metrics["n_invalid"] == 0
    assert set(metrics["counts"]) == set(tasks.TASKS)
    assert metrics["counts"]["object_removal"].keys() == {"removal_quality"}


def test_threshold_turns_every_answer_into_no_clear_difference(project: Path, tmp_path: Path) -> None:
    run_simulate(str(project), str(tmp_path / "answers"), threshold=1.01)  # oracle scores lie in [0, 1]
    m = run_import(str(tmp_path / "answers"), str(tmp_path / "prefs"))
    n_units = sum(len(t["data"]["dimensions"]) for t in json.loads((project / "tasks.json").read_text()))
    assert m["n_pairs"] == 0 and m["n_no_clear_difference"] == n_units


def test_noisy_annotators_disagree_and_majority_merges(project: Path, tmp_path: Path) -> None:
    run_simulate(str(project), str(tmp_path / "a"), annotators=3, noise=0.3, threshold=0.0, seed=1)
    m = run_import(str(tmp_path / "a"), str(tmp_path / "p"))
    pairwise = [a["pairwise"] for a in m["agreement"].values()]
    assert all(0.0 <= p < 1.0 for p in pairwise)  # heavy noise: some disagreement in every dimension
    pairs = read_table(tmp_path / "p" / "pairs.parquet")
    assert all(r["agreement"] > 0.5 and r["n_annotators"] == 3 for r in pairs)  # strict majority of 3
    assert m["n_pairs"] + m["n_ties"] + m["n_no_clear_difference"] <= sum(
        a["n_units"] for a in m["agreement"].values()
    )
    # Same seed, same answers (offline simulation is deterministic).
    run_simulate(str(project), str(tmp_path / "b"), annotators=3, noise=0.3, threshold=0.0, seed=1)
    assert (tmp_path / "a" / "export.json").read_text() == (tmp_path / "b" / "export.json").read_text()


def test_export_is_deterministic_and_has_no_secrets(
    candidates: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-token-4f9a0c1d2e"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", secret)
    run_export(str(candidates), str(tmp_path / "again"), offline=True)
    assert (tmp_path / "again" / "tasks.json").read_text() == (project / "tasks.json").read_text()
    files = [p for p in (tmp_path / "again").rglob("*") if p.is_file()]
    assert len(files) > 5
    for f in files:
        assert secret.encode() not in f.read_bytes(), f
    for t in json.loads((project / "tasks.json").read_text()):
        assert t["data"]["onereward_key"].startswith(t["data"]["item_id"] + ":")


def test_oracle_predictions_are_valid_answers(candidates: Path, tmp_path: Path) -> None:
    run_export(str(candidates), str(tmp_path / "p"), predictions="oracle", offline=True)
    for t in json.loads((tmp_path / "p" / "tasks.json").read_text()):
        (pred,) = t["predictions"]
        choices, problems = validate_annotation(t["data"], pred)
        assert not problems and set(choices) == set(t["data"]["dimensions"])


def test_validation_reports_each_kind_of_problem() -> None:
    data = {
        "dimension_set": "removal",
        "candidate_ids": ["x-c0", "x-c1", "x-c2"],
        "dimensions": ["removal_quality"],
    }
    ok = [choice_result("removal_quality", "best", "A"), choice_result("removal_quality", "worst", "C")]
    assert validate_annotation(data, {"result": ok}) == ({"removal_quality": ("A", "C")}, [])
    bad_letter = [choice_result("removal_quality", "best", "D"), ok[1]]  # only 3 candidates
    assert "not in" in validate_annotation(data, {"result": bad_letter})[1][0]
    two = [dict(ok[0], value={"choices": ["A", "B"]}), ok[1]]
    assert "exactly one choice" in validate_annotation(data, {"result": two})[1][0]
    foreign = [*ok, choice_result("structure", "best", "A")]
    assert "unknown control" in validate_annotation(data, {"result": foreign})[1][0]
    assert validate_annotation(data, {"result": ok[:1]})[1] == ["removal_quality: worst not answered"]


def _votes(*pairs: str) -> list[Vote]:
    return [Vote(str(i), *p.split(">")) for i, p in enumerate(pairs)]


def test_merge_votes_majority_tie_and_no_difference() -> None:
    assert merge_votes(_votes("A>B", "A>B", "C>D")) == ("A>B", 2 / 3, "")
    assert merge_votes(_votes("A>B", "C>D")) == (None, 0.5, "tie")
    assert merge_votes(_votes("none>none", "none>B", "A>B"))[2] == "no_clear_difference"
    assert merge_votes([]) == (None, 0.0, "no_votes")


def test_merge_votes_merges_best_and_worst_separately_by_strict_majority() -> None:
    # Agree on best, differ on worst: best A (3/3) but worst B/C/D has no majority -> dropped.
    assert merge_votes(_votes("A>B", "A>C", "A>D")) == (None, 1 / 3, "tie")
    # Agree on best, 2 of 3 on worst.
    assert merge_votes(_votes("A>B", "A>B", "A>C")) == ("A>B", 2 / 3, "")
    # No annotator's combined label reaches a majority (a three-way tie under plurality over
    # "B>D" labels), yet best A and worst B each have 2 of 3: the pair is A>B.
    assert merge_votes(_votes("A>C", "D>B", "A>B")) == ("A>B", 2 / 3, "")
    # 2/1/1/1 on best: B is the plurality (40%) but not a strict majority -> dropped.
    assert merge_votes(_votes("B>E", "B>E", "A>E", "C>E", "D>E")) == (None, 0.4, "tie")
    # Merged winner == merged loser: dropped.
    assert merge_votes(_votes("A>C", "B>A", "A>B")) == (None, 1 / 3, "tie")
    assert merge_votes([Vote("1", "A", "B"), Vote("2", "C", "A"), Vote("3", "A", "A")]) == (
        None,
        2 / 3,
        "best_equals_worst",
    )


def test_agreement_statistics_match_hand_computed_values() -> None:
    units = [["a", "a"], ["b", "b"], ["a", "b"]]
    assert pairwise_agreement(units) == pytest.approx(2 / 3)
    # n = 6, disagreeing pairs weighted 2 (one unit, m = 2), expected (36 - 18) / 5 = 3.6.
    assert krippendorff_alpha_nominal(units) == pytest.approx(1 - 2 / 3.6)
    assert krippendorff_alpha_nominal([["a", "a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no variation: undefined
    assert pairwise_agreement([["a"]]) is None


def test_choose_applies_threshold_and_breaks_ties_low() -> None:
    assert choose(np.array([0.2, 0.9, 0.1, 0.5]), 0.05) == choose(np.array([0.2, 0.9, 0.1, 0.5]), 0.0)
    assert (
        choose(np.array([0.2, 0.9, 0.1, 0.5]), 0.0).best,
        choose(np.array([0.2, 0.9, 0.1, 0.5]), 0.0).worst,
    ) == (
        "B",
        "C",
    )
    assert choose(np.array([0.50, 0.52, 0.51]), 0.05).best == "none"


def test_mask_overlay_tints_only_the_mask() -> None:
    img = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    out = mask_overlay(img, mask)
    assert (out[~mask] == 100).all() and (out[mask][:, 0] > 100).all() and (out[3, 3] != out[2, 2]).any()


def test_bad_inputs_name_the_input(candidates: Path, project: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ArtifactError, match="--candidates"):
        run_export(str(project), str(tmp_path / "x"), offline=True)  # a project is not a candidates artifact
    with pytest.raises(InputError, match="--predictions"):
        run_export(str(candidates), str(tmp_path / "x"), predictions="reward_model", offline=True)
    with pytest.raises(InputError, match="no annotations"):
        run_import(str(project), str(tmp_path / "x"))
    with pytest.raises(InputError, match="--annotators"):
        run_simulate(str(project), str(tmp_path / "x"), annotators=0)
    # no run creates no tasks silently: without a server, offline must be said
    with pytest.raises(
        InputError,
        match=r"export.label_studio_url \(--label-studio-url\): expected the Label Studio URL, or offline true",
    ):
        run_export(str(candidates), str(tmp_path / "x"))
    with pytest.raises(InputError, match=r"export.offline \(--offline\): offline and a label_studio_url"):
        run_export(str(candidates), str(tmp_path / "x"), offline=True, label_studio_url="http://127.0.0.1:9")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(InputError, match="LABEL_STUDIO_API_KEY"):
        run_export(str(candidates), str(tmp_path / "x"), label_studio_url="http://127.0.0.1:9")
    assert not (tmp_path / "x").exists()


def test_reward_model_predictions_are_valid_answers(candidates: Path, tmp_path: Path, tiny_zoo: Path) -> None:
    from onereward.profile import load_profile

    vlm = load_profile("tiny").resolve_model("reward_model", tiny_zoo)
    one_per_task = {r["task"]: r["item_id"] for r in read_table(candidates / "items.parquet")}
    small = subset_candidates(candidates, tmp_path / "small", sorted(one_per_task.values()))
    run_export(
        str(small), str(tmp_path / "p"), predictions="reward_model", reward_model=str(vlm), offline=True
    )
    tasks_json = json.loads((tmp_path / "p" / "tasks.json").read_text())
    for t in tasks_json:
        (pred,) = t["predictions"]
        assert pred["model_version"] == "reward_model"
        choices, problems = validate_annotation(t["data"], pred)
        assert not problems and set(choices) == set(t["data"]["dimensions"])
        assert all(best != worst for best, worst in choices.values())
    with pytest.raises(InputError, match="--reward-model"):
        run_export(str(candidates), str(tmp_path / "x"), predictions="reward_model", offline=True)


def _removal_task(task_id: int, anns: list[dict], **data_over: object) -> dict:
    data = {
        "item_id": f"i{task_id}",
        "edit_task": "removal",
        "dimension_set": "removal",
        "candidate_ids": ["x-c0", "x-c1", "x-c2"],
        "dimensions": ["removal_quality"],
    }
    data.update(data_over)
    return {"id": task_id, "data": data, "annotations": anns}


def _ann(ann_id: int, who: int, best: str, worst: str, updated: str) -> dict:
    result = [
        choice_result("removal_quality", "best", best),
        choice_result("removal_quality", "worst", worst),
    ]
    return {"id": ann_id, "completed_by": who, "updated_at": updated, "result": result}


def test_importer_keeps_only_the_latest_annotation_per_annotator_and_reports_foreign_tasks() -> None:
    # Annotator 7 submitted twice (a retried create): the older A>C must not outvote annotator 8.
    anns = [
        _ann(1, 7, "A", "C", "2026-01-01T00:00:00Z"),
        _ann(3, 7, "B", "C", "2026-01-02T00:00:00Z"),
        _ann(2, 8, "B", "C", "2026-01-01T12:00:00Z"),
    ]
    foreign = _removal_task(2, [_ann(4, 7, "A", "B", "2026-01-01T00:00:00Z")])
    del foreign["data"]["dimensions"]
    res = process_export([_removal_task(1, anns), foreign])
    (pair,) = res.pairs
    assert (pair["winner"], pair["loser"], pair["n_annotators"]) == ("x-c1", "x-c2", 2)
    assert pair["annotators"] == ["7", "8"] and pair["agreement"] == 1.0
    assert res.counts["duplicate_annotations"] == 1
    (bad,) = res.invalid
    assert bad["task_id"] == 2 and "dimensions" in bad["problems"][0]


def test_validation_checks_to_name_and_the_projects_label_config_sha() -> None:
    good = _ann(1, 7, "A", "C", "2026-01-01T00:00:00Z")
    wrong_target = dict(good, result=[dict(r, to_name="candidate_A") for r in good["result"]])
    data = _removal_task(1, [])["data"]
    assert "to_name 'candidate_A', expected 'source_overlay'" in validate_annotation(data, wrong_target)[1][0]
    sha = build_labeling_config("removal", 3).sha
    assert len(process_export([_removal_task(1, [good])], {"removal": sha}).pairs) == 1
    res = process_export([_removal_task(1, [good])], {"removal": "0" * 64})
    assert not res.pairs and "label_config_sha is 000000000000" in res.invalid[0]["problems"][0]
    wrong_dims = process_export([_removal_task(1, [good], dimensions=["aesthetics"])], {"removal": sha})
    assert not wrong_dims.pairs and "dimensions ['aesthetics']" in wrong_dims.invalid[0]["problems"][0]


def test_published_images_are_keyed_by_candidate_set_and_never_overwritten(
    candidates: Path, project: Path, tmp_path: Path
) -> None:
    import dataclasses

    from onereward.annotate.artifact_io import copy_candidate_set, read_candidate_set
    from onereward.annotate.export import build_task_drafts, publish_images

    cs = read_candidate_set(candidates, kind=("candidates", "project"), what="--candidates")
    copy_candidate_set(cs, tmp_path / "p")
    drafts = build_task_drafts(cs, tmp_path / "p", predictions="none")
    store = tmp_path / "store"
    n_images = len({(d.key, rel) for d in drafts for rel in d.images.values()})
    assert publish_images(tmp_path / "p", drafts, store) == n_images
    first = {p: p.read_bytes() for p in store.rglob("*.png")}
    assert len(first) == n_images
    assert all(f"{d.item_id}-{d.key.split(':')[1]}" in {p.name for p in store.iterdir()} for d in drafts)
    assert publish_images(tmp_path / "p", drafts, store) == 0  # a rerun publishes nothing new
    # Changed candidates -> a new candidate-set hash -> a new folder; the old files stay as they were.
    changed = [dataclasses.replace(drafts[0], key=f"{drafts[0].item_id}:{'f' * 16}")]
    assert publish_images(tmp_path / "p", changed, store) == len(drafts[0].images)
    assert all(p.read_bytes() == b for p, b in first.items())
    # Same key but different bytes (e.g. a changed source image) is refused, not overwritten.
    overlay = tmp_path / "p" / drafts[0].images["source_overlay"]
    overlay.unlink()  # it is a hard link into the store: replace the file, not its bytes
    overlay.write_bytes(b"not the published overlay")
    with pytest.raises(ArtifactError, match="never replaced"):
        publish_images(tmp_path / "p", drafts[:1], store)
    assert all(p.read_bytes() == b for p, b in first.items())


def test_noisy_three_annotators_alpha_matches_hand_computation_and_ties_are_dropped() -> None:
    from onereward.annotate.importer import agreement_by_dimension

    answers = {  # task id -> each annotator's (best, worst) on removal_quality
        1: ["AC", "AC", "AC"],  # unanimous -> A>C
        2: ["AC", "AB", "BC"],  # best A 2/3, worst C 2/3 -> A>C although no label repeats
        3: ["AB", "BC", "CA"],  # no majority on best -> dropped (tie)
        4: ["AB", "BA"],  # 1/1 -> dropped (tie)
    }
    tasks_json = [
        _removal_task(tid, [_ann(10 * tid + k, k, bw[0], bw[1], "2026-01-01") for k, bw in enumerate(row)])
        for tid, row in answers.items()
    ]
    res = process_export(tasks_json)
    assert [(p["ls_task_id"], p["winner"], p["loser"]) for p in res.pairs] == [
        (1, "x-c0", "x-c2"),
        (2, "x-c0", "x-c2"),
    ]
    assert [p["agreement"] for p in res.pairs] == [1.0, pytest.approx(2 / 3)]
    assert res.counts["dropped_tie"] == 2
    # By hand (nominal alpha over labels "A>C", ...; 11 values): observed disagreement
    # (0 + 6/2 + 6/2 + 2/1) / 11 = 8/11; value totals A>C 4, A>B 3, B>C 2, C>A 1, B>A 1 give
    # expected (121 - 31) / (11 * 10) = 9/11; alpha = 1 - (8/11) / (9/11) = 1/9.
    alpha = agreement_by_dimension(res.units)["removal_quality"]
    assert alpha["n_units"] == 4 and alpha["krippendorff_alpha"] == pytest.approx(1 / 9)
