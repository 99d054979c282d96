"""pxr.episode.VisualEpisode: numbering, op execution from text, errors, limits, the record (paper §2)."""

import pytest
from PIL import Image

from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode
from pxr.protocol import malformed_call_examples, tool_call_text
from tests.test_ops import coordinate_image, pixel_xy


def zoom(box, target=..., name="zoom_in"):
    args = {"bbox_2d": box} if target is ... else {"bbox_2d": box, "target_image": target}
    return "Let me look closer.\n" + tool_call_text(name, args)


def select(frames):
    return tool_call_text("select_frames", {"target_frames": frames})


@pytest.fixture
def episode():
    return VisualEpisode(images=[coordinate_image(1536, 1024)])


@pytest.mark.slow
def test_query_image_is_shown_at_the_budget_and_kept_at_source_resolution(episode):
    shown = episode.entries[0].shown
    assert shown.size == (532, 364)  # Qwen's rounding of 1536x1024 into 256 tiles of 28x28
    assert episode.source(1).size == (1536, 1024)
    assert episode.shown_images == [shown]


@pytest.mark.slow
def test_zoom_appends_image_2_and_names_it(episode):
    obs = episode.step(zoom([0.4, 0.4, 0.5, 0.5]))
    assert obs.ok and obs.numbers == [2]
    assert obs.text == "Here is image 2: the zoomed region of image 1 (448x308 px)."
    assert obs.images == [episode.entries[1].shown]
    assert episode.entries[1].root_box == (460, 307, 922, 615)  # [0.3, 0.3, 0.6, 0.6] of 1536x1024
    assert pixel_xy(episode.source(2), 0, 0) == (460, 307)


def test_zoom_of_a_zoom_stays_in_original_pixel_space(episode):
    episode.step(zoom([0.4, 0.4, 0.5, 0.5]))  # image 2: source box (460, 307)-(922, 615), 462x308 px
    obs = episode.step(zoom([0.5, 0.5, 0.6, 0.6], target=2))
    assert obs.ok and obs.numbers == [3] and "zoomed region of image 2" in obs.text
    # padding is 0.1 of image 2's own size: x in [0.4, 0.7] of 462 px, y in [0.4, 0.7] of 308 px
    assert episode.entries[2].root_box == (460 + 184, 307 + 123, 460 + 324, 307 + 216)
    assert pixel_xy(episode.source(3), 0, 0) == (644, 430)
    assert episode.entries[2].root == 1 and episode.entries[2].parent == 2


def test_absolute_boxes_are_pixels_of_the_image_as_shown(episode):
    normalized = VisualEpisode(images=[coordinate_image(1536, 1024)])
    normalized.step(zoom([0.25, 0.25, 0.5, 0.5]))
    episode.step(zoom([133, 91, 266, 182]))  # the same region in the 532x364 image the model sees
    assert episode.entries[1].root_box == normalized.entries[1].root_box


def test_absolute_box_outside_the_shown_image_is_an_error(episode):
    obs = episode.step(zoom([100, 100, 600, 200]))
    assert not obs.ok and "lies outside image 1, which you see at 532x364 px" in obs.text


def test_a_normalized_box_touching_the_border_is_not_misread_as_pixels(episode):
    obs = episode.step(zoom([0.5, 0.5, 1.0, 1.0]))
    assert obs.ok and episode.entries[1].root_box == (614, 409, 1536, 1024)


@pytest.mark.parametrize("name", ["crop_image_normalized", "crop_image"])
def test_released_op_names_are_aliases_of_zoom_in(episode, name):
    assert episode.step(zoom([0.4, 0.4, 0.5, 0.5], target=1, name=name)).ok


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        (1, True),
        (1.0, True),
        (2, False),
        (0, False),
        (-1, False),
        ("1", False),
        (True, False),
        (1.5, False),
        (None, False),
    ],
)
def test_target_image_must_name_an_existing_image(episode, target, ok):
    obs = episode.step(zoom([0.4, 0.4, 0.5, 0.5], target=target))
    assert obs.ok is ok
    if not ok:
        assert obs.text.startswith("Execution error: target_image must be an image number from 1 to 1")


@pytest.mark.slow
def test_crops_are_resized_into_the_crop_budget():
    ep = VisualEpisode(images=[Image.new("RGB", (4000, 3000))], crop_max_pixels=64 * 784, crop_min_pixels=4 * 784)
    obs = ep.step(zoom([0.0, 0.0, 0.8, 0.8]))
    w, h = obs.images[0].size
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 64 * 784
    small = ep.step(zoom([0.5, 0.5, 0.51, 0.51], target=1))  # 1240x930 source px after padding
    assert small.ok


MALFORMED = {
    "bad json": ("<tool_call>{'name': 'zoom_in'}</tool_call>", "not valid JSON"),
    "unclosed": ('<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [0, 0, 1, 1]}}', "not closed"),
    "two calls": (zoom([0, 0, 1, 1]) + zoom([0, 0, 1, 1]), "exactly one call per turn"),
    "not an object": ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
    "no name": ('<tool_call>{"arguments": {}}</tool_call>', 'no "name"'),
    "unknown op": (tool_call_text("rotate", {"angle": 90}), "unknown operation 'rotate'; the operations are zoom_in"),
    "missing arg": (tool_call_text("zoom_in", {"target_image": 1}), "needs the argument bbox_2d"),
    "extra arg": (tool_call_text("zoom_in", {"bbox_2d": [0, 0, 1, 1], "scale": 2}), "does not take 'scale'"),
    "args not object": ('<tool_call>{"name": "zoom_in", "arguments": [1]}</tool_call>', "must be a JSON object"),
    "three numbers": (zoom([0.1, 0.1, 0.5]), "list of 4 numbers"),
    "strings": (zoom(["0.1", "0.1", "0.5", "0.5"]), "4 finite numbers"),
    "inverted": (zoom([0.5, 0.5, 0.1, 0.1]), "x1 < x2 and y1 < y2"),
    "degenerate": (zoom([0.3, 0.3, 0.3, 0.6]), "x1 < x2 and y1 < y2"),
    "frames on image": (select([1]), "select_frames works on videos only"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_calls_become_error_observations_that_say_what_is_valid(episode, case):
    text, expected = MALFORMED[case]
    obs = episode.step(text)
    assert not obs.ok and obs.images == [] and obs.numbers == []
    assert obs.text.startswith("Execution error: ") and expected in obs.text
    assert not episode.done and len(episode.entries) == 1
    assert episode.record()["ops_failed"] == 1 and episode.record()["ops_executed"] == 0


def test_string_arguments_in_openai_style_are_accepted(episode):
    text = '<tool_call>{"name": "zoom_in", "arguments": "{\\"bbox_2d\\": [0.1, 0.1, 0.5, 0.5]}"}</tool_call>'
    assert episode.step(text).ok


def test_too_small_region_is_an_error_with_its_size():
    ep = VisualEpisode(images=[coordinate_image(1536, 1024)], zoom_padding=0.0)
    obs = ep.step(tool_call_text("zoom_in", {"bbox_2d": [1, 1, 6, 6]}))  # 5x5 shown px cover 16x15 source px
    assert obs.text == "Execution error: the region is too small (16x15 px); the minimum is 28x28."


@pytest.fixture
def video():
    return [Image.new("RGB", (640, 480), (10 * k, 0, 0)) for k in range(16)]


def test_video_frames_are_images_1_to_16_and_select_frames_appends_them(video):
    ep = VisualEpisode(video=video)
    assert ep.n_inputs == 16 and ep.entries[0].shown.size[0] * ep.entries[0].shown.size[1] <= 16 * 784
    obs = ep.step(select([3, 5]))
    assert obs.ok and obs.numbers == [17, 18]
    assert obs.text == "Here are images 17-18: video frames 3, 5 (252x168 px)."
    assert ep.source(17).getpixel((0, 0)) == (20, 0, 0) and ep.source(17).size == (640, 480)
    zoomed = ep.step(zoom([0.2, 0.2, 0.4, 0.4], target=18))
    assert zoomed.ok and zoomed.numbers == [19] and ep.entries[18].frame == 5
    assert ep.step(zoom([0.2, 0.2, 0.4, 0.4], target=16)).ok  # a frame can be zoomed directly too


def test_select_frames_errors_on_a_video(video):
    ep = VisualEpisode(video=video)
    obs = ep.step(select([0, 17]))
    assert not obs.ok and "numbered 1 to 16" in obs.text
    assert not ep.step(select(list(range(1, 10)))).ok


def test_max_ops_counts_executed_ops_and_ends_the_episode(episode):
    ep = VisualEpisode(images=[coordinate_image(600, 400)], max_ops=2)
    assert not ep.step(zoom([0.5, 0.5, 0.2, 0.2])).ok  # a failure does not use up the budget
    assert ep.step(zoom([0.1, 0.1, 0.5, 0.5])).ok
    assert ep.step(zoom([0.1, 0.1, 0.5, 0.5])).ok
    obs = ep.step(zoom([0.1, 0.1, 0.5, 0.5]))
    assert not obs.ok and "limit of 2 operations" in obs.text
    assert ep.done and ep.ending == "limit" and ep.limit_reason == "max_ops"
    assert ep.step("\\boxed{1}") is None and ep.answer is None
    record = ep.record()
    assert (record["ops_requested"], record["ops_executed"], record["ops_failed"]) == (4, 2, 2)


def test_max_images_counts_a_video_as_one_input(video):
    ep = VisualEpisode(images=[coordinate_image(600, 400)], max_images=3)
    assert ep.step(zoom([0.1, 0.1, 0.5, 0.5])).ok and ep.step(zoom([0.1, 0.1, 0.5, 0.5])).ok
    assert not ep.step(zoom([0.1, 0.1, 0.5, 0.5])).ok and ep.limit_reason == "max_images"
    assert len(ep.entries) == 3
    vid = VisualEpisode(video=video, max_images=3)
    assert vid.step(select([1, 2])).ok
    assert not vid.step(select([3])).ok and vid.limit_reason == "max_images" and len(vid.entries) == 18


@pytest.mark.slow
def test_answer_turn_ends_the_episode(episode):
    assert episode.step("The digit is \\boxed{7}.") is None
    assert episode.done and episode.ending == "answer" and episode.answer == "7"


def test_turn_without_call_or_answer_ends_as_no_answer(episode):
    assert episode.step("I looked at the image for a while.\nI am not sure what the digit is.") is None
    assert episode.ending == "no_answer" and episode.answer is None


def test_a_short_bare_reply_is_the_answer(episode):
    """The one reading of an answer (`protocol.final_answer`): RL, SFT's check and evaluation all take "3" as 3."""
    assert episode.step("3") is None
    assert episode.ending == "answer" and episode.answer == "3"


def test_multiple_choice_answers_are_read_as_letters():
    ep = VisualEpisode(images=[coordinate_image(100, 100)], options=["red", "blue"])
    ep.step("It is \\boxed{blue}")
    assert ep.answer == "B"


def test_record_tracks_each_call_and_unfixed_failures(episode):
    episode.step(zoom([0.1, 0.1, 0.4, 0.4]))
    episode.step(zoom([0.1, 0.1, 0.4]))
    episode.step("\\boxed{3}")
    record = episode.record()
    assert record["last_op_failed_unfixed"] is True
    assert [op["ok"] for op in record["ops"]] == [True, False]
    assert record["ops"][0]["arguments"] == {"bbox_2d": [0.1, 0.1, 0.4, 0.4]}
    assert record["ops"][0]["image_numbers"] == [2] and record["ops"][0]["sizes"] == [
        list(episode.entries[1].shown.size)
    ]
    assert record["ending"] == "answer" and record["answer"] == "3" and record["turns"] == 3
    import json

    json.dumps(record)  # JSON-ready


def test_retried_failure_is_not_unfixed(episode):
    episode.step(zoom([0.1, 0.1, 0.4]))
    episode.step(zoom([0.1, 0.1, 0.4, 0.4]))
    episode.step("\\boxed{3}")
    assert episode.last_op_failed_unfixed is False


def test_rollout_engine_can_end_an_episode(episode):
    episode.finish("truncated")
    assert episode.done and episode.step(zoom([0, 0, 1, 1])) is None
    with pytest.raises(ValueError):
        VisualEpisode(images=[coordinate_image(100, 100)]).finish("exploded")


def test_text_prompt_has_no_ops():
    ep = VisualEpisode(images=[coordinate_image(600, 400)], prompt="text")
    obs = ep.step(zoom([0.1, 0.1, 0.5, 0.5]))
    assert not obs.ok and "no operations are available" in obs.text


def test_released_variant_speaks_the_released_observation_format():
    ep = VisualEpisode(images=[coordinate_image(600, 400)], prompt="pixel-reasoner-v1")
    obs = ep.step(zoom([0.1, 0.1, 0.5, 0.5], target=1, name="crop_image_normalized"))
    w, h = obs.images[0].size
    assert obs.text == f"\nHere is the cropped image (Image Size: {w}x{h}):"  # the released leading newline
    error = ep.step(tool_call_text("rotate", {})).text
    assert "crop_image_normalized" in error and error.startswith("\nExecution error:\n") and error.endswith("\n")


def test_construction_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        VisualEpisode()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        VisualEpisode(images=[tmp_path / "missing.png"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        VisualEpisode(images=[bad])
    with pytest.raises(TypeError):
        VisualEpisode(images=[coordinate_image(10, 10)], max_opps=3)


def test_images_from_files_and_config_objects(tmp_path):
    path = tmp_path / "scene.png"
    coordinate_image(300, 200).convert("RGBA").save(path)
    ep = VisualEpisode(images=[path], config=EpisodeConfig(max_ops=1), zoom_padding=0.0)
    assert ep.config.max_ops == 1 and ep.config.zoom_padding == 0.0
    assert ep.source(1).mode == "RGB"


def test_max_turns_bounds_an_episode_of_failing_calls():
    ep = VisualEpisode(images=[coordinate_image(600, 400)], max_turns=3)
    assert not ep.step(zoom([0.5, 0.5, 0.2, 0.2])).ok and not ep.step(zoom([0.5, 0.5, 0.2, 0.2])).ok
    obs = ep.step(zoom([0.5, 0.5, 0.2, 0.2]))
    assert "limit of 3 turns" in obs.text and ep.ending == "limit" and ep.limit_reason == "max_turns"
    answered = VisualEpisode(images=[coordinate_image(600, 400)], max_turns=1)
    assert answered.step("\\boxed{2}") is None and answered.ending == "answer"  # answering is always allowed


@pytest.mark.slow
def test_blank_observations_run_the_op_and_return_blank_images_of_the_same_size(video):
    real = VisualEpisode(images=[coordinate_image(1536, 1024)])
    blank = VisualEpisode(images=[coordinate_image(1536, 1024)], blank_observations=True)
    for e in (real, blank):
        e.step(zoom([0.4, 0.4, 0.5, 0.5]))
    obs = blank.step(zoom([0.1, 0.1, 0.9, 0.9], target=2))  # a crop of the blank crop is blank too
    assert obs.ok and blank.n_executed == 2 and blank.entries[1].root_box == real.entries[1].root_box
    assert blank.entries[1].shown.size == real.entries[1].shown.size == (448, 308)
    assert {blank.entries[k].shown.getextrema() for k in (1, 2)} == {((128, 128),) * 3}
    assert blank.entries[0].shown.tobytes() == real.entries[0].shown.tobytes()  # the input is untouched
    record = blank.record()
    assert record["blank_observations"] and [i["blank"] for i in record["images"]] == [False, True, True]
    frames = VisualEpisode(video=video, blank_observations=True)
    obs = frames.step(select([2, 3]))
    assert obs.ok and all(image.getextrema() == ((128, 128),) * 3 for image in obs.images)


@pytest.mark.slow
def test_every_malformed_call_example_becomes_an_execution_error():
    examples = malformed_call_examples([0.4, 0.4, 0.5, 0.5])
    assert len(examples) == 12
    for what, text in examples.items():
        obs = VisualEpisode(images=[coordinate_image(1536, 1024)]).step(text)
        assert obs is not None and not obs.ok, what
        assert obs.text.startswith("Execution error: "), (what, obs.text)
    # The examples are built on the box they are given (rounded as a model writes boxes).
    assert "[0.5, 0.5, 0.4, 0.4]" in examples["inverted box"]
    assert examples["unclosed call"].startswith("<tool_call>") and "</tool_call>" not in examples["unclosed call"]
    assert examples["two calls in one turn"].count("<tool_call>") == 2
