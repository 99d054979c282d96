"""Notebook rendering helpers (pxr/viz.py): the right pixels change, sizes add up, tables render literally."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from pxr.viz import as_shown_views, draw_boxes, frame_strip, markdown_table, pixelated, show_images, zoom_views

RED = (255, 40, 40)
WHITE = (255, 255, 255)


def white(size=(100, 100)):
    return Image.new("RGB", size, WHITE)


def test_draw_boxes_colours_the_border_only():
    image = white()
    out = draw_boxes(image, [[20, 20, 80, 80]], width=3)
    px = np.asarray(out)
    assert tuple(px[50, 20]) == RED and tuple(px[50, 22]) == RED and tuple(px[50, 79]) == RED
    assert tuple(px[20, 50]) == RED and tuple(px[79, 50]) == RED
    assert tuple(px[50, 23]) == WHITE and tuple(px[50, 50]) == WHITE  # inside the line: untouched
    assert tuple(px[50, 19]) == WHITE and tuple(px[50, 80]) == WHITE  # outside the box: untouched
    assert image.getpixel((20, 50)) == WHITE  # the input is not drawn on


def test_draw_boxes_normalized_and_flat_box_match_absolute():
    absolute = draw_boxes(white((200, 100)), [[40, 20, 160, 80]], width=2)
    normalized = draw_boxes(white((200, 100)), [[0.2, 0.2, 0.8, 0.8]], width=2, normalized=True)
    flat = draw_boxes(white((200, 100)), [40, 20, 160, 80], width=2)
    assert absolute.tobytes() == normalized.tobytes() == flat.tobytes()


def test_draw_boxes_width_scales_with_image():
    small = np.asarray(draw_boxes(white((100, 100)), [[10, 10, 90, 90]]))
    large = np.asarray(draw_boxes(white((2000, 2000)), [[200, 200, 1800, 1800]]))
    small_line = int((small[50, :50] != 255).any(axis=1).sum())
    large_line = int((large[1000, :1000] != 255).any(axis=1).sum())
    assert large_line > small_line >= 2


def test_draw_boxes_labels_sit_in_a_filled_tag_above_the_box():
    out = np.asarray(draw_boxes(white((400, 400)), [[100, 200, 300, 300]], labels=["1"], width=2))
    above = out[:200]
    ys, xs = np.nonzero((above == RED).all(axis=2))
    assert len(ys) > 50
    assert ys.min() >= 170 and xs.min() >= 100 and xs.max() < 130  # a small tag on the box's top-left corner
    tag = above[ys.min() :, xs.min() : xs.max() + 1]
    assert (tag > 200).all(axis=2).any()  # the light label text inside the red tag
    unlabeled = np.asarray(draw_boxes(white((400, 400)), [[100, 200, 300, 300]], width=2))
    assert (unlabeled[:200] == 255).all()
    with pytest.raises(ValueError, match="labels"):
        draw_boxes(white(), [[1, 1, 5, 5]], labels=["1", "2"])


def test_pixelated_repeats_pixels_without_smoothing():
    tiny = Image.fromarray(np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [0, 0, 255]]], np.uint8))
    big = pixelated(tiny, 3)
    assert big.size == (6, 6)
    px = np.asarray(big)
    assert (px[:3, :3] == 0).all() and (px[:3, 3:] == [255, 0, 0]).all() and (px[3:, 3:] == [0, 0, 255]).all()
    assert len({tuple(p) for p in px.reshape(-1, 3)}) == 4
    with pytest.raises(ValueError):
        pixelated(tiny, 0)


def test_show_images_keeps_aspect_ratios_and_wraps():
    images = [white((448, 308)), white((146, 146)), np.zeros((50, 200), np.uint8)]
    fig = show_images(images, height=2.0, max_cols=2)
    assert isinstance(fig, Figure)
    fig_w, fig_h = fig.get_size_inches()
    assert len(fig.axes) == 3
    for ax, (w, h) in zip(fig.axes, [(448, 308), (146, 146), (200, 50)], strict=True):
        box = ax.get_position()
        assert box.width * fig_w / (box.height * fig_h) == pytest.approx(w / h)
        assert box.height * fig_h == pytest.approx(2.0)
    assert fig.axes[2].get_position().y0 < fig.axes[0].get_position().y0  # third image on a second row
    assert [ax.get_title() for ax in fig.axes] == ["448x308", "146x146", "200x50"]


def test_show_images_titles_and_no_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = show_images([white()], ["zoom (100x100)"])
    assert fig.axes[0].get_title() == "zoom (100x100)"
    assert plt.get_fignums() == before
    png = io.BytesIO()
    fig.savefig(png, format="png")  # renders without pyplot, whatever the backend
    assert png.getvalue().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="titles"):
        show_images([white(), white()], ["only one"])


def test_frame_strip_size_arithmetic():
    frames = [Image.new("RGB", (40, 30), (0, 0, 200)) for _ in range(5)]
    assert frame_strip(frames, gap=4).size == (5 * 40 + 4 * 4, 30)
    assert frame_strip(frames, gap=0, frame_height=15).size == (5 * 20, 15)
    assert frame_strip(frames[:1]).size == (40, 30)


def test_frame_strip_highlights_and_numbers():
    frames = [Image.new("RGB", (40, 30), (0, 0, 200)) for _ in range(3)]
    plain = np.asarray(frame_strip(frames, numbers=False, gap=4))
    assert (plain[:, :40] == [0, 0, 200]).all() and (plain[:, 40:44] == 255).all()
    marked = np.asarray(frame_strip(frames, highlight=[2], numbers=False, gap=4, outline_width=2))
    assert tuple(marked[29, 50]) == RED and tuple(marked[15, 44]) == RED and tuple(marked[15, 83]) == RED
    assert tuple(marked[15, 60]) == (0, 0, 200) and tuple(marked[29, 10]) == (0, 0, 200)
    numbered = np.asarray(frame_strip(frames, numbers=True, gap=4))
    assert (numbered[:12, :12] != [0, 0, 200]).any()  # the number tag in the top-left corner
    assert (numbered[20:, 20:40] == [0, 0, 200]).all()
    with pytest.raises(ValueError, match="outside"):
        frame_strip(frames, highlight=[4])


def test_markdown_table_literal():
    rows = [{"run": "toy", "accuracy": 0.123456, "n": 40}, {"run": "a|b", "accuracy": np.float32(2.0), "extra": None}]
    assert markdown_table(rows) == (
        "| run | accuracy | n | extra |\n|---|---|---|---|\n| toy | 0.1235 | 40 |  |\n| a\\|b | 2 |  |  |"
    )
    assert markdown_table(rows, columns=["n", "run"]) == "| n | run |\n|---|---|\n| 40 | toy |\n|  | a\\|b |"
    assert markdown_table([{"x": 12345.678, "flag": True}]) == "| x | flag |\n|---|---|\n| 1.235e+04 | True |"


def _rollout(turns, **config):
    from pxr.config import EpisodeConfig
    from pxr.rollout import Query, apply_turn, start_trajectory

    query = Query("q7", "What digit is inside the square?", images=[white((400, 200))], answer="7")
    trajectory = start_trajectory(query, EpisodeConfig(**config))
    for text in turns:
        apply_turn(trajectory, text, 3)
    return trajectory


def test_render_trajectory_marks_the_verdict_draws_the_boxes_and_places_the_crops():
    from pxr.protocol import tool_call_text
    from pxr.viz import RIGHT_COLOR, WRONG_COLOR, render_trajectory

    zoom = "Let me look.\n" + tool_call_text("zoom_in", {"bbox_2d": [0.25, 0.25, 0.5, 0.75]})
    zoomed = _rollout([zoom, "\\boxed{7}"])
    right = np.asarray(render_trajectory(zoomed, score=1.0, image_height=100, min_width=300))
    wrong = np.asarray(render_trajectory(_rollout(["\\boxed{3}"]), score=0.0, image_height=100, min_width=300))
    assert tuple(right[1, 1]) == RIGHT_COLOR and tuple(wrong[1, 1]) == WRONG_COLOR
    is_red = lambda a: (a[..., 0] > 180) & (a[..., 1] < 120) & (a[..., 2] < 120)  # noqa: E731
    plain = lambda t: np.asarray(render_trajectory(t, image_height=100))  # noqa: E731  (no verdict band colour)
    assert is_red(plain(zoomed)).sum() > 100 and is_red(plain(_rollout(["\\boxed{3}"]))).sum() == 0  # the zoom box
    # input 392x196 and crop shown side by side at 100 px tall: 200 + crop width + 3 gaps of 8
    crop = zoomed.episode.entries[1].shown
    assert right.shape[1] == 200 + round(crop.width * 100 / crop.height) + 24
    assert right.shape[0] > wrong.shape[0]  # three turns of text against one


def test_render_trajectory_shows_blank_observations_as_blank():
    from pxr.protocol import tool_call_text
    from pxr.viz import render_trajectory

    zoom = tool_call_text("zoom_in", {"bbox_2d": [0.0, 0.0, 0.5, 0.5]})
    picture = render_trajectory(_rollout([zoom, "\\boxed{7}"], blank_observations=True), image_height=100)
    crop = _rollout([zoom], blank_observations=True).episode.entries[1].shown
    x = 8 + 200 + 8 + round(crop.width * 100 / crop.height) // 2  # the middle of the crop's place
    top = next(y for y in range(picture.height) if picture.getpixel((8 + 100, y)) == WHITE)  # below the header
    assert picture.getpixel((x, top + 8 + 50)) == (128, 128, 128)


def test_arm_small_multiples_panels_rows_arms_and_absent_panels():
    from pxr.viz import arm_small_multiples

    arms = {"b": {"r1": {"y": [(1, 0.2), (2, 0.4)]}, "r2": {"y": [(1, 0.4)]}}, "a": {"r3": {"y": [(1, 0.9)]}}}
    panels = [{"title": "one", "arms": arms, "hlines": {"y": [(0.3, "H")]}}, {"title": "two", "arms": {}}]
    fig = arm_small_multiples(panels, [("y", "Y"), ("z", "Z")], colours={"a": "red"})
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:2]] == ["one", "two"]
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert sorted(lines) == ["_H", "_r1", "_r2", "a", "b"]  # a lone run ("a") is drawn thick only
    assert lines["a"].get_color() == "red" and lines["b"].get_color() == "C1"
    assert list(lines["b"].get_ydata()) == [pytest.approx(0.3), 0.4]  # the mean over the runs that have each x
    assert [t.get_text() for t in fig.axes[1].texts] == ["not run"] and not fig.axes[1].get_lines()
    assert [t.get_text() for t in fig.axes[3].texts] == ["not run"] and not fig.axes[2].get_lines()  # no "z" data
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="at least one panel"):
        arm_small_multiples([], [("y", "Y")])


def test_as_shown_views_show_one_region_as_shown_enlarged_and_in_the_source():
    source = Image.new("RGB", (1536, 1024), "white")
    shown = source.resize((532, 364))
    images, titles = as_shown_views(source, shown, [700, 500, 728, 528], margin=28, enlarge=12)
    assert images[0] is shown and len(images) == len(titles) == 3
    assert titles[0] == "as the model sees it (532x364)"
    near = [672, 472, 756, 556]  # the box grown by 28 px per side, in source pixels
    as_shown = [round(v * 532 / 1536) for v in near]
    assert images[1].size == ((as_shown[2] - as_shown[0]) * 12, (as_shown[3] - as_shown[1]) * 12) == (348, 360)
    assert images[2].size == (84, 84)


def test_zoom_views_show_the_zoom_box_on_the_source_and_the_image_returned():
    from pxr.episode import VisualEpisode
    from pxr.protocol import tool_call_text

    source = Image.new("RGB", (1536, 1024), "white")
    episode = VisualEpisode(images=[source])
    episode.step(tool_call_text("zoom_in", {"bbox_2d": [0.4, 0.4, 0.5, 0.5], "target_image": 1}))
    images, titles = zoom_views(source, episode.entries[1], [700, 450, 730, 480])
    assert titles == ["the zoom box on the source", "image 2, as returned (448x308)"]
    assert images[1] is episode.entries[1].shown and images[0].size == source.size
    x1, y1 = episode.entries[1].root_box[:2]
    assert images[0].getpixel((x1, y1)) != (255, 255, 255)  # the zoom box is drawn where it was cut
