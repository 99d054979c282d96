"""pxr.evaluation.benchmarks: loaders on small files written in the released eval layout (parquet) and as JSONL, bad rows
reported and counted; the synthetic suites on held-out seeds."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pxr import scenes
from pxr.episode import VisualEpisode
from pxr.evaluation.benchmarks import BENCHMARKS, get_benchmark, kind_counts, load_benchmark, load_rows


@pytest.fixture
def root(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (400, 200), (200, 10, 10)).save(tmp_path / "images" / "a.jpg")
    Image.new("RGB", (300, 300), (10, 200, 10)).save(tmp_path / "images" / "b.png")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image at all")
    for k in range(1, 17):
        Image.new("RGB", (64, 48), (k * 10, 0, 0)).save(tmp_path / "images" / f"f{k:02d}.jpg")
    return tmp_path


def write_parquet(path, rows):
    columns = {name: [row.get(name) for row in rows] for name in dict.fromkeys(k for r in rows for k in r)}
    pq.write_table(pa.table(columns), path)
    return path


VSTAR_ROWS = [
    {"qid": "vstar-0", "question": "What colour is the bag?", "image": ["images/a.jpg"], "answer": ["A"],
     "is_video": False, "options": ["red", "green", "blue", "white"]},
    {"qid": "vstar-1", "question": "<image>\nWhat is the colour of the cup? (A) red (B) green (C) blue (D) white",
     "image": ["images/b.png"], "answer": ["B"], "is_video": False, "options": None},
    {"qid": "vstar-2", "question": "Is it there?", "image": ["images/missing.jpg"], "answer": ["A"], "is_video": False},
    {"qid": "vstar-3", "question": "Absolute?", "image": ["/etc/passwd"], "answer": ["A"], "is_video": False},
    {"qid": "vstar-4", "question": "Corrupt?", "image": ["images/broken.jpg"], "answer": ["A"], "is_video": False},
    {"qid": "vstar-0", "question": "Again?", "image": ["images/a.jpg"], "answer": ["A"], "is_video": False},
    {"qid": "vstar-6", "question": "No answer?", "image": ["images/a.jpg"], "answer": None, "is_video": False},
    {"qid": "vstar-7", "question": "", "image": ["images/a.jpg"], "answer": ["A"], "is_video": False},
    {"qid": "vstar-8", "question": "A video here?", "image": ["images/f01.jpg", "images/f02.jpg"], "answer": ["A"],
     "is_video": True},
    {"qid": "vstar-9", "question": "Escape?", "image": ["../outside.jpg"], "answer": ["A"], "is_video": False},
]  # fmt: skip


def test_released_parquet_layout_keeps_good_rows_and_counts_bad_ones(root):
    path = write_parquet(root / "vstar.parquet", VSTAR_ROWS)
    queries, report = load_rows(path, root, benchmark="vstar")
    assert [q.id for q in queries] == ["vstar-0", "vstar-1"]
    assert report.read == 10 and report.imported == 2 and report.n_skipped == 8
    assert dict(report.skipped) == {
        "missing file": 1, "unsafe path": 2, "corrupt image": 1, "duplicate qid": 1, "bad row": 3,
    }  # fmt: skip
    first, second = queries
    assert first.options == ["red", "green", "blue", "white"] and first.answer == "A"
    assert first.images == [(root / "images" / "a.jpg").resolve()] and first.video is None
    # options written in the question are not shown twice, but scoring reads letters and option text with them
    assert second.options is None and second.meta["options_for_scoring"] == ["red", "green", "blue", "white"]
    assert second.question == VSTAR_ROWS[1]["question"]  # verbatim, `<image>` kept, as the released evaluation
    [_, instructed], _ = load_rows(path, root, benchmark="vstar", question_prompt="instructed")
    assert instructed.question.startswith("What is the colour of the cup?")
    assert first.meta["benchmark"] == "vstar" and first.meta["kind"] == "vstar"
    assert get_benchmark("vstar").score("\\boxed{green}", second.answer, second.meta["options_for_scoring"]) == 1.0
    both = {**VSTAR_ROWS[1], "qid": "vstar-both", "options": ["red", "green", "blue", "white"]}
    [q], _ = load_rows(write_parquet(root / "both.parquet", [both]), root, benchmark="vstar")
    assert q.options is None and q.meta["options_for_scoring"] == ["red", "green", "blue", "white"]
    VisualEpisode(images=first.images)  # the paths open


def test_mvbench_rows_are_videos_of_frame_lists(root):
    frames = [f"images/f{k:02d}.jpg" for k in range(1, 17)]
    rows = [
        {"qid": "mvbench-action-0", "question": "What happens first?", "image": frames, "answer": "C",
         "is_video": True, "options": ["sit", "stand", "wave", "run"], "task": "action_sequence"},
        {"qid": "mvbench-action-1", "question": "An image row?", "image": ["images/a.jpg"], "answer": "A",
         "is_video": False},
    ]  # fmt: skip
    queries, report = load_rows(write_parquet(root / "mv.parquet", rows), root, benchmark="mvbench")
    assert report.imported == 1 and report.skipped == {"bad row": 1}
    [q] = queries
    assert q.images is None and len(q.video) == 16 and q.meta["kind"] == "action_sequence"
    assert VisualEpisode(video=q.video).n_inputs == 16


def test_jsonl_with_cues_broken_lines_and_wrong_types(root):
    lines = [
        json.dumps({"id": "u1", "question": "What digit?", "image": "images/a.jpg", "answer": 7,
                    "box": [100, 50, 200, 150], "needs_op": True, "kind": "read"}),
        json.dumps({"id": "u2", "question": "What colour?", "image": "images/b.png", "answer": "green",
                    "bbox": [0.1, 0.2, 0.3, 0.4], "needs_op": False}),
        json.dumps({"id": "u3", "question": "Which frame?", "frames": [f"images/f{k:02d}.jpg" for k in range(1, 9)],
                    "answer": "4", "window": [3, 4]}),
        json.dumps({"id": "u4", "question": "Box outside?", "image": "images/a.jpg", "answer": "1",
                    "box": [100, 50, 500, 150]}),
        json.dumps({"id": "u5", "question": "Window outside?", "frames": ["images/f01.jpg"], "answer": "1",
                    "window": [1, 3]}),
        json.dumps({"id": "u6", "question": "Options?", "image": "images/a.jpg", "answer": "A", "options": "A or B"}),
        json.dumps({"id": "u7", "question": "Needs op?", "image": "images/a.jpg", "answer": "A", "needs_op": "yes"}),
        json.dumps(["not", "an", "object"]),
        '{"id": "u9", "question": "truncat',
        json.dumps({"id": "u10", "question": "No image", "answer": "A"}),
    ]  # fmt: skip
    (root / "mine.jsonl").write_text("\n".join(lines) + "\n")
    queries, report = load_benchmark("jsonl", data_path=str(root / "mine.jsonl"))  # data root: the file's folder
    assert [q.id for q in queries] == ["u1", "u2", "u3"]
    assert report.read == 10 and report.n_skipped == 7
    assert report.skipped == {"box outside image": 1, "window outside video": 1, "bad row": 5}
    u1, u2, u3 = queries
    assert u1.meta["cue_box"] == [0.25, 0.25, 0.5, 0.75] and u1.meta["needs_op"] is True and u1.answer == "7"
    assert u2.meta["cue_box"] == [0.1, 0.2, 0.3, 0.4] and u2.meta["needs_op"] is False
    assert u3.meta["cue_frames"] == [3, 4] and len(u3.video) == 8 and u3.meta["cue_box"] is None
    assert "duplicate" not in str(report) and "u10" not in [q.id for q in queries]


def test_pxr_rl_query_records_read_with_pixel_cue_boxes(root):
    record = {"qid": "eval-read-00000", "question": "What digit?", "images": ["images/a.jpg"], "is_video": False,
              "answer": ["2"], "options": None, "kind": "read", "needs_op": True,
              "cue_boxes": [[40, 20, 80, 60], [100, 100, 120, 120]], "cue_frames": None, "meta": {}}  # fmt: skip
    (root / "eval_queries.jsonl").write_text(json.dumps(record) + "\n")
    [q], report = load_rows(root / "eval_queries.jsonl", root)
    assert report.n_skipped == 0 and q.meta["cue_box"] == [0.1, 0.1, 0.3, 0.6] and q.meta["kind"] == "read"


def test_benchmark_specific_instruction_and_scorers():
    assert set(BENCHMARKS) >= {
        "synthetic-zoom",
        "synthetic-zoom-named",
        "synthetic-video",
        "vstar",
        "tallyqa-complex",
        "infovqa",
        "mvbench",
        "jsonl",
    }
    tally, info = get_benchmark("tallyqa-complex"), get_benchmark("infovqa")
    assert tally.prompt_for("<image>\nHow many dogs?") == "<image>\nHow many dogs?"  # released: verbatim
    assert tally.prompt_for("<image>\nHow many dogs?", "instructed") == "How many dogs?\nAnswer with a single number."
    assert info.prompt_for("What year?", "instructed") == "What year?\nAnswer with a short word or phrase."
    with pytest.raises(ValueError, match="question_prompt"):
        tally.prompt_for("How many?", "short")
    assert tally.score("\\boxed{three}", "3") == 1.0 and info.metric == "anls"
    assert info.score("\\boxed{Londn}", ["london"]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="unknown benchmark"):
        get_benchmark("vstar2")
    with pytest.raises(FileNotFoundError, match="data_path"):
        load_benchmark("vstar", data_path="/nonexistent/vstar.parquet")
    with pytest.raises(ValueError, match="needs data_path"):
        load_benchmark("infovqa")


@pytest.mark.slow
def test_synthetic_suites_are_held_out_and_carry_their_cues(tmp_path):
    queries, report = load_benchmark("synthetic-zoom-named", out_dir=tmp_path, n_per_kind=1)
    assert [q.meta["kind"] for q in queries] == ["read", "count", "coarse"] and report.n_skipped == 0
    assert [q.meta["scene_seed"] for q in queries] == [scenes.suite_seed(2, 0)] * 3  # suite 2: neither 0 nor 1
    read = queries[0]
    assert read.meta["needs_op"] is True and all(0 <= v <= 1 for v in read.meta["cue_box"])
    assert queries[2].meta["needs_op"] is False
    # The main suite is the tile grid; a run's held-out split holding both families gives each benchmark its own.
    grid, _ = load_benchmark("synthetic-zoom", out_dir=tmp_path / "grid", n_per_kind=1)
    assert [q.meta["kind"] for q in grid] == ["tile_digit", "tile_colour"]
    assert grid[0].meta["needs_op"] is True and grid[1].meta["needs_op"] is False
    assert "row" in grid[0].question and grid[0].meta["cue_box"][2] - grid[0].meta["cue_box"][0] < 0.05
    videos, _ = load_benchmark("synthetic-video", out_dir=tmp_path, n_per_kind=1, max_items=1)
    assert len(videos) == 1 and videos[0].meta["cue_frames"] and len(videos[0].video) == 16


def test_whatever_a_row_holds_it_is_at_most_one_bad_row(root):
    good = Image.new("RGB", (64, 64), (0, 90, 0))
    good.save(root / "images" / "full.jpg", quality=95)
    data = (root / "images" / "full.jpg").read_bytes()
    (root / "images" / "truncated.jpg").write_bytes(data[: len(data) // 2])  # passes PIL's verify, fails to load
    rows = [
        {"qid": "long", "question": "q", "image": "x" * 5000, "answer": "A"},
        {"qid": "truncated", "question": "q", "image": "images/truncated.jpg", "answer": "A"},
        {"qid": "none-entry", "question": "q", "image": ["images/a.jpg", None], "answer": "A"},
        {"qid": "answer-map", "question": "q", "image": "images/a.jpg", "answer": {"x": 1}},
        {"qid": "is-video-text", "question": "q", "image": "images/a.jpg", "answer": "A", "is_video": "maybe"},
        {"qid": "bytes-text", "question": "q", "image": {"bytes": "garbage"}, "answer": "A"},
        {"qid": "letters", "question": "q", "image": "images/a.jpg", "answer": "A", "options": {"A": "x", "C": "y"}},
        {"qid": 3.5, "question": 7, "image": "images/a.jpg", "answer": "A"},
        {"qid": "number-options", "question": "How many?", "image": "images/a.jpg", "answer": "B", "options": [1, 2]},
        {"qid": "one-frame-video", "question": "q", "image": "images/a.jpg", "answer": "A", "is_video": True},
    ]  # fmt: skip
    (root / "edge.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    queries, report = load_rows(root / "edge.jsonl", root)
    assert [q.id for q in queries] == ["number-options", "one-frame-video"]
    assert report.skipped == {"bad row": 6, "corrupt image": 2}
    assert queries[0].options == ["1", "2"] and queries[1].video == [(root / "images" / "a.jpg").resolve()]


def test_kind_counts_are_rows_of_items_per_kind():
    from pxr.rollout import Query

    queries = [Query(f"q{i}", "?", images=[], answer="1", meta={"kind": kind}) for i, kind in enumerate("bab")]
    assert kind_counts(queries) == [{"kind": "a", "items": 1}, {"kind": "b", "items": 2}]
    assert kind_counts([]) == []
