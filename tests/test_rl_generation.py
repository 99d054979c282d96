"""pxr.rl_batching: rollouts generated a few at a time (generation_micro_batch_size) are, under greedy decoding, the
rollouts of one `generate` call, token for token, with prompts that hold different numbers of images; a GRPO step
with scripted op calls runs micro-batched."""

import pytest
import torch
from PIL import Image

from pxr import data, models
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.synthesis import synth_run
from pxr.training import rl
from pxr.training.rl_generation import prompt_chunks
from tests.test_rl import scripted_generate

EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = synth_run.smoke_dataset(tmp_path_factory.mktemp("data"), seed=0)
    queries, _ = data.read_jsonl(root / synth_run.RL_QUERIES, data.RLQuery)
    return root, queries


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def image(width, height, shade):
    return Image.new("RGB", (width, height), (shade, 255 - shade, (3 * shade) % 256))


def prompts_with_images(processor, counts):
    """Prompts rendered one by one as TRL renders them with environments: ids per prompt, images per prompt, and
    the processor's fields stacked over prompts."""
    prompt_ids, images, fields = [], [], {}
    for k, count in enumerate(counts):
        pictures = [image(56 + 28 * ((k + j) % 3), 84 + 28 * (j % 2), 40 * k + 10 * j) for j in range(count)]
        content = [{"type": "image", "image": p} for p in pictures] + [{"type": "text", "text": f"Question {k}?"}]
        out = processor.apply_chat_template([[{"role": "user", "content": content}]], add_generation_prompt=True,
                                            tokenize=True, return_dict=True, return_tensors="pt")  # fmt: skip
        prompt_ids.append(out["input_ids"][0].tolist())
        images.append(pictures or None)
        for key, value in out.items():
            if key not in ("input_ids", "attention_mask"):
                fields.setdefault(key, []).append(value)
    fields = {k: torch.cat(v) if k in ("pixel_values", "image_grid_thw") else [r for x in v for r in x.tolist()]
              for k, v in fields.items()}  # fmt: skip
    return prompt_ids, images, fields


@pytest.mark.slow
def test_chunks_cut_prompts_images_and_patches_consistently(tiny_dir):
    _, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu")
    prompt_ids, images, fields = prompts_with_images(processor, [1, 2, 0, 3])
    chunks = list(prompt_chunks(prompt_ids, images, fields, 2))
    assert [len(ids) for ids, _, _ in chunks] == [2, 2]
    assert [c[2]["image_grid_thw"].shape[0] for c in chunks] == [3, 3]
    assert sum(c[2]["pixel_values"].shape[0] for c in chunks) == fields["pixel_values"].shape[0]
    assert torch.equal(torch.cat([c[2]["pixel_values"] for c in chunks]), fields["pixel_values"])
    (alone,) = [c for c in prompt_chunks(prompt_ids, images, fields, 1)][2:3]  # the prompt without an image
    assert alone[1] == [None] and "pixel_values" not in alone[2]
    assert list(prompt_chunks(prompt_ids, images, fields, 0)) == [(prompt_ids, images, fields)]
    with pytest.raises(ValueError, match="video inputs"):
        list(prompt_chunks(prompt_ids, images, {**fields, "pixel_values_videos": fields["pixel_values"]}, 2))


@pytest.mark.slow
def test_micro_batched_greedy_completions_equal_one_call(smoke, tiny_dir, tmp_path):
    root, queries = smoke
    model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
    config = RLConfig(num_generations=2, per_device_train_batch_size=4, max_completion_length=24)
    trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=tmp_path, episode_config=EPISODE,
                              reward_config=RewardConfig(), rl_config=config)  # fmt: skip
    trainer.generation_config.do_sample = trainer.generation_kwargs["do_sample"] = False  # greedy: one answer each
    calls = []
    real = model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or real(**kw)
    prompt_ids, images, fields = prompts_with_images(processor, [1, 2, 0, 3, 1])
    # The random model never ends a turn: make a token it writes in some rollouts, not all, one more end id, so
    # that rollouts end at different lengths (a chunk's rows then finish before the longest row of the call).
    unsplit, _ = trainer._generate_single_turn(prompt_ids, images, fields, 1)
    seen = [set(row) for row in unsplit]
    stop = next(t for t in sorted(set().union(*seen)) if 1 < sum(t in s for s in seen) < len(seen))
    trainer.eos_token_ids = [*trainer.eos_token_ids, stop]
    trainer.generation_config.eos_token_id = trainer.generation_kwargs["eos_token_id"] = trainer.eos_token_ids
    completions = {}
    for size in (0, 1, 2, 3):
        trainer.generation_micro_batch_size, calls[:] = size, []
        completions[size], logprobs = trainer._generate_single_turn(prompt_ids, images, fields, 1)
        assert calls == ([5] if size == 0 else [size] * (5 // size) + ([5 % size] if 5 % size else []))
        assert logprobs is None
    assert len({len(c) for c in completions[0]}) > 1  # the rollouts end at different lengths
    assert completions[1] == completions[0] and completions[2] == completions[0] and completions[3] == completions[0]


@pytest.mark.slow
def test_a_grpo_step_runs_micro_batched(smoke, tiny_dir, tmp_path):
    root, queries = smoke
    model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
    scripted_generate(model, processor.tokenizer)  # row 0 of every generate call zooms: here every rollout
    rows, images_seen = [], []
    inner = model.generate
    model.generate = lambda **kw: rows.append(kw["input_ids"].shape[0]) or inner(**kw)
    model.model.visual.register_forward_pre_hook(
        lambda module, args, kwargs: images_seen.append((torch.is_grad_enabled(), int(kwargs["grid_thw"].shape[0]))),
        with_kwargs=True,
    )
    config = RLConfig(max_steps=1, num_generations=2, per_device_train_batch_size=4, generation_micro_batch_size=1)
    trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=tmp_path, episode_config=EPISODE,
                              reward_config=RewardConfig(), rl_config=config)  # fmt: skip
    rl.train(trainer)
    assert trainer.state.global_step == 1
    assert rows == [1] * 8  # 4 first turns, then 4 turns after an observation, one rollout a call
    # Each second-turn call saw its own query image and crop; the loss forward all 4 queries and 4 crops.
    assert images_seen.count((False, 2)) == 4 and (True, 8) in images_seen
    (step,) = [e for e in rl.read_step_log(tmp_path / "steps.jsonl") if "pxr/rapr" in e]
    assert step["pxr/rapr"] == 1.0 and step["pxr/op_error_rate"] == 0.0


def test_micro_batch_size_is_validated():
    with pytest.raises(ValueError, match="generation_micro_batch_size must be >= 0"):
        RLConfig(generation_micro_batch_size=-1)
