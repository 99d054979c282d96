"""The perception base stage of the toy line (outputs/LOG.md, 2026-11-24 and 2026-12-04): what pretraining gives the
paper's 7B model, a tiny model trained from scratch has to learn first. Single-turn questions with no op:
- `read`: the digit in a crop around the target, cut as `zoom_in` cuts it (the op path's evidence);
- `peek`: the same question on the whole image at the query budget (the text path: how much of the digit the
  overview gives away is the learning trap's knob, the query budget; with the toy's 168x112 it is close to nothing);
- `coarse`: a question answerable from the whole image (the tile's colour);
- `count`: the shapes in a crop around them (named-object scenes only).

`scene_family` picks the scenes: "grid" (the toy line's main suite: tiles addressed by position words,
`pxr.scenes.grid`) or "named" (the older scenes whose target is named by colour and shape, `pxr.scenes.images`).

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
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from PIL import Image

from pxr import protocol, scenes
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode
from pxr.scenes import grid as scene_grid

TASKS = ("read", "peek", "coarse", "count")
SCENE_FAMILIES = ("grid", "named")
# The scene kind each task draws, per family (count has no grid form: the main line dropped it).
SCENE_KINDS = {
    "grid": {"read": "tile_digit", "peek": "tile_digit", "coarse": "tile_colour"},
    "named": {"read": "read", "peek": "read", "coarse": "coarse", "count": "count"},
}
CROP_TASKS = ("read", "count")  # shown a crop around the cue; the others see the whole image


@dataclass(frozen=True)
class PerceptionConfig:
    n_read: int = 1500  # read the digit in a crop around the target
    n_peek: int = 0  # the same question on the whole image (the text path)
    n_coarse: int = 300  # a coarse question on the whole image (as in synthesis)
    n_count: int = 0  # count the named shapes in a crop around them (named scenes only)
    scene_family: str = "grid"  # grid (tiles addressed by position words) or named (targets named by colour and shape)
    crop_scale_max: float = 2.5  # crop boxes are the cue box grown by a factor in [1, this], placed at random
    box_decimals: int = 2  # as the trajectories write boxes
    perception_seed: int = 100  # suite seed of the training scenes; held-out scenes use seed + 1 (synthesis uses 0-2)
    canvas_width: int = 1500  # the synthesis run's scene knobs
    canvas_height: int = 1000
    target_size: int = 30  # the tiles' (or small shapes') side, px
    items_per_scene: int = 1  # grid: questions about this many different tiles of one rendered scene (rendering a
    # 1500x1000 scene takes ~0.1 s, cutting a crop ~1 ms: 12,000 crops from 500 scenes instead of 12,000 scenes)
    jpeg_quality: int = 95  # scenes go through JPEG as synthesis stores them; 0 keeps them lossless

    def __post_init__(self):
        if self.crop_scale_max < 1:
            raise ValueError(f"crop_scale_max must be >= 1, got {self.crop_scale_max}")
        if min(self.counts().values()) < 0:
            raise ValueError("item counts must be >= 0")
        if not 1 <= self.items_per_scene <= 24 or (self.items_per_scene > 1 and self.scene_family != "grid"):
            raise ValueError(
                f"items_per_scene must lie in [1, 24] (more than 1 for grid scenes only); got {self.items_per_scene}"
            )
        if self.scene_family not in SCENE_FAMILIES:
            raise ValueError(f"scene_family must be one of {', '.join(SCENE_FAMILIES)}; got {self.scene_family!r}")
        missing = [t for t, n in self.counts().items() if n and t not in SCENE_KINDS[self.scene_family]]
        if missing:
            raise ValueError(f"{self.scene_family} scenes have no {', '.join(missing)} items; set n_{missing[0]}: 0")

    def counts(self) -> dict[str, int]:
        return {task: getattr(self, f"n_{task}") for task in TASKS}


@dataclass
class PerceptionItem:
    """One question on one image as the model is shown it (already on the budget grid)."""

    id: str
    task: str
    question: str
    answer: str  # a digit, a count or a coarse answer
    image: Image.Image

    def response(self) -> str:
        """The assistant turn the base model is trained on."""
        return f"\\boxed{{{self.answer}}}"


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
    """Item `index` of `task` from suite `suite`; None when the scene has nothing to point at. Grid items
    `index` of one task share a scene per `items_per_scene`, each asking about another tile."""
    kind = SCENE_KINDS[config.scene_family][task]
    knobs = dict(width=config.canvas_width, height=config.canvas_height)
    if kind != "coarse":  # the named coarse scene has one large shape of its own size
        knobs["tile_size" if config.scene_family == "grid" else "target_size"] = config.target_size
    per_scene = config.items_per_scene
    scene, image = _stored_scene(kind, scenes.suite_seed(suite, index // per_scene), config.jpeg_quality, **knobs)
    if per_scene > 1:
        order = random.Random(f"{suite}-{kind}-{index // per_scene}").sample(scene.objects, per_scene)
        scene = scene_grid.ask_tile(scene, *scene_grid.tile_position(scene, order[index % per_scene]))
    item_id = f"perception-{task}-{suite}-{index}"
    if task not in CROP_TASKS:
        return PerceptionItem(item_id, task, scene.question, scene.answer, query_view(image, episode_config))
    if scene.cue_box_normalized is None:
        return None
    rng = random.Random(f"{suite}-{task}-{index}")
    box = jittered_box(scene.cue_box_normalized, rng, config.crop_scale_max, config.box_decimals)
    return PerceptionItem(item_id, task, scene.question, scene.answer, zoom_view(image, box, episode_config))


@lru_cache(maxsize=4)
def _stored_scene(kind: str, seed: int, quality: int, **knobs):
    """A scene and its image as synthesis stores it; consecutive items of one scene render it once."""
    scene = scenes.make_scene(kind, seed, **knobs)
    return scene, _as_stored(scene.image, quality)


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
    if n is not None:  # every task the scene family has, trained on or not (peek is the text path's baseline)
        counts = {task: n for task in TASKS if task in SCENE_KINDS[config.scene_family]}
    plan = [(task, i) for task, count in counts.items() for i in range(count)]
    # In order, so that the items of one scene fall in one task (rendered once); shuffled afterwards.
    chunks = [(plan[i : i + 48], suite, config, episode_config) for i in range(0, len(plan), 48)]
    bar = tqdm(total=len(plan), desc="perception items", disable=not progress)
    items: list[PerceptionItem] = []
    with ProcessPoolExecutor(workers) if workers > 1 else _InProcess() as pool:
        for made in pool.map(_make_many, chunks):
            items += [item for item in made if item is not None]
            bar.update(len(made))
    bar.close()
    random.Random(suite).shuffle(items)  # tasks interleaved
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
    """The item as an SFT example (`pxr.training.sft.tokenize_example`): one user turn, one trained answer, no tools."""
    messages = protocol.build_messages(item.question, 1, [("assistant", item.response(), 0)], variant="text")
    return {"id": item.id, "messages": messages, "images": [item.image], "trainable": [True]}


def as_query(item: PerceptionItem):
    from pxr.rollout import Query

    return Query(
        id=item.id,
        question=item.question,
        images=[item.image],
        answer=item.answer,
        meta={"kind": item.task},
    )


def score(items: list[PerceptionItem], answers: list[str | None]) -> dict[str, float]:
    """Per task: accuracy (exact answer) and the share answered."""
    per_task: dict[str, list] = {}
    for item, answer in zip(items, answers, strict=True):
        per_task.setdefault(item.task, []).append((item, answer))
    result: dict[str, float] = {}
    for task, pairs in sorted(per_task.items()):
        result[f"{task}_answered"] = sum(a is not None for _, a in pairs) / len(pairs)
        result[f"{task}_accuracy"] = sum(a is not None and a.strip() == item.answer for item, a in pairs) / len(pairs)
    return result


def chance(items: list[PerceptionItem]) -> dict[str, float]:
    """Accuracy of always giving each task's most common answer in `items` (the floor a reader must beat)."""
    result = {}
    for task in sorted({i.task for i in items}):
        answers = [i.answer for i in items if i.task == task]
        result[f"{task}_majority"] = max(answers.count(a) for a in set(answers)) / len(answers)
    return result


def first_of_each_task(items: list[PerceptionItem], tasks=TASKS) -> list[PerceptionItem]:
    """The first item of each of `tasks` that `items` hold, in `tasks`' order (the examples a notebook shows)."""
    return [first for task in tasks if (first := next((i for i in items if i.task == task), None)) is not None]


def tokenizer_corpus(items: list[PerceptionItem], synth_dir: str = "", *, seed: int = 0) -> tuple[list[str], str]:
    """The text a fresh base model's tokenizer is trained on, and a line saying what it holds: a generic corpus,
    the items' questions and, with `synth_dir` (a notebook-10 run), its trajectories' turns and questions, so that SFT
    on that run continues with the same tokenizer."""
    from pxr import data, models
    from pxr.synthesis import synth_run

    corpus = models.default_corpus(seed) + [i.question for i in items]
    if not synth_dir:
        return corpus, f"tokenizer corpus: {len(corpus)} texts (generic, and the items' questions)"
    trajectories = Path(synth_dir) / synth_run.TRAJECTORIES
    if not trajectories.exists():
        raise FileNotFoundError(f"no trajectories in {synth_dir}: run `pxr run 10_synthesize_data <run>` first")
    records, read_report = data.read_jsonl(trajectories, data.TrajectoryRecord)
    corpus += [t.text for r in records for t in r.turns] + [r.question for r in records]
    return corpus, f"tokenizer corpus: {len(corpus)} texts, with the trajectories of {read_report}"


def base_model(out_dir, *, init_model: str = "", corpus: list[str], seed: int = 0, size: str = "tiny") -> Path:
    """The model this stage trains: `init_model`, an earlier notebook-15 model that goes on training (a curriculum:
    a base that learned one skill learns the next, with its own tokenizer), or else a fresh Qwen2.5-VL of `size`
    built under `out_dir`, its tokenizer trained on `corpus` (`tokenizer_corpus`)."""
    from pxr import models

    if init_model:
        return Path(init_model)
    return models.build_tiny_model(out_dir, seed=seed, size=size, corpus=corpus)


def answer(model, processor, items: list[PerceptionItem], episode_config: EpisodeConfig, *, max_new_tokens: int,
           batch_size: int = 16) -> list[str | None]:  # fmt: skip
    """Each item answered greedily in the `text` prompt (no tools offered, as the base is trained): the final
    answers, None where the model gave none."""
    from pxr.rollout import RolloutConfig, generate_trajectories

    model.eval()
    rollouts = generate_trajectories(
        model, processor, [as_query(i) for i in items], episode_config=replace(episode_config, prompt="text"),
        rollout_config=RolloutConfig(max_new_tokens=max_new_tokens, batch_size=batch_size),
    )  # fmt: skip
    return [t.episode.answer for t in rollouts]


def run_metrics(scores: dict[str, float], trainer, train_result, *, n_items: int) -> dict:
    """The figures the stage records (metrics.json): the held-out scores (`score` and `chance`) as `heldout_*`, the
    first and last training loss, the steps, the training time and the number of training items."""
    from pxr.training.sft import loss_history

    losses = loss_history(trainer)
    return {
        **{f"heldout_{k}": v for k, v in scores.items()},
        "final_loss": losses[-1][1] if losses else None,
        "first_loss": losses[0][1] if losses else None,
        "steps": trainer.state.global_step,
        "train_seconds": train_result.metrics.get("train_runtime"),
        "items": n_items,
    }
