"""Rollouts with offline vLLM (`vllm.LLM`) for evaluation at scale (paper §4 evaluation; the `vllm` backend of
`pxr.evaluation.evaluate`).

The same episode loop as the other backends (`pxr.rollout.generate_trajectories` in process,
`pxr.evaluation.openai_backend` over an endpoint), with every unfinished episode batched into one `LLM.generate` call per
round, so vLLM schedules them all together. Each episode's prompt is pxr's own rendering of its chat
(`pxr.rollout.render_prompt`: the processor's chat template over `Trajectory.messages()`, the exact text the
in-process backend tokenizes) with the episode's images in number order as `multi_modal_data`; vLLM expands each
image placeholder itself. A turn stops at `</tool_call>` (kept in the text) or the end of turn, and each
continuation goes through `pxr.rollout.apply_turn`, so `VisualEpisode` executes the op and the records are the same
`Trajectory`s. Videos go in as numbered frames (`video_input` "frames").

Scale: `tensor_parallel_size` GPUs per engine; `data_parallel_size` > 1 splits the episodes into that many
contiguous shards, each run by its own process with its own `vllm.LLM` on its own GPUs (`CUDA_VISIBLE_DEVICES`),
the way vLLM's offline data-parallel example does it for dense models; the trajectories come back in query order.

vLLM is imported only when a rollout starts (install it on GPU machines: `pip install -e ".[gpu]"`).

Tests: tests/test_vllm_backend.py (a fake `vllm` module with the API used here: prompts and their token ids equal
the in-process backend's rendering, images in order with the crop after a zoom, one generate call per round, the
stop string, the records equal the in-process backend's; the data-parallel path in two CPU processes).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from tqdm.auto import tqdm

from pxr import protocol
from pxr.config import EpisodeConfig
from pxr.rollout import Query, RolloutConfig, Trajectory, apply_turn, cut_at_tool_call, render_prompt, start_trajectory

INSTALL_HINT = 'pip install -e ".[gpu]"'


@dataclass(frozen=True)
class VLLMBackendConfig:
    """The engine: which model, and how it spreads over the GPUs."""

    model: str  # a checkpoint folder or hub id
    tensor_parallel_size: int = 1  # GPUs per engine
    data_parallel_size: int = 1  # engines, each on its own tensor_parallel_size GPUs and its own share of episodes
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM may take (weights and KV cache)
    max_model_len: int = 0  # the longest prompt plus turn vLLM accepts; 0: the model's own

    def __post_init__(self):
        if not self.model:
            raise ValueError("the vllm backend needs model_path (a checkpoint folder or hub id)")
        if self.tensor_parallel_size < 1 or self.data_parallel_size < 1:
            raise ValueError("vllm_tensor_parallel_size and vllm_data_parallel_size must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len < 0:
            raise ValueError(f"vllm_max_model_len must be >= 0, got {self.max_model_len}")


def import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"the vllm backend needs vLLM on a GPU machine: {INSTALL_HINT}") from error
    return vllm


def build_engine(backend: VLLMBackendConfig, *, images_per_prompt: int, seed: int):
    """`vllm.LLM` for `backend`, room for `images_per_prompt` images in one prompt."""
    vllm = import_vllm()
    settings = {"max_model_len": backend.max_model_len} if backend.max_model_len else {}
    return vllm.LLM(
        model=backend.model,
        tensor_parallel_size=backend.tensor_parallel_size,
        gpu_memory_utilization=backend.gpu_memory_utilization,
        limit_mm_per_prompt={"image": images_per_prompt},
        seed=seed,
        **settings,
    )


def sampling_params(config: RolloutConfig):
    """One turn's decoding: stop after a tool call, keeping `</tool_call>` in the text as the episode reads it."""
    return import_vllm().SamplingParams(
        max_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        stop=[protocol.TOOL_CALL_CLOSE],
        include_stop_str_in_output=True,
    )


def engine_prompt(processor, trajectory: Trajectory) -> dict:
    """The request of one episode's next turn: the rendered chat and its images in placeholder order."""
    images, videos = trajectory.visual_inputs()
    if videos:
        raise ValueError("the vllm backend shows videos as numbered frames: set video_input to frames or auto")
    prompt = {"prompt": render_prompt(processor, trajectory)}
    if images:
        prompt["multi_modal_data"] = {"image": list(images)}
    return prompt


def run_rounds(llm, processor, trajectories: list[Trajectory], config: RolloutConfig, progress: bool) -> None:
    """Every unfinished episode's next turn in one `llm.generate` call, until all have ended."""
    params = sampling_params(config)
    bar = tqdm(total=len(trajectories), desc="episodes", disable=not progress)
    active = [t for t in trajectories if not t.episode.done]
    while active:
        start = time.perf_counter()
        outputs = llm.generate([engine_prompt(processor, t) for t in active], params, use_tqdm=False)
        seconds = (time.perf_counter() - start) / len(active)
        for trajectory, output in zip(active, outputs, strict=True):
            completion = output.outputs[0]
            tokens = len(completion.token_ids)
            trajectory.generate_seconds += seconds
            trajectory.prompt_tokens = len(output.prompt_token_ids)
            text = cut_at_tool_call(completion.text)
            apply_turn(trajectory, text, tokens, truncated=completion.finish_reason == "length")
            if not trajectory.episode.done and trajectory.prompt_tokens + tokens >= config.max_total_tokens:
                trajectory.episode.finish("limit", "max_tokens")
        bar.update(sum(t.episode.done for t in active))
        active = [t for t in active if not t.episode.done]
    bar.close()


def images_per_prompt(trajectories: list[Trajectory], episode_config: EpisodeConfig) -> int:
    """The most images one prompt can carry: an episode's inputs (a video's frames) plus what its ops may add."""
    return max((t.episode.n_inputs for t in trajectories), default=1) + episode_config.max_images


def shards(n_items: int, n_shards: int) -> list[range]:
    """Contiguous, near-equal index ranges (the first ones one longer), none empty."""
    size, extra = divmod(n_items, n_shards)
    bounds, start = [], 0
    for k in range(n_shards):
        end = start + size + (k < extra)
        if end > start:
            bounds.append(range(start, end))
        start = end
    return bounds


def devices_of_shard(rank: int, tensor_parallel_size: int, visible: str | None) -> str:
    """`CUDA_VISIBLE_DEVICES` for engine `rank`: its `tensor_parallel_size` GPUs out of the ones visible here."""
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else None
    needed = (rank + 1) * tensor_parallel_size
    if ids is not None and len(ids) < needed:
        raise ValueError(f"engine {rank} needs GPUs {needed - tensor_parallel_size}..{needed - 1}, visible: {visible}")
    chosen = ids[needed - tensor_parallel_size : needed] if ids else range(needed - tensor_parallel_size, needed)
    return ",".join(map(str, chosen))


def _run_shard(queries, backend, episode_config, rollout_config, devices: str) -> list[Trajectory]:
    """One data-parallel process: pinned to its GPUs before vLLM initialises CUDA, then the plain loop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    return generate_trajectories_vllm(
        queries,
        backend=replace(backend, data_parallel_size=1),
        episode_config=episode_config,
        rollout_config=rollout_config,
        progress=False,
    )


def generate_trajectories_vllm(
    queries: list[Query],
    *,
    backend: VLLMBackendConfig,
    episode_config: EpisodeConfig | None = None,
    rollout_config: RolloutConfig | None = None,
    processor=None,
    progress: bool = True,
) -> list[Trajectory]:
    """Roll out every query with offline vLLM; results in query order. `processor` renders the prompts (default:
    `pxr.models.load_processor(backend.model)`). `rollout_config.batch_size` does not apply: each round sends every
    unfinished episode and vLLM schedules them; `seed` seeds the engine."""
    episode_config = episode_config or EpisodeConfig()
    config = rollout_config or RolloutConfig()
    import_vllm()  # a missing install fails here, before any work
    if backend.data_parallel_size > 1 and len(queries) > 1:
        parts = shards(len(queries), backend.data_parallel_size)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [devices_of_shard(k, backend.tensor_parallel_size, visible) for k in range(len(parts))]
        # spawn, not fork: a forked child inherits this process's CUDA and vLLM state, which neither survives.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
            futures = [
                pool.submit(_run_shard, [queries[i] for i in part], backend, episode_config, config, gpus)
                for part, gpus in zip(parts, devices, strict=True)
            ]
            return [t for future in futures for t in future.result()]
    if processor is None:
        from pxr import models

        processor = models.load_processor(backend.model)
    trajectories = [start_trajectory(q, episode_config) for q in queries]
    if trajectories:
        llm = build_engine(backend, images_per_prompt=images_per_prompt(trajectories, episode_config), seed=config.seed)
        run_rounds(llm, processor, trajectories, config, progress)
    return trajectories
