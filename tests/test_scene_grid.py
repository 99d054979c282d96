"""Tile-grid scenes (pxr/scenes/grid.py): the position words name the tile whose box is the cue, the pixels match the
ground truth, scenes are deterministic, and the digit needs the zoom while the colour does not."""

import re

import numpy as np
import pytest

from pxr import ops, scenes
from pxr.scenes.grid import DIGIT_QUESTIONS, ask_tile, neighbour_boxes, tile_boxes, tile_position

SEEDS = range(8)
# The toy episode: the whole image at 168x112, zooms without padding into a 112x112 crop.
TOY = dict(image_max_pixels=168 * 112, crop_max_pixels=112 * 112, crop_min_pixels=112 * 112, padding=0.0)
POSITION = re.compile(r"row (\d+), column (\d+)")


@pytest.mark.slow
@pytest.mark.parametrize("kind", scenes.GRID_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_the_position_words_name_the_tile_whose_box_is_the_cue(kind, seed):
    scene = scenes.make_scene(kind, seed)
    row, column = map(int, POSITION.search(scene.question).groups())
    expected = tile_boxes(*scene.image.size, 4, 6, 30)[row - 1][column - 1]
    cue = scene.cue_box
    assert cue == expected == scene.objects[0].box
    assert (row, column) == tile_position(scene)
    # The cue box holds the whole tile: every pixel of the tile's colour near the asked cell lies inside it.
    pixels = np.asarray(scene.image).astype(int)
    fill = np.abs(pixels - np.asarray(scenes.COLOURS[scene.objects[0].colour])).max(axis=2) < 12
    cell_w, cell_h = scene.image.size[0] / 6, scene.image.size[1] / 4
    x0, y0 = int((column - 1) * cell_w), int((row - 1) * cell_h)
    near = np.zeros_like(fill)
    near[y0 : int(y0 + cell_h), x0 : int(x0 + cell_w)] = True
    inside = np.zeros_like(fill)
    inside[cue[1] : cue[3], cue[0] : cue[2]] = True
    assert fill[inside].mean() > 0.5  # the tile fills its box (the digit is the rest)
    assert not (fill & near & ~inside).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_are_the_asked_tiles_digit_and_colour(seed):
    digit, colour = scenes.make_scene("tile_digit", seed), scenes.make_scene("tile_colour", seed)
    assert digit.answer == digit.objects[0].digit and digit.answer in scenes.DIGITS and digit.needs_op
    assert colour.answer == colour.objects[0].colour and colour.answer in scenes.COLOURS and not colour.needs_op
    assert len(digit.objects) == len(colour.objects) == 24
    assert any(
        q.format(row=r, column=c) == digit.question for q in DIGIT_QUESTIONS for r in range(1, 5) for c in range(1, 7)
    )
    assert colour.question.startswith("What colour is the tile in row ")


@pytest.mark.slow
@pytest.mark.parametrize("kind", scenes.GRID_KINDS)
def test_grid_scenes_are_deterministic_and_vary_with_the_seed(kind):
    a, b = scenes.make_scene(kind, 5), scenes.make_scene(kind, 5)
    assert a.image.tobytes() == b.image.tobytes() and (a.question, a.answer, a.objects) == (
        b.question,
        b.answer,
        b.objects,
    )
    others = [scenes.make_scene(kind, s) for s in SEEDS]
    assert len({s.image.tobytes() for s in others}) == len(SEEDS)
    assert len({s.cue_box[0] for s in others} | {s.cue_box[1] for s in others}) > 2  # the asked tile moves
    # Tiles sit at fixed places: the boxes of every tile are the same in every scene.
    assert {tuple(sorted(tuple(o.box) for o in s.objects)) for s in others} == {
        tuple(sorted(tuple(b) for row in tile_boxes(1500, 1000, 4, 6, 30) for b in row))
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_the_cue_box_is_exact_at_three_decimals_so_a_written_box_crops_the_tile_alone(seed):
    scene = scenes.make_scene("tile_digit", seed)
    written = [round(v, 3) for v in scene.cue_box_normalized]
    assert written == pytest.approx(scene.cue_box_normalized, abs=1e-12)
    assert ops.padded_crop_box(scene.image.size, written, padding=0.0) == tuple(scene.cue_box)


def test_the_two_kinds_draw_different_scenes_from_one_seed():
    assert scenes.make_scene("tile_digit", 2).image.tobytes() != scenes.make_scene("tile_colour", 2).image.tobytes()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_digit_is_unreadable_at_the_query_budget_and_readable_in_the_crop(seed):
    scene = scenes.make_scene("tile_digit", seed)
    readability = scenes.detail_readability(scene, **TOY)
    assert readability.query_size == (168, 112)
    assert readability.query_px < 1.6  # a linear reader at the digit's known place reads ~12-24 % at 1.3-1.6 px
    assert readability.crop_px > 45 and readability.crop_size == (112, 112)
    # The crop zoom_in returns for the cue box is the tile itself (no padding): the digit's ink lies in it.
    crop = ops.zoom_in(scene.image, scene.cue_box_normalized, padding=0.0)
    assert crop.size == (30, 30)
    ink = np.asarray(crop).astype(int)
    assert (
        np.abs(ink - np.asarray(scenes.contrast_ink(scenes.COLOURS[scene.objects[0].colour]))).max(axis=2) < 60
    ).any()


def test_the_learning_trap_knob_makes_the_digit_more_legible_in_the_overview_only():
    scene = scenes.make_scene("tile_digit", 1)
    views = [scenes.detail_readability(scene, **{**TOY, "image_max_pixels": b}) for b in (18816, 42336, 75264)]
    assert [round(v.query_px, 1) for v in views] == [1.5, 2.2, 2.9]
    assert len({v.crop_px for v in views}) == 1


def test_neighbours_are_the_tiles_one_step_away():
    scene = scenes.make_scene("tile_digit", 0)
    row, column = tile_position(scene)
    near = neighbour_boxes(scene)
    expected = sum(
        1 <= r <= 4 and 1 <= c <= 6
        for r, c in ((row - 1, column), (row + 1, column), (row, column - 1), (row, column + 1))
    )
    assert len(near) == expected and scene.cue_box not in near
    cell = 1500 / 6
    assert all(
        abs(b[0] - scene.cue_box[0]) + abs(b[1] - scene.cue_box[1]) <= cell + 4 for b in near
    )  # tiles snap by <= 4 px


def test_bad_grids_raise_clear_errors():
    with pytest.raises(ValueError, match="tile_size"):
        scenes.make_scene("tile_digit", 0, tile_size=300)
    with pytest.raises(ValueError, match="rows"):
        scenes.make_scene("tile_colour", 0, rows=0)
    with pytest.raises(ValueError, match="grid scene"):
        tile_position(scenes.make_scene("read", 0))


def test_multiple_choice_points_at_the_right_option():
    for kind in scenes.GRID_KINDS:
        scene = scenes.make_scene(kind, 4, multiple_choice=True)
        assert scene.options[ord(scene.answer) - ord("A")] == scene.answer_text


def test_asking_another_tile_keeps_the_picture_and_moves_the_cue():
    scene = scenes.make_scene("tile_digit", 6)
    other = ask_tile(scene, 4, 2)
    assert other.image is scene.image and tile_position(other) == (4, 2)
    assert "row 4, column 2" in other.question and other.answer == other.objects[0].digit
    assert other.cue_box == tile_boxes(1500, 1000, 4, 6, 30)[3][1] and sorted(map(str, other.objects)) == sorted(
        map(str, scene.objects)
    )
    same = ask_tile(scene, *tile_position(scene))
    assert (same.answer, same.cue_box) == (scene.answer, scene.cue_box)
    with pytest.raises(ValueError, match="no tile"):
        ask_tile(scene, 5, 1)
