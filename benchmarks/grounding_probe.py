"""Can a from-scratch toy model learn where an object is? The localisation half of a zoom, measured on its own.

The toy line's models read crops once trained long enough (outputs/15_perception_base/toy_read_b98, 88 %), but none
learns to point a zoom at the named object (outputs/LOG.md, 2026-11-24). This probe asks the simplest form of that
question: a 448x320 read scene (`pxr.scenes`) with `--distractors` other shapes (0: the target alone), shown whole at
the query budget, "Where is the <target>? Give its box as [x1, y1, x2, y2]." and the trained reply
`\\boxed{[x1, y1, x2, y2]}` (two decimals, as zoom calls write boxes). The model trains through pxr's own SFT path
(`pxr.sft.tokenize_example`, `SFTCollator`, the model's loss plus the answer tokens' mean, weight 1) in a plain AdamW
loop with the reading recipe (beta2 0.98, weight decay 0.01, lr 1e-3 after 100 warm-up steps, batch 16).

Every `--every` steps it prints teacher-forced held-out accuracy (the most likely of the ten digits, as
`answer_loss_probe.digit_accuracy` scores it) of the tenths digit of x1 and of y1 (the digits
that say where the box is; the rest follow from them and the target's size) beside the accuracy of always giving
the most common tenths digit: a model that has not learned where things are sits at that floor. Teacher forcing
gives the model the true x1 before y1 is scored, so a model that points at any one of several shapes scores well;
at the end (and at step 0 with `--init`) it also prints the greedy boxes' IoU and the share that contain the target's
centre or another shape's instead, as notebook 15 scores them.

Knobs that test why it might not learn:
- `--scene plain`: notebook 15's `locate` warm-up (`pxr.perception.flat_square`): the target's box grown `--grow`
  times, drawn as a flat square in `--fill` (R,G,B, or `target`: the target's own colour) on `--background` (R,G,B,
  or `scene`: the scenes' mottled one) in place of the target's shape, with no digit; `--distractors` are drawn the
  same way in their own colours (two squares: does the colour word pick one?).
  `--target-size` sets the scene targets' side and `--image-max-pixels` the view (24576: 168x112, 24 image tokens;
  50176: 252x168, 54). `--save` and `--init` chain runs into a curriculum.
- `--similarity low`: distractors that share neither the target's colour nor its shape (the read scenes' `mixed`
  makes one share each), so that the colour word alone names the target.
- `--rope-theta`: the language model's M-RoPE base (Qwen2.5-VL's 1e6 by default). M-RoPE gives an image token's
  width position the lowest frequencies of a head; at 1e6 and the toy head size (16 frequencies) they turn by at
  most 0.0014 rad across a 9-token row, at 10 by 1.9 rad.
- `--ask`: other questions on the same scenes, answered with a word and scored greedily at every `--every` steps
  (a model that ignores the word in its question sits at the most common answer):
  `side` "Is the <colour> square left or right of the other shape?" (`--distractors 1`: the colour word picks the
  shape, one bit of position); `colour` "What colour is the square?" (with `--distractors 1`: "... the square on the
  left?"; the pixels name the colour, no word to use); `match` "Is the square <colour>?" (a lone square: the word
  against the pixels, no position; yes half the time); `echo` "Say this colour: <colour>." (a random colour word
  to copy, the pixels irrelevant: does a word of the question reach the answer at all?); `copy` "From the left:
  brown at [...], blue at [...]. Where is the blue one?" (the `--cot` list given as text: copying the named box
  alone).
- `--cot`: the trained reply first says in words what the pixels show, then answers ("From the left: teal at [0.10,
  0.62, 0.22, 0.80], purple at [0.55, 0.21, 0.67, 0.39]." / "On the left: teal. On the right: purple." / "The square
  is teal."): the colour word is then matched with a word the model wrote, not with the pixels. It also prints the
  share of replies whose reasoning is exactly right, and the answers' accuracy with and without it.
- `--question-first`: the question before the image in the user turn (pxr puts the image first), so that under the
  causal mask the image tokens can attend to the colour word.
- `--ramp`: adds a colour ramp to the scene (red -ramp..+ramp left to right, blue top to bottom), so every image
  token carries its own position in its pixels, not only in the rotary angles (which reach attention scores, never
  the values attention passes on).

    .venv/bin/python benchmarks/grounding_probe.py [--distractors 0] [--similarity mixed] [--steps 3000]
        [--rope-theta 1e6] [--ramp 0] [--scene read|plain] [--grow 1] [--fill 255,255,255|target] [--background 0,0,0|scene] [--target-size 28]
        [--image-max-pixels 50176] [--save DIR] [--init DIR] [--ask box|side|colour|match|echo|copy] [--cot]
        [--question-first]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from answer_loss_probe import digit_accuracy  # teacher-forced digit accuracy at the masked answer positions
from PIL import Image

from pxr import models, perception, protocol, scene_draw, scenes, sft
from pxr.config import EpisodeConfig
from pxr.rollout import RolloutConfig, generate_trajectories


def rgb(text: str) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in text.split(","))
    return red, green, blue


@dataclass
class Reasoned(perception.PerceptionItem):
    """An item whose trained reply writes `reasoning` before the boxed answer (`--cot`): what the pixels show, in
    words, so that the answer compares two words of the text instead of a word with the pixels."""

    reasoning: str = ""

    def response(self) -> str:
        return f"{self.reasoning} {super().response()}".strip()


def ground_item(suite: int, index: int, args, episode_config: EpisodeConfig) -> perception.PerceptionItem:
    scene = scenes.make_scene("read", scenes.suite_seed(suite, index), width=448, height=320,
                              target_size=args.target_size, n_distractors=args.distractors,
                              distractor_similarity=args.similarity)  # fmt: skip
    image, name, cue = scene.image, scene.objects[0].name, scene.cue_box_normalized
    width, height = image.size
    others = [[o.box[0] / width, o.box[1] / height, o.box[2] / width, o.box[3] / height] for o in scene.objects[1:]]
    if args.scene == "plain":  # notebook 15's `locate` warm-up, with the colours as knobs
        fill = None if args.fill == "target" else rgb(args.fill)
        background = None if args.background == "scene" else rgb(args.background)
        image, cue = perception.flat_square(scene, args.grow, fill=fill, background=background, with_others=True)
        name = f"{scene.objects[0].colour} square" if fill is None else "square"
        others = [perception.grown_box(box, args.grow) for box in others]
    if args.ramp:
        pixels = np.asarray(image).astype(np.float32)
        height, width = pixels.shape[:2]
        pixels[..., 0] += args.ramp * np.linspace(-1, 1, width)[None, :]
        pixels[..., 2] += args.ramp * np.linspace(-1, 1, height)[:, None]
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    view = perception.query_view(image, episode_config)
    if args.ask == "side":  # one bit of position, and the colour word must pick the shape it is about
        left = cue[0] + cue[2] < others[0][0] + others[0][2]
        question = f"Is the {name} left or right of the other shape?"
        colours = [scene.objects[0].colour, scene.objects[1].colour][:: 1 if left else -1]
        reasoning = f"On the left: {colours[0]}. On the right: {colours[1]}." if args.cot else ""
        answer = "left" if left else "right"
        return Reasoned(f"side-{suite}-{index}", "coarse", question, answer, view, reasoning=reasoning)
    if args.ask == "match":  # the colour word against the pixels, no position: "Is the square purple?"
        rng = random.Random(suite * 100003 + index)
        said = (
            scene.objects[0].colour
            if rng.random() < 0.5
            else rng.choice([c for c in scene_draw.COLOURS if c != scene.objects[0].colour])
        )
        answer = "yes" if said == scene.objects[0].colour else "no"
        reasoning = f"The square is {scene.objects[0].colour}." if args.cot else ""
        return Reasoned(f"match-{suite}-{index}", "coarse", f"Is the square {said}?", answer, view, reasoning=reasoning)
    if args.ask == "echo":  # the word alone, no pixels: can the answer copy a word of the question at all?
        said = random.Random(suite * 100003 + index).choice(list(scene_draw.COLOURS))
        return perception.PerceptionItem(f"echo-{suite}-{index}", "coarse", f"Say this colour: {said}.", said, view)
    if args.ask == "colour":  # does the colour reach the text at all? (the reverse of the colour word picking)
        question = "What colour is the square on the left?" if others else "What colour is the square?"
        left = not others or cue[0] + cue[2] < others[0][0] + others[0][2]
        answer = scene.objects[0].colour if left else scene.objects[1].colour
        return perception.PerceptionItem(f"colour-{suite}-{index}", "coarse", question, answer, view)
    answer = written(cue)
    question = f"Where is the {name}? Give its box as [x1, y1, x2, y2]."
    shapes = sorted(zip([o.colour for o in scene.objects], [cue, *others], strict=True), key=lambda s: s[1][0])
    listing = "From the left: " + ", ".join(f"{colour} at {written(box)}" for colour, box in shapes) + "."
    if args.ask == "copy":  # the list given as text: the copy of the named box alone, the pixels not needed
        question = f"{listing} Where is the {scene.objects[0].colour} one?"
    reasoning = listing if args.cot else ""  # every shape's colour and box, left to right; the answer copies one
    return Reasoned(f"ground-{suite}-{index}", "ground", question, answer, view, cue_box=list(cue),
                    other_boxes=others, reasoning=reasoning)  # fmt: skip


def written(box: list[float]) -> str:
    """A box as the ground answers write it: "[x1, y1, x2, y2]", two decimals."""
    return "[" + ", ".join(f"{round(v, 2):.2f}" for v in box) + "]"


def greedy_scores(model, processor, held, episode_config: EpisodeConfig) -> str:
    """The boxes the model writes itself (greedy, as notebook 15 scores them): IoU with the target, the share that
    contain its centre, and the share that contain another shape's centre instead. Teacher-forced digits can look
    good while the model writes x from one shape and y from another, or picks a shape at random."""
    model.eval()
    rollouts = generate_trajectories(model, processor, [perception.as_query(i) for i in held],
                                     episode_config=replace(episode_config, prompt="text"),
                                     rollout_config=RolloutConfig(max_new_tokens=160, batch_size=25))  # fmt: skip
    model.train()
    score = perception.score(held, [t.episode.answer for t in rollouts])
    if "coarse_accuracy" in score:  # --ask side, colour, match, echo
        line = (f"greedy answers: {score['coarse_accuracy']:.0%} right "
                f"(most common: {perception.chance(held)['coarse_majority']:.0%})")  # fmt: skip
        right = [t.episode.answer == i.answer for i, t in zip(held, rollouts, strict=True)]
    else:
        line = (f"greedy boxes: IoU {score['ground_iou']:.2f}, contain the target's centre "
                f"{score['ground_hits_centre']:.0%}, another shape's {score['ground_hits_other']:.0%}")  # fmt: skip
        boxes = [perception.parse_box(t.episode.answer or "") for t in rollouts]
        right = [bool(b) and perception.iou(b, i.cue_box) >= 0.5 for i, b in zip(held, boxes, strict=True)]
    if getattr(held[0], "reasoning", ""):  # --cot: did it say what the pixels show, and answer from that?
        said = [t.turns[-1].text.strip().startswith(i.reasoning) for i, t in zip(held, rollouts, strict=True)]
        when_said = [r for r, s in zip(right, said, strict=True) if s]
        when_not = [r for r, s in zip(right, said, strict=True) if not s]
        line += (f"; the reasoning exactly right {sum(said) / len(said):.0%}, the answer right (a box: IoU >= 0.5) "
                 f"when it is {sum(when_said) / max(1, len(when_said)):.0%}, when it is not "
                 f"{sum(when_not) / max(1, len(when_not)):.0%}")  # fmt: skip
    return line


def tenths_only(batch, digit_ids) -> dict:
    """The batch with its answer mask narrowed to the tenths digit of x1 and of y1 of the boxed answer (the 2nd and
    5th of its 12 digits, counted from the reply's end so that `--cot` boxes before it are skipped): the digits that
    say where the box is. `digit_accuracy` then scores only those."""
    mask = torch.zeros_like(batch["answer_mask"])
    for row in range(mask.shape[0]):
        answer = batch["answer_mask"][row].nonzero().flatten().tolist()
        digits = [p for p in answer if batch["labels"][row, p] in digit_ids][-12:]
        mask[row, digits[1]] = mask[row, digits[4]] = True
    return {**batch, "answer_mask": mask}


def fresh_model(args, train, episode_config: EpisodeConfig):
    """A new `--size` model whose tokenizer knows the questions, with the M-RoPE base set to `--rope-theta`."""
    with tempfile.TemporaryDirectory() as work:
        path = models.build_tiny_model(Path(work) / "model", seed=0, size=args.size,
                                       corpus=models.default_corpus(0) + [i.question for i in train])  # fmt: skip
        config = json.loads((path / "config.json").read_text())
        config["text_config"]["rope_parameters"]["rope_theta"] = args.rope_theta  # build_tiny_model uses Qwen's 1e6
        (path / "config.json").write_text(json.dumps(config))
        return models.load_model(path, device="cpu", episode_config=episode_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=0, help="other shapes in the scene")
    parser.add_argument(
        "--similarity",
        default="mixed",
        choices=list(scenes.DISTRACTOR_SIMILARITIES),
        help="distractors: low share neither colour nor shape with the target; mixed: one shares each",
    )
    parser.add_argument("--items", type=int, default=8000, help="training scenes")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--size", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--rope-theta", type=float, default=1e6)
    parser.add_argument("--ramp", type=float, default=0.0, help="colour ramp amplitude (0-255 levels); 0: none")
    parser.add_argument("--target-size", type=int, default=28, help="the target's side on the 448x320 canvas, px")
    parser.add_argument(
        "--scene",
        default="read",
        choices=["read", "plain"],
        help="read: the toy scenes; plain: the target's box as a flat square on a flat canvas",
    )
    parser.add_argument(
        "--fill", default="255,255,255", help="plain: the square's colour, R,G,B, or target (the scene target's)"
    )
    parser.add_argument("--grow", type=float, default=1.0, help="plain: the square's side, in target sides")
    parser.add_argument(
        "--background", default="0,0,0", help="plain: the canvas colour, R,G,B, or scene (the scenes' mottled one)"
    )
    parser.add_argument("--image-max-pixels", type=int, default=50176, help="query budget: 252x168 for 448x320")
    parser.add_argument(
        "--init", default="", help="continue a model saved by --save (a curriculum); empty: a fresh one"
    )
    parser.add_argument("--save", default="", help="save the trained model and its processor in this directory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ask",
        default="box",
        choices=["box", "side", "colour", "match", "echo", "copy"],
        help="box: the target's box; side: is the target left or right of the one other shape (--distractors 1); "
        "colour: the square's colour (with --distractors 1: the left one's); match: is the square <colour>? (yes/no); "
        "echo: say this colour: <colour> (the word alone); copy: the list of boxes given, the named one's box",
    )
    parser.add_argument(
        "--cot",
        action="store_true",
        help="box, side, match: the reply first says what the pixels show (each shape's colour and box from the left; "
        "the colours left and right; the square's colour)",
    )
    parser.add_argument("--question-first", action="store_true", help="the question before the image in the user turn")
    args = parser.parse_args()
    if args.question_first:  # pxr renders every episode image first (SFT, RL, eval alike); only this probe reorders
        plain = protocol.user_content

        def question_first(*a, **k):
            content = plain(*a, **k)
            return [p for p in content if p["type"] == "text"] + [p for p in content if p["type"] != "text"]

        protocol.user_content = question_first
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    episode_config = EpisodeConfig(image_max_pixels=args.image_max_pixels)
    started = time.time()
    train = [ground_item(200, i, args, episode_config) for i in range(args.items)]
    held = [ground_item(201, i, args, episode_config) for i in range(200)]
    print(f"{len(train)} training and {len(held)} held-out scenes in {time.time() - started:.0f}s; e.g. "
          f"{train[0].question} -> {train[0].answer}", flush=True)  # fmt: skip

    if args.init:  # its own rope_theta and tokenizer (byte-level: it still encodes every question)
        model, processor = models.load_model(args.init, device="cpu", episode_config=episode_config)
    else:
        model, processor = fresh_model(args, train, episode_config)
    tokenizer = processor.tokenizer
    digit_ids = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
    collate = sft.SFTCollator(processor)
    examples = [sft.tokenize_example(processor, perception.sft_example(i), None, True) for i in train]
    narrow = tenths_only if args.ask == "box" else lambda batch, ids: batch  # a word: all its tokens
    held_batches = [narrow(collate([sft.tokenize_example(processor, perception.sft_example(i), None, True)
                                         for i in held[k : k + 16]]), digit_ids) for k in range(0, len(held), 16)]  # fmt: skip
    floor = Counter(label for b in held_batches for label in b["labels"][b["answer_mask"]].tolist())
    floor_rate = floor.most_common(1)[0][1] / sum(floor.values())

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100))
    rng = random.Random(0)
    model.train()
    started = time.time()
    print(f"\n{'step':>5} {'loss':>6} {'held-out tenths':>16} {'most common':>12} {'seconds':>8}")
    if args.init:  # what the earlier stage already knows of these scenes
        if args.ask == "box":
            print(f"{0:>5} {'':>6} {digit_accuracy(model, held_batches, digit_ids):>16.1%} {floor_rate:>12.1%}",
                  flush=True)  # fmt: skip
        print(greedy_scores(model, processor, held, episode_config), flush=True)
    for step in range(1, args.steps + 1):
        batch = collate(rng.sample(examples, 16))
        answer_mask = batch.pop("answer_mask")
        output = model(**batch)
        loss = output.loss + sft.answer_loss(output.logits, batch["labels"], answer_mask.bool())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % args.every == 0:
            if args.ask != "box":  # a word, not digits: the greedy answers
                print(f"{step:>5} {loss.item():>6.3f} {time.time() - started:>8.0f}s  "
                      f"{greedy_scores(model, processor, held, episode_config)}", flush=True)  # fmt: skip
                continue
            accuracy = digit_accuracy(model, held_batches, digit_ids)
            print(f"{step:>5} {loss.item():>6.3f} {accuracy:>16.1%} {floor_rate:>12.1%} {time.time() - started:>8.0f}",
                  flush=True)  # fmt: skip
    print(greedy_scores(model, processor, held, episode_config), flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        print(f"saved to {args.save}")


if __name__ == "__main__":
    main()
