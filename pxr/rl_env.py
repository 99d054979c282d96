"""The visual-operation environment of RL (SPEC §4.1): `VisualEpisode` behind TRL's `environment_factory` API.

TRL's `GRPOTrainer` makes one environment per rollout, calls `reset(**row)` with the dataset row, and exposes every
public method other than `reset` as a tool the model may call. A tool returning content blocks with images sends
those images to the continued generation and to the loss forward (stack-notes §4). Here:

- `reset` starts a `VisualEpisode` on the row's query and returns the user turn's content as the episode shows it
  (input images at the query budget, or the video's numbered frames, then the question and guideline), so the
  prompt's pixels are the episode's pixels;
- `zoom_in` / `select_frames` hand the parsed call to `VisualEpisode.call`, the one place ops run; the observation
  comes back in `pxr.protocol`'s order (its line, then the new images), an error as text the model can learn from;
- `_close` (private, because TRL makes every public method a tool; `pxr.rl`'s reward calls it) reads the
  final assistant message (a call TRL could not parse ends up there, and counts as a failed op).

TRL reads the tool schemas off these methods' signatures; `pxr.rl` renders `pxr.protocol.tool_schemas` instead,
so the docstrings below only need to parse. Dataset rows come from `rl_rows` (an `RLQuery` plus the chat prompt).

Tests: tests/test_rl_env.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pxr import data, protocol
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode


def _user_content(episode: VisualEpisode, question: str, options, variant: str) -> list[dict]:
    """`protocol.user_content` with the episode's shown images in place of the placeholders."""
    content = protocol.user_content(
        question, episode.n_inputs, is_video=episode.is_video, options=options, variant=variant
    )
    images = iter(episode.shown_images[: episode.n_inputs])
    return [{"type": "image", "image": next(images)} if part["type"] == "image" else part for part in content]


class _EpisodeEnvironment:
    """Shared state and bookkeeping; subclasses add the tools of a prompt variant."""

    episode_config: EpisodeConfig = EpisodeConfig()
    data_root: Path = Path(".")

    def __init__(self):
        self.episode: VisualEpisode | None = None
        self.query: data.RLQuery | None = None
        self.truncated = False

    def reset(self, **row) -> list[dict]:
        self.query = data.RLQuery.from_dict(json.loads(row["query"]))
        loaded = data.query_from_rl(self.query, self.data_root)
        self.episode = VisualEpisode(
            images=loaded.images, video=loaded.video, options=loaded.options, config=self.episode_config
        )
        self.truncated = False
        return _user_content(self.episode, self.query.question, self.query.options, self.episode_config.prompt)

    def _observe(self, name: str, arguments: dict[str, Any]) -> list[dict]:
        observation = self.episode.call(name, arguments)
        return [{"type": "text", "text": observation.text}] + [
            {"type": "image", "image": image} for image in observation.images
        ]

    def _close(self, final_message: dict | None, *, truncated: bool = False) -> dict[str, Any]:
        """End the episode on the rollout's last assistant message; the facts the reward needs.

        `truncated`: the completion was cut by the length limit, so its last turn is neither an answer nor a call.
        """
        text = (final_message or {}).get("content") or ""
        if isinstance(text, list):  # content blocks
            text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
        if truncated:
            self.episode.finish("truncated")
        elif not self.episode.done:
            self.episode.step(text)  # an answer, or a call TRL could not parse: a failed op in the record
            self.episode.finish("no_answer")  # no-op when the step ended it; a failed call leaves it open
        self.truncated = truncated
        return self.episode.record()


class PixelEnvironment(_EpisodeEnvironment):
    """Tools `zoom_in` and `select_frames` (prompt variant `pixel`)."""

    def zoom_in(self, bbox_2d: list[float], target_image: int | None = None) -> list[dict]:
        """Zoom in on a region of an image to see its details at higher resolution.

        Args:
            bbox_2d: The region as [x1, y1, x2, y2].
            target_image: The number of the image to zoom into.
        """
        arguments = {"bbox_2d": bbox_2d} if target_image is None else {"bbox_2d": bbox_2d, "target_image": target_image}
        return self._observe("zoom_in", arguments)

    def select_frames(self, target_frames: list[int]) -> list[dict]:
        """Select frames of the video to look at them more closely.

        Args:
            target_frames: Frame numbers to select, counted from 1.
        """
        return self._observe("select_frames", {"target_frames": target_frames})


class TextEnvironment(_EpisodeEnvironment):
    """No tools (prompt variant `text`): the no-op baseline trained with the same reward path."""


def environment_factory(episode_config: EpisodeConfig, data_root: str | Path) -> type:
    """The environment class TRL instantiates once per rollout, bound to the stage's limits and data root."""
    variant = episode_config.prompt
    if variant == "pixel-reasoner-v1":
        raise ValueError(
            "prompt pixel-reasoner-v1 is the released checkpoints' format, for evaluating them; train with 'pixel'"
        )
    base = PixelEnvironment if variant == "pixel" else TextEnvironment
    return type(base.__name__, (base,), {"episode_config": episode_config, "data_root": Path(data_root)})


def rl_dataset(queries: list[data.RLQuery]):
    """The `datasets.Dataset` TRL trains on: the chat prompt it renders (system text; the user turn is filled by
    `reset`), the query as JSON (its fields vary too much for Arrow columns), and its id.

    The system message is the bare text: TRL's chat template adds the tools block for the environment's tools,
    which gives `protocol.system_prompt(variant)` (tested).
    """
    from datasets import Dataset

    return Dataset.from_list(rl_rows(queries))


def rl_rows(queries: list[data.RLQuery]) -> list[dict[str, Any]]:
    """The rows of `rl_dataset`."""
    return [
        {
            "prompt": [
                {"role": "system", "content": [{"type": "text", "text": protocol.BASE_SYSTEM_TEXT}]},
                {"role": "user", "content": []},
            ],
            "query": json.dumps(query.to_dict()),
            "qid": query.qid,
        }
        for query in queries
    ]
