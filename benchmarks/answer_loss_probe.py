"""How fast a from-scratch model learns to read a digit, with the plain SFT loss against the answer-weighted one.

The toy line's models start from random weights, so they must learn to see (SPEC §6). This probe asks the smallest
version of that question: one image, one large white digit on grey (drawn with the scenes' font, centred with a few
pixels of jitter, a fresh image every sample), "What digit is shown?", and the trained reply `\\boxed{d}`. Each arm
trains a fresh copy of the same model for the same steps on the same images, through pxr's own SFT path
(`pxr.sft.tokenize_example`, `SFTCollator`, the model's loss), and differs only in the loss:

- plain: the mean cross-entropy over the reply's tokens, as SFT trains (answer_loss_weight 0);
- answer-weighted: that mean plus `--weight` x the mean over the answer tokens (`pxr.sft.answer_loss`).

It prints held-out digit accuracy (teacher-forced: the most likely digit at the answer position; chance 10 %) every
`--every` steps for both arms side by side, and the steps each arm took to reach `--target`.

    .venv/bin/python benchmarks/answer_loss_probe.py [--size tiny] [--steps 600] [--ink 58] [--weight 1.0]

A plain AdamW loop (not `transformers.Trainer`) keeps the comparison to the loss alone: Trainer's defaults (beta2
0.999, linear warm-up) change how long the plateau lasts, and both arms would need them anyway.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from PIL import Image, ImageDraw

from pxr import models, protocol, sft
from pxr.config import EpisodeConfig
from pxr.scene_draw import font_for_ink_height

QUESTION = "What digit is shown?"


def digit_example(seed: int, font, side: int) -> dict:
    rng = random.Random(seed)
    digit = str(rng.randrange(10))
    image = Image.new("RGB", (side, side), (128, 128, 128))
    left, top, right, bottom = font.getbbox(digit)
    cx, cy = side / 2 + rng.randint(-8, 8), side / 2 + rng.randint(-8, 8)
    ImageDraw.Draw(image).text((cx - (left + right) / 2, cy - (top + bottom) / 2), digit, font=font, fill="white")
    messages = protocol.build_messages(QUESTION, 1, [("assistant", f"\\boxed{{{digit}}}", 0)], variant="text")
    return {"id": str(seed), "messages": messages, "images": [image], "trainable": [True]}


def digit_accuracy(model, batches, digit_ids) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for batch in batches:
            logits = model(**{k: v for k, v in batch.items() if k != "answer_mask"}).logits[:, :-1]
            labels, mask = batch["labels"][:, 1:], batch["answer_mask"][:, 1:]
            predicted = digit_ids[logits[mask][:, digit_ids].argmax(-1)]
            right += (predicted == labels[mask]).sum().item()
            total += int(mask.sum())
    model.train()
    return right / total


def train_arm(model_dir, weight: float, args, font) -> list[tuple[int, float]]:
    torch.manual_seed(0)
    episode = EpisodeConfig(crop_min_pixels=28 * 28, crop_max_pixels=args.side * args.side)
    model, processor = models.load_model(model_dir, device="cpu", dtype="float32", episode_config=episode)
    tokenize, collate = (
        (lambda e: sft.tokenize_example(processor, e, with_answer_mask=True)),
        sft.SFTCollator(processor),
    )
    digit_ids = torch.tensor([processor.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
    held = [tokenize(digit_example(10**9 + k, font, args.side)) for k in range(args.held_out)]
    held_batches = [collate(held[k : k + 16]) for k in range(0, len(held), 16)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    curve, model_inputs = [], None
    model.train()
    for step in range(1, args.steps + 1):
        batch = collate([tokenize(digit_example(step * 1000 + j, font, args.side)) for j in range(args.batch)])
        model_inputs = {k: v for k, v in batch.items() if k != "answer_mask"}
        outputs = model(**model_inputs)
        loss = outputs.loss
        if weight:
            loss = loss + weight * sft.answer_loss(outputs.logits, batch["labels"], batch["answer_mask"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        optimizer.zero_grad()
        if step % args.every == 0:
            curve.append((step, digit_accuracy(model, held_batches, digit_ids)))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ink", type=int, default=58, help="digit height in px (58 on 112 is about half the image)")
    parser.add_argument("--side", type=int, default=112, help="image side in px (a multiple of 28)")
    parser.add_argument("--weight", type=float, default=1.0, help="answer_loss_weight of the second arm")
    parser.add_argument("--held-out", type=int, default=160)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    font = font_for_ink_height(args.ink)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = models.default_corpus(0) + [QUESTION]
        model_dir = models.build_tiny_model(tmp, seed=0, size=args.size, corpus=corpus)
        curves = {}
        for name, weight in (("plain", 0.0), (f"answer x{args.weight:g}", args.weight)):
            start = time.perf_counter()
            curves[name] = train_arm(model_dir, weight, args, font)
            print(f"{name}: {args.steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    names = list(curves)
    print(f"\n{args.size} model, {args.ink}-px digit on {args.side}-px images, lr {args.lr}, batch {args.batch}")
    print("held-out digit accuracy (chance 10 %)")
    print(f"{'step':>6} " + " ".join(f"{n:>12}" for n in names))
    for rows in zip(*(curves[n] for n in names), strict=True):
        print(f"{rows[0][0]:>6} " + " ".join(f"{acc:>12.1%}" for _, acc in rows))
    for name in names:
        reached = next((step for step, acc in curves[name] if acc >= args.target), None)
        print(
            f"{name}: {'reached' if reached else 'did not reach'} {args.target:.0%}"
            + (f" at step {reached}" if reached else "")
        )


if __name__ == "__main__":
    main()
