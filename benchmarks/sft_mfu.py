"""SFT step throughput and MFU of a Qwen2.5-VL at the 7B config, random weights, on synthetic multimodal batches.

No download: the 7B config is pxr.models' `7b` size (the sizes of Qwen/Qwen2.5-VL-7B-Instruct's config.json) and the
model is built with random weights in bf16. Each step is what pxr's SFT does per micro-batch: a forward of image
patches through the vision tower and of the sequence through the language model, the loss on the text tokens,
backward, and an AdamW step; the vision tower is frozen by default (as in the paper). The weights are bf16 and
so are AdamW's states (no fp32 master copy): the throughput of the model's work, not a recipe; at lr 1e-6 such
updates round away, which is why real runs keep fp32 master weights (DeepSpeed's bf16 mode, or fp32 + autocast).

Each row of a batch is one image (a `--image-side` px square: (side/28)^2 visual tokens) followed by random text
up to `--seq-len` tokens. Throughput counts every position of the batch (batch x seq_len per step); MFU is
6 x N x tokens/s over the device's peak bf16 FLOP/s (`--peak-tflops`, default the H200's dense 989), N the
model's parameter count. That is the usual estimate: it leaves out attention's own FLOPs (which adds ~10 % at
4k tokens), and counts the frozen vision tower (~8 % of N) as if it were trained, so the figure is approximate.

    python benchmarks/sft_mfu.py                               # 7B, bf16, on the GPU
    python benchmarks/sft_mfu.py --seq-len 8192 --batch 1 --grad-ckpt
    python benchmarks/sft_mfu.py --size tiny --steps 2 --warmup 1 --seq-len 256   # runs on CPU (tests)

Tests: tests/test_sft.py runs the tiny setting in a subprocess.
"""

from __future__ import annotations

import argparse
import time

import torch

from pxr.models import MODEL_SIZES

QWEN_7B = MODEL_SIZES["7b"]  # Qwen2.5-VL-7B-Instruct's sizes (its config.json): nothing is downloaded
SIZES = {
    "7b": {
        "text": {**QWEN_7B["text"], "vocab_size": QWEN_7B["embedding_rows"], "max_position_embeddings": 128000,
                 "tie_word_embeddings": QWEN_7B["tie_word_embeddings"]},
        "vision": {**QWEN_7B["vision"], "out_hidden_size": QWEN_7B["text"]["hidden_size"]},
        "tokens": dict(vision_start=151652, vision_end=151653, image=151655, video=151656),  # Qwen's token ids
    },
    "tiny": {  # pxr.models' tiny model: the same code path in seconds on a CPU
        "text": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=2048, max_position_embeddings=32768, rms_norm_eps=1e-6,
                     tie_word_embeddings=True, mrope_section=[4, 6, 6], bos_token_id=0, eos_token_id=1,
                     pad_token_id=0),
        "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128,
                       fullatt_block_indexes=[1]),
        "tokens": dict(vision_start=2040, vision_end=2041, image=2042, video=2043),
    },
}  # fmt: skip
PATCH, MERGE, TEMPORAL = 14, 2, 2


def build_model(size: str, dtype: torch.dtype, device: str, attn: str):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = SIZES[size]
    text = dict(spec["text"])
    mrope = text.pop("mrope_section")
    tie = text["tie_word_embeddings"]
    tokens = spec["tokens"]
    config = Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}},
        vision_config={**spec["vision"], "patch_size": PATCH, "spatial_merge_size": MERGE,
                       "temporal_patch_size": TEMPORAL, "window_size": 112, "in_chans": 3},
        image_token_id=tokens["image"], video_token_id=tokens["video"],
        vision_start_token_id=tokens["vision_start"], vision_end_token_id=tokens["vision_end"],
        tie_word_embeddings=tie,
    )  # fmt: skip
    config._attn_implementation = attn
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    return model


def synthetic_batch(size: str, batch: int, seq_len: int, image_side: int, device: str, dtype, generator):
    """input_ids with one image per row, labels on the text only, the image's patches and grid, mm_token_type_ids."""
    spec = SIZES[size]
    tokens = spec["tokens"]  # text ids are drawn below the first special id
    grid = image_side // (PATCH * MERGE) * MERGE  # patches per side, a multiple of the merge size
    n_image_tokens = (grid // MERGE) ** 2
    if n_image_tokens + 3 > seq_len:
        raise ValueError(f"seq_len {seq_len} leaves no room for text after {n_image_tokens} image tokens")
    text_ids = torch.randint(0, tokens["vision_start"], (batch, seq_len), generator=generator)
    input_ids = text_ids.clone()
    input_ids[:, 0] = tokens["vision_start"]
    input_ids[:, 1 : 1 + n_image_tokens] = tokens["image"]
    input_ids[:, 1 + n_image_tokens] = tokens["vision_end"]
    labels = input_ids.clone()
    labels[:, : 2 + n_image_tokens] = -100
    mm_token_type_ids = (input_ids == tokens["image"]).long()
    patch_dim = 3 * TEMPORAL * PATCH * PATCH
    pixel_values = torch.randn(batch * grid * grid, patch_dim, generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
        "mm_token_type_ids": mm_token_type_ids.to(device),
        "pixel_values": pixel_values.to(device, dtype),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * batch).to(device),
    }


def measure(
    size: str = "7b",
    *,
    seq_len: int = 4096,
    batch: int = 1,
    steps: int = 10,
    warmup: int = 3,
    image_side: int = 448,
    grad_ckpt: bool = False,
    freeze_vision: bool = True,
    peak_tflops: float = 989.0,
    attn: str = "sdpa",
    device: str | None = None,
    dtype: str = "bfloat16",
) -> dict:
    """Time `steps` SFT steps after `warmup` untimed ones; tokens/s, MFU, peak memory."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    model = build_model(size, torch_dtype, device, attn)
    n_params = sum(p.numel() for p in model.parameters())
    if freeze_vision:
        for name, parameter in model.named_parameters():
            if "visual" in name:
                parameter.requires_grad_(False)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-6, foreach=True)
    generator = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(size, batch, seq_len, image_side, device, torch_dtype, generator) for _ in range(2)]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    losses = []
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
        loss = model(**batches[step % 2]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # .item() syncs, as a logging trainer does
    sync()
    seconds = time.perf_counter() - start
    tokens_per_s = batch * seq_len * steps / seconds
    flops = 6 * n_params * tokens_per_s
    return {
        "size": size,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "params": n_params,
        "trainable": sum(p.numel() for p in trainable),
        "seq_len": seq_len,
        "batch": batch,
        "step_s": seconds / steps,
        "tokens_per_s": tokens_per_s,
        "tflops": flops / 1e12,
        "mfu": flops / (peak_tflops * 1e12),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="7b")
    parser.add_argument("--seq-len", type=int, default=4096, help="tokens per row (image tokens included)")
    parser.add_argument("--batch", type=int, default=1, help="rows per micro-batch")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--image-side", type=int, default=448, help="image side in px: (side/28)^2 visual tokens")
    parser.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    parser.add_argument("--train-vision", action="store_true", help="train the vision tower too")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="device peak dense bf16 TFLOP/s (H200: 989)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, flash_attention_2, eager)")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    r = measure(
        args.size, seq_len=args.seq_len, batch=args.batch, steps=args.steps, warmup=args.warmup,
        image_side=args.image_side, grad_ckpt=args.grad_ckpt, freeze_vision=not args.train_vision,
        peak_tflops=args.peak_tflops, attn=args.attn, dtype=args.dtype,
    )  # fmt: skip
    memory = f", peak memory {r['peak_memory_gb']:.1f} GiB" if r["peak_memory_gb"] is not None else ""
    print(
        f"{r['size']} on {r['device']}: {r['params'] / 1e9:.3f}B params ({r['trainable'] / 1e9:.3f}B trained), "
        f"batch {r['batch']} x {r['seq_len']} tokens, {args.dtype}, grad ckpt {args.grad_ckpt}, attn {args.attn}"
    )
    print(
        f"tokens/s {r['tokens_per_s']:.0f}  step {r['step_s']:.3f} s  model TFLOP/s {r['tflops']:.1f}  "
        f"MFU {r['mfu']:.1%} (of {args.peak_tflops:.0f}){memory}  loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}"
    )


if __name__ == "__main__":
    main()
