"""Preferences for reward training: validation with exclusions, split by item, both orders."""

from __future__ import annotations

import numpy as np
import pytest

from onereward.artifacts import ArtifactWriter
from onereward.errors import InputError
from onereward.imageio import save_png
from onereward.reward.data import both_orders, read_preferences, split_by_item
from onereward.tables import write_table


def _row(pair_id, item_id, task="image_fill", dimension="aesthetics", prompt="a red circle", winner="w", loser="l",
         winner_image="c/w.png", loser_image="c/l.png"):  # fmt: skip
    return {
        "pair_id": pair_id, "item_id": item_id, "task": task, "dimension": dimension, "prompt": prompt,
        "winner": f"{item_id}-{winner}", "loser": f"{item_id}-{loser}", "winner_image": winner_image,
        "loser_image": loser_image, "source_image": "c/s.png", "mask_image": "c/m.png",
        "annotators": "[]", "n_annotators": 1, "agreement": 1.0,
    }  # fmt: skip


def _write(tmp_path, rows, name="prefs"):
    with ArtifactWriter(tmp_path / name, kind="preferences", stage="test") as art:
        for f in ("w", "l", "s", "m"):
            save_png(art.path / "c" / f"{f}.png", np.full((8, 8, 3), 40, np.uint8))
        write_table(art.path / "pairs.parquet", rows)
    return tmp_path / name


def test_bad_rows_are_excluded_with_a_reason(tmp_path):
    rows = [
        _row("ok1", "i1"),
        _row("ok2", "i2", task="object_removal", dimension="removal_quality", prompt=None),
        _row("t", "i3", task="paint_by_numbers"),
        _row("d", "i4", dimension="sharpness"),
        _row("na", "i5", task="object_removal", dimension="aesthetics", prompt=None),
        _row(
            "ta", "i6", task="image_extend", dimension="text_alignment", prompt=None
        ),  # extend without prompt
        _row("same", "i7", winner="x", loser="x"),
        _row("missing", "i8", loser_image="c/nope.png"),
        _row("ok1", "i9"),  # duplicate pair id
    ]
    prefs = read_preferences(_write(tmp_path, rows))
    assert [p.pair_id for p in prefs.pairs] == ["ok1", "ok2"]
    reasons = {e.pair_id: e.reason for e in prefs.excluded}
    assert reasons["t"].startswith("unknown task") and "paint_by_numbers" in reasons["t"]
    assert reasons["d"].startswith("unknown dimension")
    assert reasons["na"].startswith("dimension not evaluated") and reasons["ta"].startswith(
        "dimension not evaluated"
    )
    assert reasons["same"].startswith("winner == loser")
    assert reasons["missing"].startswith("missing image: loser_image")
    assert prefs.exclusion_counts()["unknown task"] == 1
    assert len(prefs.excluded) == 7


def test_no_usable_pair_and_missing_columns_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"no usable pair .*winner == loser"):
        read_preferences(_write(tmp_path, [_row("same", "i1", winner="x", loser="x")]))
    bad = [{k: v for k, v in _row("a", "i1").items() if k != "loser_image"}]
    with pytest.raises(InputError, match="lacks column.*loser_image"):
        read_preferences(_write(tmp_path, bad, name="nocol"))


def test_split_is_by_item_seeded_and_stratified(tmp_path):
    rows = []
    for i in range(20):
        task = ("image_fill", "image_extend", "object_removal")[i % 3]
        dims = {"image_fill": ["aesthetics", "consistency"], "image_extend": ["structure", "consistency"],
                "object_removal": ["removal_quality"]}[task]  # fmt: skip
        for d in dims:
            rows.append(
                _row(
                    f"p{i}-{d}",
                    f"item{i}",
                    task=task,
                    dimension=d,
                    prompt=None if task != "image_fill" else "x",
                )
            )
    pairs = read_preferences(_write(tmp_path, rows)).pairs
    train, test = split_by_item(pairs, test_fraction=0.25, seed=3)
    train_items, test_items = {p.item_id for p in train}, {p.item_id for p in test}
    assert not train_items & test_items  # no item on both sides
    assert len(train) + len(test) == len(pairs)
    assert {p.task for p in test} == {"image_fill", "image_extend", "object_removal"}  # every task tested
    again = split_by_item(pairs, test_fraction=0.25, seed=3)[1]
    other = split_by_item(pairs, test_fraction=0.25, seed=4)[1]
    assert [p.pair_id for p in again] == [p.pair_id for p in test]
    assert {p.item_id for p in other} != test_items


def test_empty_split_is_a_clear_error(tmp_path):
    pairs = read_preferences(
        _write(tmp_path, [_row("a", "i1"), _row("b", "i1", dimension="consistency")])
    ).pairs
    with pytest.raises(InputError, match="test split is empty"):
        split_by_item(pairs)
    with pytest.raises(InputError, match="test_fraction"):
        split_by_item(pairs, test_fraction=0.0)


def test_both_orders_labels(tmp_path):
    pairs = read_preferences(_write(tmp_path, [_row("a", "i1")])).pairs
    first, second = both_orders(pairs)
    assert (first.first, first.second, first.label_yes) == (pairs[0].winner_image, pairs[0].loser_image, True)
    assert (second.first, second.second, second.label_yes) == (
        pairs[0].loser_image,
        pairs[0].winner_image,
        False,
    )
