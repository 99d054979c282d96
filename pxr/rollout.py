"""Multi-turn rollouts with visual operations (paper §2, §5): every episode runs through `VisualEpisode`.

In-process backend (`generate_trajectories`): the active episodes of a batch generate together each turn (left
padding; a turn stops at `</tool_call>` or the end of turn), the op each turn calls is executed, its observation
appended, and the unfinished episodes go on while finished ones make room for the next queries. Images live once, in
each episode's image list. With a Qwen-VL model each episode also keeps its KV cache from turn to turn
(`pxr.rollout_batch`): a turn prefills only what the episode has not seen, so each image goes through the processor
and the vision tower once, and the batch shares only the decoding; other models (scripted stand-ins) get the whole
chat re-encoded each turn. The OpenAI-compatible backend (`pxr.evaluation.openai_backend`) runs the same loop over a
chat-completions endpoint and returns the same `Trajectory` records.

A trajectory keeps every turn's text with a `trainable` flag (observations never are), token counts, timings and
the episode record; `save_trajectories` writes JSONL with the images as files beside it, so a trajectory can be
re-rendered later.

Tests: tests/test_rollout.py (a scripted model checks the loop; the tiny model generates for real, with the same
greedy texts from the cached engine at batch 1 and 3 as from the plain one).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pxr import protocol, rollout_batch
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode


@dataclass
class Query:
    """One question on one visual input: images (PIL or paths) or a video (frames or a path)."""

    id: str
    question: str
    images: list | None = None
    video: Any = None
    options: list[str] | None = None
    answer: Any = None
    meta: dict = field(default_factory=dict)  # kind, cue box or frames: whatever eval breakdowns need


@dataclass(frozen=True)
class RolloutConfig:
    """Decoding and length limits of a rollout."""

    max_new_tokens: int = 128  # per assistant turn
    max_total_tokens: int = 4096  # prompt + every turn; beyond it the episode ends (limit "max_tokens")
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 16  # episodes generated together
    seed: int = 0


@dataclass
class Turn:
    role: str  # "assistant" | "observation"
    text: str
    trainable: bool  # observations never; the SFT data marks wrong-op assistant turns false too
    images: list[int] = field(default_factory=list)  # numbers of the images this turn added
    tokens: int = 0  # generated tokens (assistant turns)
    ok: bool | None = None  # observations: did the op execute


@dataclass
class Trajectory:
    query: Query
    episode: VisualEpisode
    turns: list[Turn] = field(default_factory=list)
    prompt_tokens: int = 0  # tokens of the final prompt (system, input, earlier turns)
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    op_seconds: float = 0.0
    error: str | None = None  # a backend failure that ended the episode (e.g. an endpoint that kept failing)

    def messages(self, variant: str | None = None) -> list[dict]:
        """The chat so far, image placeholders in image-number order (the episode's `shown_images`)."""
        return protocol.build_messages(
            self.query.question,
            self.episode.n_inputs,
            [(t.role, t.text, len(t.images)) for t in self.turns],
            is_video=self.episode.is_video,
            options=self.query.options,
            variant=variant or self.episode.config.prompt,
            video_input=self.video_input,
            family=self.episode.config.family,
        )

    @property
    def video_input(self) -> str:
        """How the chat shows the video: one video item (released format, where resolved so) or numbered frames."""
        return "video" if self.episode.is_video and self.episode.config.video_input == "video" else "frames"

    def visual_inputs(self) -> tuple[list, list]:
        """(images, videos) for the processor, in the order of the chat's placeholders."""
        shown = self.episode.shown_images
        if self.video_input == "video":
            return shown[self.episode.n_inputs :], [shown[: self.episode.n_inputs]]
        return shown, []

    def record(self) -> dict[str, Any]:
        """JSON-ready: the query (without pixels), the turns, the episode record, tokens and timings."""
        return {
            "id": self.query.id,
            "question": self.query.question,
            "options": self.query.options,
            "answer": self.query.answer,
            "meta": self.query.meta,
            "prediction": self.episode.answer,
            "turns": [asdict(t) for t in self.turns],
            "episode": self.episode.record(),
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "generate_seconds": round(self.generate_seconds, 4),
            "op_seconds": round(self.op_seconds, 4),
            "error": self.error,
        }


def start_trajectory(query: Query, episode_config: EpisodeConfig) -> Trajectory:
    episode = VisualEpisode(images=query.images, video=query.video, options=query.options, config=episode_config)
    return Trajectory(query, episode)


def apply_turn(trajectory: Trajectory, text: str, tokens: int, *, truncated: bool = False) -> None:
    """Record an assistant turn and execute the op it calls (the one code path of both backends)."""
    trajectory.turns.append(Turn("assistant", text, True, tokens=tokens))
    trajectory.generated_tokens += tokens
    if truncated:  # cut by max_new_tokens mid-turn: not an answer, not a call
        trajectory.episode.finish("truncated")
        return
    start = time.perf_counter()
    observation = trajectory.episode.step(text)
    trajectory.op_seconds += time.perf_counter() - start
    if observation is not None and not trajectory.episode.done:
        trajectory.turns.append(Turn("observation", observation.text, False, observation.numbers, ok=observation.ok))


def cut_at_tool_call(text: str) -> str:
    """A turn ends at its first `</tool_call>`; a stop string can overshoot by part of a token."""
    end = text.find(protocol.TOOL_CALL_CLOSE)
    return text if end < 0 else text[: end + len(protocol.TOOL_CALL_CLOSE)]


def render_prompt(processor, trajectory: Trajectory) -> str:
    """The text of the trajectory's next-turn prompt: the processor's chat template over its chat, one placeholder
    per image (every backend that renders prompts itself renders them here, the vLLM one included)."""
    return processor.apply_chat_template(trajectory.messages(), add_generation_prompt=True, tokenize=False)


def generate_turn(
    model, processor, batch: list[Trajectory], config: RolloutConfig, states: dict | None = None
) -> list[tuple[str, int, bool]]:
    """One assistant turn for every trajectory of the batch: (text, generated tokens, truncated). With `states` (a
    dict the caller keeps across turns) and a Qwen-VL model, each episode's KV cache is reused (`pxr.rollout_batch`);
    otherwise the whole chat is re-encoded with the processor and the batch prefilled with left padding."""
    tokenizer = processor.tokenizer
    texts = [render_prompt(processor, t) for t in batch]
    sampling = (
        {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
        if config.temperature > 0
        else {"do_sample": False}
    )
    # The model must never write image tokens: the next turn's processor would count images that do not exist.
    suppress = [processor.image_token_id, processor.video_token_id, tokenizer.convert_tokens_to_ids("<|vision_start|>")]
    generate_kwargs = dict(
        max_new_tokens=config.max_new_tokens,
        stop_strings=[protocol.TOOL_CALL_CLOSE],
        tokenizer=tokenizer,
        suppress_tokens=suppress,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    as_video = any(t.video_input == "video" for t in batch)  # the cached engine feeds images only
    if states is not None and not as_video and rollout_batch.supports_cache_reuse(model):
        generated, _, lengths = rollout_batch.generate_turn_cached(
            model, processor, batch, states, texts, generate_kwargs
        )
        rows = generated.tolist()
    else:
        images = [image for t in batch for image in t.visual_inputs()[0]]
        videos = [video for t in batch for video in t.visual_inputs()[1]]
        # The episode already fitted every image to its budget on the patch grid: resizing again would only cost time.
        visual = {"images": images or None, **({"videos": videos} if videos else {})}
        inputs = processor(text=texts, **visual, padding=True, return_tensors="pt", do_resize=False).to(model.device)
        prompt_width = inputs["input_ids"].shape[1]
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        with torch.no_grad():
            output = model.generate(**inputs, **generate_kwargs)
        rows = output[:, prompt_width:].tolist()
    for t, n in zip(batch, lengths, strict=True):
        t.prompt_tokens = n
    eos_ids = set(
        model.generation_config.eos_token_id
        if isinstance(model.generation_config.eos_token_id, list)
        else [model.generation_config.eos_token_id]
    )
    results = []
    for row in rows:
        ended = next((i for i, token in enumerate(row) if token in eos_ids), None)
        new = row[: ended + 1] if ended is not None else row
        text = tokenizer.decode(new, skip_special_tokens=True)
        stopped = protocol.TOOL_CALL_CLOSE in text
        results.append((cut_at_tool_call(text), len(new), ended is None and not stopped))
    return results


def generate_trajectories(
    model,
    processor,
    queries: list[Query],
    *,
    episode_config: EpisodeConfig | None = None,
    rollout_config: RolloutConfig | None = None,
    progress: bool = True,
) -> list[Trajectory]:
    """Roll out every query with the in-process model, up to `batch_size` episodes at a time; results in query
    order. A finished episode's place in the batch goes to the next query at once, so mixing one-turn and
    multi-turn episodes does not leave the batch half empty."""
    episode_config = episode_config or EpisodeConfig()
    config = rollout_config or RolloutConfig()
    torch.manual_seed(config.seed)
    trajectories: list[Trajectory] = []
    waiting = iter(queries)
    active: list[Trajectory] = []
    states: dict = {}  # each active episode's KV cache and image grids, dropped when it finishes
    bar = tqdm(total=len(queries), desc="episodes", disable=not progress)
    while True:
        while len(active) < config.batch_size and (query := next(waiting, None)) is not None:
            trajectories.append(start_trajectory(query, episode_config))
            active.append(trajectories[-1])
        if not active:
            break
        start = time.perf_counter()
        turns = generate_turn(model, processor, active, config, states)
        seconds = (time.perf_counter() - start) / len(active)
        for trajectory, (text, tokens, truncated) in zip(active, turns, strict=True):
            trajectory.generate_seconds += seconds
            apply_turn(trajectory, text, tokens, truncated=truncated)
            if not trajectory.episode.done and trajectory.prompt_tokens + tokens >= config.max_total_tokens:
                trajectory.episode.finish("limit", "max_tokens")
        bar.update(sum(t.episode.done for t in active))
        for t in active:
            if t.episode.done:
                states.pop(id(t), None)
        active = [t for t in active if not t.episode.done]
    bar.close()
    return trajectories


# ------------------------------------------------------------------------------------------------ records


def save_trajectories(trajectories: list[Trajectory], out_dir: str | Path, *, name: str = "trajectories") -> Path:
    """`<out_dir>/<name>.jsonl`, one record per line, with every image the model saw written to
    `<out_dir>/images/<id>/<number>.png` and referenced from the record."""
    out = Path(out_dir)
    path = out / f"{name}.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for t in trajectories:
            record = t.record()
            folder = out / "images" / _safe(t.query.id)
            folder.mkdir(parents=True, exist_ok=True)
            for entry, info in zip(t.episode.entries, record["episode"]["images"], strict=True):
                file = folder / f"{entry.number}.png"
                entry.shown.save(file)
                info["path"] = str(file.relative_to(out))
            f.write(json.dumps(record) + "\n")
    return path


def load_trajectory_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file written by `save_trajectories` (image paths relative to its folder)."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "item"
