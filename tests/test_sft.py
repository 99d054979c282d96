"""pxr.training.sft: loss masks on self-correction trajectories, replayed pixels, a few training steps, resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainerCallback

from pxr import data, models, protocol
from pxr.config import EpisodeConfig
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TemplateTeacher
from pxr.training import checkpoints, sft

EPISODE = EpisodeConfig()
SYNTH = synth.SynthConfig(seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    items = synth_run.write_seed_items("read", 4, 0, out, split="train")
    items += synth_run.write_seed_items("flash", 1, 0, out, split="train")
    synth_run.synthesize(
        items, out, TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    records, _ = data.read_jsonl(out / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    assert len(records) == len(items)
    return out, records


def load(tiny):
    return models.load_model(tiny, device="cpu", dtype="float32", episode_config=EPISODE)


def label_runs(labels):
    """[start, end) runs of consecutive trained positions."""
    runs, start = [], None
    for i, trained in enumerate((labels != sft.IGNORE_INDEX).tolist() + [False]):
        if trained and start is None:
            start = i
        elif not trained and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.slow
def test_labels_are_exactly_the_trainable_assistant_turns(tiny, trajectories):
    root, records = trajectories
    record = next(r for r in records if r.variant == "two_wrong")
    assistant = [t for t in record.turns if t.role == "assistant"]
    wrong = [t for t in assistant if not t.trainable]
    assert len(wrong) == 2 and all("<tool_call>" in t.text for t in wrong)
    _, processor = load(tiny)
    example = sft.sft_example(record, root, EPISODE)
    assert example["trainable"] == [t.trainable for t in assistant]
    tokens = sft.tokenize_example(processor, example)
    ids, labels = tokens["input_ids"], tokens["labels"]
    assert ids.shape == labels.shape == tokens["attention_mask"].shape
    assert (labels[labels != sft.IGNORE_INDEX] == ids[labels != sft.IGNORE_INDEX]).all()

    def decode(span):
        return processor.tokenizer.decode(span.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    trained = [decode(ids[a:b]) for a, b in label_runs(labels)]
    expected = [t.text + "<|im_end|>\n" for t in assistant if t.trainable]
    assert trained == expected  # each trainable turn fully covered, ending with the end-of-turn token
    assert "\\boxed{" in trained[-1] and "<tool_call>" in trained[0] and "zoom in" in trained[0].lower()
    everything = "".join(trained)
    assert "Here is image" not in everything and "<tool_response>" not in everything
    assert record.question not in everything and "You are a helpful assistant" not in everything
    for turn in wrong:
        call = turn.text[turn.text.index("<tool_call>") :]
        assert call not in everything
    untrained = decode(ids[labels == sft.IGNORE_INDEX])
    assert all(call.text[call.text.index("<tool_call>") :] in untrained for call in wrong)


def test_answer_mask_is_the_boxed_answer_of_trained_turns_only(tiny, trajectories):
    root, records = trajectories
    _, processor = load(tiny)
    decode = processor.tokenizer.decode
    for record in records:
        example = sft.sft_example(record, root, EPISODE)
        tokens = sft.tokenize_example(processor, example, with_answer_mask=True)
        mask = tokens["answer_mask"]
        assert not (mask & (tokens["labels"] == sft.IGNORE_INDEX)).any()
        assert decode(tokens["input_ids"][mask]).strip() == protocol.last_boxed(record.turns[-1].text)
    # A turn that is not trained contributes no answer tokens, even when it has a boxed answer.
    example["trainable"] = [False] * len(example["trainable"])
    assert not sft.tokenize_example(processor, example, with_answer_mask=True)["answer_mask"].any()
    assert "answer_mask" not in sft.tokenize_example(processor, example)  # only computed when asked for


@pytest.mark.slow
def test_answer_loss_weight_adds_the_answer_tokens_loss(tiny, trajectories, tmp_path):
    root, records = trajectories
    model, processor = load(tiny)
    examples = [sft.sft_example(r, root, EPISODE) for r in records[:2]]
    batch = sft.SFTCollator(processor)([sft.tokenize_example(processor, e, with_answer_mask=True) for e in examples])
    plain = sft.make_trainer(model, processor, examples, output_dir=tmp_path / "a", learning_rate=1e-3, max_steps=1)
    weighted = sft.make_trainer(
        model, processor, examples, output_dir=tmp_path / "b", learning_rate=1e-3, max_steps=1, answer_loss_weight=2.0
    )
    model.eval()
    with torch.no_grad():
        base = plain.compute_loss(model, dict(batch)).item()
        total, outputs = weighted.compute_loss(model, dict(batch), return_outputs=True)
        answer = sft.answer_loss(outputs.logits, batch["labels"], batch["answer_mask"]).item()
    assert answer > 0 and total.item() == pytest.approx(base + 2.0 * answer, rel=1e-5)
    with pytest.raises(ValueError, match="with_answer_mask"):  # pre-tokenized without masks: no silent plain loss
        sft.make_trainer(
            model, processor, [sft.tokenize_example(processor, examples[0])], output_dir=tmp_path / "d",
            learning_rate=1e-3, answer_loss_weight=1.0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="answer_loss_weight"):
        sft.make_trainer(
            model, processor, examples, output_dir=tmp_path / "c", learning_rate=1e-3, answer_loss_weight=-1
        )


def test_training_arguments_carry_the_optimizer_settings(tmp_path):
    default = sft.training_arguments(tmp_path, learning_rate=1e-3)
    assert (default.adam_beta2, default.weight_decay) == (0.999, 0.0)  # Trainer's own defaults
    tuned = sft.training_arguments(tmp_path, learning_rate=1e-3, adam_beta2=0.98, weight_decay=0.01)
    assert (tuned.adam_beta2, tuned.weight_decay) == (0.98, 0.01)


def test_replay_gives_the_recorded_images(trajectories):
    root, records = trajectories
    assert any(r.is_video for r in records) and any(r.variant in ("wrong_crop", "two_wrong") for r in records)
    for record in records:
        images = sft.replay_images(record, root, EPISODE)
        recorded = record.meta["episode"]["images"]
        assert [list(im.size) for im in images] == [e["shown_size"] for e in recorded]
        observed = [p for t in record.turns for p in t.images]
        n_inputs = len(images) - len(observed)
        assert n_inputs == (16 if record.is_video else 1)
        for image, path in zip(images[n_inputs:], observed, strict=True):
            with Image.open(root / path) as stored:
                assert stored.size == image.size
                difference = np.abs(np.asarray(stored.convert("RGB"), float) - np.asarray(image, float)).mean()
            assert difference < 4, f"{path}: mean pixel difference {difference:.1f}"  # JPEG noise only
        assert all(im.width % 28 == 0 and im.height % 28 == 0 for im in images)


def test_replay_refuses_a_record_whose_observation_differs(trajectories):
    root, records = trajectories
    record = next(r for r in records if any(t.role == "observation" for t in r.turns))
    sft.replay_images(record, root, EPISODE)
    tampered = data.TrajectoryRecord.from_dict(record.to_dict())
    turn = next(t for t in tampered.turns if t.role == "observation")
    turn.text = turn.text.replace("px", "pixels")
    with pytest.raises(ValueError, match=record.id):
        sft.replay_images(tampered, root, EPISODE)
    with pytest.raises(ValueError, match="does not match"):  # other budgets give other crops
        sft.replay_images(record, root, replace(EPISODE, crop_max_pixels=64 * 28 * 28))


@pytest.mark.slow
def test_replayed_examples_equal_the_eager_ones_and_hold_no_images(tiny, trajectories, monkeypatch):
    root, records = trajectories
    _, processor = load(tiny)
    replays = []
    monkeypatch.setattr(sft, "_replay", lambda *args, _real=sft._replay: replays.append(1) or _real(*args))
    lazy = sft.ReplayedExamples(records, root, EPISODE, check=False)
    assert replays == [] and len(lazy) == len(records)  # nothing replayed, so no image held, until an example is read
    assert not any(isinstance(v, Image.Image) for v in vars(lazy).values())
    dataset = sft.SFTDataset(processor, lazy)
    assert dataset.examples is lazy and replays == []  # the dataset does not list() them either
    for index, record in enumerate(records):
        eager = sft.sft_example(record, root, EPISODE)
        read = lazy[index]
        assert read["messages"] == eager["messages"] and read["trainable"] == eager["trainable"]
        assert [im.tobytes() for im in read["images"]] == [im.tobytes() for im in eager["images"]]
        tokens, expected = dataset[index], sft.tokenize_example(processor, eager)
        assert all(torch.equal(tokens[k], expected[k]) for k in expected)
    assert [e["id"] for e in lazy[1:3]] == [r.id for r in records[1:3]]


def test_replayed_examples_check_every_record_before_training(trajectories):
    root, records = trajectories
    tampered = data.TrajectoryRecord.from_dict(records[0].to_dict())
    next(t for t in tampered.turns if t.role == "observation").text += " (edited)"
    with pytest.raises(ValueError, match=f"trajectory {tampered.id}: observation"):
        sft.ReplayedExamples([records[1], tampered], root, EPISODE)


def test_collator_pads_right_and_keeps_image_order(tiny, trajectories):
    root, records = trajectories
    _, processor = load(tiny)
    tokenized = [sft.tokenize_example(processor, sft.sft_example(r, root, EPISODE)) for r in records[:3]]
    batch = sft.SFTCollator(processor)(tokenized)
    length = max(len(t["input_ids"]) for t in tokenized)
    assert batch["input_ids"].shape == batch["labels"].shape == (3, length)
    for row, t in enumerate(tokenized):
        n = len(t["input_ids"])
        assert torch.equal(batch["input_ids"][row, :n], t["input_ids"])
        assert batch["attention_mask"][row, n:].sum() == 0 and (batch["labels"][row, n:] == sft.IGNORE_INDEX).all()
    assert torch.equal(batch["pixel_values"], torch.cat([t["pixel_values"] for t in tokenized]))
    assert torch.equal(batch["image_grid_thw"], torch.cat([t["image_grid_thw"] for t in tokenized]))


def batch_loss(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "answer_mask"}).loss.item()


@pytest.mark.slow
def test_training_steps_change_the_language_model_only_and_lower_the_loss(tiny, trajectories, tmp_path):
    root, records = trajectories
    model, processor = load(tiny)
    examples = [sft.sft_example(r, root, EPISODE) for r in records]
    batch = sft.SFTCollator(processor)([sft.tokenize_example(processor, e) for e in examples[:2]])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_before = batch_loss(model, batch)
    trainer = sft.make_trainer(
        model,
        processor,
        sft.ReplayedExamples(records[:2], root, EPISODE),  # as launched runs train: replayed when a batch reads them
        output_dir=tmp_path / "out",
        learning_rate=1e-3,
        max_steps=6,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        warmup_ratio=0.0,
        save_steps=100,
        seed=0,
    )
    result = sft.train(trainer)
    assert result.global_step == 6
    after = dict(model.named_parameters())
    vision = [n for n in before if "visual" in n]
    language = [n for n in before if "visual" not in n]
    assert vision and all(torch.equal(before[n], after[n]) for n in vision)
    assert sum(not torch.equal(before[n], after[n]) for n in language) > len(language) // 2
    loss_after = batch_loss(model, batch)
    assert loss_after < loss_before - 0.1, (loss_before, loss_after)


def two_example_run(trajectories, tmp_path, *, learning_rate):
    """Two examples at batch 1 with a checkpoint every 2 steps: the setting of the resume tests."""
    root, records = trajectories
    examples = [sft.sft_example(r, root, EPISODE) for r in records[:2]]
    out = tmp_path / "out"
    settings = dict(
        output_dir=out, learning_rate=learning_rate, per_device_train_batch_size=1, warmup_ratio=0.0, save_steps=2,
        seed=0,
    )  # fmt: skip
    return examples, out, settings


@pytest.mark.slow
def test_training_resumes_from_the_last_checkpoint(tiny, trajectories, tmp_path):
    examples, out, settings = two_example_run(trajectories, tmp_path, learning_rate=1e-4)
    model, processor = load(tiny)
    first = sft.train(sft.make_trainer(model, processor, examples, max_steps=2, **settings))
    assert first.global_step == 2 and (out / "checkpoint-2").is_dir()
    (out / "checkpoint-4").mkdir()  # a kill during the next save: weights begun, no trainer state
    (out / "checkpoint-4" / "config.json").write_text('{"model_type": ')
    trained = dict(model.named_parameters())
    model, processor = load(tiny)
    trainer = sft.make_trainer(model, processor, examples, max_steps=4, **settings)
    counter = StepCounter()
    trainer.add_callback(counter)
    loaded = []
    trainer.add_callback(FirstStepWeights(loaded))
    resumed = sft.train(trainer)
    assert resumed.global_step == 4 and (out / "checkpoint-4" / "trainer_state.json").is_file()
    assert (out / "incomplete-checkpoint-4").is_dir()  # set aside, not resumed from
    assert counter.steps == 2  # steps 1-2 were not run again
    # training went on from the checkpoint's weights, not from the freshly loaded ones
    assert all(torch.equal(loaded[0][n], trained[n].detach()) for n in trained)


class StepCounter(TrainerCallback):
    steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


class FirstStepWeights(TrainerCallback):
    def __init__(self, store):
        self.store = store

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if not self.store:
            self.store.append({n: p.detach().clone() for n, p in model.named_parameters()})


@pytest.mark.slow
def test_training_inputs_carry_what_rollouts_pass(tiny, trajectories):
    # Rollouts call the model with everything the processor returns; a key dropped in training (mm_token_type_ids
    # places the images' M-RoPE positions) gives a model trained on other positions than it is run with.
    _, processor = load(tiny)
    root, records = trajectories
    example = sft.sft_example(records[0], root, EPISODE)
    text = processor.apply_chat_template(example["messages"], tokenize=False)
    encoded = processor(text=[text], images=example["images"], return_tensors="pt", do_resize=False)
    batch = sft.SFTCollator(processor)([sft.tokenize_example(processor, example)])
    assert set(encoded) <= set(batch)
    for key in encoded:
        assert torch.equal(batch[key].reshape(encoded[key].shape), encoded[key]), key


@pytest.mark.slow
def test_a_finished_run_is_not_trained_again(tiny, trajectories, tmp_path):
    # 5 examples at batch 2 are 3 batches an epoch, so step 2 ends mid-epoch: there Trainer's own resume skips 2
    # batches and runs a third before it looks at max_steps (a re-run of the 8-step smoke run ended at step 9).
    root, records = trajectories
    examples = [sft.sft_example(r, root, EPISODE) for r in records]
    assert len(examples) == 5
    settings = dict(
        output_dir=tmp_path / "out", learning_rate=1e-3, max_steps=2, per_device_train_batch_size=2,
        warmup_ratio=0.0, save_steps=100, seed=0,
    )  # fmt: skip
    model, processor = load(tiny)
    first = sft.train(sft.make_trainer(model, processor, examples, **settings))
    assert first.global_step == 2 and (tmp_path / "out" / "checkpoint-2").is_dir()
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    model, processor = load(tiny)
    trainer = sft.make_trainer(model, processor, examples, **settings)
    assert checkpoints.planned_steps(trainer) == 2
    counter = StepCounter()
    trainer.add_callback(counter)
    again = sft.train(trainer)
    assert again.global_step == 2 and trainer.state.global_step == 2 and counter.steps == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-2"]
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2]  # the first run's history
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters())  # the finished weights


@pytest.mark.slow
def test_lora_training_resumes_with_its_adapter(tiny, trajectories, tmp_path):
    examples, out, settings = two_example_run(trajectories, tmp_path, learning_rate=1e-2)
    model, processor = load(tiny)
    trainer = sft.make_trainer(model, processor, examples, max_steps=2, lora=models.lora_config(rank=4), **settings)
    sft.train(trainer)
    assert (out / "checkpoint-2" / "adapter_model.safetensors").exists()
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert adapters and all("visual" not in n for n in adapters)
    assert any(p.abs().sum() > 0 for n, p in adapters.items() if "lora_B" in n)  # B starts at zero: it trained

    model, processor = load(tiny)
    trainer = sft.make_trainer(model, processor, examples, max_steps=4, lora=models.lora_config(rank=4), **settings)
    counter, loaded = StepCounter(), []
    trainer.add_callback(counter)
    trainer.add_callback(FirstStepWeights(loaded))
    resumed = sft.train(trainer)
    assert resumed.global_step == 4 and counter.steps == 2 and (out / "checkpoint-4").is_dir()
    assert all(torch.equal(loaded[0][n], adapters[n]) for n in adapters)  # went on from the saved adapter


@pytest.mark.slow
def test_mfu_benchmark_runs_the_tiny_config():
    # The GPU benchmark's code path (build from a config, synthetic multimodal batch, step, MFU) on CPU in seconds.
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sft_mfu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--size", "tiny", "--steps", "2", "--warmup", "1", "--seq-len", "96",
         "--image-side", "112", "--dtype", "float32", "--peak-tflops", "0.00001"],  # 10 MFLOP/s: MFU in %
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny on cpu" in done.stdout and "batch 1 x 96 tokens" in done.stdout
    tokens_per_s = float(done.stdout.split("tokens/s ")[1].split()[0])
    mfu = float(done.stdout.split("MFU ")[1].split("%")[0])
    assert tokens_per_s > 0 and mfu > 0


@pytest.mark.slow
def test_mfu_benchmark_batches_hold_image_tokens_and_text_labels():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "sft_mfu", Path(__file__).resolve().parents[1] / "benchmarks" / "sft_mfu.py"
    )
    sft_mfu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sft_mfu)
    batch = sft_mfu.synthetic_batch("tiny", 2, 80, 112, "cpu", torch.float32, torch.Generator().manual_seed(0))
    image = sft_mfu.SIZES["tiny"]["tokens"]["image"]
    assert batch["input_ids"].shape == (2, 80) and ((batch["input_ids"] == image).sum(1) == 16).all()  # (112/28)^2
    assert batch["pixel_values"].shape == (2 * 8 * 8, 3 * 2 * 14 * 14)
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == image).long())
    assert (batch["labels"][:, :18] == sft.IGNORE_INDEX).all() and (batch["labels"][:, 18:] >= 0).all()
    model = sft_mfu.build_model("tiny", torch.float32, "cpu", "sdpa")
    assert model(**batch).loss.item() > 0
    with pytest.raises(ValueError, match="no room"):
        sft_mfu.synthetic_batch("tiny", 1, 16, 112, "cpu", torch.float32, torch.Generator())
