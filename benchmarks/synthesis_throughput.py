"""Throughput of the OpenAI teacher at concurrency 1 against 16, on the same requests, in one run.

The endpoint is the local chat-completions server of tests/chat_server.py, imported from the tests folder by its
path (benchmarks are scripts, outside the package and the test suite). It answers every request with a valid JSON
analysis after a fixed delay that stands in for a model's latency. Each concurrency gets a fresh cache dir, so every
request is paid; the PNG encoding of each request's two images and the client's own overhead are included.

    .venv/bin/python benchmarks/synthesis_throughput.py [--requests 64] [--delay-seconds 0.2] [--concurrency 1 16]

The ratio approaches the concurrency while the server's delay dominates; the target is at least 10x at 16.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from pxr.synthesis.teacher import Analysis, AnalysisRequest, OpenAITeacher


def load_chat_server():
    path = Path(__file__).resolve().parent.parent / "tests" / "chat_server.py"
    spec = importlib.util.spec_from_file_location("chat_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def make_requests(n: int) -> list[AnalysisRequest]:
    requests = []
    for k in range(n):
        image = Image.new("RGB", (448, 448), (200, 196, 188))
        draw = ImageDraw.Draw(image)
        box = (40 + 7 * k % 300, 60 + 11 * k % 300)
        draw.rectangle((*box, box[0] + 40, box[1] + 40), fill=(214, 39, 40))
        draw.text((box[0] + 16, box[1] + 14), str(k % 10), fill=(255, 255, 255))
        crop = image.crop((box[0] - 20, box[1] - 20, box[0] + 60, box[1] + 60)).resize((224, 224))
        requests.append(
            AnalysisRequest(
                item_id=f"bench-{k}",
                mode="op",
                question="What digit is written inside the red square?",
                answer=str(k % 10),
                cue="the red square",
                images=[image, crop],
            )
        )
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--delay-seconds", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    chat_server = load_chat_server()

    def script(body):
        answer = re.search(r"Correct answer: (.*)", chat_server.question_text(body)).group(1)
        reply = {"whole": "Small shapes; the mark in the square is unreadable.", "local": f"It reads {answer}."}
        return chat_server.Reply(json.dumps(reply), delay_seconds=args.delay_seconds)

    requests = make_requests(args.requests)
    print(f"{args.requests} requests, server delay {args.delay_seconds * 1000:.0f} ms, no cache hits allowed")
    print(f"{'concurrency':>11}  {'seconds':>8}  {'items/s':>8}  {'speed-up':>8}  stats")
    rates = {}
    with chat_server.ChatServer(script) as server:
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as cache_dir:
                teacher = OpenAITeacher("scripted", base_url=server.base_url, concurrency=concurrency,
                                        cache_dir=cache_dir, timeout_seconds=30)  # fmt: skip
                start = time.perf_counter()
                results = teacher.analyse(requests, progress=False)
                seconds = time.perf_counter() - start
            assert all(isinstance(r, Analysis) and not r.cached for r in results), "every request must succeed"
            assert teacher.stats["cache_hits"] == 0 and teacher.stats["requests"] == len(requests)
            rates[concurrency] = len(requests) / seconds
            speed_up = rates[concurrency] / rates[args.concurrency[0]]
            stats = {k: teacher.stats[k] for k in ("requests", "cache_hits", "retries", "malformed")}
            print(f"{concurrency:>11}  {seconds:>8.2f}  {rates[concurrency]:>8.1f}  {speed_up:>7.1f}x  {stats}")


if __name__ == "__main__":
    main()
