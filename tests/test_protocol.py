"""pxr.protocol: the strings the model reads, literal. `pixel-reasoner-v1` is compared byte for byte with the
released checkpoints' format (tool JSON lines of the system prompt, observation and error texts, frame numbering,
the video as one item); `pixel` keeps pxr's own numbering."""

import json

import pytest
from PIL import Image

from pxr import protocol
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode

RELEASED_CROP_LINE = (
    '{"type": "function", "function": {"name": "crop_image_normalized", "description": "Zoom in on the image based '
    'on the bounding box coordinates. It is useful when the object or text in the image is too small to be seen.", '
    '"parameters": {"type": "object", "properties": {"bbox_2d": {"type": "array", "description": "coordinates for '
    'bounding box of the area you want to zoom in. Values should be within [0.0,1.0].", "items": {"type": "number"}}, '
    '"target_image": {"type": "number", "description": "The index of the image to crop. Index from 1 to the number '
    'of images. Choose 1 to operate on original image."}}, "required": ["bbox_2d", "target_image"]}}}'
)
RELEASED_SELECT_LINE = (
    '{"type": "function", "function": {"name": "select_frames", "description": "Select frames from a video.", '
    '"parameters": {"type": "object", "properties": {"target_frames": {"type": "array", "description": "List of '
    'frame indices to select from the video (no more than 8 frames in total).", "items": {"type": "integer", '
    '"description": "Frame index from 1 to 16."}}}, "required": ["target_frames"]}}}'
)


def test_released_system_prompt_has_the_released_tool_lines():
    text = protocol.system_prompt("pixel-reasoner-v1")
    assert f"<tools>\n{RELEASED_CROP_LINE}\n{RELEASED_SELECT_LINE}\n</tools>" in text
    assert list(json.loads(RELEASED_CROP_LINE)["function"]["parameters"]["properties"]["bbox_2d"]) == [
        "type",
        "description",
        "items",
    ]


def test_released_observation_and_error_texts():
    assert protocol.zoom_observation_text("pixel-reasoner-v1", 2, 1, (336, 252)) == (
        "\nHere is the cropped image (Image Size: 336x252):"
    )
    assert protocol.error_observation_text("Cropped image is too small: 20x20", "pixel-reasoner-v1") == (
        "\nExecution error:\nCropped image is too small: 20x20\n"
    )
    # A 16-frame video: pxr numbers the first two selected frames 17 and 18; the released line says 1 to 2.
    assert protocol.frames_observation_text("pixel-reasoner-v1", [17, 18], [3, 9], (224, 168), video_frames=16) == (
        "\nHere are the selected frames (Frame Size: 224x168, Numbered 1 to 2):"
    )


def test_pixel_keeps_its_own_numbering_and_error_text():
    assert protocol.zoom_observation_text("pixel", 2, 1, (336, 252)) == (
        "Here is image 2: the zoomed region of image 1 (336x252 px)."
    )
    assert protocol.frames_observation_text("pixel", [17, 18], [3, 9], (224, 168), video_frames=16) == (
        "Here are images 17-18: video frames 3, 9 (224x168 px)."
    )
    assert protocol.error_observation_text("bad box.") == "Execution error: bad box."


def test_released_question_is_verbatim_and_the_video_one_item():
    question = "<image>\nHow many cups? "
    assert protocol.user_text(question, variant="pixel-reasoner-v1") == (
        question + "\n\n\n\n" + protocol.GUIDELINES["pixel-reasoner-v1"]
    )
    assert protocol.user_text(question, variant="pixel").startswith("<image>\nHow many cups?\n\n")
    as_video = protocol.user_content("Q", 16, is_video=True, variant="pixel-reasoner-v1", video_input="video")
    assert [p["type"] for p in as_video] == ["video", "text"]
    as_frames = protocol.user_content("Q", 2, is_video=True, variant="pixel-reasoner-v1")
    assert as_frames[:2] == [{"type": "text", "text": "Frame 1:"}, {"type": "image"}]
    with pytest.raises(ValueError, match="pixel-reasoner-v1"):
        EpisodeConfig(prompt="pixel", video_input="video")


def _frames(n=16):
    return [Image.new("RGB", (112, 84), (10 * k, 0, 0)) for k in range(n)]


def test_released_video_episode_announces_and_accepts_the_released_numbers():
    episode = VisualEpisode(video=_frames(), prompt="pixel-reasoner-v1")
    select = protocol.tool_call_text("select_frames", {"target_frames": [3, 9]})
    observation = episode.step(select)
    assert observation.numbers == [17, 18]
    assert observation.text.endswith("Numbered 1 to 2):")
    # The released model crops the first selected frame with target_image 2 (1 was the whole video).
    crop = protocol.tool_call_text("crop_image_normalized", {"bbox_2d": [0.1, 0.1, 0.6, 0.6], "target_image": 2})
    observation = episode.step(crop)
    assert observation.ok and episode.entries[-1].parent == 17
    bad = protocol.tool_call_text("crop_image_normalized", {"bbox_2d": [0.1, 0.1, 0.6, 0.6], "target_image": 1})
    observation = episode.step(bad)
    assert not observation.ok and observation.text.startswith("\nExecution error:\ntarget_image must be from 2 to 4")
    assert observation.text.endswith("\n")


def test_pixel_video_episode_numbers_images_after_the_frames():
    episode = VisualEpisode(video=_frames(), prompt="pixel")
    episode.step(protocol.tool_call_text("select_frames", {"target_frames": [3, 9]}))
    observation = episode.step(protocol.tool_call_text("zoom_in", {"bbox_2d": [0.1, 0.1, 0.6, 0.6], "target_image": 2}))
    assert observation.ok and episode.entries[-1].parent == 2  # frame 2 of the video, pxr's fixed numbering
