"""Shared fixtures and two session checks.

- Tests write only to temp dirs, never to outputs/: outputs/ is compared before and after the session. A change
  fails the session with the paths that changed, reported at the end rather than as an error of whichever test ran
  last (a notebook cell under nbval), since another process (a `pxr run` in the same checkout) may have made it.
- Temp folders of the processes the tests start (notebook kernels under nbval, `pxr` subprocesses: each notebook
  makes a `pxr-<stem>-*` folder) go to one scratch folder, removed when the session ends.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRATCH_KEY = pytest.StashKey[str]()
OUTPUTS_KEY = pytest.StashKey[dict]()


def _outputs_snapshot() -> dict[str, int]:
    root = REPO / "outputs"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


def outputs_changes(before: dict[str, int], after: dict[str, int], *, shown: int = 8) -> str:
    """What changed under outputs/ during the session, and who may have done it; empty when nothing did."""
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if not changed:
        return ""
    running = []
    for path in sorted({str(Path(p).parent) for p in changed if p.endswith("run.json")}):
        try:
            record = json.loads((REPO / "outputs" / path / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if record.get("state") == "running" or record.get("started", "") >= record.get("ended", "~"):
            running.append(f"outputs/{path} (a run started {record.get('started', '?')})")
    listed = "\n  ".join(f"outputs/{p}" for p in changed[:shown])
    more = f"\n  ... and {len(changed) - shown} more" if len(changed) > shown else ""
    who = (
        f"Another process ran at the same time: {', '.join(running)}."
        if running
        else "Tests write only to temp dirs; if none of the tests did this, another process did (a `pxr run`, "
        "`pxr pipeline` or `make toy` in this checkout while the tests ran)."
    )
    return f"outputs/ changed during the test session ({len(changed)} paths):\n  {listed}{more}\n{who}"


def pytest_configure(config):
    scratch = tempfile.mkdtemp(prefix="pxr-tests-")
    config.stash[SCRATCH_KEY] = scratch
    os.environ["TMPDIR"] = scratch  # inherited by the kernels and subprocesses the tests start


def pytest_unconfigure(config):
    scratch = config.stash.get(SCRATCH_KEY, None)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def pytest_sessionstart(session):
    session.config.stash[OUTPUTS_KEY] = _outputs_snapshot()


def pytest_sessionfinish(session, exitstatus):
    message = outputs_changes(session.config.stash.get(OUTPUTS_KEY, {}), _outputs_snapshot())
    if message:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "outputs/ changed", red=True)
            reporter.write_line(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def make_notebook(path: Path, parameters: str, body: str) -> Path:
    """A small notebook with a `parameters` cell, for runner tests."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """A checkout with two stages, so the runner can be exercised end to end without touching the real outputs/."""
    from pxr.runner import params

    stage_body = (
        "from pxr.records import output_dir_for, write_metrics\n"
        "out = output_dir_for(output_dir, 'stage')\n"
        "assert steps >= 0, 'steps must be >= 0'\n"
        "write_metrics(out, {'score': steps * scale, 'name': name})\n"
    )
    parameters = 'steps = 2  # training steps\nscale = 0.5  # a float\nname = "x"  # a string\noutput_dir = ""  # where metrics go\n'
    make_notebook(tmp_path / "notebooks" / "00_first.ipynb", parameters, stage_body)
    make_notebook(tmp_path / "notebooks" / "10_second.ipynb", parameters, stage_body)
    for stem in ("00_first", "10_second"):
        (tmp_path / "params" / stem).mkdir(parents=True)
        (tmp_path / "params" / stem / "base.yaml").write_text("steps: 3\n")
        (tmp_path / "params" / stem / "smoke.yaml").write_text("name: smoke\n")
    (tmp_path / "params" / "00_first" / "toy.yaml").write_text("steps: 5\n")
    monkeypatch.setattr(params, "repo_root", lambda: tmp_path)
    return tmp_path


def family_episode_config(family: str, **overrides):
    """Episode settings for a model of `family` (`pxr.families`): its patch grid and box convention."""
    from pxr import families
    from pxr.config import EpisodeConfig

    return EpisodeConfig(model_family=family, patch_factor=families.get_family(family).patch_factor, **overrides)


def read_json(path: Path):
    return json.loads(Path(path).read_text())
