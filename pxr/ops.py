"""The visual operations (paper §2, App. C.1) as pure functions on PIL images.

`zoom_in` crops a normalized box (plus padding) from an image at its source resolution; `select_frames` picks
1-based frames of a video; `resize_to_budget` fits an image into a pixel budget on the model's patch grid.
They raise `OpError` with a message written for the model; `pxr.episode.VisualEpisode` turns it into an
`Execution error:` observation. The episode is the only caller in the pipeline (synthesis, RL, eval, demo):
it converts absolute boxes to normalized ones and resizes what these functions return into the budgets.

Tests: tests/test_ops.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

from PIL import Image

# Qwen2.5-VL: 14 px patches merged 2x2, so one visual token covers 28x28 pixels (Qwen3-VL: 32).
QWEN25_PATCH_FACTOR = 28
MAX_ASPECT_RATIO = 200  # the Qwen-VL processors refuse images more elongated than this
_EPS = 1e-9  # absorbs float error so 0.7 * 1000 is pixel 700, not 701


class OpError(ValueError):
    """An operation that cannot be executed as asked; the message is shown to the model."""


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def brief(value, limit: int = 60) -> str:
    """repr of a value the model wrote, cut short so a huge argument cannot flood the observation."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_box(bbox_2d) -> tuple[float, float, float, float]:
    """Exactly four finite numbers with x1 < x2 and y1 < y2, else `OpError`."""
    if not isinstance(bbox_2d, (list, tuple)) or len(bbox_2d) != 4:
        got = f"{len(bbox_2d)} values" if isinstance(bbox_2d, (list, tuple)) else type(bbox_2d).__name__
        raise OpError(f"bbox_2d must be a list of 4 numbers [x1, y1, x2, y2], got {got}.")
    if not all(_is_number(v) for v in bbox_2d):
        raise OpError(f"bbox_2d must hold 4 finite numbers [x1, y1, x2, y2], got {brief(bbox_2d)}.")
    x1, y1, x2, y2 = (float(v) for v in bbox_2d)
    if not (x1 < x2 and y1 < y2):
        raise OpError(f"bbox_2d {brief(list(bbox_2d))} is empty or inverted; it needs x1 < x2 and y1 < y2.")
    return x1, y1, x2, y2


def padded_crop_box(size: tuple[int, int], bbox_2d, *, padding: float = 0.1) -> tuple[int, int, int, int]:
    """The source-pixel box `zoom_in` crops: the normalized box grown by `padding`, clamped, covering every pixel it touches."""
    x1, y1, x2, y2 = check_box(bbox_2d)
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise OpError(f"normalized bbox_2d values must lie in [0, 1], got {brief(list(bbox_2d))}.")
    width, height = size
    x1, x2 = max(0.0, x1 - padding), min(1.0, x2 + padding)
    y1, y2 = max(0.0, y1 - padding), min(1.0, y2 + padding)
    return (
        math.floor(x1 * width + _EPS),
        math.floor(y1 * height + _EPS),
        math.ceil(x2 * width - _EPS),
        math.ceil(y2 * height - _EPS),
    )


def zoom_in(image: Image.Image, bbox_2d, *, padding: float = 0.1, min_size: int = 28) -> Image.Image:
    """Crop a region of `image` at its full source resolution.

    Args:
        image: the source image (never the downsized copy the model was shown: cropping the source is what makes
            zooming reveal detail).
        bbox_2d: [x1, y1, x2, y2] normalized to [0, 1] (the episode converts absolute boxes first).
        padding: each side of the box grows by `padding` times the image width (x) or height (y), then the box is
            clamped to the image. 0.1 is the paper's value; 0 crops the box exactly.
        min_size: the smallest crop accepted, in source pixels per side.

    Raises:
        OpError: malformed box, values outside [0, 1], or a crop smaller than `min_size` x `min_size`.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    left, top, right, bottom = padded_crop_box(image.size, bbox_2d, padding=padding)
    w, h = right - left, bottom - top
    if w < min_size or h < min_size:
        raise OpError(f"the region is too small ({w}x{h} px); the minimum is {min_size}x{min_size}.")
    return image.crop((left, top, right, bottom))


def as_int(value) -> int | None:
    """An integer, or an integral float such as 2.0; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(value, int):
        return value
    return int(value) if _is_number(value) and float(value).is_integer() else None


def select_frames(frames: Sequence[Image.Image], target_frames, *, max_frames: int = 8) -> list[Image.Image]:
    """The frames named by 1-based numbers, in the order asked.

    Args:
        frames: the video's sampled frames; frame k is `frames[k - 1]`.
        target_frames: a non-empty list of distinct integers in [1, len(frames)] (integral floats such as 3.0 are
            accepted), at most `max_frames` of them.

    Raises:
        OpError: with the valid range and the limit in the message.
    """
    n = len(frames)
    valid = f"Give a list of 1 to {max_frames} distinct frame numbers in [1, {n}]."
    if not isinstance(target_frames, (list, tuple)):
        raise OpError(f"target_frames must be a list of frame numbers, got {type(target_frames).__name__}. {valid}")
    if not target_frames:
        raise OpError(f"target_frames is empty. {valid}")
    numbers = [as_int(v) for v in target_frames]
    if any(k is None for k in numbers):
        raise OpError(f"target_frames must hold integers, got {brief(list(target_frames))}. {valid}")
    if len(numbers) > max_frames:
        raise OpError(f"{len(numbers)} frames were selected; the limit is {max_frames}. {valid}")
    if len(set(numbers)) != len(numbers):
        raise OpError(f"target_frames {brief(numbers)} repeats a frame. {valid}")
    outside = [k for k in numbers if not 1 <= k <= n]
    if outside:
        raise OpError(f"frames {brief(outside)} are out of range: the video has {n} frames, numbered 1 to {n}. {valid}")
    return [frames[k - 1] for k in numbers]


def budget_size(
    width: int, height: int, *, min_pixels: int, max_pixels: int, factor: int = QWEN25_PATCH_FACTOR
) -> tuple[int, int]:
    """(width, height) on the `factor` grid with width*height in [min_pixels, max_pixels], aspect kept as near as
    the grid allows.

    The same rule as the Qwen-VL processors' `smart_resize` (tests/test_ops.py checks equality with transformers'),
    written here so the ops need no transformers import and an image pre-sized by it passes through the processor
    unchanged.
    """
    if width <= 0 or height <= 0:
        raise OpError(f"the image is empty ({width}x{height} px).")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise OpError(
            f"the region is too elongated ({width}x{height} px); the longer side may be at most "
            f"{MAX_ASPECT_RATIO} times the shorter."
        )
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) exceeds max_pixels ({max_pixels})")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


def resize_to_budget(
    image: Image.Image, *, min_pixels: int, max_pixels: int, factor: int = QWEN25_PATCH_FACTOR
) -> Image.Image:
    """`image` resized (bicubic, like the Qwen processors) to `budget_size`; returned as is when already there."""
    size = budget_size(*image.size, min_pixels=min_pixels, max_pixels=max_pixels, factor=factor)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


def visual_tokens(size: tuple[int, int], factor: int = QWEN25_PATCH_FACTOR) -> int:
    """Visual tokens an image of this (budget-fitted) size costs the model: one per factor x factor cell."""
    return (size[0] // factor) * (size[1] // factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL image; transparency is composited on white so cut-outs stay visible."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
