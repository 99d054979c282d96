"""Configuration dataclasses built from a notebook's parameters: frozen, validated, printed at the top of every
executed notebook.

`EpisodeConfig` holds the op limits and pixel budgets every stage shares (the operations of paper §2): the same values
reach synthesis, the rollout engine, the training forward and evaluation. `from_params` builds any of these
dataclasses from a notebook's parameter namespace, taking the names that are its fields.

Tests: tests/test_config.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from pxr import families, ops, protocol

TILE = 28 * 28  # pixels per visual token of Qwen2.5-VL; the budgets below are counted in tiles

T = TypeVar("T")


def from_params(cls: type[T], params: dict[str, Any], **overrides) -> T:
    """`cls` built from the entries of `params` that are its fields (a notebook passes `globals()`)."""
    names = {f.name for f in fields(cls)}
    return cls(**{**{k: v for k, v in params.items() if k in names}, **overrides})


@dataclass(frozen=True)
class EpisodeConfig:
    """Limits and pixel budgets of an episode: one set for training rollouts, one for evaluation (the released code
    has both too). Each set is one value per budget for every consumer, rollouts and the training forward alike: the
    released code set the rollout engine's minimum pixels apart from the learner's processor, so the two could resize
    a small image differently.

    Defaults are small, for CPU smoke runs; `params/*/paper.yaml` holds the paper's values.
    """

    prompt: str = "pixel"  # prompt variant; "text" disables ops
    max_ops: int = 4  # executed ops per episode; the next call ends it (reason "max_ops")
    max_images: int = 16  # images the list may hold; a video's frames count as one (the one visual input)
    max_tokens: int | None = None  # total token budget, enforced by the rollout engine through `finish`
    max_turns: int = 12  # assistant turns; a call on the last one ends the episode (bounds failing calls too)
    max_selected_frames: int = 8  # frames one select_frames call may return
    zoom_padding: float = 0.1  # each box side grows by this fraction of the image size (paper: 0.1)
    min_crop_size: int = 28  # smallest crop side in source pixels
    image_min_pixels: int = 4 * TILE  # query images
    image_max_pixels: int = 256 * TILE  # 448x448: the query budget at which small detail is unreadable
    crop_min_pixels: int = 4 * TILE
    crop_max_pixels: int = 256 * TILE
    frame_min_pixels: int = 4 * TILE  # selected frames and the video's frames
    frame_max_pixels: int = 64 * TILE  # frames returned by select_frames
    video_frame_max_pixels: int = 16 * TILE  # the video's frames as first shown (16 frames x 16 tokens)
    video_num_frames: int = 16  # frames sampled uniformly when a video is given as a file
    patch_factor: int = ops.QWEN25_PATCH_FACTOR  # budgets are rounded to this grid (28 for Qwen2.5-VL)
    blank_observations: bool = False  # eval control: ops execute but return blank images of the same size
    video_input: str = "frames"  # frames (numbered images) | video (one video item: pixel-reasoner-v1) | auto
    model_family: str = "auto"  # boxes: qwen2.5-vl (pixels as shown), qwen3-vl (0-1000), auto (by patch_factor)

    def __post_init__(self):
        protocol.check_variant(self.prompt)
        for name in (
            "max_ops",
            "max_images",
            "max_turns",
            "max_selected_frames",
            "min_crop_size",
            "patch_factor",
            "video_num_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.zoom_padding < 0:
            raise ValueError(f"zoom_padding must be >= 0, got {self.zoom_padding}")
        for kind in ("image", "crop", "frame"):
            lo, hi = getattr(self, f"{kind}_min_pixels"), getattr(self, f"{kind}_max_pixels")
            if not 0 < lo <= hi:
                raise ValueError(f"{kind}_min_pixels ({lo}) must be positive and <= {kind}_max_pixels ({hi})")
        if self.model_family != "auto":
            families.get_family(self.model_family)
        else:
            families.family_for_patch_factor(self.patch_factor)
        if self.video_input not in (*protocol.VIDEO_INPUTS, "auto"):
            raise ValueError(f"video_input must be frames, video or auto, got {self.video_input!r}")
        if self.video_input == "video" and self.prompt == "pixel":  # text: no ops, so no numbers to keep
            raise ValueError(
                "video_input 'video' belongs to prompt pixel-reasoner-v1 (the released format); pxr's prompts "
                "number the frames: use frames"
            )
        if self.video_frame_max_pixels < self.frame_min_pixels:
            raise ValueError("video_frame_max_pixels must be >= frame_min_pixels")

    @property
    def family(self) -> str:
        """The model family whose box convention episodes speak: `model_family`, or under "auto" the family that
        sees images on `patch_factor` (`pxr.models.load_model` checks it against the model's config)."""
        if self.model_family != "auto":
            return self.model_family
        return families.family_for_patch_factor(self.patch_factor)


@dataclass(frozen=True)
class RewardConfig:
    """The curiosity-driven reward (paper §4, eq. of r'; the released code's variants in `pxr.reward`);
    `shaped_kwargs()` feeds `pxr.reward.shaped_rewards`."""

    curiosity_target_rate: float = 0.3  # H: RaPR below which pixel-space rollouts earn a bonus
    curiosity_coef: float = 0.5  # α (0 = the paper's "RL without curiosity" ablation)
    penalty_free_ops: int = 1  # N: ops per rollout before the penalty starts
    penalty_coef: float = 0.05  # β (0 = no penalty)
    reward_form: str = "paper"  # "paper" | "released" (the released code's 0.25/RaPR scaling)
    count_failed_ops: bool = False  # n_vo and 1_PR count failed calls too (as the released code did)
    zero_if_unfixed_error: bool = False  # a correct answer after a failed, never retried op scores 0

    def __post_init__(self):
        if self.reward_form not in ("paper", "released"):
            raise ValueError(f"reward_form must be 'paper' or 'released', got {self.reward_form!r}")
        if not 0.0 <= self.curiosity_target_rate <= 1.0:
            raise ValueError(f"curiosity_target_rate (H) must lie in [0, 1], got {self.curiosity_target_rate}")
        if self.curiosity_coef < 0 or self.penalty_coef < 0 or self.penalty_free_ops < 0:
            raise ValueError("curiosity_coef, penalty_coef and penalty_free_ops must be >= 0")

    def shaped_kwargs(self) -> dict[str, Any]:
        return {
            "target_rate": self.curiosity_target_rate,
            "max_ops": self.penalty_free_ops,
            "curiosity_coef": self.curiosity_coef,
            "penalty_coef": self.penalty_coef,
            "form": self.reward_form,
        }


LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("none", "group", "batch")
VLLM_MODES = ("colocate", "server")
VLLM_MODEL_IMPLS = ("vllm", "transformers")


@dataclass(frozen=True)
class RLConfig:
    """GRPO over multi-turn episodes (paper §4); `pxr.training.rl.grpo_args` turns it into TRL's `GRPOConfig`.

    Defaults are smoke-sized; `params/30_train_rl/paper.yaml` holds the paper's values. One optimizer step sees
    `per_device_train_batch_size × gradient_accumulation_steps × processes` rollouts (a multiple of G); one
    generation batch is `updates_per_generation` times that, i.e. that many / G queries.
    """

    num_generations: int = 4  # G: rollouts per query (paper: 8)
    learning_rate: float = 1e-5  # paper: 1e-6
    lr_scheduler_type: str = "cosine"  # paper: cosine
    warmup_ratio: float = 0.03  # paper: 3 %
    temperature: float = 1.0  # sampling temperature of the rollouts (paper: 1.0)
    kl_coef: float = 0.0  # KL penalty to the reference model (paper: 0; TRL's beta)
    clip_low: float = 0.2  # PPO clip ε_low
    clip_high: float = 0.2  # PPO clip ε_high (DAPO's clip-higher when > clip_low)
    loss_type: str = "dapo"  # loss aggregation over tokens: grpo, bnpo, dr_grpo, dapo
    scale_rewards: str = "none"  # advantage = r' − group mean; "group" also divides by the group std
    max_completion_length: int = 256  # every completion token, observation and image tokens included
    per_device_train_batch_size: int = 4  # rollouts per device per micro-step (a multiple of G overall)
    gradient_accumulation_steps: int = 1
    updates_per_generation: int = 1  # optimizer steps per generation batch (paper: 512 × 8 / 256 rollouts = 16)
    num_iterations: int = 1  # μ: updates per generation batch
    max_steps: int = 2  # optimizer steps
    save_steps: int = 50  # checkpoint every N steps (resume picks up the last one)
    filter_uniform_groups: bool = True  # drop groups whose rewards are all equal from the loss (paper)
    mask_truncated: bool = True  # truncated rollouts (cut by the length limit) leave the loss
    freeze_vision: bool = True  # keep the vision tower frozen
    lora_rank: int = 0  # 0 = full fine-tuning; > 0: LoRA of this rank on the language model
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_vllm: bool = False  # generate with vLLM (GPU servers where it is installed)
    # TRL's truncated importance-sampling correction of vLLM's sampling logprobs (on by default in TRL, not in the
    # paper's algorithm): off unless asked for, and recorded with the run's parameters.
    vllm_importance_sampling_correction: bool = False
    # vLLM's engine, in TRL GRPOConfig's names and defaults. Colocate: vLLM shares each training GPU and takes
    # `vllm_gpu_memory_utilization` of it; server: `trl vllm-serve` on GPUs of its own (README "RL on 8 GPUs"),
    # which takes its memory share and tensor parallelism on its own command line.
    vllm_mode: str = "colocate"  # colocate | server
    vllm_server_base_url: str | None = None  # server mode: e.g. http://10.0.0.2:8000 (overrides host and port)
    vllm_server_host: str = "0.0.0.0"  # server mode
    vllm_server_port: int = 8000  # server mode
    vllm_gpu_memory_utilization: float = 0.3  # colocate: share of each GPU's memory vLLM takes
    vllm_tensor_parallel_size: int = 1  # colocate: GPUs one vLLM engine spans (divides the process count)
    vllm_max_model_length: int | None = None  # context window; None: the model config's
    vllm_enable_sleep_mode: bool = False  # colocate: vLLM frees its weights and cache during the update
    vllm_model_impl: str = "vllm"  # vllm | transformers (whose model code vLLM runs)
    # Images one rollout may show vLLM (its limit_mm_per_prompt); 0: vLLM's own default (999 in vLLM V1). TRL does
    # not pass it: pxr gives it to the colocated engine; a server takes it on its command line.
    vllm_max_images_per_prompt: int = 0
    # Without vLLM: rollouts per transformers `generate` call (0 = all of a process's generation batch at once);
    # the KV cache is that of this many rollouts (benchmarks/rl_memory.py sizes it).
    generation_micro_batch_size: int = 0
    logging_steps: int = 1
    seed: int = 0
    report_to: str = "none"  # experiment trackers (transformers' report_to): none, tensorboard, wandb, trackio, ...
    run_name: str = ""  # the run's name in the trackers; notebook 30 sets <stage>/<run>
    # TRL logs a sample of rollouts every logging step: a parquet table under the checkpoints, printed when `rich` is
    # installed, and a table in wandb or trackio when they are among the trackers.
    log_completions: bool = False

    def __post_init__(self):
        if self.num_generations < 2:
            raise ValueError(f"num_generations (G) must be >= 2 for group advantages, got {self.num_generations}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {self.scale_rewards!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.clip_high < self.clip_low:
            raise ValueError(f"clip_high ({self.clip_high}) must be >= clip_low ({self.clip_low})")
        for name in (
            "max_completion_length",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "updates_per_generation",
            "num_iterations",
            "max_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self._check_vllm_and_generation()

    def _check_vllm_and_generation(self):
        if self.vllm_mode not in VLLM_MODES:
            raise ValueError(f"vllm_mode must be one of {', '.join(VLLM_MODES)}, got {self.vllm_mode!r}")
        if self.vllm_model_impl not in VLLM_MODEL_IMPLS:
            impls = ", ".join(VLLM_MODEL_IMPLS)
            raise ValueError(f"vllm_model_impl must be one of {impls}, got {self.vllm_model_impl!r}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            share = self.vllm_gpu_memory_utilization
            raise ValueError(f"vllm_gpu_memory_utilization is a share of GPU memory in (0, 1], got {share}")
        if not 0 < self.vllm_server_port < 65536:
            raise ValueError(f"vllm_server_port must lie in 1..65535, got {self.vllm_server_port}")
        url = self.vllm_server_base_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"vllm_server_base_url must start with http:// or https://, got {url!r}")
        if self.vllm_tensor_parallel_size < 1:
            raise ValueError(f"vllm_tensor_parallel_size must be >= 1, got {self.vllm_tensor_parallel_size}")
        if self.vllm_max_model_length is not None and self.vllm_max_model_length <= self.max_completion_length:
            raise ValueError(
                f"vllm_max_model_length ({self.vllm_max_model_length}) must hold a prompt and max_completion_length "
                f"({self.max_completion_length}): raise it, or set it to null (the model's context window)"
            )
        if self.vllm_max_images_per_prompt < 0:
            raise ValueError(f"vllm_max_images_per_prompt must be >= 0 (0 = vLLM's default), "
                             f"got {self.vllm_max_images_per_prompt}")  # fmt: skip
        if self.generation_micro_batch_size < 0:
            raise ValueError(f"generation_micro_batch_size must be >= 0 (0 = all rollouts in one call), "
                             f"got {self.generation_micro_batch_size}")  # fmt: skip
