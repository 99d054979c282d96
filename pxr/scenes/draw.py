"""Drawing primitives and record types of the synthetic scenes (seed data as in paper §3, made here): the colour and
shape tables, `Scene`, `VideoScene`, `SceneObject`, the textured background, non-overlapping placement, shapes with
digits, distractor and multiple-choice choices. The builders are in `pxr.scenes.images` and `pxr.scenes.videos`;
`pxr.scenes` is the entry point (registry and suites).

Tests: tests/test_scenes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
