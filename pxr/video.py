"""Video frames in and out (paper §2): uniform frame sampling with decord (PyAV fallback), and H.264 writing.

A video reaches the model as a list of frames sampled uniformly over its whole length; those frames are what
`select_frames` numbers 1..N. `load_video_frames` picks the frame indices

    indices = round(linspace(0, n - 1, num_frames))

over the video's n decoded frames, so the first and last frames are always included and, when n >= num_frames, the
indices are distinct (their spacing is (n - 1) / (num_frames - 1) >= 1). A video with fewer than `num_frames` frames
is returned whole (all n frames, in order) rather than padded with repeats, so no frame number ever points at a
duplicate. `num_frames=1` returns the first frame.

decord is the primary decoder because it seeks to the sampled indices; PyAV (whose wheel bundles FFmpeg, libx264
included) is the fallback where decord is not installed (it has no wheel for every platform) or cannot read a file.
`write_video` uses PyAV only, so tests and the synthetic scene tools can make videos on any machine.

Tests: tests/test_video.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

BACKENDS = ("decord", "pyav")


def sample_indices(total_frames: int, num_frames: int) -> list[int]:
    """Uniformly spread frame indices (see the module docstring); all frames when there are fewer than asked for."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if total_frames <= num_frames:
        return list(range(total_frames))
    return [int(i) for i in np.linspace(0, total_frames - 1, num_frames).round()]


def _read_with_decord(path: str, num_frames: int) -> list[Image.Image]:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0))
    indices = sample_indices(len(reader), num_frames)
    if not indices:
        return []
    batch = reader.get_batch(indices).asnumpy()
    return [Image.fromarray(frame).convert("RGB") for frame in batch]


def _decode_with_pyav(path: str, wanted: set[int]) -> tuple[list[Image.Image], int]:
    """The wanted frames in order, and how many frames the file really decodes to."""
    import av

    frames, count = [], 0
    with av.open(path) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            if count - 1 in wanted:
                frames.append(frame.to_image().convert("RGB"))
    return frames, count


def _read_with_pyav(path: str, num_frames: int) -> list[Image.Image]:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        declared = container.streams.video[0].frames
    # Containers may omit the frame count, or state it wrongly; the decoded count is the truth, at the price of a
    # second pass over the file in those cases only.
    if declared <= 0:
        _, declared = _decode_with_pyav(path, set())
    indices = sample_indices(declared, num_frames)
    frames, decoded = _decode_with_pyav(path, set(indices))
    if len(frames) < len(indices):
        frames, _ = _decode_with_pyav(path, set(sample_indices(decoded, num_frames)))
    return frames


def load_video_frames(path: str | os.PathLike, num_frames: int = 16, *, backend: str = "auto") -> list[Image.Image]:
    """`num_frames` RGB frames sampled uniformly over the whole video at `path` (all frames if it has fewer).

    `backend`: "decord", "pyav", or "auto" (decord, then PyAV when decord is missing or fails). Raises
    FileNotFoundError for a missing file, ImportError when an explicitly requested backend is not installed, and
    ValueError naming the file and the backends tried when no backend can decode it.
    """
    path = os.fspath(path)
    if backend not in (*BACKENDS, "auto"):
        raise ValueError(f"unknown video backend {backend!r}; use one of: auto, {', '.join(BACKENDS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    readers = {"decord": _read_with_decord, "pyav": _read_with_pyav}
    failures = []
    for name in BACKENDS if backend == "auto" else (backend,):
        try:
            frames = readers[name](path, num_frames)
        except ImportError as error:
            if backend != "auto":
                raise ImportError(f"video backend {name!r} is not installed ({error})") from error
            failures.append(f"{name}: not installed")
            continue
        except Exception as error:  # decoders raise their own error types (decord: RuntimeError, PyAV: av.FFmpegError)
            failures.append(f"{name}: {type(error).__name__}: {error}")
            continue
        if frames:
            return frames
        failures.append(f"{name}: no frames decoded")
    raise ValueError(f"could not decode video {path} (tried {'; '.join(failures)})")


def write_video(
    frames: Sequence[Image.Image | np.ndarray],
    path: str | os.PathLike,
    fps: int = 8,
    *,
    codec: str = "libx264",
    crf: int = 18,
) -> str:
    """Encode frames (PIL images or HxWx3 uint8 arrays, all the same size) as an H.264/yuv420p video; returns the path.

    4:2:0 chroma needs even sides, so an odd width or height loses its last column or row. `crf` is x264's quality
    (lower is closer to the input); 18 keeps solid colours within a few levels.
    """
    path = os.fspath(path)
    images = [frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame)) for frame in frames]
    if not images:
        raise ValueError("write_video needs at least one frame")
    width, height = images[0].size
    if any(image.size != (width, height) for image in images):
        raise ValueError(f"all frames must have the size of the first ({width}x{height})")
    even_width, even_height = width - width % 2, height - height % 2
    if even_width < 2 or even_height < 2:
        raise ValueError(f"frames of {width}x{height} are too small to encode")

    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = even_width, even_height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in images:
            rgb = image.convert("RGB").crop((0, 0, even_width, even_height))
            for packet in stream.encode(av.VideoFrame.from_image(rgb)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
