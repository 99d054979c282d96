"""Memory one GPU needs for an RL run (paper §4's GRPO at the 7B config), computed from the model's config before
anything is launched: weights, gradients, optimizer states, the KV cache of the rollouts generated together, and
the activations of one training micro-batch.

The parts, per GPU, in bytes:
- weights: parameters × bytes of the stored dtype (fp32 master weights with bf16 autocast, pxr's RL jobs; or bf16);
  ZeRO-3 keeps 1/gpus of them, and gathers them whole for transformers' `generate` (TRL's ds3 gather).
- gradients: trainable parameters × the weights' bytes; ZeRO-2 and 3 keep 1/gpus.
- optimizer: AdamW's two moments (fp32: 8 bytes a trainable parameter), plus an fp32 master copy when the weights
  are bf16 and the moments fp32 (DeepSpeed's bf16 mode); ZeRO-1 and above keep 1/gpus.
- KV cache of one rollout: layers × 2 (keys, values) × kv_heads × head_dim × tokens × bytes (bf16 under autocast);
  the generation holds that of `generation_micro_batch_size` rollouts at once (0: the process's whole generation
  batch, `per_device_train_batch_size × gradient_accumulation_steps × updates_per_generation`).
- activations of one training micro-batch (b rollouts of s tokens, hidden h, L layers, vocabulary V): the per-layer
  estimate of Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", Eq. 2
  without the attention-score term, which SDPA/flash attention do not store): 34·s·b·h bytes a layer at 16 bits;
  with gradient checkpointing, each layer keeps its 2·s·b·h-byte input and one layer is recomputed whole. Plus the
  logits the loss reads, the completion's only (TRL's `logits_to_keep`): c·b·V in bf16 and one fp32 copy for the
  log-softmax (6 bytes an entry, c = max_completion_length + 1). The vision tower's
  activations are left out (a few hundred visual tokens per image against thousands of text tokens).
Generation and the loss forward do not overlap (TRL generates, then trains), so the peak is the static part plus
the larger of the two.

Parameter counts come from the model built on the meta device (no memory, no download), so they are exact.

Tests: tests/test_rl_memory.py (parameter counts equal the built model's, the KV cache formula equals a real
generation's cache on the tiny model, the paper's 512 rollouts at once need ~290 GiB of KV cache, and
params/30_train_rl/paper.yaml's micro-batch fits an 80 GB GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PIXELS_PER_VISUAL_TOKEN = 28 * 28  # Qwen2.5-VL: one token per 28x28 pixels after the 2x2 merge


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on: parameter counts and the language model's sizes."""

    parameters: int
    vision_parameters: int
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim: int
    vocab_size: int

    @property
    def kv_bytes_per_token_element(self) -> int:
        """Elements of the KV cache a token adds (keys and values of every layer)."""
        return self.layers * 2 * self.kv_heads * self.head_dim


def model_shape(size: str, tokenizer=None) -> ModelShape:
    """The shape of `pxr.models.MODEL_SIZES[size]` (7b: Qwen2.5-VL-7B's config), built on the meta device.
    `tokenizer`: the one the model is built with (its length sets the small sizes' vocabulary); by default a
    stand-in of the size's `vocab_size`."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from pxr import models

    spec = models.MODEL_SIZES[size]
    tokenizer = tokenizer or _SizedVocabulary(spec["vocab_size"])
    config = models.model_config(size, tokenizer)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        vision_parameters=sum(p.numel() for p in model.model.visual.parameters()),
        layers=text.num_hidden_layers,
        hidden_size=text.hidden_size,
        kv_heads=text.num_key_value_heads,
        head_dim=head_dim,
        vocab_size=text.vocab_size,
    )


class _SizedVocabulary:
    """Stands in for a tokenizer where `model_config` only needs its length and special-token ids."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        from pxr.models import SPECIAL_TOKENS

        return SPECIAL_TOKENS.index(token)  # where the built tokenizers put them


@dataclass(frozen=True)
class RunShape:
    """The RL settings memory depends on (names as in `pxr.config.RLConfig`), and the machine."""

    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 8
    updates_per_generation: int = 16
    max_completion_length: int = 8192
    prompt_tokens: int = 2400  # image tokens included: a 1,568,000-pixel query is 2,000 visual tokens
    generation_micro_batch_size: int = 0
    weights_dtype: str = "float32"  # pxr's RL jobs load fp32 master weights and train under bf16 autocast
    optimizer_dtype: str = "float32"  # AdamW's moments (bf16 only in benchmarks that keep everything in bf16)
    activation_dtype: str = "bfloat16"
    gradient_checkpointing: bool = True
    freeze_vision: bool = False
    zero_stage: int = 3
    gpus: int = 8

    @property
    def rollouts_per_generation(self) -> int:
        """Rollouts one process generates per generation batch."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.updates_per_generation

    @property
    def rollouts_per_generate_call(self) -> int:
        return self.generation_micro_batch_size or self.rollouts_per_generation

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_completion_length


def estimate(model: ModelShape, run: RunShape) -> dict[str, float]:
    """Bytes per GPU of each part, and the peak (see the module docstring for the formulas)."""
    if run.zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {run.zero_stage}")
    weight_bytes, act_bytes = DTYPE_BYTES[run.weights_dtype], DTYPE_BYTES[run.activation_dtype]
    trainable = model.parameters - (model.vision_parameters if run.freeze_vision else 0)
    shard = {stage: run.gpus if run.zero_stage >= stage else 1 for stage in (1, 2, 3)}
    weights = model.parameters * weight_bytes / shard[3]
    gradients = trainable * weight_bytes / shard[2]
    moment_bytes = DTYPE_BYTES[run.optimizer_dtype]
    master = 4 if weight_bytes < 4 and moment_bytes == 4 else 0  # DeepSpeed's bf16 mode keeps fp32 masters
    optimizer = trainable * (2 * moment_bytes + master) / shard[1]
    kv_per_rollout = model.kv_bytes_per_token_element * run.tokens * act_bytes
    kv_cache = kv_per_rollout * run.rollouts_per_generate_call
    gathered = model.parameters * weight_bytes - weights  # ZeRO-3: the rest of the weights, gathered to generate
    b, s, h, layers = run.per_device_train_batch_size, run.tokens, model.hidden_size, model.layers
    per_layer = 34 * s * b * h * act_bytes / 2
    if run.gradient_checkpointing:
        layer_activations = layers * 2 * s * b * h * act_bytes / 2 + per_layer
    else:
        layer_activations = layers * per_layer
    logits = (run.max_completion_length + 1) * b * model.vocab_size * (act_bytes + 4)  # TRL keeps the completion's
    activations = layer_activations + logits
    static = weights + gradients + optimizer
    generation = kv_cache + gathered
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer states": optimizer,
        "KV cache per rollout": kv_per_rollout,
        "KV cache of one generate call": kv_cache,
        "weights gathered to generate (ZeRO-3)": gathered,
        "activations of one training micro-batch": activations,
        "peak while generating": static + generation,
        "peak while training": static + activations,
        "peak": static + max(generation, activations),
    }


def largest_micro_batch(model: ModelShape, run: RunShape, budget_bytes: float) -> int:
    """The most rollouts per generate call whose peak stays within `budget_bytes` (0 if even one does not)."""
    from dataclasses import replace

    best, size = 0, 1
    while size <= run.rollouts_per_generation:
        if estimate(model, replace(run, generation_micro_batch_size=size))["peak"] > budget_bytes:
            break
        best, size = size, size + 1
    return best


def run_from_params(params: dict, text_tokens: int) -> RunShape:
    """The run a merged params dict describes (`pxr.runner.params.load_params`): its batch sizes, completion length,
    gradient checkpointing, dtype (fp32 master weights, bf16 autocast when `bf16`), ZeRO-3 when the accelerate
    config's name says zero3, the process count; the prompt is the query image's visual tokens plus `text_tokens`."""
    names = {f.name for f in fields(RunShape)}
    run = RunShape(**{k: v for k, v in params.items() if k in names})
    config = str(params.get("accelerate_config", ""))
    image_tokens = int(params.get("image_max_pixels", 256 * PIXELS_PER_VISUAL_TOKEN)) // PIXELS_PER_VISUAL_TOKEN
    return replace(
        run,
        prompt_tokens=image_tokens + text_tokens,
        weights_dtype="float32",  # pxr's RL jobs: fp32 master weights, bf16 autocast when bf16
        activation_dtype="bfloat16" if params.get("bf16") else "float32",
        zero_stage=3 if "zero3" in config else 0,
        gpus=int(params.get("num_processes") or 1),
    )
