"""Throughput of the batched rollout engine against one episode at a time, on the same prompts, in one run.

The tiny model is built locally with random weights, so on its own it would never call an op. A thin wrapper keeps
all of its compute (every forward pass of `generate`, a fixed number of new tokens per turn) and only overwrites
which tokens come out, so that zoom items call `zoom_in` on their first turn and answer on their second, while
coarse items answer at once: the mix of one- and two-turn episodes a trained model produces.

    .venv/bin/python benchmarks/rollout_throughput.py [--episodes 32] [--new-tokens 64 128] [--repeats 3] [--threads 1]

Two engines, each at batch 1 (the naive loop: one episode at a time) and batch 4 and 16:
- `plain`: every turn re-renders the chat, runs the processor over every image of the episode, and prefills the
  left-padded batch from the system prompt on (the engine before `pxr.rollout_batch`);
- `kv-reuse`: what `generate_trajectories` does with a Qwen-VL model. Each episode keeps its KV cache between turns;
  a turn prefills, one episode at a time, only the tokens the cache does not hold (each image goes through the
  processor and the vision tower once), then the batch decodes together from a stitched, left-padded cache. Here the
  cache of the generated tokens cannot be kept (they are the random model's, the script's replace them), so a second
  turn prefills from its first generated token: a real model also skips those.
"vs naive" compares each engine with itself at batch 1, "vs plain naive" with the plain engine at batch 1. Every
configuration runs `--repeats` times, interleaved, and its fastest run counts: on a shared machine the slow runs
measure the neighbours. On this machine (2 cores shared with 3 other workers) the figures move by 2x from run to run;
`--threads 1` avoids the worst of it (two threads on a busy core make every op wait).

Measured 2026-11-24 (tiny model, 32 episodes, 64 tokens per turn; see benchmarks/README.md for the tables). Where
the time goes now (timers around each stage, 1 thread, best of 3, a training job on the other core):

    kv-reuse, batch 1 : 6.7 s = decode 4.9 (1.6 ms a step, mostly generate's and the model's Python)
                                + per-episode prefill 1.4 (image processor 0.24, vision tower 0.52, tokenizing 0.07,
                                  LM prefill and the rest 0.55)
                                + input resizing in the episode 0.2, chat template, op execution 0.2
    kv-reuse, batch 16: 2.4 s = decode 0.76 (3.0 ms a step for 16 rows; attention over the ~1000-token stitched cache
                                  ~0.8 ms of it, bound by reading the cache)
                                + per-episode prefill 1.33 (0.19, 0.50, 0.07, 0.55: the same work as at batch 1)
                                + the same 0.3

What changed since the first KV-reuse version (same day, quiet machine: 2.4x at batch 16): decode writes new keys
and values into room reserved in the stitched cache instead of concatenating the whole batch cache every step (a
16-row step 5.1 -> 3.6 ms under cProfile); the vision tower's patch Conv3d runs as the matrix product it is (7 -> 1 ms an image) with the
processor's rescale and normalisation folded into its weights (processor 5.7 -> 1.6 ms an image). Batching the image
processor, the vision tower or the LM prefill across the episodes of a turn was measured slower (pxr/rollout_batch.py).

Batching shares only the decoding. What is left per episode (input resizing, image processing, vision tower, prefill:
about 35 ms an episode-turn on one core) does not shrink with the batch, and it is now over half of a batch-16 run;
a 16-row decode step costs about 2x a 1-row step. So the ratio grows with the tokens per turn (3.6x at 128) and with
a second thread (which speeds the batch's attention and matrix work, not the per-step Python of the batch-1 loop).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch
from PIL import Image

from pxr import models, protocol
from pxr.rollout import Query, RolloutConfig, generate_trajectories

ZOOM_CALL = "Too small to read; zooming in.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.3, 0.3, 0.6, 0.6]})


class ScriptedDecisions:
    """The real model generates `n` tokens per turn; the tokens it returns are the script's, padded. Not callable,
    so the engine takes its plain path (the whole chat re-encoded each turn) with it."""

    def __init__(self, model, tokenizer):
        self.inner, self.tokenizer = model, tokenizer
        self.device, self.generation_config = model.device, model.generation_config

    def script(self, prompt: str) -> str:
        if "[coarse]" in prompt or "<tool_response>" in prompt:
            return "It is \\boxed{3}."
        return ZOOM_CALL

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        kwargs.pop("stop_strings", None)  # a fixed amount of compute per turn, whatever the random model writes
        out = self.inner.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            **kwargs,
        )
        eos, pad = self.generation_config.eos_token_id[0], self.tokenizer.pad_token_id
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            new = self.tokenizer.encode(self.script(self.tokenizer.decode(ids[mask.bool()].tolist()))) + [eos]
            rows.append(ids.tolist() + (new + [pad] * max_new_tokens)[:max_new_tokens])
        sequences = out.sequences if kwargs.get("return_dict_in_generate") else out
        assert sequences.shape[1] == input_ids.shape[1] + max_new_tokens
        if kwargs.get("return_dict_in_generate"):
            out.sequences = torch.tensor(rows)
            out.past_key_values = None  # it holds the random model's tokens, not these: no episode may reuse it
            return out
        return torch.tensor(rows)


class ScriptedDecisionsCached(ScriptedDecisions):
    """The same, but the forward pass and the model's parts are reachable: the engine keeps KV caches per episode.
    The cache holds the random model's own tokens, not the script's, so each next turn prefills from the first
    generated token on: the figures are, if anything, pessimistic for this path."""

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)


def make_queries(n: int, images_per_query: int = 1) -> list[Query]:
    items = []
    for i in range(n):
        kind = "coarse" if i % 2 else "zoom"
        images = [Image.new("RGB", (896, 672), (40 + i % 200, 90, 30 * k)) for k in range(images_per_query)]
        items.append(Query(f"{kind}{i}", f"[{kind}] What digit is on the sign?", images=images))
    return items


def measure(model, processor, queries, batch_size, new_tokens) -> dict:
    config = RolloutConfig(max_new_tokens=new_tokens, batch_size=batch_size)
    start = time.perf_counter()
    trajectories = generate_trajectories(model, processor, queries, rollout_config=config, progress=False)
    seconds = time.perf_counter() - start
    turns = sum(sum(t.role == "assistant" for t in tr.turns) for tr in trajectories)
    ops = sum(tr.episode.n_executed for tr in trajectories)
    return {
        "seconds": seconds,
        "episodes_s": len(queries) / seconds,
        "tokens_s": turns * new_tokens / seconds,
        "ops": ops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 128], help="tokens per turn; one table each")
    parser.add_argument("--rss-episodes", type=int, default=256)
    parser.add_argument("--size", default="tiny", choices=list(models.MODEL_SIZES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration; the fastest counts")
    parser.add_argument("--threads", type=int, help="torch CPU threads; 1 is steadier on a shared machine")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16], help="batch sizes; 1 is the naive loop")
    parser.add_argument("--dtype", default="float32", help="model dtype (bfloat16 on a GPU)")
    parser.add_argument("--engines", nargs="+", default=["plain", "kv-reuse"], choices=["plain", "kv-reuse"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = models.random_model_of_size(args.size, tmp, dtype=args.dtype, device=args.device)
    engines = {
        "plain": ScriptedDecisions(model, processor.tokenizer),  # every turn re-encodes the whole chat
        "kv-reuse": ScriptedDecisionsCached(model, processor.tokenizer),  # per-episode KV cache across turns
    }
    engines = {name: engines[name] for name in args.engines}
    queries = make_queries(args.episodes)
    print(
        f"{args.size} model ({models.count_parameters(model) / 1e6:.2f}M params) on {args.device}, "
        f"{torch.get_num_threads()} threads; {args.episodes} episodes (half zoom, half coarse)"
    )
    for new_tokens in args.new_tokens:
        print(
            f"\n{new_tokens} new tokens per turn {'episodes/s':>11} {'tokens/s':>10} {'ops':>5} "
            f"{'vs naive':>9} {'vs plain naive':>15}"
        )
        # Every configuration runs `repeats` times, interleaved, and keeps its fastest run: on a shared machine the
        # slow runs measure the neighbours.
        runs = [(name, batch) for name in engines for batch in args.batches]
        best = {}
        for _ in range(args.repeats):
            for name, batch in runs:
                result = measure(engines[name], processor, queries, batch, new_tokens)
                if (name, batch) not in best or result["seconds"] < best[name, batch]["seconds"]:
                    best[name, batch] = result
        first = next(iter(engines))
        plain_naive = best.get(("plain", 1), best[first, args.batches[0]])
        for name, batch in runs:
            result, naive = best[name, batch], best.get((name, 1), best[name, args.batches[0]])
            label = f"{name}, batch {batch}" + (" (naive)" if batch == 1 else "")
            print(
                f"{label:>26} {result['episodes_s']:>11.2f} {result['tokens_s']:>10.1f} {result['ops']:>5} "
                f"{result['episodes_s'] / naive['episodes_s']:>8.1f}x "
                f"{result['episodes_s'] / plain_naive['episodes_s']:>14.1f}x"
            )

    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
              f"(weights {sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30:.1f} GiB)")  # fmt: skip
    if args.rss_episodes <= 0:
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    many = make_queries(args.rss_episodes, images_per_query=2)  # 2 inputs + 1 crop on zoom items
    start = time.perf_counter()
    trajectories = generate_trajectories(
        engines.get("kv-reuse") or next(iter(engines.values())),
        processor,
        many,
        rollout_config=RolloutConfig(max_new_tokens=8, batch_size=16),
        progress=False,
    )
    held = sum(len(t.episode.entries) for t in trajectories)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.rss_episodes} episodes holding {held} images ({held / len(trajectories):.1f} each, 896x672 inputs): "
        f"peak RSS {peak:.0f} MB (was {before:.0f} MB before them), {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
