"""Where do a grounding model's boxes land? Notebook-15 models on held-out ground scenes of four kinds, side by side.

Notebook 15 scores `ground` on the scenes its own run trains on. Across a curriculum that changes from stage to
stage, so this script asks every model the same held-out questions ("Where is the <colour> <shape>?", toy448's
448x320 canvas shown at 252x168) on four kinds of scene: the target alone; one other shape sharing neither its colour
nor its shape, at 28 px and at 56 px; and the read scenes' 7 other shapes (one of its colour, one of its shape). The
greedy boxes are scored by `pxr.perception.score`: IoU, the share that contain the target's centre, and the share
that contain another shape's centre instead (a wrong shape picked, not a box that points at nothing).

    .venv/bin/python benchmarks/ground_scenes.py outputs/15_perception_base/toy_lone448/model \\
        outputs/15_perception_base/toy_pick7/model [--n 100]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from pxr import models, perception
from pxr.config import EpisodeConfig
from pxr.rollout import RolloutConfig, generate_trajectories

TOY448 = EpisodeConfig(image_max_pixels=50176, zoom_padding=0.0, crop_min_pixels=12544, crop_max_pixels=12544)


def scene_kinds() -> dict[str, perception.PerceptionConfig]:
    base = perception.PerceptionConfig(n_read=0, n_count=0, n_coarse=0, n_ground=1, canvas_width=448, canvas_height=320)
    return {
        "lone, 28 px": replace(base, ground_distractors=0),
        "1 other, 28 px": replace(base, ground_distractors=1, ground_similarity="low"),
        "1 other, 56 px": replace(base, ground_distractors=1, ground_similarity="low", ground_target_size=56),
        "7 others, 28 px": base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="notebook-15 model directories")
    parser.add_argument("--n", type=int, default=100, help="held-out scenes of each kind")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = replace(TOY448, prompt="text")
    held = {
        kind: perception.make_items(config, TOY448, held_out=True, n=args.n, progress=False)
        for kind, config in scene_kinds().items()
    }
    held = {kind: [i for i in items if i.task == "ground"] for kind, items in held.items()}
    print(f"{'model':<16} {'scenes':<16} {'IoU':>5} {'on target':>10} {'on another':>11}")
    for path in args.models:
        model, processor = models.load_model(path, device="cpu", episode_config=TOY448)
        model.eval()
        name = Path(path).parent.name if Path(path).name == "model" else Path(path).name  # the run, for a notebook's
        for kind, items in held.items():
            rollouts = generate_trajectories(model, processor, [perception.as_query(i) for i in items],
                                             episode_config=text, progress=False,
                                             rollout_config=RolloutConfig(max_new_tokens=48, batch_size=25))  # fmt: skip
            score = perception.score(items, [t.episode.answer for t in rollouts])
            print(f"{name:<16} {kind:<16} {score['ground_iou']:>5.2f} {score['ground_hits_centre']:>10.0%} "
                  f"{score['ground_hits_other']:>11.0%}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
