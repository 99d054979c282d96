"""Synthetic seed scenes (SPEC §3.1): high-resolution images with small labelled targets, and short videos whose
answer is visible in only a few frames.

The images are built so that the answer cannot be read at the query pixel budget but can be read after `zoom_in`
on the target: a digit a few dozen source pixels tall inside one small shape on a ≥1024 px canvas, with
distractor shapes that share the target's colour or its shape, so the question has to name both. Everything is a
pure function of the seed, and the ground truth (the target's box, the scene graph, the flash frames) is kept with
the pixels so that trajectories can be templated from it and zoom boxes can be scored against it.

New question kinds reuse `textured_background`, `place_boxes` and `draw_object`, and register their builder in
`SCENE_BUILDERS` under the `kind` they write into their scenes.

Tests: tests/test_scenes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
DARK_INK = (20, 20, 20)
LIGHT_INK = (255, 255, 255)
# A triangle is widest near its base, so its digit sits below the box centre (fraction of the box height).
DIGIT_CENTRE_Y = {"triangle": 0.7}


@dataclass
class SceneObject:
    """One labelled shape; `box` and `digit_box` are absolute [x1, y1, x2, y2] source pixels, end-exclusive."""

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
    """An image question with its ground truth. For kind "read", `objects[0]` is the target."""

    image: Image.Image
    question: str
    answer: str
    cue_box: list[int]
    cue_box_normalized: list[float]
    objects: list[SceneObject]
    seed: int
    kind: str = "read"


@dataclass
class VideoScene:
    """A video question with its ground truth: `cue_frames` are 1-based, `digit_box` is in frame pixels."""

    frames: list[Image.Image]
    question: str
    answer: str
    cue_frames: list[int]
    seed: int
    kind: str = "flash"
    digit_box: list[int] = field(default_factory=list)


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
) -> list[list[int]]:
    """`n` square boxes of side `size`, at least `min_gap` apart and `edge_margin` inside the canvas.

    Rejection sampling; raises ValueError when `max_tries` draws are not enough (too many or too large objects).
    """
    lo, hi_x, hi_y = edge_margin, width - edge_margin - size, height - edge_margin - size
    if hi_x < lo or hi_y < lo:
        raise ValueError(f"a {size}px object with a {edge_margin}px margin does not fit in {width}x{height}")
    boxes: list[list[int]] = []
    for _ in range(max_tries):
        x, y = int(rng.integers(lo, hi_x + 1)), int(rng.integers(lo, hi_y + 1))
        if all(
            x >= b[2] + min_gap or b[0] >= x + size + min_gap or y >= b[3] + min_gap or b[1] >= y + size + min_gap
            for b in boxes
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
    """Fill the shape and write its digit centred in it; records the digit's text box on `obj`."""
    fill = COLOURS[obj.colour]
    x1, y1, x2, y2 = obj.box
    inclusive = [x1, y1, x2 - 1, y2 - 1]  # PIL fills the end pixel; boxes here are end-exclusive
    if obj.shape == "circle":
        draw.ellipse(inclusive, fill=fill)
    else:
        draw.polygon(shape_outline(obj.shape, inclusive), fill=fill)
    font = font_for_ink_height(digit_height)
    left, top, right, bottom = font.getbbox(obj.digit)
    centre_x = (x1 + x2) / 2
    centre_y = y1 + DIGIT_CENTRE_Y.get(obj.shape, 0.5) * (y2 - y1)
    origin = (round(centre_x - (left + right) / 2), round(centre_y - (top + bottom) / 2))
    draw.text(origin, obj.digit, font=font, fill=contrast_ink(fill))
    obj.digit_box = [origin[0] + left, origin[1] + top, origin[0] + right, origin[1] + bottom]


def _pick_distractor_kinds(rng: np.random.Generator, target: tuple[str, str], n: int) -> list[tuple[str, str]]:
    """Distinct (colour, shape) pairs other than the target's; the first shares its colour, the second its shape,
    so that neither word alone identifies the target."""
    colour, shape = target
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) != target]
    if n > len(others):
        raise ValueError(f"at most {len(others)} distractors have distinct colour/shape pairs; got {n}")
    same_colour = [p for p in others if p[0] == colour]
    same_shape = [p for p in others if p[1] == shape]
    chosen = [same_colour[rng.integers(len(same_colour))], same_shape[rng.integers(len(same_shape))]][:n]
    rest = [p for p in others if p not in chosen]
    chosen += [rest[i] for i in rng.permutation(len(rest))[: n - len(chosen)]]
    return chosen


def make_zoom_scene(
    seed: int,
    *,
    width: int = 1536,
    height: int = 1024,
    target_size: int = 40,
    n_distractors: int = 7,
    digit_height_frac: float = 0.55,
    min_gap: int = 24,
    edge_margin: int = 32,
    max_placement_tries: int = 5000,
) -> Scene:
    """A "read the small digit" scene: the answer is the digit inside the uniquely described target shape.

    `target_size` is every shape's side in source pixels (all shapes share it, so size gives nothing away) and the
    digit's ink height is `digit_height_frac` of it: with the defaults 22 px on a 1024 px tall image, about 6 px
    once the whole image is shrunk to a typical query budget, which is why zooming is needed.
    """
    rng = np.random.default_rng(seed)
    target_kind = (list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))])
    kinds = [target_kind] + _pick_distractor_kinds(rng, target_kind, n_distractors)
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

    image = textured_background(width, height, seed)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj, digit_height=max(1, round(digit_height_frac * target_size)))

    target = objects[0]
    x1, y1, x2, y2 = target.box
    return Scene(
        image=image,
        question=f"What digit is written inside the {target.name}?",
        answer=target.digit,
        cue_box=list(target.box),
        cue_box_normalized=[x1 / width, y1 / height, x2 / width, y2 / height],
        objects=objects,
        seed=seed,
        kind="read",
    )


def _stripes(width: int, height: int, t: int, *, colours, angle: float, period: float, drift: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (xs * np.cos(angle) + ys * np.sin(angle) + t * drift) % period
    return np.where((phase < period / 2)[:, :, None], np.asarray(colours[0]), np.asarray(colours[1])).astype(np.uint8)


def make_flash_video(
    seed: int,
    *,
    n_frames: int = 16,
    width: int = 448,
    height: int = 336,
    flash_len: int = 2,
    digit_height: int = 96,
    stripe_period_px: float = 48.0,
    drift_px_per_frame: float = 6.0,
    outline_px: int = 3,
) -> VideoScene:
    """Drifting pastel stripes, with a black digit (white outline) visible only in `flash_len` consecutive frames.

    The flash never covers the first or last frame, so a model that looks only at the ends cannot answer.
    """
    if n_frames < flash_len + 2 or flash_len < 1:
        raise ValueError(
            f"need 1 <= flash_len and flash_len + 2 <= n_frames; got flash_len={flash_len}, n_frames={n_frames}"
        )
    rng = np.random.default_rng([seed, 2])
    light = rng.integers(180, 231, size=3)
    # Stripes differ enough to show the motion, and both stay far lighter than the digit's dark ink.
    colours = [tuple(int(v) for v in light), tuple(int(v) for v in light - rng.integers(40, 61, size=3))]
    angle = float(rng.uniform(0, np.pi))
    start = int(rng.integers(1, n_frames - flash_len))  # 0-based; the last flash frame is at most n_frames - 2
    answer = str(rng.integers(0, 10))

    font = font_for_ink_height(digit_height)
    left, top, right, bottom = font.getbbox(answer, stroke_width=outline_px)
    margin = 4
    x = int(rng.integers(margin - left, width - margin - right + 1))
    y = int(rng.integers(margin - top, height - margin - bottom + 1))

    frames = []
    for t in range(n_frames):
        frame = Image.fromarray(
            _stripes(width, height, t, colours=colours, angle=angle, period=stripe_period_px, drift=drift_px_per_frame),
            mode="RGB",
        )
        if start <= t < start + flash_len:
            ImageDraw.Draw(frame).text(
                (x, y), answer, font=font, fill=DARK_INK, stroke_width=outline_px, stroke_fill=LIGHT_INK
            )
        frames.append(frame)
    return VideoScene(
        frames=frames,
        question="Which digit flashes briefly in the video?",
        answer=answer,
        cue_frames=list(range(start + 1, start + flash_len + 1)),
        seed=seed,
        kind="flash",
        digit_box=[x + left, y + top, x + right, y + bottom],
    )


SCENE_BUILDERS: dict[str, Callable[..., Scene | VideoScene]] = {"read": make_zoom_scene, "flash": make_flash_video}


def make_scene(kind: str, seed: int, **options) -> Scene | VideoScene:
    """Build a scene of a registered kind; `options` go to its builder."""
    if kind not in SCENE_BUILDERS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_BUILDERS)}")
    return SCENE_BUILDERS[kind](seed, **options)
