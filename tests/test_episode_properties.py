"""Property tests: whatever the model writes, `VisualEpisode.step` returns None or a well-formed Observation and
never raises; malformed calls become `Execution error:` observations, never internal errors."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pxr import ops
from pxr.episode import Observation, VisualEpisode
from pxr.protocol import tool_call_text

IMAGE = Image.new("RGB", (640, 420), (200, 180, 160))
FRAMES = [Image.new("RGB", (96, 64), (k * 12, 0, 0)) for k in range(16)]
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
numbers = st.integers(-5, 2000) | st.floats(-2, 1500, allow_nan=False) | st.sampled_from([0, 1, 0.0, 1.0, 0.5])
op_names = st.sampled_from(["zoom_in", "select_frames", "crop_image_normalized", "crop_image", "zoom", "", "ZOOM_IN"])
arguments = st.fixed_dictionaries(
    {},
    optional={
        "bbox_2d": st.lists(numbers, min_size=0, max_size=6) | json_values,
        "target_image": numbers | json_values,
        "target_frames": st.lists(numbers, max_size=10) | json_values,
        "extra": json_values,
    },
)


def check(obs, episode, n_before):
    assert obs is None or isinstance(obs, Observation)
    if obs is None:
        return
    assert isinstance(obs.ok, bool) and isinstance(obs.text, str) and obs.text
    assert "internal error" not in obs.text, obs.text
    if obs.ok:
        assert obs.images and all(isinstance(im, Image.Image) for im in obs.images)
        assert obs.numbers == list(range(n_before + 1, n_before + 1 + len(obs.images)))
        assert all(f"{n}" in obs.text for n in (obs.numbers[0], obs.numbers[-1]))
    else:
        assert obs.text.startswith("Execution error: ") and obs.images == [] and obs.numbers == []
        assert len(episode.entries) == n_before
    assert len(episode.entries) == n_before + len(obs.images)


def fresh(video=False):
    return VisualEpisode(video=FRAMES) if video else VisualEpisode(images=[IMAGE])


@pytest.mark.slow
@SETTINGS
@given(text=st.text(max_size=300), video=st.booleans())
def test_arbitrary_text_never_raises(text, video):
    episode = fresh(video)
    check(episode.step(text), episode, 1 if not video else 16)


@pytest.mark.slow
@SETTINGS
@given(text=st.text(max_size=200), video=st.booleans())
def test_arbitrary_text_inside_tool_call_tags_is_an_error_observation(text, video):
    episode = fresh(video)
    check(episode.step(f"<tool_call>{text}</tool_call>"), episode, 1 if not video else 16)


@pytest.mark.slow
@SETTINGS
@given(name=op_names, args=arguments, video=st.booleans(), prefix=st.text(max_size=20))
def test_generated_calls_never_raise(name, args, video, prefix):
    episode = fresh(video)
    body = json.dumps({"name": name, "arguments": args})
    check(episode.step(prefix + f"<tool_call>{body}</tool_call>"), episode, 1 if not video else 16)


VALID_CALLS = [
    tool_call_text("zoom_in", {"bbox_2d": [0.2, 0.3, 0.6, 0.7], "target_image": 1}),
    tool_call_text("zoom_in", {"bbox_2d": [10, 20, 300, 200]}),
    tool_call_text("select_frames", {"target_frames": [2, 5, 9]}),
]


@st.composite
def mutated_call(draw):
    text = draw(st.sampled_from(VALID_CALLS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(list('{}[]",:0123456789.-eE ') + ["null", "true", "<", "/", "\\"]))
        if kind == "insert":
            text = text[:i] + char + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + char + text[i + 1 :]
    return text


@pytest.mark.slow
@SETTINGS
@given(text=mutated_call(), video=st.booleans())
def test_mutated_valid_calls_never_raise(text, video):
    episode = fresh(video)
    check(episode.step(text), episode, 1 if not video else 16)


@settings(max_examples=300, deadline=None)
@given(
    x1=st.floats(0, 1),
    y1=st.floats(0, 1),
    w=st.floats(0.05, 1),
    h=st.floats(0.05, 1),
    padding=st.sampled_from([0.0, 0.1, 0.25]),
)
@pytest.mark.slow
def test_valid_normalized_zooms_crop_exactly_the_padded_box(x1, y1, w, h, padding):
    box = [x1, y1, min(1.0, x1 + w), min(1.0, y1 + h)]
    if not (box[0] < box[2] and box[1] < box[3]):
        return
    episode = VisualEpisode(images=[IMAGE], zoom_padding=padding)
    obs = episode.step(tool_call_text("zoom_in", {"bbox_2d": box}))
    left, top, right, bottom = ops.padded_crop_box(IMAGE.size, box, padding=padding)
    if right - left < 28 or bottom - top < 28:
        assert not obs.ok and "too small" in obs.text
        return
    assert obs.ok and episode.entries[1].root_box == (left, top, right, bottom)
    assert left <= box[0] * 640 + 1e-6 and right >= box[2] * 640 - 1e-6  # the box is inside the crop


@settings(max_examples=200, deadline=None)
@given(
    turns=st.lists(st.sampled_from(VALID_CALLS + ["\\boxed{4}", "thinking", "<tool_call>{</tool_call>"]), max_size=12)
)
@pytest.mark.slow
def test_record_counts_stay_consistent_over_any_sequence_of_turns(turns):
    episode = VisualEpisode(images=[IMAGE], max_ops=3, max_images=5)
    for turn in turns:
        episode.step(turn)
    record = episode.record()
    assert record["ops_requested"] == record["ops_executed"] + record["ops_failed"]
    assert record["ops_executed"] <= 3 and len(episode.entries) <= 5
    assert len(episode.entries) == 1 + record["ops_executed"]
    json.dumps(record)
