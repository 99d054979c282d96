"""pxr.training.rl_job: RL in two accelerate-launched CPU processes (gloo) takes GRPO steps on the tiny model and saves the
policy; the rewards each process logs are those of the whole batch (groups gathered)."""

import importlib.util
import os
from pathlib import Path

import pytest

from pxr import models
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.synthesis import synth_run
from pxr.training import launch, rl, rl_job

REPO = Path(__file__).resolve().parents[1]
EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate.commands.launch") is None, reason="no accelerate launcher")
def test_two_cpu_processes_take_grpo_steps_and_save(tmp_path):
    data_dir = synth_run.smoke_dataset(tmp_path / "data", seed=0, episode_config=EPISODE)
    model_dir = models.build_tiny_model(tmp_path / "tiny", seed=0)
    # 2 processes × 2 rollouts per step = one group of G = 4 that straddles them.
    config = RLConfig(max_steps=2, num_generations=4, per_device_train_batch_size=2, max_completion_length=24)
    job = rl_job.rl_job(model_dir, data_dir, tmp_path / "run", EPISODE, RewardConfig(), config)
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = rl_job.launch_rl(job, num_processes=2, env=env, echo=None)
    assert result["global_step"] == 2 and result["world_size"] == 2
    assert (Path(result["model_dir"]) / "config.json").exists()
    models.load_model(result["model_dir"], episode_config=EPISODE, device="cpu")  # the saved policy loads
    steps = [e for e in rl.read_step_log(tmp_path / "run" / "steps.jsonl") if "pxr/rapr" in e]
    assert [e["step"] for e in steps] == [1, 2]  # written once, by the main process
    assert launch.LOG_FILE in os.listdir(tmp_path / "run" / "launch")


@pytest.mark.slow
def test_trainer_arguments_exist_before_the_model_is_loaded(tmp_path, monkeypatch):
    """Under ZeRO-3, creating the GRPOConfig registers DeepSpeed's config with transformers; only a model loaded
    after that is loaded sharded. The job must make them in that order and hand the same arguments to the trainer."""
    data_dir = synth_run.smoke_dataset(tmp_path / "data", seed=0, episode_config=EPISODE)
    calls, made = [], {}

    def trainer_args(*args, **kwargs):
        calls.append("arguments")
        made["args"] = object()
        return made["args"]

    def make_trainer(*args, **kwargs):
        calls.append("trainer")
        assert kwargs["args"] is made["args"]
        raise RuntimeError("stop here")

    monkeypatch.setattr(rl, "trainer_args", trainer_args)
    monkeypatch.setattr(rl_job.models, "load_model", lambda *a, **k: calls.append("load") or (None, None))
    monkeypatch.setattr(rl, "make_trainer", make_trainer)
    job = rl_job.rl_job("some/model", data_dir, tmp_path / "run", EPISODE, RewardConfig(), RLConfig())
    with pytest.raises(RuntimeError, match="stop here"):
        rl_job.run(job)
    assert calls == ["arguments", "load", "trainer"]


@pytest.mark.slow
def test_ready_made_arguments_get_the_stop_tokens(tmp_path):
    data_dir = synth_run.smoke_dataset(tmp_path / "data", seed=0, episode_config=EPISODE)
    queries, _ = rl_job.data.read_jsonl(data_dir / synth_run.RL_QUERIES, rl_job.data.RLQuery)
    config = RLConfig(num_generations=2, per_device_train_batch_size=2)
    args = rl.trainer_args(config, tmp_path / "run", EPISODE)
    model, processor = models.load_model(models.build_tiny_model(tmp_path / "tiny", seed=0), episode_config=EPISODE)
    trainer = rl.make_trainer(model, processor, queries, data_root=data_dir, output_dir=tmp_path / "run",
                              episode_config=EPISODE, reward_config=RewardConfig(), rl_config=config, args=args)  # fmt: skip
    assert trainer.args is args and args.output_dir == str(tmp_path / "run" / "checkpoints")
    close = rl.tool_call_close_id(processor)
    assert close in args.generation_kwargs["eos_token_id"] and close in trainer.generation_config.eos_token_id
