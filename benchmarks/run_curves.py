"""The training loss of runs, read from their newest checkpoint's `trainer_state.json`, beside their metrics: how far
a run got and whether its loss moved, also for a run stopped before it wrote its record (a time limit).

    python benchmarks/run_curves.py 'outputs/15_perception_base/probe_*' [--every 250]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path


def newest_state(run_dir: Path) -> dict | None:
    states = sorted(run_dir.glob("checkpoints/checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    return json.loads(states[-1].read_text()) if states else None


def curve(state: dict, every: int) -> list[tuple[int, float]]:
    """The mean logged loss over each window of `every` steps."""
    windows: dict[int, list[float]] = {}
    for entry in state.get("log_history", []):
        if "loss" in entry:
            windows.setdefault((entry["step"] - 1) // every, []).append(entry["loss"])
    return [((k + 1) * every, sum(v) / len(v)) for k, v in sorted(windows.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", help="a glob of run folders")
    parser.add_argument("--every", type=int, default=250, help="steps per loss window")
    args = parser.parse_args()
    for folder in sorted(Path(p) for p in glob.glob(args.pattern)):
        record = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        print(f"== {folder}: {record.get('state', 'no record')}, {record.get('seconds', '?')} s")
        state = newest_state(folder)
        if state:
            print("   loss by step: " + "  ".join(f"{step}:{loss:.3f}" for step, loss in curve(state, args.every)))
        shown = {k: v for k, v in metrics.items() if "accuracy" in k or "majority" in k or k == "final_loss"}
        if shown:
            print("   " + "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))


if __name__ == "__main__":
    main()
