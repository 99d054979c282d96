"""Would a base model that reads crops read the crops an SFT model asks for? Reading against localisation.

Finding 2 of the toy line needs two skills in a row: the SFT model must point its zoom at the target, and the model
must read the digit in the crop it gets back. This probe takes them apart on the held-out read items of an
evaluation run (`records.jsonl` of notebook 40): a perception base model (notebook 15, text prompt, no ops) answers
each item's question from three views of the item's own image, side by side:

- cue: `zoom_in` on the target's box (what a perfect zoom returns);
- own: `zoom_in` on the box the evaluated model asked for in its first zoom (items without one count as wrong);
- whole: the whole image at the query budget (no zoom: the `text` control's view).

Crops are executed with this script's padding and crop budget (`VisualEpisode`, as the base stage cuts them), not
the evaluated run's, so every view is one the base model was trained on. It also prints how the asked boxes compare
with the cue: the share that contain the cue and the median of asked area / cue area.

    .venv/bin/python benchmarks/read_own_zooms.py --base outputs/15_perception_base/toy_read_b98/model \\
        --records outputs/40_evaluate/toy/records.jsonl --data outputs/10_synthesize_data/toy
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from dataclasses import replace
from pathlib import Path

from PIL import Image

from pxr import metrics, models, perception
from pxr.config import EpisodeConfig
from pxr.rollout import RolloutConfig, generate_trajectories


def outward(box: list[float], decimals: int = 2) -> list[float]:
    """The box rounded outwards to `decimals`, as a written zoom call still containing it."""
    scale = 10**decimals
    return [
        math.floor(box[0] * scale) / scale,
        math.floor(box[1] * scale) / scale,
        math.ceil(box[2] * scale) / scale,
        math.ceil(box[3] * scale) / scale,
    ]


def contains(outer: list[float], inner: list[float]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def area(box: list[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="a notebook-15 model directory")
    parser.add_argument("--records", required=True, help="records.jsonl of a notebook-40 run")
    parser.add_argument("--data", required=True, help="the notebook-10 run the records' images come from")
    parser.add_argument("--zoom-padding", type=float, default=0.0, help="as the base stage's zoom_padding")
    parser.add_argument("--crop-pixels", type=int, default=12544, help="crop_min_pixels = crop_max_pixels")
    parser.add_argument("--image-max-pixels", type=int, default=200704, help="query budget (the whole view)")
    args = parser.parse_args()

    episode_config = EpisodeConfig(
        zoom_padding=args.zoom_padding,
        crop_min_pixels=args.crop_pixels,
        crop_max_pixels=args.crop_pixels,
        image_max_pixels=args.image_max_pixels,
    )
    records = [json.loads(line) for line in Path(args.records).read_text().splitlines() if line.strip()]
    records = [r for r in records if r["meta"].get("kind") == "read"]
    queries = {
        json.loads(line)["qid"]: json.loads(line)
        for line in (Path(args.data) / "eval_queries.jsonl").read_text().splitlines()
        if line.strip()
    }
    views: dict[str, list[perception.PerceptionItem]] = {"cue": [], "own": [], "whole": []}
    missing_zoom, asked_contains, area_ratio = 0, 0, []
    for record in records:
        query = queries[record["id"]]
        with Image.open(Path(args.data) / query["images"][0]) as opened:
            image = opened.convert("RGB")
        cue = record["meta"]["cue_box"]
        answer = record["answer"]

        def item(view, picture, record=record, answer=answer):
            return perception.PerceptionItem(f"{record['id']}-{view}", "read", record["question"], answer, picture)

        views["cue"].append(item("cue", perception.zoom_view(image, outward(cue), episode_config)))
        views["whole"].append(item("whole", perception.query_view(image, episode_config)))
        zooms = metrics.zoom_boxes(record["episode"])
        if zooms:
            asked = zooms[0][0]
            asked_contains += contains(asked, cue)
            area_ratio.append(area(asked) / area(cue))
            try:
                views["own"].append(item("own", perception.zoom_view(image, asked, episode_config)))
                continue
            except ValueError:  # a box zoom_in refuses (too small once padded): the item is lost
                pass
        missing_zoom += 1
    print(
        f"{len(records)} read items; {len(records) - missing_zoom} with an executable first zoom; asked box contains "
        f"the cue in {asked_contains}; median asked area / cue area "
        f"{statistics.median(area_ratio) if area_ratio else float('nan'):.1f}"
    )

    model, processor = models.load_model(args.base, episode_config=episode_config)
    model.eval()
    text_config = replace(episode_config, prompt="text")
    majority = Counter(r["answer"] for r in records).most_common(1)[0][1] / len(records)
    print(f"\n{'view':<6} {'items':>5} {'accuracy':>9}   (majority answer {majority:.1%}; chance 10 %)")
    for view, items in views.items():
        rollouts = generate_trajectories(
            model,
            processor,
            [perception.as_query(i) for i in items],
            episode_config=text_config,
            rollout_config=RolloutConfig(max_new_tokens=16, batch_size=16),
            progress=False,
        )
        right = sum((t.episode.answer or "").strip() == i.answer for t, i in zip(rollouts, items, strict=True))
        print(f"{view:<6} {len(items):>5} {right / len(records):>9.1%}")


if __name__ == "__main__":
    main()
