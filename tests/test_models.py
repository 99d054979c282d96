"""pxr.models: the tiny offline Qwen2.5-VL builds, saves, reloads and generates; LoRA stays on the language model."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from pxr import models, protocol


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.mark.slow
def test_tiny_model_reloads_with_from_pretrained(tiny_dir):
    model, processor = models.load_model(tiny_dir, device="cpu")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert models.count_parameters(model) < 2_000_000
    assert processor.chat_template == models.tool_chat_template()
    assert processor.tokenizer.padding_side == "left"
    assert type(AutoProcessor.from_pretrained(tiny_dir)).__name__ in ("ImageOnlyProcessor", "Qwen2_5_VLProcessor")
    assert {p.name for p in tiny_dir.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}


@pytest.mark.slow
def test_build_is_deterministic_for_a_seed(tiny_dir, tmp_path):
    again = models.build_tiny_model(tmp_path / "again", seed=0)
    other = models.build_tiny_model(tmp_path / "other", seed=1)
    assert (again / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
    a, b, c = (models.load_model(d, device="cpu")[0].state_dict() for d in (tiny_dir, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tokenizer_keeps_tool_calls_intact(tiny_dir):
    _, processor = models.load_model(tiny_dir, device="cpu")
    tokenizer = processor.tokenizer
    text = "Let me look.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.1, 0.25, 0.5, 0.75], "target_image": 2})
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert (
        tokenizer.convert_tokens_to_ids("<tool_call>") in ids and tokenizer.convert_tokens_to_ids("</tool_call>") in ids
    )


def generate_once(model_dir):
    model, processor = models.load_model(model_dir, device="cpu")
    messages = protocol.build_messages("What digit is inside the red square?", 1, [])
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (224, 168), (200, 30, 30))], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=True, temperature=1.0)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.slow
def test_generation_is_reproducible_across_loads(tiny_dir):
    first, second = generate_once(tiny_dir), generate_once(tiny_dir)
    assert len(first) > 0 and first == second


def test_lora_adapts_the_language_model_only(tiny_dir):
    model, _ = models.load_model(tiny_dir, device="cpu", lora=models.lora_config(rank=4))
    adapted = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert adapted and all("language_model" in name for name in adapted)
    assert not any("visual" in name for name in adapted)


@pytest.mark.slow
def test_small_size_is_a_few_million_parameters(tmp_path):
    model, _ = models.load_model(models.build_tiny_model(tmp_path, size="small"), device="cpu")
    assert 2_000_000 < models.count_parameters(model) < 20_000_000


@pytest.mark.slow
def test_medium_size_is_tens_of_millions_of_parameters_and_runs(tmp_path):
    model, processor = models.load_model(models.build_tiny_model(tmp_path, size="medium"), device="cpu")
    assert 20_000_000 < models.count_parameters(model) < 60_000_000
    ids = processor.tokenizer("what colour is the square?", return_tensors="pt")
    logits = model(**ids).logits  # rotary sections must fit the head size, or this raises
    assert logits.shape[-1] == model.config.text_config.vocab_size


def test_processor_admits_every_budget(tiny_dir):
    from pxr.config import EpisodeConfig

    _, processor = models.load_model(tiny_dir, device="cpu", episode_config=EpisodeConfig(crop_max_pixels=1024 * 784))
    assert processor.image_processor.size == {"shortest_edge": 4 * 784, "longest_edge": 1024 * 784}


def test_patch_factor_must_match_the_model(tiny_dir):
    from pxr.config import EpisodeConfig

    _, processor = models.load_model(tiny_dir, device="cpu")
    assert models.patch_factor(processor) == 28
    with pytest.raises(ValueError, match="28 px grid but patch_factor is 32"):
        models.load_model(tiny_dir, device="cpu", episode_config=EpisodeConfig(patch_factor=32))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="build one with pxr.models.build_tiny_model"):
        models.load_model(tmp_path / "nowhere", device="cpu")
    with pytest.raises(ValueError, match="unknown size"):
        models.build_tiny_model(tmp_path / "x", size="huge")


def test_saved_config_names_the_image_only_processor_without_torchvision(tiny_dir):
    from transformers.utils import is_torchvision_available

    config = json.loads((tiny_dir / "processor_config.json").read_text())
    expected = "Qwen2_5_VLProcessor" if is_torchvision_available() else "ImageOnlyProcessor"
    assert config.get("processor_class") == expected


@pytest.mark.parametrize("variant", ["pixel", "pixel-reasoner-v1"])
def test_system_prompt_is_what_the_tool_template_renders(tiny_dir, variant):
    # SFT data carries the system prompt as text; TRL's GRPO renders tools through the template: the tokens must agree.
    _, processor = models.load_model(tiny_dir, device="cpu")
    user = {"role": "user", "content": [{"type": "text", "text": "What digit?"}]}
    system = {"role": "system", "content": [{"type": "text", "text": protocol.BASE_SYSTEM_TEXT}]}
    via_tools = processor.apply_chat_template([system, user], tools=protocol.tool_schemas(variant), tokenize=False)
    as_text = processor.apply_chat_template(
        protocol.build_messages("x", 0, [], variant=variant)[:1] + [user], tokenize=False
    )
    assert via_tools == as_text


@pytest.mark.slow
def test_random_model_builds_in_memory_in_the_asked_dtype_and_takes_the_processor_s_inputs(tmp_path):
    model, processor = models.random_model_of_size("tiny", tmp_path, dtype="float32")
    same = models.random_model("tiny", processor, dtype="bfloat16")
    assert {p.dtype for p in same.parameters()} == {torch.bfloat16}
    assert models.count_parameters(same) == models.count_parameters(model)
    ids = processor.tokenizer("a b c", return_tensors="pt")["input_ids"]
    assert same.generate(input_ids=ids, max_new_tokens=3, min_new_tokens=3).shape[1] == ids.shape[1] + 3
    with pytest.raises(ValueError, match="in memory only"):
        models.build_tiny_model(tmp_path / "big", size="7b")
    config = models.model_config("7b", processor.tokenizer)
    assert config.text_config.vocab_size == 152064 and config.text_config.num_hidden_layers == 28
