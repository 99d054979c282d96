"""Benchmarks by name (paper §5): a loader, a prompt, an answer kind, a scorer and a version for each.

`BENCHMARKS` holds:
- `synthetic-zoom` (the toy line's main suite: tiles addressed by position words, `tile_digit` / `tile_colour`),
  `synthetic-zoom-named` (the harder scenes whose target is named by colour and shape among look-alikes: `read`,
  `count`, `coarse`), `synthetic-video`: the built-in suites on held-out seeds (never the training suites' seeds),
  generated here or read from a notebook-10 run's held-out split (`eval_queries.jsonl`);
- `vstar` (multiple choice, accuracy), `tallyqa-complex` (counting, accuracy), `infovqa` (ANLS), `mvbench` (multiple
  choice over 16 frames): the released eval parquet layout or plain JSONL;
- `jsonl`: the user's own file in the same layout, answers scored automatically (`pxr.reward.is_correct` "auto").

The row layout (parquet or JSONL): `question`, `image` (a path, or a list of frame paths for a video), `answer` (one
or a list of acceptable answers), `qid`, `is_video`, and where present `options` (a list, or a {letter: text} map;
otherwise "(A) ..." options written in the question are found there and used for scoring). pxr's own RL-query
records (`images`, `cue_boxes`, `cue_frames`, `kind`, `needs_op`) read the same way. Optional cue columns:
`box`/`bbox`/`boxes` (normalized when all values lie in [0, 1], else pixels of the image) and `cue_frames` or a
`window` [start, end]. Paths are relative to a data root. A row that cannot be evaluated (bad field, unsafe or
missing path, corrupt image, repeated qid) is skipped and counted by reason in the `ImportReport`, never raised.

The question reaches the model as the released evaluation gave it (verbatim, a literal `<image>` included) unless
`question_prompt="instructed"` asks for pxr's short-answer instruction ("Answer with a single number." for TallyQA,
"Answer with a short word or phrase." for InfoVQA) with `<image>` removed; the choice is part of the protocol.

Each item becomes a `pxr.rollout.Query` whose meta carries the benchmark, the kind (for the breakdown: a `kind`,
`task` or `category` column, else the qid's prefix before the first "-"), `needs_op` where known, the cue box as
[0, 1] coordinates of image 1 (`cue_box`) and the cue frames.

Tests: tests/test_benchmarks.py (fixture files in the released layouts, bad rows counted).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pxr import data
from pxr.records import EVAL_QUERIES
from pxr.rollout import Query
from pxr.scoring import score_response
from pxr.synthesis import synth_run
from pxr.synthesis.importers import ImportReport, _Files, _run, _Skip

GRID_KINDS = ("tile_digit", "tile_colour")
NAMED_KINDS = ("read", "count", "coarse")
VIDEO_KINDS = ("flash", "colour_change")
# The scene kinds each synthetic benchmark holds.
SYNTHETIC_KINDS = {"synthetic-zoom": GRID_KINDS, "synthetic-zoom-named": NAMED_KINDS, "synthetic-video": VIDEO_KINDS}
HELD_OUT_SPLIT = EVAL_QUERIES  # notebook 10's held-out split
_OPTION_IN_QUESTION_RE = re.compile(r"\(([A-H])\)\s*(.+?)(?=\s*\([A-H]\)|\n|$)")
_IMAGE_TOKEN_RE = re.compile(r"<image>\s*|<video>\s*")
QUESTION_PROMPTS = ("released", "instructed")


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark. `version` changes whenever loading, prompting or scoring changes, so that results recorded
    under one version stay comparable with each other."""

    name: str
    version: str
    answer_kind: str  # a `pxr.scoring.ANSWER_KINDS` entry
    metric: str  # "accuracy" or "anls"
    media: str  # "image", "video" or "any"
    instruction: str = ""  # appended to each question under question_prompt "instructed"
    description: str = ""

    def score(self, response: str, answer, options: list[str] | None = None) -> float:
        return score_response(response, answer, self.answer_kind, options)

    def prompt_for(self, question: str, question_prompt: str = "released") -> str:
        """The question as the model reads it. "released" (the default): verbatim, as the released evaluation gave
        it, a literal `<image>` included; "instructed": `<image>` removed and pxr's short-answer instruction
        appended (a different prompt: its scores do not compare with the released ones)."""
        if question_prompt not in QUESTION_PROMPTS:
            raise ValueError(f"question_prompt must be one of {', '.join(QUESTION_PROMPTS)}, got {question_prompt!r}")
        if question_prompt == "released":
            return question
        question = _IMAGE_TOKEN_RE.sub("", question).strip()
        return f"{question}\n{self.instruction}" if self.instruction else question


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "synthetic-zoom", "2", "auto", "accuracy", "image",
            description="held-out tile-grid scenes: the tile named by its row and column",
        ),
        Benchmark(
            "synthetic-zoom-named", "1", "auto", "accuracy", "image",
            description="held-out read/count/coarse scenes: the target named by colour and shape among look-alikes",
        ),
        Benchmark("synthetic-video", "1", "auto", "accuracy", "video", description="held-out flash/colour-change videos"),
        # Version 2: questions verbatim by default (question_prompt), InfoVQA scored by the official ANLS rule.
        Benchmark("vstar", "2", "mc", "accuracy", "image", description="V* Bench: high-resolution fine detail"),
        Benchmark(
            "tallyqa-complex", "2", "number", "accuracy", "image",
            instruction="Answer with a single number.", description="TallyQA complex counting",
        ),
        Benchmark(
            "infovqa", "2", "anls", "anls", "image",
            instruction="Answer with a short word or phrase.", description="InfographicVQA",
        ),
        Benchmark("mvbench", "2", "mc", "accuracy", "video", description="MVBench: 20 temporal tasks, 16 frames"),
        Benchmark("jsonl", "2", "auto", "accuracy", "any", description="your own file in the same layout"),
    )
}  # fmt: skip


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


# ------------------------------------------------------------------------------------------------- rows


def _bad(detail: str) -> _Skip:
    return _Skip("bad row", detail)


def _text(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"'{name}' must be a non-empty string")
    return value


def _finite(v) -> bool:
    return (type(v) is int) or (type(v) is float and math.isfinite(v))


def _answers(value) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all((isinstance(v, str) and v.strip()) or _finite(v) for v in values):
        raise _bad("'answer' must be a string, a number, or a non-empty list of them")
    return [str(v).strip() for v in values]


def _options(row: dict, question: str) -> tuple[list[str] | None, list[str] | None]:
    """(options shown by pxr, options used only for scoring): a column is shown; options the question already
    writes out are only used to read letters and option text."""
    value = row.get("options", row.get("choices"))
    if isinstance(value, dict):
        keys = sorted(value)
        if keys != [chr(ord("A") + i) for i in range(len(keys))]:
            raise _bad("'options' as a map must have the keys A, B, C, ...")
        value = [value[k] for k in keys]
    if value is not None:
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, str) or _finite(v) for v in value)
        ):
            raise _bad("'options' must be a non-empty list of strings")
        value = [str(v) for v in value]
        # Options the question already lists are not shown a second time.
        return (None if len(_options_in(question)) == len(value) else value), value
    found = _options_in(question)
    return None, (found or None)


def _options_in(question: str) -> list[str]:
    """The "(A) ... (B) ..." options a question writes out (at least two, lettered in order), else []."""
    found = _OPTION_IN_QUESTION_RE.findall(question)
    letters = [letter for letter, _ in found]
    if len(found) >= 2 and letters == [chr(ord("A") + i) for i in range(len(found))]:
        return [text.strip() for _, text in found]
    return []


def _media(row: dict, files: _Files, decoded: list) -> tuple[list, bool]:
    """The row's visual input as paths (or images decoded from embedded bytes) and whether it is a video."""
    value = next((row[k] for k in ("image", "images", "video", "frames") if row.get(k) is not None), None)
    if value is None:
        raise _bad("no 'image' (a path or a list of frame paths)")
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise _bad("'image' is an empty list")
    is_video = row.get("is_video")
    if is_video is None:
        is_video = row.get("video") is not None or row.get("frames") is not None
    if is_video in (0, 1, "true", "false", "True", "False"):
        is_video = is_video in (1, "true", "True")
    if not isinstance(is_video, bool):
        raise _bad("'is_video' must be true or false")
    media = []
    for item in values:
        if isinstance(item, dict):  # a datasets Image struct: {"bytes": ..., "path": ...}
            if item.get("bytes"):
                try:
                    media.append(Image.open(io.BytesIO(item["bytes"])).convert("RGB"))
                except Exception as err:  # PIL raises many types for bad bytes
                    raise _Skip("corrupt image", f"embedded image: {err}") from None
                decoded.append(media[-1].size)
                continue
            item = item.get("path")
        if not isinstance(item, str) or not item.strip():
            raise _bad(f"image entry {item!r} is not a path")
        video_file = is_video and len(values) == 1 and item.lower().endswith(data.VIDEO_SUFFIXES)
        size = files.check(item, video_file=video_file)
        if size is not None and files.verify:
            _decode_once(files, item)
        decoded.append(size)
        media.append(data.resolve_under(files.root, item))
    return media, is_video


def _decode_once(files: _Files, relative: str) -> None:
    """Decode the whole image once per path: PIL's `verify` passes a truncated JPEG that the episode cannot load."""
    key = ("decoded", relative)
    if key not in files.seen:
        try:
            with Image.open(data.resolve_under(files.root, relative)) as image:
                image.load()
            files.seen[key] = None
        except Exception as err:  # PIL raises many types for damaged files
            files.seen[key] = _Skip("corrupt image", f"{relative}: {err}")
    if isinstance(files.seen[key], _Skip):
        raise _Skip(files.seen[key].reason, files.seen[key].detail)


def _cue_box(row: dict, size) -> list[float] | None:
    """The union of the row's cue boxes in [0, 1] coordinates of image 1."""
    raw = next((row[k] for k in ("cue_boxes", "boxes", "box", "bbox", "cue_box") if row.get(k) is not None), None)
    if raw is None:
        return None
    boxes = raw if isinstance(raw, list) and raw and isinstance(raw[0], (list, tuple)) else [raw]
    clean = []
    for box in boxes:
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_finite(v) for v in box)):
            raise _bad(f"a box must be 4 numbers [x1, y1, x2, y2], got {box!r}")
        if not (box[0] < box[2] and box[1] < box[3]):
            raise _bad(f"a box needs x1 < x2 and y1 < y2, got {box}")
        if max(box) > 1:
            if size is None:
                raise _bad("a pixel box needs an image whose size is known")
            w, h = size
            if min(box) < 0 or box[2] > w or box[3] > h:
                raise _Skip("box outside image", f"{box} in a {w}x{h} image")
            box = [box[0] / w, box[1] / h, box[2] / w, box[3] / h]
        elif min(box) < 0:
            raise _Skip("box outside image", f"{box}")
        clean.append([float(v) for v in box])
    return [min(b[0] for b in clean), min(b[1] for b in clean), max(b[2] for b in clean), max(b[3] for b in clean)]


def _cue_frames(row: dict, n_frames: int) -> list[int] | None:
    frames, window = row.get("cue_frames"), row.get("window")
    if frames is None and window is not None:
        if not (isinstance(window, list) and len(window) == 2 and all(type(k) is int for k in window)):
            raise _bad(f"a window must be [start, end] frame numbers, got {window!r}")
        frames = list(range(window[0], window[1] + 1))
    if frames is None:
        return None
    if not (isinstance(frames, list) and frames and all(type(k) is int for k in frames)):
        raise _bad("'cue_frames' must be a non-empty list of frame numbers")
    if min(frames) < 1 or max(frames) > n_frames:
        raise _Skip("window outside video", f"{frames} in {n_frames} frames")
    return frames


def _kind(row: dict, qid: str) -> str:
    for key in ("kind", "task", "category", "question_type"):
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key].strip()
    return qid.split("-", 1)[0] if "-" in qid else "all"


def load_rows(
    path, data_root=None, benchmark: str = "jsonl", *, verify_images: bool = True, question_prompt: str = "released"
):
    """The items of a parquet, JSON-list or JSONL file as `Query`s, with the `ImportReport` of what was skipped.
    `data_root` defaults to the file's folder; `question_prompt` see `Benchmark.prompt_for`."""
    bench = get_benchmark(benchmark)
    bench.prompt_for("", question_prompt)  # an unknown choice fails before any row is read
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} not found; set data_path to a parquet or JSONL file")
    files, seen = _Files(data_root or path.parent, verify_images), set()

    def parse(row: dict, number: int) -> Query:
        try:
            return parse_row(row, number)
        except _Skip:
            raise
        except Exception as err:  # a row must never end the run: whatever it holds, it is one bad row
            raise _Skip("bad row", f"{type(err).__name__}: {str(err)[:200]}") from None

    def parse_row(row: dict, number: int) -> Query:
        raw_id = row.get("qid", row.get("id"))
        qid = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id).strip() else f"row-{number}"
        if qid in seen:
            raise _Skip("duplicate qid", qid)
        question = _text(row.get("question"), "question")
        answers = _answers(row.get("answer"))
        shown_options, scoring_options = _options(row, question)
        sizes: list = []
        media, is_video = _media(row, files, sizes)
        if bench.media != "any" and is_video != (bench.media == "video"):
            raise _bad(f"a {'video' if is_video else 'image'} row in the {bench.media} benchmark {bench.name}")
        needs_op = row.get("needs_op")
        if needs_op is not None and not isinstance(needs_op, bool):
            raise _bad("'needs_op' must be true or false")
        meta = {
            "benchmark": bench.name,
            "kind": _kind(row, qid),
            "needs_op": needs_op,
            "cue_box": None if is_video else _cue_box(row, sizes[0] if sizes else None),
            "cue_frames": _cue_frames(row, len(media)) if is_video else None,
            "options_for_scoring": scoring_options,
        }
        if isinstance(row.get("meta"), dict):  # pxr's own records keep their extra facts (scene seed, cue name)
            meta = {**row["meta"], **meta}
        seen.add(qid)
        single_file = (
            is_video
            and len(media) == 1
            and isinstance(media[0], Path)
            and media[0].suffix.lower() in data.VIDEO_SUFFIXES
        )
        return Query(
            id=qid,
            question=bench.prompt_for(question, question_prompt),
            images=None if is_video else media,
            video=(media[0] if single_file else media) if is_video else None,
            options=shown_options,
            answer=answers[0] if len(answers) == 1 else answers,
            meta=meta,
        )

    return _run(path, parse)


def load_synthetic(
    benchmark: str, out_dir, *, n_per_kind: int = 4, suite_seed: int = 2, source: str | Path = ""
) -> tuple[list[Query], ImportReport]:
    """A synthetic suite: the image or video kinds of a notebook-10 run's held-out split when `source` names the run
    (or its `eval_queries.jsonl`), else `n_per_kind` scenes per kind generated under `out_dir` from `suite_seed`
    (held out: notebook 10 trains on its seed and seed + 1 and holds out seed + 2, the default here for seed 0)."""
    bench = get_benchmark(benchmark)
    kinds = SYNTHETIC_KINDS[bench.name]
    if source:
        source = Path(source)
        path = source / HELD_OUT_SPLIT if source.is_dir() else source
        queries, report = load_rows(path, path.parent, benchmark="jsonl")
    else:
        out = Path(out_dir)
        items = [
            i for kind in kinds for i in synth_run.write_seed_items(kind, n_per_kind, suite_seed, out, split="bench")
        ]
        path = out / "bench_queries.jsonl"
        synth_run.export_queries(items, path)
        queries, report = load_rows(path, out, benchmark="jsonl")
    kept = [q for q in queries if q.meta["kind"] in kinds]
    for q in kept:
        q.meta["benchmark"] = bench.name
    return kept, report


def load_benchmark(
    name: str,
    *,
    data_path: str = "",
    data_root: str = "",
    out_dir=None,
    n_per_kind: int = 4,
    suite_seed: int = 2,
    max_items: int = 0,
    question_prompt: str = "released",
) -> tuple[list[Query], ImportReport]:
    """The items of benchmark `name` (at most `max_items` when > 0, in file order) and the report of skipped rows;
    `question_prompt` see `Benchmark.prompt_for`."""
    bench = get_benchmark(name)
    if name.startswith("synthetic-"):
        if not data_path and out_dir is None:
            raise ValueError(f"{name} needs data_path (a notebook-10 run) or out_dir to generate its scenes in")
        queries, report = load_synthetic(name, out_dir, n_per_kind=n_per_kind, suite_seed=suite_seed, source=data_path)
    else:
        if not data_path:
            raise ValueError(f"benchmark {bench.name} needs data_path: its parquet or JSONL file")
        queries, report = load_rows(data_path, data_root or None, benchmark=name, question_prompt=question_prompt)
    return (queries[:max_items] if max_items > 0 else queries), report


def kind_counts(queries: list[Query]) -> list[dict]:
    """Rows of items per kind (`meta["kind"]`), kinds in alphabetical order, for a notebook's table."""
    counts: dict[str, int] = {}
    for query in queries:
        counts[query.meta["kind"]] = counts.get(query.meta["kind"], 0) + 1
    return [{"kind": kind, "items": n} for kind, n in sorted(counts.items())]
