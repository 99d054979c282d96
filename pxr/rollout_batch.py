"""One batched assistant turn that keeps each episode's KV cache from turn to turn (used by
`pxr.rollout.generate_trajectories`).

Profiled on the tiny model (benchmarks/rollout_throughput.py), a turn of the plain engine spent most of its time on
work that batching cannot share and padding makes worse: the processor and the vision tower re-encoded every image of
every episode each turn, and the whole padded batch was prefilled again from the system prompt. Here each episode
keeps the keys/values of the tokens it has already seen (`EpisodeCache`); a turn

1. renders the chat, tokenizes it with the cached image grids (only images the episode has not encoded yet go through
   the image processor), and finds the longest prefix the cache already holds;
2. prefills only the rest, one episode at a time (no padding, no mask: the fast causal kernels), vision tower included
   for the new images only, its patch Conv3d run as a matrix product with the processor's normalisation folded in
   (`linear_patch_embedding`: same weights, same features to float rounding);
3. stitches the caches into one left-padded batch cache with room reserved for the new tokens (`ReservedLayer`: no
   copy of the whole cache per step) and decodes all episodes together with `model.generate`, passing Qwen2.5-VL's
   M-RoPE positions explicitly (text row first, as transformers does itself);
4. keeps each episode's share of the grown cache (prompt plus generated tokens) for its next turn.

Batching step 2 across the episodes of a turn was measured and is slower on CPU (2026-11-24, tiny model, 16 episodes,
one thread): the image processor over all images at once 51 ms against 43 ms one episode at a time, the vision tower
192 against 167 ms, the LM prefill of 16 prompts of ~930 tokens 294 ms batched (446 ms with a padding mask) against
260 ms one at a time. The work is per image and per token; one call per episode costs only its Python overhead.

The prefix is matched on token ids, so a turn whose re-rendered text tokenizes differently from what the model wrote
simply prefills from the first difference. Finished episodes drop their cache. Models without Qwen-VL's
`get_rope_index` (scripted test models) use the plain engine in `pxr.rollout`.

Tests: tests/test_rollout.py (batched turns equal batch-1 turns under greedy decoding; the prompt ids equal the
processor's), tests/test_rollout_batch.py (the reserved cache layer and the linear patch embedding give the stock
layer's and the stock vision tower's numbers).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class EpisodeCache:
    """What one episode keeps between turns: the ids its keys/values cover and the grids of its encoded images."""

    ids: list[int] = field(default_factory=list)
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (1, kv heads, len(ids), dim)
    grids: list[torch.Tensor] = field(default_factory=list)  # image_grid_thw row of each image, in number order


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` that writes new keys/values into room reserved up front instead of concatenating: the stock
    layer copies the whole batch cache on every decode step, which cost as much as the attention itself at 16 rows.
    `keys`/`values` are views of the first `length` positions, so everything that reads a `DynamicLayer` works."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._keys, self._values = keys, values  # (batch, kv heads, capacity, dim)
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        length, new = self.keys.shape[2], key_states.shape[2]
        if length + new > self._keys.shape[2]:  # more than reserved (not in a turn of `generate_turn_cached`)
            return super().update(key_states, value_states)
        self._keys[:, :, length : length + new] = key_states
        self._values[:, :, length : length + new] = value_states
        self.keys, self.values = self._keys[:, :, : length + new], self._values[:, :, : length + new]
        return self.keys, self.values


class PatchProjection(torch.nn.Module):
    """Qwen-VL's patch embedding as the matrix product it is: a Conv3d whose stride equals its kernel sees each
    flattened patch once, and torch's CPU conv3d took ~6x as long as `linear` for it (7 ms an image on the tiny model,
    more than the rest of the vision tower). With `scale`/`shift` (per colour channel) it also takes the image
    processor's rescale and normalisation, `pixel = raw * scale - shift`, folded into its weights: the processor then
    only cuts patches (1.6 ms an image instead of 5.7). The output has the conv's shape."""

    def __init__(self, conv: torch.nn.Conv3d, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None):
        super().__init__()
        with torch.no_grad():  # rollouts only: no gradient reaches the convolution through here
            weight, bias = conv.weight.flatten(1), conv.bias
            if scale is not None:
                columns = weight.shape[1] // len(scale)  # a flattened patch is (channels, frames, patch, patch)
                scale, shift = (t.to(weight.device, torch.float32).repeat_interleave(columns) for t in (scale, shift))
                folded_bias = -(weight.float() @ shift) + (0 if bias is None else bias.float())
                weight, bias = (weight.float() * scale).to(weight.dtype), folded_bias.to(weight.dtype)
        self.weight, self.bias = weight, bias

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # (n, channels, frames, patch, patch)
        out = torch.nn.functional.linear(patches.flatten(1), self.weight, self.bias)
        return out[:, :, None, None, None]


def _pixel_affine(image_processor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) per channel of the processor's rescale + normalise, or None if it is not a per-channel affine
    map we know (then the processor normalises itself)."""
    if not hasattr(image_processor, "rescale_factor") or not hasattr(image_processor, "image_mean"):
        return None
    factor = image_processor.rescale_factor if getattr(image_processor, "do_rescale", True) else 1.0
    if getattr(image_processor, "do_normalize", True):
        mean = torch.tensor(image_processor.image_mean, dtype=torch.float64)
        std = torch.tensor(image_processor.image_std, dtype=torch.float64)
    else:
        mean, std = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    if mean.shape != (3,) or std.shape != (3,):
        return None
    return factor / std, mean / std


@contextmanager
def linear_patch_embedding(model, processor=None):
    """Within the block, the vision tower's patch Conv3d runs as a `PatchProjection`; restored after, so training,
    saving and the plain engine see the stock module. Yields True when the processor's normalisation is folded in:
    pixels must then come from `_encode_images(..., raw=True)`."""
    embed = getattr(getattr(base_model(model).model, "visual", None), "patch_embed", None)
    conv = getattr(embed, "proj", None)
    if not (isinstance(conv, torch.nn.Conv3d) and conv.stride == conv.kernel_size and conv.padding == (0, 0, 0)):
        yield False
        return
    affine = None if processor is None else _pixel_affine(processor.image_processor)
    embed.proj = PatchProjection(conv, *(affine or (None, None)))
    try:
        yield affine is not None
    finally:
        embed.proj = conv


def base_model(model):
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_cache_reuse(model) -> bool:
    """A Qwen-VL style model whose 3D positions we can compute, in eval mode; scripted stand-ins fall back to the
    plain engine, and so does a model in training mode (gradient checkpointing turns its cache off)."""
    inner = getattr(base_model(model), "model", None)
    return hasattr(inner, "get_rope_index") and callable(model) and not getattr(model, "training", False)


def _encode_images(processor, images, raw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel patches and grids; `raw`: neither rescaled nor normalised (a `PatchProjection` does both)."""
    # The episode already fitted every image to its budget on the patch grid: resizing again would only cost time.
    skip = {"do_rescale": False, "do_normalize": False} if raw else {}
    out = processor.image_processor(images=images, return_tensors="pt", do_resize=False, **skip)
    return out["pixel_values"], out["image_grid_thw"]


def prompt_ids(processor, text: str, grids: list[torch.Tensor]) -> list[int]:
    """Token ids of a rendered chat, each image placeholder expanded to its grid's token count (what the Qwen-VL
    processor does, without touching pixels)."""
    token = processor.image_token
    parts = text.split(token)
    if len(parts) - 1 != len(grids):
        raise ValueError(f"the chat has {len(parts) - 1} image placeholders but the episode has {len(grids)} images")
    merge = processor.image_processor.merge_size**2
    expanded = parts[0] + "".join(
        token * (int(g.prod()) // merge) + part for g, part in zip(grids, parts[1:], strict=True)
    )
    return processor.tokenizer(expanded)["input_ids"]


def _image_spans(ids: list[int], image_token_id: int) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, token in enumerate([*ids, -1]):
        if token == image_token_id and start is None:
            start = i
        elif token != image_token_id and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _prefill(
    model, processor, episode, state: EpisodeCache, text: str, raw_pixels: bool = False
) -> tuple[list[int], torch.Tensor]:
    """Bring `state` up to all but the last token of this turn's prompt; returns the prompt ids and their 3D
    positions (3, len). `raw_pixels`: the vision tower takes unnormalised pixels (`linear_patch_embedding`)."""
    shown = episode.shown_images
    n_encoded = len(state.grids)
    new_pixels = None
    if n_encoded < len(shown):  # images added since the last turn: their grids, pixels kept for this call only
        new_pixels, new_grids = _encode_images(processor, shown[n_encoded:], raw_pixels)
        state.grids.extend(new_grids)
    ids = prompt_ids(processor, text, state.grids)
    grid_tensor = torch.stack(state.grids) if state.grids else None
    ids_tensor = torch.tensor([ids], device=model.device)
    positions, _ = base_model(model).model.get_rope_index(
        ids_tensor,
        mm_token_type_ids=(ids_tensor == processor.image_token_id).int(),
        image_grid_thw=grid_tensor.to(model.device) if grid_tensor is not None else None,
    )
    positions = positions[:, 0]
    end = len(ids) - 1  # the last prompt token is fed by `generate`, which needs its logits
    start = min(_common_prefix(state.ids, ids), end)
    spans = _image_spans(ids, processor.image_token_id)
    start = next((s for s, e in spans if s < start < e), start)  # never cut an image's tokens in two
    first_image = next((k for k, (s, _) in enumerate(spans) if s >= start), len(spans))
    if start < end:
        pixels = None
        if first_image == len(spans) - len(state.grids) + n_encoded and new_pixels is not None:
            pixels = new_pixels  # the usual case: the suffix holds exactly the images this turn added
        elif first_image < len(spans):  # the prefix broke before older images: encode them again
            pixels, _ = _encode_images(processor, shown[first_image:], raw_pixels)
        cache = DynamicCache(config=model.config)
        for layer, (keys, values) in enumerate(state.layers):
            cache.update(keys[:, :, :start], values[:, :, :start], layer)
        with torch.no_grad():
            out = model(
                input_ids=ids_tensor[:, start:end],
                position_ids=positions[:, None, start:end],
                past_key_values=cache,
                pixel_values=None if pixels is None else pixels.to(model.device, model.dtype),
                image_grid_thw=None if pixels is None else grid_tensor[first_image:].to(model.device),
                use_cache=True,
                logits_to_keep=1,
            )
        state.layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        if not state.layers or state.layers[0][0].shape[2] != end:
            raise RuntimeError(f"the model returned no cache for the {end} prompt tokens (use_cache off?)")
    else:
        state.layers = [(keys[:, :, :end], values[:, :, :end]) for keys, values in state.layers]
    state.ids = ids[:end]
    return ids, positions


def generate_turn_cached(
    model, processor, batch, states: dict[int, EpisodeCache], texts: list[str], generate_kwargs: dict
) -> tuple[torch.Tensor, int, list[int]]:
    """Prefill each episode from its cache, decode the batch together; returns the generated token rows
    (batch, new tokens), and keeps each episode's grown cache in `states` (keyed by `id(trajectory)`)."""
    prompts = []
    with linear_patch_embedding(model, processor) as raw_pixels:
        for trajectory, text in zip(batch, texts, strict=True):
            state = states.setdefault(id(trajectory), EpisodeCache())
            prompts.append(_prefill(model, processor, trajectory.episode, state, text, raw_pixels))
    width = max(len(ids) for ids, _ in prompts)
    pad = processor.tokenizer.pad_token_id
    n = len(batch)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    position_ids = torch.zeros((4, n, width), dtype=torch.long)  # text positions, then M-RoPE's three rows
    for row, (ids, positions) in enumerate(prompts):
        left = width - len(ids)
        input_ids[row, left:] = torch.tensor(ids)
        attention_mask[row, left:] = 1
        position_ids[0, row, left:] = torch.arange(len(ids))
        position_ids[1:, row, left:] = positions.cpu()
    cache = DynamicCache(config=model.config)
    capacity = width - 1 + generate_kwargs.get("max_new_tokens", 0)
    layers = []
    for layer in range(len(states[id(batch[0])].layers)):
        keys0, values0 = states[id(batch[0])].layers[layer]
        keys = keys0.new_zeros((n, keys0.shape[1], capacity, keys0.shape[3]))
        values = values0.new_zeros((n, values0.shape[1], capacity, values0.shape[3]))
        for row, trajectory in enumerate(batch):
            k, v = states[id(trajectory)].layers[layer]
            keys[row, :, width - 1 - k.shape[2] : width - 1] = k[0]
            values[row, :, width - 1 - v.shape[2] : width - 1] = v[0]
        layers.append(ReservedLayer(keys, values, width - 1))
    if all(type(layer) is DynamicLayer for layer in cache.layers) and len(cache.layers) == len(layers):
        cache.layers = layers
    else:  # sliding-window or other special layers: the stock layers, filled by copy
        for layer, reserved in enumerate(layers):
            cache.update(reserved.keys, reserved.values, layer)
    device = model.device
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            past_key_values=cache,
            return_dict_in_generate=True,
            **generate_kwargs,
        )
    generated = output.sequences[:, width:]
    lengths = [len(ids) for ids, _ in prompts]
    grown = output.past_key_values
    if grown is None:  # a generate that keeps its cache to itself: each episode keeps its prompt's cache only
        return generated, width, lengths
    for row, trajectory in enumerate(batch):
        state = states[id(trajectory)]
        state.layers = [
            (layer.keys[row : row + 1, :, width - lengths[row] :].clone(),
             layer.values[row : row + 1, :, width - lengths[row] :].clone())
            for layer in grown.layers
        ]  # fmt: skip
        state.ids = prompts[row][0] + generated[row, : generated.shape[1] - 1].tolist()
    return generated, width, lengths
