"""The interactive demo behind notebooks/60_demo.ipynb (paper §2): one episode, turn by turn, with each zoom drawn.

`EpisodeStepper` runs one query through the same code path as every rollout (`pxr.rollout.start_trajectory`,
one generated turn, `apply_turn`, which executes the op through `VisualEpisode`) and returns a `TurnView` per turn:
the assistant text, the observation, and the pictures to draw (the input with every zoom box, then each crop or
selected frame). `DemoApp` puts ipywidgets around it: a scene kind and "new scene", an image or video upload, the
question, the model (a checkpoint path, empty for the tiny model built on the fly, or `teacher`: the trajectory
synthesis writes for the scene, replayed through the episode and labelled as the teacher's, for when no trained
model is at hand), the prompt variant, "step" and "run to the end". Its callbacks are plain methods, so tests drive them without a browser.

Tests: tests/test_demo.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from pxr import protocol, scenes, viz
from pxr.config import EpisodeConfig
from pxr.rollout import Query, RolloutConfig, Trajectory, apply_turn, start_trajectory

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class TurnView:
    """What one turn shows: the assistant's text, the observation (if an op ran) and the pictures so far."""

    number: int
    assistant: str  # the turn's text; `author` says whose (the model, or the teacher's replayed script)
    observation: str | None
    ok: bool | None
    pictures: list[Image.Image]
    titles: list[str]
    done: bool
    answer: str | None = None
    ending: str | None = None
    author: str = "assistant"

    def markdown(self) -> str:
        text = self.assistant.replace("<", "&lt;").replace("\n", " ")
        lines = [f"**turn {self.number}, {self.author}:** {text}  "]
        if self.observation is not None:
            lines.append(f"> *{self.observation.replace('<', '&lt;')}* ({'ok' if self.ok else 'error'})  ")
        if self.done:
            lines.append(f"**episode over** ({self.ending}); answer: `{self.answer}`")
        return "\n".join(lines)


def scene_query(kind: str, seed: int, question: str = "") -> Query:
    """A synthetic scene of `kind` (`pxr.scenes.SCENE_BUILDERS`) as a query; `question` replaces the scene's."""
    scene = scenes.make_scene(kind, seed)
    is_video = hasattr(scene, "frames")
    return Query(
        id=f"{kind}-{seed}",
        question=question or scene.question,
        images=None if is_video else [scene.image],
        video=list(scene.frames) if is_video else None,
        options=None if question else scene.options,
        answer=None if question else scene.answer,
        meta={"kind": kind, "needs_op": scene.needs_op, "scene_seed": seed},
    )


def upload_query(name: str, content: bytes, question: str, *, num_frames: int = 16) -> Query:
    """An uploaded image or video (by its file name's suffix) as a query; a bad file is a ValueError."""
    if not question.strip():
        raise ValueError("type a question first")
    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        from pxr.video import load_video_frames

        with tempfile.NamedTemporaryFile(suffix=suffix) as file:
            file.write(content)
            file.flush()
            frames = load_video_frames(file.name, num_frames)
        return Query(id=Path(name).stem, question=question, video=frames)
    try:
        import io

        image = Image.open(io.BytesIO(content)).convert("RGB")
    except OSError as err:
        raise ValueError(f"{name} is neither an image nor a video ({', '.join(VIDEO_SUFFIXES)}): {err}") from None
    return Query(id=Path(name).stem, question=question, images=[image])


def load_demo_model(model_name_or_path: str, episode_config: EpisodeConfig, *, model_size: str = "tiny", seed=0):
    """The model and processor: a checkpoint path or hub id, or (empty) a fresh tiny model of the settings' model
    family built in a temp folder (`pxr.models.episode_config_for` gives the settings for a checkpoint)."""
    from pxr import models

    path = model_name_or_path or models.build_tiny_model(
        Path(tempfile.mkdtemp(prefix="pxr-demo-")) / "model", seed=seed, size=model_size, family=episode_config.family
    )
    return models.load_model(path, episode_config=episode_config)


GenerateTurn = Callable[[list[Trajectory]], list[tuple[str, int, bool]]]
TEACHER = "teacher"  # as a model name: replay the template teacher's synthesized trajectory instead of a model
TEACHER_AUTHOR = "teacher (synthesized trajectory, replayed)"


def teacher_generator(query: Query, episode_config: EpisodeConfig) -> GenerateTurn:
    """The assistant turns of the trajectory synthesis writes for `query`'s scene (a `scene_query`), one a step:
    the stepper executes them through the episode like a model's, so a newcomer sees a real zoom with no trained
    model at hand. A self-correction variant shows its wrong zoom first (a turn SFT masks). Scenes' own questions
    only: the teacher's script answers the scene's question."""
    kind, seed = query.meta.get("kind"), query.meta.get("scene_seed")
    if seed is None or kind not in scenes.SCENE_BUILDERS:
        raise ValueError("the teacher replays synthetic scenes only: pick a scene kind, not an upload")
    scene = scenes.make_scene(kind, seed)
    if query.question != scene.question:
        raise ValueError("the teacher's trajectory answers the scene's own question: clear the question box")
    from pxr.synthesis import synth_run

    result = synth_run.teacher_trajectory(scene, query.id, episode_config=episode_config)
    texts = iter([t.text for t in result.turns if t.role == "assistant"])
    return lambda batch: [(next(texts, ""), 0, False) for _ in batch]  # past the script: an empty turn ends it


def model_generator(model, processor, rollout_config: RolloutConfig) -> GenerateTurn:
    """One assistant turn per trajectory from the in-process model, the rollout engine's own generation step."""
    from pxr.rollout import generate_turn  # the engine's step: the demo decodes exactly as rollouts do

    return lambda batch: generate_turn(model, processor, batch, rollout_config)


@dataclass
class EpisodeStepper:
    """One episode, one assistant turn per `step()`."""

    query: Query
    generate: GenerateTurn
    episode_config: EpisodeConfig = field(default_factory=EpisodeConfig)
    max_total_tokens: int = 4096
    author: str = "assistant"  # whose turns these are, shown with each (TEACHER_AUTHOR for a replay)
    trajectory: Trajectory = field(init=False)

    def __post_init__(self):
        self.trajectory = start_trajectory(self.query, self.episode_config)

    @property
    def done(self) -> bool:
        return self.trajectory.episode.done

    def step(self) -> TurnView:
        if self.done:
            raise RuntimeError("the episode is over; start a new one")
        trajectory = self.trajectory
        ((text, tokens, truncated),) = self.generate([trajectory])
        before = len(trajectory.turns)
        apply_turn(trajectory, text, tokens, truncated=truncated)
        if not self.done and trajectory.prompt_tokens + tokens >= self.max_total_tokens:
            trajectory.episode.finish("limit", "max_tokens")
        observation = next((t for t in trajectory.turns[before:] if t.role == "observation"), None)
        pictures, titles = viz.rollout_images(trajectory)
        episode = trajectory.episode
        return TurnView(
            number=sum(t.role == "assistant" for t in trajectory.turns),
            assistant=text,
            observation=observation.text if observation else None,
            ok=observation.ok if observation else None,
            pictures=pictures,
            titles=titles,
            done=episode.done,
            answer=episode.answer,
            ending=episode.ending,
            author=self.author,
        )

    def run(self, max_turns: int = 12) -> list[TurnView]:
        views = []
        while not self.done and len(views) < max_turns:
            views.append(self.step())
        return views


def show_turn(view: TurnView, *, height: float = 2.4) -> None:
    """Display a turn in a notebook: its text, then the input with the zoom boxes and the crops beside it."""
    from IPython.display import Markdown, display

    display(Markdown(view.markdown()))
    display(viz.show_images(view.pictures, view.titles, height=height))


# ------------------------------------------------------------------------------------------------ widgets


class DemoApp:
    """The ipywidgets front: build it, `display(app.widget)`. Callbacks are methods taking the widget event."""

    def __init__(
        self,
        *,
        model_name_or_path: str = "",
        model_size: str = "tiny",
        episode_config: EpisodeConfig | None = None,
        rollout_config: RolloutConfig | None = None,
        scene_kind: str = "read",
        seed: int = 0,
        loader: Callable[..., tuple[Any, Any]] = load_demo_model,
    ):
        import ipywidgets as W

        self.episode_config = episode_config or EpisodeConfig()
        self.rollout_config = rollout_config or RolloutConfig(batch_size=1)
        self.model_size, self.seed, self.loader = model_size, seed, loader
        self.models: dict[str, tuple[Any, Any]] = {}  # loaded once per path ("" = the tiny model)
        self.query: Query | None = None
        self.stepper: EpisodeStepper | None = None
        self.views: list[TurnView] = []
        self.scene_seed = seed
        self.kind = W.Dropdown(options=list(scenes.SCENE_BUILDERS), value=scene_kind, description="scene")
        self.new_scene = W.Button(description="new scene", icon="refresh")
        self.upload = W.FileUpload(accept="image/*,video/*", multiple=False, description="image or video")
        self.question = W.Text(placeholder="your question (empty: the scene's own)", description="question")
        self.model_path = W.Text(
            value=model_name_or_path, placeholder="empty: a tiny model built here; teacher: replay", description="model"
        )
        self.prompt = W.Dropdown(
            options=list(protocol.PROMPT_VARIANTS), value=self.episode_config.prompt, description="prompt"
        )
        self.step_button = W.Button(description="step", icon="step-forward")
        self.run_button = W.Button(description="run to the end", icon="fast-forward")
        self.status = W.HTML()
        self.output = W.Output()
        self.new_scene.on_click(self.on_new_scene)
        self.upload.observe(self.on_upload, names="value")
        self.step_button.on_click(self.on_step)
        self.run_button.on_click(self.on_run)
        self.widget = W.VBox(
            [
                W.HBox([self.kind, self.new_scene, self.upload]),
                W.HBox([self.question, self.model_path, self.prompt]),
                W.HBox([self.step_button, self.run_button, self.status]),
                self.output,
            ]
        )

    def say(self, text: str) -> None:
        self.status.value = text

    def on_new_scene(self, _button=None) -> None:
        """A fresh synthetic scene of the chosen kind (the next seed each press)."""
        self.query = scene_query(self.kind.value, self.scene_seed, self.question.value.strip())
        self.scene_seed += 1
        self._restart(f"scene {self.query.id}: {self.query.question}")

    def on_upload(self, change=None) -> None:
        """The uploaded file (ipywidgets 8: a tuple of dicts with name and content) becomes the query."""
        files = self.upload.value
        if not files:
            return
        file = files[-1]
        try:
            self.query = upload_query(
                file["name"],
                bytes(file["content"]),
                self.question.value,
                num_frames=self.episode_config.video_num_frames,
            )
        except (ValueError, OSError, ImportError) as err:
            self.say(f"cannot use {file['name']}: {err}")
            return
        self._restart(f"{file['name']}: {self.query.question}")

    def _restart(self, message: str) -> None:
        self.stepper, self.views = None, []
        self.output.clear_output()
        self.say(message)

    def _ensure_stepper(self) -> EpisodeStepper:
        if self.query is None:
            self.on_new_scene()
        if self.stepper is None or self.stepper.done:
            path = self.model_path.value.strip()
            episode_config = replace(self.episode_config, prompt=self.prompt.value)
            if path == TEACHER:
                generate = teacher_generator(self.query, episode_config)
                self.stepper = EpisodeStepper(
                    self.query, generate, episode_config, self.rollout_config.max_total_tokens, TEACHER_AUTHOR
                )
                self.views = []
                self.output.clear_output()
                return self.stepper
            if path not in self.models:
                self.say(f"loading {path or 'a tiny model'} ...")
                self.models[path] = self.loader(path, episode_config, model_size=self.model_size, seed=self.seed)
            model, processor = self.models[path]
            generate = model_generator(model, processor, self.rollout_config)
            self.stepper = EpisodeStepper(self.query, generate, episode_config, self.rollout_config.max_total_tokens)
            self.views = []
            self.output.clear_output()
        return self.stepper

    def on_step(self, _button=None) -> TurnView | None:
        try:
            stepper = self._ensure_stepper()
            view = stepper.step()
        except (OSError, ValueError, RuntimeError) as err:  # a bad path or checkpoint: say so, keep the app alive
            self.say(f"error: {err}")
            return None
        self.views.append(view)
        with self.output:
            show_turn(view)
        self.say(f"turn {view.number}" + (f": done ({view.ending}), answer {view.answer!r}" if view.done else ""))
        return view

    def on_run(self, _button=None) -> list[TurnView]:
        views = []
        while (view := self.on_step()) is not None:
            views.append(view)
            if view.done:
                break
        return views
