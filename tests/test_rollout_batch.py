"""pxr.rollout_batch's speed-ups keep the numbers: the reserved-room cache layer returns what the stock concatenating
layer returns, and the vision tower with the patch convolution run as a matrix product gives the stock embeddings.
End to end (batched turns equal batch-1 turns) is checked in tests/test_rollout.py."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.cache_utils import DynamicLayer

from pxr import models, rollout_batch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.load_model(models.build_tiny_model(tmp_path_factory.mktemp("tiny")), device="cpu")


def test_reserved_layer_matches_the_concatenating_layer():
    generator = torch.Generator().manual_seed(0)
    prompt_keys, prompt_values = (
        torch.randn(2, 2, 5, 4, generator=generator),
        torch.randn(2, 2, 5, 4, generator=generator),
    )
    keys, values = torch.zeros(2, 2, 7, 4), torch.zeros(2, 2, 7, 4)  # room for 2 more tokens
    keys[:, :, :5], values[:, :, :5] = prompt_keys, prompt_values
    reserved, stock = rollout_batch.ReservedLayer(keys, values, 5), DynamicLayer()
    stock.update(prompt_keys, prompt_values)
    for step in range(3):  # the third step overflows the reserved room and falls back to concatenation
        new_keys, new_values = (
            torch.randn(2, 2, 1, 4, generator=generator),
            torch.randn(2, 2, 1, 4, generator=generator),
        )
        got, expected = reserved.update(new_keys, new_values), stock.update(new_keys, new_values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        assert reserved.get_seq_length() == 6 + step
    assert keys.data_ptr() == reserved._keys.data_ptr()  # the first two steps wrote in place


@pytest.mark.slow
@pytest.mark.parametrize("with_processor", [False, True], ids=["conv-as-linear", "normalisation-folded-in"])
def test_linear_patch_embedding_gives_the_stock_image_features(tiny, with_processor):
    model, processor = tiny
    texture = (np.arange(112 * 140 * 3) * 7 % 256).astype(np.uint8).reshape(112, 140, 3)  # every value 0..255
    images = [Image.new("RGB", (112, 84), (200, 30, 9)), Image.fromarray(texture)]
    visual = model.model.visual
    conv = visual.patch_embed.proj
    with torch.no_grad():
        pixels, grids = rollout_batch._encode_images(processor, images)
        stock = model.model.get_image_features(pixels, grids).pooler_output
        with rollout_batch.linear_patch_embedding(model, processor if with_processor else None) as raw:
            assert raw == with_processor and isinstance(visual.patch_embed.proj, rollout_batch.PatchProjection)
            raw_pixels, raw_grids = rollout_batch._encode_images(processor, images, raw=raw)
            linear = model.model.get_image_features(raw_pixels, raw_grids).pooler_output
    assert visual.patch_embed.proj is conv  # restored
    assert torch.equal(raw_grids, grids) and [tuple(f.shape) for f in linear] == [(12, 128), (20, 128)]  # 8x6, 10x8
    assert raw_pixels.max() == (255 if with_processor else pixels.max()) and pixels.max() < 3
    for a, b in zip(stock, linear, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(stock[0][0], stock[1][0])  # two different images: the check can fail
