"""Runs of the notebooks and their records: `outputs/<stem>/<run>/` holds `executed.ipynb`,
`params.yaml` (merged), `metrics.json` (flat headline figures, written by the notebook) and `run.json` (git SHA,
dirty flag, host, accelerator, start/end, state).

`run_stage` executes one notebook with papermill (kernel `python3`, working directory the repo root, saved after
every cell so a crash leaves a readable partial log); `run_pipeline` runs every stage that has a params file for
the run, in order, skipping finished runs whose parameters are unchanged. Notebooks call `output_dir_for` (which
also moves a kernel started elsewhere in the checkout, e.g. JupyterLab's `notebooks/`, to the repo root, so the
relative paths in params resolve) and `write_metrics`, both in `pxr.records`.

A run never loses a record. Before anything is written it checks that the runs it reads from left what they made
(`missing_inputs`: a fresh clone has the committed records of reference runs, not their git-ignored data and
models) and names the command that makes what is missing. A finished record is kept while the run goes: if the
run fails (or is killed), that record is put back and the failed run's files go beside it, in `failed/`. A run
folder that holds no finished record carries a `.gitignore` until its run finishes, so failed and killed runs are
never committed by accident. A run whose metrics count failed items (`failed_items` > 0) is recorded `partial`:
kept, reported, and run again by `pxr pipeline`.

Tests: tests/test_runs.py; tests/test_trackers.py (tracker run names, reporting parameters outside the hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from pxr.records import (  # the names notebooks and other stages use, re-exported for the runner's callers
    CHECKPOINTS,
    FAILED,
    OUTPUT_FILES,
    OUTPUTS,
    read_run,
    write_metrics,
)
from pxr.runner import light_records
from pxr.runner import params as P

KEPT = ".kept-record"  # the finished record, held while a new run of the same folder goes
LAST_START = ".last-start.json"  # the parameters of the run that last started here: whose checkpoints these are
PARTIAL_METRIC = "failed_items"  # a run whose metrics count failed items > 0 is `partial`, not `finished`
RECORD_STATES = ("finished", "partial")  # records a later failed run must not replace
ALLOW_DIRTY_ENV = "PXR_ALLOW_DIRTY"  # 1: start committable runs from uncommitted code (the record says git_dirty)


class StageFailed(RuntimeError):
    """A notebook raised; the message names the cell and where the partial log is. `cause` is the failure alone
    (`cell 5: FileNotFoundError: ...`), without the run's name or folder: what a grid compares across points."""

    def __init__(self, message: str, cause: str = ""):
        super().__init__(message)
        self.cause = cause or message


@dataclass
class StageResult:
    stem: str
    run: str
    state: str  # finished | partial | skipped
    output_dir: Path
    seconds: float
    note: str = ""  # for a partial run: what is missing and how to complete it


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=P.repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """What a reader needs to trust a run: code version, machine, accelerator."""
    import torch

    changed = code_changes()
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(changed) if changed is not None else None,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "accelerator": ", ".join(gpus) if gpus else "cpu",
    }


# Where a run reports, not what it computes: turning a tracker on neither redoes a finished run nor refuses to
# resume its checkpoints, and records made before these parameters existed keep their hash.
REPORTING_PARAMS = ("report_to", "run_name", "log_completions")


def params_hash(params: dict[str, Any]) -> str:
    computed = {k: v for k, v in params.items() if k not in REPORTING_PARAMS}
    return hashlib.sha256(json.dumps(computed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_stage(
    stem: str,
    run: str,
    overrides=(),
    *,
    values: dict[str, Any] | None = None,
    output_name: str | None = None,
    log_output: bool = False,
    progress: bool = True,
    allow_dirty: bool | None = None,
) -> StageResult:
    """Execute notebook `stem` with the parameters of `run` into outputs/<stem>/<run>/.

    A run whose record git would commit starts only from committed code (`refuse_dirty_record`), unless
    `allow_dirty` (None: the `PXR_ALLOW_DIRTY` environment variable decides).

    `values` (parameter -> value) apply after the `key=value` overrides; `output_name` puts the record in
    outputs/<stem>/<output_name>/ instead (a grid point: the base run's params plus its values, its own folder)."""
    stem = P.resolve_stem(stem)
    name = output_name or run
    params = stage_params(stem, run, overrides, values=values, output_name=name)
    out = P.repo_root() / "outputs" / stem / name
    missing = missing_inputs(stem, params)
    if missing:
        raise StageFailed(f"{stem}/{name} cannot start:\n  - " + "\n  - ".join(missing), "\n".join(missing))
    refuse_stale_checkpoints(out, params)
    refuse_dirty_record(stem, name, out, allow_dirty)
    try:
        return _execute(stem, run, name, params, out, log_output=log_output, progress=progress)
    except OSError as err:  # an unwritable outputs folder, a file where a folder goes, a full disk
        raise StageFailed(_unwritable(err, out)) from None


def code_changes() -> list[str] | None:
    """Tracked files outside outputs/ with uncommitted changes (None outside a git checkout): what a record made now
    would not be able to name by its commit."""
    changed = _git("diff", "--name-only", "HEAD", "--", ".", f":(exclude){OUTPUTS}")  # staged or not
    return None if changed is None else [line for line in changed.splitlines() if line.strip()]


def refuse_dirty_record(stem: str, name: str, out: Path, allow_dirty: bool | None = None) -> None:
    """Refuse to start a run whose record would be committed (git does not ignore it, as it does smoke runs) while the
    code has uncommitted changes: the record's commit would not be the code that made it."""
    if allow_dirty is None:
        allow_dirty = os.environ.get(ALLOW_DIRTY_ENV, "") not in ("", "0")
    changed = code_changes()
    if allow_dirty or not changed:
        return
    # The folder itself, not its record: a failed run's folder ignores its own files (`keep_record`).
    if _git("check-ignore", "-q", f"{out.relative_to(P.repo_root())}/") is not None:  # exit 0: ignored (smoke)
        return
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    raise StageFailed(
        f"{stem}/{name} not started: {len(changed)} tracked files have uncommitted changes ({shown}), so its record "
        f"could not name the code that made it. Commit them first, or pass --allow-dirty (or set {ALLOW_DIRTY_ENV}=1) "
        "for a record marked git_dirty: true.",
        "uncommitted changes",
    )


def _unwritable(err: OSError, out: Path) -> str:
    where = Path(err.filename) if err.filename else out
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        blocking = next((p for p in (where, *where.parents) if p.is_file()), where)
        fix = f"{blocking} is a file where pxr writes a folder: move it away"
    elif isinstance(err, PermissionError):
        fix = f"make it writable (e.g. `chmod -R u+w {out.parent}`) or run from a checkout you own"
    else:
        fix = "free some space or fix the folder"
    return f"cannot write the run's record in {out}: {err.strerror or err} ({where}). {fix}, then run again."


def _execute(stem: str, run: str, name: str, params: dict, out: Path, *, log_output: bool, progress: bool):
    import papermill
    from traitlets.config import Config

    out.mkdir(parents=True, exist_ok=True)
    restore_kept_record(out)  # a runner killed during an earlier run: its folder still holds that run's files
    kept = keep_record(out)
    # A kept record may describe other parameters than the checkpoints this run leaves, should it fail.
    (out / LAST_START).write_text(json.dumps({"params_hash": params_hash(params), "started": _now()}) + "\n")
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (out / "metrics.json").unlink(missing_ok=True)  # written afresh by this run's notebook
    record = {"stem": stem, "run": name, "state": "running", "started": _now(), "params_hash": params_hash(params)}
    if name != run:
        record["extends"] = run
    record.update(environment_info())
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    start = time.monotonic()
    error = None
    try:
        papermill.execute_notebook(
            str(P.notebook_path(stem)),
            str(out / "executed.ipynb"),
            parameters=params,
            kernel_name="python3",
            cwd=str(P.repo_root()),
            log_output=log_output,
            progress_bar=progress,
            # CurveZMQ keys from the kernel manager, as the kernel's "running over TCP without encryption" warning
            # asks (kernelspecs that do not declare support run as before).
            config=Config({"KernelManager": {"transport_encryption": "auto"}}),
        )
    except papermill.PapermillExecutionError as err:
        error = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as err:  # kernel death, bad notebook: still leave a run.json that says so
        error = f"{type(err).__name__}: {err}"
    seconds = time.monotonic() - start
    if (
        out / "executed.ipynb"
    ).exists():  # a record git keeps: JPEG thumbnails, no widget state (pxr.runner.light_records)
        light_records.lighten_notebook(out / "executed.ipynb")
    if not (out / "metrics.json").exists():
        write_metrics(out, {})
    metrics = json.loads((out / "metrics.json").read_text())
    incomplete = metrics.get(PARTIAL_METRIC)
    state = "failed" if error else "partial" if isinstance(incomplete, int) and incomplete > 0 else "finished"
    record.update(state=state, ended=_now(), seconds=round(seconds, 1), error=error)
    record["artifacts"] = produced(out)
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    if error:
        cause, log = error, out / "executed.ipynb"
        if kept:
            log = set_aside_failed(out)
            error += f"\n  the finished record of {kept} is kept; this run's record is in {log.parent}"
        if cause == "interrupted":
            raise KeyboardInterrupt
        raise StageFailed(f"{stem}/{name} failed in {error}\n  partial log: {log}", cause)
    (out / ".gitignore").unlink(missing_ok=True)  # finished: its record may be committed
    shutil.rmtree(out / KEPT, ignore_errors=True)
    note = ""
    if state == "partial":
        note = f"{incomplete} items failed (see {out / 'executed.ipynb'}); run it again to retry them"
    return StageResult(stem, name, state, out, seconds, note)


def keep_record(out: Path) -> str:
    """Copy a finished record aside (`KEPT`) before a new run overwrites it; returns its start time, or "" when the
    folder holds no finished record, in which case it gets a `.gitignore` until the run finishes."""
    previous = read_run(out)
    if previous.get("state") not in RECORD_STATES:
        (out / ".gitignore").write_text("# a run that has not finished: not committed\n*\n")
        return ""
    kept = out / KEPT
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    for name in OUTPUT_FILES:
        if (out / name).exists():
            shutil.copy2(out / name, kept / name)
    return previous.get("started") or "an earlier run"


def set_aside_failed(out: Path) -> Path:
    """Move the failed run's record files into `failed/` and put the kept finished record back; returns the log."""
    failed = out / FAILED
    shutil.rmtree(failed, ignore_errors=True)
    failed.mkdir()
    (failed / ".gitignore").write_text("*\n")
    for name in OUTPUT_FILES:
        if (out / name).exists():
            os.replace(out / name, failed / name)
    restore_kept_record(out)
    return failed / "executed.ipynb"


def restore_kept_record(out: Path) -> None:
    """Put a kept finished record back in place (after a failure, or after a runner killed mid-run)."""
    kept = out / KEPT
    if not kept.is_dir():
        return
    for name in OUTPUT_FILES:
        if (kept / name).exists():
            os.replace(kept / name, out / name)
    shutil.rmtree(kept, ignore_errors=True)


def missing_inputs(stem: str, params: dict[str, Any]) -> list[str]:
    """What the run reads from other runs' folders (string parameters under `outputs/`) and is not there, each with
    the command that makes it. A run folder given whole must hold every artifact its run.json lists."""
    root = P.repo_root()
    problems = []
    for key, value in params.items():
        if key == "output_dir" or not isinstance(value, str) or not value.startswith("outputs/"):
            continue
        path = root / value
        parts = Path(value).parts
        if len(parts) < 3:
            continue
        folder = root.joinpath(*parts[:3])
        record = read_run(folder)
        gone = "" if path.exists() else value
        if not gone and path == folder and record:
            absent = [a for a in record.get("artifacts", []) if not (folder / a).exists()]
            more = f" and {len(absent) - 2} more" if len(absent) > 2 else ""
            gone = f"{value}/ ({', '.join(absent[:2])}{more})" if absent else ""
        if not gone and path == folder and record.get("state") not in (None, *RECORD_STATES):
            gone = f"{value} (its run {record.get('state')})"
        if gone:
            problems.append(
                f"it reads {gone} (parameter {key}), which is not there; make it with "
                f"{producing_command(parts[1], parts[2])}"
                + (
                    " (a fresh clone has the records of the reference runs, not their data and models)"
                    if record
                    else ""
                )
            )
    return problems


def producing_command(stem: str, run: str) -> str:
    """The command that makes outputs/<stem>/<run>/: its params file's run, or the grid it is a point of."""
    root = P.repo_root()
    if (root / "params" / stem / f"{run}.yaml").exists():
        also = f", or the whole line with `pxr pipeline {run}`" if len(pipeline_stages(run)) > 1 else ""
        return f"`pxr run {stem} {run}`{also}"
    from pxr.runner import grid

    for name in grid.grid_names(stem) if (root / "params" / stem).is_dir() else []:
        try:
            points = grid.load_grid(stem, grid.grid_path(stem, name))
        except P.ParamError:
            continue
        if any(p.name == run for p in points):
            return f"`pxr grid {stem} {name} --only {run}`"
    return f"the run that writes outputs/{stem}/{run}/ (no params/{stem}/{run}.yaml here)"


def refuse_stale_checkpoints(out: Path, params: dict[str, Any]) -> None:
    """Training notebooks resume from `out/checkpoints`; after a change of parameters those checkpoints belong to
    another run (another schedule, data or model) and resuming from them would mix the two silently. Nothing is
    deleted: the user moves them away or runs under another name."""
    checkpoints = out / CHECKPOINTS
    try:
        previous = json.loads((out / LAST_START).read_text())["params_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = read_run(out).get("params_hash")
    if previous and previous != params_hash(params) and checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise StageFailed(
            f"{checkpoints} holds the checkpoints of a run with other parameters (params_hash {previous}, now "
            f"{params_hash(params)}; compare {out / 'params.yaml'}), which this run would resume from. Move or "
            f"delete that folder to start afresh, or run under another name with --as NAME."
        )


def pipeline_stages(run: str) -> list[str]:
    """Stages that take part in `run`: those with params/<stem>/<run>.yaml, in notebook order."""
    return [s for s in P.stems() if (P.repo_root() / "params" / s / f"{run}.yaml").exists()]


def run_pipeline(
    run: str, *, force: bool = False, log_output: bool = False, allow_dirty: bool | None = None
) -> list[StageResult]:
    """Every stage of `run` in order; a finished stage with the same parameters is skipped unless `force`.

    Once one stage runs, every later one runs too: each may read what an earlier one wrote (data, a model), so a
    record made from the old outputs would no longer describe them (a fresh clone's demo or ablation tables)."""
    stages = pipeline_stages(run)
    if not stages:
        raise P.ParamError(f"no stage has a params file for run {run!r} (looked for params/*/{run}.yaml)")
    results = []
    for stem in stages:
        if not force and (done := finished_before(stem, run)) is not None:
            print(f"[pxr] {stem}/{run}: finished before, skipped (--force to redo)")
            results.append(done)
            continue
        force = True  # the stages after this one read what it is about to rewrite
        print(f"[pxr] {stem}/{run}: running")
        result = run_stage(stem, run, log_output=log_output, allow_dirty=allow_dirty)
        if result.state == "partial":
            print(f"[pxr] {stem}/{run}: partial: {result.note}")
        results.append(result)
    return results


def produced(out: Path) -> list[str]:
    """What a run left in its folder besides the record files and checkpoints: the data, model or pictures that
    later stages read. Most are git-ignored, so a fresh clone has the record of a run but not these."""
    skip = {*OUTPUT_FILES, CHECKPOINTS, FAILED}
    return sorted(p.name for p in out.iterdir() if p.name not in skip and not p.name.startswith("."))


def finished_before(stem: str, run: str, overrides=(), *, values=None, output_name=None) -> StageResult | None:
    """A "skipped" result when outputs/<stem>/<output_name or run>/ finished with these very parameters and what
    it produced is still there (a fresh clone holds the committed records of reference runs, not their data or
    models: those runs are redone)."""
    out = P.repo_root() / "outputs" / stem / (output_name or run)
    previous = read_run(out)
    params = stage_params(stem, run, overrides, values=values, output_name=output_name)
    if previous.get("state") != "finished" or previous.get("params_hash") != params_hash(params):
        return None
    if "artifacts" not in previous or any(not (out / name).exists() for name in previous["artifacts"]):
        return None  # a record without its outputs (or from before runs listed them) cannot feed later stages
    return StageResult(stem, output_name or run, "skipped", out, previous.get("seconds", 0.0))


def stage_params(stem: str, run: str, overrides=(), *, values=None, output_name=None) -> dict[str, Any]:
    """The merged, validated parameters of a stage run (`values` last), with `output_dir` pointing at its
    outputs/ folder (outputs/<stem>/<output_name or run>)."""
    params = P.load_params(stem, run, overrides)
    chosen = params.get("output_dir")
    if chosen and "output_dir" in P.notebook_parameters(stem):
        raise P.ParamError(
            f"output_dir = {chosen!r} would be ignored: pxr writes a run's record to outputs/{stem}/<run>/. "
            f"Write it elsewhere under outputs/{stem}/ with --as NAME"
        )
    if values:
        P.validate(stem, values)
        params.update(values)
    if "output_dir" in P.notebook_parameters(stem):
        folder = P.repo_root() / "outputs" / stem / (output_name or run)
        params["output_dir"] = str(folder.relative_to(P.repo_root()))
    return params


# The figures that say how a stage's run went, best first; a stage not listed shows its first metric.
HEADLINE_KEYS = {
    "00_visual_ops_tour": ("zoom_magnification",),
    "10_synthesize_data": ("sft_trajectories", "rl_queries", "failed_items"),
    "15_perception_base": ("heldout_read_accuracy", "heldout_read_majority", "heldout_ground_iou"),
    "20_train_sft": ("eval_accuracy", "eval_rapr", "final_loss"),
    "30_train_rl": ("eval_accuracy", "eval_rapr", "final_accuracy", "final_rapr"),
    "40_evaluate": ("accuracy", "rapr"),
    "50_ablations": ("runs", "rl_runs"),
    "60_demo": ("turns",),
}
HEADLINE_SHORT = {
    "eval_accuracy": "acc",
    "accuracy": "acc",
    "final_accuracy": "train_acc",
    "eval_rapr": "rapr",
    "final_rapr": "train_rapr",
    "sft_trajectories": "trajectories",
    "heldout_read_accuracy": "read_acc",
    "heldout_read_majority": "read_majority",
}


def headline(stem: str, metrics: dict[str, Any], *, limit: int = 2) -> str:
    """`acc=0.15 rapr=0.38`: the stage's headline figures that the run has (None ones skipped), else its first."""
    wanted = [k for k in HEADLINE_KEYS.get(stem, ()) if metrics.get(k) is not None][:limit]
    if not wanted:
        wanted = [k for k, v in metrics.items() if v is not None][:1]
    return " ".join(f"{HEADLINE_SHORT.get(k, k)}={_short(metrics[k])}" for k in wanted)


def _short(value: Any) -> str:
    """Floats to three decimals (`0.687`, `2.0`), tiny ones in three significant digits."""
    if isinstance(value, float):
        return str(round(value, 3)) if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    """`42.0s`, `3m05s`, `2h07m`; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _elapsed(record: dict[str, Any]) -> float | None:
    """Seconds of a finished or failed run; for a running one, since it started."""
    if record.get("seconds") is not None or record.get("state") != "running" or not record.get("started"):
        return record.get("seconds")
    started = datetime.fromisoformat(record["started"])
    return (datetime.now(timezone.utc) - started).total_seconds()


def list_runs() -> list[dict[str, Any]]:
    """One row per run folder under outputs/: stage, run, state, duration, headline metric, start."""
    rows = []
    for run_json in sorted((P.repo_root() / "outputs").glob("*/*/run.json")):
        record = json.loads(run_json.read_text())
        metrics_path = run_json.parent / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        stem = run_json.parent.parent.name
        rows.append(
            {
                "stage": stem,
                "run": run_json.parent.name,
                "state": record.get("state", "?"),
                "seconds": record.get("seconds"),
                "duration": format_duration(_elapsed(record)),
                "headline": headline(stem, metrics),
                "extends": record.get("extends", ""),
                "started": record.get("started", ""),
            }
        )
    return rows
