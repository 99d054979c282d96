"""pxr.metrics on hand-made rollouts: the figures are exactly what the episodes did."""

from PIL import Image

from pxr.config import EpisodeConfig
from pxr.metrics import episode_metrics
from pxr.protocol import tool_call_text
from pxr.rollout import Query, apply_turn, start_trajectory

ZOOM = tool_call_text("zoom_in", {"bbox_2d": [0.1, 0.1, 0.6, 0.6]})


def rollout(turns, needs_op=True, answer="7"):
    query = Query("q", "What digit?", images=[Image.new("RGB", (300, 200))], answer=answer, meta={"needs_op": needs_op})
    trajectory = start_trajectory(query, EpisodeConfig())
    for text in turns:
        apply_turn(trajectory, text, 5)
    return trajectory


def test_figures_count_what_happened():
    trajectories = [
        rollout([ZOOM, "\\boxed{7}"]),  # zoom, right
        rollout(['<tool_call>{"name": "zoom_in"</tool_call>', "\\boxed{3}"]),  # broken call, wrong
        rollout(["\\boxed{7}"]),  # no op, right
        rollout(["It is blue. \\boxed{blue}"], needs_op=False, answer="blue"),
    ]
    m = episode_metrics(trajectories)
    assert m["items"] == 4 and m["accuracy"] == 0.75
    assert m["rapr"] == 0.25 and m["mean_ops"] == 0.25 and m["op_error_rate"] == 0.5
    assert abs(m["valid_call_rate_zoom_needed"] - 1 / 3) < 1e-9
    assert m["zoom_iou_half_share_zoom_needed"] == 0.0  # the one zoom's box has no cue to meet
    assert abs(m["rapr_zoom_needed"] - 1 / 3) < 1e-9 and m["rapr_coarse"] == 0.0
    assert m["ending_answer"] == 1.0
    assert episode_metrics([]) == {"items": 0}


def test_one_vocabulary_for_training_and_evaluation():
    """Notebooks 20/30 (episode_metrics) and 40 (eval_metrics) name the same figures the same way, and a bare
    reply is an answer in both."""
    from pxr.metrics import eval_metrics
    from pxr.reward import answer_correct

    trajectories = [rollout([ZOOM, "7"]), rollout(["3"], needs_op=False, answer="3")]
    ours = episode_metrics(trajectories)
    records = [{**t.record(), "score": float(answer_correct(t.episode.ending, t.turns[-1].text, t.query.answer))}
               for t in trajectories]  # fmt: skip
    assert ours == eval_metrics(records)  # the valid-call and cue-hit shares included
    assert ours["accuracy"] == 1.0 and ours["accuracy_zoom_needed"] == 1.0 and ours["accuracy_coarse"] == 1.0


def test_box_iou_literals():
    from pxr.metrics import box_iou

    assert box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == 2 / 6
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


def test_zoom_of_a_zoom_is_measured_in_image_1_and_pixel_cues_are_normalized():
    from pxr.metrics import cue_box, eval_metrics, item_figures, zoom_boxes

    query = Query("q", "What digit?", images=[Image.new("RGB", (1000, 500))], answer="7",
                  meta={"needs_op": True, "cue_boxes": [[250, 125, 500, 250]]})  # fmt: skip
    trajectory = start_trajectory(query, EpisodeConfig(zoom_padding=0.0))
    apply_turn(trajectory, tool_call_text("zoom_in", {"bbox_2d": [0.0, 0.0, 0.5, 0.5]}), 5)
    apply_turn(trajectory, tool_call_text("zoom_in", {"bbox_2d": [0.5, 0.5, 1.0, 1.0], "target_image": 2}), 5)
    apply_turn(trajectory, "\\boxed{7}", 5)
    record = {**trajectory.record(), "score": 1.0}
    asked = [box for box, _ in zoom_boxes(record["episode"])]
    assert asked == [[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]  # the second is a quarter of the first
    assert cue_box(record) == [0.25, 0.25, 0.5, 0.5]
    figures = item_figures(record)
    assert figures["zoom_iou"] == 1.0 and figures["zoom_cue_coverage"] == 1.0 and figures["ops_executed"] == 2
    m = eval_metrics([record, {**rollout(["\\boxed{3}"]).record(), "score": 0.0}])
    assert m["accuracy"] == 0.5 and m["mean_ops"] == 1.0 and m["zoom_iou"] == 1.0 and m["zoom_iou_items"] == 1
    assert m["frame_recall"] is None and eval_metrics([]) == {"items": 0}


def test_ending_reasons_name_the_limit():
    from pxr.metrics import eval_metrics

    query = Query("q", "What digit?", images=[Image.new("RGB", (300, 200))], answer="7")
    limited = start_trajectory(query, EpisodeConfig(max_ops=1))
    for text in (ZOOM, ZOOM):
        apply_turn(limited, text, 5)
    answered = rollout(["\\boxed{7}"])
    m = eval_metrics([{**limited.record(), "score": 0.0}, {**answered.record(), "score": 1.0}])
    assert m["ending_limit_max_ops"] == 0.5 and m["ending_answer"] == 0.5
    assert m["op_error_rate"] == 0.5  # the refused second call counts as a failed request


def test_the_cue_hit_share_counts_zooms_with_iou_of_a_half_or_more_over_every_zoom_needed_item():
    def with_cue(turns):
        trajectory = rollout(turns)
        trajectory.query.meta["cue_box"] = [0.1, 0.1, 0.5, 0.5]  # IoU with ZOOM's box: 0.16 / 0.25 = 0.64
        return trajectory

    far = tool_call_text("zoom_in", {"bbox_2d": [0.7, 0.7, 0.9, 0.9]})  # IoU 0 with the cue
    m = episode_metrics([with_cue([ZOOM, "7"]), with_cue([far, "7"]), with_cue(["7"]), with_cue([ZOOM, "7"])])
    assert m["zoom_iou_half_share_zoom_needed"] == 0.5  # 2 of 4: a far zoom and no zoom are misses
    assert m["valid_call_rate_zoom_needed"] == 0.75
