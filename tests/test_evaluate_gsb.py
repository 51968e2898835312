"""GSB verdicts, tallies and intervals, usability, and the reward-model judge asked in both orders:
position bias cancels, swapping the models mirrors Good and Bad, a model against itself is Same."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_helpers import PositionBiasedJudge

from onereward.evaluate.benchmark import (
    EXTEND_NO_PROMPT,
    FILL,
    GROUPS,
    REMOVAL,
    BenchmarkItem,
    group_of,
    select_benchmark,
)
from onereward.evaluate.gsb import (
    BAD,
    GOOD,
    MIRROR,
    SAME,
    Tally,
    reward_verdict,
    score_verdict,
    usability,
    wilson_interval,
)
from onereward.evaluate.judges import reward_judgements
from onereward.evaluate.summary import gsb_tables


def test_reward_verdict_needs_both_orders_to_agree_beyond_the_margin() -> None:
    assert reward_verdict(0.8, 0.2, 0.05) == GOOD
    assert reward_verdict(0.2, 0.8, 0.05) == BAD
    assert reward_verdict(0.8, 0.8, 0.05) == SAME  # says Yes whatever comes first: position bias
    assert reward_verdict(0.2, 0.2, 0.05) == SAME
    assert reward_verdict(0.54, 0.46, 0.05) == SAME  # inside the margin
    assert reward_verdict(0.56, 0.44, 0.05) == GOOD
    rng = np.random.default_rng(0)
    for p, q in rng.uniform(0, 1, size=(200, 2)):
        assert reward_verdict(q, p, 0.05) == MIRROR[reward_verdict(p, q, 0.05)]  # swapping mirrors


def test_score_verdict_and_mirror() -> None:
    assert score_verdict(0.7, 0.6, 0.02) == GOOD
    assert score_verdict(0.6, 0.7, 0.02) == BAD
    assert score_verdict(0.61, 0.6, 0.02) == SAME
    assert score_verdict(0.5, 0.5, 0.0) == SAME


def test_tally_shares_wilson_intervals_net_and_win_rate() -> None:
    t = Tally.of([GOOD] * 3 + [SAME] * 5 + [BAD] * 2)
    d = t.to_dict()
    assert (d["good"], d["same"], d["bad"], d["n"]) == (3, 5, 2, 10)
    # Wilson 95% of 3/10 by hand: centre (0.3 + 1.92/10) / 1.384, half 1.96 sqrt(0.021 + 0.00096) / 1.384
    assert d["good_low"] == pytest.approx(0.1078, abs=1e-4) and d["good_high"] == pytest.approx(
        0.6032, abs=1e-4
    )
    assert d["net"] == pytest.approx(0.1) and d["win_rate"] == pytest.approx(0.6)
    lo, hi = wilson_interval(3, 5)
    assert (d["win_rate_low"], d["win_rate_high"]) == (
        pytest.approx(lo, abs=1e-6),
        pytest.approx(hi, abs=1e-6),
    )
    assert t.mirrored() == Tally(2, 5, 3)
    empty = Tally().to_dict()
    assert empty["n"] == 0 and empty["win_rate"] is None and empty["net"] == 0.0
    with pytest.raises(ValueError, match="verdict"):
        Tally.of(["better"])


def test_usability_is_the_share_of_items_without_a_bad_dimension() -> None:
    got = usability(
        {
            "a": (FILL, [GOOD, SAME, SAME, SAME]),
            "b": (FILL, [GOOD, GOOD, BAD, GOOD]),
            "c": (REMOVAL, [SAME]),
        },
        GROUPS,
    )
    assert got[FILL] == 0.5 and got[REMOVAL] == 1.0 and got[EXTEND_NO_PROMPT] is None


def _items(n: int = 6) -> list[BenchmarkItem]:
    rows = [
        {"item_id": f"f{i}", "task": "image_fill", "prompt": "a red circle", "mask": "m", "image": "i"}
        for i in range(n)
    ]
    rows += [
        {"item_id": f"r{i}", "task": "object_removal", "prompt": None, "mask": "m", "image": "i"}
        for i in range(n)
    ]
    return [BenchmarkItem(r, group_of(r["task"], r["prompt"])) for r in rows]


def _images(items: list[BenchmarkItem], brighter: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """base grey everywhere; the policy brighter on the items in ``brighter``, darker elsewhere."""
    base = {i.item_id: np.full((16, 16, 3), 120, np.uint8) for i in items}
    policy = {i.item_id: np.full((16, 16, 3), 140 if i.item_id in brighter else 100, np.uint8) for i in items}
    return {"base": base, "policy": policy}


def _tallies(judge, items, images):
    rows = reward_judgements(judge, "reward_model", items, images, {}, {}, margin=0.05, batch_size=7)
    return gsb_tables(rows, ["base", "policy"], [FILL, REMOVAL])["reward_model"]["policy"], rows


def test_a_judge_biased_towards_the_first_position_is_cancelled_by_the_two_orders() -> None:
    items = _items()
    images = _images(items, brighter={"f0", "f1", "r0"})
    # pure position bias: P(Yes) = 0.9 whatever the images -> every unit is Same
    tallies, rows = _tallies(PositionBiasedJudge(bias=0.4), items, images)
    assert all(t.same == t.n and t.n > 0 for dims in tallies.values() for t in dims.values())
    assert all(r["p_model_first"] == pytest.approx(0.9) == r["p_base_first"] for r in rows)
    # bias plus skill (prefers the brighter image): the bias cancels, the skill decides
    tallies, _ = _tallies(PositionBiasedJudge(bias=0.15, skill=0.3), items, images)
    fill = tallies[FILL]["text_alignment"]
    assert (fill.good, fill.same, fill.bad) == (2, 0, 4)
    assert (tallies[REMOVAL]["removal_quality"].good, tallies[REMOVAL]["removal_quality"].bad) == (1, 5)


def test_swapping_the_two_models_mirrors_good_and_bad() -> None:
    items = _items()
    images = _images(items, brighter={"f0", "f3", "f4", "r2"})
    judge = PositionBiasedJudge(bias=0.1, skill=0.3)
    forward, _ = _tallies(judge, items, images)
    swapped, _ = _tallies(judge, items, {"base": images["policy"], "policy": images["base"]})
    for group, dims in forward.items():
        for dim, t in dims.items():
            assert swapped[group][dim] == t.mirrored(), (group, dim)


def test_a_model_against_itself_is_same() -> None:
    items = _items()
    images = _images(items, brighter=set())
    images["policy"] = images["base"]
    tallies, _ = _tallies(PositionBiasedJudge(bias=0.2, skill=0.3), items, images)
    assert all(t.same == t.n for dims in tallies.values() for t in dims.values())


def test_benchmark_selection_holds_out_training_items_and_is_stable() -> None:
    rows = [
        {"item_id": f"x{i:03d}", "task": "image_fill", "prompt": "a red circle", "mask": "m"}
        for i in range(40)
    ]
    rows += [
        {
            "item_id": f"e{i:03d}",
            "task": "image_extend",
            "prompt": "a blue square" if i % 2 else None,
            "mask": "m",
        }
        for i in range(10)
    ]
    rows += [{"item_id": "nomask", "task": "object_removal", "prompt": None, "mask": None}]
    exclude = {f"x{i:03d}" for i in range(0, 40, 3)}
    wanted = {FILL: 10, "image_extend_prompt": 3, EXTEND_NO_PROMPT: 3, REMOVAL: 2}
    bench = select_benchmark(rows, exclude, wanted, seed=5)
    ids = [i.item_id for i in bench.items]
    assert not set(ids) & exclude and len(ids) == len(set(ids))
    assert bench.chosen == {FILL: 10, "image_extend_prompt": 3, EXTEND_NO_PROMPT: 3, REMOVAL: 0}
    assert (
        bench.shortfall == {REMOVAL: 2}
        and bench.n_skipped == {"no_mask": 1}
        and bench.n_excluded == len(exclude)
    )
    # the same seed gives the same items whatever the row order; more pool items keep the chosen ones
    again = select_benchmark(list(reversed(rows)), exclude, wanted, seed=5)
    assert [i.item_id for i in again.items] == ids
    grown = rows + [
        {"item_id": f"y{i:03d}", "task": "image_fill", "prompt": "a red circle", "mask": "m"}
        for i in range(5)
    ]
    kept = [i.item_id for i in select_benchmark(grown, exclude, wanted, seed=5).items if i.group == FILL]
    assert len(set(kept) & set(ids)) >= 10 - 5
    assert [i.item_id for i in select_benchmark(rows, exclude, wanted, seed=6).items] != ids


def test_noisy_simulated_people_split_evenly_on_identical_results() -> None:
    """Blind sides at random and symmetric noise: on identical results Good and Bad split evenly
    (the win rate's 95% interval holds 0.5) and never lean to one side."""
    from collections import Counter

    from onereward.annotate import ab
    from onereward.annotate.simulate import annotator_rng

    counts: Counter[str] = Counter()
    for i in range(400):
        iid = f"item-{i:04d}"
        sides = ab.assign_sides(0, iid, "policy", "base")
        counts[sides["left"]] += 1
        rng = annotator_rng(0, 0, iid)
        for _ in range(4):
            value = ab.noisy_choice(0.5, 0.5, noise=0.05, threshold=0.02, rng=rng)
            counts[SAME if value == ab.SAME else (GOOD if sides[value] == "policy" else BAD)] += 1
    low, high = wilson_interval(counts[GOOD], counts[GOOD] + counts[BAD])
    assert low <= 0.5 <= high and counts[SAME] > 0
    low, high = wilson_interval(counts["policy"], 400)  # the policy is on the left about half the time
    assert low <= 0.5 <= high
