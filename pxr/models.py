"""Models: load a Qwen-style VLM and its processor by hub id or local path, build the tiny offline model, LoRA
settings.

`load_model` works the same for `Qwen/Qwen2.5-VL-7B-Instruct`, the released `TIGER-Lab/PixelReasoner-RL-v1` and a
directory written by `build_tiny_model`: it sets the tool-capable chat template (TRL's `qwen3_vl` template, which
TRL's tool parsing and assistant-only masks recognise), left padding for batched generation, and processor pixel
limits wide enough that images the episode already fitted to their budgets pass through unchanged.

Without torchvision (these CPU machines) the stock Qwen-VL processors cannot be built, because they insist on a video
processor; `ImageOnlyProcessor` drops it (video frames go in as images, `pxr.video`) and is registered so that
`AutoProcessor.from_pretrained` finds it (`Qwen3ImageOnlyProcessor` likewise for Qwen3-VL).

Model families (`pxr.families`): the tiny model is built in Qwen2.5-VL's shape or Qwen3-VL's (`family=`), and
`load_model` refuses a checkpoint whose config names another family than the episode settings would read boxes in
(`model_family: auto` follows `patch_factor`; an explicit `model_family` overrides the config).

Tests: tests/test_models.py, tests/test_families.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.utils import is_torchvision_available

from pxr import families, protocol
from pxr.config import EpisodeConfig

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Added as ordinary tokens, as in Qwen, so they survive skip_special_tokens=True and tool calls can be parsed.
TEXT_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
# Qwen's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, newlines, spaces.
QWEN_SPLIT_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Sizes of the offline model. mrope_section must sum to head_dim / 2 (head_dim = hidden / heads).
MODEL_SIZES = {
    "tiny": {  # ~0.8M parameters: unit tests, smoke runs
        "text": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, mrope_section=[4, 6, 6]),
        "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, fullatt_block_indexes=[1]),
        "vocab_size": 2048,
    },
    "small": {  # a few M parameters: the toy reproduction on 2 CPU cores
        "text": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, mrope_section=[8, 12, 12]),
        "vision": dict(depth=4, hidden_size=128, intermediate_size=384, num_heads=4, fullatt_block_indexes=[1, 3]),
        "vocab_size": 4096,
    },
    "medium": {  # ~30M parameters: a larger toy model for a GPU
        "text": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                     num_key_value_heads=4, mrope_section=[8, 12, 12]),
        "vision": dict(depth=6, hidden_size=256, intermediate_size=768, num_heads=4, fullatt_block_indexes=[2, 5]),
        "vocab_size": 4096,
    },
    "7b": {  # Qwen2.5-VL-7B-Instruct's sizes (its config.json), for GPU benchmarks: built in memory by random_model
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, rms_norm_eps=1e-6, mrope_section=[16, 24, 24]),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                       fullatt_block_indexes=[7, 15, 23, 31]),
        "vocab_size": 4096,  # the local tokenizer's; the embedding and LM head have Qwen's 152064 rows
        "embedding_rows": 152064,
        "tie_word_embeddings": False,
        "in_memory_only": True,  # ~8B parameters: saving random weights would write 16-30 GB for nothing
    },
}  # fmt: skip


class ImageOnlyProcessor(Qwen2_5_VLProcessor):
    """A Qwen2.5-VL processor without a video processor, for machines without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        # The attributes a processor saves and reloads are read from this signature: no video_processor here.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class Qwen3ImageOnlyProcessor(Qwen3VLProcessor):
    """The same for Qwen3-VL, whose processor also keeps the ids of the vision start and end tokens."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.vision_start_token, self.vision_end_token = "<|vision_start|>", "<|vision_end|>"
        for name in ("image_token", "video_token", "vision_start_token", "vision_end_token"):
            setattr(self, f"{name}_id", tokenizer.convert_tokens_to_ids(getattr(self, name)))
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


IMAGE_ONLY_PROCESSORS = {"qwen2.5-vl": ImageOnlyProcessor, "qwen3-vl": Qwen3ImageOnlyProcessor}
if not is_torchvision_available():
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyProcessor, exist_ok=True)
    AutoProcessor.register(Qwen3VLConfig, Qwen3ImageOnlyProcessor, exist_ok=True)


def model_family(name_or_path: str | Path) -> str:
    """The family of a checkpoint, from its config's `model_type` (`pxr.families`)."""
    return families.family_of_model_type(AutoConfig.from_pretrained(name_or_path).model_type)


def episode_config_for(name_or_path: str | Path, episode_config: EpisodeConfig) -> EpisodeConfig:
    """The episode settings for a model: its family's patch grid, and its family's box convention unless
    `model_family` names one (the parameter overrides the config). An empty `name_or_path` (a tiny model still to be
    built, or an endpoint) keeps the family the settings name."""
    family = episode_config.family if not name_or_path else model_family(name_or_path)
    chosen = family if episode_config.model_family == "auto" else episode_config.model_family
    return replace(episode_config, model_family=chosen, patch_factor=families.get_family(family).patch_factor)


def tool_chat_template() -> str:
    """TRL's Qwen3-VL template: Hermes tool calls, tool turns that carry images, Qwen2.5-VL's special tokens."""
    from trl.chat_template_utils import qwen3_vl_chat_template

    return qwen3_vl_chat_template


def patch_factor(processor) -> int:
    """Pixels per visual token side: 14-px patches merged 2x2 give 28 (Qwen2/2.5-VL); 16-px patches give 32 (Qwen3-VL)."""
    image_processor = processor.image_processor
    return image_processor.patch_size * image_processor.merge_size


def set_pixel_limits(processor, config: EpisodeConfig) -> None:
    """Processor limits that contain every budget of `config`, so pre-sized images are not resized again (the
    episode already put each image on the 28 px grid inside its own budget)."""
    low = min(config.image_min_pixels, config.crop_min_pixels, config.frame_min_pixels)
    high = max(config.image_max_pixels, config.crop_max_pixels, config.frame_max_pixels, config.video_frame_max_pixels)
    processor.image_processor.size = {"shortest_edge": low, "longest_edge": high}


def lora_config(rank: int = 16, alpha: int = 32, dropout: float = 0.05):
    """LoRA on the language model only: the vision MLP reuses the names gate/up/down_proj, so a plain name list
    would adapt the vision tower too; a pattern on `language_model` keeps it out."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        task_type="CAUSAL_LM",
    )


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | None = None,
    lora=None,
    episode_config: EpisodeConfig | None = None,
):
    """Model and processor by hub id or local directory, ready for pxr's rollouts and trainers.

    Args:
        name_or_path: e.g. "Qwen/Qwen2.5-VL-7B-Instruct", "TIGER-Lab/PixelReasoner-RL-v1", or a local directory.
        dtype: "auto" (the checkpoint's), "bfloat16", "float32", or a torch dtype.
        device: "cpu", "cuda", "cuda:1"; default cuda when available.
        lora: a peft LoraConfig (see `lora_config`) to wrap the model with, or None.
        episode_config: the pixel budgets the processor must admit.
    """
    path = Path(name_or_path)
    if (path.parent != Path(".") or str(name_or_path).startswith((".", "/"))) and not path.exists():
        raise FileNotFoundError(
            f"model path {path} not found: build one with pxr.models.build_tiny_model or give a hub id"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    processor = load_processor(name_or_path)
    episode_config = episode_config or EpisodeConfig()
    if patch_factor(processor) != episode_config.patch_factor:
        raise ValueError(
            f"{name_or_path} sees images on a {patch_factor(processor)} px grid but patch_factor is "
            f"{episode_config.patch_factor}; set patch_factor: {patch_factor(processor)} in the params"
        )
    if episode_config.model_family == "auto" and model_family(name_or_path) != episode_config.family:
        raise ValueError(
            f"{name_or_path} is a {model_family(name_or_path)} model, whose boxes the episodes would read as "
            f"{episode_config.family}'s; set model_family: {model_family(name_or_path)} in the params"
        )
    set_pixel_limits(processor, episode_config)
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=torch_dtype).to(device)
    model.eval()
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    return model, processor


def load_processor(name_or_path: str | Path):
    """The processor with the tool template and left padding; the image-only one where torchvision is missing."""
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (ImportError, AttributeError, ValueError, TypeError):
        # A stock Qwen-VL checkpoint names a processor that needs torchvision (or a tiny model built on a CPU machine
        # names the image-only one on a machine that has torchvision): build the image-only processor directly.
        from transformers import AutoImageProcessor, AutoTokenizer

        processor = IMAGE_ONLY_PROCESSORS[model_family(name_or_path)](
            image_processor=AutoImageProcessor.from_pretrained(name_or_path),
            tokenizer=AutoTokenizer.from_pretrained(name_or_path),
        )
    processor.chat_template = tool_chat_template()
    processor.tokenizer.chat_template = processor.chat_template
    processor.tokenizer.padding_side = "left"
    return processor


# ------------------------------------------------------------------------------------------- the tiny model


def default_corpus(seed: int = 0, n_samples: int = 400) -> list[str]:
    """Texts the tiny tokenizer is trained on: every prompt variant, tool calls, observations, scene questions."""
    from pxr import scenes

    rng = random.Random(seed)
    texts = [protocol.system_prompt(v) for v in protocol.PROMPT_VARIANTS]
    texts += [
        protocol.user_text("What digit is written inside the red triangle?", None, v) for v in protocol.PROMPT_VARIANTS
    ]
    texts.append(" ".join(f"{c} {s}" for c in scenes.COLOURS for s in scenes.SHAPES))
    for _ in range(n_samples):
        box = sorted(round(rng.random(), 3) for _ in range(2)) + sorted(round(rng.random(), 3) for _ in range(2))
        box = [box[0], box[2], box[1], box[3]]
        frames = sorted(rng.sample(range(1, 17), rng.randint(1, 4)))
        texts += [
            protocol.tool_call_text("zoom_in", {"bbox_2d": box, "target_image": rng.randint(1, 4)}),
            protocol.tool_call_text("select_frames", {"target_frames": frames}),
            protocol.zoom_observation_text(
                "pixel", rng.randint(2, 9), 1, (rng.randint(1, 16) * 28, rng.randint(1, 16) * 28)
            ),
            protocol.frames_observation_text("pixel", [17, 18], frames[:2], (224, 168)),
            f"The answer is \\boxed{{{rng.randint(0, 99)}}}. Option \\boxed{{{rng.choice('ABCD')}}}.",
        ]
    return texts


def build_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE with Qwen's pre-tokenizer and special tokens, trained locally (no hub)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["model"]["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.add_tokens(TEXT_TOKENS)
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    size: str = "tiny",
    corpus: list[str] | None = None,
    family: str = families.DEFAULT_FAMILY,
) -> Path:
    """A randomly initialised Qwen2.5-VL (or, with `family="qwen3-vl"`, a Qwen3-VL: 16 px patches, its own rotary
    and vision tower) with a locally trained tokenizer, saved so `load_model(out_dir)` reloads it.

    Deterministic for a seed. `size`: "tiny" (~1M parameters, tests), "small" (a few M, the toy reproduction on a
    CPU) or "medium" (~30M, the same on a GPU).
    """
    from transformers import Qwen2VLImageProcessorPil

    if size not in MODEL_SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
    patch = 16 if families.get_family(family).patch_factor == 32 else 14
    spec = MODEL_SIZES[size]
    if spec.get("in_memory_only"):
        raise ValueError(f"size {size!r} is built in memory only: random_model({size!r}, processor, ...)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus or default_corpus(seed), spec["vocab_size"])
    template = tool_chat_template()
    tokenizer.chat_template = template
    grid = dict(patch_size=patch, temporal_patch_size=2, merge_size=2)
    tile = (2 * patch) ** 2
    image_processor = Qwen2VLImageProcessorPil(min_pixels=4 * tile, max_pixels=1024 * tile, **grid)
    if is_torchvision_available():  # GPU servers: the stock processor, which insists on a video processor
        from transformers import Qwen2VLVideoProcessor, Qwen3VLVideoProcessor

        video_class = Qwen3VLVideoProcessor if family == "qwen3-vl" else Qwen2VLVideoProcessor
        stock = Qwen3VLProcessor if family == "qwen3-vl" else Qwen2_5_VLProcessor
        video_processor = video_class(min_pixels=4 * tile, max_pixels=1024 * tile, **grid)
        processor = stock(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=template,
        )
    else:
        processor = IMAGE_ONLY_PROCESSORS[family](
            image_processor=image_processor, tokenizer=tokenizer, chat_template=template
        )
    torch.manual_seed(seed)
    if family == "qwen3-vl":
        model = Qwen3VLForConditionalGeneration(qwen3_model_config(size, tokenizer))
    else:
        model = Qwen2_5_VLForConditionalGeneration(model_config(size, tokenizer))
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def model_config(size: str, tokenizer) -> Qwen2_5_VLConfig:
    """The Qwen2.5-VL config of one of MODEL_SIZES, its special-token ids taken from `tokenizer`."""
    spec = MODEL_SIZES[size]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(spec["text"])
    mrope_section = text.pop("mrope_section")
    tie = spec.get("tie_word_embeddings", True)
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=max(len(tokenizer), spec.get("embedding_rows", 0)), max_position_embeddings=16384,
            tie_word_embeddings=tie,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], **text,
        ),
        vision_config=dict(out_hidden_size=text["hidden_size"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112, **spec["vision"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie,
    )  # fmt: skip


def qwen3_model_config(size: str, tokenizer) -> Qwen3VLConfig:
    """A Qwen3-VL config of one of MODEL_SIZES' widths and depths: 16 px patches merged 2x2, interleaved rotary
    sections in Qwen3-VL's proportions (t:h:w = 24:20:20 of half a head), one deepstack layer."""
    spec = MODEL_SIZES[size]
    if spec.get("in_memory_only"):
        raise ValueError(f"size {size!r} is Qwen2.5-VL-7B's shape; Qwen3-VL is built for tiny, small and medium")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {k: v for k, v in spec["text"].items() if k != "mrope_section"}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    side = (head_dim // 2) * 20 // 64
    vision = {k: v for k, v in spec["vision"].items() if k != "fullatt_block_indexes"}
    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), max_position_embeddings=16384, head_dim=head_dim, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_interleaved": True,
                             "mrope_section": [head_dim // 2 - 2 * side, side, side]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], **text,
        ),
        vision_config=dict(out_hidden_size=text["hidden_size"], patch_size=16, spatial_merge_size=2,
                           temporal_patch_size=2, num_position_embeddings=256, deepstack_visual_indexes=[0], **vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )  # fmt: skip


def generation_config(tokenizer) -> GenerationConfig:
    """Greedy by default, stopping at the end of a turn."""
    end, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return GenerationConfig(eos_token_id=[end, pad], pad_token_id=pad, do_sample=False)


def random_model(size: str, processor, *, seed: int = 0, dtype: str = "bfloat16", device: str = "cpu"):
    """A Qwen2.5-VL of `size` with random weights, built directly on `device` in `dtype` and never saved, that
    takes `processor`'s inputs (the processor of any `build_tiny_model` directory): the 7B config for GPU
    benchmarks of memory and throughput without a download."""
    config = model_config(size, processor.tokenizer)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # parameters are created in `dtype`: no fp32 copy first
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config = generation_config(processor.tokenizer)
    return model.eval()


def random_model_of_size(size: str, work_dir: str | Path, *, seed: int = 0, dtype: str = "float32", device="cpu",
                         episode_config: EpisodeConfig | None = None):  # fmt: skip
    """Model and processor of any MODEL_SIZES entry with random weights, for benchmarks: tiny/small are built in
    `work_dir` and loaded with `load_model`; in-memory sizes (7b) take the small model's processor."""
    if not MODEL_SIZES[size].get("in_memory_only"):
        path = build_tiny_model(Path(work_dir) / size, seed=seed, size=size)
        return load_model(path, dtype=dtype, device=device, episode_config=episode_config)
    _, processor = load_model(build_tiny_model(Path(work_dir) / "small", seed=seed, size="small"),
                              episode_config=episode_config)  # fmt: skip
    return random_model(size, processor, seed=seed, dtype=dtype, device=device), processor


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------- a training stage's start


def starting_model(
    model_name_or_path: str | Path = "",
    *,
    sft_dir: str | Path = "",
    build_dir: str | Path,
    corpus=(),
    seed: int = 0,
    size: str = "tiny",
) -> str | Path:
    """Where a training stage's model comes from (notebooks 20 and 30): `model_name_or_path` (a hub id or a local
    folder) when set; else the final `model` folder of the notebook-20 run `sft_dir`; else a fresh tiny model of
    `size` built in `build_dir` (`build_tiny_model`), whose tokenizer is trained on `default_corpus(seed)` and the
    run's own texts `corpus`, so that they tokenize into few tokens."""
    if model_name_or_path:
        return model_name_or_path
    if sft_dir:
        path = Path(sft_dir) / "model"
        if not path.is_dir():
            raise FileNotFoundError(f"{path} not found: run `pxr run 20_train_sft <run>` first, or set sft_dir")
        return path
    return build_tiny_model(build_dir, seed=seed, size=size, corpus=default_corpus(seed) + list(corpus))


@dataclass
class Policy:
    """A model in training with its processor and the episode settings its family needs (`episode_config_for`).
    `model` is None while the weights live in launched processes (`pxr.training.sft_job`, `pxr.training.rl_job`)."""

    path: str | Path
    model: Any
    processor: Any
    episode_config: EpisodeConfig

    def describe(self) -> str:
        """The model's path and size (or that launched processes hold it)."""
        if self.model is None:
            return f"{self.path} (loaded by the launched processes)"
        return f"{self.path} ({count_parameters(self.model) / 1e6:.2f}M parameters)"


def load_policy(path: str | Path, episode_config: EpisodeConfig, *, bf16: bool = False,
                processor_only: bool = False) -> Policy:  # fmt: skip
    """The model at `path` ready to train: bfloat16 weights with `bf16`, else float32; with `processor_only` the
    processor alone, its pixel limits set (a launched run loads the weights in its own processes)."""
    episode_config = episode_config_for(path, episode_config)  # the model family's box convention
    if processor_only:
        processor = load_processor(path)
        set_pixel_limits(processor, episode_config)
        return Policy(path, None, processor, episode_config)
    model, processor = load_model(path, episode_config=episode_config, dtype="bfloat16" if bf16 else "float32")
    return Policy(path, model, processor, episode_config)


def release(policy: Policy) -> None:
    """Drop the policy's weights from this process (before launched processes take the accelerators)."""
    import gc

    policy.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
