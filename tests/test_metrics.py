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
    assert m["episodes"] == 4 and m["accuracy"] == 0.75
    assert m["rapr"] == 0.25 and m["mean_ops"] == 0.25 and m["op_success_rate"] == 0.5
    assert abs(m["valid_tool_call_rate_op_needed"] - 1 / 3) < 1e-9
    assert abs(m["rapr_op_needed"] - 1 / 3) < 1e-9 and m["rapr_no_op_needed"] == 0.0
    assert m["answered_share"] == 1.0 and m["ending_answer"] == 1.0
    assert episode_metrics([]) == {"episodes": 0}
