"""Synthetic scenes (pxr/scenes.py, SPEC §3.1): determinism, ground truth that matches the pixels, and targets small
enough that zooming is needed."""

from functools import cache
from itertools import combinations

import numpy as np
import pytest

from pxr.scenes import (
    COLOURS,
    SHAPES,
    Scene,
    VideoScene,
    contrast_ink,
    make_flash_video,
    make_scene,
    make_zoom_scene,
    textured_background,
)

SEEDS = range(6)


@cache
def scene(seed: int) -> Scene:
    return make_zoom_scene(seed)


@cache
def video(seed: int) -> VideoScene:
    return make_flash_video(seed)


def test_same_seed_gives_identical_scene():
    a, b = make_zoom_scene(11), make_zoom_scene(11)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.question, a.answer, a.cue_box, a.objects) == (b.question, b.answer, b.cue_box, b.objects)


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
    s = make_zoom_scene(seed, n_distractors=12, min_gap=10)
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


@pytest.mark.parametrize("seed", SEEDS)
def test_flash_video_digit_appears_only_in_cue_frames(seed):
    v = video(seed)
    assert len(v.frames) == 16 and all(f.size == (448, 336) and f.mode == "RGB" for f in v.frames)
    assert v.kind == "flash" and v.answer in "0123456789" and v.question == "Which digit flashes briefly in the video?"
    assert len(v.cue_frames) == 2 and v.cue_frames[1] == v.cue_frames[0] + 1
    assert 1 < v.cue_frames[0] and v.cue_frames[-1] < 16
    x1, y1, x2, y2 = v.digit_box
    dark_fraction = [(np.asarray(f)[y1:y2, x1:x2].max(axis=2) < 60).mean() for f in v.frames]
    for number, fraction in enumerate(dark_fraction, start=1):
        if number in v.cue_frames:
            assert fraction > 0.05
        else:
            assert fraction == 0.0


def test_flash_video_background_moves_and_is_deterministic():
    v = video(0)
    first, second = np.asarray(v.frames[0]).astype(int), np.asarray(v.frames[1]).astype(int)
    assert (np.abs(first - second).sum(axis=2) > 0).mean() > 0.05
    again = make_flash_video(0)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(v.frames, again.frames, strict=True))
    assert len({(video(s).answer, tuple(video(s).cue_frames), video(s).frames[0].tobytes()) for s in SEEDS}) == len(
        SEEDS
    )


def test_flash_video_options_and_limits():
    v = make_flash_video(5, n_frames=8, flash_len=3, width=200, height=150, digit_height=40)
    assert len(v.frames) == 8 and v.frames[0].size == (200, 150)
    assert len(v.cue_frames) == 3 and v.cue_frames[0] >= 2 and v.cue_frames[-1] <= 7
    with pytest.raises(ValueError, match="flash_len"):
        make_flash_video(0, n_frames=3, flash_len=2)


def test_make_scene_dispatches_by_kind():
    assert make_scene("read", 2).image.tobytes() == scene(2).image.tobytes()
    assert make_scene("flash", 2, n_frames=6).cue_frames
    with pytest.raises(ValueError, match="unknown scene kind"):
        make_scene("count", 0)
