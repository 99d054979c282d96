"""Teachers that write the analyses of a synthesized trajectory (paper §3, App. E.2.2).

In `[analysis of the whole input] → [op on the reference cue] → [analysis of the returned detail] → [answer]` pxr
writes the bridge sentence, the op and the `\\boxed{}` answer; a teacher writes the prose. `analyse(requests)` returns
one `Analysis` or `TeacherFailure` per `AnalysisRequest`, in order: no item is ever dropped.

- `TemplateTeacher`: offline, deterministic per (seed, item_id), phrasings filled from the item's ground truth.
- `OpenAITeacher`: any OpenAI-compatible endpoint. JSON replies are checked (the whole analysis must not reveal the
  answer, the local one must state it, no `\\boxed`) and a rejected one is resampled warmer with a seed. The openai
  client retries HTTP faults (and `create_completion` a 200 whose body is cut short); httpx hooks count them. A
  request that still fails is that item's `TeacherFailure`, never an exception that loses the other items. Every reply, malformed ones too, is cached on disk (atomic
  writes) under a hash of model, prompt, pixels, temperature and attempt, so a rerun pays nothing twice. Past the
  caps on calls and tokens (the teacher's lifetime; calls in flight may overshoot the token cap) items fail with
  "cap reached". The key is read from the environment in `analyse`, never cached, counted or reported.

Tests: tests/test_teacher.py (the real openai client against tests/chat_server.py); benchmarks/synthesis_throughput.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import openai
from tqdm.auto import tqdm

from pxr.evaluation.openai_backend import (
    OpenAIBackendConfig,
    create_completion,
    describe_error,
    image_data_url,
    read_api_key,
    run_sync,
)


@dataclass(frozen=True)
class AnalysisRequest:
    item_id: str
    mode: str  # "op": whole + local around an op; "direct": one analysis that answers without any op
    question: str
    answer: str  # text form, e.g. "7" or "red"
    options: list | None = None
    is_video: bool = False
    cue: str = ""  # short noun phrase naming the reference cue: "the red triangle", "frames 7-8"
    facts: dict = field(default_factory=dict)  # ground truth for the template teacher: target, digit, position, ...
    images: list = field(default_factory=list)  # PIL images: the input as shown, then what the op returned
    n_input_images: int = 1  # how many of `images` are the input (video: its frames); the rest are the op's output

    def __post_init__(self):
        if self.mode not in ("op", "direct"):
            raise ValueError(f"mode must be 'op' or 'direct', got {self.mode!r}")


@dataclass(frozen=True)
class Analysis:
    item_id: str
    whole: str = ""  # before the bridge sentence and the op; never reveals the answer
    local: str = ""  # the returned detail, concluding the answer (pxr appends \boxed{} itself)
    direct: str = ""  # mode "direct": reasoning ending with the answer in words
    teacher: str = ""
    cached: bool = False


@dataclass(frozen=True)
class TeacherFailure:
    item_id: str
    reason: str  # "malformed", "request failed", "cap reached", "reveals answer"
    detail: str = ""


def mentions(text: str, answer: str) -> bool:
    """Whether `answer` occurs in `text` as a whole word (case-insensitive)."""
    return bool(answer) and re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text, re.IGNORECASE) is not None


def check_reply(text: str, request: AnalysisRequest) -> tuple[dict | None, str]:
    """The reply's analyses, or None and why it was rejected."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    body = fenced.group(1) if fenced else body[body.find("{") : body.rfind("}") + 1]
    try:
        reply = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None, "not JSON"
    keys = ("whole", "local") if request.mode == "op" else ("direct",)
    if not isinstance(reply, dict) or not all(isinstance(reply.get(k), str) and reply[k].strip() for k in keys):
        return None, f"missing {' or '.join(keys)}"
    parts = {k: reply[k].strip() for k in keys}
    if any("\\boxed" in v for v in parts.values()):
        return None, "contains \\boxed"
    if request.mode == "op" and mentions(parts["whole"], request.answer):
        return None, "whole reveals the answer"
    if not mentions(parts[keys[-1]], request.answer):
        return None, "answer not stated"
    return parts, ""


# ------------------------------------------------------------------------------------------- template teacher

# A phrasing is used only when the facts it relies on are there: its placeholders, and a digit where it names one.
IMAGE_WHOLE = (
    "The image shows small shapes, each with a tiny digit. {Target} is near the {position}; its digit is unreadable here.",
    "The question is about {target}, near the {position}; the digit in it is only a few pixels tall at this size.",
    "I can see {objects}. {Target} is the one the question names, and at this size the detail in it is a blur.",
    "The image is large and busy. {Target} is visible, but its fine detail is too small to make out at this size.",
)
VIDEO_WHOLE = (
    "The clip shows {background}; something appears briefly in the middle frames, too fleeting to make out here.",
    "Most frames show only {background}. Around {cue} something interrupts it, but I cannot tell what from here.",
    "The video changes quickly, and what the question asks about shows up only briefly, too fast to make out.",
)
IMAGE_LOCAL = (
    "In the zoomed view the digit inside {target} is clearly a {answer}.",
    "The crop shows {target} up close, and the digit written in it reads {answer}.",
    "Now the mark is sharp: {target} contains the digit {answer}.",
    "Looking closely at {cue}, I can now see that the answer is {answer}.",
)
VIDEO_LOCAL = (
    "In the selected frames something stands out clearly against the {background}: it is {answer}.",
    "Looking at {cue} closely, the mark that flashes up is the digit {answer}.",
    "In {cue} the moment is clear, and I can see that the answer is {answer}.",
)
DIRECT = (
    "{Target} is large enough to see at this size, so no closer look is needed. The answer is {answer}.",
    "The question can be settled from the whole {input}: looking at {target}, the answer is {answer}.",
)


def usable(phrasings, have: dict) -> list[str]:
    return [p for p in phrasings if all(ok or key not in p for key, ok in have.items())]


SAFE_WHOLE = "The {input} is detailed, and the part the question asks about is too small to judge at this size."


@dataclass
class TemplateTeacher:
    """Offline analyses written from `facts` (target, position, objects, background, digit) by seeded choice."""

    seed: int = 0
    name = "template"

    def analyse(self, requests: list[AnalysisRequest], progress: bool = True) -> list[Analysis | TeacherFailure]:
        return [self.analyse_one(r) for r in requests]

    def analyse_one(self, request: AnalysisRequest) -> Analysis | TeacherFailure:
        rng = random.Random(f"{self.seed}:{request.item_id}")  # str seeds are hashed stably across processes
        facts = request.facts
        target = facts.get("target") or request.cue.removeprefix("the ") or "the detail in question"
        target = target if target.startswith(("the ", "frames ")) else f"the {target}"
        objects = [f"{'an' if o[:1] in 'aeiou' else 'a'} {o}" for o in facts.get("objects", [])]
        slots = {
            "target": target,
            "Target": target[0].upper() + target[1:],
            "position": facts.get("position", ""),
            "objects": ", ".join(objects[:-1]) + f" and {objects[-1]}" if len(objects) > 1 else "",
            "background": facts.get("background", ""),
            "cue": request.cue or target,
            "answer": request.answer,
            "input": "video" if request.is_video else "image",
        }
        if request.mode == "direct":
            return Analysis(request.item_id, direct=rng.choice(DIRECT).format(**slots), teacher=self.name)
        have = {f"{{{k}}}": v for k, v in slots.items()} | {"digit": "digit" in facts}
        wholes = [w.format(**slots) for w in usable(VIDEO_WHOLE if request.is_video else IMAGE_WHOLE, have)]
        rng.shuffle(wholes)
        # The first phrasing that keeps the answer out (a colour answer can hide in an object list), else a neutral one.
        whole = next((w for w in wholes if not mentions(w, request.answer)), SAFE_WHOLE.format(**slots))
        if mentions(whole, request.answer):
            return TeacherFailure(request.item_id, "reveals answer", "every phrasing names the answer")
        local = rng.choice(usable(VIDEO_LOCAL if request.is_video else IMAGE_LOCAL, have)).format(**slots)
        return Analysis(request.item_id, whole=whole, local=local, teacher=self.name)


# --------------------------------------------------------------------------------------------- OpenAI teacher

SYSTEM_PROMPT = (
    "You write the inner reasoning of a visual assistant for a training example. The assistant answers questions "
    "about images and videos and can look closer at a region (zoom in) or at a few frames (select frames). You are "
    "given the question, its correct answer and the visual detail that settles it, and you see the images. Reply "
    "with a single JSON object and nothing else."
)
OP_TASK = (
    'Write two passages in the first person, as the assistant thinking. "whole": what the whole {input} shows at a '
    "glance and why {cue} needs a closer look; it is written before the closer look, so it must neither state nor "
    'hint at the answer. "local": what the closer look at {cue} reveals, ending with the answer stated in words '
    "exactly as given. The closer look itself is inserted between the passages: do not describe it."
)
DIRECT_TASK = (
    'Write one passage, "direct", in the first person, as the assistant thinking: reason from the whole {input}, '
    "without any closer look, and end with the answer stated in words exactly as given."
)
RULES = "Rules: plain text, no markdown, no LaTeX, no \\boxed; never say that the answer was given to you."


@dataclass
class OpenAITeacher:
    """Analyses from an OpenAI-compatible chat endpoint: concurrent, retried, checked, cached and capped."""

    model: str
    base_url: str | None = None  # None: the official OpenAI API
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key, read when `analyse` runs
    concurrency: int = 16  # requests in flight
    timeout_seconds: float = 60.0  # per HTTP attempt
    max_retries: int = 5  # HTTP retries per call (429, 5xx, timeouts), by the openai client
    cache_dir: str | Path | None = None  # None: no cache
    max_requests: int | None = None  # calls sent over the teacher's lifetime (client retries not included)
    max_total_tokens: int | None = None  # prompt + completion tokens, from the replies' `usage`
    temperature: float = 0.7
    max_malformed_retries: int = 2  # new samples after a rejected reply
    json_mode: bool = False  # send response_format=json_object (only for servers that support it)
    name = "openai"

    def __post_init__(self):
        # The backend's config validates the shared settings and is what `read_api_key` reads the variable from.
        self.endpoint = OpenAIBackendConfig(
            self.model, self.base_url, self.api_key_env, self.concurrency, self.timeout_seconds, self.max_retries
        )
        if self.max_malformed_retries < 0:
            raise ValueError(f"max_malformed_retries must be >= 0, got {self.max_malformed_retries}")
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        self._counts, self._http_errors, self._malformed, self._failures = Counter(), Counter(), Counter(), Counter()

    @property
    def stats(self) -> dict:
        """Counts over the teacher's lifetime; `retries` are HTTP attempts beyond one per call."""
        c = self._counts
        stats = {k: c[k] for k in ("requests", "http_attempts", "cache_hits", "prompt_tokens", "completion_tokens")}
        stats["total_tokens"] = c["prompt_tokens"] + c["completion_tokens"]
        stats["retries"], stats["no_response"] = c["http_attempts"] - c["requests"], c["http_attempts"] - c["responses"]
        stats["http_errors"], stats["failures"] = dict(self._http_errors), dict(self._failures)
        stats["bad_bodies"] = c["bad_bodies"]  # 200s whose body was not JSON (asked again)
        stats["malformed"], stats["malformed_reasons"] = sum(self._malformed.values()), dict(self._malformed)
        return stats

    def analyse(self, requests: list[AnalysisRequest], progress: bool = True) -> list[Analysis | TeacherFailure]:
        secret = read_api_key(self.endpoint)  # before any request: a missing key fails the call, not every item
        return run_sync(lambda: self._analyse_all(requests, secret, progress)) if requests else []

    def prompt_text(self, request: AnalysisRequest) -> str:
        """The user turn's text; the images follow it, those the op returned behind a short caption."""
        input_name = "video" if request.is_video else "image"
        task = (OP_TASK if request.mode == "op" else DIRECT_TASK).format(input=input_name, cue=request.cue)
        keys = '{"whole": "...", "local": "..."}' if request.mode == "op" else '{"direct": "..."}'
        options = f"Options: {'; '.join(str(o) for o in request.options)}\n" if request.options else ""
        return (
            f"Question: {request.question}\n{options}Correct answer: {request.answer}\n"
            f"Detail that settles it: {request.cue}\n\n{task}\n{RULES}\nReply as {keys}.\n\n"
            f"The {input_name} as the assistant sees it:"
        )

    def messages(self, request: AnalysisRequest) -> list[dict]:
        content = [{"type": "text", "text": self.prompt_text(request)}]
        for i, image in enumerate(request.images):
            if i == request.n_input_images:
                content.append({"type": "text", "text": f"What the closer look at {request.cue} returned:"})
            content.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]

    def _cache_path(self, request: AnalysisRequest, temperature: float, attempt: int) -> Path | None:
        if self.cache_dir is None:
            return None
        settings = [self.model, request.mode, temperature, attempt, self.json_mode, request.n_input_images]
        digest = hashlib.sha256(json.dumps([*settings, SYSTEM_PROMPT, self.prompt_text(request)]).encode())
        for image in request.images:  # the pixels themselves, not their PNG encoding
            digest.update(f"{image.mode}{image.size}".encode() + image.tobytes())
        return self.cache_dir / f"{digest.hexdigest()}.json"

    async def _reply(self, client, request: AnalysisRequest, attempt: int) -> tuple[str, bool] | TeacherFailure:
        """The reply's text and whether it came from the cache."""
        # Each retry after a rejected reply samples differently: a warmer temperature and a seed of its own.
        temperature = min(round(self.temperature + 0.15 * attempt, 2), 2.0)
        extra = {"seed": attempt} if attempt else {}
        extra |= {"response_format": {"type": "json_object"}} if self.json_mode else {}
        path = await asyncio.to_thread(self._cache_path, request, temperature, attempt)  # hashing: off the loop too
        if path is not None and path.exists():
            try:
                content = json.loads(path.read_text())["content"]
                self._counts["cache_hits"] += 1
                return content, True
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable: ask again and overwrite it
        tokens = self._counts["prompt_tokens"] + self._counts["completion_tokens"]
        if (self.max_requests is not None and self._counts["requests"] >= self.max_requests) or (
            self.max_total_tokens is not None and tokens >= self.max_total_tokens
        ):
            return TeacherFailure(request.item_id, "cap reached")
        self._counts["requests"] += 1  # before any await, so that concurrent items cannot overshoot max_requests
        messages = await asyncio.to_thread(self.messages, request)  # PNG encoding would stall the other requests
        response = await create_completion(
            client,
            self.max_retries,
            self._count_bad_body,
            model=self.model,
            messages=messages,
            temperature=temperature,
            **extra,
        )
        for name in ("prompt_tokens", "completion_tokens"):
            self._counts[name] += getattr(response.usage, name, 0) or 0  # servers may leave `usage` out
        content = (response.choices[0].message.content or "") if response.choices else ""
        if path is not None:  # every reply, malformed ones too: a rerun re-rejects them for free
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
            temporary.write_text(json.dumps({"content": content}))
            os.replace(temporary, path)  # atomic: a killed run leaves at most a stray .tmp, never half an entry
        return content, False

    def _count_bad_body(self) -> None:
        self._counts["bad_bodies"] += 1

    async def _analyse_one(self, client, request: AnalysisRequest, secret: str) -> Analysis | TeacherFailure:
        all_cached, why = True, ""
        for attempt in range(1 + self.max_malformed_retries):
            try:
                reply = await self._reply(client, request, attempt)
            except openai.OpenAIError as error:  # raised only once the retries are spent
                return TeacherFailure(request.item_id, "request failed", describe_error(error, secret))
            if isinstance(reply, TeacherFailure):
                return reply
            content, cached = reply
            all_cached = all_cached and cached
            parts, why = check_reply(content, request)
            if parts is not None:
                return Analysis(request.item_id, **parts, teacher=f"openai:{self.model}", cached=all_cached)
            self._malformed[why] += 1
        return TeacherFailure(request.item_id, "malformed", why)

    async def _analyse_all(self, requests, secret: str, progress: bool) -> list[Analysis | TeacherFailure]:
        limit = asyncio.Semaphore(self.concurrency)

        async def count_request(_):
            self._counts["http_attempts"] += 1

        async def count_response(response):
            self._counts["responses"] += 1
            if response.status_code >= 400:
                self._http_errors[response.status_code] += 1

        async def run_one(request):
            async with limit:
                result = await self._analyse_one(client, request, secret)
            if isinstance(result, TeacherFailure):
                self._failures[result.reason] += 1
            bar.update(1)
            return result

        # The client's retry machinery backs off with jitter and honours Retry-After (429, 5xx); the hooks only count.
        hooks = {"request": [count_request], "response": [count_response]}
        client = openai.AsyncOpenAI(
            api_key=secret,
            base_url=self.base_url,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
        )
        with tqdm(total=len(requests), desc="analyses", disable=not progress) as bar:
            async with client:
                return list(await asyncio.gather(*(run_one(r) for r in requests)))
