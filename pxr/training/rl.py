"""Curiosity-driven RL (paper §4): TRL's `GRPOTrainer` with the visual-operation environment and pxr's reward.

- Rollouts: TRL generates; every turn that writes `<tool_call>` is answered by the rollout's `VisualEpisode`
  exactly as evaluation answers it (`pxr.training.rl_env`: the turn is routed whole, cut at its first `</tool_call>`, where
  generation stops as the rollout engine stops it); crops and frames reach the continued generation and the loss
  forward; observation tokens are out of the loss. The episode's own limits (`max_ops`, `max_turns`, ...) end a
  rollout, as in evaluation; what the model writes after a limit ended its episode is out of the loss.
- Prompts: TRL renders tool schemas from the environment's method signatures, which cannot say everything
  `pxr.protocol` declares (`minItems`, `minimum`); `use_protocol_schemas` makes the processor render the protocol's
  schemas, so an RL prompt is token for token the SFT and evaluation prompt (tested).
- Reward (`make_reward_function`): r' = r + α·curiosity + β·penalty from `pxr.reward.group_rewards`, on whole groups,
  r by the one correctness rule (`pxr.reward.answer_correct`). TRL puts the G rollouts of a query next to each other
  in the global batch (its advantages are taken over `view(-1, G)` of the gathered rewards); with several processes
  a group can straddle two of them, so every process gathers the per-rollout facts, computes the groups in that same
  order and keeps its own slice. A rollout whose last observation TRL dropped (`max_completion_length`) is truncated.
- Filtering (`PixelReasonerGRPOTrainer`): groups whose rewards are all equal carry no signal; they leave the loss
  and its normaliser (for `grpo`/`dr_grpo`, whose normaliser counts rollouts, the loss is rescaled to the rollouts
  kept: the released code's drop-and-refill, in expectation). Truncated rollouts are masked when `mask_truncated`.
- Logging: accuracy, RaPR, mean ops, op error rate, curiosity, penalty, filtered-group share, truncated share every
  step under `pxr/`, in `pxr.metrics`' vocabulary; TRL's `tools/*` figures are the episode's counts (TRL counts a
  failure only when a tool raises, and the episode never raises); all to `steps.jsonl` in the run folder.

Tests: tests/test_rl.py (reward path, filtering, GRPO steps on the tiny model, crops in the loss forward),
tests/test_rl_routing.py (what the model receives for every kind of call, truncation, filtering's gradient),
tests/test_rl_dist.py (2 CPU processes give the rewards of 1, and finish when their rollouts differ in turns),
tests/test_trackers.py (report_to, run_name and log_completions reach TRL; TensorBoard events of GRPO steps).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pxr import families, protocol, reward
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.records import STEP_LOG
from pxr.training.rl_env import EpisodeTools, environment_factory, rl_dataset, route_tool_calls
from pxr.training.rl_generation import VLLM_SETTINGS, prompt_chunks, vllm_image_limit
from pxr.training.sft import checkpointing_setting

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is marked experimental in TRL 1.16


# ------------------------------------------------------------------------------------------------ prompt rendering


def use_protocol_schemas(processor, variant: str = "pixel", family: str = families.DEFAULT_FAMILY) -> None:
    """Make `processor.apply_chat_template` render `protocol.tool_schemas(variant, family)`, in the protocol's
    order, for tools given as callables (TRL lists an environment's methods alphabetically: `select_frames` first)."""
    if getattr(processor.apply_chat_template, "pxr_variant", None) == (variant, family):
        return
    original = getattr(processor.apply_chat_template, "pxr_original", processor.apply_chat_template)
    schemas = {schema["function"]["name"]: schema for schema in protocol.tool_schemas(variant, family)}
    order = {name: k for k, name in enumerate(schemas)}

    def apply_chat_template(*args, tools=None, **kwargs):
        if tools:
            tools = [schemas.get(getattr(tool, "__name__", None), tool) if callable(tool) else tool for tool in tools]
            tools = sorted(tools, key=lambda t: order.get(t.get("function", {}).get("name"), len(order)))
        return original(*args, tools=tools, **kwargs)

    apply_chat_template.pxr_variant, apply_chat_template.pxr_original = (variant, family), original
    processor.apply_chat_template = apply_chat_template


# --------------------------------------------------------------------------------------------------- the reward


def _process_state():
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def _gather(items: list) -> list:
    """Every process's items, in process order (`accelerate.utils.gather_object`); the items themselves with one."""
    _, processes = _process_state()
    if processes == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def rollout_facts(environment, completion: list[dict], truncated: bool) -> dict[str, Any]:
    """What the reward needs of one finished rollout: its correctness and its episode record, from what reached the
    model (the tool messages TRL kept in the completion)."""
    final = next((m for m in reversed(completion) if m.get("role") == "assistant"), None)
    delivered = sum(m.get("role") == "tool" for m in completion)
    record = environment._close(final, truncated=truncated, delivered=delivered)
    query = environment.query
    text = (final or {}).get("content") or ""
    correct = reward.answer_correct(record["ending"], text, query.answer, options=query.options)
    return {"qid": query.qid, "is_video": query.is_video, "correct": float(correct), "record": record}


def score_groups(facts: list[dict], group_size: int, reward_config: RewardConfig) -> list[dict[str, float]]:
    """Shaped rewards and their parts for consecutive groups of `group_size` rollouts (the gathered batch)."""
    if len(facts) % group_size:
        raise ValueError(f"{len(facts)} rollouts do not split into groups of G = {group_size}")
    scored = []
    for start in range(0, len(facts), group_size):
        group = facts[start : start + group_size]
        if len({f["qid"] for f in group}) != 1:
            raise ValueError(f"rollouts {start}..{start + group_size - 1} mix queries: the batch is not grouped by G")
        terms = reward.group_rewards(
            [f["record"] for f in group],
            [f["correct"] for f in group],
            count_failed_ops=reward_config.count_failed_ops,
            zero_if_unfixed_error=reward_config.zero_if_unfixed_error,
            is_video=group[0]["is_video"],
            **reward_config.shaped_kwargs(),
        )
        uniform = len(set(terms.total)) == 1
        for k, f in enumerate(group):
            scored.append(
                {
                    "reward": terms.total[k],
                    "correct": terms.correctness[k],
                    "curiosity": terms.curiosity[k],
                    "penalty": terms.penalty[k],
                    "rapr": terms.rapr,
                    "uniform_group": float(uniform),
                    "truncated": float(f["record"]["ending"] == "truncated"),
                    "ops": float(f["record"]["ops_executed"]),
                    "ops_requested": float(f["record"]["ops_requested"]),
                    "ops_failed": float(f["record"]["ops_failed"]),
                }
            )
    return scored


def batch_metrics(scored: list[dict[str, float]], group_size: int) -> dict[str, float]:
    """The step's figures over the whole gathered batch, in `pxr.metrics`' vocabulary."""
    n = len(scored)
    requested = sum(s["ops_requested"] for s in scored)
    return {
        "accuracy": sum(s["correct"] for s in scored) / n,
        "rapr": sum(s["ops"] > 0 for s in scored) / n,
        "mean_ops": sum(s["ops"] for s in scored) / n,
        "calls_per_rollout": requested / n,
        "op_error_rate": sum(s["ops_failed"] for s in scored) / requested if requested else 0.0,
        "curiosity_mean": sum(s["curiosity"] for s in scored) / n,
        "penalty_mean": sum(s["penalty"] for s in scored) / n,
        "reward_mean": sum(s["reward"] for s in scored) / n,
        "filtered_group_share": sum(s["uniform_group"] for s in scored[::group_size]) / (n // group_size),
        "truncated_share": sum(s["truncated"] for s in scored) / n,
    }


def make_reward_function(reward_config: RewardConfig, group_size: int, end_token_ids):
    """The reward TRL calls once per generation batch with every local rollout (`environments` included).

    `end_token_ids`: tokens a turn may end with (end of turn, `</tool_call>`); a completion ending otherwise was cut
    by the length limit and is truncated (reward 0; masked when `mask_truncated`). The last call's per-rollout parts
    stay on `.last` and the gathered batch's figures on `.last_batch`, for the trainer.
    """
    end_ids = set(end_token_ids)

    def pixel_reasoner_reward(prompts, completions, completion_ids, environments=None, log_metric=None, **_):
        if environments is None:
            raise ValueError("the pixel-reasoner reward needs TRL's environment_factory (pxr.training.rl_env)")
        local = [
            rollout_facts(env, completion, truncated=bool(ids) and ids[-1] not in end_ids)
            for env, completion, ids in zip(environments, completions, completion_ids, strict=True)
        ]
        gathered = _gather(local)
        scored = score_groups(gathered, group_size, reward_config)
        rank, _ = _process_state()
        offset = rank * len(local)  # TRL gives every process the same number of rollouts
        mine = scored[offset : offset + len(local)]
        pixel_reasoner_reward.last = mine
        pixel_reasoner_reward.last_batch = batch_metrics(scored, group_size)
        if log_metric is not None:
            for name, value in pixel_reasoner_reward.last_batch.items():
                log_metric(f"pxr/{name}", value)
        return [s["reward"] for s in mine]

    pixel_reasoner_reward.last, pixel_reasoner_reward.last_batch = [], {}
    return pixel_reasoner_reward


# ------------------------------------------------------------------------------------------------- the trainer


class StepLog:
    """A `TrainerCallback` writing every logged step to `steps.jsonl`; on resume, lines past the checkpoint go."""

    def __new__(cls, path):
        from transformers import TrainerCallback

        class _StepLog(TrainerCallback):
            def __init__(self, path):
                self.path = Path(path)

            def on_train_begin(self, args, state, control, **kwargs):
                if state.is_world_process_zero and self.path.exists():
                    kept = [line for line in read_step_log(self.path) if line["step"] <= state.global_step]
                    self.path.write_text("".join(json.dumps(line) + "\n" for line in kept))

            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.is_world_process_zero and logs:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    with self.path.open("a") as f:
                        f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

        return _StepLog(path)


def read_step_log(path) -> list[dict[str, Any]]:
    """The step log's entries, a half-written last line (a crash mid-write) skipped."""
    entries = []
    for line in Path(path).read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


# Loss aggregations whose normaliser counts rollouts, not tokens: masking a rollout leaves it in the denominator.
ROLLOUT_NORMALISED_LOSSES = ("grpo", "dr_grpo")


def mask_after_observation(tool_mask: list[int], completion_mask: list[int], observations: int) -> list[int]:
    """`tool_mask` with every token after the `observations`-th observation (a run of 0s) set to 0: what the model
    wrote after its episode ended, which evaluation never generates."""
    masked, runs, inside = list(tool_mask), 0, False
    for t, (tool, real) in enumerate(zip(tool_mask, completion_mask, strict=True)):
        if not real:
            continue
        if tool == 0 and not inside:
            runs, inside = runs + 1, True
        elif tool == 1:
            inside = False
            if runs >= observations:
                masked[t] = 0
    return masked


def content_as_parts(messages):
    """A conversation whose every message content is a list of parts: a tool turn's content is already one (the crop
    and its text), the assistant's a plain string, and pyarrow cannot hold both in one column of TRL's table of logged
    completions (`log_completions`)."""
    if not isinstance(messages, list):
        return messages
    return [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m.get("content"), str) else m
            for m in messages]  # fmt: skip


def _trainer_class():
    from trl import GRPOTrainer

    from pxr.training.checkpoints import FromPretrainedResume

    class PixelReasonerGRPOTrainer(FromPretrainedResume, GRPOTrainer):
        """GRPO whose tool calls are the episode's, with pxr's group filtering and truncation masking (paper §4; README "Curiosity-driven RL")."""

        def __init__(self, *args, filter_uniform_groups: bool = True, mask_truncated: bool = True,
                     generation_micro_batch_size: int = 0, vllm_max_images_per_prompt: int = 0, **kwargs):  # fmt: skip
            with vllm_image_limit(vllm_max_images_per_prompt):  # TRL builds its colocated vLLM engine in here
                super().__init__(*args, **kwargs)
            self.filter_uniform_groups, self.mask_truncated = filter_uniform_groups, mask_truncated
            self.generation_micro_batch_size = generation_micro_batch_size

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):
            # TRL's transformers path generates all of a process's rollouts in one `generate` call (it leaves scale
            # to vLLM); cut into micro-batches, the KV cache is that of one micro-batch (`pxr.training.rl_generation`).
            if self.use_vllm or self.use_transformers_continuous_batching:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, *args,
                                                     **kwargs)  # fmt: skip
            completion_ids = []
            for chunk in prompt_chunks(prompt_ids, images, multimodal_fields, self.generation_micro_batch_size):
                ids, _ = super()._generate_single_turn(*chunk, num_generations, *args, **kwargs)
                completion_ids.extend(ids)
            return completion_ids, None  # the transformers path has no sampling logprobs

        def _tokenize_prompts(self, prompts):
            # With environments, TRL 1.16 renders each prompt without return_tensors and keeps the image fields as
            # lists; its tool loop then fails (`image_grid_thw.prod`) on a turn whose tool results hold no image
            # (every call failed). Tensors here are what its batched path produces.
            prompt_ids, images, fields = super()._tokenize_prompts(prompts)
            for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
                if key in fields and not isinstance(fields[key], torch.Tensor):
                    fields[key] = torch.as_tensor(np.asarray(fields[key]))
            return prompt_ids, images, fields

        def _tool_call_loop(self, prompts, *args, **kwargs):
            # Every routed turn goes to its rollout's environment, whatever name TRL read (`pxr.training.rl_env`).
            self._sync_tool_dicts = [EpisodeTools(environment) for environment in self.environments]
            self._async_tool_dicts = [{} for _ in self.environments]
            return super()._tool_call_loop(prompts, *args, **kwargs)

        def _get_tool_suffix_ids(self, tool_messages):
            suffix = super()._get_tool_suffix_ids(tool_messages)
            if getattr(tool_messages[0]["content"], "needs_end_of_turn", False):
                # Generation stopped at `</tool_call>`; the template closes the assistant turn before the tool turn.
                suffix = [self._tokenizer.eos_token_id, *suffix]
            return suffix

        def log(self, logs, start_time=None):
            if self.log_completions:  # TRL writes the logged rollouts to a parquet table: one content type a column
                for key in ("prompt", "completion"):
                    for i, messages in enumerate(self._logs[key]):
                        self._logs[key][i] = content_as_parts(messages)
            super().log(logs, start_time)

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            function = self.reward_funcs[0]
            scored, figures = function.last, function.last_batch
            mode = "train" if self.model.training else "eval"
            # TRL counts a failed call only when a tool raises; the episode never raises: report its counts.
            if self._metrics[mode]["tools/call_frequency"]:
                self._metrics[mode]["tools/call_frequency"][-1] = figures["calls_per_rollout"]
                self._metrics[mode]["tools/failure_frequency"][-1] = figures["op_error_rate"]
            keep = torch.tensor(
                [
                    not (self.filter_uniform_groups and s["uniform_group"])
                    and not (self.mask_truncated and s["truncated"])
                    for s in scored
                ],
                device=output["completion_mask"].device,
                dtype=output["completion_mask"].dtype,
            )
            tool_mask = output.get("tool_mask", torch.ones_like(output["completion_mask"]))
            tool_mask = self._mask_after_episode_end(tool_mask, output["completion_mask"])
            output["tool_mask"] = tool_mask * keep[:, None]  # tool_mask only enters the loss mask
            loss_tokens = (output["completion_mask"] * output["tool_mask"]).sum()
            output["num_items_in_batch"] = self.accelerator.gather(loss_tokens).sum()
            kept = self.accelerator.gather(keep.float().sum().reshape(1)).sum()
            total = self.accelerator.gather(torch.tensor([float(len(keep))], device=keep.device)).sum()
            output["rollout_loss_scale"] = (total / kept).detach() if kept > 0 else kept * 0.0
            self._metrics[mode]["pxr/rollouts_in_loss_share"].append((kept / total).item())
            return output

        def _mask_after_episode_end(self, tool_mask, completion_mask):
            if all(environment.ended_at_turn is None for environment in self.environments):
                return tool_mask  # no limit ended an episode mid-rollout (the common case)
            rows = tool_mask.tolist()
            for i, environment in enumerate(self.environments):
                if environment.ended_at_turn is not None:
                    rows[i] = mask_after_observation(rows[i], completion_mask[i].tolist(), environment.ended_at_turn)
            return torch.tensor(rows, device=tool_mask.device, dtype=tool_mask.dtype)

        def _compute_loss(self, model, inputs):
            scale = inputs.get("rollout_loss_scale")
            loss = super()._compute_loss(model, {k: v for k, v in inputs.items() if k != "rollout_loss_scale"})
            if scale is not None and self.loss_type in ROLLOUT_NORMALISED_LOSSES:
                loss = loss * scale  # the filtered rollouts leave the normaliser, as if dropped from the batch
            return loss

    return PixelReasonerGRPOTrainer


def end_token_ids(processor, model) -> list[int]:
    """Tokens a completed turn ends with (the generation config's eos tokens and the pad token)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if i is not None)


def tool_call_close_id(processor) -> int | None:
    """The token id of `</tool_call>` when it is one token (Qwen's tokenizers and the tiny model's), else None."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = tokenizer.encode(protocol.TOOL_CALL_CLOSE, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def stop_generation_kwargs(end_ids: list[int], close_id: int | None, *, use_vllm: bool) -> dict[str, Any]:
    """Generation settings that end a turn at `</tool_call>` as the rollout engine of evaluation does (its stop
    string), so a turn holds at most one call and nothing after it. vLLM takes it as a stop token (kept in the
    output, as eos is); transformers' generate as one more eos id."""
    if close_id is None:
        return {}
    if use_vllm:
        return {"stop_token_ids": [close_id]}
    return {"eos_token_id": [*end_ids, close_id]}


def grpo_args(rl_config: RLConfig, output_dir, *, episode_config: EpisodeConfig | None = None,
              generation_kwargs: dict | None = None) -> Any:  # fmt: skip
    """TRL's `GRPOConfig` for an `RLConfig`. The episode's limits end a rollout (TRL's cap on tool turns is set to
    the episode's `max_turns`, which the episode reaches first)."""
    from trl import GRPOConfig

    c = rl_config
    episode_config = episode_config or EpisodeConfig()
    return GRPOConfig(
        output_dir=str(output_dir),
        learning_rate=c.learning_rate,
        lr_scheduler_type=c.lr_scheduler_type,
        warmup_steps=float(c.warmup_ratio),  # transformers 5 reads a float in [0, 1) as the warm-up ratio
        num_generations=c.num_generations,
        per_device_train_batch_size=c.per_device_train_batch_size,
        gradient_accumulation_steps=c.gradient_accumulation_steps,
        steps_per_generation=c.updates_per_generation * c.gradient_accumulation_steps,  # TRL counts micro-steps
        num_iterations=c.num_iterations,
        max_steps=c.max_steps,
        save_strategy="steps",
        save_steps=c.save_steps,
        temperature=c.temperature,
        beta=c.kl_coef,
        epsilon=c.clip_low,
        epsilon_high=c.clip_high,
        loss_type=c.loss_type,
        scale_rewards=c.scale_rewards,
        max_completion_length=c.max_completion_length,
        max_tool_calling_iterations=episode_config.max_turns,
        mask_truncated_completions=False,  # pxr masks truncated rollouts itself (it also knows the episode limits)
        use_vllm=c.use_vllm,
        vllm_importance_sampling_correction=c.vllm_importance_sampling_correction,
        **{name: getattr(c, name) for name in VLLM_SETTINGS},
        generation_kwargs=generation_kwargs or None,
        bf16=c.bf16,
        **checkpointing_setting(c.gradient_checkpointing),
        use_cpu=not torch.cuda.is_available(),
        logging_steps=c.logging_steps,
        seed=c.seed,
        report_to=c.report_to,
        run_name=c.run_name or None,
        log_completions=c.log_completions,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def trainer_args(rl_config: RLConfig, output_dir, episode_config: EpisodeConfig) -> Any:
    """The trainer's `GRPOConfig` (checkpoints under `output_dir/checkpoints`), built before the model is loaded:
    under DeepSpeed ZeRO-3 creating it registers the DeepSpeed config with transformers, so that `from_pretrained`
    loads every process's shard only. `make_trainer` adds the model's stop tokens to it."""
    return grpo_args(rl_config, Path(output_dir) / "checkpoints", episode_config=episode_config)


def check_generation_collectives(trainer, rl_config: RLConfig) -> None:
    """Refuse sharded weights (DeepSpeed ZeRO-3, FSDP) without vLLM on several processes: every `generate` call then
    gathers the shards with a collective, and processes whose rollouts take different numbers of tool turns make
    different numbers of calls, so one waits for the others forever."""
    if rl_config.use_vllm or trainer.accelerator.num_processes < 2:
        return
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    zero3 = plugin is not None and getattr(plugin, "zero_stage", 0) == 3
    if zero3 or getattr(trainer, "is_fsdp_enabled", False):
        sharding = "DeepSpeed ZeRO-3" if zero3 else "FSDP"
        raise ValueError(
            f"{sharding} without vLLM can hang in RL: each generation round gathers the sharded weights on every "
            "process, and rollouts that take different numbers of tool turns make different numbers of rounds. "
            "Set use_vllm: true (colocate or server), or train with DDP or ZeRO-2 "
            "(accelerate_config: configs/accelerate/ddp_8gpu.yaml)."
        )


def make_trainer(
    model,
    processor,
    queries,
    *,
    data_root,
    output_dir,
    episode_config: EpisodeConfig,
    reward_config: RewardConfig,
    rl_config: RLConfig,
    step_log=None,
    args=None,
):
    """A `PixelReasonerGRPOTrainer` on `queries` (`pxr.data.RLQuery`, paths under `data_root`).

    LoRA (`rl_config.lora_rank` > 0) adapts the language model only; the vision tower is frozen unless
    `rl_config.freeze_vision` is false. `step_log`: where the per-step JSONL goes (default `output_dir/steps.jsonl`).
    `args`: `trainer_args(...)` made before the model was loaded (ZeRO-3), or None to make them here.
    """
    from pxr import models
    from pxr.training.sft import freeze_vision_tower

    if not queries:
        raise ValueError("no RL queries: run notebook 10 (export_queries) or give a query file")
    if rl_config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ValueError("use_vllm needs vLLM installed (GPU servers); without it, set use_vllm: false")
    use_protocol_schemas(processor, episode_config.prompt, episode_config.family)
    ends, close = end_token_ids(processor, model), tool_call_close_id(processor)
    route_tool_calls(getattr(processor, "tokenizer", processor), ends)
    peft_config = models.lora_config(rank=rl_config.lora_rank) if rl_config.lora_rank else None
    if rl_config.freeze_vision:
        freeze_vision_tower(model)
    model.train()
    output_dir = Path(output_dir)
    reward_function = make_reward_function(reward_config, rl_config.num_generations, ends + ([close] if close else []))
    if args is None:
        args = trainer_args(rl_config, output_dir, episode_config)
    args.generation_kwargs = {**(args.generation_kwargs or {}),
                              **stop_generation_kwargs(ends, close, use_vllm=rl_config.use_vllm)} or None  # fmt: skip
    trainer = _trainer_class()(
        model=model,
        reward_funcs=[reward_function],
        args=args,
        train_dataset=rl_dataset(list(queries)),
        processing_class=processor,
        peft_config=peft_config,
        environment_factory=environment_factory(episode_config, data_root),
        callbacks=[StepLog(step_log or output_dir / STEP_LOG)],
        filter_uniform_groups=rl_config.filter_uniform_groups,
        mask_truncated=rl_config.mask_truncated,
        generation_micro_batch_size=rl_config.generation_micro_batch_size,
        vllm_max_images_per_prompt=rl_config.vllm_max_images_per_prompt,
    )
    check_generation_collectives(trainer, rl_config)
    return trainer


def train(trainer):
    """`trainer.train()`, resuming from the last checkpoint; a finished run takes no extra step (`pxr.training.checkpoints`)."""
    from pxr.training.checkpoints import train_resuming

    return train_resuming(trainer)


def step_series(entries: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one logged figure, for `pxr.viz.curves`."""
    return [(e["step"], e[key]) for e in entries if e.get(key) is not None]


def save_policy(trainer, processor, path) -> Path:
    """The trained policy as a self-contained checkpoint `load_model(path)` reads. LoRA is merged into the weights
    (later stages load plain checkpoints); full weights go through `trainer.save_model`, which every process must
    call (under ZeRO-3 it gathers the shards); only the main process writes."""
    path = Path(path)
    if hasattr(trainer.model, "merge_and_unload"):  # peft
        if trainer.is_world_process_zero():
            trainer.model.merge_and_unload().save_pretrained(str(path))
    else:
        trainer.save_model(str(path))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(path))
    return path
