"""Learnability probe of the toy line: does a from-scratch `small` model write the asked tile's box from the
position words ("the tile in row 3, column 5")?

Synthesizes grid trajectories (template teacher, the toy episode: 168x112 overview, unpadded 112x112 crops), trains a
fresh `small` model on them in a bare loop (vision frozen, plain loss, AdamW 1e-3, beta2 0.98, weight decay 0.01,
batch 8 by default, 10 warm-up steps), then rolls out held-out tile_digit items greedily and scores the first zoom:
made at all, the box exactly as synthesis writes the tile's (the family's whole pixels of the overview), IoU >= 0.5,
crop holds the tile, and how many distinct boxes were asked for.

    python benchmarks/grid_box_probe.py OUT_DIR [--steps 125] [--batch 8] [--items 500] [--threads 2] [--size small]
      [--device cuda]
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch

from pxr import data, families, metrics, models
from pxr.config import EpisodeConfig
from pxr.rollout import RolloutConfig, generate_trajectories
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TemplateTeacher
from pxr.training import sft

EPISODE = EpisodeConfig(image_max_pixels=18816, crop_min_pixels=12544, crop_max_pixels=12544, zoom_padding=0.0)
KNOBS = dict(width=1500, height=1000, tile_size=30)


def first_zoom_scores(rollouts, cues) -> dict:
    """The first zoom of each held-out rollout against the asked tile: made at all; the box written exactly as
    synthesis writes the tile's box (the model family's convention, `pxr.families`); the crop holding the tile; IoU of
    the written box with the tile >= 0.5; and how many distinct boxes were asked for."""
    made = exact = iou_half = contains = 0
    boxes = set()
    for trajectory in rollouts:
        episode = trajectory.episode
        ops = [op for op in episode.ops if op["executed"]]
        if not ops:
            continue
        made += 1
        shown = episode.entries[0].shown.size
        cue = cues[trajectory.query.id]
        written = [float(v) for v in ops[0]["arguments"]["bbox_2d"]]
        boxes.add(tuple(written))
        exact += written == [float(v) for v in families.from_normalized(cue, shown, episode.box_family)]
        root = episode.record()["images"][ops[0]["image_numbers"][0] - 1]["root_box"]
        crop = [
            root[0] / KNOBS["width"],
            root[1] / KNOBS["height"],
            root[2] / KNOBS["width"],
            root[3] / KNOBS["height"],
        ]
        contains += all(c <= t + 1e-9 for c, t in zip(crop[:2], cue[:2], strict=True)) and all(
            c >= t - 1e-9 for c, t in zip(crop[2:], cue[2:], strict=True)
        )
        asked = families.to_normalized(written, shown, episode.box_family)
        iou_half += metrics.box_iou(asked, cue) >= 0.5
    n = len(rollouts)
    return {"first_zoom_made": made / n, "box_as_synthesis_writes_it": exact / n, "iou>=0.5": iou_half / n,
            "crop_holds_tile": contains / n, "distinct_boxes": len(boxes)}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=125)
    parser.add_argument(
        "--items", type=int, default=500, help="tile_digit trajectories (plus a fifth as many colour ones)"
    )
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8, help="trajectories per step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="small", help="a pxr.models.MODEL_SIZES entry to build fresh")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    items = synth_run.write_seed_items("tile_digit", args.items, 0, out, split="sft", workers=args.threads, **KNOBS)
    items += synth_run.write_seed_items(
        "tile_colour", args.items // 5, 0, out, split="sft", workers=args.threads, **KNOBS
    )
    held = synth_run.write_seed_items("tile_digit", args.held_out, 2, out, split="eval", workers=args.threads, **KNOBS)
    synth_run.export_queries(held, out / "eval_queries.jsonl")
    config = synth.SynthConfig(share_single=0.6, share_wrong_crop=0.1, share_two_wrong=0.1, share_overlarge=0.2)
    print(
        synth_run.synthesize(items, out, TemplateTeacher(), synth_config=config, episode_config=EPISODE, progress=False)
    )
    print(f"synthesis {time.time() - start:.0f} s", flush=True)

    records, _ = data.read_jsonl(out / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    corpus = models.default_corpus(0) + [t.text for r in records for t in r.turns] + [r.question for r in records]
    model, processor = models.load_model(
        models.build_tiny_model(out / "base", seed=0, size=args.size, corpus=corpus),
        episode_config=EPISODE,
        device=args.device,
    )
    sft.freeze_vision_tower(model)
    tokenized = [sft.tokenize_example(processor, sft.sft_example(r, out, EPISODE)) for r in records]
    collate = sft.SFTCollator(processor)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01
    )
    order = random.Random(0).sample(range(len(tokenized)), len(tokenized))
    model.train()
    start = time.time()
    for step in range(args.steps):
        batch = collate([tokenized[order[(step * args.batch + k) % len(order)]] for k in range(args.batch)])
        batch = {k: v.to(args.device) if hasattr(v, "to") else v for k, v in batch.items()}
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 10)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}: loss {loss.item():.3f}, {time.time() - start:.0f} s", flush=True)
    train_seconds = time.time() - start

    model.eval()
    rows, _ = data.read_jsonl(out / "eval_queries.jsonl", data.RLQuery)
    cues = {q.qid: [b / s for b, s in zip(q.cue_boxes[0], (1500, 1000, 1500, 1000), strict=True)] for q in rows}
    rollouts = generate_trajectories(
        model, processor, [data.query_from_rl(q, out) for q in rows], episode_config=EPISODE,
        rollout_config=RolloutConfig(max_new_tokens=128, batch_size=16),
    )  # fmt: skip
    data.write_jsonl(out / "rollouts.jsonl", [t.record() for t in rollouts])
    result = {"steps": args.steps, "train_seconds": round(train_seconds), **first_zoom_scores(rollouts, cues)}
    result["accuracy"] = metrics.episode_metrics(rollouts).get("accuracy")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
