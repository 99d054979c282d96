"""RL as a launched job (notebook 30 with `accelerate_config` or `num_processes` set): `rl_job(...)` describes the run
as a JSON-able dict, `launch_rl` hands it to `pxr.training.launch`, and `python -m pxr.training.rl_job job.json` is what each
`accelerate launch` process runs: make the trainer's arguments (before loading, so that ZeRO-3 shards the load),
load the policy, build the trainer, train (resuming from the last checkpoint), save. The reward gathers each group
across the processes (`pxr.training.rl`), so the rewards do not depend on how many there are.

Tests: tests/test_rl_job.py (two CPU processes on gloo take GRPO steps on the tiny model and save it; the arguments
exist before the model is loaded).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pxr import data, models, viz
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.records import STEP_LOG
from pxr.synthesis import synth_run
from pxr.training import launch, rl, train_log

MODULE = "pxr.training.rl_job"


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
        print(
            f"[pxr.training.rl_job] {len(queries)} queries ({report}), {trainer.args.world_size} processes", flush=True
        )
    rl.train(trainer)
    model_dir = rl.save_policy(trainer, processor, output_dir / "model")
    return {"model_dir": str(model_dir), "global_step": trainer.state.global_step,
            "world_size": trainer.args.world_size}  # fmt: skip


# --------------------------------------------------------------------------------------------- notebook 30


def launches(launching: launch.LaunchConfig) -> bool:
    """Notebook 30 trains in launched processes with an accelerate config or any process count, else here."""
    return bool(launching.accelerate_config or launching.num_processes)


def queries(synth_dir: str | Path, out: Path, *, seed: int, episode_config: EpisodeConfig):
    """(data folder, RL queries, held-out queries, their read reports) of the synthesis run `synth_dir`; empty: a
    small offline data set made under `out/data` (`pxr.synthesis.synth_run.smoke_dataset`)."""
    data_dir = Path(synth_dir) if synth_dir else synth_run.smoke_dataset(out / "data", seed=seed,
                                                                         episode_config=episode_config)  # fmt: skip
    train_queries, train_report = data.read_jsonl(data_dir / synth_run.RL_QUERIES, data.RLQuery)
    held_out, held_out_report = data.read_jsonl(data_dir / synth_run.EVAL_QUERIES, data.RLQuery)
    return data_dir, train_queries, held_out, [train_report, held_out_report]


def sample_queries(train_queries, data_dir: Path, n: int, seed: int) -> list:
    """`n` RL queries drawn with `seed` (the rollouts drawn before and after training), loaded for rollouts."""
    import random

    picked = random.Random(seed).sample(train_queries, min(n, len(train_queries)))
    return [data.query_from_rl(q, data_dir) for q in picked]


@dataclass
class Trained:
    """What an RL run produced: the final model's folder, optimizer steps, and the step log (`steps.jsonl`)."""

    model_dir: Path
    steps: int
    step_log: list[dict[str, Any]] = field(default_factory=list)


def train(policy: models.Policy, data_dir: Path, train_queries, out: Path, reward_config: RewardConfig,
          rl_config: RLConfig, launching: launch.LaunchConfig) -> Trained:  # fmt: skip
    """Notebook 30's training: in launched processes (`launches`; this process lets go of its weights first) or
    here, resuming from the last checkpoint; the final model saved to `out/model` (LoRA merged) and `policy` the
    trained model. Here, one progress bar stands for the Trainer's table of logged steps."""
    episode_config = policy.episode_config
    if launches(launching):  # multi-GPU: accelerate-launched processes; this one stays light
        models.release(policy)
        job = rl_job(policy.path, data_dir, out, episode_config, reward_config, rl_config)
        result = launch_rl(job, **launching.settings())
        final, steps = Path(result["model_dir"]), result["global_step"]
        policy.model, policy.processor = models.load_model(final, episode_config=episode_config)
    else:
        trainer = rl.make_trainer(policy.model, policy.processor, train_queries, data_root=data_dir, output_dir=out,
                                  episode_config=episode_config, reward_config=reward_config, rl_config=rl_config)  # fmt: skip
        train_log.use_progress_bar(trainer, ("pxr/accuracy", "pxr/rapr"))
        rl.train(trainer)
        final, steps = rl.save_policy(trainer, policy.processor, out / "model"), trainer.state.global_step
        if rl_config.lora_rank:  # the adapters are merged into the saved weights; evaluate what was saved
            policy.model, policy.processor = models.load_model(final, episode_config=episode_config)
    return Trained(final, steps, rl.read_step_log(out / STEP_LOG))


def training_figures(step_log: list[dict[str, Any]], target_rate: float) -> list:
    """The step log's curves, one question a figure, smoothed over their faint raw values (`pxr.viz.curves`): does
    the policy use its ops (RaPR against H), does accuracy on the training queries rise, how large are the reward's
    curiosity bonus and penalty, and how much of each batch the loss sees (groups with equal rewards are filtered)."""
    series = {key: rl.step_series(step_log, f"pxr/{key}") for key in
              ("rapr", "accuracy", "curiosity_mean", "penalty_mean", "filtered_group_share", "truncated_share")}  # fmt: skip
    return [
        viz.curves(
            {"RaPR": series["rapr"]},
            references={f"H = {target_rate:g}": target_rate},
            smooth="auto",
            ylabel="share of rollouts",
            title="Do rollouts use ops? RaPR of the sampled rollouts",
        ),  # fmt: skip
        viz.curves(
            {"accuracy": series["accuracy"]},
            smooth="auto",
            ylabel="share of rollouts",
            title="Does accuracy on the training queries rise?",
        ),  # fmt: skip
        viz.curves(
            {"curiosity bonus": series["curiosity_mean"], "penalty": series["penalty_mean"]},
            smooth="auto",
            ylabel="mean per rollout",
            title="How large are the reward's shaping terms?",
        ),  # fmt: skip
        viz.curves(
            {"filtered groups": series["filtered_group_share"], "truncated rollouts": series["truncated_share"]},
            smooth="auto",
            ylabel="share",
            title="How much of each batch is left out of the loss?",
        ),  # fmt: skip
    ]


def final_figures(step_log: list[dict[str, Any]]) -> dict[str, float | None]:
    """RaPR, accuracy and the filtered-group share over the last fifth of the logged steps (the end of training)."""
    logged = [s for s in step_log if "pxr/rapr" in s]
    last = logged[-max(1, len(step_log) // 5) :]
    return {f"final_{key}": sum(s[f"pxr/{key}"] for s in last) / len(last) if last else None
            for key in ("rapr", "accuracy", "filtered_group_share")}  # fmt: skip


def settings(policy: models.Policy, data_dir: Path, train_queries, reward_config: RewardConfig, rl_config: RLConfig,
             launching: launch.LaunchConfig, evaluation: train_log.HeldOutConfig, out: Path) -> dict[str, Any]:  # fmt: skip
    """The settings that matter for reading an RL run, for `pxr.training.train_log.settings_table`."""
    c, r = rl_config, reward_config
    return {
        "RL queries": f"{len(train_queries)} from {data_dir}",
        "starting model": policy.describe(),
        "prompt": policy.episode_config.prompt,
        "trained": train_log.trained_part(c.lora_rank, c.freeze_vision),
        "steps": f"{c.max_steps}, G = {c.num_generations} rollouts a query at temperature {c.temperature:g}",
        "batch": train_log.batch_size(c.per_device_train_batch_size, c.gradient_accumulation_steps, launching)
        + f" rollouts, {c.updates_per_generation} update(s) per generation batch, mu = {c.num_iterations}",
        "optimizer": f"lr {c.learning_rate:g} ({c.lr_scheduler_type}, warm-up {c.warmup_ratio:.0%}), KL {c.kl_coef:g}, "
        f"clip {c.clip_low:g}/{c.clip_high:g}, loss {c.loss_type}, reward scaling {c.scale_rewards}",
        "reward": f"r + {r.curiosity_coef:g} max(H - RaPR, 0) 1[ops] + {r.penalty_coef:g} min(N - n_ops, 0); "
        f"H = {r.curiosity_target_rate:g}, N = {r.penalty_free_ops} ({r.reward_form} form)",
        "loss leaves out": ", ".join(
            part
            for part, on in (
                ("groups with equal rewards", c.filter_uniform_groups),
                ("truncated rollouts", c.mask_truncated),
            )
            if on
        )
        or "nothing",
        "completion tokens": f"<= {c.max_completion_length} a rollout" + (" (vLLM)" if c.use_vllm else ""),
        **train_log.common_settings(policy.episode_config, evaluation, launching, out),
    }


def metrics_record(trained: Trained, train_queries, held_out: train_log.HeldOut,
                   baseline: train_log.HeldOut | None) -> dict[str, Any]:  # fmt: skip
    """Notebook 30's metrics.json: steps, RL queries, the end-of-training figures (`final_figures`), the held-out
    figures (`eval_*`) and those of the starting model before RL (`start_eval_*`)."""
    return {
        "steps": trained.steps,
        "train_queries": len(train_queries),
        **final_figures(trained.step_log),
        **{f"eval_{k}": v for k, v in held_out.metrics.items()},
        **train_log.start_figures(baseline),
    }


if __name__ == "__main__":
    launch.run_job(run)
