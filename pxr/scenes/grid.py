"""Tile-grid scenes: the toy line's main suite, whose questions address their target by position words.

A light canvas holds a `rows` x `columns` grid of small coloured square tiles, one at the centre of each cell, each
with a digit. The question names a tile by its row (counted from the top) and column (counted from the left):
- `tile_digit` (`make_tile_digit_scene`): "What digit is on the tile in row 3, column 5?" The digit is unreadable at
  the toy's query budget and readable in the crop that `zoom_in` on the tile returns (`detail_readability`).
- `tile_colour` (`make_tile_colour_scene`): "What colour is the tile in row 2, column 1?" The colour shows in the
  overview; no op is needed (`needs_op` False).

Why position words: the paper's method asks the model to point its zoom where the question's answer is. A
pretrained VLM binds "the brown circle" to a place in the image; a model trained from scratch on two CPU cores does
not learn that binding (outputs/LOG.md, 2026-11-24/25), and the paper's claims do not test it. With position words
the box follows from the question's text alone, while the evidence (the digit) is only in the pixels of the crop.
The tiles sit at fixed places (the centre of their cell), so each (row, column) has exactly one box.

`objects[0]` is the asked tile (its box is the cue box), the other tiles follow in reading order. Every scene is a
pure function of its seed and knobs; the two kinds draw from their own random streams.

Tests: tests/test_scene_grid.py.
"""

from __future__ import annotations

import math

import numpy as np

from pxr.scenes.draw import COLOURS, DIGITS, Scene, SceneObject, _image_scene, _render, choices_for

GRID_KINDS: tuple[str, ...] = ("tile_digit", "tile_colour")
# Random streams (pxr.scenes.draw lists the others): the tile_digit layout uses [seed, 7], tile_colour [seed, 8].
TILE_DIGIT_STREAM, TILE_COLOUR_STREAM = 7, 8
# Three wordings of the digit question, drawn from the seed: the model learns the position words, not one sentence.
DIGIT_QUESTIONS: tuple[str, ...] = (
    "What digit is on the tile in row {row}, column {column}?",
    "Which digit is written on the tile at row {row}, column {column}?",
    "Read the digit on the tile in row {row}, column {column} (rows from the top, columns from the left).",
)
COLOUR_QUESTION = "What colour is the tile in row {row}, column {column}?"
BOX_DECIMALS = 3  # a normalized [0, 1] box at this many decimals (read in every family, pxr.families) is exact
MAX_SNAP_PX = 4  # tiles move at most this far off their cell's centre to sit on an exact box


def tile_name(row: int, column: int) -> str:
    """The noun phrase for a tile, 1-based: "the tile in row 3, column 5"."""
    return f"the tile in row {row}, column {column}"


def tile_boxes(width: int, height: int, rows: int, columns: int, tile_size: int) -> list[list[list[int]]]:
    """The box of every tile, `[row][column]` (0-based here), absolute end-exclusive source pixels: each tile is a
    `tile_size` square centred in its cell of the `rows` x `columns` grid that fills the canvas."""
    if rows < 1 or columns < 1:
        raise ValueError(f"a grid needs rows >= 1 and columns >= 1; got {rows}x{columns}")
    cell_w, cell_h = width / columns, height / rows
    if not 1 <= tile_size <= min(cell_w, cell_h):
        raise ValueError(
            f"tile_size must lie in [1, {int(min(cell_w, cell_h))}] px (one cell of a {rows}x{columns} grid on "
            f"{width}x{height}); got {tile_size}"
        )
    step_x, step_y = _exact_step(width), _exact_step(height)
    if tile_size % step_x or tile_size % step_y:
        step_x = step_y = 1
    boxes = []
    for r in range(rows):
        row = []
        for c in range(columns):
            x = step_x * round(((c + 0.5) * cell_w - tile_size / 2) / step_x)
            y = step_y * round(((r + 0.5) * cell_h - tile_size / 2) / step_y)
            row.append([x, y, x + tile_size, y + tile_size])
        boxes.append(row)
    return boxes


def _exact_step(side: int) -> int:
    """The pixel step at which x / side has at most BOX_DECIMALS decimals (1500 px: every 3 px), or 1 when that
    step is coarser than MAX_SNAP_PX. Tile edges on it make a normalized box at 3 decimals cut exactly the tile (a
    30x30 crop, not 29-31 px a side). Synthesis writes boxes in the model family's own convention instead (whole
    overview pixels for Qwen2.5-VL), whose crops hold the tile and up to one overview pixel around it."""
    step = side // math.gcd(side, 10**BOX_DECIMALS)
    return step if step <= MAX_SNAP_PX else 1


def _grid(
    seed: int,
    stream: int,
    *,
    width: int = 1500,
    height: int = 1000,
    rows: int = 4,
    columns: int = 6,
    tile_size: int = 30,
    digit_height_frac: float = 0.43,
):
    """The tiles (asked one first), the asked (row, column), 1-based, and the rendered image. Its keywords are the
    knobs of both grid scene kinds (a 4x6 grid of 30-px tiles on 1500x1000, the digit 43 % of a tile)."""
    rng = np.random.default_rng([seed, stream])
    boxes = tile_boxes(width, height, rows, columns, tile_size)
    colours = rng.integers(len(COLOURS), size=(rows, columns))
    digits = rng.integers(10, size=(rows, columns))
    asked = (int(rng.integers(rows)), int(rng.integers(columns)))
    order = [asked] + [(r, c) for r in range(rows) for c in range(columns) if (r, c) != asked]
    names = list(COLOURS)
    objects = [
        SceneObject(shape="square", colour=names[colours[r, c]], digit=str(digits[r, c]), box=boxes[r][c])
        for r, c in order
    ]
    image = _render(width, height, seed, objects, digit_height=max(1, round(digit_height_frac * tile_size)))
    return objects, (asked[0] + 1, asked[1] + 1), rng, image


def make_tile_digit_scene(seed: int, *, multiple_choice: bool = False, **grid) -> Scene:
    """ "What digit is on the tile in row r, column c?": the answer is the asked tile's digit, the cue box its box.

    With the defaults (30-px tiles; `zoom_in` crops no less than 28 px) the digit's ink is 13 px on a 1500x1000
    canvas: 1.5 px once the image is fitted to the toy's 168x112 query budget, 49 px in the 112x112 crop that zooming
    on the tile returns without padding."""
    objects, (row, column), rng, image = _grid(seed, TILE_DIGIT_STREAM, **grid)
    question = DIGIT_QUESTIONS[int(rng.integers(len(DIGIT_QUESTIONS)))].format(row=row, column=column)
    target = objects[0]
    return _image_scene(
        image,
        question,
        target.digit,
        [list(target.box)],
        objects,
        seed,
        "tile_digit",
        choices=choices_for(seed, multiple_choice, target.digit, DIGITS, [o.digit for o in objects[1:]]),
    )


def make_tile_colour_scene(seed: int, *, multiple_choice: bool = False, **grid) -> Scene:
    """ "What colour is the tile in row r, column c?": answerable from the overview (`needs_op` False)."""
    objects, (row, column), _, image = _grid(seed, TILE_COLOUR_STREAM, **grid)
    target = objects[0]
    return _image_scene(
        image,
        COLOUR_QUESTION.format(row=row, column=column),
        target.colour,
        [list(target.box)],
        objects,
        seed,
        "tile_colour",
        choices=choices_for(seed, multiple_choice, target.colour, list(COLOURS), [o.colour for o in objects[1:]]),
        needs_op=False,
    )


def tile_position(scene: Scene, obj: SceneObject | None = None) -> tuple[int, int]:
    """The (row, column), 1-based, of `obj` (default: the asked tile), read back from the geometry."""
    if scene.kind not in GRID_KINDS:
        raise ValueError(f"tile_position needs a grid scene ({', '.join(GRID_KINDS)}); got kind {scene.kind!r}")
    box = (obj or scene.objects[0]).box
    xs = sorted({o.box[0] for o in scene.objects})
    ys = sorted({o.box[1] for o in scene.objects})
    return ys.index(box[1]) + 1, xs.index(box[0]) + 1


def neighbour_boxes(scene: Scene) -> list[list[int]]:
    """The boxes of the tiles one row or one column away from the asked one: the plausible wrong zooms (an
    off-by-one in the row or the column), which self-correction trajectories zoom on first."""
    row, column = tile_position(scene)
    near = []
    for obj in scene.objects[1:]:
        r, c = tile_position(scene, obj)
        if abs(r - row) + abs(c - column) == 1:
            near.append(list(obj.box))
    return near


def ask_tile(scene: Scene, row: int, column: int) -> Scene:
    """The same picture asking about another tile (1-based row and column): the objects reordered so that tile comes
    first, the question, answer and cue box its own. The wording keeps the scene's kind and is drawn from the seed
    and the position. Lets one rendered scene give a question per tile (the base stage reads many crops per scene)."""
    target = next((o for o in scene.objects if tile_position(scene, o) == (row, column)), None)
    if target is None:
        raise ValueError(f"no tile at row {row}, column {column} in this {len(scene.objects)}-tile grid")
    objects = [target] + [o for o in scene.objects if o is not target]
    if scene.kind == "tile_digit":
        wording = DIGIT_QUESTIONS[(scene.seed + row * 7 + column) % len(DIGIT_QUESTIONS)]
        answer, needs_op = target.digit, True
    else:
        wording, answer, needs_op = COLOUR_QUESTION, target.colour, False
    return _image_scene(
        scene.image, wording.format(row=row, column=column), answer, [list(target.box)], objects, scene.seed,
        scene.kind, choices=None, needs_op=needs_op,
    )  # fmt: skip
