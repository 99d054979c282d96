"""Seed-scene rendering of a synthesis run in one process against several, on the same scenes, in one run.

Rendering and saving the scenes is most of a template-teacher synthesis run (notebook 10 spent ~226 of its 293 s
there on the H200 machine, 2026-11-25). `synth_run.write_seed_items(..., workers=N)` spreads it over N processes.

    .venv/bin/python benchmarks/seed_rendering.py [--kind read] [--n 100] [--workers 1 2]

Each setting writes into a fresh folder, so every scene is rendered and saved; the items are checked to be equal.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pxr.synthesis import synth_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="read", help="read, count, coarse, flash or colour_change")
    parser.add_argument("--n", type=int, default=100, help="scenes per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args()
    knobs = {} if args.kind in ("flash", "colour_change") else {"width": args.width, "height": args.height}
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}"
            start = time.perf_counter()
            items = synth_run.write_seed_items(args.kind, args.n, 0, out, split="bench", workers=workers, **knobs)
            seconds = time.perf_counter() - start
            dicts = [item.to_dict() for item in items]
            if reference is None:
                reference = dicts
            elif dicts != reference:
                raise SystemExit(f"workers={workers} wrote other items than workers={args.workers[0]}")
            rows.append((workers, seconds))
    base = rows[0][1]
    print(f"{args.n} {args.kind} scenes, {os.cpu_count()} CPU cores")
    print(f"{'workers':>8} {'seconds':>8} {'scenes/s':>9} {'speed-up':>9}")
    for workers, seconds in rows:
        print(f"{workers:>8} {seconds:>8.1f} {args.n / seconds:>9.1f} {base / seconds:>8.2f}x")


if __name__ == "__main__":
    main()
