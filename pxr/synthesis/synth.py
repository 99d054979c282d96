"""Trajectory synthesis (paper §3, Table 2): the paper's template with the ops executed for real, the self-correction
variants, text-only traces, per-turn `trainable` flags.

A trajectory is `[analysis of the whole input] → [op on the reference cue] → [analysis of the returned detail] →
[answer]`; a teacher (`pxr.synthesis.teacher`) writes the two analyses, pxr writes the bridge sentences, the calls and the
answer. Every op runs through `VisualEpisode`, so the observation text and images are exactly those the model
meets in RL, evaluation and the demo. Self-correction variants execute the wrong op for real, follow it with a
reflective sentence, and mark that turn `trainable: false` (the paper masks erroneous ops; the released code's
"last two assistant turns" rule is not copied). A wrong crop is a seed item's decoy where it has some (a tile one row
or column off, in grid scenes), else a random box away from the cue. A trajectory whose correct op does not contain
the cue is rejected. Boxes are written in the model family's convention (`pxr.families`: pixels of the image as
shown for Qwen2.5-VL, 0-1000 for Qwen3-VL), rounded outwards so that the written box still holds the cue.

Tests: tests/test_synth.py.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pxr import families, protocol
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode

IMAGE_VARIANTS = ("single", "wrong_crop", "two_wrong", "overlarge")
VIDEO_VARIANTS = ("single", "wrong_frames")
TEXT_VARIANT = "text_only"

ZOOM_BRIDGES = ("Now I will zoom in to look closer at {cue}.", "Now I will zoom in on {cue} to see it clearly.")
FRAME_BRIDGES = (
    "Now I will select some frames to look closer at {cue}.",
    "Now I will pick the frames that show {cue}.",
)
WRONG_CROP_REFLECTIONS = (
    "The zoomed region does not contain {cue}. I will zoom in again on the right place.",
    "This crop missed {cue}; it shows something else. Let me zoom in on another region.",
)
OVERLARGE_REFLECTIONS = (
    "The region is still too large to make out the detail of {cue}. I will zoom in more tightly.",
    "{cue} is in this crop but still small. Let me zoom in closer.",
)
WRONG_FRAME_REFLECTIONS = (
    "These frames do not show {cue}. I will select other frames.",
    "Nothing relevant appears in these frames; let me look at different ones.",
)


@dataclass(frozen=True)
class SynthConfig:
    """Variant proportions (paper Table 2 defaults) and geometry of the wrong ops."""

    seed: int = 0
    share_single: float = 0.3  # images: one correct zoom
    share_wrong_crop: float = 0.2  # a crop disjoint from the cue first
    share_two_wrong: float = 0.2  # two such crops first
    share_overlarge: float = 0.3  # a crop that contains the cue but is far too large first
    video_share_wrong_frames: float = 0.1  # videos: frames outside the cue window first (else single)
    overlarge_factor: float = 3.5  # side of the over-large box relative to the cue box

    def __post_init__(self):
        shares = (self.share_single, self.share_wrong_crop, self.share_two_wrong, self.share_overlarge)
        if min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"image variant shares must be >= 0 and sum to 1, got {shares}")
        if not 0.0 <= self.video_share_wrong_frames <= 1.0:
            raise ValueError("video_share_wrong_frames must lie in [0, 1]")
        if self.overlarge_factor <= 1.0:
            raise ValueError("overlarge_factor must be > 1")


class SynthRejected(ValueError):
    """The item cannot yield a faithful trajectory (e.g. the crop misses the cue); the reason is counted."""


@dataclass
class SynthTurn:
    role: str  # "assistant" | "observation"
    text: str
    trainable: bool
    images: list[Image.Image] = field(default_factory=list)


@dataclass
class SynthResult:
    variant: str
    turns: list[SynthTurn]
    episode: dict[str, Any]  # the episode record: ops, counts, ending


def _sentence(template: str, cue: str) -> str:
    text = template.format(cue=cue)
    return text[:1].upper() + text[1:]


def item_rng(seed: int, item_id: str, salt: str = "") -> random.Random:
    """A generator fixed by (seed, item id): the same item gets the same variant and boxes on every rerun."""
    digest = hashlib.sha256(f"{seed}:{item_id}:{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choose_variant(item_id: str, *, is_video: bool, needs_op: bool, config: SynthConfig) -> str:
    if not needs_op:
        return TEXT_VARIANT
    u = item_rng(config.seed, item_id, "variant").random()
    if is_video:
        return "wrong_frames" if u < config.video_share_wrong_frames else "single"
    shares = (config.share_single, config.share_wrong_crop, config.share_two_wrong, config.share_overlarge)
    cumulative = 0.0
    for name, share in zip(IMAGE_VARIANTS, shares, strict=True):
        cumulative += share
        if u < cumulative:
            return name
    return IMAGE_VARIANTS[-1]


# ------------------------------------------------------------------------------------------------- geometry


def union_box(boxes: list[list[float]]) -> list[float]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _grown(box, padding):
    return [box[0] - padding, box[1] - padding, box[2] + padding, box[3] + padding]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def wrong_box(
    cues: list[list[float]], rng: random.Random, *, padding: float, avoid=(), tries: int = 200
) -> list[float]:
    """A normalized box the size of the first cue box (at least 0.05 a side) whose padded crop misses every cue box
    (each one, not their union: the objects of a count can be spread over the whole image) and `avoid`."""
    w, h = max(cues[0][2] - cues[0][0], 0.05), max(cues[0][3] - cues[0][1], 0.05)
    for _ in range(tries):
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        box = [x, y, x + w, y + h]
        grown = _grown(box, padding)
        if not any(_overlaps(grown, c) for c in cues) and not any(_overlaps(box, a) for a in avoid):
            return box
    raise SynthRejected("no room for a crop disjoint from the cue")


def overlarge_box(cue: list[float], rng: random.Random, *, factor: float) -> list[float]:
    """A box `factor` times the cue's size that still contains the cue, shifted at random, clamped to the image."""
    w, h = min(1.0, (cue[2] - cue[0]) * factor), min(1.0, (cue[3] - cue[1]) * factor)
    x = rng.uniform(max(0.0, cue[2] - w), min(cue[0], 1.0 - w))
    y = rng.uniform(max(0.0, cue[3] - h), min(cue[1], 1.0 - h))
    return [x, y, x + w, y + h]


def wrong_frames(cue_frames: list[int], n_frames: int, rng: random.Random) -> list[int]:
    outside = [k for k in range(1, n_frames + 1) if k not in cue_frames]
    if not outside:
        raise SynthRejected("no frames outside the cue window")
    return sorted(rng.sample(outside, min(len(cue_frames) or 1, len(outside))))


# ------------------------------------------------------------------------------------------- trajectories


class _Builder:
    """Runs the scripted turns through a real episode and keeps them as trajectory turns."""

    def __init__(self, episode: VisualEpisode):
        self.episode, self.turns = episode, []

    def call(self, text: str, *, trainable: bool):
        self.turns.append(SynthTurn("assistant", text, trainable))
        observation = self.episode.step(text)
        if observation is None or not observation.ok:
            raise SynthRejected(f"a scripted op failed: {observation.text if observation else 'no call'}")
        self.turns.append(SynthTurn("observation", observation.text, False, list(observation.images)))
        return observation

    def answer(self, text: str):
        self.turns.append(SynthTurn("assistant", text, True))
        if self.episode.step(text) is not None or self.episode.ending != "answer":
            raise SynthRejected("the final turn does not read as an answer")


def _zoom_call(box, episode: VisualEpisode, target: int = 1) -> str:
    """A zoom on a [0, 1] box of image `target`, the box written in the model family's convention."""
    written = families.from_normalized(box, episode.entries[target - 1].shown.size, episode.box_family)
    return protocol.tool_call_text("zoom_in", {"bbox_2d": written, "target_image": target})


def decoy_box(decoys: list[list[float]], cues: list[list[float]], rng: random.Random, *, padding: float, avoid=()):
    """One of `decoys` (normalized boxes of plausible wrong places, e.g. the tile one row off) whose padded crop
    misses every cue box and which is not in `avoid`; None when none is left (then `wrong_box` draws one)."""
    usable = [d for d in decoys if not any(_overlaps(_grown(d, padding), c) for c in cues) and d not in avoid]
    return rng.choice(usable) if usable else None


def _normalized(boxes: list[list[float]], size: tuple[int, int]) -> list[float]:
    x1, y1, x2, y2 = union_box(boxes)
    return [x1 / size[0], y1 / size[1], x2 / size[0], y2 / size[1]]


def build_trajectory(
    item,
    inputs: list[Image.Image],
    analysis,
    *,
    variant: str,
    synth_config: SynthConfig,
    episode_config: EpisodeConfig,
) -> SynthResult:
    """One trajectory of `variant` for a seed item (`pxr.data.SeedItem`) whose images (or video frames) are
    `inputs`, with the teacher's `analysis` (`whole`, `local`, `direct`)."""
    rng = item_rng(synth_config.seed, item.id, "ops")
    is_video = bool(item.video)
    episode = VisualEpisode(
        video=inputs if is_video else None,
        images=None if is_video else inputs,
        options=item.options,
        config=episode_config,
    )
    build = _Builder(episode)
    boxed = f"\\boxed{{{item.answer if isinstance(item.answer, str) else item.answer[0]}}}"
    cue_name = item.meta.get("cue_name", "the target")
    if variant == TEXT_VARIANT:
        build.answer(f"{analysis.direct.strip()} {boxed}")
        return SynthResult(variant, build.turns, episode.record())

    if is_video:
        window = list(item.cue_frames or [])
        bridge = _sentence(rng.choice(FRAME_BRIDGES), cue_name)
        lead = f"{analysis.whole.strip()} {bridge}\n"
        if variant == "wrong_frames":
            frames = wrong_frames(window, len(inputs), rng)
            build.call(lead + protocol.tool_call_text("select_frames", {"target_frames": frames}), trainable=False)
            lead = _sentence(rng.choice(WRONG_FRAME_REFLECTIONS), cue_name) + "\n"
        observation = build.call(
            lead + protocol.tool_call_text("select_frames", {"target_frames": window}), trainable=True
        )
        if [episode.entries[n - 1].frame for n in observation.numbers] != window:
            raise SynthRejected("the selected frames are not the cue window")
    else:
        cue = _normalized(item.cue_boxes, inputs[0].size)
        width, height = inputs[0].size
        cues = [[b[0] / width, b[1] / height, b[2] / width, b[3] / height] for b in item.cue_boxes]
        padding = episode_config.zoom_padding
        bridge = _sentence(rng.choice(ZOOM_BRIDGES), cue_name)
        lead = f"{analysis.whole.strip()} {bridge}\n"
        decoys = [[b[0] / width, b[1] / height, b[2] / width, b[3] / height] for b in item.meta.get("decoy_boxes", [])]
        if variant in ("wrong_crop", "two_wrong"):
            first = decoy_box(decoys, cues, rng, padding=padding) or wrong_box(cues, rng, padding=padding)
            build.call(lead + _zoom_call(first, episode), trainable=False)
            reflection = rng.choice(WRONG_CROP_REFLECTIONS)
            lead = _sentence(reflection, cue_name) + "\n"
            if variant == "two_wrong":  # the second reflection is worded differently from the first
                second = decoy_box(decoys, cues, rng, padding=padding, avoid=[first])
                second = second or wrong_box(cues, rng, padding=padding, avoid=[first])
                build.call(lead + _zoom_call(second, episode), trainable=False)
                other = WRONG_CROP_REFLECTIONS[1 - WRONG_CROP_REFLECTIONS.index(reflection)]
                lead = _sentence(other, cue_name) + "\n"
        elif variant == "overlarge":
            build.call(
                lead + _zoom_call(overlarge_box(cue, rng, factor=synth_config.overlarge_factor), episode),
                trainable=False,
            )
            lead = _sentence(rng.choice(OVERLARGE_REFLECTIONS), cue_name) + "\n"
        observation = build.call(lead + _zoom_call(cue, episode), trainable=True)
        crop = episode.entries[observation.numbers[0] - 1].root_box
        if not all(crop[0] <= b[0] and crop[1] <= b[1] and b[2] <= crop[2] and b[3] <= crop[3] for b in item.cue_boxes):
            raise SynthRejected("the crop does not contain the cue")
    build.answer(f"{analysis.local.strip()} {boxed}")
    return SynthResult(variant, build.turns, episode.record())
