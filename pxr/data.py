"""pxr's data records (paper §3, §4, §5): seed items, trajectories, RL queries; JSONL and parquet I/O
that survives damaged files; paths kept under a data root; the glue to `pxr.rollout.Query`.

Records hold no pixels: images are paths relative to a data root (for rollout output, the folder of the JSONL
`pxr.rollout.save_trajectories` writes). Readers skip and count bad lines instead of raising, so an interrupted
`append_jsonl` costs at most its last line. Importers of other formats: `pxr/synthesis/importers.py`.

Tests: tests/test_data.py.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ROLES = ("assistant", "observation")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")  # a video given as one file, not frames


class RecordError(ValueError):
    """A dict that is not a valid record; `reason` is short enough to count ("missing field 'id'")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _is_number(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _is_str(v) -> bool:
    return isinstance(v, str)


_STRS = _list_of(_is_str)
_BOX = _list_of(_is_number)
# Checks of decoded JSON values, keyed by the field annotations of the records below (their text, since this
# module postpones annotations); `from_dict` finds a field's check by its annotation.
_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": _is_str,
    "bool": lambda v: isinstance(v, bool),
    "bool | None": lambda v: v is None or isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list[str]": _STRS,
    "list[str] | None": lambda v: v is None or _STRS(v),
    "str | list[str]": lambda v: _is_str(v) or _STRS(v),
    "str | list[str] | None": lambda v: v is None or _is_str(v) or _STRS(v),
    "list[str] | str | None": lambda v: v is None or _is_str(v) or _STRS(v),
    "list[list[float]] | None": lambda v: v is None or _list_of(lambda b: _BOX(b) and len(b) == 4)(v),
    "list[int] | None": lambda v: v is None or _list_of(lambda k: type(k) is int and k >= 1)(v),
    "list[TrajectoryTurn]": _list_of(lambda t: isinstance(t, dict)),
}


class _Record:
    """`to_dict`/`from_dict` for the record dataclasses; `from_dict` checks every field's type (JSON values)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise RecordError("not an object", f"got {type(data).__name__}")
        values = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise RecordError(f"missing field '{f.name}'")
                continue
            if not _CHECKS[f.type](data[f.name]):
                raise RecordError(f"wrong type for '{f.name}'", f"expected {f.type}")
            values[f.name] = copy.deepcopy(data[f.name])
        return cls(**cls._convert(values))

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return values


@dataclass(kw_only=True)
class SeedItem(_Record):
    """A question on a visual input with its reference cue (paper §3). Boxes are absolute source pixels."""

    id: str
    question: str
    answer: str | list[str]  # or a list of acceptable answers
    kind: str = "unknown"  # read, count, coarse, flash, colour_change, annotated, ...
    images: list[str] | None = None  # relative to the data root
    video: list[str] | str | None = None  # frame paths, or a video file path
    options: list[str] | None = None
    cue_boxes: list[list[float]] | None = None
    cue_frames: list[int] | None = None  # 1-based, in the frames the model is shown
    needs_op: bool = True
    source: str = "unknown"  # synthetic, released-sft, user, ...
    meta: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class TrajectoryTurn(_Record):
    """One turn after the prompt. `trainable` defaults to False so that nothing is trained unless marked."""

    role: str  # "assistant" | "observation"
    text: str
    images: list[str] = field(default_factory=list)  # observations: the images the op returned
    trainable: bool = False

    @classmethod
    def _convert(cls, values):
        if values["role"] not in ROLES:
            raise RecordError("wrong value for 'role'", f"expected one of {', '.join(ROLES)}")
        return values


@dataclass(kw_only=True)
class TrajectoryRecord(_Record):
    """A recorded episode for SFT or analysis (paper §3): the query, then assistant and observation turns."""

    id: str
    seed_id: str
    variant: str  # single, wrong_crop, two_wrong, overlarge, wrong_frames, text_only, released, rollout
    prompt: str = "pixel"  # the prompt variant the turns were written for
    question: str
    options: list[str] | None = None
    answer: str | list[str] | None = None
    inputs: list[str] = field(default_factory=list)  # input images or video frames, relative
    is_video: bool = False
    turns: list[TrajectoryTurn] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, values):
        turns = []
        for turn in values.get("turns", []):
            try:
                turns.append(TrajectoryTurn.from_dict(turn))
            except RecordError as err:
                raise RecordError(f"turn: {err.reason}") from None
        return {**values, "turns": turns}


@dataclass(kw_only=True)
class RLQuery(_Record):
    """One RL (or evaluation) query, the released RL data's row plus the cue where it is known (paper §4, §5)."""

    qid: str
    question: str
    images: list[str] = field(default_factory=list)  # relative; for a video its frames (or one video file)
    is_video: bool = False
    answer: list[str]  # acceptable answers
    options: list[str] | None = None
    kind: str = "unknown"
    needs_op: bool | None = None  # None: not known (the released data does not say)
    cue_boxes: list[list[float]] | None = None
    cue_frames: list[int] | None = None
    meta: dict = field(default_factory=dict)


# -------------------------------------------------------------------------------------------------- JSONL


@dataclass
class ReadReport:
    """What a read found: lines (or rows) read, records kept, and the skipped ones counted by reason."""

    path: str = ""
    read: int = 0
    ok: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_seen: dict[str, int] = field(default_factory=dict)  # reason -> its first line (or row), 1-based

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    def skip(self, reason: str, line: int) -> None:
        self.reasons[reason] += 1
        self.first_seen.setdefault(reason, line)

    def __str__(self) -> str:
        text = f"{self.path}: read {self.read}, ok {self.ok}, skipped {self.skipped}"
        details = ", ".join(f"{r}: {n} (first at {self.first_seen[r]})" for r, n in self.reasons.most_common())
        return f"{text} ({details})" if details else text


def _as_dict(record) -> dict[str, Any]:
    return record.to_dict() if hasattr(record, "to_dict") else dict(record)


def _json_line(record) -> str:
    return json.dumps(_as_dict(record), ensure_ascii=False, allow_nan=False) + "\n"


def _decode(data: Any, cls, report: ReadReport, line: int) -> Any | None:
    if cls is None:
        if isinstance(data, dict):
            return data
        report.skip("not an object", line)
        return None
    try:
        return cls.from_dict(data)
    except RecordError as err:
        report.skip(err.reason, line)
        return None


def write_jsonl(path: str | Path, records: Iterable) -> Path:
    """All records, one JSON object per line; written beside the target and renamed, so never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as f:
        f.writelines(_json_line(r) for r in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return path


def cut_torn_tail(path: str | Path) -> bool:
    """Repair the end of a JSONL file that a writer killed mid-line left behind: a last line without its newline is
    cut off, unless it is whole JSON (killed between the record and its newline), which gets its newline. Returns
    whether the file changed. Without this the torn text stays in the middle of the file once more lines follow."""
    path = Path(path)
    if not path.exists():
        return False
    with path.open("rb+") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return False
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return False
        start = end  # the start of the last line: after the last newline, looking back a block at a time
        while start > 0:
            block = min(start, 1 << 16)
            f.seek(start - block)
            newline = f.read(block).rfind(b"\n")
            if newline >= 0:
                start = start - block + newline + 1
                break
            start -= block
        f.seek(start)
        tail = f.read()
        try:
            json.loads(tail.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            f.truncate(start)
        else:
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def append_jsonl(path: str | Path, record) -> None:
    """One record as one line, flushed and fsync'd. A line an earlier writer left unfinished is repaired first
    (`cut_torn_tail`), so the new record neither merges into it nor leaves it inside the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_torn_tail(path)
    with path.open("ab") as f:
        f.write(_json_line(record).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path, cls=None) -> tuple[list, ReadReport]:
    """The records of a JSONL file (dicts, or `cls.from_dict` of each), skipping and counting bad lines: invalid
    UTF-8 or JSON, a truncated last line, a value that is not an object, missing fields, wrong types."""
    report = ReadReport(str(path))
    records = []
    with Path(path).open("rb") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            report.read += 1
            try:
                data = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                report.skip("invalid utf-8", line)
                continue
            except (ValueError, RecursionError):
                report.skip("invalid json" if raw.endswith(b"\n") else "truncated last line", line)
                continue
            record = _decode(data, cls, report, line)
            if record is not None:
                records.append(record)
                report.ok += 1
    return records, report


# ------------------------------------------------------------------------------------------------ parquet

_JSON_COLUMNS_KEY = b"pxr_json_columns"


def _arrow_type(values: list):
    """The Arrow type of a column kept native (strings, booleans, lists of strings), or None for a JSON column:
    mixed, nested and numeric values (Arrow would turn ints into floats or infer unions)."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if all(isinstance(v, str) for v in present):
        return pa.string()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in present):
        return pa.list_(pa.string())
    return None


def write_parquet(path: str | Path, records: Iterable) -> Path:
    """Records as a parquet table: flat string/bool/list-of-string fields as Arrow columns, the rest as JSON
    strings (named in the file's metadata so that `read_parquet` decodes them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_as_dict(r) for r in records]
    names = list(dict.fromkeys(name for row in rows for name in row))
    arrays, json_columns = {}, []
    for name in names:
        values = [row.get(name) for row in rows]
        kind = _arrow_type(values)
        if kind is None:
            json_columns.append(name)
            values = [None if v is None else json.dumps(v, ensure_ascii=False, allow_nan=False) for v in values]
            kind = pa.string()
        arrays[name] = pa.array(values, type=kind)
    table = pa.table(arrays).replace_schema_metadata({_JSON_COLUMNS_KEY: json.dumps(json_columns).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def read_parquet(path: str | Path, cls=None) -> tuple[list, ReadReport]:
    """The rows of a parquet file (dicts, or `cls.from_dict` of each), bad rows skipped and counted as in
    `read_jsonl`. Also reads parquet written elsewhere (the released data): its nested columns arrive as lists."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    json_columns = json.loads((table.schema.metadata or {}).get(_JSON_COLUMNS_KEY, b"[]"))
    report = ReadReport(str(path))
    records = []
    for row_number, row in enumerate(table.to_pylist(), start=1):
        report.read += 1
        try:
            row.update({k: json.loads(row[k]) for k in json_columns if row.get(k) is not None})
        except (ValueError, RecursionError):
            report.skip("invalid json", row_number)
            continue
        record = _decode(row, cls, report, row_number)
        if record is not None:
            records.append(record)
            report.ok += 1
    return records, report


# -------------------------------------------------------------------------------------------------- paths


def resolve_under(root: str | Path, relative: str | os.PathLike) -> Path:
    """`root / relative` resolved (symlinks followed), refusing absolute paths and anything that ends up outside
    `root`. Missing files are not an error here: importers count them."""
    text = os.fspath(relative) if isinstance(relative, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"unsafe path {relative!r}: empty or not a string")
    if "\0" in text:
        raise ValueError(f"unsafe path {relative!r}: contains a NUL byte")
    if Path(text).is_absolute() or text.startswith(("/", "\\")):
        raise ValueError(f"unsafe path {text!r}: absolute paths are not allowed; give a path relative to the data root")
    try:
        base = Path(root).resolve()
        target = (base / text).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise ValueError(f"unsafe path {text!r}: {err}") from None
    if not target.is_relative_to(base):
        raise ValueError(f"unsafe path {text!r}: it resolves to {target}, outside the data root {base}")
    return target


# ---------------------------------------------------------------------------------------- stage-to-stage glue


def rl_query_from_seed(item: SeedItem) -> RLQuery:
    """The RL query of a seed item, its cue kept for the RaPR, zoom-IoU and frame-recall breakdowns."""
    video = [item.video] if isinstance(item.video, str) else item.video
    return RLQuery(
        qid=item.id,
        question=item.question,
        images=list(item.images or []) if video is None else list(video),
        is_video=video is not None,
        answer=list(item.answer) if isinstance(item.answer, list) else [item.answer],
        options=item.options,
        kind=item.kind,
        needs_op=item.needs_op,
        cue_boxes=item.cue_boxes,
        cue_frames=item.cue_frames,
        meta={"source": item.source, **item.meta},
    )


def _read_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def query_from_rl(query: RLQuery, data_root: str | Path, *, load: bool = False):
    """A `pxr.rollout.Query` for an RL query, its paths resolved under `data_root` and checked to exist. With
    `load` the images are read now; otherwise the episode reads them when it starts, so that a list of queries
    holds no pixels."""
    from pxr.rollout import Query  # torch is imported only by the stages that roll out

    paths = [resolve_under(data_root, p) for p in query.images]
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise FileNotFoundError(f"query {query.qid}: file(s) not found: {', '.join(missing)}")
    video_file = query.is_video and len(paths) == 1 and paths[0].suffix.lower() in VIDEO_SUFFIXES
    if load and not video_file:
        paths = [_read_rgb(p) for p in paths]
    meta = {k: getattr(query, k) for k in ("kind", "needs_op", "cue_boxes", "cue_frames")}
    return Query(
        id=query.qid,
        question=query.question,
        images=None if query.is_video else paths,
        video=(paths[0] if video_file else paths) if query.is_video else None,
        options=query.options,
        answer=query.answer[0] if len(query.answer) == 1 else list(query.answer),
        meta={**meta, **query.meta},
    )


def query_from_seed(item: SeedItem, data_root: str | Path, *, load: bool = False):
    """A `pxr.rollout.Query` for a seed item, its images (or frames, or video file) under `data_root`."""
    return query_from_rl(rl_query_from_seed(item), data_root, load=load)
