"""Our runs in the layout of the paper's Table 1 and its §5.2 ablations, and the learning-trap curves (paper Fig. 3).

`collect_runs` walks `outputs/<stem>/<run>/` (metrics.json, params.yaml, run.json and, for RL, steps.jsonl); a
folder it cannot read is counted in the report, not fatal. `classify` puts each SFT, RL or evaluation run in a row
of Table 1 from its stage and parameters: SFT only; RL without curiosity (α = 0); RL; RL without self-correction
data (its SFT model was trained on a synthesis with no self-correction trajectories); controls (the text-only
prompt, blank observations, a model that had no SFT); other models.

`table1` gives one row per model variant: a training run joined with the evaluations of its model (the main suite's
zoom-needed and coarse accuracy, the named hard suite, the paper's benchmarks), seeds of one variant (runs whose
parameters differ only in the seed) as mean ± half the range; `baseline_rows` the chance and majority-answer rows;
`table1_markdown_rows` the shown columns, the paper's first; `all_metrics` everything else for metrics.json
(`table_rows`: every run's flat row, whatever stage wrote it). `learning_trap_figure` draws small multiples: a
panel per knob value of the trap map (`trap_knobs`, `trap_panels`) or per RL line (`line_panels`), with and without
curiosity in two colours, seeds thin and their mean thick, sampled RaPR above accuracy.

Tests: tests/test_ablations.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pxr.metrics import answer_baselines
from pxr.records import STEP_LOG

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
        steps, bad = read_steps(folder / STEP_LOG)
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


def run_curves(run: RunRecord, keys=("pxr/rapr", "pxr/accuracy"), *, window: int = 1) -> dict[str, list]:
    """figure -> [(step, value)] of one RL run's step log, smoothed over `window` steps (figures it lacks: [])."""
    return {
        key: smooth([(s["step"], s[key]) for s in run.steps if s.get(key) is not None and "step" in s], window)
        for key in keys
    }


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
        from pxr.runner.params import repo_root

        return Path(self.outputs_root) if self.outputs_root else repo_root() / "outputs"


# ------------------------------------------------------------------------ Table 1: one row per model variant

MAIN_SUITE = "synthetic-zoom"  # the toy line's held-out grid items, zoom-needed and coarse
NAMED_SUITE = "synthetic-zoom-named"  # the hard held-out suite: the target named by colour and shape
PAPER_SUITES = ("vstar", "tallyqa-complex", "infovqa", "mvbench")  # paper §5, Table 1's benchmarks, in its order
RUN_ONLY_PARAMETERS = ("output_dir", "run_name")  # parameters that name a run, not what it trains
SEED_PARAMETER = "seed"  # runs whose parameters differ only in it are seeds of one variant
ARM_PARAMETER = "curiosity_coef"  # α (paper §4): the arms of the learning-trap figures
# The shown columns, the paper's first (paper §5, Table 1: accuracy per benchmark; then RaPR; then how the ops went).
# A column shows when some row has a figure in it; every other figure of every run goes to metrics.json.
TABLE_COLUMNS = (
    ("acc_zoom_needed", "zoom-needed acc"),
    ("acc_coarse", "coarse acc"),
    ("acc_all", "acc, all items"),  # only where the items do not say which need an op
    ("acc_named", "named-suite acc"),
    *((f"acc_{suite}", f"{suite} acc") for suite in PAPER_SUITES),
    ("rapr_zoom_needed", "RaPR zoom-needed"),
    ("rapr_coarse", "RaPR coarse"),
    ("rapr_all", "RaPR, all items"),
    ("op_error_rate", "op errors"),
    ("valid_calls", "valid calls"),
)
VALID_CALLS = ("eval_valid_call_rate_zoom_needed", "eval_valid_tool_call_rate_op_needed")  # today's name, then older
BASELINE_ROW = "baselines"
CHANCE = "chance (answer prior)"  # Σ_a p(a)²: guessing from the gold answers' distribution
MAJORITY = "majority answer per kind"  # each kind's most common gold answer, always
NAMED_SUITE_HINT = "pxr run 40_evaluate toy_named"


@dataclass
class Variant:
    """One model (a training run and its evaluations, or an evaluation of a model none of our runs trained)."""

    row: str
    name: str
    group: tuple  # variants with the same group are seeds of one table row
    figures: dict[str, Any]
    runs: list[str]  # stage/run of every record behind it
    seed: Any = None
    source: str = ""  # where the main-suite figures come from: evaluation (notebook 40) or held-out (20 / 30)


def _params_key(params: dict[str, Any], drop: tuple[str, ...]) -> str:
    return json.dumps({k: v for k, v in params.items() if k not in drop}, sort_keys=True, default=str)


def _score(metrics: dict[str, Any]) -> Any:
    """A benchmark's score: the figure its `metric` names (accuracy, ANLS)."""
    return metrics.get(metrics.get("metric") or "accuracy", metrics.get("accuracy"))


def _benchmark(run: RunRecord) -> str:
    return run.params.get("benchmark") or run.metrics.get("benchmark") or MAIN_SUITE


def _model_figures(training: RunRecord | None, evals: dict[str, RunRecord]) -> tuple[dict[str, Any], str]:
    """The shown figures of one model: the main suite from its evaluation (else its training run's held-out
    rollouts), the named and paper suites from their evaluations, valid calls from the held-out rollouts."""
    figures: dict[str, Any] = {}
    source = ""
    if MAIN_SUITE in evals:
        m, prefix, source = evals[MAIN_SUITE].metrics, "", "evaluation"
    elif training is not None and any(k.startswith("eval_") for k in training.metrics):
        m, prefix, source = training.metrics, "eval_", "held-out"
    else:
        m, prefix = {}, ""
    for column in ("accuracy_zoom_needed", "accuracy_coarse", "rapr_zoom_needed", "rapr_coarse", "op_error_rate"):
        figures[column.replace("accuracy", "acc")] = m.get(prefix + column)
    if figures["acc_zoom_needed"] is None and figures["acc_coarse"] is None:  # items without the needs-op split
        figures["acc_all"], figures["rapr_all"] = m.get(prefix + "accuracy"), m.get(prefix + "rapr")
    if training is not None:
        figures["valid_calls"] = _first(training.metrics, VALID_CALLS)
    for benchmark, run in evals.items():
        if benchmark != MAIN_SUITE:
            figures["acc_named" if benchmark == NAMED_SUITE else f"acc_{benchmark}"] = _score(run.metrics)
    return figures, source


def model_variants(runs: list[RunRecord]) -> list[Variant]:
    """Every model our records show: each SFT and RL run with the evaluations of its model (one per benchmark, the
    first by run name; the others stay in metrics.json), and evaluations of other models (controls, released
    checkpoints), an evaluation of the main and the named suite of the same model and control joined."""
    training = {(r.stage, r.run): r for r in runs if r.row and _stage_kind(r.stage) in ("20", "30")}
    evals: dict[tuple, dict[str, RunRecord]] = {}
    first: dict[tuple, RunRecord] = {}
    for run in sorted((r for r in runs if r.row and _stage_kind(r.stage) == "40"), key=lambda r: r.run):
        control = run.params.get("control", run.metrics.get("control", "none"))
        is_control = run.params.get("prompt") == "text" or control not in ("none", "", None)
        source = None if is_control else (_referenced_run(run.params, "30") or _referenced_run(run.params, "20"))
        model = str(run.params.get("model_path", ""))
        key = source or (
            ("control", model, str(control), str(run.params.get("prompt"))) if is_control else ("model", model)
        )
        evals.setdefault(key, {}).setdefault(_benchmark(run), run)
        first.setdefault(key, run)
    variants = []
    for key in list(training) + [k for k in evals if k not in training]:
        trained = training.get(key)
        evaluated = evals.get(key, {})
        figures, source = _model_figures(trained, evaluated)
        records = ([f"{trained.stage}/{trained.run}"] if trained else []) + [
            f"{r.stage}/{r.run}" for r in evaluated.values()
        ]
        if trained is not None:
            drop = RUN_ONLY_PARAMETERS + (SEED_PARAMETER,)
            group = (trained.row, _stage_kind(trained.stage), _params_key(trained.params, drop))
            variant = Variant(trained.row, trained.run, group, figures, records, trained.params.get(SEED_PARAMETER))
        else:
            evaluation = first[key]
            name = key[1] if key[0][:2] in ("20", "30") else evaluation.run
            variant = Variant(evaluation.row, name, ("eval", *key), figures, records)
        variant.source = source
        variants.append(variant)
    return variants


def _seedless(name: str) -> str:
    return re.sub(r"[_-](s|seed)\d+$", "", name)


def table1(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Table 1's rows: the variants, seeds of one variant joined (figures as mean, spread = half the range, n), in
    the table's row order. Each row: row, variant (name), runs, seeds, source, figures {column: (mean, spread, n)}."""
    groups: dict[tuple, list[Variant]] = {}
    for variant in model_variants(runs):
        groups.setdefault(variant.group, []).append(variant)
    order = {row: i for i, row in enumerate(TABLE_ROWS)}
    table = []
    for members in groups.values():
        members.sort(key=lambda v: (str(v.seed), v.name))
        names = [v.name for v in members]
        plain = [n for n in names if _seedless(n) == n]  # a run named without a seed suffix names the variant
        name = min(plain or [_seedless(n) for n in names], key=lambda n: (len(n), n))
        figures = {}
        for column in dict.fromkeys(c for v in members for c in v.figures):
            values = [v.figures[column] for v in members if isinstance(v.figures.get(column), (int, float))]
            if values:
                mean = sum(values) / len(values)
                figures[column] = (mean, (max(values) - min(values)) / 2 if len(values) > 1 else None, len(values))
        table.append(
            {
                "row": members[0].row,
                "variant": name,
                "runs": [r for v in members for r in v.runs],
                "seeds": [v.seed for v in members if v.seed is not None],
                "source": ", ".join(sorted({v.source for v in members if v.source})),
                "figures": figures,
            }
        )
    return sorted(table, key=lambda t: (order[t["row"]], t["variant"]))


def baseline_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The chance and majority-answer rows, in the table's accuracy columns, from the scored records
    (`records.jsonl`) of one evaluation per suite; [] when no evaluation kept its records (they are not committed:
    rerun notebook 40 on this machine)."""
    evaluations = sorted((r for r in runs if _stage_kind(r.stage) == "40"), key=lambda r: r.run)
    if not evaluations:
        return []
    from pxr.evaluation.evaluate import RECORDS  # imports the model code: only when there is an evaluation

    figures: dict[str, dict[str, Any]] = {CHANCE: {}, MAJORITY: {}}
    seen = set()
    for run in evaluations:
        benchmark = _benchmark(run)
        if benchmark in seen or not (run.folder / RECORDS).exists():
            continue
        records, _ = read_steps(run.folder / RECORDS)
        if not records:
            continue
        seen.add(benchmark)
        found = answer_baselines(records)
        for label, kind in ((CHANCE, "chance"), (MAJORITY, "majority")):
            if benchmark == MAIN_SUITE:
                figures[label]["acc_zoom_needed"] = found.get(f"{kind}_zoom_needed")
                figures[label]["acc_coarse"] = found.get(f"{kind}_coarse")
            else:
                figures[label]["acc_named" if benchmark == NAMED_SUITE else f"acc_{benchmark}"] = found[kind]
    return [
        {
            "row": BASELINE_ROW,
            "variant": label,
            "runs": [],
            "seeds": [],
            "source": "evaluation records",
            "figures": {c: (v, None, 1) for c, v in values.items() if v is not None},
        }
        for label, values in figures.items()
        if values
    ]


def _figure_text(figure: tuple[float, float | None, int] | None) -> str:
    if figure is None:
        return ""
    mean, spread, _ = figure
    return f"{mean:.3f}" if spread is None else f"{mean:.3f} ± {spread:.3f}"


def table1_markdown_rows(table: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str]]:
    """The shown table: row, variant (× seeds), the TABLE_COLUMNS some row has a figure in, and where the main-suite
    figures come from; (rows, columns)."""
    present = [(key, label) for key, label in TABLE_COLUMNS if any(key in t["figures"] for t in table)]
    rows = []
    for t in table:
        name = t["variant"]
        if len(t["runs"]) > 1 and len(t["seeds"]) > 1:
            name += f" ×{len(t['seeds'])} (seeds {', '.join(str(s) for s in t['seeds'])})"
        row = {"row": t["row"], "variant": name}
        row.update({label: _figure_text(t["figures"].get(key)) for key, label in present})
        row["from"] = t["source"]
        rows.append(row)
    return rows, ["row", "variant", *(label for _, label in present), "from"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "_", text.lower()).strip("_")


def all_metrics(runs: list[RunRecord], report: dict, table: list[dict], baselines: list[dict]) -> dict[str, Any]:
    """The notebook's metrics.json: the counts (`summary_metrics`); every column of every run's flat row
    (`table_rows`) and every numeric figure its metrics.json holds, as `<stage>/<run>/<figure>`; the shown table as
    `table/<row>/<variant>/<column>` (mean, `_spread`, `_n`, `runs`); the baselines as `baseline/<label>/<column>`."""
    metrics = summary_metrics(runs, report)
    by_name = {(r.stage, r.run): r for r in runs}
    for row in table_rows(runs):
        prefix = f"{row['stage']}/{row['run']}/"
        run = by_name[(row["stage"], row["run"])]
        numeric = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key, value in {**row, **numeric}.items():
            if key not in ("stage", "run"):
                metrics[prefix + key] = value
    for t in table + baselines:
        prefix = (
            f"table/{_slug(t['row'])}/{t['variant']}/"
            if t["row"] != BASELINE_ROW
            else f"baseline/{_slug(t['variant'])}/"
        )
        metrics[prefix + "runs"] = ", ".join(t["runs"])
        for column, (mean, spread, n) in t["figures"].items():
            metrics[prefix + column] = mean
            if t["row"] != BASELINE_ROW:
                metrics[prefix + column + "_spread"] = spread
                metrics[prefix + column + "_n"] = n
    return metrics


# -------------------------------------------------------------------------------- the learning-trap figures

TRAP_PREFIX = "trap_"  # the learning-trap map's grids (params/30_train_rl/grid_trap_k*.yaml)
TRAP_STEM = "30_train_rl"
STEP_ROWS = (("pxr/rapr", "sampled RaPR"), ("pxr/accuracy", "accuracy"))  # the figures' rows of panels
DEFAULT_TARGET = 0.3  # H (paper §4) where a run's parameters do not say


@dataclass
class Panel:
    title: str
    runs: list[RunRecord]  # empty: nothing has run there ("not run")
    names: frozenset[str] = frozenset()  # the runs that belong (the trap map's grid points)


def trap_knobs(stem: str = TRAP_STEM, prefix: str = TRAP_PREFIX) -> list[tuple[str, str, frozenset[str]]]:
    """(knob, panel title, point names) of every `grid_<prefix>*.yaml` of `stem`, in name order: the knob values are
    declared before anything runs, so a panel exists for each whether or not its runs have."""
    from pxr.runner import grid
    from pxr.runner import params as P

    knobs = []
    for name in grid.grid_names(stem):
        if not name.startswith(prefix):
            continue
        _, path = grid.resolve_grid(stem, name)
        points = grid.load_grid(stem, path)
        budget = P.load_params(stem, points[0].base).get("image_max_pixels")
        knob = name.removeprefix(prefix)
        knobs.append((knob, f"{knob}: query budget {budget} px", frozenset(p.name for p in points)))
    return knobs


def trap_panels(runs: list[RunRecord], knobs: list[tuple[str, str, frozenset[str]]]) -> list[Panel]:
    """A panel per knob value with its RL runs that have a step log (none: the panel says "not run")."""
    rl = [r for r in runs if _stage_kind(r.stage) == "30" and r.steps]
    return [Panel(title, [r for r in rl if r.run in names], names) for _, title, names in knobs]


def line_panels(runs: list[RunRecord], exclude: frozenset[str] = frozenset()) -> list[Panel]:
    """The curiosity-vs-not panels of the other RL runs (RL and RL without curiosity rows, with a step log, not in
    `exclude`): runs whose parameters differ only in α and the seed share a panel, titled by its shortest run name."""
    drop = RUN_ONLY_PARAMETERS + (SEED_PARAMETER, ARM_PARAMETER)
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if _stage_kind(run.stage) == "30" and run.steps and run.row in (RL, RL_NO_CURIOSITY) and run.run not in exclude:
            groups.setdefault(_params_key(run.params, drop), []).append(run)
    panels = []
    for members in groups.values():
        members.sort(key=lambda r: r.run)
        name = min((r.run for r in members), key=lambda n: (len(n), n))
        start = str(members[0].params.get("sft_dir") or members[0].params.get("model_name_or_path") or "a fresh model")
        panels.append(Panel(f"{name} (from {start.removeprefix('outputs/')})", members))
    return sorted(panels, key=lambda p: p.title)


def arm_label(alpha: float) -> str:
    return "without curiosity (α 0)" if alpha == 0 else f"with curiosity (α {alpha:g})"


def _alpha(run: RunRecord) -> float:
    return float(run.params.get(ARM_PARAMETER, 0.5))  # the RL notebook's default α


def learning_trap_figure(panels: list[Panel], *, window: int = 1, title: str = ""):
    """Small multiples (paper §5.2, the learning trap): a column per panel, sampled RaPR on top and accuracy below,
    smoothed over `window` steps; runs without curiosity blue and with it orange (further α values in further
    colours), each seed thin and their mean thick; H and H/2 dashed in the RaPR row (without curiosity RaPR falls
    under H/2, with it it stays at or above H). None when there is no panel."""
    from pxr import viz

    if not panels:
        return None
    alphas = sorted({_alpha(r) for p in panels for r in p.runs})
    colours = {arm_label(0.0): "C0"}
    for alpha in (a for a in alphas if a != 0):
        colours[arm_label(alpha)] = f"C{len(colours)}"
    drawn = []
    for panel in panels:
        arms: dict[str, dict[str, dict[str, list]]] = {}
        for run in sorted(panel.runs, key=lambda r: (_alpha(r), r.run)):
            arms.setdefault(arm_label(_alpha(run)), {})[run.run] = run_curves(
                run, tuple(key for key, _ in STEP_ROWS), window=window
            )
        target = (
            float(panel.runs[0].params.get("curiosity_target_rate", DEFAULT_TARGET)) if panel.runs else DEFAULT_TARGET
        )
        drawn.append(
            {
                "title": panel.title,
                "arms": arms,
                "hlines": {STEP_ROWS[0][0]: [(target, f"H {target:g}"), (target / 2, f"H/2 {target / 2:g}")]},
            }
        )
    return viz.arm_small_multiples(drawn, STEP_ROWS, colours=colours, title=title)
