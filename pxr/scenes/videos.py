"""Synthetic seed videos (seed data, paper §3): short clips whose answer is visible in only a few frames, so that
`select_frames` on the right frames is what answers them.

Kinds (registered in `pxr.scenes.SCENE_BUILDERS`):
- `flash` (`make_flash_video`): a digit flashes in `flash_len` consecutive frames.
- `colour_change` (`make_colour_change_video`): a shape turns another colour in `change_len` consecutive frames.
Both draw over drifting stripes so that every frame differs, never put the answer in the first or last frame, are a
pure function of the seed, and take `multiple_choice` like the image kinds.

Tests: tests/test_scene_videos.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pxr.scenes.draw import (
    COLOURS,
    DARK_INK,
    DIGITS,
    LIGHT_INK,
    SHAPES,
    SceneObject,
    VideoScene,
    choices_for,
    draw_object,
    font_for_ink_height,
)


def _stripes(width: int, height: int, t: int, *, colours, angle: float, period: float, drift: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (xs * np.cos(angle) + ys * np.sin(angle) + t * drift) % period
    return np.where((phase < period / 2)[:, :, None], np.asarray(colours[0]), np.asarray(colours[1])).astype(np.uint8)


def _stripe_style(rng: np.random.Generator) -> tuple[list[tuple[int, ...]], float]:
    """Two pastel stripe colours and the stripes' angle."""
    light = rng.integers(180, 231, size=3)
    # Stripes differ enough to show the motion, and both stay far lighter than dark ink and the saturated fills.
    colours = [tuple(int(v) for v in light), tuple(int(v) for v in light - rng.integers(40, 61, size=3))]
    return colours, float(rng.uniform(0, np.pi))


def _check_window(n_frames: int, window: int, name: str) -> None:
    if n_frames < window + 2 or window < 1:
        raise ValueError(f"need 1 <= {name} and {name} + 2 <= n_frames; got {name}={window}, n_frames={n_frames}")


def make_flash_video(
    seed: int,
    *,
    n_frames: int = 16,
    width: int = 448,
    height: int = 336,
    flash_len: int = 2,
    digit_height: int = 96,
    multiple_choice: bool = False,
    stripe_period_px: float = 48.0,
    drift_px_per_frame: float = 6.0,
    outline_px: int = 3,
) -> VideoScene:
    """Drifting pastel stripes, with a black digit (white outline) visible only in `flash_len` consecutive frames.

    The flash never covers the first or last frame, so a model that looks only at the ends cannot answer.
    """
    _check_window(n_frames, flash_len, "flash_len")
    rng = np.random.default_rng([seed, 2])
    colours, angle = _stripe_style(rng)
    start = int(rng.integers(1, n_frames - flash_len))  # 0-based; the last flash frame is at most n_frames - 2
    answer = str(rng.integers(0, 10))

    font = font_for_ink_height(digit_height)
    left, top, right, bottom = font.getbbox(answer, stroke_width=outline_px)
    margin = 4
    x = int(rng.integers(margin - left, width - margin - right + 1))
    y = int(rng.integers(margin - top, height - margin - bottom + 1))

    frames = []
    for t in range(n_frames):
        frame = Image.fromarray(
            _stripes(width, height, t, colours=colours, angle=angle, period=stripe_period_px, drift=drift_px_per_frame),
            mode="RGB",
        )
        if start <= t < start + flash_len:
            ImageDraw.Draw(frame).text(
                (x, y), answer, font=font, fill=DARK_INK, stroke_width=outline_px, stroke_fill=LIGHT_INK
            )
        frames.append(frame)
    digit_box = [x + left, y + top, x + right, y + bottom]
    choices = choices_for(seed, multiple_choice, answer, DIGITS)
    return VideoScene(
        frames=frames,
        question="Which digit flashes briefly in the video?",
        answer=choices[1] if choices else answer,
        cue_frames=list(range(start + 1, start + flash_len + 1)),
        seed=seed,
        kind="flash",
        digit_box=digit_box,
        options=choices[0] if choices else None,
        answer_text=answer,
        cue_box=list(digit_box),
    )


def make_colour_change_video(
    seed: int,
    *,
    n_frames: int = 16,
    width: int = 448,
    height: int = 336,
    change_len: int = 2,
    target_size: int = 96,
    multiple_choice: bool = False,
    stripe_period_px: float = 48.0,
    drift_px_per_frame: float = 6.0,
    edge_margin: int = 8,
) -> VideoScene:
    """Drifting pastel stripes and one still shape of a named colour that turns another colour in `change_len`
    consecutive frames only: "What colour does the circle turn briefly?" → "red".

    The change never covers the first or last frame. With `multiple_choice` the shape's usual colour is always among
    the wrong options (the answer of a model that never finds the change).
    """
    _check_window(n_frames, change_len, "change_len")
    if target_size + 2 * edge_margin > min(width, height):
        raise ValueError(f"a {target_size}px shape with a {edge_margin}px margin does not fit in {width}x{height}")
    rng = np.random.default_rng([seed, 4])
    colours, angle = _stripe_style(rng)
    shape = SHAPES[rng.integers(len(SHAPES))]
    usual, changed = (list(COLOURS)[i] for i in rng.choice(len(COLOURS), size=2, replace=False))
    start = int(rng.integers(1, n_frames - change_len))  # 0-based, as in make_flash_video
    x = int(rng.integers(edge_margin, width - edge_margin - target_size + 1))
    y = int(rng.integers(edge_margin, height - edge_margin - target_size + 1))
    box = [x, y, x + target_size, y + target_size]

    frames = []
    for t in range(n_frames):
        frame = Image.fromarray(
            _stripes(width, height, t, colours=colours, angle=angle, period=stripe_period_px, drift=drift_px_per_frame),
            mode="RGB",
        )
        colour = changed if start <= t < start + change_len else usual
        draw_object(ImageDraw.Draw(frame), SceneObject(shape=shape, colour=colour, digit="", box=box), digit_height=0)
        frames.append(frame)
    choices = choices_for(seed, multiple_choice, changed, list(COLOURS), [usual])
    return VideoScene(
        frames=frames,
        question=f"What colour does the {shape} turn briefly?",
        answer=choices[1] if choices else changed,
        cue_frames=list(range(start + 1, start + change_len + 1)),
        seed=seed,
        kind="colour_change",
        options=choices[0] if choices else None,
        answer_text=changed,
        cue_box=box,
    )
