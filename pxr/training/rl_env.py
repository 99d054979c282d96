"""The visual-operation environment of RL (paper §4): `VisualEpisode` behind TRL's `environment_factory` API.

TRL's `GRPOTrainer` makes one environment per rollout and calls `reset(**row)` with the dataset row; `reset` starts a
`VisualEpisode` on the row's query and returns the user turn's content as the episode shows it (input images at the
query budget, or the video's numbered frames, then the question and guideline), so the prompt's pixels are the
episode's pixels. TRL renders the environment's public methods (`zoom_in`, `select_frames`) as the prompt's tools.

What the model writes is answered by the episode, never by TRL. TRL parses a turn's tool calls with the tokenizer's
`parse_response` and calls the named method itself, so an unknown name, a wrong argument or JSON that does not parse
would come back as TRL's `{'error': ...}` text, or silently end the rollout. Here every turn that writes
`<tool_call>` is routed whole to `VisualEpisode.step`, cut at its first `</tool_call>` as the rollout engine of
evaluation cuts it (`route_tool_calls` on the tokenizer, `EpisodeTools` as the trainer's tool table), so the model
receives exactly the observation evaluation would give it, and the record counts every request:

- `ToolResult` is the observation as TRL's content blocks (its line, then the new images: crops and frames reach the
  continued generation and the loss forward), and says whether the turn still needs its end-of-turn token;
- `_close` (private: TRL makes every public method a tool; `pxr.training.rl`'s reward calls it) ends the episode on the
  rollout's last message and on what reached the model: an observation TRL dropped to stay within
  `max_completion_length` is withdrawn from the episode, which ends `truncated`.

Dataset rows come from `rl_rows` (an `RLQuery` plus the chat prompt).

Tests: tests/test_rl.py, tests/test_rl_routing.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pxr import data, protocol
from pxr.config import EpisodeConfig
from pxr.episode import ENDED_TEXT, Observation, VisualEpisode
from pxr.rollout import cut_at_tool_call


def _user_content(episode: VisualEpisode, question: str, options, variant: str) -> list[dict]:
    """`protocol.user_content` with the episode's shown images in place of the placeholders."""
    content = protocol.user_content(
        question, episode.n_inputs, is_video=episode.is_video, options=options, variant=variant
    )
    images = iter(episode.shown_images[: episode.n_inputs])
    return [{"type": "image", "image": next(images)} if part["type"] == "image" else part for part in content]


# The name every routed call carries in TRL's tool table and tool messages. It never reaches the model's tokens: the
# tool-response header of the chat template does not depend on the tool's name.
ROUTED_TOOL = "pxr_episode_turn"


class ToolResult(list):
    """An observation as TRL's content blocks. `needs_end_of_turn`: the turn stopped at `</tool_call>` before its
    end-of-turn token (`pxr.training.rl` stops generation there, as evaluation does), so the tool-response tokens must
    start by closing it, as the chat template closes every assistant turn."""

    needs_end_of_turn: bool = False


class EpisodeTools(dict):
    """The trainer's tool table for one rollout: whatever name a call carries, it is the environment's turn."""

    def __init__(self, environment: _EpisodeEnvironment):
        super().__init__()
        self.environment = environment

    def __contains__(self, name) -> bool:
        return True

    def __getitem__(self, name):
        return self.environment._take_turn


def route_tool_calls(tokenizer, end_of_turn_ids) -> None:
    """Make `tokenizer.parse_response` (what TRL parses each generated turn with) hand every turn that writes
    `<tool_call>` to the episode whole: one call of `ROUTED_TOOL` carrying the turn's text, whether or not its JSON
    parses, whatever it names, however many calls it holds. Turns without `<tool_call>` parse as before (answers).

    `end_of_turn_ids`: tokens that close a turn (a turn that stopped at `</tool_call>` has none of them last).
    """
    original = getattr(tokenizer.parse_response, "pxr_original", tokenizer.parse_response)
    end_ids = set(end_of_turn_ids)

    def parse_response(ids, *args, **kwargs):
        ids = [int(i) for i in ids]
        text = tokenizer.decode(ids, skip_special_tokens=True)  # `<tool_call>` tags are ordinary tokens (Qwen)
        if not protocol.has_tool_call(text):
            return original(ids, *args, **kwargs)
        call = {"name": ROUTED_TOOL, "arguments": {"turn": text, "ended": bool(ids) and ids[-1] in end_ids}}
        return {"role": "assistant", "content": text, "tool_calls": [{"type": "function", "function": call}]}

    parse_response.pxr_original = original
    tokenizer.parse_response = parse_response


class _EpisodeEnvironment:
    """Shared state and bookkeeping; subclasses add the tools of a prompt variant."""

    episode_config: EpisodeConfig = EpisodeConfig()
    data_root: Path = Path(".")

    def __init__(self):
        self.episode: VisualEpisode | None = None
        self.query: data.RLQuery | None = None
        self.truncated = False
        self.stepped: list[bool] = []  # per routed turn: whether the episode answered it (False once it had ended)
        self.ended_at_turn: int | None = None  # the routed turn (1-based) whose call ended the episode at a limit

    def reset(self, **row) -> list[dict]:
        self.query = data.RLQuery.from_dict(json.loads(row["query"]))
        loaded = data.query_from_rl(self.query, self.data_root)
        self.episode = VisualEpisode(
            images=loaded.images, video=loaded.video, options=loaded.options, config=self.episode_config
        )
        self.truncated = False
        self.stepped, self.ended_at_turn = [], None
        return _user_content(self.episode, self.query.question, self.query.options, self.episode_config.prompt)

    @staticmethod
    def _content(observation: Observation) -> ToolResult:
        return ToolResult(
            [{"type": "text", "text": observation.text}]
            + [{"type": "image", "image": image} for image in observation.images]
        )

    def _observe(self, name: str, arguments: dict[str, Any]) -> list[dict]:
        return self._content(self.episode.call(name, arguments))

    def _take_turn(self, turn: str, ended: bool = True) -> ToolResult:
        """Answer one assistant turn that writes `<tool_call>` as evaluation does (`pxr.rollout.apply_turn`): the
        text up to its first `</tool_call>` goes to `VisualEpisode.step`. After the episode ended (a limit refused a
        call), evaluation would have stopped; the trainer masks what follows (`pxr.training.rl`)."""
        if self.episode.done:
            self.stepped.append(False)
            observation = Observation(False, protocol.error_observation_text(ENDED_TEXT, self.episode_config.prompt))
        else:
            self.stepped.append(True)
            observation = self.episode.step(cut_at_tool_call(str(turn)))
            if self.episode.done:
                self.ended_at_turn = len(self.stepped)
        result = self._content(observation)
        result.needs_end_of_turn = not ended
        return result

    def _close(self, final_message: dict | None, *, truncated: bool = False, delivered: int | None = None):
        """End the episode on the rollout's last assistant message; the facts the reward needs (the record).

        `truncated`: the completion was cut by the length limit mid-turn. `delivered`: how many observations reached
        the model (tool messages in the completion); when TRL dropped the last one to stay within
        `max_completion_length`, that call is withdrawn (its crop never reached the model, so it counts neither
        for RaPR nor for n_vo) and the episode ends `truncated`.
        """
        text = (final_message or {}).get("content") or ""
        if isinstance(text, list):  # content blocks
            text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
        dropped = delivered is not None and len(self.stepped) > delivered
        if dropped and self.stepped[-1]:
            self.episode.withdraw_last_call()
            self.ended_at_turn = None
        if dropped or truncated:
            self.episode.finish("truncated")
        elif not self.episode.done:
            if protocol.has_tool_call(text):  # a call the trainer never routed: its cap on tool turns
                self.episode.finish("limit", "max_turns")
            else:
                self.episode.step(text)  # the answer
        self.truncated = self.episode.ending == "truncated"
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
