"""The pixel oracle: for every dimension an obviously good result beats an obviously bad one, the
dimensions disagree where they should, scores stay in [0, 1], and bad calls are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from onereward import tasks
from onereward.errors import InputError
from onereward.synth import oracle, world
from onereward.synth.candidates import SyntheticItem, degrade

SIZE = 64
STRIPES = {
    "kind": "stripes",
    "colours": ["beige", "slate"],
    "orientation": "vertical",
    "period": 10,
    "phase": 0,
}
DIAGONAL = {**STRIPES, "orientation": "diagonal", "period": 12}
FLAT = {"kind": "flat", "colours": ["sage"]}
GRADIENT = {"kind": "gradient", "colours": ["pale blue", "sand"], "direction": "horizontal"}


def scene(background: dict, shapes: list[dict] | None = None, text: dict | None = None) -> np.ndarray:
    return world.render_scene({"size": SIZE, "background": background, "shapes": shapes or [], "text": text})


def box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def paste(source: np.ndarray, mask: np.ndarray, result: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], result, source)


def blur(image: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


MASK = box_mask(16, 16, 44, 44)
RED_CIRCLE = {"kind": "circle", "colour": "red", "bbox": [22, 22, 38, 38]}


def fill_case(background: dict = STRIPES, shape: dict = RED_CIRCLE) -> tuple[np.ndarray, np.ndarray]:
    """(source without the object, target with it) for a fill in MASK."""
    return scene(background), scene(background, [shape])


# --- text_alignment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [STRIPES, FLAT, GRADIENT])
def test_text_alignment_named_colour_beats_another_colour(background: dict) -> None:
    source, good = fill_case(background)
    wrong = scene(background, [{**RED_CIRCLE, "colour": "blue"}])
    prompt = "a red circle"
    s_good = oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, prompt, good)
    s_bad = oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, prompt, wrong)
    s_none = oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, prompt, source)
    assert s_good > 0.9
    assert s_bad < 0.05 and s_none < 0.05


def test_text_alignment_named_shape_beats_another_shape_of_that_colour() -> None:
    source, _ = fill_case()
    prompt_scores = {}
    for kind in world.SHAPES:
        result = scene(STRIPES, [{**RED_CIRCLE, "kind": kind}])
        prompt_scores[kind] = {
            p: oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, f"a red {p}", result)
            for p in world.SHAPES
        }
    for kind, by_prompt in prompt_scores.items():
        # The drawn shape wins its own prompt by a margin, and a wrong shape keeps partial credit.
        assert by_prompt[kind] > 0.9
        for other in world.SHAPES:
            if other != kind:
                assert 0.3 < by_prompt[other] < by_prompt[kind] - 0.3, (kind, other, by_prompt)


def test_text_alignment_checks_word_and_letter_colour() -> None:
    text = {"word": "OPEN", "colour": "red", "xy": [20, 28], "scale": 1}
    source = scene(FLAT)
    prompt = 'the word "OPEN" in red letters'

    def s(result: np.ndarray) -> float:
        return oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, prompt, result)

    good = scene(FLAT, text=text)
    blue = scene(FLAT, text={**text, "colour": "blue"})
    other_word = scene(FLAT, text={**text, "word": "STOP"})
    red_block = scene(FLAT, [{"kind": "square", "colour": "red", "bbox": [20, 26, 44, 34]}])
    assert s(good) == pytest.approx(1.0)
    assert s(blue) == 0.0
    assert s(other_word) < 0.45
    assert s(red_block) < 0.45  # right colour, no letters
    assert s(good) > s(other_word) and s(good) > s(red_block)


def test_colour_match_finds_exactly_the_named_colour() -> None:
    image = scene(STRIPES, [RED_CIRCLE, {"kind": "square", "colour": "orange", "bbox": [40, 4, 52, 16]}])
    red = oracle.colour_match(image, "red")
    assert np.array_equal(red, world.shape_mask("circle", RED_CIRCLE["bbox"], SIZE))
    assert oracle.colour_match(image, "orange").sum() == 144
    assert not oracle.colour_match(image, "blue").any()
    with pytest.raises(InputError, match="colour"):
        oracle.colour_match(image, "mauve")


def test_text_alignment_without_vocabulary_is_undecided() -> None:
    source, good = fill_case()
    assert oracle.score(tasks.IMAGE_FILL, tasks.TEXT_ALIGNMENT, source, MASK, "a cat", good) == 0.5


# --- consistency -----------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [STRIPES, DIAGONAL, FLAT, GRADIENT])
def test_consistency_seamless_fill_beats_a_hard_colour_seam(background: dict) -> None:
    source, good = fill_case(background)
    shifted = np.clip(good.astype(int) + np.array([40, -30, 25]), 0, 255).astype(np.uint8)
    seam = paste(source, MASK, shifted)
    s_good = oracle.score(tasks.IMAGE_FILL, tasks.CONSISTENCY, source, MASK, "a red circle", good)
    s_seam = oracle.score(tasks.IMAGE_FILL, tasks.CONSISTENCY, source, MASK, "a red circle", seam)
    assert s_good > 0.9
    assert s_seam < 0.2


def test_consistency_penalises_noise_and_flat_fill_in_a_textured_scene() -> None:
    source, good = fill_case(STRIPES)
    rng = np.random.default_rng(0)
    noisy = paste(source, MASK, np.clip(good + rng.normal(0, 25, good.shape), 0, 255).astype(np.uint8))
    flat = good.copy()
    flat[MASK] = good[~MASK].mean(0).astype(np.uint8)

    def s(result: np.ndarray) -> float:
        return oracle.score(tasks.IMAGE_FILL, tasks.CONSISTENCY, source, MASK, "a red circle", result)

    assert s(good) > 0.9
    assert s(noisy) < 0.5
    assert s(flat) < 0.5


# --- structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("background", "broken"),
    [
        (STRIPES, {**STRIPES, "orientation": "horizontal"}),
        (STRIPES, {**STRIPES, "phase": 3}),  # misaligned by 3 px
        (DIAGONAL, {**DIAGONAL, "orientation": "vertical"}),
        (DIAGONAL, {**DIAGONAL, "phase": 3}),
    ],
)
def test_structure_continuing_stripes_beat_broken_stripes(background: dict, broken: dict) -> None:
    source, good = fill_case(background)
    bad = paste(source, MASK, scene(broken, [RED_CIRCLE]))
    s_good = oracle.score(tasks.IMAGE_FILL, tasks.STRUCTURE, source, MASK, "a red circle", good)
    s_bad = oracle.score(tasks.IMAGE_FILL, tasks.STRUCTURE, source, MASK, "a red circle", bad)
    assert s_good > 0.9
    assert s_bad < s_good - 0.2


def test_structure_flat_fill_next_to_stripes_and_cut_contours_lose() -> None:
    # image_extend without prompt: a circle crosses the boundary of the new area (left third).
    full = scene(STRIPES, [{"kind": "circle", "colour": "green", "bbox": [12, 20, 32, 40]}])
    mask = box_mask(0, 0, 22, SIZE)
    canvas = full.copy()
    canvas[mask] = world.CANVAS_GREY
    flat = full.copy()
    flat[mask] = full[~mask].mean(0).astype(np.uint8)
    cut = scene(STRIPES)  # the circle's left part missing: its contour stops at the boundary
    cut = paste(canvas, mask, cut)

    def s(result: np.ndarray) -> float:
        return oracle.score(tasks.IMAGE_EXTEND, tasks.STRUCTURE, canvas, mask, None, result)

    assert s(full) > 0.9
    assert s(flat) < s(full) - 0.3
    assert s(cut) < s(full) - 0.1


# --- aesthetics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [STRIPES, FLAT, GRADIENT])
def test_aesthetics_clean_beats_noise_blur_and_clipping(background: dict) -> None:
    source, good = fill_case(background)
    rng = np.random.default_rng(1)
    noisy = paste(source, MASK, np.clip(good + rng.normal(0, 20, good.shape), 0, 255).astype(np.uint8))
    blurred = paste(source, MASK, blur(good, 1.5))
    clipped = paste(source, MASK, np.clip((good.astype(float) - 127) * 3 + 127, 0, 255).astype(np.uint8))

    def s(result: np.ndarray) -> float:
        return oracle.score(tasks.IMAGE_FILL, tasks.AESTHETICS, source, MASK, "a red circle", result)

    assert s(good) > 0.95
    assert s(noisy) < 0.3
    assert s(blurred) < 0.7
    assert s(clipped) < 0.3


def test_aesthetics_penalises_a_washed_out_fill() -> None:
    background = {"kind": "checker", "colours": ["slate", "beige"], "cell": 6}
    source, good = fill_case(background)
    washed = paste(source, MASK, (good * 0.45 + 230 * 0.55).astype(np.uint8))
    s_good = oracle.score(tasks.IMAGE_FILL, tasks.AESTHETICS, source, MASK, "a red circle", good)
    s_washed = oracle.score(tasks.IMAGE_FILL, tasks.AESTHETICS, source, MASK, "a red circle", washed)
    assert s_good > 0.95
    assert s_washed < 0.5


# --- removal_quality -------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [STRIPES, DIAGONAL, FLAT, GRADIENT])
def test_removal_background_fill_beats_the_object_left_in_place(background: dict) -> None:
    obj = {"kind": "square", "colour": "orange", "bbox": [24, 24, 38, 38]}
    source = scene(background, [obj])
    target = scene(background)
    mask = box_mask(21, 21, 41, 41)
    ghost = paste(source, mask, (0.5 * source + 0.5 * target).astype(np.uint8))
    other = paste(source, mask, scene(background, [{**obj, "colour": "blue", "kind": "circle"}]))
    smudge = target.copy()
    smudge[mask] = target[~mask].mean(0).astype(np.uint8)

    def s(result: np.ndarray) -> float:
        return oracle.score(tasks.OBJECT_REMOVAL, tasks.REMOVAL_QUALITY, source, mask, None, result)

    assert s(target) > 0.9
    assert s(source) == 0.0  # object left in place
    assert s(ghost) < 0.2
    assert s(other) < 0.3  # another object instead of background
    if background in (STRIPES, DIAGONAL):
        assert s(smudge) < s(target) - 0.2  # a flat smear where there should be stripes


# --- dimensions disagree where they should ---------------------------------------------------------


def test_dimensions_are_not_the_same_judgement() -> None:
    source, good = fill_case(STRIPES)
    seam = paste(source, MASK, np.clip(good.astype(int) + 30, 0, 255).astype(np.uint8))
    wrong_colour = scene(STRIPES, [{**RED_CIRCLE, "colour": "green"}])
    broken = paste(source, MASK, scene({**STRIPES, "orientation": "horizontal"}, [RED_CIRCLE]))
    prompt = "a red circle"
    s_seam = oracle.score_all(tasks.IMAGE_FILL, source, MASK, prompt, seam)
    s_wrong = oracle.score_all(tasks.IMAGE_FILL, source, MASK, prompt, wrong_colour)
    s_broken = oracle.score_all(tasks.IMAGE_FILL, source, MASK, prompt, broken)
    # right colour behind a seam: wins text_alignment and structure, loses consistency
    assert s_seam[tasks.TEXT_ALIGNMENT] > s_wrong[tasks.TEXT_ALIGNMENT] + 0.5
    assert s_seam[tasks.STRUCTURE] > 0.9
    assert s_seam[tasks.CONSISTENCY] < s_wrong[tasks.CONSISTENCY] - 0.5
    # broken stripes keep colours and text but lose structure
    assert s_broken[tasks.CONSISTENCY] > 0.8 and s_broken[tasks.TEXT_ALIGNMENT] > 0.9
    assert s_broken[tasks.STRUCTURE] < s_seam[tasks.STRUCTURE] - 0.2
    assert s_broken[tasks.AESTHETICS] > 0.9


def test_every_pool_item_target_beats_its_obvious_degradations() -> None:
    """On a whole synthetic pool: the target scores high, and each degradation loses the dimension
    it is about (wrong colour -> text_alignment, seam -> consistency, broken structure -> structure,
    noise -> aesthetics, object left -> removal_quality)."""
    about = {
        "wrong_colour": tasks.TEXT_ALIGNMENT,
        "missing_object": tasks.TEXT_ALIGNMENT,
        "seam": tasks.CONSISTENCY,
        "broken_structure": tasks.STRUCTURE,
        "noise": tasks.AESTHETICS,
        "clipped": tasks.AESTHETICS,
        "object_left": tasks.REMOVAL_QUALITY,
        "other_object": tasks.REMOVAL_QUALITY,
        "partial_removal": tasks.REMOVAL_QUALITY,
    }
    checked = {name: 0 for name in about}
    for k, raw in enumerate(world.sample_items(30, 11, SIZE)):
        item = SyntheticItem.from_world(raw)
        clean = oracle.score_all(item.task, item.source, item.mask, item.prompt, item.target)
        assert min(clean.values()) > 0.75, (item.item_id, clean)
        for name, dim in about.items():
            if name not in item.applicable() or dim not in clean:
                continue
            result, _ = degrade(item, [name], np.random.default_rng(k), severity=0.6)
            worse = oracle.score(item.task, dim, item.source, item.mask, item.prompt, result)
            assert worse < clean[dim] - 0.1, (item.item_id, name, dim, clean[dim], worse)
            checked[name] += 1
    assert all(n >= 3 for n in checked.values()), checked


# --- ranges and errors -----------------------------------------------------------------------------


def test_scores_stay_in_unit_interval_on_arbitrary_inputs() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(16, 80, size=2))
        source = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        result = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.random((h, w)) < rng.random()
        for task in tasks.TASKS:
            for dim, v in oracle.score_all(task, source, mask, "a red circle", result).items():
                assert 0.0 <= v <= 1.0, (task, dim, v)
    empty = np.zeros((32, 32), dtype=bool)
    image = np.full((32, 32, 3), 100, dtype=np.uint8)
    assert oracle.score(tasks.IMAGE_EXTEND, tasks.CONSISTENCY, image, empty, None, image) == 0.5
    assert oracle.score(tasks.IMAGE_EXTEND, tasks.STRUCTURE, image, ~empty, None, image) == 0.5


def test_score_all_covers_the_task_dimensions() -> None:
    source, good = fill_case()
    assert set(oracle.score_all(tasks.IMAGE_FILL, source, MASK, "a red circle", good)) == set(
        tasks.dimensions_for(tasks.IMAGE_FILL, "a red circle")
    )
    assert set(oracle.score_all(tasks.IMAGE_EXTEND, source, MASK, None, good)) == {
        tasks.CONSISTENCY,
        tasks.STRUCTURE,
        tasks.AESTHETICS,
    }
    assert set(oracle.score_all(tasks.OBJECT_REMOVAL, source, MASK, None, good)) == {tasks.REMOVAL_QUALITY}


def test_bad_calls_are_refused() -> None:
    source, good = fill_case()
    with pytest.raises(InputError, match="dimension"):
        oracle.score(tasks.OBJECT_REMOVAL, tasks.CONSISTENCY, source, MASK, None, good)
    with pytest.raises(InputError, match="dimension"):
        oracle.score(tasks.IMAGE_EXTEND, tasks.TEXT_ALIGNMENT, source, MASK, None, good)
    with pytest.raises(InputError, match="mask"):
        oracle.score_all(tasks.IMAGE_FILL, source, MASK[:10], "a red circle", good)
    with pytest.raises(InputError, match="source"):
        oracle.score_all(tasks.IMAGE_FILL, source[:10], MASK, "a red circle", good)
    with pytest.raises(InputError, match="result"):
        oracle.score_all(tasks.IMAGE_FILL, source, MASK, "a red circle", good[..., 0])
    with pytest.raises(tasks.UnknownTaskError):
        oracle.score_all("inpaint", source, MASK, "a red circle", good)
