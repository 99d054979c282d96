"""Shared fixtures. The session guard enforces DESIGN §6: tests write only to temp dirs, never to outputs/."""

import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent


def _outputs_snapshot():
    root = REPO / "outputs"
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(scope="session", autouse=True)
def outputs_untouched():
    before = _outputs_snapshot()
    yield
    assert _outputs_snapshot() == before, "a test wrote into outputs/; tests must use temp dirs"


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
    from pxr import params

    stage_body = (
        "from pxr.runs import output_dir_for, write_metrics\n"
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
