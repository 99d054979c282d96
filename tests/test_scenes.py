"""Synthetic scenes (pxr/scenes/__init__.py): determinism, ground truth that matches the pixels, and targets small
enough that zooming is needed. The videos are tested in tests/test_scene_videos.py."""

import re
from functools import cache
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from pxr import protocol
from pxr.scenes import (
    COLOURS,
    QUADRANTS,
    SCENE_BUILDERS,
    SHAPES,
    Scene,
    SceneObject,
    contrast_ink,
    detail_readability,
    make_count_scene,
    make_scene,
    make_suite,
    make_zoom_scene,
    suite_seed,
    textured_background,
)

SEEDS = range(6)


@cache
def scene(seed: int) -> Scene:
    return make_zoom_scene(seed)


def test_same_seed_gives_identical_scene():
    a, b = make_zoom_scene(11), make_zoom_scene(11)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.question, a.answer, a.cue_box, a.objects) == (b.question, b.answer, b.cue_box, b.objects)


@pytest.mark.slow
def test_different_seeds_give_different_scenes():
    images = {scene(s).image.tobytes() for s in SEEDS}
    layouts = {tuple(scene(s).cue_box) for s in SEEDS}
    assert len(images) == len(SEEDS) and len(layouts) == len(SEEDS)
    assert len({scene(s).question for s in SEEDS}) > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_scene_fields_are_consistent(seed):
    s = scene(seed)
    w, h = s.image.size
    assert s.image.mode == "RGB" and max(w, h) >= 1024
    assert s.kind == "read" and s.seed == seed
    target = s.objects[0]
    assert s.answer == target.digit and s.answer in "0123456789" and len(s.answer) == 1
    assert s.cue_box == target.box and all(isinstance(v, int) for v in s.cue_box)
    assert s.question == f"What digit is written inside the {target.colour} {target.shape}?"
    assert s.cue_box_normalized == pytest.approx(
        [s.cue_box[0] / w, s.cue_box[1] / h, s.cue_box[2] / w, s.cue_box[3] / h]
    )
    assert all(0.0 <= v <= 1.0 for v in s.cue_box_normalized)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_cue_box_contains_the_target_and_nothing_is_drawn_elsewhere(seed):
    s = scene(seed)
    pixels = np.asarray(s.image).astype(int)
    background = np.asarray(textured_background(*s.image.size, seed)).astype(int)
    changed = np.abs(pixels - background).sum(axis=2) > 30
    x1, y1, x2, y2 = s.cue_box
    # Every shape covers at least half its box (a triangle or diamond exactly half).
    assert changed[y1:y2, x1:x2].mean() > 0.4
    fill = np.abs(pixels[y1:y2, x1:x2] - np.asarray(COLOURS[s.objects[0].colour])).max(axis=2) < 10
    assert fill.mean() > 0.25
    outside = changed.copy()
    for obj in s.objects:
        bx1, by1, bx2, by2 = obj.box
        outside[by1:by2, bx1:bx2] = False
    assert not outside.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_digit_is_small_enough_to_need_zooming_but_drawn(seed):
    s = scene(seed)
    target = s.objects[0]
    x1, y1, x2, y2 = s.cue_box
    ink = contrast_ink(COLOURS[target.colour])
    region = np.asarray(s.image).astype(int)[y1:y2, x1:x2]
    ink_rows = np.nonzero((np.abs(region - np.asarray(ink)) < 15).all(axis=2).any(axis=1))[0]
    assert len(ink_rows) > 0
    ink_height = ink_rows[-1] - ink_rows[0] + 1
    image_height = s.image.size[1]
    assert 10 <= ink_height <= 0.03 * image_height
    dx1, dy1, dx2, dy2 = target.digit_box
    assert dy2 - dy1 <= 0.03 * image_height
    assert x1 <= dx1 < dx2 <= x2 and y1 <= dy1 < dy2 <= y2


@pytest.mark.parametrize("seed", SEEDS)
def test_boxes_inside_image_and_apart(seed):
    s = make_zoom_scene(seed, n_distractors=12, min_gap=10, target_size=40)
    w, h = s.image.size
    assert len(s.objects) == 13
    for obj in s.objects:
        x1, y1, x2, y2 = obj.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert x2 - x1 == y2 - y1 == 40
    for a, b in combinations(s.objects, 2):
        separated = (
            a.box[2] + 10 <= b.box[0]
            or b.box[2] + 10 <= a.box[0]
            or a.box[3] + 10 <= b.box[1]
            or b.box[3] + 10 <= a.box[1]
        )
        assert separated, (a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_target_description_is_unique_and_needs_both_words(seed):
    objects = scene(seed).objects
    target = objects[0]
    assert [o.name for o in objects].count(target.name) == 1
    assert all(o.colour in COLOURS and o.shape in SHAPES for o in objects)
    distractors = objects[1:]
    assert any(o.colour == target.colour for o in distractors)
    assert any(o.shape == target.shape for o in distractors)


def test_impossible_layouts_raise_clear_errors():
    with pytest.raises(ValueError, match="could not place"):
        make_zoom_scene(0, width=300, height=200, n_distractors=30, max_placement_tries=200)
    with pytest.raises(ValueError, match="distractors"):
        make_zoom_scene(0, n_distractors=len(COLOURS) * len(SHAPES))


def test_make_scene_dispatches_by_kind():
    assert make_scene("read", 2).image.tobytes() == scene(2).image.tobytes()
    assert make_scene("flash", 2, n_frames=6).cue_frames
    assert set(SCENE_BUILDERS) == {"read", "count", "coarse", "tile_digit", "tile_colour", "flash", "colour_change"}
    with pytest.raises(ValueError, match="unknown scene kind"):
        make_scene("sudoku", 0)


# ----------------------------------------------------------------------------------- every image kind, knobs


IMAGE_KINDS = ("read", "count", "coarse")
COARSE_EXPECTED = {
    "Which colour is the large shape?": "colour",
    "What shape is the large object?": "shape",
    "Is the large shape on the left or the right?": "side",
}


@cache
def built(kind: str, seed: int, **knobs) -> Scene:
    return make_scene(kind, seed, **knobs)


def asked_kind(s: Scene) -> tuple[str, str]:
    """The (colour, shape) the question is about: the counted kind, or the read/coarse target's."""
    if s.kind == "count":
        return re.fullmatch(r"How many (\w+) (\w+)s are there\?", s.question).groups()
    return s.objects[0].colour, s.objects[0].shape


def test_scene_defaults_keep_older_callers_working():
    obj = SceneObject(shape="circle", colour="red", digit="3", box=[0, 0, 4, 4])
    s = Scene(Image.new("RGB", (8, 8)), "q?", "3", [0, 0, 4, 4], [0, 0, 0.5, 0.5], [obj], seed=0)
    assert (s.kind, s.options, s.answer_text, s.needs_op, s.cue_boxes) == ("read", None, "3", True, [[0, 0, 4, 4]])


@pytest.mark.slow
@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_image_kind_is_deterministic_and_varies_with_the_seed(kind):
    a, b = make_scene(kind, 7), built(kind, 7)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.question, a.answer, a.cue_boxes, a.objects) == (b.question, b.answer, b.cue_boxes, b.objects)
    scenes = [built(kind, s) for s in SEEDS]
    assert all(s.kind == kind and s.seed == seed for s, seed in zip(scenes, SEEDS, strict=True))
    assert len({s.image.tobytes() for s in scenes}) == len(SEEDS)
    assert len({(s.question, s.answer) for s in scenes}) > 1


def test_needs_op_only_for_fine_detail():
    assert [built(kind, 0).needs_op for kind in IMAGE_KINDS] == [True, True, False]


@pytest.mark.parametrize("seed", range(10))
def test_count_answer_is_the_number_of_objects_of_the_asked_kind(seed):
    s = built("count", seed)
    colour, shape = asked_kind(s)
    counted = [o for o in s.objects if (o.colour, o.shape) == (colour, shape)]
    assert s.answer == s.answer_text == str(len(counted)) and 0 <= len(counted) <= 6
    # None to count: the look-alikes (the asked colour or the asked shape) are what a sure count of 0 looks at.
    cued = counted or [o for o in s.objects if o.colour == colour or o.shape == shape]
    assert cued and s.cue_boxes == [o.box for o in cued] and s.objects[: len(counted)] == counted
    assert s.needs_op and s.options is None
    w, h = s.image.size
    assert s.cue_box == [min(o.box[0] for o in cued), min(o.box[1] for o in cued),
                         max(o.box[2] for o in cued), max(o.box[3] for o in cued)]  # fmt: skip
    assert s.cue_box_normalized == pytest.approx(
        [s.cue_box[0] / w, s.cue_box[1] / h, s.cue_box[2] / w, s.cue_box[3] / h]
    )
    # Small shapes (as small as the read targets), each drawn in its colour with nothing written on it.
    pixels = np.asarray(s.image)
    for o in s.objects:
        assert o.box[2] - o.box[0] == o.box[3] - o.box[1] == 28 and o.digit == "" and o.digit_box == []
        cx, cy = (o.box[0] + o.box[2]) // 2, (o.box[1] + o.box[3]) // 2
        assert tuple(pixels[cy, cx]) == COLOURS[o.colour]


def test_count_covers_zero_to_max_count():
    small = {"width": 480, "height": 360, "n_distractors": 2}  # the count is drawn before the layout: same answers
    assert [make_count_scene(seed, **small).answer for seed in range(3)] == [built("count", s).answer for s in range(3)]
    answers = {make_count_scene(seed, **small).answer for seed in range(40)}
    assert {"0", "6"} <= answers <= {str(v) for v in range(7)}
    assert {make_count_scene(seed, max_count=2, **small).answer for seed in range(12)} == {"0", "1", "2"}
    empty = make_count_scene(3, max_count=0)
    colour, shape = asked_kind(empty)
    look_alikes = [o.box for o in empty.objects if o.colour == colour or o.shape == shape]
    assert empty.answer == "0" and empty.cue_boxes == look_alikes and len(look_alikes) >= 2  # mixed: one of each
    with pytest.raises(ValueError, match="max_count"):
        make_count_scene(0, max_count=-1)


@pytest.mark.parametrize("seed", range(10))
def test_coarse_answer_matches_the_large_object(seed):
    s = built("coarse", seed)
    large, w, h = s.objects[0], *s.image.size
    side = large.box[2] - large.box[0]
    assert side == large.box[3] - large.box[1] >= 0.25 * h
    assert all(o.box[2] - o.box[0] <= side / 4 for o in s.objects[1:])
    assert not s.needs_op and s.cue_boxes == [large.box] and s.cue_box == large.box
    # Wholly in one half both ways, so "left"/"right" (and the quadrant) is never ambiguous.
    assert large.box[2] <= w / 2 or large.box[0] >= w / 2
    assert large.box[3] <= h / 2 or large.box[1] >= h / 2
    truth = {"colour": large.colour, "shape": large.shape, "side": "left" if large.box[2] <= w / 2 else "right"}
    assert s.answer == s.answer_text == truth[COARSE_EXPECTED[s.question]]
    cx, cy = (large.box[0] + large.box[2]) // 2, (large.box[1] + large.box[3]) // 2
    assert tuple(np.asarray(s.image)[cy, cx]) == COLOURS[large.colour]


def test_coarse_large_shape_always_lies_in_one_quadrant():
    small = {"width": 320, "height": 240, "target_size": 80, "n_distractors": 2, "distractor_size": 12}
    for seed in range(80):
        s = make_scene("coarse", seed, question_type="position", **small)
        x1, y1, x2, y2 = s.objects[0].box
        assert (x2 <= 160 and s.answer == "left") or (x1 >= 160 and s.answer == "right")
        assert y2 <= 120 or y1 >= 120


def test_coarse_question_types_come_from_the_seed_or_the_knob():
    assert {COARSE_EXPECTED[built("coarse", seed).question] for seed in range(12)} == {"colour", "shape", "side"}
    for question_type, expected in (("colour", "colour"), ("shape", "shape"), ("position", "side")):
        assert COARSE_EXPECTED[make_scene("coarse", 1, question_type=question_type).question] == expected
    mc = make_scene("coarse", 1, question_type="position", multiple_choice=True)
    large, (w, h) = mc.objects[0], mc.image.size
    quadrant = f"{'top' if large.box[3] <= h / 2 else 'bottom'} {'left' if large.box[2] <= w / 2 else 'right'}"
    assert sorted(mc.options) == sorted(QUADRANTS) and mc.answer_text == quadrant
    with pytest.raises(ValueError, match="question_type"):
        make_scene("coarse", 0, question_type="size")
    with pytest.raises(ValueError, match="quarter of the canvas height"):
        make_scene("coarse", 0, target_size=100)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_multiple_choice_gold_letter_points_at_the_right_option(kind):
    letters = set()
    for seed in SEEDS:
        free, mc = built(kind, seed), built(kind, seed, multiple_choice=True)
        assert mc.image.tobytes() == free.image.tobytes() and free.options is None
        assert len(mc.options) == len(set(mc.options)) == 4 and mc.answer in "ABCD"
        assert mc.options["ABCD".index(mc.answer)] == mc.answer_text
        assert protocol.choice_letter(mc.answer_text, mc.options) == mc.answer
        if mc.question == free.question:
            assert mc.answer_text == free.answer
        else:  # coarse position: the quadrant whose side is the free-form answer
            assert mc.answer_text in QUADRANTS and mc.answer_text.endswith(free.answer)
        letters.add(mc.answer)
    assert len(letters) > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_read_wrong_options_prefer_digits_written_on_distractors(seed):
    s = built("read", seed, multiple_choice=True)
    seen = {o.digit for o in s.objects[1:]} - {s.answer_text}
    wrong = set(s.options) - {s.answer_text}
    assert wrong >= seen if len(seen) <= 3 else wrong <= seen


@pytest.mark.parametrize("kind", IMAGE_KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_distractor_similarity_does_what_it_says(kind, seed):
    for similarity in ("high", "low"):
        s = built(kind, seed, distractor_similarity=similarity)
        colour, shape = asked_kind(s)
        distractors = [o for o in s.objects if (o.colour, o.shape) != (colour, shape)]
        assert len(distractors) == (8 if kind == "count" else 7)
        shares = [(o.colour == colour, o.shape == shape) for o in distractors]
        if similarity == "high":
            assert all(c != sh for c, sh in shares)  # exactly one attribute in common
            assert any(c for c, _ in shares) and any(sh for _, sh in shares)  # both words are needed
        else:
            assert not any(c or sh for c, sh in shares)


def test_distractor_similarity_is_checked():
    with pytest.raises(ValueError, match="distractor_similarity"):
        make_scene("read", 0, distractor_similarity="medium")
    with pytest.raises(ValueError, match="at most 12 distractors"):
        make_scene("count", 0, n_distractors=13, distractor_similarity="high")


@pytest.mark.slow
@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_suites_are_deterministic_and_disjoint_across_seeds(kind):
    train, held_out = make_suite(kind, 4, seed=0), make_suite(kind, 4, seed=1)
    images = [s.image.tobytes() for s in train + held_out]
    assert len(set(images)) == len(images)
    assert [s.seed for s in held_out] == [2**32 + i for i in range(4)]
    assert [s.image.tobytes() for s in make_suite(kind, 4, seed=0)] == images[:4]
    assert train[2].image.tobytes() == make_scene(kind, suite_seed(0, 2)).image.tobytes()


def test_suite_knobs_and_seed_checks():
    assert all(o.box[2] - o.box[0] == 40 for s in make_suite("read", 2, 5, target_size=40) for o in s.objects)
    assert make_suite("read", 0, 3) == []
    with pytest.raises(ValueError):
        suite_seed(-1, 0)
    with pytest.raises(ValueError):
        suite_seed(0, 2**32)


@pytest.mark.parametrize("seed", SEEDS)
def test_digit_is_unreadable_at_the_query_budget_and_readable_after_zooming(seed):
    s = scene(seed)
    r = detail_readability(s)  # EpisodeConfig's budgets: 448x448 area for the query and for crops, padding 0.1
    assert r.source_px == s.objects[0].digit_box[3] - s.objects[0].digit_box[1] == 15
    assert r.query_size == (532, 364)
    assert r.query_px <= 6 and r.crop_px >= 12 and r.zoom_gain > 2
    cx1, cy1, cx2, cy2 = r.crop_box
    dx1, dy1, dx2, dy2 = s.objects[0].digit_box
    assert cx1 <= dx1 < dx2 <= cx2 and cy1 <= dy1 < dy2 <= cy2
    assert r.crop_size[0] * r.crop_size[1] <= 256 * 28 * 28


def test_readability_follows_budgets_and_target_size():
    base = detail_readability(scene(0))
    assert detail_readability(make_zoom_scene(0, target_size=80)).query_px > 12  # big enough to read unzoomed
    assert detail_readability(scene(0), image_max_pixels=1024 * 28 * 28).query_px > 1.8 * base.query_px
    assert detail_readability(scene(0), crop_max_pixels=16 * 28 * 28).crop_px < base.crop_px / 2
    assert detail_readability(scene(0), padding=0.0).crop_px > 2 * base.crop_px
    with pytest.raises(ValueError, match="read"):
        detail_readability(built("count", 1))
