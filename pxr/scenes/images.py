"""Image scene builders (seed data, paper §3): `read` (the digit inside one small, uniquely described shape),
`count` (how many small shapes of a kind), `coarse` (colour, shape or side of one large shape; no op needed), and
`detail_readability`, the check that a `read` digit is unreadable at the query budget and readable after zooming.

Tests: tests/test_scenes.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pxr import ops
from pxr.config import EpisodeConfig
from pxr.scenes.draw import (
    COLOURS,
    DIGITS,
    SHAPES,
    Scene,
    SceneObject,
    _image_scene,
    _render,
    choices_for,
    pick_distractor_kinds,
    place_boxes,
    random_kind,
)


def make_zoom_scene(
    seed: int,
    *,
    width: int = 1536,
    height: int = 1024,
    target_size: int = 28,
    n_distractors: int = 7,
    distractor_similarity: str = "mixed",
    multiple_choice: bool = False,
    digit_height_frac: float = 0.55,
    min_gap: int = 24,
    edge_margin: int = 32,
    max_placement_tries: int = 5000,
) -> Scene:
    """A "read the small digit" scene: the answer is the digit inside the uniquely described target shape.

    `target_size` is every shape's side in source pixels (all shapes share it, so size gives nothing away) and the
    digit's ink height is `digit_height_frac` of it: with the defaults 15 px on a 1024 px tall image, 5.3 px once the
    image is fitted to the default 448x448-area query budget and 14.4 px in the crop that zooming on the target
    returns (`detail_readability`), which is why zooming is needed. With `multiple_choice` the wrong options are
    digits written on distractors where there are such, then other digits.
    """
    rng = np.random.default_rng(seed)
    target_kind = random_kind(rng)
    kinds = [target_kind] + pick_distractor_kinds(rng, target_kind, n_distractors, distractor_similarity)
    boxes = place_boxes(
        rng,
        len(kinds),
        target_size,
        width,
        height,
        min_gap=min_gap,
        edge_margin=edge_margin,
        max_tries=max_placement_tries,
    )
    digits = rng.integers(0, 10, size=len(kinds))
    objects = [
        SceneObject(shape=s, colour=c, digit=str(d), box=b) for (c, s), b, d in zip(kinds, boxes, digits, strict=True)
    ]
    image = _render(width, height, seed, objects, digit_height=max(1, round(digit_height_frac * target_size)))
    target = objects[0]
    return _image_scene(
        image,
        f"What digit is written inside the {target.name}?",
        target.digit,
        [list(target.box)],
        objects,
        seed,
        "read",
        choices=choices_for(seed, multiple_choice, target.digit, DIGITS, [o.digit for o in objects[1:]]),
    )


def make_count_scene(
    seed: int,
    *,
    width: int = 1536,
    height: int = 1024,
    target_size: int = 28,
    n_distractors: int = 8,
    max_count: int = 6,
    distractor_similarity: str = "mixed",
    multiple_choice: bool = False,
    min_gap: int = 24,
    edge_margin: int = 32,
    max_placement_tries: int = 5000,
) -> Scene:
    """A TallyQA-like count: "How many green triangles are there?" with 0..`max_count` (uniform) small shapes of
    the asked kind among `n_distractors` shapes of other kinds, all `target_size` px as in `read` scenes, so telling
    the kinds apart for sure needs a zoom. The counted objects come first in `objects` and are the `cue_boxes`; with
    none to count, the look-alikes (the asked colour or shape) are: a count of 0 is only sure after they have been
    looked at closely, so every count item needs an op (an answer-0 item that needed none would teach a model to
    answer count questions from the overview).
    """
    if max_count < 0:
        raise ValueError(f"max_count must be >= 0, got {max_count}")
    rng = np.random.default_rng([seed, 5])
    target_kind = random_kind(rng)
    count = int(rng.integers(0, max_count + 1))
    kinds = [target_kind] * count + pick_distractor_kinds(rng, target_kind, n_distractors, distractor_similarity)
    boxes = place_boxes(
        rng,
        len(kinds),
        target_size,
        width,
        height,
        min_gap=min_gap,
        edge_margin=edge_margin,
        max_tries=max_placement_tries,
    )
    objects = [SceneObject(shape=s, colour=c, digit="", box=b) for (c, s), b in zip(kinds, boxes, strict=True)]
    colour, shape = target_kind
    answer = str(count)
    looked_at = objects[:count] or [o for o in objects if o.colour == colour or o.shape == shape] or objects[:1]
    return _image_scene(
        _render(width, height, seed, objects),
        f"How many {colour} {shape}s are there?",
        answer,
        [list(o.box) for o in looked_at],
        objects,
        seed,
        "count",
        choices=choices_for(
            seed,
            multiple_choice,
            answer,
            [str(v) for v in range(max(max_count, 3) + 1)],
            [str(count - 1), str(count + 1)],
        ),
    )


COARSE_QUESTIONS: tuple[str, ...] = ("colour", "shape", "position")
QUADRANTS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")


def make_coarse_scene(
    seed: int,
    *,
    width: int = 1536,
    height: int = 1024,
    target_size: int | None = None,
    n_distractors: int = 7,
    distractor_similarity: str = "mixed",
    multiple_choice: bool = False,
    question_type: str | None = None,
    distractor_size: int = 28,
    min_gap: int = 24,
    edge_margin: int = 32,
    max_placement_tries: int = 5000,
) -> Scene:
    """A question answerable without any op (`needs_op` False): one large shape, `target_size` px (default 30 % of
    the canvas height, at least 25 %), lying wholly in one quadrant, among small distractors.

    `question_type` (default: drawn from the seed) is "colour" ("Which colour is the large shape?" → "blue"),
    "shape" ("What shape is the large object?" → "circle") or "position" ("Is the large shape on the left or the
    right?" → "left"; with `multiple_choice`, "In which part of the image is the large shape?" over the four
    quadrants, "top left" ...). Answers are lowercase words.
    """
    size = round(0.3 * height) if target_size is None else target_size
    if not 0.25 * height <= size <= min(width, height) / 2 - edge_margin:
        raise ValueError(
            f"the large shape's target_size must lie in [{0.25 * height:g}, {min(width, height) / 2 - edge_margin:g}] "
            f"px (at least a quarter of the canvas height, and inside one quadrant); got {size}"
        )
    if question_type is not None and question_type not in COARSE_QUESTIONS:
        raise ValueError(f"question_type must be one of {', '.join(COARSE_QUESTIONS)}; got {question_type!r}")
    rng = np.random.default_rng([seed, 6])
    colour, shape = target_kind = random_kind(rng)
    right, bottom = int(rng.integers(2)), int(rng.integers(2))
    x_lo = width - (width // 2) if right else edge_margin  # a right-half box starts at or after the middle
    y_lo = height - (height // 2) if bottom else edge_margin
    x_hi = width - edge_margin - size if right else width // 2 - size
    y_hi = height - edge_margin - size if bottom else height // 2 - size
    x, y = int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))
    large = SceneObject(shape=shape, colour=colour, digit="", box=[x, y, x + size, y + size])
    kinds = pick_distractor_kinds(rng, target_kind, n_distractors, distractor_similarity)
    boxes = place_boxes(
        rng,
        len(kinds),
        distractor_size,
        width,
        height,
        min_gap=min_gap,
        edge_margin=edge_margin,
        max_tries=max_placement_tries,
        occupied=[large.box],
    )
    objects = [large] + [
        SceneObject(shape=s, colour=c, digit="", box=b) for (c, s), b in zip(kinds, boxes, strict=True)
    ]
    asked = question_type or COARSE_QUESTIONS[rng.integers(len(COARSE_QUESTIONS))]
    side = "right" if right else "left"
    if asked == "position" and multiple_choice:
        question, answer, candidates, preferred = (
            "In which part of the image is the large shape?",
            f"{('top', 'bottom')[bottom]} {side}",
            QUADRANTS,
            [],
        )
    else:
        question, answer, candidates, preferred = {
            "colour": ("Which colour is the large shape?", colour, list(COLOURS), [c for c, _ in kinds]),
            "shape": ("What shape is the large object?", shape, list(SHAPES), [s for _, s in kinds]),
            "position": ("Is the large shape on the left or the right?", side, [], []),
        }[asked]
    return _image_scene(
        _render(width, height, seed, objects),
        question,
        answer,
        [list(large.box)],
        objects,
        seed,
        "coarse",
        choices=choices_for(seed, multiple_choice, answer, candidates, preferred),
        needs_op=False,
    )


# Kinds whose answer is the digit on objects[0], read through a zoom on the cue box.
DIGIT_KINDS: tuple[str, ...] = ("read", "tile_digit")


@dataclass(frozen=True)
class DetailReadability:
    """How tall a read scene's digit is, in pixels of ink height: in the source, as the model sees the whole image
    at the query budget, and in the crop that `zoom_in` on the cue box returns at the crop budget."""

    source_px: int
    query_px: float
    crop_px: float
    query_size: tuple[int, int]  # the query image as shown (budget-fitted)
    crop_box: tuple[int, int, int, int]  # the padded source box zooming on the cue box crops
    crop_size: tuple[int, int]  # that crop as shown (budget-fitted)

    @property
    def zoom_gain(self) -> float:
        return self.crop_px / self.query_px


def detail_readability(
    scene: Scene,
    image_max_pixels: int = EpisodeConfig.image_max_pixels,
    crop_max_pixels: int = EpisodeConfig.crop_max_pixels,
    padding: float = EpisodeConfig.zoom_padding,
    *,
    image_min_pixels: int = EpisodeConfig.image_min_pixels,
    crop_min_pixels: int = EpisodeConfig.crop_min_pixels,
    factor: int = ops.QWEN25_PATCH_FACTOR,
) -> DetailReadability:
    """The check that a read (or tile_digit) scene's digit is unreadable at the query budget and readable after zooming.

    Scales the digit's source ink height by the resize the model's input goes through (`ops.budget_size`): the
    whole image into the query budget, and the crop of the cue box (`ops.padded_crop_box` with `padding`, as
    `zoom_in` cuts it) into the crop budget. Defaults are `EpisodeConfig`'s.
    """
    digit_box = scene.objects[0].digit_box if scene.objects else []
    if scene.kind not in DIGIT_KINDS or not digit_box or scene.cue_box_normalized is None:
        raise ValueError(
            f"detail_readability needs a scene whose answer is a digit ({', '.join(DIGIT_KINDS)}); got kind {scene.kind!r}"
        )
    source_px = digit_box[3] - digit_box[1]
    width, height = scene.image.size
    query_size = ops.budget_size(width, height, min_pixels=image_min_pixels, max_pixels=image_max_pixels, factor=factor)
    crop_box = ops.padded_crop_box(scene.image.size, scene.cue_box_normalized, padding=padding)
    crop_w, crop_h = crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]
    crop_size = ops.budget_size(crop_w, crop_h, min_pixels=crop_min_pixels, max_pixels=crop_max_pixels, factor=factor)
    return DetailReadability(
        source_px=source_px,
        query_px=source_px * query_size[1] / height,
        crop_px=source_px * crop_size[1] / crop_h,
        query_size=query_size,
        crop_box=crop_box,
        crop_size=crop_size,
    )
