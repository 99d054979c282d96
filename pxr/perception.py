"""The perception base stage of the toy line (SPEC §6): what pretraining gives the paper's 7B model, a tiny model
trained from scratch has to learn first. Single-turn questions with no op: read the digit in a crop around the
target, count the shapes in a crop around them, answer a coarse question about the whole image, and say where the
described target is (its box, in the format of a `zoom_in` call). A warm-up for that last one, `locate`, asks for the
box of a flat square in the target's colour, larger than the target, alone on the scene's background: a tiny model
from scratch does not learn to ground the toy scenes directly but does after it (outputs/LOG.md, 2026-11-24).

Every crop is what `zoom_in` returns for a box around the cue (`VisualEpisode` executes the call, so padding and
budgets are the episode's), and the boxes are jittered wider than the cue, as a model's own zooms are. Examples
are in the text prompt variant (no tools offered): the same chat rendering as the `text` control of evaluation,
so the base model's own no-op accuracy on the zoom-needed items is that control's baseline.

Scenes come from their own suite seeds (`PerceptionConfig.perception_seed`, held-out checks that + 1), disjoint from the
synthesis suites (0, 1, 2 by default): the base model never sees an evaluation item.

Tests: tests/test_perception.py.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field, replace

from PIL import Image, ImageDraw

from pxr import protocol, scenes
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode

TASKS = ("read", "count", "coarse", "ground", "locate")
BOX_TASKS = ("ground", "locate")  # answered with a box, scored by IoU


@dataclass(frozen=True)
class PerceptionConfig:
    n_read: int = 1500  # read the digit in a crop around the target
    n_count: int = 500  # count the named shapes in a crop around them
    n_coarse: int = 300  # a coarse question on the whole image (as in synthesis)
    n_ground: int = 700  # the target's box on the whole image, written as a zoom call writes it
    n_locate: int = 0  # grounding warm-up: the box of a flat square in the target's colour (held out only if > 0)
    locate_grow: float = 2.0  # the warm-up square's side, in target sides
    ground_distractors: int = 7  # other shapes in a ground scene (read scenes' default; 0: the target alone)
    ground_similarity: str = "mixed"  # ground distractors: "low" share neither colour nor shape with the target
    ground_target_size: int = 0  # the target's side in ground and locate scenes, px; 0: target_size (a curriculum
    # starts larger; read scenes keep target_size, so their other shapes still fit the canvas)
    crop_scale_max: float = 2.5  # crop boxes are the cue box grown by a factor in [1, this], placed at random
    box_decimals: int = 2  # as the trajectories write boxes
    perception_seed: int = 100  # suite seed of the training scenes; held-out scenes use seed + 1 (synthesis uses 0-2)
    canvas_width: int = 1536  # the synthesis run's scene knobs
    canvas_height: int = 1024
    target_size: int = 28
    jpeg_quality: int = 95  # scenes go through JPEG as synthesis stores them; 0 keeps them lossless

    def __post_init__(self):
        if self.crop_scale_max < 1:
            raise ValueError(f"crop_scale_max must be >= 1, got {self.crop_scale_max}")
        counts = (self.n_read, self.n_count, self.n_coarse, self.n_ground, self.n_locate, self.ground_distractors)
        if min(counts) < 0 or self.ground_target_size < 0:
            raise ValueError("item counts and ground_target_size must be >= 0")
        if self.locate_grow < 1:
            raise ValueError(f"locate_grow must be >= 1, got {self.locate_grow}")
        if self.ground_similarity not in scenes.DISTRACTOR_SIMILARITIES:
            raise ValueError(
                f"ground_similarity must be one of {', '.join(scenes.DISTRACTOR_SIMILARITIES)}; "
                f"got {self.ground_similarity!r}"
            )

    def counts(self) -> dict[str, int]:
        return {task: getattr(self, f"n_{task}") for task in TASKS}


@dataclass
class PerceptionItem:
    """One question on one image as the model is shown it (already on the budget grid)."""

    id: str
    task: str
    question: str
    answer: str  # a digit, a count, a coarse answer, or the box as "[x1, y1, x2, y2]"
    image: Image.Image
    cue_box: list[float] | None = None  # ground: the target's normalized box
    other_boxes: list[list[float]] = field(default_factory=list)  # ground: the other shapes' normalized boxes

    def response(self) -> str:
        """The assistant turn the base model is trained on."""
        return f"\\boxed{{{self.answer}}}"


def _scene_kind(task: str) -> str:
    return {"read": "read", "ground": "read", "locate": "read", "count": "count", "coarse": "coarse"}[task]


def _as_stored(image: Image.Image, quality: int) -> Image.Image:
    if not quality:
        return image
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def jittered_box(cue: list[float], rng: random.Random, scale_max: float, decimals: int) -> list[float]:
    """A normalized box that contains `cue`, 1 to `scale_max` times its size per side, at a random offset."""
    x1, y1, x2, y2 = cue
    box = []
    for lo, hi in ((x1, x2), (y1, y2)):
        side = min(1.0, (hi - lo) * rng.uniform(1.0, scale_max))
        start = rng.uniform(max(0.0, hi - side), min(lo, 1.0 - side))
        box.append((start, start + side))
    (bx1, bx2), (by1, by2) = box
    # Rounded outwards, so the written box still contains the cue (a box rounded inwards can cut the digit, or fall
    # under zoom_in's minimum crop when there is no padding).
    scale = 10**decimals
    lower = [max(0.0, math.floor(v * scale + 1e-9) / scale) for v in (bx1, by1)]
    upper = [min(1.0, math.ceil(v * scale - 1e-9) / scale) for v in (bx2, by2)]
    return [lower[0], lower[1], upper[0], upper[1]]


def zoom_view(image: Image.Image, box: list[float], episode_config: EpisodeConfig) -> Image.Image:
    """What `zoom_in` on `box` shows the model: the episode executes the call with its padding and crop budget."""
    episode = VisualEpisode(images=[image], config=replace(episode_config, prompt="pixel"))
    observation = episode.step(protocol.tool_call_text("zoom_in", {"bbox_2d": box, "target_image": 1}))
    if observation is None or not observation.ok:
        raise ValueError(f"zoom_in on {box} failed: {observation.text if observation else 'no call'}")
    return episode.shown_images[-1]


def query_view(image: Image.Image, episode_config: EpisodeConfig) -> Image.Image:
    """The whole image as the model is first shown it (the query budget)."""
    return VisualEpisode(images=[image], config=episode_config).shown_images[0]


def make_item(task: str, index: int, suite: int, config: PerceptionConfig, episode_config: EpisodeConfig):
    """Item `index` of `task` from suite `suite`; None when the scene has nothing to point at."""
    knobs = dict(width=config.canvas_width, height=config.canvas_height)
    if task != "coarse":
        knobs["target_size"] = (task in BOX_TASKS and config.ground_target_size) or config.target_size
    if task in BOX_TASKS:  # the warm-up redraws the scene without its objects: render none it would not show
        knobs["n_distractors"] = config.ground_distractors if task == "ground" else 0
        if task == "ground":
            knobs["distractor_similarity"] = config.ground_similarity
    scene = scenes.make_scene(_scene_kind(task), scenes.suite_seed(suite, index), **knobs)
    image = _as_stored(scene.image, config.jpeg_quality)
    rng = random.Random(f"{suite}-{task}-{index}")
    item_id = f"perception-{task}-{suite}-{index}"
    if task == "coarse":
        return PerceptionItem(item_id, task, scene.question, scene.answer, query_view(image, episode_config))
    cue = scene.cue_box_normalized
    if cue is None:
        return None
    if task in BOX_TASKS:
        name = scene.objects[0].name
        if task == "locate":
            square, cue = flat_square(scene, config.locate_grow)
            image, name = _as_stored(square, config.jpeg_quality), f"{scene.objects[0].colour} square"
        box = [round(v, config.box_decimals) for v in cue]
        answer = "[" + ", ".join(f"{v:.{config.box_decimals}f}" for v in box) + "]"
        question = f"Where is the {name}? Give its box as [x1, y1, x2, y2]."
        width, height = scene.image.size
        others = [[o.box[0] / width, o.box[1] / height, o.box[2] / width, o.box[3] / height] for o in scene.objects[1:]]
        return PerceptionItem(
            item_id, task, question, answer, query_view(image, episode_config), cue_box=list(cue),
            other_boxes=others if task == "ground" else [],
        )  # fmt: skip
    box = jittered_box(cue, rng, config.crop_scale_max, config.box_decimals)
    return PerceptionItem(item_id, task, scene.question, scene.answer, zoom_view(image, box, episode_config))


def flat_square(
    scene: scenes.Scene, grow: float, *, fill=None, background=None, with_others: bool = False
) -> tuple[Image.Image, list[float]]:
    """The grounding warm-up of a read scene: its target's box grown `grow` times about its centre (moved inward to
    stay on the canvas), drawn as a flat square in the target's colour (or `fill`, RGB) on the scene's own mottled
    background without any object (or a flat `background`, RGB). With `with_others`, the scene's other shapes are
    drawn the same way in their own colours, under the target. Returns the image and the target square's normalized
    box."""
    width, height = scene.image.size
    if background is None:
        image = scenes.textured_background(width, height, scene.seed)
    else:
        image = Image.new("RGB", (width, height), tuple(background))
    draw = ImageDraw.Draw(image)
    others = scene.objects[1:] if with_others else []
    target = scene.objects[0]
    squares = [(o.colour, [o.box[0] / width, o.box[1] / height, o.box[2] / width, o.box[3] / height]) for o in others]
    for index, (colour, box) in enumerate([*squares, (target.colour, scene.cue_box_normalized)]):
        box = grown_box(box, grow)
        is_target = index == len(squares)
        rgb = tuple(fill) if fill is not None and is_target else scenes.COLOURS[colour]
        draw.rectangle([box[0] * width, box[1] * height, box[2] * width - 1, box[3] * height - 1], fill=rgb)
    return image, box


def grown_box(box: list[float], grow: float) -> list[float]:
    """`box` grown `grow` times about its centre, moved inward to stay in [0, 1]."""
    x1, y1, x2, y2 = box
    half_w, half_h = min(0.5, (x2 - x1) * grow / 2), min(0.5, (y2 - y1) * grow / 2)
    centre_x = min(max((x1 + x2) / 2, half_w), 1 - half_w)
    centre_y = min(max((y1 + y2) / 2, half_h), 1 - half_h)
    return [centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h]


def _make_many(args):
    plan, suite, config, episode_config = args
    return [make_item(task, index, suite, config, episode_config) for task, index in plan]


def make_items(
    config: PerceptionConfig,
    episode_config: EpisodeConfig,
    *,
    held_out: bool = False,
    n: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> list[PerceptionItem]:
    """The training items (or, with `held_out`, `n` per task from the held-out suite), tasks interleaved.
    Rendering a scene takes ~0.1 s; `workers` > 1 renders in that many processes (same items, same order)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    suite = config.perception_seed + (1 if held_out else 0)
    counts = config.counts()
    if n is not None:  # the warm-up task is held out only in runs that train on it
        counts = {task: n for task in TASKS if task != "locate" or config.n_locate}
    plan = [(task, i) for task, count in counts.items() for i in range(count)]
    random.Random(suite).shuffle(plan)
    chunks = [(plan[i : i + 50], suite, config, episode_config) for i in range(0, len(plan), 50)]
    bar = tqdm(total=len(plan), desc="perception items", disable=not progress)
    items: list[PerceptionItem] = []
    with ProcessPoolExecutor(workers) if workers > 1 else _InProcess() as pool:
        for made in pool.map(_make_many, chunks):
            items += [item for item in made if item is not None]
            bar.update(len(made))
    bar.close()
    return items


class _InProcess:
    """`ProcessPoolExecutor`'s map, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, iterable):
        return map(fn, iterable)


def sft_example(item: PerceptionItem) -> dict:
    """The item as an SFT example (`pxr.sft.tokenize_example`): one user turn, one trained answer, no tools."""
    messages = protocol.build_messages(item.question, 1, [("assistant", item.response(), 0)], variant="text")
    return {"id": item.id, "messages": messages, "images": [item.image], "trainable": [True]}


def as_query(item: PerceptionItem):
    from pxr.rollout import Query

    return Query(
        id=item.id,
        question=item.question,
        images=[item.image],
        answer=item.answer,
        meta={"kind": item.task, "cue_box": item.cue_box},
    )


def parse_box(text: str | None) -> list[float] | None:
    """A box written as "[x1, y1, x2, y2]"; None when it is not one."""
    if not text:
        return None
    parts = text.strip().strip("[]").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    return values if len(values) == 4 and values[0] < values[2] and values[1] < values[3] else None


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score(items: list[PerceptionItem], answers: list[str | None]) -> dict[str, float]:
    """Per task: accuracy (read, count, coarse; exact answer) and, for ground and locate, mean IoU with the target
    and the share of boxes that contain its centre; for ground, also the share that contain another shape's centre
    and not the target's (a wrong shape picked, against a box that points at nothing). Also the share answered."""
    per_task: dict[str, list] = {}
    for item, answer in zip(items, answers, strict=True):
        per_task.setdefault(item.task, []).append((item, answer))
    result: dict[str, float] = {}
    for task, pairs in sorted(per_task.items()):
        result[f"{task}_answered"] = sum(a is not None for _, a in pairs) / len(pairs)
        if task in BOX_TASKS:
            boxes = [(item.cue_box, parse_box(a)) for item, a in pairs]
            result[f"{task}_iou"] = sum(iou(c, b) for c, b in boxes if b) / len(boxes)
            hits = [bool(b) and _contains_centre(b, c) for c, b in boxes]
            result[f"{task}_hits_centre"] = sum(hits) / len(boxes)
            if task == "ground":
                result["ground_hits_other"] = sum(
                    not hit and bool(b) and any(_contains_centre(b, o) for o in item.other_boxes)
                    for (item, _), (_, b), hit in zip(pairs, boxes, hits, strict=True)
                ) / len(boxes)
        else:
            result[f"{task}_accuracy"] = sum(a is not None and a.strip() == item.answer for item, a in pairs) / len(
                pairs
            )
    return result


def _contains_centre(box: list[float], target: list[float]) -> bool:
    return box[0] <= (target[0] + target[2]) / 2 <= box[2] and box[1] <= (target[1] + target[3]) / 2 <= box[3]


def chance(items: list[PerceptionItem]) -> dict[str, float]:
    """Accuracy of always giving each task's most common answer in `items` (the floor a reader must beat)."""
    result = {}
    for task in sorted({i.task for i in items} - set(BOX_TASKS)):
        answers = [i.answer for i in items if i.task == task]
        result[f"{task}_majority"] = max(answers.count(a) for a in set(answers)) / len(answers)
    return result
