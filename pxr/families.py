"""Model families and their box conventions (paper App. C.1: `bbox_2d` is [x1, y1, x2, y2] on the image).

How a model writes a box belongs to its family, not to a constant: Qwen2.5-VL grounds in absolute pixels of the
image as it was shown (after the processor's resize, on its 28 px grid: 14 px patches merged 2x2), Qwen3-VL in
relative coordinates from 0 to 1000 (16 px patches merged 2x2: 32 px a visual token). The family comes from the
model's config (`model_type`) or a parameter (`EpisodeConfig.model_family`), and everything that reads or writes a
box goes through here: the episode's box reading, the tool schema's description, synthesis's templated boxes and
the zoom IoU of the metrics.

Boxes whose four values all lie in [0, 1] are read as normalized in every family: they are what pxr's earlier data
and the released checkpoints write, and in pixels or thousandths such a box would be below the smallest crop anyway.

Tests: tests/test_families.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pxr import ops

PIXELS, RELATIVE_1000 = "pixels", "relative-1000"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]  # `config.model_type` values of the family
    patch_factor: int  # pixels a visual token covers along each side (patch size x spatial merge)
    box_convention: str  # PIXELS | RELATIVE_1000
    box_description: str  # what the tool schema tells the model about `bbox_2d`


FAMILIES = {
    family.name: family
    for family in (
        ModelFamily(
            "qwen2.5-vl",
            ("qwen2_5_vl",),
            28,
            PIXELS,
            "The region as [x1, y1, x2, y2] in pixel coordinates of the image as you see it.",
        ),
        ModelFamily(
            "qwen3-vl",
            ("qwen3_vl", "qwen3_vl_moe"),
            32,
            RELATIVE_1000,
            "The region as [x1, y1, x2, y2] in relative coordinates from 0 to 1000: (0, 0) is the top left corner "
            "of the image and (1000, 1000) its bottom right.",
        ),
    )
}
DEFAULT_FAMILY = "qwen2.5-vl"  # the paper's base model


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown model_family {name!r}; choose one of {', '.join(FAMILIES)} (or auto)")
    return FAMILIES[name]


def family_of_model_type(model_type: str) -> str:
    """The family of a model config's `model_type`; a clear error for any other model."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family.name
    raise ValueError(
        f"no box convention is known for model_type {model_type!r}; set model_family to one of {', '.join(FAMILIES)}"
    )


def family_for_patch_factor(patch_factor: int) -> str:
    """The family whose visual tokens cover `patch_factor` px (what `model_family: auto` follows)."""
    for family in FAMILIES.values():
        if family.patch_factor == patch_factor:
            return family.name
    raise ValueError(f"no model family sees images on a {patch_factor} px grid; set model_family")


def to_normalized(
    box, shown_size: tuple[int, int], family: str, *, image: str = "the image"
) -> tuple[float, float, float, float]:
    """A box as the model wrote it (checked by `ops.check_box`) as [0, 1] coordinates of the image it names
    (`image`, e.g. "image 2"), which the model sees at `shown_size`; `ops.OpError` with a message for the model
    when it lies outside."""
    values = ops.check_box(box)
    if all(0.0 <= v <= 1.0 for v in values):
        return values
    if get_family(family).box_convention == RELATIVE_1000:
        if min(values) < 0 or max(values) > 1000:
            raise ops.OpError(
                f"bbox_2d {ops.brief(list(box))} lies outside {image}; give relative coordinates from 0 to 1000."
            )
        return tuple(v / 1000 for v in values)
    w, h = shown_size
    if min(values) < 0 or values[2] > w or values[3] > h:
        raise ops.OpError(
            f"bbox_2d {ops.brief(list(box))} lies outside {image}, which you see at {w}x{h} px; give pixel "
            f"coordinates within 0..{w} and 0..{h}."
        )
    return values[0] / w, values[1] / h, values[2] / w, values[3] / h


def from_normalized(box, shown_size: tuple[int, int], family: str) -> list[int]:
    """A [0, 1] box as the family writes it: whole pixels of the image as shown, or whole thousandths. Rounded
    outwards, so the written box still holds the region."""
    x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in box)
    if get_family(family).box_convention == RELATIVE_1000:
        w = h = 1000
    else:
        w, h = shown_size
    return [math.floor(x1 * w), math.floor(y1 * h), math.ceil(x2 * w), math.ceil(y2 * h)]
