"""How RL's rollouts are generated at scale (paper §4: G rollouts per query, many queries per generation batch): by
vLLM, with its engine's settings passed to TRL, or by transformers' `generate` in micro-batches.

vLLM: `VLLM_SETTINGS` are the `RLConfig` fields TRL's `GRPOConfig` takes under the same names; `vllm_image_limit`
gives the engine TRL builds in colocate mode the one setting TRL has no field for (images per prompt).

transformers: TRL's `GRPOTrainer` hands `generate` every prompt of a process's generation batch at once: at the
paper's settings (`params/30_train_rl/paper.yaml`) 512 rollouts of up to ~10k tokens, whose KV cache alone is
~290 GiB at the 7B config (benchmarks/rl_memory.py). TRL leaves scale to vLLM (paged KV cache, its own scheduler)
and to its continuous batching path, which refuses multimodal models. Rollouts are independent and TRL keeps each
one's tokens up to its first end-of-turn id, so generating them `size` at a time and concatenating the lists gives
the same rollouts (token for token under greedy decoding; under sampling the same distribution, other random draws)
with the KV cache of `size` rollouts. `prompt_chunks` cuts one call's inputs into such chunks: the prompts, their
images, and the processor's fields, whose image patches are stacked over all prompts (`pixel_values` rows by
`image_grid_thw`) and are cut with TRL's own split. Each chunk is one call of TRL's generation step, so under
ZeRO-3 (one process; pxr refuses it on several without vLLM) each chunk gathers the weights once.

Tests: tests/test_rl_generation.py (greedy completions of 1, 2 and 3 rollouts at a time equal one call's, token for
token, with prompts holding different numbers of images; a GRPO step runs micro-batched), tests/test_rl_vllm.py
(every setting reaches TRL's config; bad values are clear errors; the image limit reaches the colocated engine).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

# Fields of the processor stacked over all images of all prompts (cut per prompt by TRL's split by grid).
IMAGE_FIELDS = ("pixel_values", "image_grid_thw")


def prompt_chunks(
    prompt_ids: list, images: list | None, fields: dict[str, Any], size: int
) -> Iterator[tuple[list, list | None, dict[str, Any]]]:
    """(prompt_ids, images, fields) of consecutive runs of `size` prompts, in order; `size` 0 yields the whole call.

    `images[i]` is prompt i's image list (or None), `fields` what TRL passes to its generation: image tensors
    stacked over prompts, per-token fields as one list (or tensor row) per prompt."""
    if size < 0:
        raise ValueError(f"the generation micro-batch size must be >= 0 (0 = all at once), got {size}")
    count = len(prompt_ids)
    if size == 0 or count <= size:
        yield prompt_ids, images, fields
        return
    if any(key.endswith("_videos") or key == "video_grid_thw" for key in fields):
        raise ValueError(
            "micro-batched generation cuts image inputs only; pxr's training prompts show videos as numbered frames "
            "(video_input: frames). Set generation_micro_batch_size: 0 for video inputs."
        )
    per_prompt = _fields_per_prompt(fields, images, count)
    for start in range(0, count, size):
        rows = slice(start, start + size)
        chunk = {}
        for key, values in per_prompt.items():
            chunk[key] = torch.cat(values[rows]) if key in IMAGE_FIELDS else _rows(values, rows)
        if "pixel_values" in chunk and chunk["pixel_values"].numel() == 0:  # no prompt of the chunk has an image
            chunk = {k: v for k, v in chunk.items() if k not in IMAGE_FIELDS}
        yield prompt_ids[rows], (images[rows] if images is not None else None), chunk


def _fields_per_prompt(fields: dict[str, Any], images: list | None, count: int) -> dict[str, Any]:
    from trl.trainer.utils import split_pixel_values_by_grid

    if "pixel_values" in fields:
        if images is None or "image_grid_thw" not in fields:
            raise ValueError("image patches without per-prompt image lists or grids cannot be cut per prompt")
        num_images = [len(prompt_images or []) for prompt_images in images]
        split = split_pixel_values_by_grid({**fields, "num_images": num_images})
        split.pop("num_images")
        fields = split
    for key, values in fields.items():
        if len(values) != count:
            raise ValueError(f"generation field {key!r} has {len(values)} rows for {count} prompts")
    return fields


def _rows(values, rows: slice):
    return values[rows] if isinstance(values, torch.Tensor | list) else list(values)[rows]


# RLConfig fields that TRL's GRPOConfig takes under the same name (`vllm_max_images_per_prompt` it has not).
VLLM_SETTINGS = (
    "vllm_mode",
    "vllm_server_base_url",
    "vllm_server_host",
    "vllm_server_port",
    "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size",
    "vllm_max_model_length",
    "vllm_enable_sleep_mode",
    "vllm_model_impl",
)


@contextlib.contextmanager
def vllm_image_limit(max_images: int):
    """While open, the vLLM engine TRL builds in colocate mode admits at most `max_images` images a prompt (vLLM's
    `limit_mm_per_prompt`, which sizes its memory profiling); TRL 1.16 has no setting for it. 0 leaves vLLM's
    default. A vLLM server takes it on its own command line (README "RL on 8 GPUs")."""
    from trl.generation import vllm_generation

    engine = getattr(vllm_generation, "LLM", None)  # defined only where vLLM is installed
    if not max_images or engine is None:
        yield
        return
    vllm_generation.LLM = functools.partial(engine, limit_mm_per_prompt={"image": max_images})
    try:
        yield
    finally:
        vllm_generation.LLM = engine
