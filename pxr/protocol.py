"""The prompt protocol (paper §2, App. E): the one system prompt, the tool schemas, prompt variants, tool-call parsing
and answer extraction.

Everything the model reads or writes about visual operations is defined here once, so that SFT data, RL rollouts,
evaluation and the demo render identical tokens. The system prompt is the text Qwen's tool-calling chat template
(TRL's `qwen3_vl.jinja`) renders for `tools=tool_schemas(variant)`, so a trainer that renders tools through the
template and a dataset that carries the system prompt as text agree byte for byte.

Variants (parameter `prompt`):
- `pixel`: ops available (the default).
- `text`: no ops (the paper's `notool` baseline and the text control of evaluation).
- `pixel-reasoner-v1`: the released PixelReasoner checkpoints' own format, byte for byte, quirks included, for
  faithful evaluation: tool `crop_image_normalized` with the released schema (its key order too), the question
  verbatim and the released guideline (it names `crop_image`), observations as plain user turns whose text starts
  with a newline ("\nHere is the cropped image (Image Size: WxH):"), errors as "\nExecution error:\n{msg}\n", the
  frame message's off-by-one numbering, and a video as one video item where the processor reads videos.

The zoom schema tells the model its family's box convention (`pxr.families`). Backends that cannot send `tool`
turns send `as_user_turn(message)`, which renders to the same tokens.

Tests: tests/test_protocol.py, tests/test_backend_parity.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pxr import families

PROMPT_VARIANTS = ("pixel", "text", "pixel-reasoner-v1")
OP_NAMES = ("zoom_in", "select_frames")
# Names the released checkpoints and data use for zoom_in; accepted in every variant.
OP_ALIASES = {"crop_image_normalized": "zoom_in", "crop_image": "zoom_in"}

BASE_SYSTEM_TEXT = "You are a helpful assistant."


def zoom_in_schema(family: str = families.DEFAULT_FAMILY) -> dict:
    """pxr's `zoom_in` schema; how `bbox_2d` is written is the model family's (`pxr.families`)."""
    return {
        "type": "function",
        "function": {
            "name": "zoom_in",
            "description": (
                "Zoom in on a region of an image to see its details at higher resolution. Useful when an object or "
                "text is too small to make out. Returns the region as a new image."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "bbox_2d": {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": 4,
                        "maxItems": 4,
                        "description": families.get_family(family).box_description,
                    },
                    "target_image": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "The number of the image to zoom into; 1 is the first input image.",
                    },
                },
                "required": ["bbox_2d"],
            },
        },
    }


ZOOM_IN_SCHEMA = zoom_in_schema()

SELECT_FRAMES_SCHEMA = {
    "type": "function",
    "function": {
        "name": "select_frames",
        "description": "Select frames of the video to look at them more closely. Returns the frames as new images.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_frames": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "description": "Frame numbers to select, counted from 1 (at most 8 frames).",
                },
            },
            "required": ["target_frames"],
        },
    },
}

# The released checkpoints' schemas, as the released code declares them to the model (`target_image` a number, key
# order included), kept as they were trained on them.
RELEASED_CROP_SCHEMA = {
    "type": "function",
    "function": {
        "name": "crop_image_normalized",
        "description": (
            "Zoom in on the image based on the bounding box coordinates. It is useful when the object or text in "
            "the image is too small to be seen."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                # Key order as released (type, description, items): `tojson` keeps it, and it is in the tokens.
                "bbox_2d": {
                    "type": "array",
                    "description": (
                        "coordinates for bounding box of the area you want to zoom in. Values should be within [0.0,1.0]."
                    ),
                    "items": {"type": "number"},
                },
                "target_image": {
                    "type": "number",
                    "description": (
                        "The index of the image to crop. Index from 1 to the number of images. Choose 1 to operate "
                        "on original image."
                    ),
                },
            },
            "required": ["bbox_2d", "target_image"],
        },
    },
}
RELEASED_SELECT_SCHEMA = {
    "type": "function",
    "function": {
        "name": "select_frames",
        "description": "Select frames from a video.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_frames": {
                    "type": "array",
                    "description": "List of frame indices to select from the video (no more than 8 frames in total).",
                    "items": {"type": "integer", "description": "Frame index from 1 to 16."},
                }
            },
            "required": ["target_frames"],
        },
    },
}

GUIDELINES = {
    "pixel": (
        "Guidelines: Decide whether looking closer would help answer. You can zoom into a region of an image with "
        "`zoom_in`, and pick frames of a video with `select_frames`. Reason step by step, and put your final "
        "answer within \\boxed{}."
    ),
    "text": "Reason step by step, and put your final answer within \\boxed{}.",
    # The released RL prompt's guideline ("vcot"); it names `crop_image` although the tool is
    # `crop_image_normalized`, which is what the released models were trained with.
    "pixel-reasoner-v1": (
        "Guidelines: Understand the given visual information and the user query. Determine if it is beneficial to "
        "employ the given visual operations (tools). For a video, we can look closer by `select_frames`. For an "
        "image, we can look closer by `crop_image`. Reason with the visual information step by step, and put your "
        "final answer within \\boxed{}."
    ),
}
# The released prompt joined question and guideline with four newlines (its trigger text began with two more).
_GUIDELINE_SEPARATOR = {"pixel": "\n\n", "text": "\n\n", "pixel-reasoner-v1": "\n\n\n\n"}

OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def check_variant(variant: str) -> str:
    if variant not in PROMPT_VARIANTS:
        raise ValueError(f"unknown prompt variant {variant!r}; choose one of {', '.join(PROMPT_VARIANTS)}")
    return variant


def tool_schemas(variant: str = "pixel", family: str = families.DEFAULT_FAMILY) -> list[dict]:
    """The tools declared to the model: what a chat template receives as `tools=`. The released schemas are as
    released whatever the family (the released checkpoints are Qwen2.5-VL and were told [0, 1] boxes)."""
    check_variant(variant)
    if variant == "text":
        return []
    if variant == "pixel-reasoner-v1":
        return [RELEASED_CROP_SCHEMA, RELEASED_SELECT_SCHEMA]
    return [zoom_in_schema(family), SELECT_FRAMES_SCHEMA]


def system_prompt(variant: str = "pixel", family: str = families.DEFAULT_FAMILY) -> str:
    """The full system message text, identical to what Qwen's tool template renders for `tool_schemas(...)`."""
    tools = tool_schemas(variant, family)
    if not tools:
        return BASE_SYSTEM_TEXT
    # json.dumps with default separators and key order is what the template's `tojson` produces.
    tool_lines = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        f"{BASE_SYSTEM_TEXT}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        f"{tool_lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call>"
    )


def format_options(options: list[str]) -> str:
    """Multiple-choice options as lettered lines: 'A. red\\nB. blue'."""
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options are supported, got {len(options)}")
    return "\n".join(f"{OPTION_LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def user_text(question: str, options: list[str] | None = None, variant: str = "pixel") -> str:
    """The text that follows the visual input in the user turn: question, options, guideline. The released prompt
    took the question verbatim (surrounding whitespace and any literal `<image>` included); pxr's variants strip it."""
    check_variant(variant)
    body = question if variant == "pixel-reasoner-v1" else question.strip()
    if options:
        body += "\nOptions:\n" + format_options(options)
    return body + _GUIDELINE_SEPARATOR[variant] + GUIDELINES[variant]


# ---------------------------------------------------------------------------------------------- observations


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _numbers(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"image {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"images {numbers[0]}-{numbers[-1]}"
    return "images " + ", ".join(map(str, numbers))


def zoom_observation_text(variant: str, new_number: int, source_number: int, size: tuple[int, int]) -> str:
    """The line that accompanies a returned crop; it names the number `target_image` will accept for it.

    Under `pixel-reasoner-v1` it is the released line, leading newline included (the released rollout put it there
    because the observation is a plain user turn right after `<|im_start|>user\n`), and it names no number."""
    if variant == "pixel-reasoner-v1":
        return f"\nHere is the cropped image (Image Size: {_size(size)}):"
    return f"Here is {_numbers([new_number])}: the zoomed region of image {source_number} ({_size(size)} px)."


def frames_observation_text(
    variant: str, new_numbers: list[int], frames: list[int], size: tuple[int, int], *, video_frames: int = 0
) -> str:
    """The line that accompanies selected frames, naming their new image numbers.

    Under `pixel-reasoner-v1` it is the released line. Its quirk is kept because the released models were trained
    on it: the released code counted positions in a list whose entry 1 is the whole video (`video_frames` frames
    here), so it announces "Numbered a to b" with a = 1 for the first selection, while cropping those frames takes
    `target_image` a + 1 .. b + 1 (the episode maps that under this variant)."""
    if variant == "pixel-reasoner-v1":
        start, end = new_numbers[0] - video_frames, new_numbers[-1] - video_frames
        return f"\nHere are the selected frames (Frame Size: {_size(size)}, Numbered {start} to {end}):"
    frame_list = ", ".join(map(str, frames))
    noun = "frame" if len(frames) == 1 else "frames"
    return f"Here {'is' if len(frames) == 1 else 'are'} {_numbers(new_numbers)}: video {noun} {frame_list} ({_size(size)} px)."


def error_observation_text(message: str, variant: str = "pixel") -> str:
    """What a failed call returns. The released format wraps the message in newlines: "\nExecution error:\n{msg}\n"."""
    if variant == "pixel-reasoner-v1":
        return f"\nExecution error:\n{message}\n"
    return f"Execution error: {message}"


# ------------------------------------------------------------------------------------------------ tool calls

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_TOOL_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


class ToolCallError(ValueError):
    """A tool call the model wrote that cannot be read; the message is fit to show the model."""


@dataclass(frozen=True)
class ToolCall:
    name: str  # as written by the model (aliases not resolved)
    arguments: dict[str, Any] = field(default_factory=dict)


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """A tool call exactly as the chat template renders an assistant `tool_calls` entry."""
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {json.dumps(arguments, ensure_ascii=False)}}}\n{TOOL_CALL_CLOSE}'


def has_tool_call(text: str) -> bool:
    return TOOL_CALL_OPEN in text


def parse_tool_call(text: str) -> ToolCall | None:
    """The single tool call in an assistant turn, or None when the turn has none (it is then the answer).

    Raises `ToolCallError` with a message for the model when the call cannot be read: unclosed tag, more than one
    call, invalid JSON, or JSON that is not `{"name": str, "arguments": object}`. Argument values are checked by the
    episode, which knows the images.
    """
    if TOOL_CALL_OPEN not in text:
        return None
    bodies = _TOOL_CALL_RE.findall(text)
    n_open = text.count(TOOL_CALL_OPEN)
    if not bodies or n_open > len(bodies):
        raise ToolCallError(
            f'the tool call is not closed; write it as {TOOL_CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{TOOL_CALL_CLOSE}.'
        )
    if len(bodies) > 1:
        raise ToolCallError(f"found {len(bodies)} tool calls in one turn; make exactly one call per turn.")
    body = bodies[0].strip()
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as err:
        msg = err.msg if isinstance(err, json.JSONDecodeError) else "nesting too deep"
        raise ToolCallError(
            f'the tool call is not valid JSON ({msg}); write {{"name": "<op>", "arguments": {{...}}}} with double quotes.'
        ) from None
    if not isinstance(payload, dict):
        raise ToolCallError('the tool call must be a JSON object {"name": "<op>", "arguments": {...}}.')
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        raise ToolCallError('the tool call has no "name"; give the operation name as a string.')
    arguments = payload.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI-style calls carry the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            raise ToolCallError('"arguments" is a string that is not a JSON object; give an object.') from None
    if not isinstance(arguments, dict):
        raise ToolCallError(f'"arguments" must be a JSON object, got {type(arguments).__name__}.')
    return ToolCall(name=name, arguments=arguments)


def malformed_call_examples(box: list[float]) -> dict[str, str]:
    """Turns a model might write that no episode can execute, by what is wrong with them (the `box` a valid normalized
    zoom box on image 1): bad JSON, unknown ops and arguments, bad boxes and image numbers, an op on the wrong input,
    two calls, an unclosed call. Each becomes an `Execution error:` observation (tests/test_protocol.py)."""
    box = [round(v, 3) for v in box]
    call = tool_call_text("zoom_in", {"bbox_2d": box, "target_image": 1})
    return {
        "single quotes (not JSON)": "<tool_call>{'name': 'zoom_in', 'arguments': {'bbox_2d': [0.1, 0.1, 0.5, 0.5]}}</tool_call>",
        "unknown operation": tool_call_text("rotate", {"angle": 90}),
        "missing bbox_2d": tool_call_text("zoom_in", {"target_image": 1}),
        "unexpected argument": tool_call_text("zoom_in", {"bbox_2d": box, "zoom": 4}),
        "three coordinates": tool_call_text("zoom_in", {"bbox_2d": box[:3]}),
        "inverted box": tool_call_text("zoom_in", {"bbox_2d": [box[2], box[3], box[0], box[1]]}),
        "pixel box outside the image": tool_call_text("zoom_in", {"bbox_2d": [400, 300, 900, 700]}),
        "image 0 (numbers start at 1)": tool_call_text("zoom_in", {"bbox_2d": box, "target_image": 0}),
        "image that does not exist yet": tool_call_text("zoom_in", {"bbox_2d": box, "target_image": 3}),
        "select_frames on an image": tool_call_text("select_frames", {"target_frames": [1, 2]}),
        "two calls in one turn": call + call,
        "unclosed call": call.removesuffix(TOOL_CALL_CLOSE),
    }


# ------------------------------------------------------------------------------------------- answer extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:)\s*[:\s]*\**\s*([^\n]+?)\s*\**\s*(?:[.。]\s*)?$",
    re.IGNORECASE | re.MULTILINE,
)
_LETTER_RE = re.compile(r"^\(?\s*([A-Z])\s*(?:\)|\.|:|\s|$)")


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """[start, end) character span of the content of the last complete `\\boxed{...}` in text, or None."""
    found = None
    for match in _BOXED_RE.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found = (start, i)
                    break
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` in text (nested braces handled), or None."""
    span = last_boxed_span(text)
    return text[span[0] : span[1]].strip() if span is not None else None


def extract_answer(text: str, options: list[str] | None = None) -> str | None:
    """The model's final answer: the last `\\boxed{}`, else an explicit "answer is X"; None when there is neither.

    With `options` (multiple choice) the answer is normalized to its option letter where it names one.
    """
    answer = last_boxed(text)
    if answer is None:
        matches = _ANSWER_IS_RE.findall(text)
        answer = matches[-1].strip() if matches else None
    if answer is None:
        return None
    answer = re.sub(r"^\\text\s*\{(.*)\}$", r"\1", answer).strip()
    if options:
        letter = choice_letter(answer, options)
        if letter is not None:
            return letter
    return answer


BARE_ANSWER_MAX_CHARS = 40  # a reply this short, on one line, with no \\boxed{} is read as the answer itself


def final_answer(text: str, options: list[str] | None = None) -> str | None:
    """The answer a final turn gives: `extract_answer`, else the whole reply when it is short and on one line
    (a bare "3"). The one reading of an answer: the episode records it, the reward and every benchmark score it."""
    answer = extract_answer(text, options)
    if answer is not None:
        return answer
    bare = text.strip()
    if not bare or "\n" in bare or len(bare) > BARE_ANSWER_MAX_CHARS:
        return None
    letter = choice_letter(bare, options) if options else None
    return letter if letter is not None else bare


def choice_letter(answer: str, options: list[str] | None = None) -> str | None:
    """The option letter an answer names: 'B', '(B)', 'B.', 'B) red', or the text of option B; else None."""
    text = answer.strip()
    n = len(options) if options else len(OPTION_LETTERS)
    bare = text.strip("()[]. ")
    if len(bare) == 1 and bare.upper() in OPTION_LETTERS[:n]:
        return bare.upper()
    match = _LETTER_RE.match(text)
    if match and OPTION_LETTERS.index(match.group(1)) < n:
        rest = text[match.end() :].strip()
        # "B) red" names B only when "red" is B's own text: without the options, "A cat" is not option A.
        if options and _norm(rest) == _norm(options[OPTION_LETTERS.index(match.group(1))]):
            return match.group(1)
    if options:
        hits = [i for i, opt in enumerate(options) if _norm(opt) == _norm(text)]
        if len(hits) == 1:
            return OPTION_LETTERS[hits[0]]
    return None


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", s.lower())).strip()


# ----------------------------------------------------------------------------------------------- conversations


VIDEO_INPUTS = ("frames", "video")


def user_content(
    question: str, n_images: int, *, is_video: bool = False, options=None, variant: str = "pixel", video_input="frames"
):
    """The first user turn's content: the visual input as placeholders, then the question and guideline.

    A video's frames are numbered images ("Frame 1:" ...), the numbers `select_frames` takes (`pxr.episode`). With
    `video_input="video"` (the released format, where a processor with a video processor is at hand) the video is
    one video item instead, as the released models saw it; its frames then go to the processor as one video."""
    if video_input not in VIDEO_INPUTS:
        raise ValueError(f"video_input must be one of {', '.join(VIDEO_INPUTS)}, got {video_input!r}")
    if is_video and video_input == "video":
        content = [{"type": "video"}]
    elif is_video:
        content = []
        for k in range(1, n_images + 1):
            content += [{"type": "text", "text": f"Frame {k}:"}, {"type": "image"}]
    else:
        content = [{"type": "image"} for _ in range(n_images)]
    return content + [{"type": "text", "text": user_text(question, options, variant)}]


# How Qwen's tool template renders a `tool` turn (TRL's qwen3_vl template): inside the user turn, the content
# between these two strings. A backend that cannot send `tool` turns sends this as a user turn's content.
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>\n", "\n</tool_response>"


def observation_message(text: str, n_images: int, variant: str = "pixel") -> dict:
    """An op's result as a chat message, the same in SFT data, RL, eval and the demo: a `tool` turn (rendered as
    `<tool_response>` by the template) with the line first and the images after it; the released format has no
    wrapper, so there it is a plain user turn."""
    role = "user" if variant == "pixel-reasoner-v1" else "tool"
    return {"role": role, "content": [{"type": "text", "text": text}] + [{"type": "image"}] * n_images}


def as_user_turn(message: dict) -> dict:
    """A `tool` turn as the `user` turn the template renders it to (`<tool_response>` wrapper in the text), for
    chat APIs whose `tool` role cannot carry images; other turns are returned as they are. Rendering either gives the
    same tokens, as long as observations are not two `tool` turns in a row (pxr never makes such)."""
    if message["role"] != "tool":
        return message
    parts = [dict(p) for p in message["content"]]
    if parts and parts[0]["type"] == "text":
        parts[0]["text"] = TOOL_RESPONSE_OPEN + parts[0]["text"]
    else:
        parts.insert(0, {"type": "text", "text": TOOL_RESPONSE_OPEN})
    if parts[-1]["type"] == "text":
        parts[-1]["text"] += TOOL_RESPONSE_CLOSE
    else:
        parts.append({"type": "text", "text": TOOL_RESPONSE_CLOSE})
    return {"role": "user", "content": parts}


def build_messages(
    question: str,
    n_inputs: int,
    turns,
    *,
    is_video=False,
    options=None,
    variant="pixel",
    video_input="frames",
    family=families.DEFAULT_FAMILY,
) -> list[dict]:
    """The chat of an episode so far. `turns` are (role, text, n_images) with role "assistant" or "observation";
    image placeholders appear in image-number order, so the episode's `shown_images` are the processor's images
    (with `video_input="video"` the video's frames are one video and the images are those after it)."""
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system_prompt(variant, family)}]},
        {
            "role": "user",
            "content": user_content(
                question, n_inputs, is_video=is_video, options=options, variant=variant, video_input=video_input
            ),
        },
    ]
    for role, text, n_images in turns:
        if role == "assistant":
            messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        else:
            messages.append(observation_message(text, n_images, variant))
    return messages
