"""With 2 processes, a group split across them gets the rewards it gets in 1 process (paper §4: RaPR over
the gathered group), and GRPO finishes when the processes' rollouts take different numbers of tool turns. Runs the
workers under torchrun on CPU (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pxr import models
from pxr.config import RewardConfig
from pxr.synthesis import synth_run
from pxr.training import rl
from tests.rl_fakes import batch

HERE = Path(__file__).parent


@pytest.mark.slow
def test_two_processes_give_the_rewards_of_one(tmp_path):
    envs, answers = batch()
    fn = rl.make_reward_function(RewardConfig(), group_size=4, end_token_ids=[0])
    single = fn(
        prompts=[[]] * len(envs),
        completions=[[{"role": "assistant", "content": a}] for a in answers],
        completion_ids=[[1, 0]] * len(envs),
        environments=envs,
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "dist_reward_worker.py"), str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    both = json.loads((tmp_path / "rank0.json").read_text()) + json.loads((tmp_path / "rank1.json").read_text())
    assert both == single
    # The straddling group (rollouts 4..7) has RaPR 0.25, but its second half alone would have 0.5: no bonus.
    assert single[4:8] == pytest.approx([1.0, 0.0, 0.025, 1.0])
    assert single[8:] == pytest.approx([1.0, 0.0, 0.0, 1.0 + 0.025 - 0.1])


@pytest.mark.slow
def test_processes_whose_rollouts_differ_in_turns_finish(tmp_path):
    """One process's rollouts zoom twice, the other's answer at once: different numbers of generation rounds. With
    DDP nothing is gathered during generation, so both finish (ZeRO-3 without vLLM is refused: test_rl_routing)."""
    synth_run.smoke_dataset(tmp_path / "data", seed=0)
    models.build_tiny_model(tmp_path / "tiny", seed=0)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "dist_rl_worker.py"), str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["global_step"] for r in ranks] == [2, 2]
    assert ranks[0]["routed_turns"] == [2, 2] and ranks[1]["routed_turns"] == [0, 0]
