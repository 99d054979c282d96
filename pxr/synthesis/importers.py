"""Importers (paper §3, §5): the released Pixel Reasoner data and user annotations, read into `pxr.data` records
with every row checked.

Each `import_*` returns `(records, ImportReport)`. A row that cannot become a faithful record is skipped and counted
by reason (`REASONS`), never raised, and nothing is printed (print the report). Paths in the files are relative
to `data_root`, are checked with `pxr.data.resolve_under`, and stay relative in the records; image files are
opened and verified with PIL once each.

Formats (the released data sets `PixelReasoner-SFT-Data` and `PixelReasoner-RL-Data`, as the released code reads them):
- released SFT data: a JSON list or JSONL of `{"message_list": [...]}` (or a parquet with that column, nested or
  as JSON text): optional system turn; the user turn's `{"text"}`, `{"image": path}`, `{"video": [paths]}`
  items; assistant turns with `<tool_call>` blocks; op results as user turns beginning "Here is the cropped
  image" / "Here are the selected frames" (or "Execution error") with image items.
- released RL data (and the released eval parquet files): rows `question`, `image` (a list, one path or None),
  `is_video`, `answer` (a list or one string), `qid` (unique).
- user annotations, JSONL: images `{"id", "image", "question", "answer", "options"?, "box" | "boxes"}` with
  absolute pixel boxes; videos `{"id", "video" (a file) | "frames" (a list), "question", "answer", "window" |
  "frames_window": [start, end]}`, 1-based inclusive numbers of the frames the model is shown (for a file: of the
  `num_frames` sampled uniformly).

Tests: tests/test_data.py.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pxr.data import (
    VIDEO_SUFFIXES,
    ReadReport,
    RLQuery,
    SeedItem,
    TrajectoryRecord,
    TrajectoryTurn,
    read_jsonl,
    read_parquet,
    resolve_under,
)
from pxr.protocol import last_boxed

REASONS = (
    "bad row",
    "unsafe path",
    "missing file",
    "corrupt image",
    "duplicate id",
    "duplicate qid",
    "box outside image",
    "window outside video",
)
OBSERVATION_PREFIXES = ("here is the cropped image", "here are the selected frames", "execution error")
# Where the released prompt's trigger begins after the question ("vcot" guideline, "notool"/"default" triggers).
_TRIGGER_RE = re.compile(r"\s*(?:Guidelines:|Please (?:think|reason) step by step)")


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class ImportReport:
    """Rows read, records imported, and the skipped rows by reason with the first example of each."""

    path: str
    read: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, detail: str, count: int = 1) -> None:
        self.skipped[reason] += count
        self.examples.setdefault(reason, detail)

    def __str__(self) -> str:
        lines = [f"{self.path}: read {self.read}, imported {self.imported}, skipped {self.n_skipped}"]
        lines += [f"  {r}: {n} (e.g. {self.examples[r]})" for r, n in self.skipped.most_common()]
        return "\n".join(lines)


def _load_rows(path: Path) -> tuple[list, ReadReport]:
    """Rows of a parquet file, a JSON list, or JSONL (also what is not a whole JSON list: its bad lines counted)."""
    if path.suffix.lower() == ".parquet":
        return read_parquet(path)
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        try:
            rows = json.loads(path.read_bytes())
        except (ValueError, RecursionError):
            rows = None
        if isinstance(rows, list):
            return rows, ReadReport(str(path), read=len(rows))
    return read_jsonl(path)


def _run(path, parse_row: Callable[[dict, int], Any]) -> tuple[list, ImportReport]:
    rows, lines = _load_rows(Path(path))
    report = ImportReport(str(path), read=lines.read)
    for reason, n in lines.reasons.items():
        report.skip("bad row", f"line {lines.first_seen[reason]}: {reason}", n)
    records = []
    for number, row in enumerate(rows, start=1):
        try:
            if not isinstance(row, dict):
                raise _Skip("bad row", "not an object")
            records.append(parse_row(row, number))
            report.imported += 1
        except _Skip as skip:
            report.skip(skip.reason, f"record {number}: {skip.detail}")
    return records, report


class _Files:
    """Media paths under the data root, each inspected once: safe, present, and (images) readable by PIL."""

    def __init__(self, root, verify: bool):
        self.root, self.verify, self.seen = Path(root), verify, {}

    def check(self, relative, *, video_file: bool = False) -> tuple[int, int] | None:
        """The image's size (None for a video file); raises `_Skip` for a path that cannot be used."""
        if not isinstance(relative, str):
            raise _Skip("bad row", f"path {relative!r} is not a string")
        if relative not in self.seen:
            self.seen[relative] = self._inspect(relative, video_file)
        outcome = self.seen[relative]
        if isinstance(outcome, _Skip):
            raise _Skip(outcome.reason, outcome.detail)
        return outcome

    def _inspect(self, relative: str, video_file: bool):
        try:
            path = resolve_under(self.root, relative)
        except ValueError as err:
            return _Skip("unsafe path", str(err))
        if not path.is_file():
            return _Skip("missing file", relative)
        if video_file or relative.lower().endswith(VIDEO_SUFFIXES):
            return None
        try:
            with Image.open(path) as image:
                size = image.size
                if self.verify:
                    image.verify()
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for bad files
            return _Skip("corrupt image", f"{relative}: {err}")
        return size


# ------------------------------------------------------------------------------------------------- fields


def _bad(detail: str) -> _Skip:
    return _Skip("bad row", detail)


def _ident(row: dict, key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise _bad(f"'{key}' must be a non-empty string")
    return str(value)


def _question(row: dict) -> str:
    value = row.get("question")
    if not isinstance(value, str) or not value.strip():
        raise _bad("'question' must be a non-empty string")
    return value


def _number(value) -> bool:
    return (type(value) is int) or (type(value) is float and math.isfinite(value))


def _scalar(value) -> bool:
    return (isinstance(value, str) and bool(value.strip())) or _number(value)


def _answer(value) -> str | list[str]:
    """One answer as a string, several as a list of strings (numbers written as text)."""
    if _scalar(value):
        return str(value)
    if isinstance(value, list) and value and all(_scalar(v) for v in value):
        return [str(v) for v in value]
    raise _bad("'answer' must be a string or a non-empty list of strings")


def _options(row: dict) -> list[str] | None:
    value = row.get("options")
    if value is None or isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise _bad("'options' must be a non-empty list of strings")


def _paths(value, key: str) -> list[str]:
    if value is None:
        return []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"'{key}' must be a path or a list of paths")
    return value


def _needs_op(row: dict, default: bool) -> bool:
    value = row.get("needs_op", default)
    if not isinstance(value, bool):
        raise _bad("'needs_op' must be true or false")
    return value


def _unique(seen: set, ident: str, reason: str) -> None:
    if ident in seen:
        raise _Skip(reason, ident)
    seen.add(ident)


def _seed_fields(row: dict, seen: set) -> dict:
    """The fields every annotated seed item shares."""
    ident = _ident(row, "id")
    _unique(seen, ident, "duplicate id")
    meta = row["meta"] if isinstance(row.get("meta"), dict) else {}
    fields = {"question": _question(row), "answer": _answer(row.get("answer")), "options": _options(row)}
    return {"id": ident, **fields, "kind": "annotated", "source": "user", "meta": meta}


# ------------------------------------------------------------------------------------------ released data


def _content(message: dict) -> tuple[str, list[str], list[str] | str | None]:
    """A message's text, image paths and video (frame paths or a file)."""
    content = message.get("content")
    if isinstance(content, str):
        return content, [], None
    if not isinstance(content, list):
        raise _bad("a message's 'content' must be a string or a list")
    texts, images, video = [], [], None
    for item in content:
        if not isinstance(item, dict):
            raise _bad("a content item is not an object")
        if item.get("image") is not None:
            images.append(item["image"])
        elif item.get("video") is not None:
            video = item["video"]
            if not (isinstance(video, str) or isinstance(video, list) and video):
                raise _bad("a 'video' item must be a file path or a non-empty list of frames")
        elif isinstance(item.get("text"), str):
            texts.append(item["text"])
        else:
            raise _bad(f"a content item has no text, image or video: {sorted(item)}")
    return "".join(texts), images, video


def _is_observation(text: str) -> bool:
    return text.lstrip().lower().startswith(OBSERVATION_PREFIXES)


MASK_RULES = ("wrong_ops", "last_two")


def mask_wrong_ops(turns: list[TrajectoryTurn], rule: str = "wrong_ops") -> int:
    """Mark the assistant turns of a released trajectory that SFT must not train (paper §3: the erroneous visual
    operations of self-correction trajectories are masked); returns how many were masked.

    The released data does not annotate them, so they are inferred from the structure its templates produce:
    - "wrong_ops" (default): a turn that calls an op is wrong when a later turn calls another one (the templates
      put exactly one correct op right before the answer: re-crop, further zoom-in, re-select) or when its call
      failed (the next observation is an execution error);
    - "last_two": the released trainer's positional rule, only the last two assistant turns trained (it also masks
      the whole-image analysis that opens a self-correction trajectory).
    Observations are never trainable either way."""
    if rule not in MASK_RULES:
        raise ValueError(f"mask rule must be one of {', '.join(MASK_RULES)}, got {rule!r}")
    assistant = [i for i, t in enumerate(turns) if t.role == "assistant"]
    if rule == "last_two":
        wrong = set(assistant[:-2])
    else:
        calls = [i for i in assistant if "<tool_call>" in turns[i].text]
        failed = {
            i for i in calls if i + 1 < len(turns) and turns[i + 1].role == "observation" and _is_error(turns[i + 1])
        }
        wrong = set(calls[:-1]) | failed
    for i in wrong:
        turns[i].trainable = False
    return len(wrong)


def _is_error(turn: TrajectoryTurn) -> bool:
    return turn.text.lstrip().lower().startswith("execution error")


def import_released_sft(
    path, data_root, *, verify_images: bool = True, mask_rule: str = "wrong_ops"
) -> tuple[list[TrajectoryRecord], ImportReport]:
    """`PixelReasoner-SFT-Data` records as `TrajectoryRecord`s (variant "released", prompt "pixel-reasoner-v1").

    Observations are the user turns after the first, recognised by their text, never trainable. The paper masks
    erroneous ops; the released data does not say which they are (`meta["error_turns_annotated"]` is False), so
    `mask_wrong_ops` infers them by `mask_rule`, recorded in `meta["mask_rule"]` with the count it masked."""
    if mask_rule not in MASK_RULES:
        raise ValueError(f"mask_rule must be one of {', '.join(MASK_RULES)}, got {mask_rule!r}")
    files, seen = _Files(data_root, verify_images), set()

    def parse(row: dict, number: int) -> TrajectoryRecord:
        messages = row.get("message_list")
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except (ValueError, RecursionError):
                raise _bad("'message_list' is text that is not JSON") from None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _bad("'message_list' must be a list of messages")
        key = next((k for k in ("id", "qid") if row.get(k) is not None), None)
        ident = _ident(row, key) if key else f"sft-{number}"
        _unique(seen, ident, "duplicate id")
        messages = messages[1:] if messages and messages[0].get("role") == "system" else messages
        if not messages or messages[0].get("role") != "user":
            raise _bad("no user turn opens the conversation")
        text, images, video = _content(messages[0])
        if images and video is not None:
            raise _bad("the user turn holds both images and a video")
        match = _TRIGGER_RE.search(text)
        question = (text[: match.start()] if match and match.start() > 0 else text).strip()
        turns = []
        for message in messages[1:]:
            text, shown, extra = _content(message)
            if message.get("role") == "assistant" and not shown and extra is None:
                turns.append(TrajectoryTurn(role="assistant", text=text, trainable=True))
            elif message.get("role") in ("user", "tool") and extra is None and _is_observation(text):
                turns.append(TrajectoryTurn(role="observation", text=text, images=_paths(shown, "image")))
            else:
                raise _bad(f"a {message.get('role')!r} turn that is neither an answer nor an op result")
        if not question or not turns or turns[-1].role != "assistant":
            raise _bad("an empty question, or no final assistant turn")
        masked = mask_wrong_ops(turns, mask_rule)
        inputs = _paths(video, "video") if video is not None else _paths(images, "image")
        for p in inputs:
            files.check(p, video_file=isinstance(video, str))
        for p in (p for t in turns for p in t.images):
            files.check(p)
        gold = next((row[k] for k in ("answer", "solution") if row.get(k) is not None), None)
        answer = _answer(gold) if gold is not None else last_boxed(turns[-1].text)
        if isinstance(answer, str) and "\\boxed" in answer:
            answer = last_boxed(answer) or answer
        return TrajectoryRecord(
            id=ident,
            seed_id=str(row["qid"]) if row.get("qid") is not None else ident,
            variant="released",
            prompt="pixel-reasoner-v1",
            question=question,
            answer=answer,
            inputs=inputs,
            is_video=video is not None,
            turns=turns,
            meta={
                "source": "released-sft",
                "error_turns_annotated": False,
                "mask_rule": mask_rule,
                "masked_turns": masked,
            },
        )

    return _run(path, parse)


def import_released_rl(path, data_root, *, verify_images: bool = True) -> tuple[list[RLQuery], ImportReport]:
    """`PixelReasoner-RL-Data` rows (or the released eval parquet files) as `RLQuery`s; a repeated qid is skipped."""
    files, seen = _Files(data_root, verify_images), set()

    def parse(row: dict, number: int) -> RLQuery:
        qid = _ident(row, "qid")
        _unique(seen, qid, "duplicate qid")
        question, answer = _question(row), _answer(row.get("answer"))
        images = _paths(row.get("image"), "image")
        is_video = row.get("is_video") or False
        if not isinstance(is_video, bool) or (is_video and not images):
            raise _bad("'is_video' must be true or false, and a video row needs its frames")
        for p in images:
            files.check(p)
        return RLQuery(
            qid=qid,
            question=question,
            images=images,
            is_video=is_video,
            answer=answer if isinstance(answer, list) else [answer],
            kind="released",
            meta={"source": "released-rl"},
        )

    return _run(path, parse)


# -------------------------------------------------------------------------------------------- annotations


def _box(value) -> list[float]:
    try:
        box = [float(v) for v in value] if isinstance(value, list) and all(_number(v) for v in value) else []
    except OverflowError:  # an integer beyond any float
        box = []
    if len(box) != 4 or not all(map(math.isfinite, box)):
        raise _bad(f"a box must be 4 numbers [x1, y1, x2, y2], got {value!r}")
    if not (box[0] < box[2] and box[1] < box[3]):
        raise _bad(f"a box needs x1 < x2 and y1 < y2, got {value}")
    if max(box) <= 1:
        raise _bad(f"box {value} looks normalized; give absolute pixels of the image")
    return box


def import_annotated_images(path, data_root, *, verify_images: bool = True) -> tuple[list[SeedItem], ImportReport]:
    """User image annotations (web screenshots, SA-1B-style images) as `SeedItem`s of kind "annotated"; a box must
    lie inside its image. `needs_op` is True when a box is given (a row's own `needs_op` wins)."""
    files, seen = _Files(data_root, verify_images), set()

    def parse(row: dict, number: int) -> SeedItem:
        common = _seed_fields(row, seen)
        image = row.get("image")
        if not isinstance(image, str):
            raise _bad("'image' must be a path")
        raw = row["boxes"] if row.get("boxes") is not None else [row["box"]] if row.get("box") is not None else None
        if raw is not None and (not isinstance(raw, list) or not raw):
            raise _bad("'boxes' must be a non-empty list of boxes")
        boxes = [_box(b) for b in raw] if raw is not None else None
        needs_op = _needs_op(row, boxes is not None)
        width, height = files.check(image)
        for b in boxes or []:
            if b[0] < 0 or b[1] < 0 or b[2] > width or b[3] > height:
                raise _Skip("box outside image", f"{b} in a {width}x{height} image")
        return SeedItem(**common, images=[image], cue_boxes=boxes, needs_op=needs_op)

    return _run(path, parse)


def import_annotated_videos(
    path, data_root, *, num_frames: int = 16, verify_images: bool = True
) -> tuple[list[SeedItem], ImportReport]:
    """User video annotations (STAR-style) as `SeedItem`s with `cue_frames` from the window; for a video file the
    window counts the `num_frames` frames sampled from it (the episode's `video_num_frames`)."""
    files, seen = _Files(data_root, verify_images), set()

    def parse(row: dict, number: int) -> SeedItem:
        common = _seed_fields(row, seen)
        if (row.get("video") is None) == (row.get("frames") is None):
            raise _bad("give exactly one of 'video' (a file) or 'frames' (a list of images)")
        window = row.get("window", row.get("frames_window"))
        if window is not None and not (
            isinstance(window, list) and len(window) == 2 and all(type(k) is int for k in window)
        ):
            raise _bad(f"a window must be [start, end] frame numbers, got {window!r}")
        if window is not None and not 1 <= window[0] <= window[1]:
            raise _bad(f"a window needs 1 <= start <= end, got {window}")
        video = row.get("video")
        if video is not None:
            if not isinstance(video, str):
                raise _bad("'video' must be a file path")
            files.check(video, video_file=True)
            n_frames = num_frames
        else:
            video = _paths(row["frames"], "frames")
            if not video:
                raise _bad("'frames' is empty")
            for frame in video:
                files.check(frame)
            n_frames = len(video)
        if window is not None and window[1] > n_frames:
            raise _Skip("window outside video", f"{window} in {n_frames} frames")
        cue_frames = list(range(window[0], window[1] + 1)) if window else None
        return SeedItem(**common, video=video, cue_frames=cue_frames, needs_op=_needs_op(row, window is not None))

    return _run(path, parse)
