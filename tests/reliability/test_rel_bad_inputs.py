"""Bad inputs to every stage's CLI (issue 16): for each case no traceback reaches the user, the
error names the input and the field, the exit code is non-zero (or the item is skipped and
reported where the stage skips bad items), and earlier outputs are untouched.

Every stage input that reads an artifact is one row of :data:`STAGE_INPUTS`; the manifest cases
(wrong kind, schema, hash, not an artifact) and a bad setting run against every row, so a new
stage is covered by adding its row. Content cases (images, masks, prompts, sidecars, tables,
Label Studio exports, weights) follow, grouped by the stage that reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import TRAIN_POLICY_FAST, flags
from PIL import Image
from rkit import (
    LEDGER,
    WRITTEN,
    bomb_png,
    copy_artifact,
    edit_manifest,
    encode,
    image_cases,
    refused,
    rehash,
    run_ok,
    texture,
)

W = dict[str, Path]


@dataclass(frozen=True)
class StageInput:
    """One input of one stage: the CLI command line with ``input`` at ``flag`` (the others valid),
    the artifact kind it must be, and a setting the stage must refuse (flags, field named)."""

    stage: str
    flag: str
    kind: str
    argv: Callable[[W, Path, Path], list]
    bad_setting: tuple[tuple[str, ...], str]
    expect: tuple[tuple[str, str], ...] = ()  # (manifest case, what the error names instead)

    @property
    def id(self) -> str:
        return f"{self.stage}{self.flag}"


def _zoo(w: W) -> list:
    return ["--zoo", w["zoo"]]


STAGE_INPUTS: list[StageInput] = [
    StageInput("select", "--pool", "pool",
               lambda w, i, o: ["select", "--pool", i, "--out", o, *_zoo(w), "--cache-dir", w["cache"], "--no-progress"],
               (("--size", "0"), "select.size (--size)"),
               (("not_an_artifact", "holds no images"),)),  # a plain folder is a pool of images
    StageInput("synth-candidates", "--items", "subset",
               lambda w, i, o: ["synth-candidates", "--items", i, "--out", o],
               (("--per-item", "0"), "--per-item")),
    StageInput("generate", "--subset", "subset",
               lambda w, i, o: ["generate", "--subset", i, "--out", o, *_zoo(w), "--num-candidates", "2",
                                "--min-steps", "2", "--max-steps", "2"],
               (("--num-candidates", "0"), "generate.num_candidates (--num-candidates)")),
    StageInput("generate", "--policy", "policy",
               lambda w, i, o: ["generate", "--subset", w["subset"], "--out", o, *_zoo(w), "--policy", i,
                                "--num-candidates", "2", "--min-steps", "2", "--max-steps", "2"],
               (("--policy-weights", "ema", "--strength-min", "2"), "generate.strength_min (--strength-min)")),
    StageInput("generate-merge", "--shards", "candidates",
               lambda w, i, o: ["generate-merge", "--shards", i, "--out", o],
               (("--shards",), "--shards")),
    StageInput("export", "--candidates", "candidates",
               lambda w, i, o: ["export", "--candidates", i, "--out", o, "--offline"],
               (("--chunk-size", "0"), "export.chunk_size (--chunk-size)")),
    StageInput("simulate-annotations", "--project", "project",
               lambda w, i, o: ["simulate-annotations", "--project", i, "--out", o],
               (("--annotators", "0"), "simulate.annotators (--annotators)")),
    StageInput("import", "--project", "annotations",
               lambda w, i, o: ["import", "--project", i, "--out", o],
               (("--max-retries", "-1"), "import.max_retries (--max-retries)")),
    StageInput("train-reward", "--preferences", "preferences",
               lambda w, i, o: ["train-reward", "--preferences", i, "--out", o, *_zoo(w), "--max-steps", "1",
                                "--batch-size", "2"],
               (("--batch-size", "3"), "batch_size")),
    StageInput("train-policy", "--subset", "subset",
               lambda w, i, o: ["train-policy", "--subset", i, "--reward-model", w["reward_model"], "--out", o,
                                *_zoo(w), *flags(TRAIN_POLICY_FAST)],
               (("--reward-lambda", "1.5"), "policy.reward_lambda (--reward-lambda)")),
    StageInput("train-policy", "--reward-model", "reward_model",
               lambda w, i, o: ["train-policy", "--subset", w["subset"], "--reward-model", i, "--out", o,
                                *_zoo(w), *flags(TRAIN_POLICY_FAST)],
               (("--t1", "3", "--t2", "2"), "policy.t1 (--t1)")),
    StageInput("policy-references", "--subset", "subset",
               lambda w, i, o: ["policy-references", "--subset", i, "--out", o, *_zoo(w), "--rollout-steps", "2",
                                "--reference-seeds", "1"],
               (("--reference-seeds", "0"), "policy.reference_seeds (--reference-seeds)")),
    StageInput("evaluate", "--pool", "pool",
               lambda w, i, o: ["evaluate", "--pool", i, "--reward-model", w["reward_model"], "--out", o, *_zoo(w),
                                "--human", "none", "--fill-items", "1", "--extend-items", "0", "--removal-items", "0"],
               (("--fill-items", "-2"), "evaluate.fill_items (--fill-items)")),
    StageInput("evaluate", "--reward-model", "reward_model",
               lambda w, i, o: ["evaluate", "--pool", w["pool"], "--reward-model", i, "--out", o, *_zoo(w),
                                "--policy", w["policy"], "--no-ema",
                                "--human", "none", "--fill-items", "1", "--extend-items", "0", "--removal-items", "0"],
               (("--margin", "0.7"), "evaluate.margin (--margin)"),
               (("not_an_artifact", "holds neither model/config.json"),)),
    StageInput("evaluate", "--policy", "policy",
               lambda w, i, o: ["evaluate", "--pool", w["pool"], "--reward-model", w["reward_model"], "--policy", i,
                                "--out", o, *_zoo(w), "--human", "none", "--fill-items", "1", "--extend-items", "0",
                                "--removal-items", "0"],
               (("--steps", "0"), "evaluate.steps (--steps)")),
    StageInput("evaluate-human", "--evaluation", "evaluation",
               lambda w, i, o: ["evaluate-human", "--evaluation", i, "--out", o],
               (("--evaluation",), "--evaluation")),
]  # fmt: skip

# Stages without an artifact input: a bad setting each (flags, what the error names).
NO_INPUT_STAGES: dict[str, tuple[Callable[[W, Path], list], list[str]]] = {
    "synth": (lambda w, t: ["synth", "--out", t / "out", "--image-size", "33"], ["synth.image_size (--image-size)"]),
    "zoo build": (lambda w, t: ["zoo", "build", "--out", t / "out", "--profile", _bad_profile(t)],
                  ["bad.yaml", "selec"]),
    "zoo import-models": (lambda w, t: ["zoo", "import-models", "--profile", _bad_profile(t)], ["bad.yaml", "selec"]),
    "pipeline run": (lambda w, t: ["pipeline", "run", "end_to_end", "--local", "--out", t / "out", "--param",
                                   "no_such_param=1"], ["no_such_param"]),
    "profile": (lambda w, t: ["profile", _bad_profile(t)], ["bad.yaml", "selec"]),
}  # fmt: skip


def _bad_profile(tmp: Path) -> Path:
    """The tiny profile with a misspelt section key (``selec``)."""
    from importlib import resources

    text = resources.files("onereward.profiles").joinpath("tiny.yaml").read_text()
    path = tmp / "bad.yaml"
    path.write_text(text + "\nselec:\n  size: 3\n")
    return path


@pytest.mark.parametrize("stage", sorted(NO_INPUT_STAGES))
def test_stages_without_artifact_inputs_refuse_bad_settings(stage: str, rel_world: W, tmp_path: Path) -> None:
    argv, names = NO_INPUT_STAGES[stage]
    refused(f"{stage} bad setting", "setting", argv(rel_world, tmp_path), names=names, out=tmp_path / "out",
            protect=[rel_world["root"]])  # fmt: skip


GOOD = {"pool": "pool", "subset": "subset", "candidates": "candidates", "project": "project",
        "annotations": "annotations", "preferences": "preferences", "reward_model": "reward_model",
        "policy": "policy"}  # fmt: skip


@pytest.fixture(scope="module")
def forged(rel_world: W, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Per artifact kind: an artifact of another kind, one with schema_version 99 and one whose
    data changed after its manifest was written; plus a folder that is no artifact at all."""
    root = tmp_path_factory.mktemp("forged")
    WRITTEN.append(root)
    out: dict[str, dict[str, Path]] = {}
    for kind in {s.kind for s in STAGE_INPUTS}:
        # a real artifact of the kind where the world has one, else one relabelled (evaluation)
        good = (
            rel_world[GOOD[kind]]
            if kind in GOOD
            else edit_manifest(copy_artifact(rel_world["pool"], root / f"{kind}-as"), kind=kind)
        )
        other = rel_world["preferences"] if kind != "preferences" else rel_world["pool"]
        schema = edit_manifest(copy_artifact(good, root / f"{kind}-schema"), schema_version=99)
        hashed = copy_artifact(good, root / f"{kind}-hash")
        victim = sorted(
            p for p in hashed.rglob("*") if p.is_file() and p.name not in ("manifest.json", "metrics.json")
        )[0]
        victim.write_bytes(victim.read_bytes() + b" ")
        plain = root / f"{kind}-plain"
        plain.mkdir()
        (plain / "items.parquet").write_bytes(b"not an artifact")
        out[kind] = {
            "wrong_kind": other,
            "wrong_schema": schema,
            "wrong_hash": hashed,
            "not_an_artifact": plain,
        }
    return out


MANIFEST_CASES = {
    "wrong_kind": "field 'kind'",
    "wrong_schema": "field 'schema_version'",
    "wrong_hash": "field 'content_hash'",
    "not_an_artifact": "manifest.json",
}


def _earlier_output(rel_world: W, tmp_path: Path) -> Path:
    """An earlier artifact at the case's --out: a refused run must leave it as it was."""
    return copy_artifact(rel_world["pool"], tmp_path / "out")


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
@pytest.mark.parametrize("row", STAGE_INPUTS, ids=lambda r: r.id)
def test_manifests_of_the_wrong_kind_schema_or_hash_are_refused(
    row: StageInput, case: str, rel_world: W, forged, tmp_path: Path
) -> None:
    bad = forged[row.kind][case]
    out = _earlier_output(rel_world, tmp_path)
    field = dict(row.expect).get(case, MANIFEST_CASES[case])
    refused(f"{row.id} {case}", f"manifest:{case}", row.argv(rel_world, bad, out),
            names=[row.flag, field], out=out, protect=[bad, rel_world["root"]])  # fmt: skip


@pytest.mark.parametrize("row", STAGE_INPUTS, ids=lambda r: r.id)
def test_bad_settings_are_refused_naming_the_field(row: StageInput, rel_world: W, tmp_path: Path) -> None:
    extra, field = row.bad_setting
    argv = row.argv(rel_world, rel_world[GOOD.get(row.kind, "pool")], _earlier_output(rel_world, tmp_path))
    out = tmp_path / "out"
    refused(f"{row.id} {' '.join(extra)}", "setting", [*argv, *extra], names=[field], out=out,
            protect=[rel_world["root"]])  # fmt: skip


# ---- select_subset: images, masks, prompts, sidecar rows, task names ------------------------------


def _skipped(case: str, category: str) -> None:
    """A bad item that the stage skips and reports (checked by the caller in the artifact)."""
    LEDGER.bad_input(category)


def _pool_folder(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A folder pool (items.jsonl) holding every case of the issue's lists beside good items.

    Returns (item id -> start of the reason select must report, item id -> start of the RGB
    conversion rule recorded for the valid images in other modes)."""
    root.mkdir(parents=True)
    rows: list[dict] = []
    bad: dict[str, str] = {}
    converted: dict[str, str] = {}
    fill = {"task": "image_fill", "prompt": "a red circle"}
    for i in range(6):
        (root / f"good{i}.png").write_bytes(encode(texture(i)))
        rows.append({"file_name": f"good{i}.png", "item_id": f"good{i}", **fill})
    for c in image_cases():  # images: bad ones are skipped, valid ones in other modes converted
        ext = "jpg" if c.name.startswith(("jpeg", "cmyk")) else "png"
        (root / f"{c.name}.{ext}").write_bytes(c.data())
        rows.append({"file_name": f"{c.name}.{ext}", "item_id": c.name, **fill})
        (bad if c.reason else converted)[c.name] = c.reason or c.conversion
    # masks: wrong size, empty, zero bytes are bad; non-binary is thresholded; full is accepted
    mask = np.zeros((64, 64), np.uint8)
    grey = mask.copy()
    grey[10:40, 10:40] = 180
    masks = {
        "mask_wrong_size": (
            np.full((32, 48), 255, np.uint8),
            "mask: size 48x32 differs from the image's 64x64",
        ),
        "mask_empty": (mask, "mask: no pixel >= 128 (nothing to generate)"),
        "mask_zero_bytes": (None, "mask: empty file (0 bytes)"),
        "mask_non_binary": (grey, ""),
        "mask_full": (np.full((64, 64), 255, np.uint8), ""),
    }
    for n, (name, (arr, reason)) in enumerate(masks.items()):
        (root / f"{name}.png").write_bytes(encode(texture(40 + n)))
        (root / f"{name}_m.png").write_bytes(b"" if arr is None else encode(arr))
        rows.append({"file_name": f"{name}.png", "mask": f"{name}_m.png", "item_id": name, **fill})
        if reason:
            bad[name] = reason
    # prompts, sidecar paths outside the folder, unknown task names
    (root.parent / "outside.png").write_bytes(encode(texture(60)))
    for n, (item_id, row, reason) in enumerate([
        ("prompt_long", {"prompt": "x" * 100_000}, "prompt: 100000 characters, longer than max_prompt_chars 2000"),
        ("outside_image", {"file_name": "../outside.png"}, "file_name: '../outside.png' points outside the pool folder"),
        ("outside_mask", {"mask": "../../etc/passwd"}, "mask: '../../etc/passwd' points outside the pool folder"),
        ("absolute_image", {"file_name": "/etc/hostname"}, "file_name: '/etc/hostname' points outside the pool folder"),
        ("unknown_task", {"task": "colorize"}, "task: unknown task 'colorize'"),
    ]):  # fmt: skip
        (root / f"{item_id}.png").write_bytes(encode(texture(70 + n)))
        rows.append({"file_name": f"{item_id}.png", "item_id": item_id, **fill, **row})
        bad[item_id] = reason
    lines = [json.dumps(r).encode() for r in rows]
    (root / "prompt_utf8.png").write_bytes(encode(texture(80)))
    lines.append(
        b'{"file_name": "prompt_utf8.png", "item_id": "prompt_utf8", "task": "image_fill", "prompt": "caf\xe9"}'
    )
    bad["prompt_utf8"] = "prompt: not valid UTF-8 (byte 0xe9 at character 3)"
    (root / "items.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return bad, converted


def test_select_skips_and_reports_every_bad_item_and_converts_other_modes(
    rel_world: W, tmp_path: Path
) -> None:
    bad, converted = _pool_folder(tmp_path / "pool")
    out = tmp_path / "subset"
    base = ["select", "--pool", tmp_path / "pool", *_zoo(rel_world), "--cache-dir", rel_world["cache"],
            "--no-progress", "--size", "40"]  # fmt: skip
    # too many bad items: refused as a whole, nothing written
    refused("select over max_bad_fraction", "select:pool", [*base, "--out", out], names=["--pool", "max_bad_fraction"],
            out=out, protect=[tmp_path / "pool"])  # fmt: skip
    run_ok("select corpus", [*base, "--out", out, "--max-bad-fraction", "0.9"], protect=[tmp_path / "pool"])
    reported = {
        r["item_id"] or r["origin"]: r["reason"] for r in pq.read_table(out / "bad_items.parquet").to_pylist()
    }
    for item_id, reason in bad.items():
        _skipped(item_id, "select:item")
        got = reported.get(item_id) or next((v for k, v in reported.items() if item_id in k), "")
        assert got.startswith(reason), (item_id, got)
    assert len(reported) == len(bad), sorted(set(reported) - set(bad))
    rows = {r["item_id"]: r for r in pq.read_table(out / "items.parquet").to_pylist()}
    metrics = json.loads((out / "metrics.json").read_text())
    for item_id, rule in converted.items():  # valid images in other modes: converted, recorded, counted
        _skipped(item_id, "select:converted")
        meta = json.loads(rows[item_id]["meta"])["select"]
        assert meta["image_conversion"].startswith(rule), (item_id, meta)
    assert metrics["n_images_converted"] == len(converted) == metrics["n_selected_converted"]
    assert json.loads(rows["mask_non_binary"]["meta"])["select"]["mask_rule"] == "grey >= 128"
    assert np.asarray(Image.open(out / rows["mask_full"]["mask"])).min() == 255  # a full mask is kept
    _skipped("mask_non_binary", "select:item")
    _skipped("mask_full", "select:item")


# ---- artifacts whose content is bad but whose hash is valid (forged after the fact) --------------


def _forge(src: Path, dst: Path, edit: Callable[[Path, list[dict]], list[dict] | None], table: str) -> Path:
    """A copy of the artifact ``src`` with ``edit(root, rows of table)`` applied (it may change files
    and return new rows), its content hash recomputed: only the stage's own checks can catch it."""
    from onereward.tables import read_table, write_table

    root = copy_artifact(src, dst)
    rows = read_table(root / table)
    new = edit(root, rows)
    if new is not None:
        schema = pq.read_schema(root / table)
        write_table(root / table, new, schema=schema)
    return rehash(root)


def _first(rows: list[dict]) -> dict:
    return sorted(rows, key=lambda r: r["item_id"])[0]


def _set(field: str, value) -> Callable[[Path, list[dict]], list[dict]]:
    def edit(root: Path, rows: list[dict]) -> list[dict]:
        _first(rows)[field] = value
        return rows

    return edit


def _file(field: str, data: Callable[[], bytes]) -> Callable[[Path, list[dict]], None]:
    def edit(root: Path, rows: list[dict]) -> None:
        (root / _first(rows)[field]).write_bytes(data())

    return edit


PNG = encode(texture(7))
SUBSET_CASES = {  # case -> (edit of the subset's first item, what the error names besides --subset)
    "image_truncated": (_file("image", lambda: PNG[: len(PNG) // 2]), ["field 'image'", "truncated"]),
    "image_zero_bytes": (_file("image", lambda: b""), ["field 'image'", "empty file"]),
    "image_bomb": (_file("image", bomb_png), ["field 'image'", "too large to decode safely"]),
    "mask_wrong_size": (_file("mask", lambda: encode(np.full((16, 24), 255, np.uint8))), ["mask", "size"]),
    "mask_empty": (_file("mask", lambda: encode(np.zeros((64, 64), np.uint8))), ["mask"]),
    "mask_corrupt": (
        _file("mask", lambda: b"\x89PNG\r\n\x1a\nbroken"),
        ["field 'mask'", "not a readable image"],
    ),
    "unknown_task": (_set("task", "colorize"), ["field 'task'", "colorize"]),
    "prompt_100kB": (_set("prompt", "x" * 100_000), ["field 'prompt'", "100000 characters"]),
}


@pytest.mark.parametrize("case", sorted(SUBSET_CASES))
def test_generate_refuses_bad_subset_items_before_any_work(case: str, rel_world: W, tmp_path: Path) -> None:
    edit, names = SUBSET_CASES[case]
    subset = _forge(rel_world["subset"], tmp_path / "subset", edit, "items.parquet")
    item = _first(pq.read_table(subset / "items.parquet").to_pylist())["item_id"]
    out = _earlier_output(rel_world, tmp_path)
    row = next(r for r in STAGE_INPUTS if r.id == "generate--subset")
    refused(f"generate {case}", f"subset:{case}", row.argv(rel_world, subset, out),
            names=["--subset", item, *names], out=out, protect=[subset, rel_world["root"]])  # fmt: skip


# ---- import_annotations: Label Studio exports -----------------------------------------------------


def _annotation_cases() -> dict[str, Callable[[dict], None]]:
    """Edits of one task's first annotation (each case on its own task)."""

    def invalid_choice(t: dict) -> None:
        t["annotations"][0]["result"][0]["value"]["choices"] = ["Z"]

    def missing_dimension(t: dict) -> None:
        t["annotations"][0]["result"] = t["annotations"][0]["result"][2:]

    def best_equals_worst(t: dict) -> None:
        res = t["annotations"][0]["result"]
        res[1]["value"]["choices"] = list(
            res[0]["value"]["choices"] if res[0]["value"]["choices"] != ["none"] else ["A"]
        )
        res[0]["value"]["choices"] = list(res[1]["value"]["choices"])

    def cancelled(t: dict) -> None:
        t["annotations"][0].update(was_cancelled=True, result=[])

    def unknown_dimension(t: dict) -> None:
        t["annotations"][0]["result"][0]["from_name"] = "sharpness_best"

    def malformed_result(t: dict) -> None:
        t["annotations"][0]["result"] = [
            42,
            {"from_name": ["x"]},
            {
                "from_name": "text_alignment_best",
                "to_name": "source_overlay",
                "type": "choices",
                "value": "A",
            },
        ]

    def malformed_annotations(t: dict) -> None:
        t["annotations"] = ["not an annotation"]

    return {f.__name__: f for f in (invalid_choice, missing_dimension, best_equals_worst, cancelled,
                                    unknown_dimension, malformed_result, malformed_annotations)}  # fmt: skip


def _forge_export(src: Path, dst: Path, edit: Callable[[list], object]) -> Path:
    root = copy_artifact(src, dst)
    tasks = json.loads((root / "export.json").read_text())
    new = edit(tasks)
    (root / "export.json").write_text(json.dumps(tasks if new is None else new))
    return rehash(root)


def test_import_skips_and_reports_invalid_cancelled_and_contradictory_answers(
    rel_world: W, tmp_path: Path
) -> None:
    cases = _annotation_cases()
    edited: dict[str, int] = {}

    def edit(tasks: list) -> list:
        prompted = [t for t in tasks if t["annotations"]]
        assert len(prompted) >= len(cases), "the world needs more annotated tasks"
        for (name, fn), t in zip(cases.items(), prompted, strict=False):
            fn(t)
            edited[name] = t["id"]
        return tasks

    annotations = _forge_export(rel_world["annotations"], tmp_path / "annotations", edit)
    out = tmp_path / "prefs"
    run_ok("import corpus", ["import", "--project", annotations, "--out", out], protect=[annotations])
    metrics = json.loads((out / "metrics.json").read_text())
    invalid = {
        i.get("task_id", i.get("id")): " ".join(i["problems"])
        for i in json.loads((out / "invalid.json").read_text())
    }
    for _ in cases:
        LEDGER.bad_input("import:annotation")
    assert "'Z'" in invalid[edited["invalid_choice"]]
    assert "not answered" in invalid[edited["missing_dimension"]]
    assert "unknown control 'sharpness_best'" in invalid[edited["unknown_dimension"]]
    assert "expected an object" in invalid[edited["malformed_result"]]
    assert "'annotations' a list of objects" in invalid[edited["malformed_annotations"]]
    assert metrics["n_cancelled"] >= 1 and metrics["n_best_equals_worst"] >= 1


@pytest.mark.parametrize(
    "case,edit,names",
    [
        ("not_json", lambda tasks: "{not json", ["--project", "export.json", "not valid JSON"]),
        ("not_a_list", lambda tasks: {"tasks": tasks}, ["--project", "not a list of tasks"]),
        ("entry_not_a_task", lambda tasks: [*tasks, 42], ["--project", "entry", "not a task object"]),
    ],
)
def test_import_refuses_an_export_that_is_not_a_task_list(
    case, edit, names, rel_world: W, tmp_path: Path
) -> None:
    root = copy_artifact(rel_world["annotations"], tmp_path / "annotations")
    tasks = json.loads((root / "export.json").read_text())
    new = edit(tasks)
    (root / "export.json").write_text(new if isinstance(new, str) else json.dumps(new))
    rehash(root)
    out = _earlier_output(rel_world, tmp_path)
    refused(f"import {case}", "import:export", ["import", "--project", root, "--out", out], names=names, out=out,
            protect=[root])  # fmt: skip


# ---- train_reward_model: preference tables ----------------------------------------------------------


def test_train_reward_refuses_a_table_without_its_columns(rel_world: W, tmp_path: Path) -> None:
    def drop(root: Path, rows: list[dict]) -> None:
        table = pq.read_table(root / "pairs.parquet")
        pq.write_table(table.drop_columns(["loser"]), root / "pairs.parquet")

    prefs = _forge(rel_world["preferences"], tmp_path / "prefs", drop, "pairs.parquet")
    out = _earlier_output(rel_world, tmp_path)
    row = next(r for r in STAGE_INPUTS if r.stage == "train-reward")
    refused("train-reward missing column", "preferences:columns", row.argv(rel_world, prefs, out),
            names=["--preferences", "pairs.parquet", "loser"], out=out, protect=[prefs])  # fmt: skip


def test_train_reward_excludes_and_reports_bad_rows(rel_world: W, tmp_path: Path) -> None:
    """winner == loser, unknown task and dimension, an image outside the artifact, an unreadable
    image and a 100 kB prompt: each row is excluded with its reason, the rest trains."""
    cases = {
        "winner_equals_loser": (lambda r, root: r.update(loser=r["winner"]), "winner == loser"),
        "unknown_task": (lambda r, root: r.update(task="colorize"), "unknown task: 'colorize'"),
        "unknown_dimension": (lambda r, root: r.update(dimension="sharpness"), "unknown dimension: 'sharpness'"),
        "image_outside": (lambda r, root: r.update(winner_image="../../outside.png"), "winner_image"),
        "image_truncated": (lambda r, root: (root / r["winner_image"]).write_bytes(PNG[:100]), "unreadable image"),
        "prompt_100kB": (lambda r, root: r.update(prompt="x" * 100_000), "prompt"),
    }  # fmt: skip
    ids: dict[str, str] = {}

    def edit(root: Path, rows: list[dict]) -> list[dict]:
        fill = [r for r in rows if r["task"] == "image_fill" and r["prompt"]]
        assert len(fill) > len(cases) + 4, "the world needs more image_fill pairs"
        used_images = {r["winner_image"] for r in rows} | {r["loser_image"] for r in rows}
        for (name, (fn, _)), r in zip(cases.items(), fill, strict=False):
            if name == "image_truncated":  # an image no other row uses
                new = f"candidates/{r['item_id']}/truncated.png"
                assert new not in used_images
                (root / new).write_bytes(b"")
                r["winner_image"] = new
            fn(r, root)
            ids[name] = r["pair_id"]
        return rows

    prefs = _forge(rel_world["preferences"], tmp_path / "prefs", edit, "pairs.parquet")
    out = tmp_path / "rm"
    row = next(r for r in STAGE_INPUTS if r.stage == "train-reward")
    run_ok("train-reward corpus", row.argv(rel_world, prefs, out), protect=[prefs])
    excluded = {e["pair_id"]: e["reason"] for e in json.loads((out / "excluded.json").read_text())}
    for name, (_, reason) in cases.items():
        LEDGER.bad_input("preferences:row")
        assert reason in excluded.get(ids[name], ""), (name, excluded.get(ids[name]))


# ---- reward-model and policy artifacts with missing or mismatched weights --------------------------


def _weights_edit(rel: str, how: str) -> Callable[[Path], None]:
    """Remove the safetensors file at ``rel``, cut it short, or give one tensor another shape."""

    def edit(root: Path) -> None:
        path = root / rel
        if how == "missing":
            path.unlink()
        elif how == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:  # mismatched: the same keys, one tensor of another shape
            from safetensors.torch import load_file, save_file

            state = load_file(str(path))
            key = sorted(k for k, v in state.items() if v.ndim == 2)[0]
            state[key] = state[key][:, :-1].contiguous()
            save_file(state, str(path), metadata={"format": "pt"})

    return edit


def _forged_weights(src: Path, dst: Path, rel: str, how: str) -> Path:
    root = copy_artifact(src, dst)
    _weights_edit(rel, how)(root)
    return rehash(root)


WEIGHT_CASES = ("missing", "truncated", "mismatched")
RM_WEIGHTS = "model/model.safetensors"
POLICY_WEIGHTS = "lora/pytorch_lora_weights.safetensors"
WEIGHT_READERS = {  # input -> (artifact in the world, weights file, STAGE_INPUTS row, extra argv)
    "train-policy--reward-model": ("reward_model", RM_WEIGHTS, "train-policy--reward-model", ()),
    "evaluate--reward-model": ("reward_model", RM_WEIGHTS, "evaluate--reward-model", ()),
    "generate--policy": ("policy", POLICY_WEIGHTS, "generate--policy", ()),
    "evaluate--policy": ("policy", POLICY_WEIGHTS, "evaluate--policy", ("--no-ema",)),
}


@pytest.mark.parametrize("how", WEIGHT_CASES)
@pytest.mark.parametrize("reader", sorted(WEIGHT_READERS))
def test_missing_or_mismatched_weights_are_refused(
    reader: str, how: str, rel_world: W, tmp_path: Path
) -> None:
    kind, rel, row_id, extra = WEIGHT_READERS[reader]
    bad = _forged_weights(rel_world[kind], tmp_path / kind, rel, how)
    row = next(r for r in STAGE_INPUTS if r.id == row_id)
    out = _earlier_output(rel_world, tmp_path)
    refused(f"{reader} weights {how}", f"weights:{how}", [*row.argv(rel_world, bad, out), *extra],
            names=[row.flag, Path(rel).name], out=out, protect=[bad, rel_world["root"]])  # fmt: skip
