"""Synthetic videos (pxr/scenes/videos.py): the answer shows only in the cue frames, determinism, knobs,
multiple choice, suites."""

import re
from functools import cache

import numpy as np
import pytest

from pxr import protocol
from pxr.scenes import COLOURS, SCENE_BUILDERS, SHAPES, VideoScene, make_scene, make_suite
from pxr.scenes.videos import make_colour_change_video, make_flash_video

SEEDS = range(6)
VIDEO_KINDS = ("flash", "colour_change")


@cache
def video(seed: int) -> VideoScene:
    return make_flash_video(seed)


@cache
def change(seed: int, **knobs) -> VideoScene:
    return make_colour_change_video(seed, **knobs)


def frames_bytes(v: VideoScene) -> bytes:
    return b"".join(f.tobytes() for f in v.frames)


def test_video_builders_are_registered_and_importable_from_scenes():
    from pxr import scenes

    assert SCENE_BUILDERS["flash"] is scenes.make_flash_video is make_flash_video
    assert SCENE_BUILDERS["colour_change"] is scenes.make_colour_change_video is make_colour_change_video
    with pytest.raises(AttributeError):
        scenes.make_teleport_video  # noqa: B018


@pytest.mark.parametrize("seed", SEEDS)
def test_flash_video_digit_appears_only_in_cue_frames(seed):
    v = video(seed)
    assert len(v.frames) == 16 and all(f.size == (448, 336) and f.mode == "RGB" for f in v.frames)
    assert v.kind == "flash" and v.answer in "0123456789" and v.question == "Which digit flashes briefly in the video?"
    assert v.answer_text == v.answer and v.options is None and v.needs_op and v.cue_box == v.digit_box
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


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_colour_change_shows_only_in_cue_frames(seed):
    v = change(seed)
    assert len(v.frames) == 16 and all(f.size == (448, 336) and f.mode == "RGB" for f in v.frames)
    shape = re.fullmatch(r"What colour does the (\w+) turn briefly\?", v.question).group(1)
    assert shape in SHAPES and v.kind == "colour_change" and v.needs_op and v.options is None
    assert v.answer == v.answer_text in COLOURS
    assert len(v.cue_frames) == 2 and v.cue_frames[1] == v.cue_frames[0] + 1
    assert 1 < v.cue_frames[0] and v.cue_frames[-1] < 16
    x1, y1, x2, y2 = v.cue_box
    assert x2 - x1 == y2 - y1 == 96
    region = [np.asarray(f)[y1:y2, x1:x2] for f in v.frames]
    usual = tuple(int(c) for c in region[0][(y2 - y1) // 2, (x2 - x1) // 2])
    assert usual in COLOURS.values() and usual != COLOURS[v.answer]

    def share(pixels, rgb):
        return (pixels == np.asarray(rgb)).all(axis=2).mean()

    for number, pixels in enumerate(region, start=1):
        # Every shape covers at least half its box; the other colour is nowhere in it.
        shown, hidden = (COLOURS[v.answer], usual) if number in v.cue_frames else (usual, COLOURS[v.answer])
        assert share(pixels, shown) >= 0.45 and share(pixels, hidden) == 0.0
    # Outside the shape's box only the stripes move: every frame's colour change is confined to the box.
    outside = np.ones(v.frames[0].size[::-1], bool)
    outside[y1:y2, x1:x2] = False
    for frame in v.frames:
        assert (
            not np.isin(np.asarray(frame)[outside].reshape(-1, 3), np.asarray(list(COLOURS.values()))).all(axis=1).any()
        )


def test_colour_change_is_deterministic_and_varies_with_the_seed():
    again = make_colour_change_video(2)
    assert frames_bytes(again) == frames_bytes(change(2)) and again.question == change(2).question
    assert len({frames_bytes(change(s)) for s in SEEDS}) == len(SEEDS)
    assert len({(change(s).question, change(s).answer, tuple(change(s).cue_frames)) for s in SEEDS}) > 1


def test_colour_change_knobs_and_limits():
    v = make_colour_change_video(5, n_frames=8, change_len=3, width=200, height=150, target_size=40)
    assert len(v.frames) == 8 and v.frames[0].size == (200, 150) and v.cue_box[2] - v.cue_box[0] == 40
    assert len(v.cue_frames) == 3 and v.cue_frames[0] >= 2 and v.cue_frames[-1] <= 7
    with pytest.raises(ValueError, match="change_len"):
        make_colour_change_video(0, n_frames=3, change_len=2)
    with pytest.raises(ValueError, match="does not fit"):
        make_colour_change_video(0, width=100, height=100, target_size=96)


@pytest.mark.slow
@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_video_multiple_choice_gold_letter_points_at_the_right_option(kind):
    letters = set()
    for seed in SEEDS:
        free, mc = make_scene(kind, seed, n_frames=6), make_scene(kind, seed, n_frames=6, multiple_choice=True)
        assert frames_bytes(mc) == frames_bytes(free) and mc.cue_frames == free.cue_frames
        assert len(mc.options) == len(set(mc.options)) == 4 and mc.answer in "ABCD"
        assert mc.options["ABCD".index(mc.answer)] == mc.answer_text == free.answer
        assert protocol.choice_letter(mc.answer_text, mc.options) == mc.answer
        if kind == "colour_change":  # the colour the shape has in every other frame is always a wrong option
            x1, y1, x2, y2 = mc.cue_box
            usual = tuple(int(c) for c in np.asarray(mc.frames[0])[(y1 + y2) // 2, (x1 + x2) // 2])
            assert usual in [COLOURS[o] for o in mc.options if o != mc.answer_text]
        letters.add(mc.answer)
    assert len(letters) > 1


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_video_suites_are_disjoint_across_seeds(kind):
    train, held_out = make_suite(kind, 3, seed=0, n_frames=6), make_suite(kind, 3, seed=1, n_frames=6)
    assert all(len(v.frames) == 6 for v in train + held_out)
    assert len({frames_bytes(v) for v in train + held_out}) == 6
    assert [frames_bytes(v) for v in make_suite(kind, 3, seed=0, n_frames=6)] == [frames_bytes(v) for v in train]
