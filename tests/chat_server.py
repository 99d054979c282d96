"""A small local chat-completions server for testing `pxr.openai_backend` with the real `openai` client.

`ChatServer(script)` listens on 127.0.0.1 (a free port) in a background thread while used as a context manager.
`POST /v1/chat/completions` answers what `script(request_body)` returns: a `Reply` (or a plain string, the reply
text), so a test can answer per turn, e.g. a tool call first and an answer once an observation is in the chat.
Faults: `Reply(status=500)` or `Reply(delay_seconds=...)` for one request, and for the server as a whole the first
`fail_first` requests answered with `fail_status` (500 by default, 429 for rate limits), optionally with a
`Retry-After` header. Every request is recorded (`server.requests`: headers, parsed body, arrival time, status),
and `server.max_in_flight` is the most requests it was answering at once.
"""

from __future__ import annotations

import json
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


@dataclass
class Request:
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    arrived: float  # time.monotonic()
    status: int = 0


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


# ------------------------------------------------------------------------------------------------ the server


class ChatServer:
    def __init__(self, script, *, fail_first: int = 0, fail_status: int = 500, retry_after: str | None = None):
        self.script = script
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
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
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval: shutdown() waits for the serving loop to look up (0.5 s by default).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # wakes handlers still sleeping on a scripted delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _answer(self, headers: dict[str, str], body: dict) -> tuple[int, dict[str, str], dict]:
        with self._lock:
            request = Request(headers, body, time.monotonic())
            self.requests.append(request)
            injected = len(self.requests) <= self.fail_first
        reply = Reply(status=self.fail_status, error_message="injected failure") if injected else self.script(body)
        if isinstance(reply, str):
            reply = Reply(content=reply)
        if reply.delay_seconds:
            self._stopping.wait(reply.delay_seconds)
        request.status = reply.status
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
