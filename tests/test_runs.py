"""pxr.runner.runs and the `pxr` command: papermill runs into outputs/<stem>/<run>/, the pipeline, the run list.
Everything happens in a fake checkout under tmp_path."""

import os
import shutil
from pathlib import Path

import pytest

from pxr import records
from pxr.runner import cli, runs
from pxr.runner.runs import StageFailed
from tests.conftest import read_json


@pytest.mark.slow
def test_run_stage_writes_the_four_record_files(fake_repo):
    result = runs.run_stage("00_first", "toy", ["scale=2.0"], progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    assert result.state == "finished" and result.output_dir == out
    assert sorted(p.name for p in out.iterdir()) == sorted([*runs.OUTPUT_FILES, runs.LAST_START])
    assert read_json(out / "metrics.json") == {"score": 10.0, "name": "x"}
    record = read_json(out / "run.json")
    assert record["state"] == "finished" and record["seconds"] > 0 and record["accelerator"] == "cpu"
    assert {"git_sha", "git_dirty", "host", "started", "ended", "params_hash"} <= set(record)
    assert (
        "steps: 5" in (out / "params.yaml").read_text()
        and "output_dir: outputs/00_first/toy" in (out / "params.yaml").read_text()
    )


@pytest.mark.slow
def test_failing_notebook_leaves_a_partial_log_and_a_failed_record(fake_repo):
    with pytest.raises(StageFailed, match="AssertionError: steps must be >= 0") as err:
        runs.run_stage("00_first", "smoke", ["steps=-1"], progress=False)
    out = fake_repo / "outputs" / "00_first" / "smoke"
    assert "partial log" in str(err.value) and (out / "executed.ipynb").exists()
    assert read_json(out / "run.json")["state"] == "failed"


@pytest.mark.slow
def test_a_run_whose_parameters_changed_does_not_resume_from_the_old_checkpoints(fake_repo):
    runs.run_stage("00_first", "toy", progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    (out / runs.CHECKPOINTS / "checkpoint-5").mkdir(parents=True)
    runs.run_stage("00_first", "toy", progress=False)  # same parameters: resuming is what it should do
    with pytest.raises(StageFailed, match="checkpoints of a run with other parameters"):
        runs.run_stage("00_first", "toy", ["steps=7"], progress=False)
    assert (out / runs.CHECKPOINTS / "checkpoint-5").is_dir() and "steps: 5" in (out / "params.yaml").read_text()
    runs.run_stage("00_first", "toy", ["steps=7"], output_name="toy_7", progress=False)  # under another name: runs


@pytest.mark.slow
def test_pipeline_runs_stages_in_order_and_skips_finished_ones(fake_repo, capsys):
    first = runs.run_pipeline("smoke")
    assert [(r.stem, r.state) for r in first] == [("00_first", "finished"), ("10_second", "finished")]
    again = runs.run_pipeline("smoke")
    assert [r.state for r in again] == ["skipped", "skipped"]
    (fake_repo / "params" / "10_second" / "smoke.yaml").write_text("name: changed\n")
    assert [r.state for r in runs.run_pipeline("smoke")] == ["skipped", "finished"]  # changed params rerun
    assert [r.state for r in runs.run_pipeline("smoke", force=True)] == ["finished", "finished"]
    (fake_repo / "params" / "00_first" / "smoke.yaml").write_text("steps: 3\n")
    # the first stage's outputs change, so the second, which may read them, runs again with unchanged params
    assert [r.state for r in runs.run_pipeline("smoke")] == ["finished", "finished"]
    assert [r.stem for r in runs.run_pipeline("toy")] == ["00_first"]  # only stages with a toy.yaml


@pytest.mark.slow
def test_pipeline_redoes_a_finished_stage_whose_outputs_are_gone(fake_repo):
    """A fresh clone has the committed record (run.json says finished) but not the git-ignored data or model."""
    runs.run_pipeline("smoke")
    out = fake_repo / "outputs" / "00_first" / "smoke"
    (out / "data").mkdir()
    runs.run_stage("00_first", "smoke", progress=False)  # this run produced data/
    assert read_json(out / "run.json")["artifacts"] == ["data"]
    assert [r.state for r in runs.run_pipeline("smoke")] == ["skipped", "skipped"]
    (out / "data").rmdir()  # as in a fresh clone
    assert [r.state for r in runs.run_pipeline("smoke")] == ["finished", "finished"]  # the second reads the first


@pytest.mark.slow
def test_runs_listing_and_cli(fake_repo, capsys):
    assert cli.main(["run", "00", "smoke", "-p", "steps=4"]) == 0
    assert cli.main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert "00_first" in listing and "finished" in listing and "score=2.0" in listing
    assert runs.list_runs()[0]["headline"] == "score=2.0"
    # A filter that matches nothing said "no runs under outputs/" although there were runs.
    assert cli.main(["runs", "--run", "toy"]) == 1
    assert "no run named 'toy'; runs: smoke" in capsys.readouterr().err
    assert cli.main(["runs", "99"]) == 1
    assert "no stage starts with '99'; stages with runs: 00_first" in capsys.readouterr().err
    assert cli.main(["runs", "00", "--run", "nope"]) == 1
    assert "no run named 'nope' of 00; runs of 00: smoke" in capsys.readouterr().err
    assert cli.main(["run", "00", "smoke", "-p", "stepz=4"]) == 1
    assert "unknown parameter 'stepz' (did you mean steps?)" in capsys.readouterr().err
    assert cli.main(["params", "00_first", "toy"]) == 0
    assert "training steps" in capsys.readouterr().out
    assert cli.main(["pipeline", "nothing"]) == 1


def test_write_metrics_keeps_them_flat(tmp_path):
    import numpy as np

    records.write_metrics(tmp_path, {"accuracy": np.float32(0.5), "n": 3})
    records.write_metrics(tmp_path, {"rapr": float("nan")})
    assert read_json(tmp_path / "metrics.json") == {"accuracy": 0.5, "n": 3, "rapr": None}
    with pytest.raises(TypeError, match="flat scalars"):
        records.write_metrics(tmp_path, {"curve": [1, 2]})


def test_output_dir_defaults_to_a_temp_folder():
    path = records.output_dir_for("", "00_visual_ops_tour")
    assert path.exists() and "outputs" not in path.parts
    shutil.rmtree(path)  # a test leaves no temp folder behind


def test_headline_is_the_stage_figure_that_matters():
    sft = {"final_loss": 0.32, "first_loss": 6.9, "eval_accuracy": 0.15, "eval_rapr": 0.38}
    assert runs.headline("20_train_sft", sft) == "acc=0.15 rapr=0.38"
    synthesis = {"sft_trajectories": 1400, "written_this_run": 1400, "failed_items": 0, "rl_queries": 500}
    assert runs.headline("10_synthesize_data", synthesis) == "trajectories=1400 rl_queries=500"
    rl_without_eval = {"steps": 2, "final_rapr": 0.6867469879, "final_accuracy": None, "eval_accuracy": None}
    assert runs.headline("30_train_rl", rl_without_eval) == "train_rapr=0.687"
    assert runs.headline("99_unknown", {"first": None, "second": 2.5e-05}) == "second=2.5e-05"
    assert runs.headline("40_evaluate", {}) == ""


def test_durations_read_like_a_clock():
    assert [runs.format_duration(s) for s in (None, 4.04, 244.4, 1195.0, 7625.0)] == [
        "",
        "4.0s",
        "4m04s",
        "19m55s",
        "2h07m",
    ]


@pytest.mark.slow
def test_listing_shows_running_and_failed_runs(fake_repo, capsys):
    import json

    folder = fake_repo / "outputs" / "20_train_sft" / "toy"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"state": "running", "started": "2020-01-01T00:00:00+00:00"}))
    (folder / "metrics.json").write_text(json.dumps({"final_loss": 0.3, "eval_accuracy": 0.15, "eval_rapr": 0.38}))
    with pytest.raises(StageFailed):
        runs.run_stage("00_first", "smoke", ["steps=-1"], progress=False)
    rows = {r["run"]: r for r in runs.list_runs()}
    assert rows["toy"]["state"] == "running" and rows["toy"]["duration"].endswith("m")  # hours since 2020
    assert rows["toy"]["headline"] == "acc=0.15 rapr=0.38"
    assert rows["smoke"]["state"] == "failed" and rows["smoke"]["headline"] == ""
    assert cli.main(["runs", "20"]) == 0
    listing = capsys.readouterr().out
    assert "duration" in listing and "20_train_sft" in listing and "00_first" not in listing


# ------------------------------------------------------------------------------ records are never lost


@pytest.mark.slow
def test_a_failed_run_keeps_the_finished_record_and_writes_beside_it(fake_repo):
    """A fresh clone's failed `pxr run 30_train_rl toy` emptied the committed metrics.json and executed.ipynb."""
    runs.run_stage("00_first", "toy", progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    before = {name: (out / name).read_bytes() for name in runs.OUTPUT_FILES}
    with pytest.raises(StageFailed, match="the finished record of .* is kept") as err:
        runs.run_stage("00_first", "toy", ["steps=-1"], progress=False)
    assert {name: (out / name).read_bytes() for name in runs.OUTPUT_FILES} == before
    failed = out / runs.FAILED
    assert str(failed / "executed.ipynb") in str(err.value) and read_json(failed / "run.json")["state"] == "failed"
    assert (failed / ".gitignore").read_text() == "*\n" and not (out / runs.KEPT).exists()
    assert runs.finished_before("00_first", "toy") is not None  # the pipeline still sees the finished run


@pytest.mark.slow
def test_a_runner_killed_mid_run_gets_the_finished_record_back(fake_repo):
    runs.run_stage("00_first", "toy", progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    finished = (out / "run.json").read_text()
    runs.keep_record(out)  # what a run does first; then the runner is killed with the folder half rewritten
    (out / "run.json").write_text('{"state": "running"}')
    (out / "metrics.json").write_text("{}")
    runs.restore_kept_record(out)  # what the next run does first
    assert (out / "run.json").read_text() == finished and read_json(out / "metrics.json") == {"score": 2.5, "name": "x"}


@pytest.mark.slow
def test_a_run_folder_without_a_finished_record_is_ignored_by_git_until_it_finishes(fake_repo):
    out = fake_repo / "outputs" / "00_first" / "smoke"
    with pytest.raises(StageFailed):
        runs.run_stage("00_first", "smoke", ["steps=-1"], progress=False)
    assert (out / ".gitignore").read_text().endswith("*\n")
    assert read_json(out / "run.json")["state"] == "failed" and (out / ".gitignore").exists()
    runs.run_stage("00_first", "smoke", progress=False)
    assert not (out / ".gitignore").exists() and runs.produced(out) == []


@pytest.mark.slow
def test_a_missing_input_is_named_with_the_command_that_makes_it_before_anything_is_written(fake_repo):
    (fake_repo / "params" / "10_second" / "toy.yaml").write_text("name: outputs/00_first/toy/model\n")
    out = fake_repo / "outputs" / "10_second" / "toy"
    with pytest.raises(StageFailed) as err:
        runs.run_stage("10_second", "toy", progress=False)
    message = str(err.value)
    assert "outputs/00_first/toy/model (parameter name), which is not there" in message
    assert "`pxr run 00_first toy`" in message and "`pxr pipeline toy`" in message
    assert not out.exists()  # refused before touching the folder (or a committed record in it)
    runs.run_stage("00_first", "toy", progress=False)
    (fake_repo / "outputs" / "00_first" / "toy" / "model").mkdir()
    assert runs.run_stage("10_second", "toy", progress=False).state == "finished"


@pytest.mark.slow
def test_a_run_folder_given_whole_needs_the_artifacts_its_record_lists(fake_repo):
    (fake_repo / "params" / "10_second" / "toy.yaml").write_text("name: outputs/00_first/toy\n")
    runs.run_stage("00_first", "toy", progress=False)
    record = fake_repo / "outputs" / "00_first" / "toy" / "run.json"
    record.write_text(record.read_text().replace('"artifacts": []', '"artifacts": ["data"]'))
    with pytest.raises(StageFailed, match=r"outputs/00_first/toy/ \(data\) \(parameter name\).*a fresh clone has"):
        runs.run_stage("10_second", "toy", progress=False)


@pytest.mark.slow
def test_a_run_with_failed_items_is_partial_and_the_pipeline_runs_it_again(fake_repo, capsys):
    body = (
        "from pxr.records import output_dir_for, write_metrics\n"
        "out = output_dir_for(output_dir, 'stage')\n"
        "write_metrics(out, {'done': 10 - steps, 'failed_items': steps})\n"
    )
    from tests.conftest import make_notebook

    parameters = 'steps = 2  # items that fail\nscale = 0.5  # x\nname = "x"  # x\noutput_dir = ""  # x\n'
    make_notebook(fake_repo / "notebooks" / "00_first.ipynb", parameters, body)
    assert [r.state for r in runs.run_pipeline("smoke")] == ["partial", "finished"]
    assert "00_first/smoke: partial: 3 items failed" in capsys.readouterr().out
    assert read_json(fake_repo / "outputs" / "00_first" / "smoke" / "run.json")["state"] == "partial"
    assert [r.state for r in runs.run_pipeline("smoke")][0] == "partial"  # not skipped: its items are retried
    (fake_repo / "params" / "00_first" / "smoke.yaml").write_text("steps: 0\n")
    assert [r.state for r in runs.run_pipeline("smoke")] == ["finished", "finished"]
    assert [r.state for r in runs.run_pipeline("smoke")] == ["skipped", "skipped"]


@pytest.mark.parametrize("blocker", ["file", "read-only"])
def test_an_unwritable_outputs_folder_is_a_clear_error_not_a_traceback(fake_repo, capsys, monkeypatch, blocker):
    outputs = fake_repo / "outputs"
    if blocker == "file":
        outputs.mkdir()
        (outputs / "00_first").write_text("not a folder")
    else:  # chmod does not stop root, so the refusal a read-only folder gives is made here
        real_mkdir = Path.mkdir

        def read_only(path, *args, **kwargs):
            if outputs in Path(path).parents:
                raise PermissionError(13, "Permission denied", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli.main(["run", "00_first", "toy"]) == 1
    err = capsys.readouterr().err
    assert "cannot write the run's record" in err and "Traceback" not in err
    assert ("is a file where pxr writes a folder" if blocker == "file" else "Permission denied") in err
    assert "make it writable" in err or blocker == "file"


def test_output_dir_cannot_be_overridden_silently(fake_repo, capsys):
    assert cli.main(["run", "00_first", "toy", "-p", "output_dir=/tmp/elsewhere"]) == 1
    err = capsys.readouterr().err
    assert "output_dir = '/tmp/elsewhere' would be ignored" in err and "--as NAME" in err


def test_a_kernel_started_below_the_repo_root_works_from_the_root(fake_repo, monkeypatch):
    """JupyterLab starts kernels in notebooks/, where outputs/20_train_sft/toy/model is not found."""
    (fake_repo / "outputs" / "20_train_sft" / "toy" / "model").mkdir(parents=True)
    monkeypatch.chdir(fake_repo / "notebooks")
    out = records.output_dir_for("outputs/00_first/x", "00_first")
    assert os.getcwd() == str(fake_repo) and out.resolve() == fake_repo / "outputs" / "00_first" / "x"
    assert Path("outputs/20_train_sft/toy/model").is_dir()


@pytest.mark.slow
def test_stages_run_without_the_kernel_transport_warning(fake_repo, capfd):
    runs.run_stage("00_first", "toy", progress=False)
    assert "without encryption" not in capfd.readouterr().err


def test_the_outputs_guard_names_what_changed_and_who_may_have_done_it():
    """It failed as an error of the last notebook cell, though another process had written into outputs/."""
    from tests.conftest import outputs_changes

    assert outputs_changes({"a/b/run.json": 1}, {"a/b/run.json": 1}) == ""
    message = outputs_changes({"a/b/run.json": 1, "gone": 1}, {"a/b/run.json": 2, "a/b/new.ipynb": 3})
    assert "(3 paths)" in message and "outputs/a/b/new.ipynb" in message and "outputs/gone" in message
    assert "another process did" in message


def test_temp_folders_of_processes_the_tests_start_land_in_a_scratch_folder():
    """`make test` left ~10 pxr-* folders (~95 MB): one per notebook kernel under nbval (`output_dir_for("")`)."""
    import subprocess
    import sys

    code = "import tempfile; print(tempfile.mkdtemp(prefix='pxr-x-'))"
    made = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    assert made.parent == Path(os.environ["TMPDIR"]) and made.parent.name.startswith("pxr-tests-")


@pytest.mark.slow
def test_checkpoints_left_by_a_failed_run_are_judged_by_that_run_s_parameters(fake_repo):
    """After a failed run the finished record (other parameters) is put back; its checkpoints are the failed run's."""
    runs.run_stage("00_first", "toy", progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    with pytest.raises(StageFailed):
        runs.run_stage("00_first", "toy", ["steps=-1"], progress=False)
    (out / runs.CHECKPOINTS / "checkpoint-2").mkdir(parents=True)  # as if the failed run had saved one
    with pytest.raises(StageFailed, match="checkpoints of a run with other parameters"):
        runs.run_stage("00_first", "toy", progress=False)  # the kept record's parameters must not resume from them
    with pytest.raises(StageFailed, match="steps must be >= 0"):
        runs.run_stage("00_first", "toy", ["steps=-1"], progress=False)  # the failed run's own: resumes


@pytest.mark.slow
def test_an_interrupted_run_puts_the_finished_record_back_and_stops(fake_repo, monkeypatch):
    import papermill

    runs.run_stage("00_first", "toy", progress=False)
    out = fake_repo / "outputs" / "00_first" / "toy"
    finished = (out / "run.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.run_stage("00_first", "toy", progress=False)
    assert (out / "run.json").read_text() == finished
    assert read_json(out / runs.FAILED / "run.json")["error"] == "interrupted"


def _git_repo(root):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (root / ".gitignore").write_text("outputs/*/smoke/\n")
    git("add", "-A")
    git("commit", "-qm", "start")
    return git


@pytest.mark.slow
def test_a_committable_record_starts_only_from_committed_code(fake_repo, monkeypatch):
    git = _git_repo(fake_repo)
    monkeypatch.delenv(runs.ALLOW_DIRTY_ENV, raising=False)
    # changes under outputs/ are records, not code: a clean run
    (fake_repo / "outputs" / "00_first").mkdir(parents=True)
    (fake_repo / "outputs" / "00_first" / "note.txt").write_text("x")
    git("add", "-A")
    git("commit", "-qm", "a record")
    (fake_repo / "outputs" / "00_first" / "note.txt").write_text("changed")
    assert runs.run_stage("00_first", "toy").state == "finished"
    assert read_json(fake_repo / "outputs" / "00_first" / "toy" / "run.json")["git_dirty"] is False
    # a changed params file is code: refused before anything is written, with the way out named
    (fake_repo / "params" / "00_first" / "toy.yaml").write_text("steps: 6\n")
    with pytest.raises(
        runs.StageFailed, match=r"1 tracked files have uncommitted changes \(params/00_first/toy.yaml\).*--allow-dirty"
    ):
        runs.run_stage("00_first", "toy")
    assert read_json(fake_repo / "outputs" / "00_first" / "toy" / "run.json")["params_hash"] != runs.params_hash(
        runs.stage_params("00_first", "toy")
    )
    # smoke runs are git-ignored: they run from any tree
    assert runs.run_stage("00_first", "smoke").state == "finished"
    # told to, it runs, and its record says so
    assert runs.run_stage("00_first", "toy", allow_dirty=True).state == "finished"
    assert read_json(fake_repo / "outputs" / "00_first" / "toy" / "run.json")["git_dirty"] is True
    monkeypatch.setenv(runs.ALLOW_DIRTY_ENV, "1")
    assert runs.run_stage("00_first", "toy").state == "finished"


@pytest.mark.slow
def test_the_cli_passes_allow_dirty_on(fake_repo, monkeypatch, capsys):
    _git_repo(fake_repo)
    monkeypatch.delenv(runs.ALLOW_DIRTY_ENV, raising=False)
    (fake_repo / "params" / "00_first" / "toy.yaml").write_text("steps: 6\n")
    assert cli.main(["run", "00_first", "toy"]) == 1
    assert "--allow-dirty" in capsys.readouterr().err
    assert cli.main(["run", "00_first", "toy", "--allow-dirty"]) == 0
