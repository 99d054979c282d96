"""SFT as a launched job (notebook 20 with `accelerate_config` or `num_processes` set): `sft_job(...)` describes the
run as a JSON-able dict, `launch_sft` hands it to `pxr.launch`, and `python -m pxr.sft_job job.json` is what each
`accelerate launch` process runs: load, replay, train (resuming from the last checkpoint), save.

Every process replays and tokenizes the trajectories itself (deterministic, so their examples agree) when the
Trainer reads them (`pxr.sft.ReplayedExamples`), and the Trainer shards the batches across processes, so a process
holds the images of its own batch only. Every process takes part in saving the final and epoch models
(`pxr.sft.save_model`: ZeRO-3 gathers the weights); only the main process writes them and the result.

Tests: tests/test_launch.py (two CPU processes on gloo train the tiny model and save it).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from pxr import data, launch, models, sft, synth_run
from pxr.config import EpisodeConfig

MODULE = "pxr.sft_job"


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
    `pxr.sft.make_trainer`), and `sft.training_arguments` settings (learning_rate, max_steps, bf16, ...)."""
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
        print(f"[pxr.sft_job] {len(examples)} trajectories ({report}), {args.world_size} processes", flush=True)
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


if __name__ == "__main__":
    launch.run_job(run)
