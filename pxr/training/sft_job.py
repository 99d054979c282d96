"""SFT as a launched job (notebook 20 with `accelerate_config` or `num_processes` set): `sft_job(...)` describes the
run as a JSON-able dict, `launch_sft` hands it to `pxr.training.launch`, and `python -m pxr.training.sft_job job.json` is what each
`accelerate launch` process runs: load, replay, train (resuming from the last checkpoint), save.

Every process replays and tokenizes the trajectories itself (deterministic, so their examples agree) when the
Trainer reads them (`pxr.training.sft.ReplayedExamples`), and the Trainer shards the batches across processes, so a process
holds the images of its own batch only. Every process takes part in saving the final and epoch models
(`pxr.training.sft.save_model`: ZeRO-3 gathers the weights); only the main process writes them and the result.

Tests: tests/test_launch.py (two CPU processes on gloo train the tiny model and save it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pxr import data, models
from pxr.config import EpisodeConfig
from pxr.synthesis import synth_run
from pxr.training import launch, sft, train_log

MODULE = "pxr.training.sft_job"


def sft_job(
    model_name_or_path: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    episode_config: EpisodeConfig,
    *,
    lora_rank: int = 0,
    freeze_vision: bool = True,
    answer_loss_weight: float = 0.0,
    save_model_at_epochs=(),
    **settings,
) -> dict:
    """The job: model, data, episode budgets, where checkpoints (`output_dir/checkpoints`) and the final model
    (`output_dir/model`) go, the epochs whose end also saves a model (`output_dir/model_epoch<N>`, see
    `pxr.training.sft.make_trainer`), and `sft.training_arguments` settings (learning_rate, max_steps, bf16, ...)."""
    output_dir = Path(output_dir)
    return {
        "save_model_at_epochs": list(sft.check_epochs(save_model_at_epochs)),
        "model_name_or_path": str(model_name_or_path),
        "data_dir": str(data_dir),
        "checkpoint_dir": str(output_dir / "checkpoints"),
        "model_dir": str(output_dir / "model"),
        "episode_config": asdict(episode_config),
        "lora_rank": lora_rank,
        "freeze_vision": freeze_vision,
        "answer_loss_weight": answer_loss_weight,
        "training": settings,
    }


def launch_sft(job: dict, *, accelerate_config: str | Path = "", num_processes: int = 0, **kwargs) -> dict:
    """Run `job` under `accelerate launch`; returns the result (model_dir, last_checkpoint, global_step, losses,
    epoch_models)."""
    work_dir = Path(job["checkpoint_dir"]).parent / "launch"
    return launch.launch(
        MODULE, job, work_dir, accelerate_config=accelerate_config, num_processes=num_processes, **kwargs
    )


def _load_dtype(bf16: bool) -> str:
    # bf16 weights only where DeepSpeed keeps fp32 master weights in its optimizer: plain AdamW on bf16 weights
    # would round the paper's lr-1e-6 updates away. Elsewhere fp32 weights with bf16 autocast.
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return "bfloat16" if bf16 and deepspeed else "float32"


def run(job: dict) -> dict:
    """One process's share of the job (called by `launch.run_job`)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars are noise in a streamed log
    episode_config = EpisodeConfig(**job["episode_config"])
    data_dir = Path(job["data_dir"])
    records, report = data.read_jsonl(data_dir / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    # Arguments first: under a DeepSpeed ZeRO-3 launch they make from_pretrained load the weights sharded.
    settings = job["training"]
    epochs = job.get("save_model_at_epochs", [])
    args = sft.training_arguments(job["checkpoint_dir"], **settings)
    args.disable_tqdm = True  # one plain line per logged step: a progress bar in a streamed log is noise
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    model, processor = models.load_model(
        job["model_name_or_path"],
        dtype=_load_dtype(settings.get("bf16", False)),
        device=device,
        episode_config=episode_config,
    )
    examples = sft.ReplayedExamples(records, data_dir, episode_config)  # images replayed when a batch reads them
    trainer = sft.make_trainer(
        model,
        processor,
        examples,
        args=args,
        lora=models.lora_config(rank=job["lora_rank"]) if job["lora_rank"] else None,
        freeze_vision=job["freeze_vision"],
        answer_loss_weight=job.get("answer_loss_weight", 0.0),
        save_model_at_epochs=epochs,
    )
    if launch.is_main_process():
        print(
            f"[pxr.training.sft_job] {len(examples)} trajectories ({report}), {args.world_size} processes", flush=True
        )
    output = sft.train(trainer)
    model_dir = Path(job["model_dir"])
    finished_before = "resumed" in output.metrics and (model_dir / "config.json").exists()
    if not finished_before:
        sft.save_model(trainer, processor, model_dir)  # every process calls it: under ZeRO-3 the weights are gathered
    from transformers.trainer_utils import get_last_checkpoint

    return {
        "model_dir": str(model_dir),
        "last_checkpoint": get_last_checkpoint(job["checkpoint_dir"]),
        "global_step": trainer.state.global_step,
        "epoch_models": {e: str(path) for e, path in sft.epoch_models(model_dir.parent, epochs).items()},
        "world_size": args.world_size,
        "train_seconds": output.metrics.get("train_runtime"),
        "losses": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h],
    }


# --------------------------------------------------------------------------------------------- notebook 20


def launches(launching: launch.LaunchConfig) -> bool:
    """Notebook 20 trains in launched processes with an accelerate config or more than one process, else here."""
    return bool(launching.accelerate_config) or launching.num_processes > 1


def trajectories(synth_dir: str | Path, out: Path, *, seed: int, episode_config: EpisodeConfig):
    """(data folder, trajectory records, read report) of the synthesis run `synth_dir`; empty: a small offline data
    set made under `out/data` (`pxr.synthesis.synth_run.smoke_dataset`)."""
    data_dir = Path(synth_dir) if synth_dir else synth_run.smoke_dataset(out / "data", seed=seed,
                                                                         episode_config=episode_config)  # fmt: skip
    if not (data_dir / synth_run.TRAJECTORIES).exists():
        raise FileNotFoundError(f"no trajectories in {data_dir}: run `pxr run 10_synthesize_data <run>` first or set "
                                "synth_dir")  # fmt: skip
    records, report = data.read_jsonl(data_dir / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    return data_dir, records, report


def corpus(records) -> list[str]:
    """The trajectories' texts, for a fresh tiny model's tokenizer (`pxr.models.starting_model`)."""
    return [t.text for r in records for t in r.turns] + [r.question for r in records]


@dataclass
class Trained:
    """What an SFT run produced: the final model's folder, (step, loss) pairs, optimizer steps, seconds of training
    and the epoch models saved (`save_model_at_epochs`)."""

    model_dir: Path
    losses: list[tuple[int, float]]
    steps: int
    train_seconds: float | None
    epoch_models: dict[int, Path] = field(default_factory=dict)


def train(policy: models.Policy, data_dir: Path, records, out: Path, config: sft.SFTConfig,
          launching: launch.LaunchConfig) -> Trained:  # fmt: skip
    """Notebook 20's training: in launched processes (`launches`) or here, resuming from the last checkpoint under
    `out/checkpoints`; the final model saved to `out/model` (LoRA merged) and loaded into `policy`. Here, one
    progress bar stands for the Trainer's table of logged steps (`pxr.training.train_log.use_progress_bar`)."""
    episode_config, lora = (
        policy.episode_config,
        models.lora_config(rank=config.lora_rank) if config.lora_rank else None,
    )
    if launches(launching):
        models.release(policy)
        job = sft_job(policy.path, data_dir, out, episode_config, lora_rank=config.lora_rank,
                      freeze_vision=config.freeze_vision, answer_loss_weight=config.answer_loss_weight,
                      **config.training_settings())  # fmt: skip
        result = launch_sft(job, **launching.settings())
        policy.model, policy.processor = models.load_model(result["model_dir"], episode_config=episode_config,
                                                           dtype="bfloat16" if config.bf16 else "float32")  # fmt: skip
        return Trained(Path(result["model_dir"]), [tuple(pair) for pair in result["losses"]], result["global_step"],
                       result["train_seconds"], sft.epoch_models(out, config.save_model_at_epochs))  # fmt: skip
    examples = sft.ReplayedExamples(records, data_dir, episode_config)  # replayed when the Trainer reads them
    trainer = sft.make_trainer(policy.model, policy.processor, examples, output_dir=out / "checkpoints", lora=lora,
                               freeze_vision=config.freeze_vision, answer_loss_weight=config.answer_loss_weight,
                               **config.training_settings())  # fmt: skip
    train_log.use_progress_bar(trainer, ("loss",))
    result = sft.train(trainer)  # resumes from the last checkpoint; a finished run is not trained again
    # LoRA merged, as in a launched run; the merge is in place, so `policy.model` is the trained model either way.
    model_dir = sft.save_model(trainer, policy.processor, out / "model")
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return Trained(model_dir, losses, trainer.state.global_step, result.metrics.get("train_runtime"),
                   sft.epoch_models(out, config.save_model_at_epochs))  # fmt: skip


def saved_models(trained: Trained, epochs) -> str:
    """Where the final model went, and each epoch model of `epochs` (or that the run did not finish that epoch)."""
    lines = [f"checkpoint: {trained.model_dir}"]
    for epoch in epochs:
        lines.append(
            f"epoch {epoch} model: {trained.epoch_models.get(epoch, 'not saved: the run did not finish that epoch')}"
        )
    return "\n".join(lines)


def settings(policy: models.Policy, data_dir: Path, records, config: sft.SFTConfig, launching: launch.LaunchConfig,
             evaluation: train_log.HeldOutConfig, out: Path) -> dict[str, Any]:  # fmt: skip
    """The settings that matter for reading an SFT run, for `pxr.training.train_log.settings_table`."""
    c = config
    return {
        "trajectories": f"{len(records)} from {data_dir}",
        "model": policy.describe(),
        "trained": train_log.trained_part(c.lora_rank, c.freeze_vision),
        "length": f"{c.max_steps} steps" if c.max_steps else f"{c.num_train_epochs:g} epochs",
        "batch": train_log.batch_size(c.per_device_train_batch_size, c.gradient_accumulation_steps, launching),
        "optimizer": f"AdamW, lr {c.learning_rate:g} ({c.lr_scheduler_type}, warm-up {c.warmup_ratio:.0%}), "
        f"beta2 {c.adam_beta2:g}, weight decay {c.weight_decay:g}",
        "answer loss weight": f"{c.answer_loss_weight:g}"
        + (" (plain SFT, the paper's)" if not c.answer_loss_weight else ""),  # fmt: skip
        "epoch models": ", ".join(map(str, c.save_model_at_epochs)) or "none",
        **train_log.common_settings(policy.episode_config, evaluation, launching, out),
    }


def metrics_record(trained: Trained, records, held_out: train_log.HeldOut,
                   baseline: train_log.HeldOut | None) -> dict[str, Any]:  # fmt: skip
    """Notebook 20's metrics.json: the losses, steps, seconds, trajectories, epoch models (`model_epoch<N>`), the
    held-out figures (`eval_*`, `eval_<kind>_*`) and those of the base model before SFT (`start_eval_*`)."""
    return {
        "final_loss": trained.losses[-1][1] if trained.losses else None,
        "first_loss": trained.losses[0][1] if trained.losses else None,
        "steps": trained.steps,
        "train_seconds": trained.train_seconds,
        "trajectories": len(records),
        **{f"model_epoch{epoch}": str(path) for epoch, path in trained.epoch_models.items()},
        **held_out.recorded(),
        **train_log.start_figures(baseline),
    }


if __name__ == "__main__":
    launch.run_job(run)
