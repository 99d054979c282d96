"""Seconds per RL step and where they go: generation, op execution, reward, the rest of rollout scoring, and the
loss forward/backward, side by side in one run (tiny model, CPU by default).

The tiny model is random, so on its own it would never call an op. `model.generate` is wrapped: the real model
generates as many tokens as the scripted turn has (all of its compute), and the tokens that come out are the
script's: half the rollouts zoom on their first turn and answer after the observation, the others answer at once.

    .venv/bin/python benchmarks/rl_step.py [--size tiny|small] [--steps 4] [--generations 4] [--batch 8]
    .venv/bin/python benchmarks/rl_step.py --size small --against d7572cd   # that commit's pxr beside this one

Each row is the mean over the measured steps (the first step, which warms up, is left out). `--against REF` runs
the same measurement on the pxr of a git commit (checked out in a temporary worktree, in a subprocess) and prints
the two side by side with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from pxr import data, models, protocol, rl, rl_env, synth_run
from pxr.config import EpisodeConfig, RewardConfig, RLConfig

ZOOM = "The digit is small; looking closer.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]})


class Timers:
    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, owner, name, key):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start

        setattr(owner, name, timed)


def scripted_generate(model, tokenizer):
    real = model.generate

    def generate(input_ids=None, attention_mask=None, **kwargs):
        eos = kwargs["generation_config"].eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        scripts = []
        for i, ids in enumerate(input_ids):
            text = tokenizer.decode(ids[attention_mask[i].bool()])
            turn = "It is \\boxed{3}." if "<tool_response>" in text else ZOOM if i % 2 == 0 else "It is \\boxed{7}."
            tokens = tokenizer(turn + "<|im_end|>")["input_ids"]
            stop = next(k for k, t in enumerate(tokens) if t in eos)  # where the trainer's generation stops
            scripts.append(tokens[: stop + 1])
        width = max(map(len, scripts))
        kwargs.pop("generation_config", None)
        real(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=width, min_new_tokens=width,
             do_sample=True, **kwargs)  # fmt: skip
        new = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in scripts], device=input_ids.device)
        return torch.cat([input_ids, new], dim=1)

    model.generate = generate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=sorted(models.MODEL_SIZES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4, help="G")
    parser.add_argument("--batch", type=int, default=8, help="rollouts per step")
    parser.add_argument("--max-pixels", type=int, default=256 * 784, help="query and crop budget")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", help="weights' dtype; bfloat16 (and bf16 autocast) for 7b")
    parser.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    parser.add_argument("--against", default="", help="a git commit whose pxr to measure beside this one")
    parser.add_argument("--repeat", type=int, default=1, help="with --against: alternate the two this many times")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (used by --against)")
    return parser.parse_args(argv)


def measure(args) -> dict[str, float]:
    """Seconds per step of each part, mean over the measured steps."""
    episode_config = EpisodeConfig(image_max_pixels=args.max_pixels, crop_max_pixels=args.max_pixels)
    with tempfile.TemporaryDirectory() as tmp:
        root = synth_run.smoke_dataset(Path(tmp) / "data", seed=0, episode_config=episode_config)
        queries, _ = data.read_jsonl(root / synth_run.RL_QUERIES, data.RLQuery)
        model, processor = models.random_model_of_size(
            args.size, tmp, dtype=args.dtype, device=args.device, episode_config=episode_config
        )
        model.train()
        scripted_generate(model, processor.tokenizer)
        timers = Timers()
        timers.wrap(model, "generate", "generation")
        # The episode's entry point: every routed turn (today), or TRL's native tool calls (before routing).
        entry = "_take_turn" if hasattr(rl_env._EpisodeEnvironment, "_take_turn") else "_observe"
        timers.wrap(rl_env._EpisodeEnvironment, entry, "op execution")
        config = RLConfig(max_steps=args.steps + 1, num_generations=args.generations,
                          per_device_train_batch_size=args.batch, save_steps=10_000, max_completion_length=512,
                          bf16=args.dtype == "bfloat16", gradient_checkpointing=args.grad_ckpt)  # fmt: skip
        trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=Path(tmp) / "run",
                                  episode_config=episode_config, reward_config=RewardConfig(), rl_config=config)  # fmt: skip
        trainer.reward_funcs[0] = TimedReward(trainer.reward_funcs[0], timers)
        timers.wrap(trainer, "_generate_and_score_completions", "rollout + scoring")
        timers.wrap(trainer, "training_step", "step")
        per_step = []
        original_step = trainer.training_step

        def step(*a, **k):
            before = dict(timers.seconds)
            result = original_step(*a, **k)
            per_step.append({key: timers.seconds[key] - before.get(key, 0.0) for key in timers.seconds})
            return result

        trainer.training_step = step
        trainer.train()
    measured = per_step[1:] or per_step
    mean = {key: sum(s.get(key, 0.0) for s in measured) / len(measured) for key in measured[0]}
    rollout_other = mean["rollout + scoring"] - mean["generation"] - mean["op execution"] - mean["reward"]
    return {
        "generation (model.generate)": mean["generation"],
        "op execution (VisualEpisode)": mean["op execution"],
        "reward (gathered groups)": mean["reward"],
        "rest of rollout scoring (processor, tool loop, old logprobs)": rollout_other,
        "loss forward + backward + optimizer": mean["step"] - mean["rollout + scoring"],
        "total": mean["step"],
        "steps measured": len(measured),
    }


def measure_at(ref: str, argv: list[str]) -> dict[str, float]:
    """`measure` with the pxr of commit `ref`, in a subprocess run from a temporary worktree of it."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)  # fmt: skip
        try:
            command = [sys.executable, str(Path(__file__).resolve()), *argv, "--json"]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.against:
        # Alternate the two so that a change in the machine's load falls on both; keep each part's fastest run.
        rest = [a for a in argv if a not in ("--against", args.against, "--repeat", str(args.repeat))]
        befores, nows = [], []
        for _ in range(args.repeat):
            befores.append(measure_at(args.against, rest))
            nows.append(measure(args))
        before = {k: min(b[k] for b in befores) for k in befores[0]}
        now = {k: min(n[k] for n in nows) for k in nows[0]}
        print(f"\nRL step, {args.size} model, {args.batch} rollouts (G = {args.generations}), "
              f"{now['steps measured']} steps measured, best of {args.repeat}, pxr at {args.against} vs this tree")  # fmt: skip
        print(f"{'part':62s} {args.against[:10]:>10s} {'now':>8s} {'now/then':>9s}")
        for name in [k for k in now if k != "steps measured"]:
            ratio = now[name] / before[name] if before.get(name) else float("nan")
            print(f"{name:62s} {before.get(name, float('nan')):10.3f} {now[name]:8.3f} {ratio:9.2f}")
        return
    rows = measure(args)
    if args.json:
        print(json.dumps(rows))
        return
    total = rows["total"]
    print(f"\nRL step, {args.size} model, {args.batch} rollouts (G = {args.generations}), "
          f"{rows['steps measured']} steps measured")  # fmt: skip
    print(f"{'part':62s} {'s/step':>8s} {'share':>7s}")
    for name, seconds in rows.items():
        if name not in ("total", "steps measured"):
            print(f"{name:62s} {seconds:8.3f} {seconds / total:7.1%}")
    print(f"{'total':62s} {total:8.3f}")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


class TimedReward:
    """The reward function, timed; it keeps the `.last` the trainer reads off it."""

    def __init__(self, function, timers):
        self.function, self.timers, self.__name__ = function, timers, function.__name__

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.timers.seconds["reward"] += time.perf_counter() - start

    @property
    def last(self):
        return self.function.last

    @property
    def last_batch(self):
        return getattr(self.function, "last_batch", {})


if __name__ == "__main__":
    main()
