"""Our runs in the layout of the paper's Table 1 and its §5.2 ablations, and the learning-trap curves (paper Fig. 3).

`collect_runs` walks `outputs/<stem>/<run>/` (metrics.json, params.yaml, run.json and, for RL, steps.jsonl); a
folder it cannot read is counted in the report, not fatal. `classify` puts each SFT, RL or evaluation run in a row
of Table 1 from its stage and parameters: SFT only; RL without curiosity (α = 0); RL; RL without self-correction
data (its SFT model was trained on a synthesis with no self-correction trajectories); controls (the text-only
prompt, a model that had no SFT). `table_rows` gives one flat dict per run with the same columns whichever stage
wrote it (accuracy and RaPR read from whatever figures the run has); `step_curves` gives RaPR and accuracy per
step of every RL run for one plot; `trap_map_figure` draws the learning-trap map (a panel per knob value, RL with and
without curiosity in two colours).

Tests: tests/test_ablations.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SFT_ONLY = "SFT only"
RL_NO_CURIOSITY = "RL without curiosity"
RL = "RL"
RL_NO_SELF_CORRECTION = "RL without self-correction data"
CONTROLS = "controls"
OTHER_MODELS = "other models"  # evaluations of a model none of our runs trained (a released checkpoint)
TABLE_ROWS = (SFT_ONLY, RL_NO_CURIOSITY, RL, RL_NO_SELF_CORRECTION, CONTROLS, OTHER_MODELS)
# What would fill a row that has no run yet (toy line; the paper line swaps toy for paper).
HOW_TO_FILL = {
    SFT_ONLY: "pxr run 20_train_sft toy",
    RL_NO_CURIOSITY: "pxr run 30_train_rl toy_no_curiosity",
    RL: "pxr run 30_train_rl toy",
    RL_NO_SELF_CORRECTION: "pxr pipeline toy_no_correction",
    CONTROLS: "pxr run 40_evaluate toy_text (and toy_blank)",
    OTHER_MODELS: "pxr run 40_evaluate paper (a released checkpoint, on a GPU machine)",
}
TABLE_STAGES = ("20_train_sft", "30_train_rl", "40_evaluate")
# Each column of the table and the figures that fill it, first present wins: 40 writes `accuracy`, 20 and 30
# `eval_accuracy` (held-out rollouts), 30 also `final_accuracy` (its last training steps).
COLUMN_SOURCES = {
    "accuracy": ("accuracy", "eval_accuracy", "final_accuracy"),
    "rapr": ("rapr", "eval_rapr", "final_rapr"),
    "rapr_zoom_needed": ("rapr_zoom_needed", "eval_rapr_zoom_needed"),
    "mean_ops": ("mean_ops", "eval_mean_ops"),
    "train_accuracy": ("final_accuracy",),
    "train_rapr": ("final_rapr",),
}
PARAMETER_COLUMNS = {"curiosity_coef": "α", "curiosity_target_rate": "H", "penalty_coef": "β", "prompt": "prompt"}


@dataclass
class RunRecord:
    stage: str
    run: str
    folder: Path
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    state: str = "?"
    steps: list[dict[str, Any]] = field(default_factory=list)  # steps.jsonl of RL runs
    row: str = ""  # the Table 1 row, set by collect_runs


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def read_steps(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The step log's objects and the number of lines that were not JSON objects (a run killed mid-write)."""
    steps, bad = [], 0
    if not path.exists():
        return steps, bad
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict):
            steps.append(entry)
        else:
            bad += 1
    return steps, bad


def collect_runs(outputs_root: str | Path, *, include_unfinished: bool = False) -> tuple[list[RunRecord], dict]:
    """Every run folder with a metrics.json under `outputs_root`, classified; and a report of what was skipped."""
    root = Path(outputs_root)
    report = {"folders": 0, "unreadable": [], "unfinished": [], "bad_step_lines": 0}
    found = []
    for metrics_path in sorted(root.glob("*/*/metrics.json")):
        folder = metrics_path.parent
        report["folders"] += 1
        try:
            metrics = _read_json(metrics_path)
            params = yaml.safe_load((folder / "params.yaml").read_text()) if (folder / "params.yaml").exists() else {}
            record = _read_json(folder / "run.json") or {}
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
            report["unreadable"].append(f"{folder.relative_to(root)}: {type(err).__name__}")
            continue
        if not isinstance(metrics, dict) or not isinstance(params or {}, dict):
            report["unreadable"].append(f"{folder.relative_to(root)}: not a mapping")
            continue
        state = record.get("state", "?")
        if state != "finished" and not include_unfinished:
            report["unfinished"].append(f"{folder.relative_to(root)} ({state})")
            continue
        steps, bad = read_steps(folder / "steps.jsonl")
        report["bad_step_lines"] += bad
        found.append(RunRecord(folder.parent.name, folder.name, folder, metrics, params or {}, state, steps))
    for run in found:
        run.row = classify(run, root)
    return found, report


def _stage_kind(stage: str) -> str:
    return stage.split("_", 1)[0]  # "20", "30", "40": the stage's place, whatever its full name


def _referenced_run(params: dict[str, Any], stage_number: str) -> tuple[str, str] | None:
    """(stage, run) of the first parameter that names an outputs/<NN_...>/<run> folder of that stage."""
    for value in params.values():
        if isinstance(value, str) and (match := re.search(rf"outputs/({stage_number}_[^/]+)/([^/]+)", value)):
            return match.group(1), match.group(2)
    return None


def had_self_correction_data(rl_params: dict[str, Any], outputs_root: Path) -> bool | None:
    """Whether the SFT run an RL run starts from trained on self-correction trajectories: its synthesis run's
    `self_correction_share` (or its variant shares); None when the chain cannot be followed."""
    sft = _referenced_run({"sft_dir": rl_params.get("sft_dir", "")}, "20")
    if sft is None:
        return None
    sft_params_path = outputs_root / sft[0] / sft[1] / "params.yaml"
    sft_params = yaml.safe_load(sft_params_path.read_text()) if sft_params_path.exists() else None
    synth = _referenced_run({"synth_dir": (sft_params or {}).get("synth_dir", "")}, "10")
    if synth is None:
        return None
    synth_folder = outputs_root / synth[0] / synth[1]
    share = (_read_json(synth_folder / "metrics.json") or {}).get("self_correction_share")
    if share is not None:
        return share > 0
    synth_params = yaml.safe_load((synth_folder / "params.yaml").read_text()) if synth_folder.exists() else None
    if synth_params and "share_single" in synth_params:
        keys = ("share_wrong_crop", "share_two_wrong", "share_overlarge", "video_share_wrong_frames")
        return any(synth_params.get(k, 0) for k in keys)
    return None


def classify(run: RunRecord, outputs_root: Path) -> str:
    """The Table 1 row of a run; "" for stages the table does not show (synthesis, the tour, these notebooks)."""
    kind = _stage_kind(run.stage)
    if kind == "20":
        return CONTROLS if run.params.get("prompt") == "text" else SFT_ONLY
    if kind == "30":
        if run.params.get("prompt") == "text" or not (
            run.params.get("sft_dir") or run.params.get("model_name_or_path")
        ):
            return CONTROLS  # the text-only baseline, or RL on a model that never had the SFT warm start
        if had_self_correction_data(run.params, outputs_root) is False or "no_self" in run.params.get("sft_dir", ""):
            return RL_NO_SELF_CORRECTION
        return RL_NO_CURIOSITY if run.params.get("curiosity_coef", 0.5) == 0 else RL
    if kind == "40":
        control = run.params.get("control", run.metrics.get("control", "none"))
        if run.params.get("prompt") == "text" or control not in ("none", "", None):
            return CONTROLS  # no ops, or ops that return blank images
        source = _referenced_run(run.params, "30") or _referenced_run(run.params, "20")
        if source is None:
            return OTHER_MODELS if run.params.get("model_path") else CONTROLS  # a released model, or untrained
        folder = outputs_root / source[0] / source[1]
        params = yaml.safe_load((folder / "params.yaml").read_text()) if (folder / "params.yaml").exists() else {}
        return classify(RunRecord(source[0], source[1], folder, {}, params or {}), outputs_root)
    return ""


def _first(metrics: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((metrics[k] for k in keys if metrics.get(k) is not None), None)


def table_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """One flat dict per SFT/RL/eval run, in Table 1 order: row, run, stage, α, H, β, prompt, the figures."""
    order = {row: i for i, row in enumerate(TABLE_ROWS)}
    shown = sorted((r for r in runs if r.row), key=lambda r: (order[r.row], r.stage, r.run))
    rows = []
    for run in shown:
        row = {"row": run.row, "run": run.run, "stage": run.stage}
        if _stage_kind(run.stage) == "40":
            row["benchmark"] = run.params.get("benchmark", run.metrics.get("benchmark"))
        if _stage_kind(run.stage) == "30":
            row.update({label: run.params.get(name) for name, label in PARAMETER_COLUMNS.items()})
        row.update({column: _first(run.metrics, keys) for column, keys in COLUMN_SOURCES.items()})
        rows.append(row)
    return rows


def missing_rows(runs: list[RunRecord]) -> dict[str, str]:
    """Table 1 rows no run fills yet, with the command that would fill each."""
    filled = {r.row for r in runs}
    return {row: HOW_TO_FILL[row] for row in TABLE_ROWS if row not in filled}


def evaluation_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Every numeric figure of the evaluation runs (benchmark breakdowns, whatever 40 wrote), one row each."""
    rows = []
    for run in runs:
        if _stage_kind(run.stage) == "40":
            figures = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            rows.append({"row": run.row, "run": run.run, **figures})
    return rows


def smooth(points: list[tuple[float, float]], window: int) -> list[tuple[float, float]]:
    """Trailing moving average over `window` points (1 keeps them); RL step figures are noisy."""
    if window <= 1:
        return points
    values = [y for _, y in points]
    averaged = []
    for i, (x, _) in enumerate(points):
        recent = values[max(0, i - window + 1) : i + 1]
        averaged.append((x, sum(recent) / len(recent)))
    return averaged


def step_curves(runs: list[RunRecord], keys=("pxr/rapr", "pxr/accuracy"), *, window: int = 1) -> dict[str, list]:
    """`<run> <figure>` -> [(step, value)] for every RL run with a step log: the learning-trap plot's series."""
    series = {}
    for run in runs:
        if _stage_kind(run.stage) != "30" or not run.steps:
            continue
        for key in keys:
            points = [(s["step"], s[key]) for s in run.steps if s.get(key) is not None and "step" in s]
            if points:
                series[f"{run.run} {key.removeprefix('pxr/')}"] = smooth(points, window)
    return series


def summary_metrics(runs: list[RunRecord], report: dict) -> dict[str, Any]:
    """The notebook's flat metrics: how many runs, and how many in each Table 1 row."""
    metrics: dict[str, Any] = {"runs": sum(bool(r.row) for r in runs), "rl_runs": 0}
    for row in TABLE_ROWS:
        metrics[f"runs_{row.lower().replace(' ', '_').replace('-', '_')}"] = sum(r.row == row for r in runs)
    metrics["rl_runs"] = sum(_stage_kind(r.stage) == "30" for r in runs)
    metrics["unreadable_folders"] = len(report["unreadable"])
    return metrics


@dataclass(frozen=True)
class AblationsConfig:
    """Notebook 50's parameters."""

    outputs_root: str = ""  # empty means the checkout's outputs/
    smooth_steps: int = 5  # moving-average window of the step curves
    include_unfinished: bool = False  # also show failed and running runs

    def __post_init__(self):
        if self.smooth_steps < 1:
            raise ValueError("smooth_steps must be >= 1")

    def root(self) -> Path:
        from pxr.params import repo_root

        return Path(self.outputs_root) if self.outputs_root else repo_root() / "outputs"


def learning_trap_figure(series: dict[str, list], *, title: str = "RL runs: RaPR (solid) and accuracy (dashed)"):
    """Every RL run's RaPR and accuracy on one axis: one colour per run, RaPR solid, accuracy dashed (paper Fig. 3:
    without curiosity RaPR falls towards zero while accuracy holds)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.6))
    ax = fig.add_subplot()
    runs = list(dict.fromkeys(name.rsplit(" ", 1)[0] for name in series))
    colours = {run: f"C{i % 10}" for i, run in enumerate(runs)}
    for name, points in series.items():
        run, figure = name.rsplit(" ", 1)
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            color=colours[run],
            linestyle="-" if figure == "rapr" else "--",
            label=run if figure == "rapr" else None,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("share of rollouts")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    if runs:
        ax.legend(fontsize="small", ncol=max(1, len(runs) // 8), loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


TRAP_PREFIX = "trap_"  # the learning-trap map's RL runs (params/30_train_rl/grid_trap_k*.yaml)


def trap_map_figure(runs: list[RunRecord], *, window: int = 1, prefix: str = TRAP_PREFIX):
    """The learning-trap map: one panel per value of the knob (the query budget, `image_max_pixels`, of the RL runs
    named `prefix`...), RL with curiosity (α > 0) in one colour and without in another, each seed a line; sampled
    RaPR solid, accuracy dashed; H and H/2 as dotted lines (the target: without curiosity RaPR falls under H/2 while
    with it it stays at or above H). Draws whatever has run; None when no such run has a step log."""
    from matplotlib.figure import Figure

    trap = [r for r in runs if _stage_kind(r.stage) == "30" and r.run.startswith(prefix) and r.steps]
    if not trap:
        return None
    knobs = sorted({int(r.params.get("image_max_pixels", 0)) for r in trap})
    fig = Figure(figsize=(3.4 * len(knobs), 3.2))
    axes = fig.subplots(1, len(knobs), squeeze=False, sharey=True)[0]
    for ax, knob in zip(axes, knobs, strict=True):
        for run in sorted((r for r in trap if int(r.params.get("image_max_pixels", 0)) == knob), key=lambda r: r.run):
            curious = float(run.params.get("curiosity_coef", 0.0)) > 0
            colour = "C1" if curious else "C0"
            for key, style in (("pxr/rapr", "-"), ("pxr/accuracy", "--")):
                points = smooth(
                    [(s["step"], s[key]) for s in run.steps if s.get(key) is not None and "step" in s], window
                )
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(
                        xs, ys, color=colour, linestyle=style, linewidth=1.0, label=run.run if style == "-" else None
                    )
        target = float(trap[0].params.get("curiosity_target_rate", 0.3))
        for level in (target, target / 2):
            ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"query budget {knob} px", fontsize="medium")
        ax.set_xlabel("step")
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("RaPR (solid), accuracy (dashed)")
    axes[0].set_ylim(-0.02, 1.02)
    fig.suptitle("learning trap: with curiosity (orange) and without (blue)", fontsize="medium")
    fig.tight_layout()
    return fig
