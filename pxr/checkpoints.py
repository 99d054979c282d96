"""Checkpoint resume shared by the SFT and RL trainers.

transformers' `Trainer` resumes a full-model checkpoint by loading its safetensors file into the model as it is,
but Qwen2.5-VL checkpoints are saved under the old key names (`model.layers.*`, `visual.*`): in transformers 5.23
every key misses and training silently restarts from the weights the model had (found by tests/test_sft.py).
`FromPretrainedResume` reloads through `from_pretrained`, which maps the names.

Tests: tests/test_sft.py and tests/test_rl.py resume from checkpoints.
"""

from __future__ import annotations

from pathlib import Path


class FromPretrainedResume:
    """Mix into a `transformers.Trainer` subclass (before it) to resume full-model checkpoints correctly."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from transformers import PreTrainedModel

        model = model if model is not None else self.model
        if not isinstance(model, PreTrainedModel) or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype, device_map="cpu")
        model.load_state_dict(saved.state_dict(), strict=True)


def last_checkpoint(output_dir) -> str | None:
    """The newest `checkpoint-N` folder under `output_dir`, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
