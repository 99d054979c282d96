"""Video I/O (pxr/video.py): uniform sampling with both backends, the fallback, and the errors."""

import colorsys
import sys

import numpy as np
import pytest
from PIL import Image

from pxr.video import load_video_frames, sample_indices, write_video

N_FRAMES = 20
SIZE = (64, 48)
# Hues 18 degrees apart at alternating brightness: neighbours differ by far more than the codec's error.
PALETTE = [
    tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / N_FRAMES, 0.9, 0.95 if i % 2 else 0.6))
    for i in range(N_FRAMES)
]
CODEC_TOLERANCE = 12


def backend_param(name):
    marks = [pytest.mark.skipif(not _has_decord(), reason="decord not installed")] if name == "decord" else []
    return pytest.param(name, marks=marks)


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = [backend_param("decord"), backend_param("pyav")]


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "colours.mp4"
    write_video([Image.new("RGB", SIZE, colour) for colour in PALETTE], path, fps=8)
    return path


def palette_positions(frames):
    """For each frame, the palette entry its mean colour is nearest to, checked to lie within codec tolerance."""
    positions = []
    for frame in frames:
        mean = np.asarray(frame).reshape(-1, 3).mean(axis=0)
        distances = [np.abs(mean - np.asarray(c)).max() for c in PALETTE]
        best = int(np.argmin(distances))
        assert distances[best] < CODEC_TOLERANCE
        positions.append(best)
    return positions


def test_sample_indices_formula():
    assert sample_indices(20, 16) == [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert sample_indices(16, 16) == list(range(16))
    assert sample_indices(5, 16) == [0, 1, 2, 3, 4]
    assert sample_indices(100, 3) == [0, 50, 99]
    assert sample_indices(10, 1) == [0]
    with pytest.raises(ValueError):
        sample_indices(10, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_uniform_sample_in_order(colour_video, backend):
    frames = load_video_frames(colour_video, 16, backend=backend)
    assert len(frames) == 16
    assert all(f.size == SIZE and f.mode == "RGB" for f in frames)
    assert palette_positions(frames) == sample_indices(N_FRAMES, 16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_frames", [N_FRAMES, 50])
def test_short_video_returns_every_frame(colour_video, backend, num_frames):
    frames = load_video_frames(str(colour_video), num_frames, backend=backend)
    assert palette_positions(frames) == list(range(N_FRAMES))


def test_auto_falls_back_to_pyav_without_decord(colour_video, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    frames = load_video_frames(colour_video, 4)
    assert palette_positions(frames) == sample_indices(N_FRAMES, 4)
    with pytest.raises(ImportError, match="decord"):
        load_video_frames(colour_video, 4, backend="decord")


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_missing_file_raises_file_not_found(tmp_path, backend):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video_frames(missing, backend=backend)


def test_garbage_file_raises_value_error_naming_file_and_backends(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    with pytest.raises(ValueError, match="garbage.mp4") as info:
        load_video_frames(garbage)
    assert "pyav" in str(info.value)
    if _has_decord():
        assert "decord" in str(info.value)
    with pytest.raises(ValueError, match="pyav"):
        load_video_frames(garbage, backend="pyav")


def test_unknown_backend_is_rejected(colour_video):
    with pytest.raises(ValueError, match="unknown video backend"):
        load_video_frames(colour_video, backend="opencv")


def test_write_video_crops_odd_sizes_to_even(tmp_path):
    path = write_video([np.full((25, 33, 3), 200, np.uint8)] * 3, tmp_path / "odd.mp4")
    frames = load_video_frames(path, backend="pyav")
    assert len(frames) == 3 and frames[0].size == (32, 24)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        write_video([], tmp_path / "empty.mp4")
    with pytest.raises(ValueError, match="size"):
        write_video([Image.new("RGB", (32, 32)), Image.new("RGB", (64, 32))], tmp_path / "mixed.mp4")
