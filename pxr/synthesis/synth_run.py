"""The synthesis run behind notebook 10 (paper §3): synthetic seed items written to disk, teacher analyses,
trajectories appended one by one, RL queries and a held-out split exported.

Resumable: each trajectory is one JSONL line written after its images and flushed to disk, so a run killed at any
point and started again skips the items it finished, rewrites the images of an item it was in the middle of, and
cuts a half-written last line (`pxr.data.cut_torn_tail`); every item ends up exactly once. Items that fail (teacher
failure, missing or corrupt input, a crop that misses the cue) are counted by reason, with the first failure's
detail, and retried on the next run; `read_trajectories` turns a run where nothing was written into an error that
says what failed and what to change, instead of a missing file.

Tests: tests/test_synth_run.py.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from pxr import data, protocol, scenes
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode
from pxr.records import EVAL_QUERIES, RL_QUERIES, TRAJECTORIES  # noqa: F401 (notebooks read them here too)
from pxr.scenes import grid as scene_grid
from pxr.synthesis import synth
from pxr.synthesis.teacher import AnalysisRequest, TeacherFailure, TemplateTeacher


class SynthesisFailed(RuntimeError):
    """No trajectory could be made; the message says what failed and which parameter to change."""


# What to change when every item fails for one reason (the reason's prefix -> advice).
ADVICE = {
    "teacher: request failed": (
        "the teacher endpoint did not answer: check that the server at teacher_base_url is up, that "
        "OPENAI_API_KEY holds a valid key, and raise teacher_timeout_seconds for a slow server"
    ),
    "teacher: cap reached": "the spending cap is spent: raise teacher_max_requests",
    "teacher: malformed": "the teacher's replies are not the JSON asked for: try another teacher_model",
    "unreadable input": "the seed images are damaged: delete the run's seeds/ folder and run again",
}


@dataclass
class SynthReport:
    asked: int = 0  # items this run was given
    written: int = 0  # trajectories written by this run
    skipped_done: int = 0  # items finished by an earlier run
    failed: Counter = field(default_factory=Counter)  # reason -> items
    examples: dict = field(default_factory=dict)  # reason -> the first failure's detail
    variants: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)

    @property
    def failed_items(self) -> int:
        return sum(self.failed.values())

    def fail(self, reason: str, detail: str = "") -> None:
        self.failed[reason] += 1
        self.examples.setdefault(reason, detail)

    def failures(self) -> str:
        """One line per reason: count, the first detail, and what to change."""
        lines = []
        for reason, n in self.failed.most_common():
            advice = next((a for key, a in ADVICE.items() if reason.startswith(key)), "")
            detail = f" (first: {self.examples[reason]})" if self.examples.get(reason) else ""
            lines.append(f"  {reason}: {n} of {self.asked}{detail}" + (f"\n    -> {advice}" if advice else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        failed = ", ".join(f"{k}: {v}" for k, v in self.failed.most_common()) or "none"
        return (
            f"{self.written} trajectories written, {self.skipped_done} already done, failed: {failed}; "
            f"variants {dict(self.variants)}"
        )


def _position(box, size) -> str:
    cx, cy = (box[0] + box[2]) / 2 / size[0], (box[1] + box[3]) / 2 / size[1]
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return (
        "centre"
        if vertical == "middle" and horizontal == "centre"
        else f"{vertical} {horizontal}".replace("middle ", "")
    )


def _scene_facts(scene) -> tuple[str, dict]:
    """The cue's name and the ground truth the template teacher writes from."""
    if isinstance(scene, scenes.VideoScene):
        first, last = scene.cue_frames[0], scene.cue_frames[-1]
        cue = f"frames {first}-{last}" if last > first else f"frame {first}"
        return cue, {"background": "drifting stripes", "target": cue}
    target = scene.objects[0]
    if scene.kind in scenes.GRID_KINDS:  # named by its place; listing the other tiles would say nothing useful
        name = scene_grid.tile_name(*scene_grid.tile_position(scene))
        facts = {"target": name}
    else:
        name = f"the {target.name}" + ("s" if scene.kind == "count" else "")
        facts = {"target": name, "objects": [o.name for o in scene.objects[:6]]}
    if scene.cue_box is not None:
        facts["position"] = _position(scene.cue_box, scene.image.size)
    if scene.kind in scenes.DIGIT_KINDS:
        facts["digit"] = target.digit
    return name, facts


def _item_fields(scene, item_id: str) -> dict:
    """A seed item's fields other than its media: question, answer, the cue's name and the teacher's facts."""
    cue_name, facts = _scene_facts(scene)
    fields = dict(
        id=item_id,
        question=scene.question,
        answer=scene.answer,
        kind=scene.kind,
        options=scene.options,
        needs_op=scene.needs_op,
        source="synthetic",
        meta={"cue_name": cue_name, "facts": facts, "answer_text": scene.answer_text, "scene_seed": scene.seed},
    )
    if scene.kind in scenes.GRID_KINDS:  # the plausible wrong zooms: a tile one row or column off
        fields["meta"]["decoy_boxes"] = scene_grid.neighbour_boxes(scene)
    return fields


def teacher_trajectory(
    scene,
    item_id: str,
    *,
    episode_config: EpisodeConfig,
    synth_config: synth.SynthConfig | None = None,
    teacher=None,
    variant: str | None = None,
) -> synth.SynthResult:
    """The trajectory synthesis writes for an in-memory scene (image or video): the teacher's analyses (default the
    offline template teacher), the ops executed through the episode, the variant drawn from the item id unless
    given. What the demo replays when there is no trained model. Raises `synth.SynthRejected` or ValueError (the
    teacher failed) with the reason."""
    synth_config = synth_config or synth.SynthConfig()
    fields = _item_fields(scene, item_id)
    if isinstance(scene, scenes.VideoScene):
        inputs = list(scene.frames)
        item = data.SeedItem(**fields, images=None, video=[f"frame-{k}" for k in range(1, len(inputs) + 1)],
                             cue_boxes=None, cue_frames=scene.cue_frames)  # fmt: skip
    else:
        inputs = [scene.image]
        item = data.SeedItem(**fields, images=["image-1"], video=None, cue_boxes=scene.cue_boxes or None,
                             cue_frames=None)  # fmt: skip
    needs_op = item.needs_op and bool(item.cue_boxes or item.cue_frames)
    variant = variant or synth.choose_variant(
        item.id, is_video=bool(item.video), needs_op=needs_op, config=synth_config
    )
    mode = "direct" if variant == synth.TEXT_VARIANT else "op"
    (analysis,) = (teacher or TemplateTeacher(seed=synth_config.seed)).analyse([_request(item, inputs, mode, [])])
    if isinstance(analysis, TeacherFailure):
        raise ValueError(f"the teacher failed on {item_id}: {analysis.reason}")
    return synth.build_trajectory(
        item, inputs, analysis, variant=variant, synth_config=synth_config, episode_config=episode_config
    )


def _save(image: Image.Image, path: Path, quality: int) -> None:
    """JPEG at high quality: a 1536x1024 scene is ~0.4 MB instead of ~1.3 MB as PNG, and 50x faster to write."""
    if not path.exists():
        tmp = path.with_suffix(".tmp.jpg")
        image.save(tmp, "JPEG", quality=quality)
        os.replace(tmp, path)


def _seed_item(kind: str, index: int, seed: int, out_dir: Path, split: str, jpeg_quality: int, knobs: dict):
    """Scene `index` of the suite rendered, its image or frames saved under `out_dir/seeds/<split>/`."""
    scene = scenes.make_scene(kind, scenes.suite_seed(seed, index), **knobs)
    folder = out_dir / "seeds" / split
    item_id = f"{split}-{kind}-{index:05d}"
    common = _item_fields(scene, item_id)
    if isinstance(scene, scenes.VideoScene):
        frames = []
        for k, frame in enumerate(scene.frames, start=1):
            path = folder / f"{item_id}-f{k:02d}.jpg"
            _save(frame, path, jpeg_quality)
            frames.append(str(path.relative_to(out_dir)))
        return data.SeedItem(**common, images=None, video=frames, cue_boxes=None, cue_frames=scene.cue_frames)
    path = folder / f"{item_id}.jpg"
    _save(scene.image, path, jpeg_quality)
    return data.SeedItem(
        **common,
        images=[str(path.relative_to(out_dir))],
        video=None,
        cue_boxes=scene.cue_boxes or None,
        cue_frames=None,
    )


def _seed_items(args) -> list[data.SeedItem]:
    """A slice of one suite (a process-pool task of `write_seed_items`)."""
    kind, indices, seed, out_dir, split, jpeg_quality, knobs = args
    return [_seed_item(kind, i, seed, Path(out_dir), split, jpeg_quality, knobs) for i in indices]


def write_seed_items(
    kind: str, n: int, seed: int, out_dir: Path, *, split: str, jpeg_quality: int = 95, workers: int = 1, **knobs
) -> list[data.SeedItem]:
    """`n` synthetic scenes of `kind` (suite `seed`) saved under `out_dir/seeds/<split>/`, as seed items whose
    paths are relative to `out_dir`. The items are listed in `seeds/<split>-<kind>.jsonl`; a resumed run reads them
    from there instead of rendering the scenes again (scene i is the same for any n).

    Rendering and saving a scene takes ~0.1 s (most of a template-teacher synthesis run); `workers` > 1 does it in
    that many processes, with the same items in the same order."""
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(out_dir) / "seeds" / split
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder.parent / f"{split}-{kind}.jsonl"
    if listing.exists():
        known, _ = data.read_jsonl(listing, data.SeedItem)
        if len(known) >= n and all(
            (Path(out_dir) / p).exists() for item in known[:n] for p in item.video or item.images
        ):
            return known[:n]
    # Scenes per task: about four tasks per process, at most 25. Fixed 25-scene tasks left 16 processes 7 tasks for
    # 160 scenes (4.9x, not more; benchmarks/README.md).
    size = max(1, min(25, -(-n // (4 * max(1, workers)))))
    tasks = [
        (kind, range(i, min(i + size, n)), seed, str(out_dir), split, jpeg_quality, knobs) for i in range(0, n, size)
    ]
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(workers, len(tasks))) as pool:
            items = [item for chunk in pool.map(_seed_items, tasks) for item in chunk]
    else:
        items = [item for task in tasks for item in _seed_items(task)]
    data.write_jsonl(listing, items)
    return items


def _inputs(item: data.SeedItem, root: Path) -> list[Image.Image]:
    paths = item.video if item.video else item.images
    loaded = []
    for rel in paths:
        with Image.open(data.resolve_under(root, rel)) as image:
            loaded.append(image.convert("RGB"))
    return loaded


def preview_images(item: data.SeedItem, inputs, episode_config: EpisodeConfig) -> list[Image.Image]:
    """What a teacher that sees pixels is shown: the input as the model sees it, then what the correct op returns."""
    episode = VisualEpisode(
        images=None if item.video else inputs, video=inputs if item.video else None, config=episode_config
    )
    if item.video:
        call = protocol.tool_call_text("select_frames", {"target_frames": item.cue_frames})
    else:
        box = synth.union_box(item.cue_boxes)
        width, height = inputs[0].size
        call = protocol.tool_call_text(
            "zoom_in", {"bbox_2d": [box[0] / width, box[1] / height, box[2] / width, box[3] / height]}
        )
    observation = episode.step(call)
    returned = observation.images if observation is not None and observation.ok else []
    return episode.shown_images[: episode.n_inputs] + returned


def _request(item: data.SeedItem, inputs, mode: str, preview) -> AnalysisRequest:
    answer = item.meta.get("answer_text") or (item.answer if isinstance(item.answer, str) else item.answer[0])
    return AnalysisRequest(
        item_id=item.id,
        mode=mode,
        question=item.question,
        answer=str(answer),
        options=item.options,
        is_video=bool(item.video),
        cue=item.meta.get("cue_name", ""),
        facts=item.meta.get("facts", {}),
        images=preview,
        n_input_images=len(inputs),
    )


def synthesize(
    items: list[data.SeedItem],
    out_dir,
    teacher,
    *,
    synth_config: synth.SynthConfig,
    episode_config: EpisodeConfig,
    chunk_size: int = 32,
    jpeg_quality: int = 95,
    progress: bool = True,
) -> SynthReport:
    """Trajectories for `items` appended to `out_dir/sft_trajectories.jsonl`; finished items are skipped."""
    out = Path(out_dir)
    path = out / TRAJECTORIES
    data.cut_torn_tail(path)  # a run killed mid-line: the item it was writing is redone, its torn text removed
    done, _ = data.read_jsonl(path, data.TrajectoryRecord) if path.exists() else ([], None)
    done_ids = {r.seed_id for r in done}
    report = SynthReport(asked=len(items), skipped_done=sum(item.id in done_ids for item in items))
    pending = [item for item in items if item.id not in done_ids]
    bar = tqdm(total=len(pending), desc="trajectories", disable=not progress)
    for start in range(0, len(pending), chunk_size):
        chunk, requests, loaded = pending[start : start + chunk_size], [], []
        for item in chunk:
            try:
                inputs = _inputs(item, out)
            except (OSError, ValueError) as err:
                report.fail(f"unreadable input ({type(err).__name__})", str(err))
                continue
            variant = synth.choose_variant(
                item.id,
                is_video=bool(item.video),
                needs_op=item.needs_op and bool(item.cue_boxes or item.cue_frames),
                config=synth_config,
            )
            mode = "direct" if variant == synth.TEXT_VARIANT else "op"
            sees_pixels = mode == "op" and not isinstance(teacher, TemplateTeacher)
            preview = preview_images(item, inputs, episode_config) if sees_pixels else []
            requests.append(_request(item, inputs, mode, preview))
            loaded.append((item, inputs, variant))
        for (item, inputs, variant), analysis in zip(loaded, teacher.analyse(requests, progress=False), strict=True):
            bar.update(1)
            if isinstance(analysis, TeacherFailure):
                report.fail(f"teacher: {analysis.reason}", analysis.detail)
                continue
            try:
                result = synth.build_trajectory(
                    item, inputs, analysis, variant=variant, synth_config=synth_config, episode_config=episode_config
                )
            except synth.SynthRejected as err:
                report.fail(f"rejected: {err}")
                continue
            data.append_jsonl(path, _record(item, result, out, jpeg_quality).to_dict())
            report.written += 1
            report.variants[result.variant] += 1
            report.kinds[item.kind] += 1
        bar.update(len(chunk) - len(loaded))
    bar.close()
    return report


def read_trajectories(out_dir, report: SynthReport | None = None) -> tuple[list, data.ReadReport]:
    """The run's trajectories and the read report; when there are none, `SynthesisFailed` with what failed (from
    `report`, this run's) and what to change, instead of a FileNotFoundError on the missing file."""
    path = Path(out_dir) / TRAJECTORIES
    records, read_report = data.read_jsonl(path, data.TrajectoryRecord) if path.exists() else ([], None)
    if records:
        return records, read_report
    if report is not None and report.failed:
        why = f"every one of the {report.asked} items failed:\n{report.failures()}"
    elif report is not None and not report.asked:
        why = "no items were asked for: set n_read, n_count, n_coarse, n_flash or n_colour_change above 0"
    else:
        why = f"{path} holds no readable trajectory" + (f" ({read_report})" if read_report else "")
    raise SynthesisFailed(f"no trajectories were written to {Path(out_dir)}: {why}\nFix it and run the stage again.")


def _record(item: data.SeedItem, result: synth.SynthResult, out: Path, jpeg_quality: int) -> data.TrajectoryRecord:
    """The trajectory with its observation images saved under `images/<item id>/` (written before the line)."""
    folder = out / "images" / item.id
    folder.mkdir(parents=True, exist_ok=True)
    turns, number = [], len(item.video or item.images)
    for turn in result.turns:
        paths = []
        for image in turn.images:
            number += 1
            file = folder / f"{number}.jpg"
            _save(image, file, jpeg_quality)
            paths.append(str(file.relative_to(out)))
        turns.append(data.TrajectoryTurn(role=turn.role, text=turn.text, images=paths, trainable=turn.trainable))
    return data.TrajectoryRecord(
        id=f"{item.id}-{result.variant}",
        seed_id=item.id,
        variant=result.variant,
        prompt="pixel",
        question=item.question,
        options=item.options,
        answer=item.answer,
        inputs=list(item.video or item.images),
        is_video=bool(item.video),
        turns=turns,
        meta={"kind": item.kind, "episode": result.episode},
    )


def export_queries(items: list[data.SeedItem], path) -> int:
    """RL queries (or held-out evaluation queries) from seed items, as JSONL of `pxr.data.RLQuery`."""
    data.write_jsonl(path, [data.rl_query_from_seed(item) for item in items])
    return len(items)


def make_teacher(
    name: str,
    *,
    seed: int = 0,
    model: str = "",
    base_url: str = "",
    concurrency: int = 16,
    max_requests: int | None = None,
    timeout_seconds: float = 60.0,
    cache_dir=None,
):
    """The teacher a notebook names: "template" (offline) or "openai" (any OpenAI-compatible endpoint; its key is
    read from OPENAI_API_KEY when the requests are made, never stored)."""
    if name == "template":
        return TemplateTeacher(seed=seed)
    if name == "openai":
        from pxr.synthesis.teacher import OpenAITeacher

        return OpenAITeacher(
            model=model,
            base_url=base_url or None,
            concurrency=concurrency,
            max_requests=max_requests,
            timeout_seconds=timeout_seconds,
            cache_dir=cache_dir,
        )
    raise ValueError(f"unknown teacher {name!r}; choose template or openai")


def variant_counts(records: list[data.TrajectoryRecord]) -> list[dict]:
    """Rows of kind x variant counts, for the notebook's table."""
    counts = Counter((r.meta.get("kind", "?"), r.variant) for r in records)
    variants = sorted({v for _, v in counts})
    return [
        {"kind": kind, **{v: counts[(kind, v)] for v in variants}, "total": sum(counts[(kind, v)] for v in variants)}
        for kind in sorted({k for k, _ in counts})
    ]


def claim_output_dir(out_dir, settings: dict) -> None:
    """Resuming is only safe with the same settings: the first run records them in `settings.json`; a later run
    with different ones (other seed, canvas, teacher, proportions, budgets) is refused instead of mixing data."""
    import json

    path = Path(out_dir) / "settings.json"
    current = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise ValueError(
                f"{out_dir} holds data synthesized with other settings ({', '.join(changed)}); "
                "use another run name or delete the folder to start over"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


# The kinds notebook 10 synthesizes, in the order their items are written.
SUITE_KINDS = ("tile_digit", "tile_colour", "read", "count", "coarse", "flash", "colour_change")
# Self-correction variants: a wrong op first, then the right one (paper §3, Table 2).
SELF_CORRECTION_VARIANTS = tuple(v for v in synth.IMAGE_VARIANTS + synth.VIDEO_VARIANTS if v != "single")


@dataclass(frozen=True)
class SuiteConfig:
    """The seed items of a synthesis run (notebook 10's parameters of the same names): SFT items per kind, RL queries
    and held-out items per kind, the suite seed (RL queries use seed + 1, held-out items seed + 2: disjoint scenes),
    the scene knobs and the JPEG quality the scenes are stored at."""

    seed: int = 0
    n_tile_digit: int = 0
    n_tile_colour: int = 0
    n_read: int = 0
    n_count: int = 0
    n_coarse: int = 0
    n_flash: int = 0
    n_colour_change: int = 0
    n_rl_per_kind: int = 0
    n_eval_per_kind: int = 0
    canvas_width: int = 1536
    canvas_height: int = 1024
    target_size: int = 28  # the small shapes' side (read, count)
    tile_size: int = 30  # the grid's tiles' side (tile_digit, tile_colour)
    jpeg_quality: int = 95

    def counts(self) -> dict[str, int]:
        """SFT items per kind, for the kinds that have any (a kind with none has no RL or held-out items either)."""
        return {kind: n for kind in SUITE_KINDS if (n := getattr(self, f"n_{kind}"))}

    def knobs(self, kind: str) -> dict:
        """The scene knobs of `kind`: the canvas and the tile or small-shape size (coarse has one large shape of its
        own size; videos take none)."""
        canvas = {"width": self.canvas_width, "height": self.canvas_height}
        if kind in scenes.GRID_KINDS:
            return {**canvas, "tile_size": self.tile_size}
        if kind in ("read", "count"):
            return {**canvas, "target_size": self.target_size}
        return canvas if kind == "coarse" else {}


@dataclass
class Suites:
    """The seed items of one run, by split."""

    sft: list[data.SeedItem]
    rl: list[data.SeedItem]
    eval: list[data.SeedItem]

    @property
    def op_needed_share(self) -> float:
        return sum(i.needs_op for i in self.sft) / max(len(self.sft), 1)

    def __str__(self) -> str:
        return (
            f"{len(self.sft)} SFT items, {len(self.rl)} RL queries, {len(self.eval)} held-out queries; "
            f"{self.op_needed_share:.0%} of SFT items need an op"
        )


def write_suites(config: SuiteConfig, out_dir, *, workers: int = 1) -> Suites:
    """Every split's seed items written under `out_dir` (`write_seed_items`), listed in `seed_items.jsonl` (SFT),
    `rl_queries.jsonl` and `eval_queries.jsonl`. `workers`: processes that render the scenes (the same items in the
    same order for any number)."""
    out = Path(out_dir)

    def split(name: str, seed: int, per_kind: int | None = None) -> list[data.SeedItem]:
        return [
            item
            for kind, n in config.counts().items()
            for item in write_seed_items(
                kind,
                n if per_kind is None else per_kind,
                seed,
                out,
                split=name,
                jpeg_quality=config.jpeg_quality,
                workers=workers,
                **config.knobs(kind),
            )
        ]

    items = {
        "sft": split("sft", config.seed),
        "rl": split("rl", config.seed + 1, config.n_rl_per_kind),
        "eval": split("eval", config.seed + 2, config.n_eval_per_kind),
    }
    data.write_jsonl(out / "seed_items.jsonl", items["sft"])
    export_queries(items["rl"], out / RL_QUERIES)
    export_queries(items["eval"], out / EVAL_QUERIES)
    return Suites(**items)


def resume_settings(config: SuiteConfig, *, teacher: str, teacher_model: str, episode_config, synth_config) -> dict:
    """What a run must share with the run it resumes (`claim_output_dir`): the suites' seed and scenes, the teacher
    (its model name only for a teacher that has one), the storage quality, the episode and the variant proportions."""
    return {
        "seed": config.seed,
        "canvas": [config.canvas_width, config.canvas_height],
        "target_size": config.target_size,
        "tile_size": config.tile_size,
        "teacher": teacher,
        "teacher_model": teacher_model if teacher != "template" else "",
        "jpeg_quality": config.jpeg_quality,
        "episode": episode_config,
        "synth": synth_config,
    }


def one_per_variant(records: list[data.TrajectoryRecord]) -> list[data.TrajectoryRecord]:
    """The first trajectory of each variant, in order of first appearance."""
    first: dict[str, data.TrajectoryRecord] = {}
    for record in records:
        first.setdefault(record.variant, record)
    return list(first.values())


def run_metrics(records: list[data.TrajectoryRecord], report: SynthReport, suites: Suites) -> dict:
    """The figures a synthesis run records (metrics.json): trajectories, what this run wrote and failed to write
    (> 0 failed: the run is recorded partial and redone by `pxr pipeline`), the share of items that need an op, of
    self-correction trajectories, and of assistant turns masked out of the loss, and the RL and held-out queries."""
    assistant = [t for r in records for t in r.turns if t.role == "assistant"]
    return {
        "sft_trajectories": len(records),
        "written_this_run": report.written,
        "failed_items": report.failed_items,
        "op_needed_share": round(suites.op_needed_share, 3),
        "self_correction_share": round(
            sum(r.variant in SELF_CORRECTION_VARIANTS for r in records) / max(len(records), 1), 3
        ),
        "masked_assistant_turn_share": round(1 - sum(t.trainable for t in assistant) / max(len(assistant), 1), 3),
        "rl_queries": len(suites.rl),
        "eval_queries": len(suites.eval),
    }


def smoke_dataset(out_dir, *, seed: int = 0, episode_config: EpisodeConfig | None = None) -> Path:
    """A few trajectories and held-out queries made offline in seconds: what a later stage's notebook uses when no
    synthesis run is named (interactive use, nbval). Returns the folder, laid out as notebook 10 lays out a run."""
    out = Path(out_dir)
    config = episode_config or EpisodeConfig()
    train = [
        i
        for kind, n in (("read", 6), ("coarse", 2), ("flash", 2))
        for i in write_seed_items(kind, n, seed, out, split="sft")
    ]
    rl = [i for kind, n in (("read", 4), ("coarse", 2)) for i in write_seed_items(kind, n, seed + 1, out, split="rl")]
    held_out = [
        i for kind, n in (("read", 4), ("coarse", 2)) for i in write_seed_items(kind, n, seed + 2, out, split="eval")
    ]
    synthesize(
        train,
        out,
        TemplateTeacher(seed=seed),
        synth_config=synth.SynthConfig(seed=seed),
        episode_config=config,
        progress=False,
    )
    export_queries(rl, out / RL_QUERIES)
    export_queries(held_out, out / EVAL_QUERIES)
    return out
