"""pxr.data and pxr.synthesis.importers: record round-trips, damaged files, safe paths, the released and annotated importers."""

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pxr import data
from pxr.data import (
    RecordError,
    RLQuery,
    SeedItem,
    TrajectoryRecord,
    TrajectoryTurn,
    append_jsonl,
    cut_torn_tail,
    query_from_seed,
    read_jsonl,
    read_parquet,
    resolve_under,
    rl_query_from_seed,
    write_jsonl,
    write_parquet,
)
from pxr.synthesis.importers import (
    import_annotated_images,
    import_annotated_videos,
    import_released_rl,
    import_released_sft,
    mask_wrong_ops,
)

SEED = SeedItem(
    id="read-1",
    question="What digit is in the red triangle?",
    answer="7",
    kind="read",
    images=["scenes/read-1.png"],
    cue_boxes=[[1100.0, 800.0, 1140.0, 840.0]],
    source="synthetic",
    meta={"cue_name": "the red triangle", "seed": 3},
)
VIDEO_SEED = SeedItem(
    id="flash-1",
    question="Which digit flashes?",
    answer=["4", "four"],
    kind="flash",
    video=[f"v/{k}.png" for k in range(1, 5)],
    options=["4", "5"],
    cue_frames=[2, 3],
    source="synthetic",
)
TRAJECTORY = TrajectoryRecord(
    id="read-1/wrong_crop",
    seed_id="read-1",
    variant="wrong_crop",
    question="What digit?",
    answer="7",
    inputs=["images/read-1/1.png"],
    turns=[
        TrajectoryTurn(role="assistant", text='<tool_call>{"name": "zoom_in"}</tool_call>', trainable=False),
        TrajectoryTurn(role="observation", text="Here is image 2", images=["images/read-1/2.png"]),
        TrajectoryTurn(role="assistant", text="\\boxed{7}", trainable=True),
    ],
    meta={"ops": 1},
)
QUERY = RLQuery(qid="vstar-1", question="Q?", images=["a.png"], answer=["A", "a"], options=["x", "y"], needs_op=True)
RECORDS = [SEED, VIDEO_SEED, TRAJECTORY, QUERY]


# --------------------------------------------------------------------------------------------- records


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record):
    again = type(record).from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again is not record


@pytest.mark.parametrize("records", [[SEED, VIDEO_SEED], [TRAJECTORY, TRAJECTORY], [QUERY]], ids=["seed", "traj", "rl"])
def test_records_round_trip_through_jsonl_and_parquet(tmp_path, records):
    cls = type(records[0])
    write_jsonl(tmp_path / "r.jsonl", records)
    from_jsonl, jsonl_report = read_jsonl(tmp_path / "r.jsonl", cls)
    write_parquet(tmp_path / "r.parquet", records)
    from_parquet, parquet_report = read_parquet(tmp_path / "r.parquet", cls)
    assert from_jsonl == records and from_parquet == records
    assert (jsonl_report.ok, jsonl_report.skipped, parquet_report.ok, parquet_report.skipped) == (len(records), 0) * 2


def test_parquet_keeps_flat_columns_native_and_mixed_ones_as_json(tmp_path):
    write_parquet(tmp_path / "s.parquet", [SEED, VIDEO_SEED])
    schema = pq.read_schema(tmp_path / "s.parquet")
    assert schema.field("question").type == pa.string() and schema.field("needs_op").type == pa.bool_()
    assert schema.field("options").type == pa.list_(pa.string())
    # "7" next to ["4", "four"] would be an Arrow union; boxes hold numbers; meta is free-form
    assert {"answer", "cue_boxes", "meta"} <= set(json.loads(schema.metadata[b"pxr_json_columns"]))
    write_parquet(tmp_path / "empty.parquet", [])
    assert read_parquet(tmp_path / "empty.parquet", SeedItem)[0] == []


@pytest.mark.parametrize(
    ("cls", "value", "reason"),
    [
        (SeedItem, {"question": "q", "answer": "a"}, "missing field 'id'"),
        (SeedItem, {"id": "x", "question": "q", "answer": 7}, "wrong type for 'answer'"),
        (SeedItem, {"id": "x", "question": "q", "answer": "a", "cue_frames": [True]}, "wrong type for 'cue_frames'"),
        (SeedItem, {"id": "x", "question": "q", "answer": "a", "cue_frames": [0]}, "wrong type for 'cue_frames'"),
        (SeedItem, {"id": "x", "question": "q", "answer": "a", "cue_boxes": [[1, 2, 3]]}, "wrong type for 'cue_boxes'"),
        (TrajectoryTurn, {"role": "user", "text": "t"}, "wrong value for 'role'"),
        (TrajectoryRecord, {**TRAJECTORY.to_dict(), "turns": [{"role": "assistant"}]}, "turn: missing field 'text'"),
        (RLQuery, {"qid": "q", "question": "?", "answer": "A"}, "wrong type for 'answer'"),
        (RLQuery, ["not", "a", "dict"], "not an object"),
    ],
)
def test_from_dict_names_what_is_wrong(cls, value, reason):
    with pytest.raises(RecordError) as err:
        cls.from_dict(value)
    assert err.value.reason == reason


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = sorted({f for r in RECORDS for f in r.to_dict()} | {"role", "text", "trainable"})


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([SeedItem, TrajectoryTurn, TrajectoryRecord, RLQuery]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=12),
)
@pytest.mark.slow
def test_from_dict_raises_only_record_errors(cls, value):
    try:
        record = cls.from_dict(value)
    except RecordError:
        return
    assert cls.from_dict(json.loads(json.dumps(record.to_dict()))) == record


# ------------------------------------------------------------------------------------------- damaged files


def test_read_jsonl_keeps_good_lines_and_counts_bad_ones_by_reason(tmp_path):
    path = tmp_path / "seeds.jsonl"
    good = [json.dumps(r.to_dict()).encode() for r in (SEED, VIDEO_SEED)]
    missing_id = {k: v for k, v in SEED.to_dict().items() if k != "id"}
    lines = [
        good[0],
        b"{not json",
        b"",
        b"[1, 2]",
        json.dumps(missing_id).encode(),
        json.dumps({**SEED.to_dict(), "images": "one.png"}).encode(),
        b"\xff\xfe{}",
        good[1],
        good[0][:40],  # the writer was interrupted here: no newline
    ]
    path.write_bytes(b"\n".join(lines))
    records, report = read_jsonl(path, SeedItem)
    assert records == [SEED, VIDEO_SEED]
    assert (report.read, report.ok, report.skipped) == (8, 2, 6)
    assert report.reasons == Counter(
        {
            "invalid json": 1,
            "not an object": 1,
            "missing field 'id'": 1,
            "wrong type for 'images'": 1,
            "invalid utf-8": 1,
            "truncated last line": 1,
        }
    )
    assert report.first_seen["truncated last line"] == 9
    assert "truncated last line: 1" in str(report) and "ok 2" in str(report)
    plain, plain_report = read_jsonl(path)  # without a record type every JSON object is kept
    assert len(plain) == 4 and plain_report.reasons["not an object"] == 1


def test_append_jsonl_syncs_each_line_and_cuts_a_line_left_unfinished(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    path = tmp_path / "out" / "log.jsonl"
    append_jsonl(path, QUERY)
    with path.open("ab") as f:
        f.write(b'{"qid": "half')  # a writer killed mid-line
    append_jsonl(path, {**QUERY.to_dict(), "qid": "vstar-2"})
    records, report = read_jsonl(path, RLQuery)
    assert [r.qid for r in records] == ["vstar-1", "vstar-2"]
    # The torn text is gone, not left as a bad line in the middle of the file (a kill, then a rerun, did that).
    assert report.reasons == Counter() and path.read_bytes().count(b"\n") == 2 and len(synced) == 3


def test_a_torn_tail_is_cut_and_a_whole_last_record_keeps_its_line(tmp_path):
    path = tmp_path / "t.jsonl"
    assert not cut_torn_tail(path)  # no file: nothing to do
    write_jsonl(path, [QUERY])
    assert not cut_torn_tail(path)  # ends with a newline: untouched
    whole = json.dumps({**QUERY.to_dict(), "qid": "vstar-2"}).encode()
    with path.open("ab") as f:
        f.write(whole)  # killed between the record and its newline
    assert cut_torn_tail(path) and path.read_bytes().endswith(whole + b"\n")
    with path.open("ab") as f:
        f.write(b'{"qid": "vstar-3", "ques' + "é".encode()[:1])  # cut inside a UTF-8 character too
    assert cut_torn_tail(path)
    assert [r.qid for r in read_jsonl(path, RLQuery)[0]] == ["vstar-1", "vstar-2"]
    path.write_bytes(b'{"qid": ' + b"x" * 200_000)  # one long torn line, no newline anywhere
    assert cut_torn_tail(path) and path.read_bytes() == b""


def test_write_jsonl_replaces_the_file_whole(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [QUERY, QUERY])
    write_jsonl(path, [QUERY])
    assert len(read_jsonl(path, RLQuery)[0]) == 1 and os.listdir(tmp_path) == ["t.jsonl"]
    with pytest.raises(ValueError):  # NaN is not JSON; nothing half-written is left behind
        write_jsonl(path, [{"x": float("nan")}])
    assert read_jsonl(path, RLQuery)[0] == [QUERY]


FRAGMENTS = [json.dumps(r.to_dict()).encode() for r in RECORDS] + [b"[[[[[[", b"{}", b"null", b'{"turns": [1]}']


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(FRAGMENTS), max_size=8), st.booleans())
def test_read_jsonl_never_raises_on_any_bytes(tmp_path_factory, pieces, cut):
    blob = b"\n".join(pieces)
    path = tmp_path_factory.getbasetemp() / "arbitrary.jsonl"
    path.write_bytes(blob[: len(blob) // 2] if cut else blob)
    for cls in (None, SeedItem, TrajectoryRecord, RLQuery):
        records, report = read_jsonl(path, cls)
        assert report.ok == len(records) and report.ok + report.skipped == report.read


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=200_000).map(lambda b: b"[" * len(b)))
def test_read_jsonl_survives_deep_nesting(tmp_path_factory, blob):
    path = tmp_path_factory.getbasetemp() / "deep.jsonl"
    path.write_bytes(blob + b"\n")
    assert read_jsonl(path)[1].skipped == 1


# --------------------------------------------------------------------------------------------------- paths


def test_resolve_under_keeps_paths_inside_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (root / "a" / "b.png").write_bytes(b"x")
    (root / "escape.png").symlink_to(outside / "secret.png")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside.png").symlink_to(root / "a" / "b.png")
    assert resolve_under(root, "a/b.png") == (root / "a" / "b.png").resolve()
    assert resolve_under(root, "a/../a/b.png") == resolve_under(root, "inside.png")
    assert resolve_under(root, "not/there.png").name == "there.png"  # missing files are the importers' to count
    for bad, words in [
        ("../x", "outside"),
        ("a/../../x", "outside"),
        ("/etc/passwd", "absolute"),
        ("escape.png", "outside"),
        ("escape_dir/secret.png", "outside"),
        ("", "empty"),
        ("a\0b", "NUL"),
        (7, "not a string"),
    ]:
        with pytest.raises(ValueError, match=words):
            resolve_under(root, bad)


# ----------------------------------------------------------------------------------------------- importers


def png(root: Path, relative: str, size=(64, 48)) -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return relative


def corrupt(root: Path, relative: str) -> str:
    png(root, relative)
    path = root / relative
    path.write_bytes(path.read_bytes()[:-30])  # cut inside the image data
    return relative


def user(*items):
    return {"role": "user", "content": list(items)}


def assistant(text):
    return {"role": "assistant", "content": [{"text": text}]}


GUIDELINE = "\n\n\n\nGuidelines: Understand the given visual information and the user query. Reason step by step."
CROP_CALL = '<tool_call>{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": 1}}</tool_call>'


def sft_records(root: Path) -> list[dict]:
    for k in range(1, 5):
        png(root, f"videos/v1/{k}.png")
    system = {"role": "system", "content": [{"text": "You are a helpful assistant. # Tools ..."}]}
    image_traj = [
        system,
        user({"image": png(root, "images/1.png")}, {"text": "What is written on the sign?" + GUIDELINE}),
        assistant("The sign is small. Now I will zoom in to look clearer at the sign.\n" + CROP_CALL),
        user({"text": "\nHere is the cropped image (Image Size: 56x56):"}, {"image": png(root, "images/1_crop.png")}),
        assistant("The sign reads OPEN. \\boxed{OPEN}"),
    ]
    video_traj = [
        system,
        user({"video": [f"videos/v1/{k}.png" for k in range(1, 5)]}, {"text": "What happens?" + GUIDELINE}),
        assistant('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [2, 3]}}</tool_call>'),
        user(
            {"text": "\nHere are the selected frames (Frame Size: 64x48, Numbered 2 to 3):"},
            {"image": "videos/v1/2.png"},
            {"image": "videos/v1/3.png"},
        ),
        assistant("A digit flashes. \\boxed{B}"),
    ]
    error_then_text = [
        user({"image": "images/1.png"}, {"text": "Colour of the sign?"}),
        assistant(CROP_CALL),
        user({"text": "\nExecution error:\nCropped image is too small: 3x3\n"}),
        assistant("It is red. \\boxed{red}"),
    ]
    return [
        {"qid": "web-1", "message_list": image_traj},
        {"qid": "star-1", "message_list": video_traj},
        {"qid": "web-2", "message_list": error_then_text, "answer": "red"},
        # skipped: a missing input, a corrupt crop, an unsafe input, a chat turn, no final answer, no messages
        {"qid": "x1", "message_list": [user({"image": "images/gone.png"}, {"text": "Q"}), assistant("\\boxed{1}")]},
        {
            "qid": "x2",
            "message_list": image_traj[:3]
            + [user({"text": "Here is the cropped image"}, {"image": corrupt(root, "images/bad.png")}), image_traj[4]],
        },
        {"qid": "x3", "message_list": [user({"image": "../etc/passwd"}, {"text": "Q"}), assistant("\\boxed{1}")]},
        {"qid": "x4", "message_list": image_traj[:3] + [user({"text": "Thanks! Now answer."}), image_traj[4]]},
        {"qid": "x5", "message_list": image_traj[:4]},
        {"qid": "x6"},
        {"qid": "web-1", "message_list": image_traj},
    ]


SFT_SKIPS = Counter({"missing file": 1, "corrupt image": 1, "unsafe path": 1, "bad row": 3, "duplicate id": 1})


def write_sft(path: Path, records: list[dict], layout: str) -> Path:
    if layout == "json":
        path.write_text(json.dumps(records, indent=1))
    elif layout == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:  # parquet, message_list as JSON text (the nested form is tested below)
        rows = [
            {"qid": r["qid"], "message_list": json.dumps(r["message_list"]) if "message_list" in r else None}
            for r in records
        ]
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("layout", ["json", "jsonl", "parquet"])
def test_import_released_sft(tmp_path, layout, capsys):
    path = write_sft(tmp_path / f"sft.{layout}", sft_records(tmp_path), layout)
    records, report = import_released_sft(path, tmp_path)
    assert capsys.readouterr().out == ""
    assert (report.read, report.imported, report.skipped) == (10, 3, SFT_SKIPS)
    image, video, text = records
    assert (image.id, image.variant, image.prompt, image.is_video) == ("web-1", "released", "pixel-reasoner-v1", False)
    assert image.question == "What is written on the sign?" and image.inputs == ["images/1.png"]
    assert [(t.role, t.trainable, t.images) for t in image.turns] == [
        ("assistant", True, []),
        ("observation", False, ["images/1_crop.png"]),
        ("assistant", True, []),
    ]
    assert image.answer == "OPEN" and image.meta["error_turns_annotated"] is False
    assert video.is_video and len(video.inputs) == 4 and video.turns[1].images == ["videos/v1/2.png", "videos/v1/3.png"]
    assert text.turns[1].role == "observation" and text.turns[1].text.startswith("\nExecution error")
    assert [t.trainable for t in text.turns] == [False, False, True]  # the failed call is a wrong op
    assert (text.meta["mask_rule"], text.meta["masked_turns"], image.meta["masked_turns"]) == ("wrong_ops", 1, 0)
    assert text.answer == "red" and text.question == "Colour of the sign?"
    assert "missing file: 1" in str(report)


def test_import_released_sft_reads_nested_parquet(tmp_path):
    records = sft_records(tmp_path)[:2]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "sft.parquet")  # content items become structs
    imported, report = import_released_sft(tmp_path / "sft.parquet", tmp_path)
    assert report.imported == 2 and [len(r.turns) for r in imported] == [3, 3]
    assert imported[1].inputs == [f"videos/v1/{k}.png" for k in range(1, 5)]


def test_import_released_rl(tmp_path):
    frames = [png(tmp_path, f"frames/{k}.png") for k in range(1, 4)]
    rows = [
        {"qid": "vstar-1", "question": "Q1", "image": [png(tmp_path, "img/a.png")], "is_video": False, "answer": ["A"]},
        {"qid": "star-1", "question": "Q2", "image": frames, "is_video": True, "answer": ["B", "b"]},
        {"qid": "text-1", "question": "Q3", "image": None, "is_video": False, "answer": ["3"]},
        {"qid": "vstar-1", "question": "again", "image": ["img/a.png"], "is_video": False, "answer": ["A"]},
        {"qid": "m", "question": "Q", "image": ["img/missing.png"], "is_video": False, "answer": ["A"]},
        {"qid": "c", "question": "Q", "image": [corrupt(tmp_path, "img/c.png")], "is_video": False, "answer": ["A"]},
        {"qid": "u", "question": "Q", "image": ["../../x.png"], "is_video": False, "answer": ["A"]},
        {"qid": "b", "question": None, "image": ["img/a.png"], "is_video": False, "answer": ["A"]},
        {"qid": "v", "question": "Q", "image": None, "is_video": True, "answer": ["A"]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "release.parquet")
    queries, report = import_released_rl(tmp_path / "release.parquet", tmp_path)
    assert [q.qid for q in queries] == ["vstar-1", "star-1", "text-1"]
    assert queries[1] == RLQuery(
        qid="star-1",
        question="Q2",
        images=frames,
        is_video=True,
        answer=["B", "b"],
        kind="released",
        meta={"source": "released-rl"},
    )
    assert queries[2].images == [] and queries[0].needs_op is None
    assert report.read == 9 and report.skipped == Counter(
        {"duplicate qid": 1, "missing file": 1, "corrupt image": 1, "unsafe path": 1, "bad row": 2}
    )
    # JSONL rows may give one path, one answer, a numeric qid
    (tmp_path / "rl.jsonl").write_text(
        json.dumps({"qid": 7, "question": "Q", "image": "img/a.png", "is_video": False, "answer": "A"}) + "\n{oops\n"
    )
    queries, report = import_released_rl(tmp_path / "rl.jsonl", tmp_path)
    assert (queries[0].qid, queries[0].images, queries[0].answer) == ("7", ["img/a.png"], ["A"])
    assert report.skipped == Counter({"bad row": 1}) and "invalid json" in report.examples["bad row"]


def test_import_annotated_images(tmp_path):
    shot = png(tmp_path, "shots/page.png", size=(200, 100))
    rows = [
        {"id": "p1", "image": shot, "question": "Price?", "answer": 12, "box": [10, 20, 50, 40]},
        {
            "id": "p2",
            "image": shot,
            "question": "Colour?",
            "answer": "red",
            "options": ["red", "blue"],
            "boxes": [[0, 0, 20, 20], [180, 80, 200, 100]],
        },
        {"id": "p3", "image": shot, "question": "Is there a page?", "answer": ["yes", "y"]},
        {"id": "out", "image": shot, "question": "Q", "answer": "a", "box": [150, 50, 210, 90]},
        {"id": "norm", "image": shot, "question": "Q", "answer": "a", "box": [0.1, 0.1, 0.5, 0.5]},
        {"id": "flat", "image": shot, "question": "Q", "answer": "a", "box": [50, 50, 50, 60]},
        {"id": "gone", "image": "shots/gone.png", "question": "Q", "answer": "a"},
        {"id": "bad", "image": corrupt(tmp_path, "shots/bad.png"), "question": "Q", "answer": "a"},
        {"id": "abs", "image": "/etc/passwd", "question": "Q", "answer": "a"},
        {"id": "p1", "image": shot, "question": "Q", "answer": "a"},
        {"image": shot, "question": "Q", "answer": "a"},
    ]
    (tmp_path / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, report = import_annotated_images(tmp_path / "ann.jsonl", tmp_path)
    assert [i.id for i in items] == ["p1", "p2", "p3"]
    assert items[0] == SeedItem(
        id="p1",
        question="Price?",
        answer="12",
        kind="annotated",
        images=[shot],
        cue_boxes=[[10.0, 20.0, 50.0, 40.0]],
        needs_op=True,
        source="user",
    )
    assert items[1].options == ["red", "blue"] and len(items[1].cue_boxes) == 2
    assert items[2].needs_op is False and items[2].cue_boxes is None and items[2].answer == ["yes", "y"]
    assert report.skipped == Counter(
        {
            "box outside image": 1,
            "bad row": 3,
            "missing file": 1,
            "corrupt image": 1,
            "unsafe path": 1,
            "duplicate id": 1,
        }
    )
    assert "looks normalized" in str(report) or report.examples["bad row"]


def test_import_annotated_videos(tmp_path):
    frames = [png(tmp_path, f"star/f{k}.png") for k in range(1, 5)]
    (tmp_path / "star" / "clip.mp4").write_bytes(b"\x00" * 16)
    rows = [
        {"id": "s1", "frames": frames, "question": "What moves?", "answer": "the cup", "window": [2, 3]},
        {"id": "s2", "video": "star/clip.mp4", "question": "When?", "answer": "B", "frames_window": [5, 8]},
        {"id": "s3", "frames": frames, "question": "Anything?", "answer": "no"},
        {"id": "late", "video": "star/clip.mp4", "question": "Q", "answer": "a", "window": [15, 17]},
        {"id": "long", "frames": frames, "question": "Q", "answer": "a", "window": [3, 9]},
        {"id": "both", "frames": frames, "video": "star/clip.mp4", "question": "Q", "answer": "a"},
        {"id": "zero", "frames": frames, "question": "Q", "answer": "a", "window": [0, 2]},
        {"id": "novid", "video": "star/none.mp4", "question": "Q", "answer": "a", "window": [1, 2]},
        {"id": "noframe", "frames": frames[:3] + ["star/f9.png"], "question": "Q", "answer": "a"},
    ]
    (tmp_path / "vid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, report = import_annotated_videos(tmp_path / "vid.jsonl", tmp_path)
    assert [(i.id, i.cue_frames, i.needs_op) for i in items] == [
        ("s1", [2, 3], True),
        ("s2", [5, 6, 7, 8], True),
        ("s3", None, False),
    ]
    assert items[0].video == frames and items[1].video == "star/clip.mp4" and items[0].images is None
    assert report.skipped == Counter({"window outside video": 2, "bad row": 2, "missing file": 2})


# ----------------------------------------------------------------------------------------------- the glue


def test_seed_items_become_rl_queries_and_rollout_queries(tmp_path):
    png(tmp_path, "scenes/read-1.png", size=(300, 200))
    query = rl_query_from_seed(SEED)
    assert (query.qid, query.images, query.is_video, query.answer) == ("read-1", ["scenes/read-1.png"], False, ["7"])
    assert query.cue_boxes == SEED.cue_boxes and query.meta["source"] == "synthetic" and query.needs_op is True
    lazy = query_from_seed(SEED, tmp_path)
    assert lazy.images == [(tmp_path / "scenes/read-1.png").resolve()] and lazy.answer == "7"
    assert lazy.meta["cue_boxes"] == SEED.cue_boxes and lazy.meta["cue_name"] == "the red triangle"
    loaded = query_from_seed(SEED, tmp_path, load=True)
    assert loaded.images[0].size == (300, 200) and loaded.images[0].mode == "RGB"

    for k in range(1, 5):
        png(tmp_path, f"v/{k}.png")
    video = query_from_seed(VIDEO_SEED, tmp_path)
    assert video.images is None and len(video.video) == 4 and video.answer == ["4", "four"]
    assert rl_query_from_seed(VIDEO_SEED).cue_frames == [2, 3]
    (tmp_path / "clip.mp4").write_bytes(b"\x00")
    from_file = query_from_seed(SeedItem(id="c", question="q", answer="a", video="clip.mp4"), tmp_path)
    assert from_file.video == (tmp_path / "clip.mp4").resolve()

    with pytest.raises(FileNotFoundError, match="missing.png"):
        query_from_seed(SeedItem(id="m", question="q", answer="a", images=["missing.png"]), tmp_path)
    with pytest.raises(ValueError, match="outside"):
        query_from_seed(SeedItem(id="u", question="q", answer="a", images=["../x.png"]), tmp_path)


def test_a_rollout_query_from_a_seed_runs_an_episode(tmp_path):
    from pxr.episode import VisualEpisode

    png(tmp_path, "scenes/read-1.png", size=(1536, 1024))
    query = query_from_seed(SEED, tmp_path)
    episode = VisualEpisode(images=query.images, video=query.video)
    observation = episode.step(
        '<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [0.7, 0.7, 0.8, 0.8]}}</tool_call>'
    )
    assert observation.ok and episode.entries[-1].root_box[0] > 900


def test_all_record_fields_have_a_type_check():
    from dataclasses import fields

    for cls in (SeedItem, TrajectoryTurn, TrajectoryRecord, RLQuery):
        assert {f.type for f in fields(cls)} <= set(data._CHECKS), cls


PATHS = st.sampled_from(["img.png", "../x.png", "/etc/passwd", "missing.png", "", "a\0b", "clip.mp4"])
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", "other"]),
            "content": st.lists(
                st.one_of(
                    st.fixed_dictionaries({"text": st.sampled_from(["Q", "Here is the cropped image", "\\boxed{1}"])}),
                    st.fixed_dictionaries({"image": PATHS | JSON_VALUES}),
                    st.fixed_dictionaries({"video": st.lists(PATHS, max_size=3) | JSON_VALUES}),
                    JSON_VALUES,
                ),
                max_size=3,
            )
            | JSON_VALUES,
        }
    ),
    max_size=5,
)
ROW_VALUES = {
    "id": JSON_VALUES | st.just("same"),
    "qid": JSON_VALUES | st.just("same"),
    "question": JSON_VALUES | st.just("Q?"),
    "answer": JSON_VALUES | st.just(["A"]),
    "options": JSON_VALUES,
    "image": PATHS | st.lists(PATHS, max_size=3) | JSON_VALUES,
    "is_video": JSON_VALUES,
    "box": st.lists(st.integers(-5, 300) | st.floats() | st.integers(), min_size=3, max_size=5) | JSON_VALUES,
    "boxes": JSON_VALUES,
    "video": PATHS | JSON_VALUES,
    "frames": st.lists(PATHS, max_size=3) | JSON_VALUES,
    "window": st.lists(st.integers(-2, 20) | st.integers(), max_size=3) | JSON_VALUES,
    "needs_op": JSON_VALUES,
    "message_list": MESSAGES | JSON_VALUES,
}
ROWS = st.lists(st.fixed_dictionaries({}, optional=ROW_VALUES) | JSON_VALUES, max_size=6)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(ROWS)
def test_importers_never_raise_on_arbitrary_rows(tmp_path_factory, rows):
    root = tmp_path_factory.getbasetemp() / "rows"
    if not (root / "img.png").exists():
        png(root, "img.png")
        (root / "clip.mp4").write_bytes(b"\x00")
    path = root / "rows.jsonl"
    rows = [{"id": "first"}, *rows]  # a file that is one JSON list is read as that list
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for importer in (import_released_sft, import_released_rl, import_annotated_images, import_annotated_videos):
        records, report = importer(path, root)
        assert report.imported == len(records) and report.imported + report.n_skipped == report.read == len(rows)


def _turns(*roles_texts):
    return [TrajectoryTurn(role=r, text=t, trainable=r == "assistant") for r, t in roles_texts]


RECROP_TWICE = [
    ("assistant", "The whole image shows a street. Now I will zoom in.\n" + CROP_CALL),
    ("observation", "\nHere is the cropped image (Image Size: 56x56):"),
    ("assistant", "The cropped part does not contain the sign, I will zoom in again.\n" + CROP_CALL),
    ("observation", "\nHere is the cropped image (Image Size: 56x56):"),
    ("assistant", "Still not there, I will zoom in again.\n" + CROP_CALL),
    ("observation", "\nHere is the cropped image (Image Size: 56x56):"),
    ("assistant", "The sign reads OPEN. \\boxed{OPEN}"),
]


def test_wrong_ops_are_masked_from_the_structure_or_by_the_released_last_two_rule(tmp_path):
    turns = _turns(*RECROP_TWICE)
    assert mask_wrong_ops(turns) == 2
    assert [t.trainable for t in turns] == [False, False, False, False, True, False, True]
    turns = _turns(*RECROP_TWICE)
    assert mask_wrong_ops(turns, "last_two") == 2  # here both rules agree
    assert [t.trainable for t in turns] == [False, False, False, False, True, False, True]
    answered_in_text = _turns(*RECROP_TWICE[4:6], ("assistant", "It looks open."), ("assistant", "\\boxed{OPEN}"))
    assert mask_wrong_ops(answered_in_text, "last_two") == 1  # positional: the correct op is masked
    assert [t.trainable for t in answered_in_text] == [False, False, True, True]
    single_pass = _turns(*RECROP_TWICE[4:])
    assert mask_wrong_ops(single_pass) == 0 and [t.trainable for t in single_pass] == [True, False, True]
    with pytest.raises(ValueError, match="last_two"):
        mask_wrong_ops(turns, "positional")
    path = write_sft(tmp_path / "sft.json", sft_records(tmp_path), "json")
    records, _ = import_released_sft(path, tmp_path, mask_rule="last_two")
    assert records[2].meta["mask_rule"] == "last_two" and [t.trainable for t in records[2].turns] == [True, False, True]
