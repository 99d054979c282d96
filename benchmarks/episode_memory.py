"""Memory and time of many live episodes: pxr's crops (only the budget-sized copy is kept; the source pixels are
re-cut from the root image when a crop is zoomed again) against crops stored at source resolution.

Each variant runs in its own process so peak RSS is its own. Prints both and the ratios.

    .venv/bin/python benchmarks/episode_memory.py [--episodes 256] [--zooms 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from PIL import Image
from pxr.episode import VisualEpisode
from pxr.protocol import tool_call_text

episodes, zooms, store_sources = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if store_sources:  # the alternative: every crop keeps its full-resolution pixels
    original_add = VisualEpisode._add
    def _add(self, source, origin, **kw):
        entry = original_add(self, source, origin, **kw)
        entry.pixels = source
        return entry
    VisualEpisode._add = _add
images = [Image.new("RGB", (2048, 1536), (k % 255, 90, 160)) for k in range(8)]  # shared inputs, as a dataset would
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
live = []
for i in range(episodes):
    episode = VisualEpisode(images=[images[i % 8]], max_ops=zooms)
    for z in range(zooms):
        box = [0.05 + 0.02 * z, 0.05, 0.75, 0.75]
        assert episode.step(tool_call_text("zoom_in", {"bbox_2d": box, "target_image": z + 1})).ok
    live.append(episode)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "extra_mb": (peak - base) / 1024}))
"""


def run_variant(episodes: int, zooms: int, store_sources: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(episodes), str(zooms), "1" if store_sources else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--zooms", type=int, default=3)
    args = parser.parse_args()
    pxr = run_variant(args.episodes, args.zooms, store_sources=False)
    stored = run_variant(args.episodes, args.zooms, store_sources=True)
    print(f"{args.episodes} episodes x {args.zooms} zooms on 2048x1536 inputs (8 shared images), peak RSS growth:")
    print(f"  crops re-cut on demand (pxr): {pxr['extra_mb']:8.1f} MB  {pxr['seconds']:6.2f} s")
    print(f"  crops stored at source res:   {stored['extra_mb']:8.1f} MB  {stored['seconds']:6.2f} s")
    print(
        f"  pxr holds {stored['extra_mb'] / max(pxr['extra_mb'], 1e-9):.1f}x less memory and runs "
        f"{stored['seconds'] / pxr['seconds']:.2f}x as fast"
    )


if __name__ == "__main__":
    main()
