"""Synthetic seed scenes (SPEC §3.1): high-resolution images with small labelled targets, and short videos whose
answer is visible in only a few frames.

Image kinds, each a builder in `SCENE_BUILDERS` under the `kind` it writes into its scenes:
- `read` (`make_zoom_scene`): the digit inside the uniquely described small shape; unreadable at the query pixel
  budget, readable after `zoom_in` on the target (`detail_readability` measures both).
- `count` (`make_count_scene`): how many small shapes of a named colour and shape there are (TallyQA-like).
- `coarse` (`make_coarse_scene`): the colour, shape or side of one large shape; answerable without any op
  (`needs_op` False), so that adaptive op use can be learned and measured.
The video kinds (`flash`, `colour_change`) live in `pxr/scene_videos.py` and register themselves here.

Every builder is a pure function of its seed and keyword knobs: canvas `width`/`height`, `target_size`,
`n_distractors`, `distractor_similarity` and `multiple_choice` (4 options, V*-like: `answer` is the gold letter and
`answer_text` its text). `make_suite` builds n scenes of a kind from one suite seed. The ground truth (cue boxes, the
scene graph, cue frames) is kept with the pixels so that trajectories can be templated from it and zoom boxes can be
scored against it.

New question kinds reuse `textured_background`, `place_boxes`, `draw_object`, `pick_distractor_kinds` and
`multiple_choice_options`, and register their builder in `SCENE_BUILDERS` under the `kind` they write.

Tests: tests/test_scenes.py, tests/test_scene_videos.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pxr import ops
from pxr.config import EpisodeConfig
from pxr.protocol import OPTION_LETTERS

# Hues far enough apart that a name is never ambiguous, and none close to the light-grey background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 150, 44),
    "blue": (31, 90, 220),
    "orange": (250, 135, 20),
    "purple": (128, 50, 170),
    "yellow": (236, 200, 22),
    "pink": (236, 100, 170),
    "brown": (130, 80, 40),
    "teal": (0, 140, 140),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "hexagon")
DIGITS: tuple[str, ...] = tuple("0123456789")
DARK_INK = (20, 20, 20)
LIGHT_INK = (255, 255, 255)
# A triangle is widest near its base, so its digit sits below the box centre (fraction of the box height).
DIGIT_CENTRE_Y = {"triangle": 0.7}
# "high": every distractor shares the target's colour or its shape; "low": neither; "mixed": one of each, then any.
DISTRACTOR_SIMILARITIES: tuple[str, ...] = ("low", "mixed", "high")
N_OPTIONS = 4
# Random streams per seed, so that one part never shifts another: the read layout uses default_rng(seed), the
# background [seed, 1], the flash video [seed, 2], multiple-choice options [seed, 3] (asking multiple choice never
# changes the pixels), the colour-change video [seed, 4], the count layout [seed, 5], the coarse layout [seed, 6]
# (so that kinds built from one seed share only the background).
OPTIONS_STREAM = 3
# Suite scene i of suite seed s has scene seed s * SUITE_STRIDE + i: one-to-one, so suites never share a seed.
SUITE_STRIDE = 2**32


@dataclass
class SceneObject:
    """One labelled shape; `box` and `digit_box` are absolute [x1, y1, x2, y2] source pixels, end-exclusive.

    `digit` is "" for shapes drawn without a digit (count and coarse scenes)."""

    shape: str
    colour: str
    digit: str
    box: list[int]
    digit_box: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """An image question with its ground truth.

    `cue_boxes` are all reference boxes (source pixels); `cue_box` is their union and `cue_box_normalized` the union
    in [0, 1] (both None when there is nothing to point at, e.g. a count of zero). For kind "read" `objects[0]` is
    the target, for "count" the counted objects come first, for "coarse" `objects[0]` is the large shape. With
    `options` (multiple choice) `answer` is the gold letter and `answer_text` the option's text; otherwise both are
    the answer. `needs_op` is False for questions answerable at the query budget without any op.
    """

    image: Image.Image
    question: str
    answer: str
    cue_box: list[int] | None
    cue_box_normalized: list[float] | None
    objects: list[SceneObject]
    seed: int
    kind: str = "read"
    options: list[str] | None = None
    answer_text: str = ""
    needs_op: bool = True
    cue_boxes: list[list[int]] = field(default_factory=list)

    def __post_init__(self):
        # Callers written before these fields existed pass only the answer and the one cue box.
        if not self.answer_text:
            self.answer_text = self.answer
        if not self.cue_boxes and self.cue_box is not None:
            self.cue_boxes = [list(self.cue_box)]


@dataclass
class VideoScene:
    """A video question with its ground truth: `cue_frames` are 1-based; `digit_box` (flash) and `cue_box` (where
    the answer shows in the cue frames) are in frame pixels. `options`/`answer_text` as for `Scene`."""

    frames: list[Image.Image]
    question: str
    answer: str
    cue_frames: list[int]
    seed: int
    kind: str = "flash"
    digit_box: list[int] = field(default_factory=list)
    options: list[str] | None = None
    answer_text: str = ""
    needs_op: bool = True
    cue_box: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.answer_text:
            self.answer_text = self.answer


def contrast_ink(rgb: tuple[int, int, int], *, luminance_threshold: float = 150.0) -> tuple[int, int, int]:
    """Dark ink on light fills, white ink on dark fills (ITU-R 601 luma)."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return DARK_INK if luma > luminance_threshold else LIGHT_INK


@lru_cache(maxsize=64)
def font_for_ink_height(ink_height: int) -> ImageFont.FreeTypeFont:
    """The smallest bundled-font size whose digits are at least `ink_height` pixels tall (glyph ink, not em size)."""
    size = max(1, ink_height)
    while True:
        font = ImageFont.load_default(size=size)
        _, top, _, bottom = font.getbbox("0")
        if bottom - top >= ink_height:
            return font
        size += 1


def textured_background(
    width: int,
    height: int,
    seed: int,
    *,
    base_rgb=(212, 208, 198),
    blotch_amplitude=10.0,
    grain_amplitude=3.0,
    blotch_cell_px=64,
    level_range=(150, 235),
) -> Image.Image:
    """A light, mildly mottled canvas: smooth low-frequency blotches plus fine grain.

    Levels stay inside `level_range`, well above dark ink and below white ink, so a digit never blends in.
    """
    rng = np.random.default_rng([seed, 1])  # own stream: changing the objects never changes the background
    coarse = rng.normal(size=(height // blotch_cell_px + 2, width // blotch_cell_px + 2)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))
    grain = rng.normal(size=(height, width)).astype(np.float32)
    shade = blotch_amplitude * blotches + grain_amplitude * grain
    pixels = np.asarray(base_rgb, np.float32)[None, None, :] + shade[:, :, None]
    return Image.fromarray(np.clip(pixels, *level_range).astype(np.uint8), mode="RGB")


def place_boxes(
    rng: np.random.Generator,
    n: int,
    size: int,
    width: int,
    height: int,
    *,
    min_gap: int,
    edge_margin: int,
    max_tries: int,
    occupied: Sequence[list[int]] = (),
) -> list[list[int]]:
    """`n` square boxes of side `size`, at least `min_gap` apart (and from the `occupied` boxes already on the
    canvas) and `edge_margin` inside the canvas.

    Rejection sampling; raises ValueError when `max_tries` draws are not enough (too many or too large objects).
    """
    if n == 0:
        return []
    lo, hi_x, hi_y = edge_margin, width - edge_margin - size, height - edge_margin - size
    if hi_x < lo or hi_y < lo:
        raise ValueError(f"a {size}px object with a {edge_margin}px margin does not fit in {width}x{height}")
    boxes: list[list[int]] = []
    for _ in range(max_tries):
        x, y = int(rng.integers(lo, hi_x + 1)), int(rng.integers(lo, hi_y + 1))
        if all(
            x >= b[2] + min_gap or b[0] >= x + size + min_gap or y >= b[3] + min_gap or b[1] >= y + size + min_gap
            for b in [*occupied, *boxes]
        ):
            boxes.append([x, y, x + size, y + size])
            if len(boxes) == n:
                return boxes
    raise ValueError(
        f"could not place {n} non-overlapping {size}px objects in {width}x{height} within {max_tries} "
        "tries; use fewer distractors, a smaller target_size or a larger image"
    )


def shape_outline(shape: str, box: list[int]) -> list[tuple[float, float]]:
    """Polygon vertices of a shape inscribed in `box` (circles are drawn as ellipses instead)."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if shape == "square":
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    if shape == "triangle":
        return [(cx, y1), (x2, y2), (x1, y2)]
    if shape == "diamond":
        return [(cx, y1), (x2, cy), (cx, y2), (x1, cy)]
    if shape == "hexagon":
        angles = np.deg2rad(np.arange(0, 360, 60))
        return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in angles]
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, *, digit_height: int) -> None:
    """Fill the shape and write its digit (if any) centred in it; records the digit's text box on `obj`."""
    fill = COLOURS[obj.colour]
    x1, y1, x2, y2 = obj.box
    inclusive = [x1, y1, x2 - 1, y2 - 1]  # PIL fills the end pixel; boxes here are end-exclusive
    if obj.shape == "circle":
        draw.ellipse(inclusive, fill=fill)
    else:
        draw.polygon(shape_outline(obj.shape, inclusive), fill=fill)
    if not obj.digit:
        return
    font = font_for_ink_height(digit_height)
    left, top, right, bottom = font.getbbox(obj.digit)
    centre_x = (x1 + x2) / 2
    centre_y = y1 + DIGIT_CENTRE_Y.get(obj.shape, 0.5) * (y2 - y1)
    origin = (round(centre_x - (left + right) / 2), round(centre_y - (top + bottom) / 2))
    draw.text(origin, obj.digit, font=font, fill=contrast_ink(fill))
    obj.digit_box = [origin[0] + left, origin[1] + top, origin[0] + right, origin[1] + bottom]


def random_kind(rng: np.random.Generator) -> tuple[str, str]:
    """A (colour, shape) pair drawn from `rng`."""
    return list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))]


def pick_distractor_kinds(
    rng: np.random.Generator, target: tuple[str, str], n: int, similarity: str = "mixed"
) -> list[tuple[str, str]]:
    """`n` distinct (colour, shape) pairs other than the target's.

    `similarity` "high": each shares the target's colour or its shape; "low": each shares neither; "mixed": any
    pair. Except for "low" the first shares the colour and the second the shape, so that neither word alone
    identifies the target.
    """
    if similarity not in DISTRACTOR_SIMILARITIES:
        raise ValueError(
            f"distractor_similarity must be one of {', '.join(DISTRACTOR_SIMILARITIES)}; got {similarity!r}"
        )
    colour, shape = target
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) != target]
    same_colour = [p for p in others if p[0] == colour]
    same_shape = [p for p in others if p[1] == shape]
    pool = {
        "low": [p for p in others if p[0] != colour and p[1] != shape],
        "mixed": others,
        "high": same_colour + same_shape,
    }[similarity]
    if n > len(pool):
        raise ValueError(
            f"at most {len(pool)} distractors have distinct colour/shape pairs at similarity {similarity!r}; got {n}"
        )
    chosen = []
    if similarity != "low":
        chosen = [same_colour[rng.integers(len(same_colour))], same_shape[rng.integers(len(same_shape))]][:n]
    rest = [p for p in pool if p not in chosen]
    chosen += [rest[i] for i in rng.permutation(len(rest))[: n - len(chosen)]]
    return chosen


def multiple_choice_options(
    rng: np.random.Generator, answer: str, candidates: Sequence[str], preferred: Sequence[str] = ()
) -> tuple[list[str], str]:
    """Four options, `answer` among them, and the gold letter.

    The three wrong options come first from `preferred` (plausible ones, such as a digit written on a distractor),
    then from `candidates`, each group in a random order; the four are then shuffled.
    """
    plausible = [p for p in dict.fromkeys(preferred) if p != answer]
    other = [c for c in dict.fromkeys(candidates) if c != answer and c not in plausible]
    wrong = [plausible[i] for i in rng.permutation(len(plausible))] + [other[i] for i in rng.permutation(len(other))]
    if len(wrong) < N_OPTIONS - 1:
        raise ValueError(f"need {N_OPTIONS - 1} wrong options besides {answer!r}; only {wrong} are available")
    options = [answer, *wrong[: N_OPTIONS - 1]]
    options = [options[i] for i in rng.permutation(N_OPTIONS)]
    return options, OPTION_LETTERS[options.index(answer)]


def choices_for(
    seed: int, multiple_choice: bool, answer: str, candidates: Sequence[str], preferred: Sequence[str] = ()
) -> tuple[list[str], str] | None:
    """`multiple_choice_options` on the seed's own options stream (so the pixels never depend on it), or None."""
    if not multiple_choice:
        return None
    return multiple_choice_options(np.random.default_rng([seed, OPTIONS_STREAM]), answer, candidates, preferred)


def union_box(boxes: Sequence[Sequence[int]]) -> list[int] | None:
    """The smallest box holding every box; None for no boxes."""
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _render(width: int, height: int, seed: int, objects: list[SceneObject], *, digit_height: int = 0) -> Image.Image:
    image = textured_background(width, height, seed)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj, digit_height=digit_height)
    return image


def _image_scene(
    image: Image.Image,
    question: str,
    answer_text: str,
    cue_boxes: list[list[int]],
    objects: list[SceneObject],
    seed: int,
    kind: str,
    *,
    choices: tuple[list[str], str] | None,
    needs_op: bool = True,
) -> Scene:
    width, height = image.size
    box = union_box(cue_boxes)
    options, answer = choices if choices else (None, answer_text)
    return Scene(
        image=image,
        question=question,
        answer=answer,
        cue_box=box,
        cue_box_normalized=None if box is None else [box[0] / width, box[1] / height, box[2] / width, box[3] / height],
        objects=objects,
        seed=seed,
        kind=kind,
        options=options,
        answer_text=answer_text,
        needs_op=needs_op,
        cue_boxes=[list(b) for b in cue_boxes],
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
    the kinds apart for sure needs a zoom. The counted objects come first in `objects` and are the `cue_boxes`.
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
    return _image_scene(
        _render(width, height, seed, objects),
        f"How many {colour} {shape}s are there?",
        answer,
        [list(o.box) for o in objects[:count]],
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
    """The check that a read scene's digit is unreadable at the query budget and readable after zooming.

    Scales the digit's source ink height by the resize the model's input goes through (`ops.budget_size`): the
    whole image into the query budget, and the crop of the cue box (`ops.padded_crop_box` with `padding`, as
    `zoom_in` cuts it) into the crop budget. Defaults are `EpisodeConfig`'s.
    """
    digit_box = scene.objects[0].digit_box if scene.objects else []
    if scene.kind != "read" or not digit_box or scene.cue_box_normalized is None:
        raise ValueError(f"detail_readability needs a 'read' scene with a digit; got kind {scene.kind!r}")
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


# The video kinds are added by pxr/scene_videos.py (imported at the end of this module).
SCENE_BUILDERS: dict[str, Callable[..., Scene | VideoScene]] = {
    "read": make_zoom_scene,
    "count": make_count_scene,
    "coarse": make_coarse_scene,
}


def make_scene(kind: str, seed: int, **options) -> Scene | VideoScene:
    """Build a scene of a registered kind; `options` go to its builder."""
    if kind not in SCENE_BUILDERS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_BUILDERS)}")
    return SCENE_BUILDERS[kind](seed, **options)


def suite_seed(seed: int, index: int) -> int:
    """The scene seed of scene `index` of suite `seed`: seed * 2**32 + index.

    One-to-one for 0 <= index < 2**32, so suites built from different seeds (training vs held-out) never share a
    scene seed; suite 0 holds the plain seeds 0..n-1.
    """
    if seed < 0 or not 0 <= index < SUITE_STRIDE:
        raise ValueError(f"need seed >= 0 and 0 <= index < 2**32; got seed={seed}, index={index}")
    return seed * SUITE_STRIDE + index


def make_suite(kind: str, n: int, seed: int, **knobs) -> list[Scene | VideoScene]:
    """`n` scenes of `kind`, scene i built from `suite_seed(seed, i)` with the same `knobs`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [make_scene(kind, suite_seed(seed, i), **knobs) for i in range(n)]


# The video builders build on this module and register themselves in SCENE_BUILDERS when imported; importing them
# last lets either module be imported first without a circular-import failure.
from pxr import scene_videos  # noqa: E402

VIDEO_BUILDER_NAMES = ("make_flash_video", "make_colour_change_video")


def __getattr__(name: str):
    # `pxr.scenes.make_flash_video` keeps working (PEP 562): looked up on use, once both modules are loaded.
    if name in VIDEO_BUILDER_NAMES:
        return getattr(scene_videos, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
