"""One episode of pixel-space reasoning (paper §2): the image list, op execution from the model's text,
limits, observations and the episode record.

`VisualEpisode` is the only place ops run: data synthesis, RL rollouts, evaluation and the demo all feed it the
model's turns. Its image list holds the query's images (or the video's sampled frames) first, then every image an
op returned; image k is entry k, 1-based, and every observation names the numbers `target_image` accepts. Each
entry keeps the full-resolution source (crops are cut from it) and the copy shown to the model at its pixel budget.
Whatever the model writes, `step` returns `None` (an answer turn) or an `Observation`; it never raises.

Tests: tests/test_episode.py (behaviour), tests/test_episode_properties.py (hypothesis: no text makes it raise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pxr import families, ops, protocol
from pxr.config import EpisodeConfig

ENDINGS = ("answer", "no_answer", "truncated", "limit")
# The blank-observation control of evaluation (`pxr.evaluation.evaluate`) returns images of this one colour: no pixel of the
# scene reaches the model.
BLANK_FILL = (128, 128, 128)
LIMIT_REASONS = ("max_ops", "max_images", "max_tokens", "max_turns")
ENDED_TEXT = "the episode has ended; give your answer."  # what a call after the end gets


@dataclass
class ImageEntry:
    """Image `number` of an episode. Crops keep no pixels of their own: their source is re-cut from the root image."""

    number: int
    shown: Image.Image  # what the model sees, at its pixel budget
    origin: str  # "input" | "frame" | "zoom" | "select"
    root: int  # the input image or video frame this one derives from
    root_box: tuple[int, int, int, int]  # its region in the root's source pixels
    parent: int | None = None  # the image an op was applied to
    frame: int | None = None  # video frame number, for frames
    pixels: Image.Image | None = field(default=None, repr=False)  # full-resolution pixels, roots only
    blank: bool = False  # the blank-observation control replaced what the op returned

    @property
    def source_size(self) -> tuple[int, int]:
        x1, y1, x2, y2 = self.root_box
        return x2 - x1, y2 - y1


@dataclass
class Observation:
    """What an op call returns to the model: new images with a line naming their numbers, or an error text."""

    ok: bool
    text: str
    images: list[Image.Image] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)


def _load_image(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return ops.to_rgb(image)
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return ops.to_rgb(img.copy())
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


class VisualEpisode:
    """One episode: feed it each assistant turn with `step`; it executes the op the turn calls.

    Args:
        images: the query's images (PIL or paths), numbered 1..m.
        video: the query's video as a list of frames (PIL) or a file path (sampled to `video_num_frames`).
        options: multiple-choice options, so the final answer is read as an option letter.
        config: an `EpisodeConfig`; keyword arguments override its fields (`VisualEpisode(images=[im], max_ops=2)`).
    """

    def __init__(self, images=None, video=None, *, options=None, config: EpisodeConfig | None = None, **limits):
        self.config = EpisodeConfig(**{**asdict(config or EpisodeConfig()), **limits})
        if (images is None) == (video is None):
            raise ValueError("give exactly one of `images` (a list) or `video` (frames or a file path)")
        self.options = list(options) if options else None
        self.is_video = video is not None
        self.entries: list[ImageEntry] = []
        self.ops: list[dict[str, Any]] = []  # one record per op call, in order
        self.turns = 0
        self.answer: str | None = None
        self.ending: str | None = None
        self.limit_reason: str | None = None
        if self.is_video:
            frames = video if isinstance(video, (list, tuple)) else self._read_video(video)
            if not frames:
                raise ValueError("the video has no frames")
            for k, frame in enumerate(frames, start=1):
                self._add(
                    _load_image(frame),
                    "frame",
                    frame=k,
                    max_pixels=self.config.video_frame_max_pixels,
                    min_pixels=self.config.frame_min_pixels,
                )
        else:
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            if not images:
                raise ValueError("`images` is empty")
            for image in images:
                self._add(
                    _load_image(image),
                    "input",
                    max_pixels=self.config.image_max_pixels,
                    min_pixels=self.config.image_min_pixels,
                )
        self.n_inputs = len(self.entries)

    def _read_video(self, path) -> list[Image.Image]:
        from pxr.video import load_video_frames  # decord/PyAV are only needed for video files

        return load_video_frames(path, num_frames=self.config.video_num_frames)

    # ------------------------------------------------------------------------------------------ the image list

    def _add(self, source, origin, *, max_pixels, min_pixels, root=None, root_box=None, parent=None, frame=None):
        number = len(self.entries) + 1
        shown = ops.resize_to_budget(
            source, min_pixels=min_pixels, max_pixels=max_pixels, factor=self.config.patch_factor
        )
        if root is None:  # an input image or a video frame is its own root and keeps its pixels
            entry = ImageEntry(number, shown, origin, number, (0, 0, *source.size), parent, frame, pixels=source)
        else:
            entry = ImageEntry(number, shown, origin, root, root_box, parent, frame)
            if self.config.blank_observations:  # the op ran; the model gets an image of the same size, blank
                entry.shown, entry.blank = Image.new("RGB", shown.size, BLANK_FILL), True
        self.entries.append(entry)
        return entry

    def source(self, number: int) -> Image.Image:
        """Full-resolution pixels of image `number` (a crop is cut again from its root image)."""
        entry = self.entries[number - 1]
        if entry.pixels is not None:
            return entry.pixels
        return self.entries[entry.root - 1].pixels.crop(entry.root_box)

    @property
    def shown_images(self) -> list[Image.Image]:
        """The images as the model sees them, in number order: what the processor receives."""
        return [e.shown for e in self.entries]

    def _counted_images(self) -> int:
        return len(self.entries) - (self.n_inputs - 1 if self.is_video else 0)

    # ---------------------------------------------------------------------------------------------- stepping

    @property
    def done(self) -> bool:
        return self.ending is not None

    def finish(self, ending: str, reason: str | None = None) -> None:
        """End the episode; the rollout engine calls it for token limits (`truncated`, or `limit` + `max_tokens`)."""
        if ending not in ENDINGS:
            raise ValueError(f"unknown ending {ending!r}; one of {ENDINGS}")
        if reason is not None and reason not in LIMIT_REASONS:
            raise ValueError(f"unknown limit reason {reason!r}; one of {LIMIT_REASONS}")
        if self.ending is None:
            self.ending, self.limit_reason = ending, reason

    def step(self, assistant_text: str) -> Observation | None:
        """Execute the op the assistant turn calls. None when the turn calls none: it is the answer, and the
        episode ends. Never raises, whatever the text; returns None once the episode has ended."""
        if self.done:
            return None
        if not isinstance(assistant_text, str):
            assistant_text = str(assistant_text)
        self.turns += 1
        if not protocol.has_tool_call(assistant_text):
            self.answer = protocol.final_answer(assistant_text, self.options)
            self.finish("answer" if self.answer is not None else "no_answer")
            return None
        return self._run_call(lambda: protocol.parse_tool_call(assistant_text))

    def call(self, name: str, arguments: dict[str, Any]) -> Observation:
        """Execute an op call that arrives already parsed (a trainer's native tool call, e.g. TRL's environment
        tools): the same limits, records and observations as a call written in the text of `step`. Never raises;
        after the episode has ended it returns an error observation."""
        if self.done:
            return Observation(False, protocol.error_observation_text(ENDED_TEXT, self.config.prompt))
        self.turns += 1
        return self._run_call(lambda: protocol.ToolCall(str(name), dict(arguments or {})))

    def _run_call(self, read_call) -> Observation:
        record: dict[str, Any] = {
            "turn": self.turns,
            "name": None,
            "arguments": None,
            "ok": False,
            "error": None,
            "executed": False,
            "image_numbers": [],
            "sizes": [],
        }
        self.ops.append(record)
        if self.turns >= self.config.max_turns:  # failed calls do not use up max_ops; this bounds them
            return self._refuse(
                record, "max_turns", f"the limit of {self.config.max_turns} turns per episode is reached."
            )
        if self.n_executed >= self.config.max_ops:
            return self._refuse(
                record, "max_ops", f"the limit of {self.config.max_ops} operations per episode is reached."
            )
        try:
            call = read_call()
            record["name"], record["arguments"] = call.name, call.arguments
            new = self._execute(call, record)
        except (protocol.ToolCallError, ops.OpError) as err:
            return self._fail(record, str(err))
        except Exception as err:  # a bug of ours must not kill a rollout; the record keeps what happened
            return self._fail(record, f"internal error while executing the call ({type(err).__name__}: {err}).")
        if new is None:  # refused by the image limit
            return self._refuse(
                record, "max_images", f"the limit of {self.config.max_images} images per episode is reached."
            )
        record.update(
            ok=True, executed=True, image_numbers=[e.number for e in new], sizes=[list(e.shown.size) for e in new]
        )
        return Observation(True, self._success_text(call, new), [e.shown for e in new], [e.number for e in new])

    def withdraw_last_call(self) -> None:
        """Take back the last op call: its observation never reached the model (a trainer dropped it to stay within
        its completion budget). The images it added leave the list; the call stays in the record as requested,
        neither executed nor failed, marked `withdrawn`; the episode is open again for `finish("truncated")`."""
        if not self.ops:
            return
        op = self.ops[-1]
        numbers = set(op["image_numbers"])
        self.entries = [e for e in self.entries if e.number not in numbers]
        op.update(ok=False, executed=False, withdrawn=True, image_numbers=[], sizes=[])
        self.ending = self.limit_reason = None

    def _fail(self, record, message) -> Observation:
        record["error"] = message
        return Observation(False, protocol.error_observation_text(message, self.config.prompt))

    def _refuse(self, record, reason, message) -> Observation:
        self.finish("limit", reason)
        return self._fail(record, message + " The episode ends here.")

    # ------------------------------------------------------------------------------------------- op execution

    def _op_names(self) -> list[str]:
        zoom = "crop_image_normalized" if self.config.prompt == "pixel-reasoner-v1" else "zoom_in"
        return [zoom, "select_frames"]

    def _execute(self, call: protocol.ToolCall, record) -> list[ImageEntry] | None:
        if self.config.prompt == "text":
            raise ops.OpError("no operations are available in this episode; answer from the input as shown.")
        name = protocol.OP_ALIASES.get(call.name, call.name)
        zoom, select = self._op_names()
        if name not in protocol.OP_NAMES:
            raise ops.OpError(
                f"unknown operation {ops.brief(call.name)}; the operations are {zoom} (images and frames) and "
                f"{select} (videos)."
            )
        if name == "select_frames" and not self.is_video:
            raise ops.OpError(
                f"select_frames works on videos only, and this input is an image; use {zoom} to look closer."
            )
        signature = {
            "zoom_in": "bbox_2d (required) and target_image (optional, default 1)",
            "select_frames": "target_frames (required)",
        }[name]
        allowed = {"zoom_in": ("bbox_2d", "target_image"), "select_frames": ("target_frames",)}[name]
        missing = [a for a in allowed[:1] if a not in call.arguments]
        extra = sorted(set(call.arguments) - set(allowed))
        if missing:
            raise ops.OpError(f"{call.name} needs the argument {missing[0]}; its arguments are {signature}.")
        if extra:
            raise ops.OpError(
                f"{call.name} does not take {', '.join(map(ops.brief, extra))}; its arguments are {signature}."
            )
        if name == "zoom_in":
            return self._zoom(call.arguments)
        return self._select(call.arguments)

    def _zoom(self, args) -> list[ImageEntry] | None:
        n = len(self.entries)
        target = ops.as_int(args.get("target_image", 1))
        if target is not None and self._released_video_numbering():
            target = self._released_video_target(target)
        if target is None or not 1 <= target <= n:
            raise ops.OpError(
                f"target_image must be an image number from 1 to {n}, got {ops.brief(args.get('target_image'))}."
            )
        entry = self.entries[target - 1]
        box = families.to_normalized(args["bbox_2d"], entry.shown.size, self.box_family, image=f"image {target}")
        source = self.source(target)
        crop = ops.zoom_in(source, list(box), padding=self.config.zoom_padding, min_size=self.config.min_crop_size)
        if self._counted_images() + 1 > self.config.max_images:
            return None
        left, top, _, _ = ops.padded_crop_box(source.size, list(box), padding=self.config.zoom_padding)
        rx, ry = entry.root_box[0] + left, entry.root_box[1] + top
        root_box = (rx, ry, rx + crop.width, ry + crop.height)
        return [
            self._add(
                crop,
                "zoom",
                root=entry.root,
                root_box=root_box,
                parent=target,
                frame=entry.frame,
                min_pixels=self.config.crop_min_pixels,
                max_pixels=self.config.crop_max_pixels,
            )
        ]

    @property
    def box_family(self) -> str:
        """Whose box convention `bbox_2d` is read in (`pxr.families`): the model family's; the released format's is
        [0, 1] or pixels of the image as shown, Qwen2.5-VL's reading (the released checkpoints' family)."""
        return "qwen2.5-vl" if self.config.prompt == "pixel-reasoner-v1" else self.config.family

    def _released_video_numbering(self) -> bool:
        return self.config.prompt == "pixel-reasoner-v1" and self.is_video and len(self.entries) > self.n_inputs

    def _released_video_target(self, target: int) -> int:
        """The released numbering of a video episode once an op returned images: 1 was the whole video and k >= 2
        the (k-1)-th returned image (what its frame message announces, off by one); as pxr's image number."""
        outputs = len(self.entries) - self.n_inputs
        if not 2 <= target <= outputs + 1:
            raise ops.OpError(
                f"target_image must be from 2 to {outputs + 1} here (1 is the whole video, 2 and up the images "
                f"operations returned), got {target}."
            )
        return self.n_inputs + target - 1

    def _select(self, args) -> list[ImageEntry] | None:
        frames = [self.source(k) for k in range(1, self.n_inputs + 1)]
        picked = ops.select_frames(frames, args["target_frames"], max_frames=self.config.max_selected_frames)
        numbers = [ops.as_int(k) for k in args["target_frames"]]  # validated by select_frames
        if self._counted_images() + len(picked) > self.config.max_images:
            return None
        return [
            self._add(
                frame,
                "select",
                root=k,
                root_box=self.entries[k - 1].root_box,
                parent=k,
                frame=k,
                min_pixels=self.config.frame_min_pixels,
                max_pixels=self.config.frame_max_pixels,
            )
            for k, frame in zip(numbers, picked, strict=True)
        ]

    def _success_text(self, call, new: list[ImageEntry]) -> str:
        variant = self.config.prompt
        if new[0].origin == "zoom":
            return protocol.zoom_observation_text(variant, new[0].number, new[0].parent, new[0].shown.size)
        return protocol.frames_observation_text(
            variant, [e.number for e in new], [e.frame for e in new], new[0].shown.size, video_frames=self.n_inputs
        )

    # ------------------------------------------------------------------------------------------------ record

    @property
    def n_requested(self) -> int:
        return len(self.ops)

    @property
    def n_executed(self) -> int:
        return sum(op["executed"] for op in self.ops)

    @property
    def n_failed(self) -> int:
        return sum(not op["ok"] and not op.get("withdrawn") for op in self.ops)

    @property
    def last_op_failed_unfixed(self) -> bool:
        """The last op call failed and the model answered without calling again: the case the
        released code's reward zeroed (`pxr.reward.group_rewards`, `zero_if_unfixed_error`)."""
        return bool(self.ops) and not self.ops[-1]["ok"] and self.ending in ("answer", "no_answer")

    def record(self) -> dict[str, Any]:
        """The episode as JSON-ready data: op calls with arguments and result sizes, counts, ending, answer."""
        return {
            "is_video": self.is_video,
            "n_inputs": self.n_inputs,
            "turns": self.turns,
            "ops": [dict(op) for op in self.ops],
            "ops_requested": self.n_requested,
            "ops_executed": self.n_executed,
            "ops_failed": self.n_failed,
            "last_op_failed_unfixed": self.last_op_failed_unfixed,
            "ending": self.ending,
            "limit_reason": self.limit_reason,
            "answer": self.answer,
            "blank_observations": self.config.blank_observations,
            "model_family": self.box_family,  # the convention the boxes in `ops` were read in
            "images": [
                {
                    "number": e.number,
                    "origin": e.origin,
                    "parent": e.parent,
                    "root": e.root,
                    "root_box": list(e.root_box),
                    "frame": e.frame,
                    "shown_size": list(e.shown.size),
                    "blank": e.blank,
                }
                for e in self.entries
            ],
        }
