"""Synthetic seed scenes (seed data as in paper §3, made here): high-resolution images with small labelled targets,
and short videos whose answer is visible in only a few frames.

Image kinds, each a builder in `SCENE_BUILDERS` under the `kind` it writes into its scenes:
- `read` (`make_zoom_scene`): the digit inside the uniquely described small shape; unreadable at the query pixel
  budget, readable after `zoom_in` on the target (`detail_readability` measures both).
- `count` (`make_count_scene`): how many small shapes of a named colour and shape there are (TallyQA-like).
- `coarse` (`make_coarse_scene`): the colour, shape or side of one large shape; answerable without any op
  (`needs_op` False), so that adaptive op use can be learned and measured.
- `tile_digit`, `tile_colour` (`pxr.scenes.grid`): a grid of small tiles addressed by position words ("the tile in
  row 3, column 5"); the digit needs a zoom, the colour does not. The toy line's main suite: the box follows from
  the question's words, the evidence is in the crop's pixels.
Builders live in `pxr/scenes/images.py`, `pxr/scenes/grid.py` and `pxr/scenes/videos.py`, primitives and types in `pxr/scenes/draw.py`; this
module is the entry point: the registry, `make_scene` and the suites.

Every builder is a pure function of its seed and keyword knobs: canvas `width`/`height`, `target_size`,
`n_distractors`, `distractor_similarity` and `multiple_choice` (4 options, V*-like: `answer` is the gold letter and
`answer_text` its text). `make_suite` builds n scenes of a kind from one suite seed. The ground truth (cue boxes, the
scene graph, cue frames) is kept with the pixels so that trajectories can be templated from it and zoom boxes can be
scored against it.

New question kinds reuse `textured_background`, `place_boxes`, `draw_object`, `pick_distractor_kinds` and
`multiple_choice_options`, and register their builder in `SCENE_BUILDERS` under the `kind` they write.

Tests: tests/test_scenes.py, tests/test_scene_grid.py, tests/test_scene_videos.py.
"""

from __future__ import annotations

from collections.abc import Callable

# pxr.scenes is the entry point: the types, primitives and builders are importable from here.
from pxr.scenes.draw import (  # noqa: F401
    COLOURS,
    DARK_INK,
    DIGIT_CENTRE_Y,
    DIGITS,
    DISTRACTOR_SIMILARITIES,
    LIGHT_INK,
    N_OPTIONS,
    OPTIONS_STREAM,
    SHAPES,
    SUITE_STRIDE,
    Scene,
    SceneObject,
    VideoScene,
    choices_for,
    contrast_ink,
    draw_object,
    font_for_ink_height,
    multiple_choice_options,
    pick_distractor_kinds,
    place_boxes,
    random_kind,
    shape_outline,
    textured_background,
    union_box,
)
from pxr.scenes.grid import GRID_KINDS, make_tile_colour_scene, make_tile_digit_scene  # noqa: F401
from pxr.scenes.images import (  # noqa: F401
    COARSE_QUESTIONS,
    DIGIT_KINDS,
    QUADRANTS,
    DetailReadability,
    detail_readability,
    make_coarse_scene,
    make_count_scene,
    make_zoom_scene,
)
from pxr.scenes.videos import make_colour_change_video, make_flash_video

SCENE_BUILDERS: dict[str, Callable[..., Scene | VideoScene]] = {
    "read": make_zoom_scene,
    "count": make_count_scene,
    "coarse": make_coarse_scene,
    "tile_digit": make_tile_digit_scene,
    "tile_colour": make_tile_colour_scene,
    "flash": make_flash_video,
    "colour_change": make_colour_change_video,
}


def make_scene(kind: str, seed: int, **options) -> Scene | VideoScene:
    """Build a scene of a registered kind; `options` go to its builder."""
    if kind not in SCENE_BUILDERS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_BUILDERS)}")
    return SCENE_BUILDERS[kind](seed, **options)


def suite_seed(seed: int, index: int) -> int:
    """The scene seed of scene `index` of suite `seed`: seed * 2**32 + index.

    One-to-one for 0 <= index < 2**32, so suites built from different seeds (training vs held-out) never share a
    scene seed; suite 0 holds the plain seeds 0..n-1.
    """
    if seed < 0 or not 0 <= index < SUITE_STRIDE:
        raise ValueError(f"need seed >= 0 and 0 <= index < 2**32; got seed={seed}, index={index}")
    return seed * SUITE_STRIDE + index


def make_suite(kind: str, n: int, seed: int, **knobs) -> list[Scene | VideoScene]:
    """`n` scenes of `kind`, scene i built from `suite_seed(seed, i)` with the same `knobs`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [make_scene(kind, suite_seed(seed, i), **knobs) for i in range(n)]
