"""A stand-in for the part of vLLM's offline API that pxr.evaluation.vllm_backend uses (`LLM(...)`, `LLM.generate`,
`SamplingParams`, the returned `RequestOutput`/`CompletionOutput` fields), for tests on machines without vLLM.

It records every call in `CALLS` (and, when the environment names a file in `FAKE_VLLM_LOG`, one JSON line per call
with the process id and its `CUDA_VISIBLE_DEVICES`, for the data-parallel test's child processes). Each prompt is
tokenized as vLLM would feed the model (the model's processor over the text and its images, each placeholder
expanded) and answered with `SCRIPT(prompt_text)`, tokenized, followed by the end-of-turn token when it fits in
`max_tokens`: what tests/test_rollout.py's ScriptedModel gives the in-process backend.
"""

import json
import os
from dataclasses import dataclass

from pxr import protocol

CALLS: list[tuple] = []
ZOOM = "The digit is too small. Let me zoom in.\n" + protocol.tool_call_text(
    "zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]}
)
ANSWER = "I can read it now: \\boxed{7}"


def zoom_then_answer(prompt: str) -> str:
    if "answer-at-once" in prompt:
        return "\\boxed{3}"
    if "think-forever" in prompt:
        return "thinking " * 50
    return ANSWER if "<tool_response>" in prompt else ZOOM


SCRIPT = zoom_then_answer


def _log(event: str, **fields) -> None:
    CALLS.append((event, fields))
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        record = {"event": event, "pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), **fields}
        with open(path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        _log("SamplingParams", **kwargs)


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


class LLM:
    def __init__(self, model: str, **kwargs):
        from pxr import models

        self.processor = models.load_processor(model)
        _log("LLM", model=model, **kwargs)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        tokenizer = self.processor.tokenizer
        settings = sampling_params.kwargs
        eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        outputs, seen = [], []
        for request in prompts:
            images = request.get("multi_modal_data", {}).get("image") or None
            ids = self.processor(text=[request["prompt"]], images=images, do_resize=False)["input_ids"][0]
            ids = list(map(int, ids))
            seen.append({"prompt": request["prompt"], "ids": ids, "images": images or []})
            new = tokenizer.encode(SCRIPT(tokenizer.decode(ids)))[: settings["max_tokens"]]
            if len(new) < settings["max_tokens"]:
                new.append(eos)
            text = tokenizer.decode(new, skip_special_tokens=True)
            stop = next((s for s in settings.get("stop") or [] if s in text), None)
            if stop is not None:
                end = text.index(stop) + (len(stop) if settings.get("include_stop_str_in_output") else 0)
                text = text[:end]
            reason = "length" if stop is None and new[-1] != eos else "stop"
            outputs.append(RequestOutput(request["prompt"], ids, [CompletionOutput(text, new, reason)]))
        CALLS.append(("generate", seen))
        _log("generate-count", n=len(prompts))
        return outputs
