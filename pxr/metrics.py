"""Episode metrics for a set of rollouts (SPEC §5): accuracy, valid tool calls, op success, RaPR, mean ops, endings,
broken down by whether the item needs an op. Used after SFT (notebook 20) and by evaluation.

Tests: tests/test_metrics.py.
"""

from __future__ import annotations

from collections import Counter

from pxr import protocol, reward


def _call_is_valid(trajectory) -> bool:
    """The first turn that writes `<tool_call>` holds a call that parses and names a known operation."""
    for turn in trajectory.turns:
        if turn.role == "assistant" and protocol.has_tool_call(turn.text):
            try:
                call = protocol.parse_tool_call(turn.text)
            except protocol.ToolCallError:
                return False
            return protocol.OP_ALIASES.get(call.name, call.name) in protocol.OP_NAMES
    return False


def episode_metrics(trajectories) -> dict[str, float]:
    """Flat figures for `metrics.json`; `*_op_needed` figures cover items whose `meta["needs_op"]` is true."""
    if not trajectories:
        return {"episodes": 0}
    needed = [t for t in trajectories if t.query.meta.get("needs_op")]
    correct = [
        t.query.answer is not None
        and reward.is_correct(t.turns[-1].text if t.turns else "", t.query.answer, options=t.query.options)
        and t.episode.ending == "answer"
        for t in trajectories
    ]
    requested = sum(t.episode.n_requested for t in trajectories)
    executed = sum(t.episode.n_executed for t in trajectories)
    endings = Counter(t.episode.ending for t in trajectories)
    figures = {
        "episodes": len(trajectories),
        "accuracy": sum(correct) / len(trajectories),
        "rapr": reward.pixel_reasoning_rate([t.episode.n_executed for t in trajectories]),
        "mean_ops": executed / len(trajectories),
        "op_success_rate": executed / requested if requested else 0.0,
        "answered_share": endings["answer"] / len(trajectories),
    }
    if needed:
        figures["valid_tool_call_rate_op_needed"] = sum(map(_call_is_valid, needed)) / len(needed)
        figures["rapr_op_needed"] = reward.pixel_reasoning_rate([t.episode.n_executed for t in needed])
    coarse = [t for t in trajectories if t.query.meta.get("needs_op") is False]
    if coarse:
        figures["rapr_no_op_needed"] = reward.pixel_reasoning_rate([t.episode.n_executed for t in coarse])
    figures.update({f"ending_{k}": v / len(trajectories) for k, v in sorted(endings.items())})
    return figures
