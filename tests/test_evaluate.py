"""pxr.evaluation.evaluate: a scripted model through the whole evaluation path gives exactly the expected accuracy, RaPR, op
error rate, zoom IoU and frame recall; the controls change what the episodes do; results are written."""

import json
from dataclasses import replace

import pytest
from PIL import Image
from transformers.utils import is_torchvision_available

from pxr import models, protocol
from pxr.config import EpisodeConfig
from pxr.evaluation.evaluate import (
    EvalConfig,
    controlled,
    evaluate,
    gallery,
    resolve_video_input,
    summary_tables,
    write_results,
)
from pxr.rollout import Query
from pxr.synthesis.importers import ImportReport
from tests.test_rollout import ScriptedModel


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return models.load_model(models.build_tiny_model(tmp_path_factory.mktemp("tiny")), device="cpu")[1]


CUE = [0.25, 0.25, 0.5, 0.75]
# marker in the question -> (first turn, final answer); images are 400x200, shown at 392x196
SCRIPT = {
    "zoom-exact": (protocol.tool_call_text("zoom_in", {"bbox_2d": CUE}), "\\boxed{7}"),
    "zoom-half-pixels": (protocol.tool_call_text("zoom_in", {"bbox_2d": [98, 49, 196, 98]}), "\\boxed{1}"),
    "no-zoom": ("It is red. \\boxed{red}", None),
    "broken-call": ('<tool_call>{"name": "zoom_in"</tool_call>', "\\boxed{2}"),
    "select": (protocol.tool_call_text("select_frames", {"target_frames": [4, 5]}), "\\boxed{C}"),
}


def script(prompt):
    marker = next(m for m in SCRIPT if m in prompt)
    first, final = SCRIPT[marker]
    return final if "<tool_response>" in prompt and final else first


def items():
    image = lambda: [Image.new("RGB", (400, 200), (120, 30, 30))]  # noqa: E731
    frames = [Image.new("RGB", (64, 48), (k * 10, 0, 0)) for k in range(8)]
    meta = lambda kind, needs_op, **cue: {"kind": kind, "needs_op": needs_op, **cue}  # noqa: E731
    return [
        Query("q0", "What digit? zoom-exact", images=image(), answer="7", meta=meta("read", True, cue_box=CUE)),
        Query("q1", "What digit? zoom-half-pixels", images=image(), answer="7", meta=meta("read", True, cue_box=CUE)),
        Query("q2", "What colour? no-zoom", images=image(), answer="red", meta=meta("coarse", False)),
        Query("q3", "What digit? broken-call", images=image(), answer="7", meta=meta("read", True, cue_box=CUE)),
        Query("q4", "Which flashed? select", video=frames, options=["1", "2", "3", "4"], answer="C",
              meta=meta("flash", True, cue_frames=[3, 4])),
    ]  # fmt: skip


def run(processor, control="none"):
    model = ScriptedModel(processor.tokenizer, script)
    config = EvalConfig(benchmark="jsonl", control=control, model_path="scripted")
    return evaluate(items(), config, episode_config=EpisodeConfig(), model=model, processor=processor, progress=False)


@pytest.mark.slow
def test_scripted_model_gives_the_exact_figures(processor):
    result = run(processor)
    m = result.metrics
    assert [r["score"] for r in result.records] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert m["items"] == 5 and m["accuracy"] == pytest.approx(0.6) and m["rapr"] == pytest.approx(0.6)
    assert m["mean_ops"] == pytest.approx(0.6) and m["op_error_rate"] == pytest.approx(0.25)
    assert m["zoom_iou"] == pytest.approx(0.75) and m["zoom_iou_items"] == 2  # IoU 1 and 0.5
    assert m["frame_recall"] == pytest.approx(0.5) and m["frame_recall_items"] == 1  # frames {4, 5} vs cue {3, 4}
    assert m["ending_answer"] == 1.0
    assert m["accuracy_zoom_needed"] == pytest.approx(0.5) and m["rapr_zoom_needed"] == pytest.approx(0.75)
    assert m["accuracy_coarse"] == 1.0 and m["rapr_coarse"] == 0.0 and m["items_coarse"] == 1
    kinds = {row["kind"]: row for row in result.breakdown}
    assert kinds["read"]["items"] == 3 and kinds["read"]["accuracy"] == pytest.approx(1 / 3)
    assert kinds["read"]["zoom_iou"] == pytest.approx(0.75) and kinds["flash"]["rapr"] == 1.0
    # the protocol travels with the figures
    assert m["benchmark"] == "jsonl" and m["benchmark_version"] == "2" and m["prompt"] == "pixel"
    assert m["question_prompt"] == "released" and m["video_input"] == "frames" and m["model_family"] == "qwen2.5-vl"
    assert m["control"] == "none" and m["backend"] == "local" and m["model"] == "scripted"
    assert m["decoding"] == "greedy" and m["max_ops"] == 4 and m["image_max_pixels"] == 200704


def test_summary_tables_lay_out_the_headline_groups_kinds_and_endings(processor):
    result = run(processor)
    config = EvalConfig(benchmark="jsonl", control="none", model_path="scripted")
    titles = [title for title, _ in summary_tables(result, config)]
    assert titles == ["", "**Zoom-needed vs coarse**\n\n", "**Per kind**\n\n", ""]
    (_, headline), (_, groups), (_, kinds), (_, endings) = summary_tables(result, config)
    assert list(headline[0]) == ["model", "prompt", "control", "items", "accuracy", "rapr", "mean_ops",
                                 "op_error_rate", "zoom_iou", "zoom_cue_coverage", "frame_recall"]  # fmt: skip
    assert headline[0]["model"] == "scripted" and headline[0]["accuracy"] == pytest.approx(0.6)
    assert [g["group"] for g in groups] == ["zoom_needed", "coarse"]
    assert list(groups[1]) == ["group", "items", "accuracy", "rapr", "mean_ops", "op_error_rate", "majority answer",
                               "chance"]  # fmt: skip
    assert groups[1]["majority answer"] == result.metrics["baseline_majority_coarse"] == 1.0  # one coarse item
    assert groups[1]["items"] == 1 and groups[1]["accuracy"] == 1.0 and groups[1]["rapr"] == 0.0
    assert kinds == result.breakdown
    assert endings == [{k: v for k, v in result.metrics.items() if k.startswith("ending_")}]
    assert endings[0]["ending_answer"] == 1.0
    coarse_only = replace(result, metrics={k: v for k, v in result.metrics.items() if not k.endswith("_zoom_needed")
                                           and not k.endswith("_coarse")})  # fmt: skip
    assert [t for t, _ in summary_tables(coarse_only, config)] == ["", "**Per kind**\n\n", ""]  # no groups: no table


def test_blank_control_runs_the_ops_but_shows_blank_images(processor):
    result = run(processor, "blank")
    assert result.metrics["control"] == "blank" and result.metrics["blank_observations"] is True
    assert result.metrics["rapr"] == pytest.approx(0.6)  # the ops still execute
    crop = result.trajectories[0].episode.entries[1]
    assert crop.blank and crop.shown.getextrema() == ((128, 128),) * 3


def test_text_control_offers_no_ops(processor):
    result = run(processor, "text")
    assert result.metrics["prompt"] == "text" and result.metrics["rapr"] == 0.0
    assert result.metrics["op_error_rate"] == 1.0  # every call is refused with an error observation
    assert "zoom_in" not in protocol.system_prompt("text")


def test_results_are_written_and_the_gallery_mixes_right_and_wrong(processor, tmp_path):
    result = run(processor)
    write_results(tmp_path, result)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["q0", "q1", "q2", "q3", "q4"] and records[1]["score"] == 0.0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert next(iter(metrics)) == "items" and metrics["accuracy"] == pytest.approx(0.6)
    picked = gallery(result, 3)
    assert [t.query.id for t, _ in picked] == ["q0", "q1", "q4"]  # right, wrong, then the rest; ops first


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="control"):
        EvalConfig(control="dark")
    with pytest.raises(ValueError, match="api_model"):
        EvalConfig(backend="openai")
    with pytest.raises(ValueError, match="unknown benchmark"):
        EvalConfig(benchmark="nope")
    assert controlled(EpisodeConfig(), "text").prompt == "text"
    with pytest.raises(ValueError, match="local backend needs"):
        evaluate([], EvalConfig())


def test_an_unreadable_video_file_is_one_failed_item_not_a_crash(processor, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    broken = Query("v", "Which digit flashes? select", video=tmp_path / "clip.mp4", answer="3")
    model = ScriptedModel(processor.tokenizer, script)
    result = evaluate(
        [*items()[:1], broken], EvalConfig(benchmark="jsonl"), model=model, processor=processor, progress=False
    )
    assert [r["id"] for r in result.records] == ["q0"] and list(result.unstartable) == ["v"]
    assert result.metrics["items_unstartable"] == 1 and result.metrics["items"] == 1


def test_skipped_rows_are_recorded_by_reason(processor):
    report = ImportReport("bench.jsonl", read=8, imported=5)
    report.skip("missing file", "record 2: a.png")
    report.skip("duplicate qid", "record 5: q1", count=2)
    model = ScriptedModel(processor.tokenizer, script)
    config = EvalConfig(benchmark="jsonl", model_path="scripted")
    m = evaluate(items(), config, model=model, processor=processor, progress=False, report=report).metrics
    assert (m["rows_read"], m["rows_skipped"]) == (8, 3)
    assert (m["rows_skipped_missing_file"], m["rows_skipped_duplicate_qid"]) == (1, 2)
    assert "rows_skipped" not in run(processor).metrics  # no report given: nothing claimed


def test_video_input_auto_is_resolved_against_the_processor_and_recorded(processor):
    released = EpisodeConfig(prompt="pixel-reasoner-v1", video_input="auto")
    reads_videos = type("WithVideo", (), {"video_processor": object()})()
    assert resolve_video_input(released, reads_videos) == "video"
    assert resolve_video_input(released, processor) == ("video" if is_torchvision_available() else "frames")
    assert resolve_video_input(released, None) == "frames"  # an endpoint gets images
    assert resolve_video_input(EpisodeConfig(video_input="auto"), reads_videos) == "frames"  # pxr numbers frames
    with pytest.raises(ValueError, match="local backend"):
        resolve_video_input(EpisodeConfig(prompt="pixel-reasoner-v1", video_input="video"), None)
    model = ScriptedModel(processor.tokenizer, script)
    config = EvalConfig(benchmark="jsonl", model_path="scripted")
    m = evaluate(items()[:1], config, episode_config=released, model=model, processor=processor, progress=False)
    assert m.metrics["video_input"] == ("video" if is_torchvision_available() else "frames")
