"""Episode metrics for a set of rollouts (paper §5, plus the op figures it does not report).

- `eval_metrics(records)`: what every evaluation reports (notebook 40), from scored per-item records
  (`Trajectory.record()` plus `score`): the score (accuracy or ANLS), RaPR, mean ops per answer, op error rate,
  ending reasons, and where the cue is known the zoom IoU with the cue box, the share of the cue the returned crop
  covers and the frame-selection recall; broken down into zoom-needed vs coarse items and per kind
  (`breakdown_rows`). Working from records, the figures can be recomputed from a saved `records.jsonl`.
- `episode_metrics(trajectories)`: the same figures for in-process rollouts (notebooks 20 and 30, held out).
  Both give, on zoom-needed items, the share whose first call is valid (parses, names an op) and the share whose
  zoom box meets the cue with IoU >= 0.5. One vocabulary everywhere: `accuracy`, `rapr`, `mean_ops`, `op_error_rate`, `*_zoom_needed`,
  `*_coarse`; RL's step log uses the same names under `pxr/`.

Zoom boxes are compared with the cue in [0, 1] coordinates of input image 1: the box the model asked for (before the
op's padding), carried through crops of crops to the input image it derives from.

Tests: tests/test_metrics.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pxr import families, protocol, reward

ZOOM_IOU_HIT = 0.5  # a zoom "finds" the cue when its box and the cue box overlap with IoU >= this


def call_is_valid(record: dict) -> bool:
    """The first turn of a record that writes `<tool_call>` holds a call that parses and names a known operation."""
    for turn in record.get("turns") or []:
        if turn["role"] == "assistant" and protocol.has_tool_call(turn["text"]):
            try:
                call = protocol.parse_tool_call(turn["text"])
            except protocol.ToolCallError:
                return False
            return protocol.OP_ALIASES.get(call.name, call.name) in protocol.OP_NAMES
    return False


def episode_metrics(trajectories) -> dict[str, float]:
    """Notebooks 20 and 30's held-out figures in evaluation's vocabulary: `eval_metrics` of the trajectories scored
    by the one correctness rule (`pxr.reward.answer_correct`)."""
    records = [
        {
            **t.record(),
            "score": float(
                reward.answer_correct(
                    t.episode.ending, t.turns[-1].text if t.turns else "", t.query.answer, options=t.query.options
                )
            ),
        }
        for t in trajectories
    ]
    figures = eval_metrics(records)
    return figures


# ------------------------------------------------------------------------------------------------ evaluation


def box_iou(a, b) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    inter = _intersection(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _in_image_1(box, images) -> list[float]:
    """A box in pixels of image 1's source as [0, 1] coordinates of image 1."""
    width, height = images[0]["root_box"][2], images[0]["root_box"][3]
    return [box[0] / width, box[1] / height, box[2] / width, box[3] / height]


def zoom_boxes(episode: dict) -> list[tuple[list[float], list[float]]]:
    """(asked, returned) for every executed zoom on image 1 or a crop of it: the box the model asked for and the
    region the crop holds (padding included), both in [0, 1] coordinates of image 1."""
    images = episode["images"]
    found = []
    for op in episode["ops"]:
        if not op["executed"] or protocol.OP_ALIASES.get(op["name"], op["name"]) != "zoom_in":
            continue
        crop = images[op["image_numbers"][0] - 1]
        if crop["root"] != 1 or episode["is_video"]:
            continue
        target = images[crop["parent"] - 1]
        # Read as the episode read it: the family's convention (records from before families: Qwen2.5-VL's).
        family = episode.get("model_family", families.DEFAULT_FAMILY)
        box = list(families.to_normalized(op["arguments"]["bbox_2d"], tuple(target["shown_size"]), family))
        x1, y1, x2, y2 = target["root_box"]
        asked = [x1 + box[0] * (x2 - x1), y1 + box[1] * (y2 - y1), x1 + box[2] * (x2 - x1), y1 + box[3] * (y2 - y1)]
        found.append((_in_image_1(asked, images), _in_image_1(crop["root_box"], images)))
    return found


def cue_box(record: dict) -> list[float] | None:
    """The cue as [0, 1] coordinates of image 1: `meta["cue_box"]` (benchmarks), else the union of the pixel boxes
    `meta["cue_boxes"]` (seed items and RL queries)."""
    meta = record.get("meta") or {}
    if meta.get("cue_box"):
        return [float(v) for v in meta["cue_box"]]
    boxes = meta.get("cue_boxes")
    if not boxes or record["episode"]["is_video"]:
        return None
    union = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    return _in_image_1(union, record["episode"]["images"])


def item_figures(record: dict) -> dict:
    """One scored record's figures: ops, pixel-space reasoning, and the cue figures where they apply (else None)."""
    episode = record["episode"]
    figures = {
        "score": float(record["score"]),
        "pixel": episode["ops_executed"] > 0,
        "ops_executed": episode["ops_executed"],
        "ops_requested": episode["ops_requested"],
        "ops_failed": episode["ops_failed"],
        # a limit ending names its limit (limit_max_ops, limit_max_tokens, ...)
        "ending": f"limit_{episode['limit_reason']}" if episode["ending"] == "limit" else episode["ending"],
        "zoom_iou": None,
        "zoom_cue_coverage": None,
        "frame_recall": None,
    }
    cue = cue_box(record)
    zooms = zoom_boxes(episode)
    if cue is not None and zooms:
        area = (cue[2] - cue[0]) * (cue[3] - cue[1])
        figures["zoom_iou"] = max(box_iou(asked, cue) for asked, _ in zooms)
        figures["zoom_cue_coverage"] = max(_intersection(got, cue) for _, got in zooms) / area if area > 0 else None
    cue_frames = (record.get("meta") or {}).get("cue_frames")
    selected = {img["frame"] for img in episode["images"] if img["origin"] == "select"}
    if episode["is_video"] and cue_frames and selected:
        figures["frame_recall"] = len(selected & set(cue_frames)) / len(set(cue_frames))
    return figures


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _group_figures(rows: list[dict], metric: str) -> dict:
    requested = sum(r["ops_requested"] for r in rows)
    return {
        "items": len(rows),
        metric: _mean(r["score"] for r in rows),
        "rapr": _mean(float(r["pixel"]) for r in rows),
        "mean_ops": _mean(r["ops_executed"] for r in rows),
        "op_error_rate": sum(r["ops_failed"] for r in rows) / requested if requested else 0.0,
        "zoom_iou": _mean(r["zoom_iou"] for r in rows),
    }


def eval_metrics(records: list[dict], metric: str = "accuracy") -> dict:
    """Flat figures of scored records (see the module docstring); `metric` names the score ("accuracy", "anls")."""
    if not records:
        return {"items": 0}
    rows = [item_figures(r) for r in records]
    figures = _group_figures(rows, metric)
    zoomed = [r["zoom_iou"] for r in rows if r["zoom_iou"] is not None]
    recalls = [r["frame_recall"] for r in rows if r["frame_recall"] is not None]
    figures |= {
        "zoom_iou_items": len(zoomed),
        "zoom_cue_coverage": _mean(r["zoom_cue_coverage"] for r in rows),
        "frame_recall": _mean(recalls),
        "frame_recall_items": len(recalls),
    }
    endings = Counter(r["ending"] for r in rows)
    figures |= {f"ending_{k}": v / len(rows) for k, v in sorted(endings.items(), key=lambda kv: str(kv[0]))}
    groups = _needs_op_groups(records, rows)
    for group, rows_of in groups.items():
        figures |= {f"{k}_{group}": v for k, v in _group_figures(rows_of, metric).items() if k != "zoom_iou"}
    if groups.get("zoom_needed"):
        needed = [(r, row) for r, row in zip(records, rows, strict=True) if (r.get("meta") or {}).get("needs_op")]
        figures["valid_call_rate_zoom_needed"] = sum(call_is_valid(r) for r, _ in needed) / len(needed)
        # the share of zoom-needed items whose zoom box overlaps the cue with IoU >= 0.5 (no zoom counts as a miss)
        figures["zoom_iou_half_share_zoom_needed"] = sum(
            row["zoom_iou"] is not None and row["zoom_iou"] >= ZOOM_IOU_HIT for _, row in needed
        ) / len(needed)
    return figures


def _needs_op_groups(records, rows) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for record, row in zip(records, rows, strict=True):
        needs_op = (record.get("meta") or {}).get("needs_op")
        if needs_op is not None:
            groups["zoom_needed" if needs_op else "coarse"].append(row)
    return dict(groups)


def breakdown_rows(records: list[dict], metric: str = "accuracy", by: str = "kind") -> list[dict]:
    """One row per value of `meta[by]` (items, score, RaPR, mean ops, op error rate, zoom IoU), for a table."""
    groups = defaultdict(list)
    for record in records:
        groups[str((record.get("meta") or {}).get(by))].append(item_figures(record))
    return [{by: key, **_group_figures(rows, metric)} for key, rows in sorted(groups.items())]


def answer_baselines(records: list[dict[str, Any]]) -> dict[str, float]:
    """What answering without looking scores on scored evaluation records, overall and per zoom-needed / coarse
    group: `chance` guesses from the gold answers' distribution (Σ_a p(a)²), `majority` always gives each kind's most
    common gold answer (`meta.kind`)."""
    groups: dict[str, list[dict[str, Any]]] = {"": records}
    for record in records:
        needs_op = (record.get("meta") or {}).get("needs_op")
        if needs_op is not None:
            groups.setdefault("_zoom_needed" if needs_op else "_coarse", []).append(record)
    result = {}
    for suffix, items in groups.items():
        if not items:
            continue
        answers = [str(r.get("answer")).strip().lower() for r in items]
        counts = Counter(answers)
        result[f"chance{suffix}"] = sum((n / len(answers)) ** 2 for n in counts.values())
        by_kind: dict[str, Counter] = {}
        for record, answer in zip(items, answers, strict=True):
            by_kind.setdefault(str((record.get("meta") or {}).get("kind")), Counter())[answer] += 1
        result[f"majority{suffix}"] = sum(c.most_common(1)[0][1] for c in by_kind.values()) / len(answers)
    return result
