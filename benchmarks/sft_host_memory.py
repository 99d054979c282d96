"""Host memory of one SFT process: trajectory images replayed for the whole data set up front (the eager list,
`[pxr.training.sft.sft_example(r, ...) for r in records]`) against replayed when the Trainer reads an example
(`pxr.training.sft.ReplayedExamples`, what `pxr.training.sft_job` trains on).

N smoke trajectories are synthesized once (offline template teacher; image and video kinds). Each variant then runs in
its own process, so that peak RSS is its own: read the records, build the data set as a launched rank does (every
rank builds all of it), then read its shard (every `world_size`-th example, tokenized as the collator gets it). Prints
the resident memory above the process's start once the data set is built and its highest value while the shard is
read (sampled after each example), both variants side by side, and the ratios. Linux (/proc/self/statm).

    .venv/bin/python benchmarks/sft_host_memory.py [--trajectories 200] [--world-size 8] [--kinds read,flash]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, os, sys, time
from pxr import data, models
from pxr.training import sft
from pxr.synthesis import synth_run
from pxr.config import EpisodeConfig

data_dir, model_dir, variant, world_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
episode = EpisodeConfig()
records, _ = data.read_jsonl(f"{data_dir}/{synth_run.TRAJECTORIES}", data.TrajectoryRecord)
processor = models.load_processor(model_dir)
def rss_mb():  # resident now (ru_maxrss would keep the high-water mark of the imports)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
base = rss_mb()
start = time.perf_counter()
if variant == "eager":
    examples = [sft.sft_example(r, data_dir, episode) for r in records]
else:
    examples = sft.ReplayedExamples(records, data_dir, episode)
built, build_seconds = rss_mb(), time.perf_counter() - start
dataset = sft.SFTDataset(processor, examples)
start = time.perf_counter()
tokens, peak = 0, built
for index in range(0, len(dataset), world_size):  # rank 0's share, one example alive at a time
    tokens += len(dataset[index]["input_ids"])
    peak = max(peak, rss_mb())
print(json.dumps({"base_mb": base, "build_mb": built - base, "peak_mb": peak - base,
                  "build_seconds": build_seconds, "shard_seconds": time.perf_counter() - start, "tokens": tokens}))
"""


def prepare(folder: Path, trajectories: int, kinds: list[str]) -> tuple[Path, Path, int]:
    from pxr import data, models
    from pxr.config import EpisodeConfig
    from pxr.synthesis import synth, synth_run
    from pxr.synthesis.teacher import TemplateTeacher

    out = folder / "synth"
    per_kind, extra = divmod(trajectories, len(kinds))
    items = []
    for k, kind in enumerate(kinds):
        items += synth_run.write_seed_items(kind, per_kind + (k < extra), 0, out, split="train")
    synth_run.synthesize(
        items, out, TemplateTeacher(seed=0), synth_config=synth.SynthConfig(seed=0), episode_config=EpisodeConfig(),
        progress=False,
    )  # fmt: skip
    records, _ = data.read_jsonl(out / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    return out, models.build_tiny_model(folder / "tiny"), len(records)


def run_variant(data_dir: Path, model_dir: Path, variant: str, world_size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(model_dir), variant, str(world_size)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {variant} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=200, help="N, split evenly over the kinds")
    parser.add_argument("--world-size", type=int, default=8, help="processes the examples are sharded over")
    parser.add_argument("--kinds", default="read,flash", help="scene kinds synthesized (read: image, flash: video)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, model_dir, n = prepare(Path(tmp), args.trajectories, args.kinds.split(","))
        results = {v: run_variant(data_dir, model_dir, v, args.world_size) for v in ("eager", "lazy")}
    eager, lazy = results["eager"], results["lazy"]
    assert eager["tokens"] == lazy["tokens"], "the two variants must read the same examples"
    print(f"{n} trajectories ({args.kinds}), rank 0 of {args.world_size}; MB of RSS above the process's start")
    print(f"{'':>8} {'built':>9} {'peak':>9} {'build s':>8} {'shard s':>8}")
    for name, r in results.items():
        print(f"{name:>8} {r['build_mb']:9.1f} {r['peak_mb']:9.1f} {r['build_seconds']:8.2f} {r['shard_seconds']:8.2f}")
    ratio = eager["peak_mb"] / max(lazy["peak_mb"], 1e-9)
    print(f"eager / lazy peak: {ratio:.1f}x ({eager['peak_mb'] - lazy['peak_mb']:.0f} MB less a process)")


if __name__ == "__main__":
    main()
