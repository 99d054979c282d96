"""Checkpoint resume shared by the SFT and RL trainers.

transformers' `Trainer` resumes a full-model checkpoint by loading its safetensors file into the model as it is,
but Qwen2.5-VL checkpoints are saved under the old key names (`model.layers.*`, `visual.*`): in transformers 5.23
every key misses and training silently restarts from the weights the model had (found by tests/test_sft.py).
`FromPretrainedResume` reloads through `from_pretrained`, which maps the names.

`train_resuming` resumes from the last checkpoint and recognises a finished run: transformers' Trainer, resuming
mid-epoch, skips the trained batches and then runs the next one before it checks `max_steps`, so a re-run of a
finished 8-step smoke run ended at step 9.

`last_checkpoint` takes the newest *complete* checkpoint: the Trainer writes `trainer_state.json` last (after the
weights, optimizer, scheduler and RNG state), so a `checkpoint-N` without a readable one is what a kill during a save
leaves. transformers' `get_last_checkpoint` picks it by its number and every rerun failed on it; here it is moved
aside to `incomplete-checkpoint-N` (kept to look at, never resumed) and the one before it is used.

Tests: tests/test_checkpoints.py; tests/test_sft.py and tests/test_rl.py resume from checkpoints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

STATE_FILE = "trainer_state.json"  # the last file transformers' Trainer writes into a checkpoint
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class FromPretrainedResume:
    """Mix into a `transformers.Trainer` subclass (before it) to resume full-model checkpoints correctly."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from transformers import PreTrainedModel

        model = model if model is not None else self.model
        if not isinstance(model, PreTrainedModel) or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype, device_map="cpu")
        model.load_state_dict(saved.state_dict(), strict=True)


def is_complete(checkpoint) -> bool:
    """Whether the Trainer finished writing this checkpoint: its state file, written last, is there and whole."""
    try:
        json.loads((Path(checkpoint) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(output_dir) -> str | None:
    """The newest complete `checkpoint-N` folder under `output_dir`, or None. Newer incomplete ones (a kill during a
    save) are renamed `incomplete-checkpoint-N`, so that neither a resume nor the Trainer's rotation picks them."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    numbered = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, path in numbered:
        if is_complete(path):
            return str(path)
        aside = path.with_name(f"incomplete-{path.name}")
        while aside.exists():
            aside = aside.with_name(aside.name + "-again")
        try:
            path.rename(aside)
        except FileNotFoundError:  # another process of a distributed run moved it first
            continue
        print(f"[pxr] {path} was cut short (no readable {STATE_FILE}): moved to {aside.name}, not resumed")
    return None


def planned_steps(trainer) -> int:
    """The optimizer steps this trainer's `train()` runs to: max_steps, or epochs x update steps per epoch."""
    return trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]


def train_resuming(trainer):
    """`trainer.train()`, resuming from the last checkpoint in its output_dir when there is one. A checkpoint already
    at the planned step count is a finished run: its weights and state are loaded and no step is taken."""
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    last = last_checkpoint(trainer.args.output_dir)
    state_file = Path(last) / "trainer_state.json" if last else None
    if state_file is not None and state_file.exists():
        state = TrainerState.load_from_json(str(state_file))
        if state.global_step >= planned_steps(trainer):
            if not trainer.is_deepspeed_enabled:  # ZeRO shards load only inside DeepSpeed's engine; a finished
                trainer._load_from_checkpoint(last)  # DeepSpeed run's final model is in its model dir already
            trainer.state = state
            losses = [h["loss"] for h in state.log_history if "loss" in h]
            return TrainOutput(state.global_step, sum(losses) / len(losses) if losses else 0.0, {"resumed": last})
    return trainer.train(resume_from_checkpoint=last)
