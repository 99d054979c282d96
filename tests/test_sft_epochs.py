"""pxr.training.sft epoch models (`save_model_at_epochs`): the model at the end of epoch 1 is saved as a self-contained folder
that `pxr.models.load_model` reads, it is the model of that moment (not the final one), and resuming neither writes
it again nor skips it; with LoRA it is merged while training goes on with the adapters. The released recipe starts RL
from this ~1-epoch warm-start model (params/30_train_rl/paper.yaml)."""

import pytest
import torch
from transformers import TrainerCallback

from pxr import data, models
from pxr.config import EpisodeConfig
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TemplateTeacher
from pxr.training import sft

EPISODE = EpisodeConfig()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    items = synth_run.write_seed_items("read", 2, 0, out, split="train")
    synth_run.synthesize(
        items, out, TemplateTeacher(seed=0), synth_config=synth.SynthConfig(seed=0), episode_config=EPISODE,
        progress=False,
    )  # fmt: skip
    records, _ = data.read_jsonl(out / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    assert len(records) == 2
    return [sft.sft_example(r, out, EPISODE) for r in records]


def load(path):
    return models.load_model(path, device="cpu", dtype="float32", episode_config=EPISODE)


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


class Stop(Exception):
    """Raised to interrupt a run, as a killed job would be."""


class StopAt(TrainerCallback):
    """Interrupts the run once `step` steps are done and saved (before the next step begins)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Stop


class WeightsAt(TrainerCallback):
    """The model's weights after each optimizer step, by step."""

    def __init__(self):
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = weights(model)


def trainer_for(tiny, examples, run, **extra):
    """Two examples at batch 1: 2 steps an epoch, 2 epochs; the model at the end of epoch 1 is saved."""
    model, processor = load(tiny)
    settings = dict(
        output_dir=run / "checkpoints", learning_rate=1e-3, num_train_epochs=2.0, per_device_train_batch_size=1,
        warmup_ratio=0.0, save_steps=100, seed=0, save_model_at_epochs=[1],
    )  # fmt: skip
    return sft.make_trainer(model, processor, examples, **{**settings, **extra}), processor


def saver_of(trainer) -> sft.EpochModelSaver:
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, sft.EpochModelSaver))


@pytest.mark.slow
def test_the_epoch_1_model_loads_and_is_the_model_after_epoch_1(tiny, examples, tmp_path):
    run = tmp_path / "run"
    trainer, processor = trainer_for(tiny, examples, run)
    seen = WeightsAt()
    trainer.add_callback(seen)
    assert sft.train(trainer).global_step == 4
    final = sft.save_model(trainer, processor, run / "model")
    assert sft.epoch_models(run, [1, 2]) == {1: run / "model_epoch1"}  # epoch 2 was not asked for
    assert not (run / "model_epoch1.partial").exists()
    epoch1, _ = load(run / "model_epoch1")
    assert set(weights(epoch1)) == set(seen.by_step[2])
    assert all(torch.equal(weights(epoch1)[n], seen.by_step[2][n]) for n in seen.by_step[2])  # the step-2 model
    last, _ = load(final)
    language = [n for n in seen.by_step[2] if "visual" not in n]
    assert sum(not torch.equal(weights(last)[n], weights(epoch1)[n]) for n in language) > len(language) // 2


@pytest.mark.slow
def test_a_run_stopped_inside_an_epoch_saves_no_model_for_it(tiny, examples, tmp_path):
    # max_steps ends the run at epoch 1.5, where Trainer still calls on_epoch_end: epoch 2 is not finished.
    run = tmp_path / "run"
    trainer, _ = trainer_for(tiny, examples, run, max_steps=3, save_model_at_epochs=[1, 2])
    sft.train(trainer)
    assert sft.epoch_models(run, [1, 2]) == {1: run / "model_epoch1"} and list(saver_of(trainer).saved) == [1]


@pytest.mark.slow
def test_resuming_after_epoch_1_keeps_its_model(tiny, examples, tmp_path):
    run = tmp_path / "run"
    trainer, _ = trainer_for(tiny, examples, run, save_steps=2)
    trainer.add_callback(StopAt(3))
    with pytest.raises(Stop):
        sft.train(trainer)
    saved = run / "model_epoch1" / "model.safetensors"
    first = (saved.read_bytes(), saved.stat().st_mtime_ns)
    trainer, _ = trainer_for(tiny, examples, run, save_steps=2)
    assert sft.train(trainer).global_step == 4  # resumed from checkpoint-2
    assert saver_of(trainer).saved == {} and (saved.read_bytes(), saved.stat().st_mtime_ns) == first


@pytest.mark.slow
def test_resuming_from_the_epoch_end_checkpoint_saves_a_missing_epoch_model(tiny, examples, tmp_path):
    # Interrupted between the checkpoint at the end of epoch 1 and the epoch model: the checkpoint's weights are it.
    run = tmp_path / "run"
    trainer, _ = trainer_for(tiny, examples, run, save_steps=2)
    seen = WeightsAt()
    trainer.add_callback(seen)
    trainer.add_callback(StopAt(3))
    with pytest.raises(Stop):
        sft.train(trainer)
    for path in (run / "model_epoch1").iterdir():
        path.unlink()
    (run / "model_epoch1").rmdir()
    trainer, _ = trainer_for(tiny, examples, run, save_steps=2)
    assert sft.train(trainer).global_step == 4
    assert list(saver_of(trainer).saved) == [1]
    epoch1, _ = load(run / "model_epoch1")
    assert all(torch.equal(weights(epoch1)[n], seen.by_step[2][n]) for n in seen.by_step[2])


@pytest.mark.slow
def test_resuming_past_a_missing_epoch_model_warns(tiny, examples, tmp_path):
    run = tmp_path / "run"
    trainer, _ = trainer_for(tiny, examples, run, save_model_at_epochs=[], save_steps=3)
    trainer.add_callback(StopAt(3))
    with pytest.raises(Stop):
        sft.train(trainer)  # no epoch model asked for: checkpoint-3 (epoch 1.5) only
    trainer, _ = trainer_for(tiny, examples, run, save_steps=3)
    with pytest.warns(UserWarning, match="model_epoch1 is missing and cannot be made again"):
        sft.train(trainer)
    assert sft.epoch_models(run, [1]) == {}


@pytest.mark.slow
def test_lora_epoch_model_is_merged_and_training_goes_on_with_the_adapters(tiny, examples, tmp_path):
    run = tmp_path / "run"
    trainer, processor = trainer_for(tiny, examples, run, lora=models.lora_config(rank=4), learning_rate=1e-2)
    assert sft.train(trainer).global_step == 4
    assert any("lora_" in n for n, _ in trainer.model.named_parameters())  # the epoch save merged a copy
    final = sft.save_model(trainer, processor, run / "model")
    base, _ = load(tiny)
    epoch1, _ = load(run / "model_epoch1")
    last, _ = load(final)
    base, epoch1, last = weights(base), weights(epoch1), weights(last)
    assert set(epoch1) == set(base) == set(last)  # plain checkpoints: no adapter keys
    assert not (run / "model_epoch1" / "adapter_model.safetensors").exists()
    assert any(not torch.equal(epoch1[n], base[n]) for n in base)  # the adapters after epoch 1, merged
    assert any(not torch.equal(last[n], epoch1[n]) for n in base)  # epoch 2 trained on


def test_epochs_must_be_whole_numbers(tiny, examples, tmp_path):
    for bad in ([0], [1.5], [True]):
        with pytest.raises(ValueError, match="save_model_at_epochs"):
            trainer_for(tiny, examples, tmp_path / "run", save_model_at_epochs=bad)
