"""pxr.runner.grid and `pxr grid`: expansion into named points (pure), the committed grid files, sequential runs in a fake
checkout (outputs/<stem>/<point>/, finished points skipped), and the commands a parallel grid would launch."""

import sys

import pytest

from pxr.runner import cli, grid, runs
from pxr.runner import params as P
from pxr.runner.grid import GridError, GridPoint, expand_grid, format_value
from tests.conftest import read_json


def test_points_are_every_combination_named_from_the_values():
    points = expand_grid(
        {
            "extends": "toy",
            "labels": {"curiosity_coef": "alpha", "penalty_coef": "beta"},
            "axes": {"curiosity_coef": [0.0, 0.5], "penalty_coef": [0.0, 0.05]},
        }
    )
    assert [p.name for p in points] == [
        "toy_alpha0-beta0",
        "toy_alpha0-beta0.05",
        "toy_alpha0.5-beta0",
        "toy_alpha0.5-beta0.05",
    ]
    assert points[1] == GridPoint("toy_alpha0-beta0.05", "toy", {"curiosity_coef": 0.0, "penalty_coef": 0.05})


def test_mapping_axes_label_paths_and_templates_and_extra_runs():
    spec = {
        "extends": "toy",
        "axes": {"sft_dir": {"sc": "outputs/20/toy", "nosc": "outputs/20/toy_nosc"}, "seed": [1, 2]},
        "name": "{extends}-{sft_dir}-s{seed}",
        "runs": {"toy_text_only": {"prompt": "text"}},
    }
    points = expand_grid(spec)
    assert [p.name for p in points] == ["toy-sc-s1", "toy-sc-s2", "toy-nosc-s1", "toy-nosc-s2", "toy_text_only"]
    assert points[2].values == {"sft_dir": "outputs/20/toy_nosc", "seed": 1}
    assert points[-1].values == {"prompt": "text"}


def test_value_formatting_is_stable_and_filename_safe():
    assert [format_value(v) for v in (0.0, 0.05, 1e-6, 3, True, False)] == ["0", "0.05", "1e-06", "3", "on", "off"]
    assert format_value("outputs/20_train_sft/toy") == "toy"
    assert format_value("a b:c") == "a_b_c"
    assert format_value([1, 2]) == "1+2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"axes": {"seed": [1]}}, "extends"),
        ({"extends": "toy", "axis": {"seed": [1]}}, "unknown"),
        ({"extends": "toy", "axes": {"seed": 1}}, "list of values"),
        ({"extends": "toy", "axes": {"seed": []}}, "no values"),
        ({"extends": "toy"}, "needs `axes` or `runs`"),
        ({"extends": "toy", "axes": {"seed": [1, 2]}, "name": "{extends}"}, "two points are named 'toy'|overwrite"),
        ({"extends": "toy", "axes": {"seed": [1, 2]}, "name": "x{seed}{lr}"}, "cannot be filled"),
        ({"extends": "toy", "axes": {"seed": [1, 2]}, "name": "x{seed}"}, None),
        ({"extends": "toy", "axes": {"seed": [1, 1.0]}}, "two points are named 'toy_seed1'"),
        ({"extends": "toy", "runs": {"a/b": {"seed": 1}}}, "filename-safe"),
        ({"extends": "toy", "runs": {"toy": {"seed": 1}}}, "overwrite its base run"),
    ],
)
def test_bad_grids_are_clear_errors(spec, message):
    if message is None:
        assert [p.name for p in expand_grid(spec)] == ["x1", "x2"]
        return
    with pytest.raises(GridError, match=message):
        expand_grid(spec)


def test_overrides_read_back_as_the_same_values():
    point = GridPoint("p", "toy", {"sft_dir": "outputs/x y", "lr": 1e-6, "flag": False, "names": ["a", "b"], "n": 0})
    assert dict(P.parse_override(o) for o in point.overrides()) == point.values


def test_committed_grids_expand_and_fit_the_rl_notebook():
    stem, path = grid.resolve_grid("params/30_train_rl/grid_curiosity.yaml", None)
    points = grid.load_grid(stem, path)
    assert len(points) == 12 and {p.base for p in points} == {"toy"}
    assert points[3].name == "toy_alpha0-H0.3-beta0.05"
    assert points[3].values == {"curiosity_coef": 0.0, "curiosity_target_rate": 0.3, "penalty_coef": 0.05}
    smoke = grid.load_grid(*grid.resolve_grid("30", "smoke"))
    assert [p.name for p in smoke] == ["smoke_alpha0", "smoke_alpha0.5"]
    self_correction = grid.load_grid(*grid.resolve_grid("30_train_rl", "grid_self_correction"))
    assert [p.name for p in self_correction] == ["toy_selfcorr", "toy_no_selfcorr"]
    merged = runs.stage_params("30_train_rl", "toy", values=self_correction[1].values, output_name="toy_no_selfcorr")
    assert merged["sft_dir"] == "outputs/20_train_sft/toy_no_correction"
    assert merged["output_dir"] == "outputs/30_train_rl/toy_no_selfcorr"
    assert merged["max_steps"] == runs.stage_params("30_train_rl", "toy")["max_steps"]  # the base run's values


@pytest.fixture
def fake_grid(fake_repo):
    (fake_repo / "params" / "00_first" / "grid_demo.yaml").write_text(
        "extends: toy\nlabels: {steps: n}\naxes:\n  steps: [1, 4]\n  scale: [1.0, 2.0]\n"
    )
    return fake_repo


@pytest.mark.slow
def test_grid_runs_points_into_their_own_folders_and_skips_finished_ones(fake_grid, capsys):
    assert cli.main(["grid", "00", "demo", "--only", "toy_n4-*"]) == 0
    out = fake_grid / "outputs" / "00_first"
    assert sorted(p.name for p in out.iterdir()) == ["toy_n4-scale1", "toy_n4-scale2"]
    assert read_json(out / "toy_n4-scale2" / "metrics.json") == {"score": 8.0, "name": "x"}
    record = read_json(out / "toy_n4-scale2" / "run.json")
    assert record["run"] == "toy_n4-scale2" and record["extends"] == "toy" and record["state"] == "finished"
    assert "output_dir: outputs/00_first/toy_n4-scale2" in (out / "toy_n4-scale2" / "params.yaml").read_text()
    capsys.readouterr()
    assert cli.main(["grid", "00_first", "grid_demo", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "4 points, 2 to run" in listing and "toy_n1-scale1  run" in listing
    assert "toy_n4-scale1  skip (finished)" in listing
    assert len(list(out.iterdir())) == 2  # a dry run runs nothing
    assert cli.main(["grid", "00", "demo"]) == 0
    assert read_json(out / "toy_n1-scale2" / "metrics.json")["score"] == 2.0
    assert "grid done: 2 finished, 0 failed" in capsys.readouterr().out
    assert {r["run"]: r["headline"] for r in runs.list_runs()}["toy_n1-scale1"] == "score=1.0"


@pytest.mark.slow
def test_grid_reports_failed_points_and_unknown_parameters(fake_grid, capsys):
    (fake_grid / "params" / "00_first" / "grid_bad.yaml").write_text("extends: toy\naxes:\n  steps: [-1, 1]\n")
    assert cli.main(["grid", "00", "bad"]) == 1
    assert "1 finished, 1 failed toy_steps-1" in capsys.readouterr().out
    (fake_grid / "params" / "00_first" / "grid_typo.yaml").write_text("extends: toy\naxes:\n  stepz: [1]\n")
    assert cli.main(["grid", "00", "typo"]) == 1
    assert "unknown parameter 'stepz'" in capsys.readouterr().err
    assert cli.main(["grid", "00", "nothing"]) == 1
    assert "grids of 00_first: bad, demo, typo" in capsys.readouterr().err


@pytest.mark.slow
def test_a_grid_stops_when_two_points_fail_the_same_way_and_their_folders_stay_out_of_git(fake_grid, capsys):
    """A grid whose every point failed the same way ran them all, leaving failed folders that git did not ignore."""
    (fake_grid / "params" / "00_first" / "grid_broken.yaml").write_text(
        "extends: toy\naxes:\n  steps: [-1, -2, -3, 1]\n"
    )
    assert cli.main(["grid", "00", "broken"]) == 1
    captured = capsys.readouterr()
    assert "two points failed the same way (cell 3: AssertionError: steps must be >= 0); stopped with 2" in captured.err
    assert "grid done: 0 finished, 2 failed toy_steps-1 toy_steps-2" in captured.out
    out = fake_grid / "outputs" / "00_first"
    assert sorted(p.name for p in out.iterdir()) == ["toy_steps-1", "toy_steps-2"]
    assert all((out / name / ".gitignore").read_text().endswith("*\n") for name in ("toy_steps-1", "toy_steps-2"))
    assert cli.main(["grid", "00", "broken", "--keep-going"]) == 1
    assert "grid done: 1 finished, 3 failed" in capsys.readouterr().out
    assert not (out / "toy_steps1" / ".gitignore").exists()  # finished: its record may be committed


def test_parallel_grid_gives_each_point_a_gpu(fake_grid, monkeypatch, capsys):
    points = grid.load_grid(*grid.resolve_grid("00", "demo"))
    plan = grid.parallel_plan("00_first", points, ["0", "1"])
    assert [device for device, _ in plan] == ["0", "1", "0", "1"]
    assert plan[1][1] == [
        sys.executable,
        "-m",
        "pxr.runner.cli",
        "run",
        "00_first",
        "toy",
        "--as",
        "toy_n1-scale2",
        "-p",
        "steps=1",
        "-p",
        "scale=2.0",
    ]
    with pytest.raises(GridError, match="needs GPUs"):
        grid.parallel_plan("00_first", points, [])
    launched = []
    monkeypatch.setattr(grid, "gpu_ids", lambda: ["3", "5", "7"])
    monkeypatch.setattr(grid, "run_parallel", lambda plan, slots: launched.append((plan, slots)) or [0] * len(plan))
    assert cli.main(["grid", "00", "demo", "--parallel", "2"]) == 0
    assert [device for device, _ in launched[0][0]] == ["3", "5", "3", "5"] and launched[0][1] == 2
    assert not (fake_grid / "outputs" / "00_first").exists()  # nothing ran here


@pytest.mark.slow
def test_parallel_without_gpus_runs_one_after_another(fake_grid, monkeypatch, capsys):
    monkeypatch.setattr(grid, "gpu_ids", lambda: [])
    assert cli.main(["grid", "00", "demo", "--parallel", "4", "--only", "toy_n1-scale1"]) == 0
    assert "no GPU visible" in capsys.readouterr().out
    assert (fake_grid / "outputs" / "00_first" / "toy_n1-scale1" / "metrics.json").exists()
