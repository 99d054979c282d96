"""A small local chat-completions server for testing `pxr.evaluation.openai_backend` with the real `openai` client.

`ChatServer(script)` listens on 127.0.0.1 (a free port) in a background thread while used as a context manager.
`POST /v1/chat/completions` answers what `script(request_body)` returns: a `Reply` (or a plain string, the reply
text), so a test can answer per turn, e.g. a tool call first and an answer once an observation is in the chat.
Faults: `Reply(status=500)`, `Reply(delay_seconds=...)` or `Reply(truncated=True)` (a 200 whose JSON body is cut
in half, its Content-Length matching the cut: what a proxy that drops the tail sends) for one request; for the
server as a whole the first `fail_first` requests answered with `fail_status` (500 by default, 429 for rate limits),
optionally with a `Retry-After` header, and `Faults(...)`: each request drawn at the given rates to be a 500, a 429,
a truncated body or a hang (no answer for `hang_seconds`, so the client's timeout fires), seeded, so a run is
repeatable. Every request is recorded (`server.requests`: headers, parsed body, arrival time, status, fault), and
`server.max_in_flight` is the most requests it was answering at once.

The server binds 127.0.0.1 only and stops by itself after `lifetime_seconds` (a forgotten one cannot linger).
Run as a script (`python -m tests.chat_server --port-file F --log L ...`) it serves `teacher_reply` with faults in
a process of its own, appending one line per request to the log: what benchmarks/synthesis_faults.py kills around.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = ""
    finish_reason: str = "stop"
    tool_calls: list[tuple[str, str]] | None = None  # (name, arguments as a JSON string)
    usage: dict | None = field(default_factory=lambda: {"prompt_tokens": 10, "completion_tokens": 5})
    status: int = 200
    delay_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = "scripted failure"
    truncated: bool = False  # a 200 whose body is the first half of the JSON, with a matching Content-Length


@dataclass(frozen=True)
class Faults:
    """Rates at which requests are answered with a fault instead of the script's reply; the rest are answered."""

    status_500: float = 0.0
    status_429: float = 0.0
    truncated: float = 0.0
    hang: float = 0.0
    hang_seconds: float = 30.0  # longer than any client timeout used with it
    retry_after: str = "0.01"  # on 429s: seconds the client is told to wait
    seed: int = 0

    def draw(self, n: int) -> str:
        """The fault of request `n` (1-based): "500", "429", "truncated", "hang" or "" (answered)."""
        u = random.Random(f"{self.seed}:{n}").random()
        for name, rate in (("500", self.status_500), ("429", self.status_429), ("truncated", self.truncated)):
            if u < rate:
                return name
            u -= rate
        return "hang" if u < self.hang else ""


@dataclass
class Request:
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    arrived: float  # time.monotonic()
    status: int = 0
    fault: str = ""  # what Faults injected, if anything


# --------------------------------------------------------------------------- helpers to read a request body


def image_urls(body: dict) -> list[str]:
    """The image URLs a request carries, in order."""
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def message_text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def has_observation(body: dict) -> bool:
    """True once the chat holds an assistant turn, i.e. the model is answering an observation."""
    return any(message["role"] == "assistant" for message in body["messages"])


def question_text(body: dict) -> str:
    """The first user turn's text (the question and guideline)."""
    return next(message_text(m) for m in body["messages"] if m["role"] == "user")


def body_digest(body: dict) -> str:
    """A request's identity: the same question asked again (a retry) has the same digest."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def teacher_reply(body: dict) -> str:
    """A well-formed analysis for a pxr teacher prompt: a whole that hides the answer and a local that states it."""
    text = question_text(body)
    answer = re.search(r"Correct answer: (.*)", text).group(1).strip()
    if '"direct"' in text:
        return json.dumps({"direct": f"Looking at the whole picture, the answer is {answer}."})
    return json.dumps({"whole": "Small shapes; the detail is unreadable here.", "local": f"Closer, it is {answer}."})


# ------------------------------------------------------------------------------------------------ the server


class ChatServer:
    def __init__(
        self,
        script,
        *,
        fail_first: int = 0,
        fail_status: int = 500,
        retry_after: str | None = None,
        faults: Faults | None = None,
        lifetime_seconds: float = 600.0,
        port: int = 0,
        log_path=None,
    ):
        self.script = script
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.faults = faults
        self.lifetime_seconds = lifetime_seconds
        self.port = port
        self.log_path = log_path  # one JSON line per request: digest, status, fault
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def bodies(self) -> list[dict]:
        return [r.body for r in self.requests]

    def __enter__(self) -> ChatServer:
        self._httpd = _Server(("127.0.0.1", self.port), _handler_for(self))
        # A short poll interval: shutdown() waits for the serving loop to look up (0.5 s by default).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (idempotent): on leaving the `with` block, or by itself after `lifetime_seconds`."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()  # wakes handlers still sleeping on a scripted delay or a hang
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def wait(self) -> None:
        """Block until the server stops (its lifetime ends)."""
        self._stopping.wait()

    def _answer(self, headers: dict[str, str], body: dict) -> tuple[int, dict[str, str], dict]:
        with self._lock:
            request = Request(headers, body, time.monotonic())
            self.requests.append(request)
            number = len(self.requests)
            injected = number <= self.fail_first
        request.fault = self.faults.draw(number) if self.faults and not injected else ""
        if injected:
            reply = Reply(status=self.fail_status, error_message="injected failure")
        elif request.fault in ("500", "429"):
            reply = Reply(status=int(request.fault), error_message=f"injected {request.fault}")
            if request.fault == "429":
                reply.headers["Retry-After"] = self.faults.retry_after
        else:
            reply = self.script(body)
            reply = Reply(content=reply) if isinstance(reply, str) else reply
            if request.fault == "hang":
                reply.delay_seconds = self.faults.hang_seconds
            reply.truncated = reply.truncated or request.fault == "truncated"
        request.status = reply.status
        if self.log_path is not None:  # on arrival: a hang still in progress when the server stops is counted
            line = {"digest": body_digest(body), "status": reply.status, "fault": request.fault}
            with self._lock, open(self.log_path, "a") as log:
                log.write(json.dumps(line) + "\n")
        if reply.delay_seconds:
            self._stopping.wait(reply.delay_seconds)
        extra = dict(reply.headers)
        if self.retry_after is not None and reply.status != 200:
            extra.setdefault("Retry-After", self.retry_after)
        if reply.status != 200:
            error = {"error": {"message": reply.error_message, "type": "server_error", "code": reply.status}}
            return reply.status, extra, error
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(reply.tool_calls)
            ]
        completion = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        }
        if reply.usage is not None:
            completion["usage"] = {**reply.usage, "total_tokens": sum(reply.usage.values())}
        if reply.truncated:
            extra["X-Truncate"] = "1"  # read by the handler, which cuts the encoded body; not sent
        return 200, extra, completion


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog of 5 drops simultaneous connects beyond it, and the client's SYN retry then
    # costs a second: enough to fake a failed concurrency test.
    request_queue_size = 128


def _handler_for(server: ChatServer):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {}, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with server._lock:
                server._in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server._in_flight)
            try:
                status, headers, payload = server._answer({k.lower(): v for k, v in self.headers.items()}, body)
            finally:
                with server._lock:
                    server._in_flight -= 1
            self._send(status, headers, payload)

        def _send(self, status, headers, payload):
            data = json.dumps(payload).encode()
            if headers.pop("X-Truncate", None):
                data = data[: len(data) // 2]
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        def log_message(self, format, *args):
            pass  # keep test output quiet

    return Handler


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="A local chat-completions server answering pxr teacher prompts.")
    parser.add_argument("--port-file", required=True, help="written with the port once the server listens")
    parser.add_argument("--log", help="append one JSON line per request (digest, status, fault)")
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-truncated", type=float, default=0.0)
    parser.add_argument("--rate-hang", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lifetime-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    faults = Faults(
        args.rate_500, args.rate_429, args.rate_truncated, args.rate_hang, args.hang_seconds, seed=args.seed
    )
    server = ChatServer(teacher_reply, faults=faults, lifetime_seconds=args.lifetime_seconds, log_path=args.log)
    with server:
        port = server._httpd.server_address[1]
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
        server.wait()


if __name__ == "__main__":
    main()
