"""What notebooks 20 (SFT) and 30 (RL) show and record about a training run, so that the executed notebook reads
like a lab notebook: the settings that matter as a table at the top, the headline figures next (held-out accuracy,
RaPR and valid calls of the trained model beside the model it started from, on the same items), one progress bar
instead of a table row per logged step, and no library warning repeated through the log.

- `settings_table`: a two-column markdown table of chosen settings.
- `held_out_queries` / `evaluate_held_out`: the held-out split (disjoint seeds) sampled the one way both notebooks
  sample it, rolled out greedily and summed up by `pxr.metrics.episode_metrics`, overall and per kind.
- `headline_table`: chosen held-out figures of several models side by side (`HEADLINE_FIGURES`).
- `use_progress_bar`: replaces the Trainer's notebook table (one row per logged step) and its printer with one text
  progress bar (`StepProgress`); the figures stay in the trainer's log history (SFT) or `steps.jsonl` (RL).
- `quiet_library_output` / `quiet_known_warnings`: no weight-loading bars; ignores each library warning of `KNOWN_HARMLESS_WARNINGS`, matched by its exact message
  and category, each with the reason it is harmless.

Tests: tests/test_train_log.py.
"""

from __future__ import annotations

import random
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxr import data, metrics, viz
from pxr.synthesis import synth_run

# Library warnings that training logs would otherwise repeat, each with why it is harmless. Matched by category and
# exact message (the start of it, as `warnings.filterwarnings` matches), so any other warning still shows.
KNOWN_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        FutureWarning,
        "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` "
        "instead.",
        # TRL 1.16 reads the old name around every generation round (trl/models/utils.py); transformers 5.23 keeps it
        # as an alias of `is_activation_checkpointing`, so the value is the same. Raised once per GRPO step.
        "TRL reads transformers' deprecated alias, which returns the same value",
    ),
)


def quiet_library_output() -> None:
    """What a training notebook calls first: `quiet_known_warnings`, and no progress bars from transformers' loading
    and saving of weights (a notebook stores a bar's first state only, "0%", once per checkpoint written)."""
    from transformers.utils import logging as hf_logging

    quiet_known_warnings()
    hf_logging.disable_progress_bar()


def quiet_known_warnings() -> None:
    """Ignore every warning of `KNOWN_HARMLESS_WARNINGS` (by category and exact message) in this process.

    Ignored rather than shown once: libraries reset Python's record of shown warnings whenever they change a warning
    filter (transformers and TRL do it inside training), so a warning on the default "show once per place" filter
    comes back every step."""
    for category, message, _why in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)


def settings_table(settings: dict[str, Any]) -> str:
    """`settings` as a markdown table of two columns, setting and value, in the dict's order."""
    return viz.markdown_table([{"setting": name, "value": value} for name, value in settings.items()])


def trained_part(lora_rank: int, freeze_vision: bool) -> str:
    """Which weights train: the whole model or LoRA on the language model, the vision tower frozen or not."""
    part = f"LoRA of rank {lora_rank} on the language model" if lora_rank else "full fine-tuning"
    return part + (", vision tower frozen" if freeze_vision else ", vision tower trained")


def batch_size(per_device: int, accumulation: int, launching) -> str:
    """Rollouts or trajectories per optimizer step, as a product (the process count when launched)."""
    launched = launching.accelerate_config or launching.num_processes
    count = launching.num_processes or "the config's"
    processes = f" x {count} processes" if launched else ""
    return f"{per_device} per device x {accumulation} accumulated" + processes


def common_settings(episode_config, evaluation: HeldOutConfig, launching, out) -> dict[str, str]:
    """The rows notebooks 20 and 30 share: the episode's budgets and limits, the held-out evaluation, where training
    runs and where the run's files go."""
    e = episode_config
    where = (f"accelerate launch ({launching.accelerate_config or f'{launching.num_processes} processes'})"
             if launching.accelerate_config or launching.num_processes else "this process")  # fmt: skip
    return {
        "episode": f"query image <= {e.image_max_pixels} px, crops {e.crop_min_pixels}-{e.crop_max_pixels} px, "
        f"zoom padding {e.zoom_padding:g}, <= {e.max_ops} ops, <= {e.max_turns} turns ({e.model_family})",
        "held-out evaluation": f"{evaluation.eval_items} items, greedy, {evaluation.eval_max_new_tokens} tokens a turn"
        + (", the starting model too" if evaluation.eval_baseline else ""),
        "training runs in": where,
        "outputs": str(out),
    }


# ------------------------------------------------------------------------------------------- held-out figures

# The held-out figures of the headline table, in `pxr.metrics` vocabulary: overall, on items that need an op
# (zoom-needed) and on items that do not (coarse).
HEADLINE_FIGURES = (
    "items",
    "accuracy",
    "accuracy_zoom_needed",
    "accuracy_coarse",
    "rapr_zoom_needed",
    "rapr_coarse",
    "valid_call_rate_zoom_needed",
    "op_error_rate",
)
# The per-kind figures a run records as `eval_<kind>_<figure>` (which items the model fails on).
KIND_FIGURES = ("items", "valid_call_rate_zoom_needed", "rapr_zoom_needed", "rapr_coarse", "accuracy")
PENDING = "*The headline table appears here when the run ends.*"


@dataclass
class HeldOut:
    """Rollouts of held-out queries and their figures, overall and per query kind."""

    rollouts: list = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recorded(self, prefix: str = "eval_") -> dict[str, Any]:
        """The figures as a run records them: `<prefix><figure>`, then `<prefix><kind>_<figure>` of `KIND_FIGURES`."""
        per_kind = {f"{prefix}{kind}_{k}": v for kind, figures in self.by_kind.items() for k, v in figures.items()
                    if k in KIND_FIGURES}  # fmt: skip
        return {**{f"{prefix}{k}": v for k, v in self.metrics.items()}, **per_kind}

    def tables(self) -> list:
        """The figures as two markdown tables to display: overall, then one row per kind."""
        from IPython.display import Markdown

        kinds = [{"kind": kind, **figures} for kind, figures in self.by_kind.items()]
        return [Markdown(viz.markdown_table([self.metrics])), Markdown(viz.markdown_table(kinds))]

    def save(self, path) -> Path:
        """The rollouts' records as JSON lines (`pxr.rollout.Trajectory.record`), kept for reading."""
        return data.write_jsonl(path, [trajectory.record() for trajectory in self.rollouts])


@dataclass(frozen=True)
class HeldOutConfig:
    """Notebooks 20 and 30's held-out evaluation parameters."""

    eval_items: int = 6  # held-out queries evaluated after training; 0 means none
    eval_max_new_tokens: int = 96  # tokens per turn of the evaluation rollouts
    eval_baseline: bool = True  # also evaluate the starting model on the same items first (the headline's baseline)
    seed: int = 0  # which items: the held-out split shuffled with it

    def queries(self, data_dir) -> list:
        """The items (`held_out_queries`)."""
        return held_out_queries(data_dir, self.eval_items, self.seed)

    def evaluate(self, policy, queries) -> HeldOut:
        """`policy` (`pxr.models.Policy`) on `queries` (`evaluate_held_out`)."""
        return evaluate_held_out(policy.model, policy.processor, queries, policy.episode_config,
                                 max_new_tokens=self.eval_max_new_tokens)  # fmt: skip

    def baseline(self, policy, queries) -> HeldOut | None:
        """The starting policy on the same `queries`, before training; None when `eval_baseline` is off, there are no
        queries, or this process holds no weights (a launched SFT run)."""
        if not self.eval_baseline or not queries or policy.model is None:
            return None
        return self.evaluate(policy, queries)


def held_out_queries(data_dir, n: int, seed: int) -> list:
    """`n` queries of the synthesis run's held-out split (`eval_queries.jsonl`), shuffled with `seed` first: the file
    is ordered by kind, and a sample should mix them. The same `seed` and `n` give the same items."""
    if n <= 0:
        return []
    held_out, _ = data.read_jsonl(Path(data_dir) / synth_run.EVAL_QUERIES, data.RLQuery)
    random.Random(seed).shuffle(held_out)
    return [data.query_from_rl(q, data_dir) for q in held_out[:n]]


def evaluate_held_out(
    model, processor, queries, episode_config, *, max_new_tokens: int, batch_size: int = 8
) -> HeldOut:
    """Greedy rollouts of `queries` (`pxr.rollout.generate_trajectories`) with `episode_metrics` overall and by kind
    (the query's `meta["kind"]`, "?" without one). No queries: empty figures."""
    from pxr.rollout import RolloutConfig, generate_trajectories

    if not queries:
        return HeldOut(metrics=metrics.episode_metrics([]))
    model.eval()
    config = RolloutConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    rollouts = generate_trajectories(
        model, processor, queries, episode_config=episode_config, rollout_config=config, progress=False
    )  # a widget bar is stored as "0%" in an executed notebook
    return summarize(rollouts)


def summarize(rollouts) -> HeldOut:
    """`HeldOut` of finished rollouts: `episode_metrics` of all of them and of each kind's."""
    groups: dict[str, list] = {}
    for trajectory in rollouts:
        groups.setdefault(trajectory.query.meta.get("kind") or "?", []).append(trajectory)
    by_kind = {kind: metrics.episode_metrics(group) for kind, group in sorted(groups.items())}
    return HeldOut(list(rollouts), metrics.episode_metrics(rollouts), by_kind)


def start_figures(baseline: HeldOut | None) -> dict[str, Any]:
    """The starting model's headline figures as a run records them: `start_eval_<figure>` (none if not measured)."""
    if baseline is None or not baseline.rollouts:
        return {}
    return {f"start_eval_{k}": baseline.metrics[k] for k in HEADLINE_FIGURES if k in baseline.metrics}


def headline_table(models: dict[str, HeldOut | dict[str, Any] | None], figures=HEADLINE_FIGURES) -> str:
    """One row per model (name -> its `HeldOut` or figures; None: not measured), the `figures` they have as columns."""
    models = {name: value.metrics if isinstance(value, HeldOut) else value for name, value in models.items()}
    measured = {name: values for name, values in models.items() if values}
    columns = [f for f in figures if any(f in values for values in measured.values())]
    rows = [{"model": name, **{f: (values or {}).get(f) for f in columns}} for name, values in models.items()]
    if len(measured) < len(models):
        columns = [*columns, "note"]
        rows = [row if measured.get(row["model"]) else {**row, "note": "not measured"} for row in rows]
    return viz.markdown_table(rows, ["model", *columns])


def rollout_outputs(rollouts, title: str = "") -> list:
    """What to display for rollouts: an optional bold title, then each rollout's pictures and turns."""
    from IPython.display import Markdown

    shown = [Markdown(f"**{title}**")] if title else []
    for trajectory in rollouts:
        shown += [viz.show_images(*viz.rollout_images(trajectory), height=2.2),
                  Markdown(viz.trajectory_markdown(trajectory.record()))]  # fmt: skip
    return shown


# ------------------------------------------------------------------------------------------- training progress


class StepProgress:
    """A `TrainerCallback` drawing one text progress bar of optimizer steps, with the last value of `figures` (names
    in the trainer's logs) as its postfix. A text bar, not a widget: an executed notebook stores a widget's first
    state only ("0%"), and the bar's last state is what the log should show. `mininterval` seconds between redraws
    keep a long run's stored output short."""

    def __new__(cls, figures: tuple[str, ...] = ("loss",), *, mininterval: float = 30.0, file=None):
        from tqdm.std import tqdm
        from transformers import TrainerCallback

        class _StepProgress(TrainerCallback):
            def __init__(self):
                self.bar = None
                self.figures, self.mininterval, self.file = tuple(figures), mininterval, file

            def on_train_begin(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="steps", unit="step",
                                    mininterval=self.mininterval, file=self.file or sys.stderr, dynamic_ncols=False,
                                    ncols=100)  # fmt: skip

            def on_step_end(self, args, state, control, **kwargs):
                if self.bar is not None:
                    self.bar.update(state.global_step - self.bar.n)

            def on_log(self, args, state, control, logs=None, **kwargs):
                shown = {
                    name: f"{logs[name]:.3g}" for name in self.figures if isinstance((logs or {}).get(name), float)
                }
                if self.bar is not None and shown:
                    self.bar.set_postfix(shown, refresh=False)

            def on_train_end(self, args, state, control, **kwargs):
                if self.bar is not None:
                    self.bar.close()
                    self.bar = None

        return _StepProgress()


def use_progress_bar(trainer, figures: tuple[str, ...] = ("loss",), **kwargs) -> None:
    """Replace the trainer's per-step output (transformers' notebook table, its progress bar, or its printer of
    every log) with one `StepProgress` bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for callback in (NotebookProgressCallback, ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(StepProgress(figures, **kwargs))
