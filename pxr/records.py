"""The names a run's files go by and the helpers every notebook calls: one small module, so notebooks, stages and the
runner (`pxr.runner.runs`) agree on them without importing the runner.

A run's record is `outputs/<stem>/<run>/` with `OUTPUT_FILES`; a notebook calls `output_dir_for` first (its folder,
or a temp folder when run by hand) and `write_metrics` for its flat headline figures. The data files stages hand on
(the synthesis run's splits, evaluation's per-item records, RL's step log) are named here too.

Tests: tests/test_runs.py (records, working directory), tests/test_trackers.py (tracker run names).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pxr.runner import params as P

OUTPUTS = "outputs"  # the records: not code, so changes there do not make a run's code dirty
OUTPUT_FILES = ("executed.ipynb", "params.yaml", "metrics.json", "run.json")  # what a committed record holds
CHECKPOINTS = "checkpoints"  # where the training notebooks keep what they resume from
FAILED = "failed"  # beside a kept finished record: the record of the run that failed
TRAJECTORIES = "sft_trajectories.jsonl"  # notebook 10: SFT trajectories
RL_QUERIES = "rl_queries.jsonl"  # notebook 10: the RL stage's training queries
EVAL_QUERIES = "eval_queries.jsonl"  # notebook 10: held-out queries (seeds disjoint from the other splits)
EVAL_RECORDS = "records.jsonl"  # notebook 40: one scored record per item (the figures can be recomputed from it)
STEP_LOG = "steps.jsonl"  # notebook 30: one line of training figures per RL step


def work_from_repo_root() -> None:
    """Make the repo root the working directory when the process started inside the checkout but below its root
    (JupyterLab starts a kernel in `notebooks/`): every relative path in params (`outputs/20_train_sft/toy/model`,
    any `*_dir` or `data_path`) is written from the root, as `pxr run` runs the notebooks."""
    try:
        root, here = P.repo_root().resolve(), Path.cwd().resolve()
    except (P.ParamError, OSError):
        return
    if here != root and root in here.parents:
        os.chdir(root)
        print(f"[pxr] working directory: {root} (relative paths are read from the repository root)")


def output_dir_for(output_dir: str, stem: str) -> Path:
    """The notebook's output folder: the one `pxr run` passes, or a fresh temp folder for interactive and nbval
    runs (so exploring never writes into outputs/). Called first by every notebook, so it also moves a kernel that
    started below the repo root to the root (`work_from_repo_root`)."""
    work_from_repo_root()
    path = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix=f"pxr-{stem}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracker_run_name(output_dir: str | Path, stem: str) -> str:
    """A run's name in experiment trackers: `<stem>/<run>` (`20_train_sft/smoke`), the run being the output
    folder's name (`pxr run` writes to `outputs/<stem>/<run>`; an interactive run's temp folder names it too)."""
    return f"{stem}/{Path(output_dir).name}"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy and torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"metrics must be flat scalars; got {type(value).__name__}")


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Add `metrics` to the run's flat metrics.json (the headline figure first); returns its path."""
    path = Path(output_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update({str(k): _jsonable(v) for k, v in metrics.items()})
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def read_run(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}
