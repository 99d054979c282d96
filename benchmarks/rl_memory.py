"""Memory per GPU of an RL run, before launching it: weights, gradients, optimizer states, KV cache per rollout and
for one generate call, activations of one training micro-batch, and the peak (`pxr.training.rl_memory` has the formulas).
It computes from the model's config (built on the meta device: no weights, no download, no GPU).

It prints the run as given and the same run with generation in micro-batches: all of a process's rollouts in one
`generate` call (generation_micro_batch_size 0, TRL's way without vLLM) against the micro-batch the params set or
`--micro-batch`, and the largest micro-batch whose peak fits `--gpu-memory-gb`.

    .venv/bin/python benchmarks/rl_memory.py                                  # paper params, 7B config, 80 GB GPUs
    .venv/bin/python benchmarks/rl_memory.py --params params/30_train_rl/paper.yaml --micro-batch 16
    .venv/bin/python benchmarks/rl_memory.py --size 7b --zero-stage 0 --gpus 1 --weights-dtype bfloat16 \\
        --optimizer-dtype bfloat16 --batch 16 --accumulation 1 --updates-per-generation 1 \\
        --max-completion-length 4096 --prompt-tokens 400 --micro-batch 4           # benchmarks/rl_step.py on one GPU
    .venv/bin/python benchmarks/rl_memory.py --micro-batch 8 --max-completion-length 1024 --measure   # GPU

A params file is read as `pxr run` merges it (over base.yaml, `extends` followed): the batch sizes, completion
length, gradient checkpointing, vision freezing, dtype (bf16 autocast over fp32 master weights), the accelerate
config (ZeRO-3 when its name says zero3) and process count; the prompt is the query image's visual tokens
(image_max_pixels / 784) plus `--text-tokens` of system prompt and question. Flags override the file.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from pxr import models
from pxr.runner import params
from pxr.training import rl_memory

REPO = Path(__file__).resolve().parents[1]


def read_params(path: Path) -> dict:
    """A run's parameters as `pxr run` merges them (base.yaml, what the run extends or shares, the run file)."""
    return params.load_params(path.parent.name, path.stem)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="7b", choices=sorted(models.MODEL_SIZES))
    parser.add_argument("--params", default=str(REPO / "params/30_train_rl/paper.yaml"), help="'' for none")
    parser.add_argument("--text-tokens", type=int, default=400, help="system prompt and question, tokens")
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0, help="the GPU's memory (10^9 bytes)")
    flags = {
        "--batch": ("per_device_train_batch_size", int),
        "--accumulation": ("gradient_accumulation_steps", int),
        "--updates-per-generation": ("updates_per_generation", int),
        "--max-completion-length": ("max_completion_length", int),
        "--prompt-tokens": ("prompt_tokens", int),
        "--micro-batch": ("generation_micro_batch_size", int),
        "--weights-dtype": ("weights_dtype", str),
        "--optimizer-dtype": ("optimizer_dtype", str),
        "--activation-dtype": ("activation_dtype", str),
        "--zero-stage": ("zero_stage", int),
        "--gpus": ("gpus", int),
    }
    for flag, (name, kind) in flags.items():
        parser.add_argument(flag, dest=name, type=kind, default=None)
    parser.add_argument("--measure", action="store_true", help="run one generate call of the micro-batch and measure")
    parser.add_argument("--grad-ckpt", dest="gradient_checkpointing", action="store_true", default=None)
    parser.add_argument("--no-grad-ckpt", dest="gradient_checkpointing", action="store_false")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = (
        rl_memory.run_from_params(read_params(Path(args.params)), args.text_tokens)
        if args.params
        else rl_memory.RunShape()
    )
    run = replace(
        run, **{f.name: getattr(args, f.name) for f in fields(run) if getattr(args, f.name, None) is not None}
    )
    model = rl_memory.model_shape(args.size)
    budget = args.gpu_memory_gb * 1e9
    fits = rl_memory.largest_micro_batch(model, run, budget)
    columns = {"one generate call": replace(run, generation_micro_batch_size=0)}
    if run.generation_micro_batch_size:
        columns[f"micro-batch {run.generation_micro_batch_size}"] = run
    if fits and fits != run.generation_micro_batch_size:
        columns[f"micro-batch {fits} (max fit)"] = replace(run, generation_micro_batch_size=fits)
    estimates = {name: rl_memory.estimate(model, shape) for name, shape in columns.items()}

    print(f"\nRL memory per GPU, {args.size} config ({model.parameters / 1e9:.2f} B parameters), "
          f"{Path(args.params).resolve().relative_to(REPO) if args.params else 'flags only'}")  # fmt: skip
    print(f"{run.rollouts_per_generation} rollouts per process per generation, {run.tokens} tokens each "
          f"({run.prompt_tokens} prompt + {run.max_completion_length} completion), training micro-batch "
          f"{run.per_device_train_batch_size}, weights {run.weights_dtype}, activations {run.activation_dtype}, "
          f"ZeRO-{run.zero_stage} over {run.gpus} GPU(s), gradient checkpointing {run.gradient_checkpointing}")  # fmt: skip
    print(f"\n{'GiB':44s}" + "".join(f"{name:>26s}" for name in estimates))
    for part in next(iter(estimates.values())):
        print(f"{part:44s}" + "".join(f"{e[part] / rl_memory.GIB:26.2f}" for e in estimates.values()))
    verdict = f"micro-batch {fits}" if fits else "no micro-batch (the static part and training alone do not fit)"
    print(f"\nlargest generation micro-batch within {args.gpu_memory_gb:g} GB ({budget / rl_memory.GIB:.1f} GiB): "
          f"{verdict}")  # fmt: skip
    if args.measure:
        measure_generation(args.size, model, run)


def measure_generation(size: str, model: rl_memory.ModelShape, run: rl_memory.RunShape) -> None:
    """One greedy `generate` call of the run's micro-batch (text prompts of the run's prompt length, every rollout
    forced to the full completion length) on a random bf16 model: the KV cache it holds at the end, counted, beside
    the estimate; on a GPU also the memory the call added to the weights (torch.cuda.max_memory_allocated), which
    includes what the estimate leaves out of generation (the prefill's activations, a step's logits)."""
    import tempfile

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rollouts = run.rollouts_per_generate_call
    with tempfile.TemporaryDirectory() as tmp:
        policy, _ = models.random_model_of_size(size, tmp, dtype="bfloat16", device=device)
    ordinary = min(policy.config.text_config.vocab_size, 2000)  # token ids past the special ones, in every size
    prompt = torch.randint(len(models.SPECIAL_TOKENS), ordinary, (rollouts, run.prompt_tokens), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with torch.no_grad():
        out = policy.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_new_tokens=run.max_completion_length, min_new_tokens=run.max_completion_length,
                              return_dict_in_generate=True)  # fmt: skip
    held = sum(t.numel() * t.element_size() for layer in out.past_key_values.layers for t in (layer.keys, layer.values))
    # The last generated token is never fed back, so the cache holds one position less than the sequence.
    same = replace(run, activation_dtype="bfloat16", max_completion_length=run.max_completion_length - 1)
    kv = rl_memory.estimate(model, same)["KV cache of one generate call"]
    print(f"\nmeasured, one generate call of {rollouts} rollouts x {run.tokens} tokens ({device}): KV cache held "
          f"{held / rl_memory.GIB:.4f} GiB ({held} bytes), estimated {kv / rl_memory.GIB:.4f} GiB ({kv:.0f} bytes)")  # fmt: skip
    if device == "cuda":
        added = torch.cuda.max_memory_allocated() - before
        print(
            f"peak memory the call added to {before / rl_memory.GIB:.2f} GiB of weights: {added / rl_memory.GIB:.2f} GiB"
        )


if __name__ == "__main__":
    main()
