"""SFT training throughput with plain random batches against length-grouped batches, on the same trajectories, in one run.

About 48 trajectories of mixed lengths (read items that zoom, short coarse items, flash items on video frames) are
synthesized offline with the template teacher, replayed and tokenized once. For each model size, `pxr.training.sft.make_trainer`
then trains a fresh copy of the model for a fixed number of optimizer steps under three samplers:

- plain: Trainer's default random batches;
- grouped: Trainer's own `train_sampling_strategy="group_by_length"` (transformers 5's name for `group_by_length=True`):
  random mega-batches of 12 examples (at batch 4 on 48 examples), each sorted by length, then cut into batches;
- sorted: our ordering: every example sorted by length, cut into batches, the batches shuffled; the least padding
  a batch of random examples can have.

What each step actually received is read from its inputs: trained tokens are the real (non-padding) tokens of a batch,
padded tokens are all of its positions (batch x longest row); padding share = 1 - trained / padded. Only the steps
after the warm-up are timed (from the end of the last warm-up step to the end of the last step).

    .venv/bin/python benchmarks/sft_throughput.py [--sizes tiny small] [--steps 12] [--warmup 2] [--batch 4]

The vision tower sees every image whatever the padding, and its cost is part of each step: grouping only saves the
language model's work on padding positions, so the gain in trained tokens/s is smaller than the drop in padded tokens.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from pathlib import Path

import torch

from pxr import data, models
from pxr.config import EpisodeConfig
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TemplateTeacher
from pxr.training import sft

EPISODE = EpisodeConfig()
MIX = (("read", 24), ("coarse", 12), ("flash", 12))


def build_examples(root: Path, processor) -> tuple[list[dict], dict]:
    items = [i for kind, n in MIX for i in synth_run.write_seed_items(kind, n, 0, root, split="sft")]
    synth_run.synthesize(
        items, root, TemplateTeacher(seed=0), synth_config=synth.SynthConfig(), episode_config=EPISODE, progress=False
    )
    records, _ = data.read_jsonl(root / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    examples = [sft.tokenize_example(processor, sft.sft_example(r, root, EPISODE)) for r in records]
    kinds = {}
    for record in records:
        kinds[record.seed_id.split("-")[1]] = kinds.get(record.seed_id.split("-")[1], 0) + 1
    return examples, kinds


class SortedBatchSampler(torch.utils.data.Sampler):
    """Indices sorted by length, cut into batches, the batches shuffled (a new order each epoch)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches)

    def __iter__(self):
        batches = list(self.batches)
        self.rng.shuffle(batches)
        return iter([i for b in batches for i in b])


def measure(model_dir: Path, processor, examples, setting: str, args, out_dir: Path) -> dict:
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    model, _ = models.load_model(model_dir, dtype="float32", episode_config=EPISODE)
    total = args.warmup + args.steps
    trainer = sft.make_trainer(
        model,
        processor,
        examples,
        output_dir=out_dir / setting,
        learning_rate=1e-4,
        max_steps=total,
        per_device_train_batch_size=args.batch,
        warmup_ratio=0.0,
        save_steps=10**6,
        seed=0,
        logging_steps=10**6,
    )
    if setting == "grouped":
        trainer.args.train_sampling_strategy = "group_by_length"
    elif setting == "sorted":
        lengths = [len(e["input_ids"]) for e in examples]
        trainer._get_train_sampler = lambda *a, **k: SortedBatchSampler(lengths, args.batch)

    batches: list[tuple[int, int, int]] = []  # (real tokens, padded positions, loss tokens) per training step
    inner = trainer.training_step

    def training_step(model, inputs, *rest, **kwargs):
        mask = inputs["attention_mask"]
        batches.append((int(mask.sum()), mask.numel(), int((inputs["labels"] != sft.IGNORE_INDEX).sum())))
        return inner(model, inputs, *rest, **kwargs)

    trainer.training_step = training_step
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    for quiet in (PrinterCallback, ProgressCallback):  # the end-of-training summary line
        trainer.remove_callback(quiet)
    sft.train(trainer)
    assert len(ends) == total and len(batches) == total, (len(ends), len(batches))
    seconds = ends[-1] - ends[args.warmup - 1] if args.warmup else ends[-1] - ends[0]
    timed = batches[args.warmup :] if args.warmup else batches[1:]
    real, padded, loss = (sum(b[k] for b in timed) for k in range(3))
    shares = [1 - b[0] / b[1] for b in timed]
    return {
        "seconds": seconds,
        "trained_s": real / seconds,
        "padded_s": padded / seconds,
        "pad_share": 1 - real / padded,
        "worst_share": max(shares),
        "step_s": seconds / len(timed),
        "loss_tokens": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(models.MODEL_SIZES))
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        dirs = {size: models.build_tiny_model(tmp / f"model-{size}", size=size) for size in args.sizes}
        # Every size uses the same tokenizer and image processor (default corpus, seed 0): tokenize once.
        processor = models.load_processor(dirs[args.sizes[0]])
        models.set_pixel_limits(processor, EPISODE)
        examples, kinds = build_examples(tmp / "synth", processor)
        lengths = sorted(len(e["input_ids"]) for e in examples)
        print(
            f"{len(examples)} trajectories ({', '.join(f'{n} {k}' for k, n in kinds.items())}) built in "
            f"{time.perf_counter() - start:.1f} s; tokens per example min {lengths[0]}, median "
            f"{lengths[len(lengths) // 2]}, max {lengths[-1]}"
        )
        print(
            f"{device}, {torch.get_num_threads()} torch threads; batch {args.batch}, {args.steps} timed steps after "
            f"{args.warmup} warm-up steps"
        )
        for size in args.sizes:
            check = models.load_processor(dirs[size]).tokenizer
            assert check.get_vocab() == processor.tokenizer.get_vocab(), f"{size} has another tokenizer"
            results = {}
            for setting in ("plain", "grouped", "sorted"):
                results[setting] = measure(dirs[size], processor, examples, setting, args, tmp / f"run-{size}")
            params = sum(p.numel() for p in models.load_model(dirs[size], device="cpu")[0].parameters())
            print(
                f"\n{size} ({params / 1e6:.2f}M params) {'trained tok/s':>14} {'padded tok/s':>13} "
                f"{'padding':>8} {'worst batch':>12} {'s/step':>7} {'vs plain':>9}"
            )
            base = results["plain"]["trained_s"]
            for setting, r in results.items():
                print(
                    f"{setting:>22} {r['trained_s']:>14.0f} {r['padded_s']:>13.0f} {r['pad_share']:>7.0%} "
                    f"{r['worst_share']:>12.0%} {r['step_s']:>7.2f} {r['trained_s'] / base:>8.2f}x"
                )
        print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
