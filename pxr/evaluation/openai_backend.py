"""Rollouts over an OpenAI-compatible chat-completions endpoint (paper §5: GPT-4o is one of its baselines).

The same episode loop as `pxr.rollout.generate_trajectories`, but each turn is one request to an endpoint: a vLLM
server for scale, or an API model (GPT-4o) as a baseline. Every turn goes through `pxr.rollout.apply_turn`, so the
op is executed by `VisualEpisode` exactly as with the in-process model, and the records are the same `Trajectory`s.

Each episode is one asyncio task; at most `concurrency` are in flight. Per turn the chat so far
(`Trajectory.messages()`) is sent with the episode's images as PNG data URLs, in image-number order. Observations
are sent as `user` turns, since the chat API's `tool` role cannot carry images, with the text the chat template
gives a `tool` turn (`<tool_response>` wrapper), so a served pxr model reads the tokens it was trained on. By default the tools are declared in the
system prompt text and the model writes `<tool_call>` text, as everywhere in pxr; with `native_tools` the schemas
go in the request's `tools` and the reply's native calls are turned into that same text before the episode reads
them. A request that still fails after the client's retries ends its own episode (`Trajectory.error`, ending
`no_answer`); the others go on. A 200 whose body is not JSON (cut short on the way) is asked again like a 5xx,
`max_retries` times, and then fails its request the same way (`create_completion`). The API key is read from an
environment variable when the rollout starts and kept out of the config, the records and the error messages.

Tests: tests/test_openai_backend.py (the real `openai` client against the local server in tests/chat_server.py).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
from tqdm.auto import tqdm

from pxr import protocol
from pxr.config import EpisodeConfig
from pxr.rollout import Query, RolloutConfig, Trajectory, apply_turn, cut_at_tool_call, start_trajectory

PLACEHOLDER_API_KEY = "EMPTY"  # what local servers (vLLM) accept when they were started without a key
ERROR_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class OpenAIBackendConfig:
    """Where and how to reach the endpoint. The key itself is never stored here, only the variable's name."""

    model: str
    base_url: str | None = None  # None: the official OpenAI API
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key, read at call time
    concurrency: int = 16  # episodes in flight
    timeout_seconds: float = 60.0  # per request (each retry gets its own)
    max_retries: int = 3  # retries per request, by the openai client itself
    native_tools: bool = False  # send `tools=` and convert the reply's tool_calls to pxr's text form

    def __post_init__(self):
        if not self.model:
            raise ValueError("model must name the endpoint's model")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")


def read_api_key(backend: OpenAIBackendConfig) -> str:
    """The key from `backend.api_key_env`; a local server (any `base_url`) may run without one."""
    key = os.environ.get(backend.api_key_env, "")
    if key:
        return key
    if backend.base_url is None:
        raise ValueError(f"the OpenAI API needs a key: set the environment variable {backend.api_key_env}")
    return PLACEHOLDER_API_KEY


def image_data_url(image) -> str:
    """A PIL image as a PNG data URL (lossless, so the endpoint sees exactly the pixels the episode shows)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(messages: list[dict], image_urls: list[str], *, system_text: str | None = None) -> list[dict]:
    """pxr's chat (`Trajectory.messages()`) in the chat-completions format.

    Image placeholders take `image_urls` in order; observation turns (`tool`) become the `user` turns the chat
    template renders them to (`protocol.as_user_turn`: same tokens) because the `tool` role cannot carry images;
    system and assistant turns are plain strings. `system_text` replaces the system prompt (native tools: the tools
    then travel in `tools=`, not in the text).
    """
    urls = iter(image_urls)
    converted = []
    for message in map(protocol.as_user_turn, messages):
        role = message["role"]
        parts = message["content"]
        if role in ("system", "assistant"):
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            if role == "system" and system_text is not None:
                text = system_text
            converted.append({"role": role, "content": text})
            continue
        content = []
        for part in parts:
            if part["type"] == "image":
                url = next(urls, None)
                if url is None:
                    raise ValueError("the chat has more image placeholders than the episode has images")
                content.append({"type": "image_url", "image_url": {"url": url}})
            else:
                content.append({"type": "text", "text": part["text"]})
        converted.append({"role": role, "content": content})
    if next(urls, None) is not None:
        raise ValueError("the episode has more images than the chat has image placeholders")
    return converted


def reply_text(message, finish_reason: str | None, *, native_tools: bool) -> str:
    """The assistant turn as pxr text: native tool calls rendered as `<tool_call>` text, or the stop string
    restored (servers drop it from the returned text)."""
    text = message.content or ""
    calls = getattr(message, "tool_calls", None) or []
    if native_tools:
        if not calls:
            return text
        # Every call is rendered, so that a turn with two calls gets the episode's "one call per turn" error.
        rendered = [protocol.tool_call_text(c.function.name, _arguments(c.function.arguments)) for c in calls]
        return "\n".join([text, *rendered] if text else rendered)
    if finish_reason == "stop" and text.rfind(protocol.TOOL_CALL_OPEN) > text.rfind(protocol.TOOL_CALL_CLOSE):
        text += protocol.TOOL_CALL_CLOSE
    return cut_at_tool_call(text)  # for servers that ignore `stop`


def _arguments(raw: str | None):
    """Native call arguments, parsed; text that is not JSON is passed on as a string for the episode to reject."""
    try:
        return json.loads(raw) if raw and raw.strip() else {}
    except (json.JSONDecodeError, RecursionError):
        return raw


class BadResponseError(openai.OpenAIError):
    """A reply whose body is not the JSON the API promises (a proxy or a dropped connection cut it short)."""


async def create_completion(client, max_retries: int, on_bad_body=None, **request):
    """`client.chat.completions.create(**request)`, with a body that fails to parse retried like an HTTP fault.

    The openai client retries statuses and connection errors itself, but parses the body after its retry loop, so a
    truncated 200 raises `json.JSONDecodeError` past every `except openai.OpenAIError`. `on_bad_body()` is called
    once per such reply (for counting)."""
    for attempt in range(max_retries + 1):
        try:
            return await client.chat.completions.create(**request)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            if on_bad_body is not None:
                on_bad_body()
            if attempt == max_retries:
                raise BadResponseError(
                    f"the endpoint's reply was not valid JSON in {attempt + 1} tries (last: {error})"
                ) from error
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0) * random.uniform(0.75, 1.0))  # the client's own backoff


def describe_error(error: Exception, secret: str) -> str:
    """`<ExceptionClass>: <first line of the message>`, short, with the key blanked should a server echo it."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if secret and secret != PLACEHOLDER_API_KEY:
        message = message.replace(secret, "***")
    if len(message) > ERROR_MESSAGE_CHARS:
        message = message[: ERROR_MESSAGE_CHARS - 3] + "..."
    return f"{type(error).__name__}: {message}"


async def _run_episode(client, trajectory: Trajectory, backend, config: RolloutConfig, secret: str) -> None:
    episode = trajectory.episode
    variant = episode.config.prompt
    tools = protocol.tool_schemas(variant) if backend.native_tools else []
    request = {
        "model": backend.model,
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
    }
    if not backend.native_tools:
        request["stop"] = [protocol.TOOL_CALL_CLOSE]
    elif tools:  # no stop string here: the server parses calls from the whole reply, and all must reach the episode
        request["tools"] = tools
    system_text = protocol.BASE_SYSTEM_TEXT if tools else None
    image_urls: list[str] = []  # the episode's image list only grows: encode each image once
    while not episode.done:
        image_urls += [image_data_url(image) for image in episode.shown_images[len(image_urls) :]]
        messages = openai_messages(trajectory.messages(), image_urls, system_text=system_text)
        start = time.perf_counter()
        try:
            response = await create_completion(client, backend.max_retries, messages=messages, **request)
        except openai.OpenAIError as error:  # raised only once the retries are spent
            trajectory.generate_seconds += time.perf_counter() - start
            trajectory.error = describe_error(error, secret)
            episode.finish("no_answer")
            return
        trajectory.generate_seconds += time.perf_counter() - start
        if not response.choices:
            trajectory.error = "EmptyResponse: the endpoint returned no choices"
            episode.finish("no_answer")
            return
        choice = response.choices[0]
        usage = response.usage
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
        trajectory.prompt_tokens = (usage.prompt_tokens or 0) if usage else 0
        text = reply_text(choice.message, choice.finish_reason, native_tools=backend.native_tools)
        apply_turn(trajectory, text, completion_tokens, truncated=choice.finish_reason == "length")
        if not episode.done and trajectory.prompt_tokens + completion_tokens >= config.max_total_tokens:
            episode.finish("limit", "max_tokens")


async def _run_all(trajectories: list[Trajectory], backend, config: RolloutConfig, secret: str, progress: bool):
    limit = asyncio.Semaphore(backend.concurrency)
    bar = tqdm(total=len(trajectories), desc="episodes", disable=not progress)

    async def run_one(trajectory: Trajectory) -> None:
        async with limit:
            await _run_episode(client, trajectory, backend, config, secret)
        bar.update(1)

    # The client's own retry machinery backs off exponentially with jitter and honours Retry-After (429, 5xx),
    # so no retry loop of ours wraps the request.
    client = openai.AsyncOpenAI(
        api_key=secret, base_url=backend.base_url, timeout=backend.timeout_seconds, max_retries=backend.max_retries
    )
    try:
        async with client:
            await asyncio.gather(*(run_one(t) for t in trajectories))
    finally:
        bar.close()


def run_sync(make_coroutine):
    """Run a coroutine to completion from sync code, also where a loop already runs (a Jupyter kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    # asyncio.run refuses to start inside a running loop; a fresh loop in a worker thread does not clash with it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def generate_trajectories_openai(
    queries: list[Query],
    *,
    backend: OpenAIBackendConfig,
    episode_config: EpisodeConfig | None = None,
    rollout_config: RolloutConfig | None = None,
    progress: bool = True,
) -> list[Trajectory]:
    """Roll out every query against the endpoint, `backend.concurrency` episodes at a time, in query order.

    `rollout_config.batch_size` and `seed` do not apply here: concurrency is the backend's, and a shared seed would
    make the samples of one query identical on servers that honour it.
    """
    episode_config = episode_config or EpisodeConfig()
    config = rollout_config or RolloutConfig()
    trajectories = [start_trajectory(q, episode_config) for q in queries]
    secret = read_api_key(backend)  # before any request: a missing key fails the call, not every episode
    if trajectories:
        run_sync(lambda: _run_all(trajectories, backend, config, secret, progress))
    return trajectories
