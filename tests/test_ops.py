"""pxr.ops: exact crop geometry, frame selection, budgets (paper §2, App. C.1)."""

import math

import numpy as np
import pytest
from PIL import Image

from pxr import ops
from pxr.ops import OpError


def coordinate_image(width, height):
    """Each pixel stores its own coordinates: R = x % 256, G = y % 256, B = (x // 256) * 16 + y // 256."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    rgb = np.stack([xs % 256, ys % 256, (xs // 256) * 16 + ys // 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def pixel_xy(image, x, y):
    r, g, b = image.getpixel((x, y))
    return (b // 16) * 256 + r, (b % 16) * 256 + g


@pytest.mark.slow
def test_zoom_in_pads_by_image_fraction_and_crops_source_pixels():
    image = coordinate_image(1000, 800)
    crop = ops.zoom_in(image, [0.4, 0.4, 0.6, 0.6])  # +0.1 of width/height on each side
    assert crop.size == (400, 320)
    assert pixel_xy(crop, 0, 0) == (300, 240)
    assert pixel_xy(crop, 399, 319) == (699, 559)


def test_zoom_in_without_padding_crops_the_box_exactly():
    crop = ops.zoom_in(coordinate_image(1000, 800), [0.25, 0.5, 0.75, 1.0], padding=0.0)
    assert crop.size == (500, 400)
    assert pixel_xy(crop, 0, 0) == (250, 400)


def test_zoom_in_clamps_padding_at_the_borders():
    image = coordinate_image(1000, 800)
    assert ops.padded_crop_box(image.size, [0.0, 0.0, 0.1, 0.1]) == (0, 0, 200, 160)
    assert ops.padded_crop_box(image.size, [0.5, 0.5, 1.0, 1.0]) == (400, 320, 1000, 800)
    assert ops.zoom_in(image, [0.0, 0.0, 1.0, 1.0]).size == (1000, 800)


def test_box_edges_are_not_shifted_by_float_error():
    # 0.7 * 1000 = 700.0000000000001 in floating point; the crop must end at pixel 700, not 701.
    assert ops.padded_crop_box((1000, 1000), [0.1, 0.2, 0.7, 0.7], padding=0.0) == (100, 200, 700, 700)
    assert ops.padded_crop_box((1000, 1000), [0.3, 0.3, 0.6, 0.6], padding=0.1) == (200, 200, 700, 700)


def test_fractional_boxes_cover_every_pixel_they_touch():
    assert ops.padded_crop_box((1000, 1000), [0.1005, 0.2005, 0.3005, 0.4005], padding=0.0) == (100, 200, 301, 401)


def test_crops_keep_source_resolution():
    crop = ops.zoom_in(Image.new("RGB", (4000, 3000)), [0.5, 0.5, 0.6, 0.6])
    assert crop.size == (1200, 900)  # 0.3 of each side after padding


def test_minimum_crop_size_is_inclusive_and_reported():
    image = Image.new("RGB", (1000, 1000))
    assert ops.zoom_in(image, [0.1, 0.1, 0.128, 0.128], padding=0.0).size == (28, 28)
    with pytest.raises(OpError) as err:
        ops.zoom_in(image, [0.1, 0.1, 0.127, 0.127], padding=0.0)
    assert str(err.value) == "the region is too small (27x27 px); the minimum is 28x28."
    with pytest.raises(OpError, match=r"too small \(50x27 px\); the minimum is 40x40"):
        ops.zoom_in(image, [0.1, 0.1, 0.15, 0.127], padding=0.0, min_size=40)


@pytest.mark.parametrize(
    "box",
    [
        [0.1, 0.2, 0.3],
        [0.1, 0.2, 0.3, 0.4, 0.5],
        [],
        "0.1 0.2 0.3 0.4",
        {"x1": 0.1},
        None,
        [0.1, "0.2", 0.3, 0.4],
        [0.1, 0.2, float("nan"), 0.4],
        [0.1, 0.2, float("inf"), 0.4],
        [True, 0.2, 0.3, 0.4],
        [0.5, 0.2, 0.3, 0.4],  # x1 > x2
        [0.1, 0.4, 0.3, 0.4],  # y1 == y2
        [0.1, 0.2, 1.3, 0.4],  # not normalized
        [-0.1, 0.2, 0.3, 0.4],
    ],
)
def test_malformed_boxes_raise_op_error(box):
    with pytest.raises(OpError):
        ops.zoom_in(Image.new("RGB", (100, 100)), box)


def test_op_error_is_a_value_error():
    assert issubclass(OpError, ValueError)


def frames(n):
    return [Image.new("RGB", (32, 24), (k, 0, 0)) for k in range(n)]


def test_select_frames_is_one_based_and_keeps_the_order_asked():
    video = frames(16)
    picked = ops.select_frames(video, [9, 1, 16])
    assert [f.getpixel((0, 0))[0] for f in picked] == [8, 0, 15]
    assert ops.select_frames(video, [3.0])[0] is video[2]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([], "empty"),
        ([0], r"frames \[0\] are out of range: the video has 16 frames, numbered 1 to 16"),
        ([17], "out of range"),
        ([-1], "out of range"),
        ([2, 2], "repeats"),
        (list(range(1, 10)), "9 frames were selected; the limit is 8"),
        ([1.5], "integers"),
        (["3"], "integers"),
        ([True], "integers"),
        ([None], "integers"),
        (3, "must be a list"),
        ("1,2", "must be a list"),
    ],
)
def test_select_frames_errors_state_the_valid_range_and_limit(target, message):
    with pytest.raises(OpError, match=message) as err:
        ops.select_frames(frames(16), target)
    assert "[1, 16]" in str(err.value) and "1 to 8" in str(err.value)


def test_select_frames_limit_is_a_parameter():
    assert len(ops.select_frames(frames(16), [1, 2, 3], max_frames=3)) == 3
    with pytest.raises(OpError, match="limit is 2"):
        ops.select_frames(frames(16), [1, 2, 3], max_frames=2)


SIZES = [(1, 1), (27, 5), (28, 28), (100, 3000), (448, 448), (1536, 1024), (4000, 3000), (333, 777), (29, 14000)]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize(("lo", "hi"), [(4 * 784, 256 * 784), (256 * 784, 5120 * 784), (784, 784)])
def test_budget_size_matches_the_qwen_processor(width, height, lo, hi):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    if max(width, height) / min(width, height) > 200:  # both refuse extreme aspect ratios
        with pytest.raises(ValueError):
            smart_resize(height, width, factor=28, min_pixels=lo, max_pixels=hi)
        with pytest.raises(OpError):
            ops.budget_size(width, height, min_pixels=lo, max_pixels=hi)
        return
    h, w = smart_resize(height, width, factor=28, min_pixels=lo, max_pixels=hi)
    assert ops.budget_size(width, height, min_pixels=lo, max_pixels=hi) == (w, h)


def test_resize_to_budget_fits_the_grid_and_the_budget_and_is_idempotent():
    image = Image.new("RGB", (1536, 1024))
    shown = ops.resize_to_budget(image, min_pixels=3136, max_pixels=200704)
    assert shown.width % 28 == 0 and shown.height % 28 == 0
    assert 3136 <= shown.width * shown.height <= 200704
    assert math.isclose(shown.width / shown.height, 1.5, rel_tol=0.05)
    assert ops.resize_to_budget(shown, min_pixels=3136, max_pixels=200704) is shown
    small = ops.resize_to_budget(Image.new("RGB", (30, 30)), min_pixels=4 * 784, max_pixels=200704)
    assert small.size == (56, 56)
    assert ops.visual_tokens(shown.size) == (shown.width // 28) * (shown.height // 28)


def test_extreme_aspect_ratio_is_an_op_error():
    with pytest.raises(OpError, match="too elongated"):
        ops.resize_to_budget(Image.new("RGB", (28, 6000)), min_pixels=784, max_pixels=200704)


def test_to_rgb_composites_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert ops.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert ops.to_rgb(Image.new("L", (4, 4), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_as_int_accepts_integral_numbers_only():
    assert ops.as_int(3) == 3 and ops.as_int(3.0) == 3 and ops.as_int(10**40) == 10**40
    assert ops.as_int(3.5) is None and ops.as_int(True) is None and ops.as_int("3") is None
    assert ops.as_int(float("nan")) is None and ops.as_int(float("inf")) is None
