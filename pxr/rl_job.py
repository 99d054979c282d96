"""RL as a launched job (notebook 30 with `accelerate_config` or `num_processes` set): `rl_job(...)` describes the run
as a JSON-able dict, `launch_rl` hands it to `pxr.launch`, and `python -m pxr.rl_job job.json` is what each
`accelerate launch` process runs: make the trainer's arguments (before loading, so that ZeRO-3 shards the load),
load the policy, build the trainer, train (resuming from the last checkpoint), save. The reward gathers each group
across the processes (`pxr.rl`), so the rewards do not depend on how many there are.

Tests: tests/test_rl_job.py (two CPU processes on gloo take GRPO steps on the tiny model and save it; the arguments
exist before the model is loaded).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from pxr import data, launch, models, rl, synth_run
from pxr.config import EpisodeConfig, RewardConfig, RLConfig

MODULE = "pxr.rl_job"


def rl_job(
    model_name_or_path: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    episode_config: EpisodeConfig,
    reward_config: RewardConfig,
    rl_config: RLConfig,
) -> dict:
    """The job: the starting policy, the synthesis run with the RL queries, the configs, and where the step log,
    checkpoints (`output_dir/checkpoints`) and the final model (`output_dir/model`) go."""
    return {
        "model_name_or_path": str(model_name_or_path),
        "data_dir": str(data_dir),
        "output_dir": str(output_dir),
        "episode_config": asdict(episode_config),
        "reward_config": asdict(reward_config),
        "rl_config": asdict(rl_config),
    }


def launch_rl(job: dict, *, accelerate_config: str | Path = "", num_processes: int = 0, **kwargs) -> dict:
    """Run `job` under `accelerate launch`; returns the result (model_dir, global_step, world_size)."""
    return launch.launch(
        MODULE,
        job,
        Path(job["output_dir"]) / "launch",
        accelerate_config=accelerate_config,
        num_processes=num_processes,
        **kwargs,
    )


def run(job: dict) -> dict:
    """One process's share of the job (called by `launch.run_job`)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars are noise in a streamed log
    episode_config = EpisodeConfig(**job["episode_config"])
    rl_config = RLConfig(**job["rl_config"])
    data_dir, output_dir = Path(job["data_dir"]), Path(job["output_dir"])
    queries, report = data.read_jsonl(data_dir / synth_run.RL_QUERIES, data.RLQuery)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    # The trainer's arguments first: under DeepSpeed ZeRO-3 they register its config, so the load below is sharded.
    args = rl.trainer_args(rl_config, output_dir, episode_config)
    model, processor = models.load_model(
        job["model_name_or_path"], dtype="float32", device=device, episode_config=episode_config
    )  # fp32 master weights; bf16 runs under autocast (rl_config.bf16)
    trainer = rl.make_trainer(
        model,
        processor,
        queries,
        data_root=data_dir,
        output_dir=output_dir,
        episode_config=episode_config,
        reward_config=RewardConfig(**job["reward_config"]),
        rl_config=rl_config,
        args=args,
    )
    trainer.args.disable_tqdm = True  # one plain line per logged step
    if launch.is_main_process():
        print(f"[pxr.rl_job] {len(queries)} queries ({report}), {trainer.args.world_size} processes", flush=True)
    rl.train(trainer)
    model_dir = rl.save_policy(trainer, processor, output_dir / "model")
    return {"model_dir": str(model_dir), "global_step": trainer.state.global_step,
            "world_size": trainer.args.world_size}  # fmt: skip


if __name__ == "__main__":
    launch.run_job(run)
