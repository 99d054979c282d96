"""Synthesis against a faulty endpoint, and killed with kill -9: does every item end up written exactly once, and is
any reply paid twice?

The endpoint is tests/chat_server.py run as a process of its own (`python -m tests.chat_server`): it answers pxr's
teacher prompts and injects, per request, 500s, 429s (Retry-After 0.01 s), truncated 200 bodies and hangs (no answer
for 30 s, so the teacher's timeout fires) at the given rates, and logs one line per request (a digest of its body,
status, fault). The synthesis (`pxr.synthesis.synth_run.synthesize` with the OpenAI teacher, its reply cache on) runs in a
subprocess too, so that it can be killed with SIGKILL:

- `full`: one run, then the reruns a user makes while the run is partial (`pxr pipeline` reruns a partial run).
- `kill@requests`, `kill@write25`, `kill@write60`: a run killed once the server has seen 12 requests (early, with
  the first chunk's replies in flight), once 25 trajectories are written, once 60 are; then reruns until done.

Faults are drawn per request number from `--seed`, so every scenario meets the same sequence of faults: when no
reply is paid twice, every scenario makes the same number of requests. Per scenario it prints where the kill
landed (requests the server had seen / trajectory lines written), how many runs it took (a run with failed items
is partial and run again, as `pxr pipeline` does) and what failed in each, items asked and written, duplicate
items, lines the reader skipped (torn lines), requests made and distinct requests, and "paid twice": distinct
requests answered with a whole 200 more than once (a reply the cache should have kept). A reply in flight when
the process is killed is lost with it and asked again; that is the one way a request can be paid twice, and the
figure says how often it happened.

    .venv/bin/python benchmarks/synthesis_faults.py [--items 72] [--rate-500 0.2] [--rate-429 0.1]
        [--rate-truncated 0.05] [--rate-hang 0.05] [--timeout-seconds 2] [--max-reruns 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = {"read": 0.55, "count": 0.15, "coarse": 0.14, "flash": 0.08, "colour_change": 0.08}


def item_counts(total: int) -> dict[str, int]:
    counts = {kind: max(1, round(total * share)) for kind, share in KINDS.items()}
    counts["read"] += total - sum(counts.values())
    return counts


def worker(args) -> None:
    """One synthesis run into args.out (what notebook 10 does, at a small canvas); prints its report as JSON."""
    from pxr.config import EpisodeConfig
    from pxr.synthesis import synth, synth_run
    from pxr.synthesis.teacher import OpenAITeacher

    out = Path(args.out)
    canvas = {"width": 448, "height": 320}
    items = [
        item
        for kind, n in item_counts(args.items).items()
        for item in synth_run.write_seed_items(
            kind, n, 0, out, split="sft", **(canvas if kind in ("read", "count", "coarse") else {})
        )
    ]
    teacher = OpenAITeacher(
        model="fault-server",
        base_url=args.base_url,
        concurrency=8,
        timeout_seconds=args.timeout_seconds,
        max_retries=args.max_retries,
        cache_dir=out / "teacher_cache",
    )
    report = synth_run.synthesize(
        items, out, teacher, synth_config=synth.SynthConfig(seed=0), episode_config=EpisodeConfig(), chunk_size=8,
        progress=False,
    )  # fmt: skip
    print(
        json.dumps(
            {
                "asked": report.asked,
                "written": report.written,
                "failed": dict(report.failed),
                "first": report.examples,
                "stats": teacher.stats,
            }
        ),
        flush=True,
    )


def start_server(folder: Path, args) -> tuple[subprocess.Popen, str, Path]:
    port_file, log = folder / "port", folder / "requests.jsonl"
    command = [
        sys.executable, "-m", "tests.chat_server", "--port-file", str(port_file), "--log", str(log),
        "--rate-500", str(args.rate_500), "--rate-429", str(args.rate_429), "--rate-truncated", str(args.rate_truncated),
        "--rate-hang", str(args.rate_hang), "--hang-seconds", "30", "--lifetime-seconds", "1800",
        "--seed", str(args.seed),
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO)
    while not port_file.exists():
        if server.poll() is not None:
            raise SystemExit("the fault server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port_file.read_text()}/v1", log


def run_worker(out: Path, base_url: str, args, kill_when=None) -> dict | None:
    """A synthesis subprocess; with `kill_when(out)`, SIGKILLed as soon as it returns True. Its report, if it ended."""
    command = [sys.executable, __file__, "--worker", "--out", str(out), "--base-url", base_url]
    command += ["--items", str(args.items), "--timeout-seconds", str(args.timeout_seconds)]
    command += ["--max-retries", str(args.max_retries)]
    env = {**os.environ, "OPENAI_API_KEY": "EMPTY", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    while process.poll() is None:
        if kill_when is not None and kill_when(out):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return None
        time.sleep(0.02)
    lines = process.stdout.read().strip().splitlines()
    return json.loads(lines[-1]) if process.returncode == 0 and lines else None


def trajectory_lines(out: Path) -> int:
    path = out / "sft_trajectories.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def request_lines(log: Path) -> int:
    return log.read_bytes().count(b"\n") if log.exists() else 0


def scenario(name: str, args, kill_when_factory=None) -> dict:
    from pxr import data

    folder = Path(tempfile.mkdtemp(prefix=f"pxr-faults-{name.replace('@', '-')}-"))
    server, base_url, log = start_server(folder, args)
    out = folder / "run"
    start = time.perf_counter()
    try:
        killed = "no"
        if kill_when_factory is not None and run_worker(out, base_url, args, kill_when_factory(log)) is None:
            killed = f"{request_lines(log)} req/{trajectory_lines(out)} lines"  # where the kill landed
        reports = []
        while len(reports) <= args.max_reruns:  # the first run (or the rerun after the kill), reruns while partial
            reports.append(run_worker(out, base_url, args))
            if reports[-1] is None or not reports[-1]["failed"]:
                break
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    records, read = data.read_jsonl(out / "sft_trajectories.jsonl", data.TrajectoryRecord)
    per_item = Counter(r.seed_id for r in records)
    log_lines = [json.loads(line) for line in log.read_text().splitlines()]
    whole = Counter(line["digest"] for line in log_lines if line["status"] == 200 and not line["fault"])
    faults = Counter(line["fault"] or "ok" for line in log_lines)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "scenario": name,
        "killed": killed,
        "runs after": len(reports),
        "failed by run": "/".join(
            "crashed" if r is None else ",".join(f"{k}:{v}" for k, v in r["failed"].items()) or "0" for r in reports
        ),
        "asked": args.items,
        "written": len(per_item),
        "duplicates": sum(n - 1 for n in per_item.values()),
        "skipped lines": read.skipped,
        "requests made": len(log_lines),
        "distinct requests": len({line["digest"] for line in log_lines}),
        "paid twice": sum(1 for n in whole.values() if n > 1),
        "faults": " ".join(f"{k}:{v}" for k, v in sorted(faults.items())),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=72)
    parser.add_argument("--rate-500", type=float, default=0.2)
    parser.add_argument("--rate-429", type=float, default=0.1)
    parser.add_argument("--rate-truncated", type=float, default=0.05)
    parser.add_argument("--rate-hang", type=float, default=0.05)
    parser.add_argument("--timeout-seconds", type=float, default=2.0)
    parser.add_argument("--max-retries", type=int, default=5)
    parser.add_argument("--max-reruns", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the fault server's draws")
    parser.add_argument("--only", help="one scenario: full, kill@requests, kill@write25 or kill@write60")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    scenarios = {
        "full": None,
        "kill@requests": lambda log: lambda out: request_lines(log) >= 12,
        "kill@write25": lambda log: lambda out: trajectory_lines(out) >= 25,
        "kill@write60": lambda log: lambda out: trajectory_lines(out) >= 60,
    }
    print(
        f"{args.items} items, seed {args.seed}; faults per request: {args.rate_500:.0%} 500, {args.rate_429:.0%} 429, "
        f"{args.rate_truncated:.0%} truncated, {args.rate_hang:.0%} hang (30 s; teacher timeout "
        f"{args.timeout_seconds} s, {args.max_retries} retries)"
    )
    rows = []
    for name, factory in scenarios.items():
        if args.only and name != args.only:
            continue
        rows.append(scenario(name, args, factory))
        print(json.dumps(rows[-1]), flush=True)
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("\n" + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
