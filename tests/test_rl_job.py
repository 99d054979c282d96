"""pxr.rl_job: RL in two accelerate-launched CPU processes (gloo) takes GRPO steps on the tiny model and saves the
policy; the rewards each process logs are those of the whole batch (groups gathered)."""

import importlib.util
import os
from pathlib import Path

import pytest

from pxr import launch, models, rl, rl_job, synth_run
from pxr.config import EpisodeConfig, RewardConfig, RLConfig

REPO = Path(__file__).resolve().parents[1]
EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)


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
