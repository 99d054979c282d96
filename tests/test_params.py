"""pxr.runner.params: merging base + run + overrides, and rejecting what the notebook does not declare."""

import pytest

from pxr.runner import params
from pxr.runner.params import ParamError


def test_base_then_run_then_overrides(fake_repo):
    assert params.load_params("00_first", "smoke") == {"steps": 3, "name": "smoke"}
    assert params.load_params("00_first", "toy", ["steps=7", "scale=1e-3"]) == {"steps": 7, "scale": 0.001}
    assert params.load_params("00_first", "base") == {"steps": 3}


def test_override_values_are_read_as_yaml():
    assert params.parse_override("lr=1e-6") == ("lr", 1e-6)
    assert params.parse_override("names=[a, b]") == ("names", ["a", "b"])
    assert params.parse_override("path=runs/x:y") == ("path", "runs/x:y")
    assert params.parse_override("flag=true") == ("flag", True)
    with pytest.raises(ParamError, match="key=value"):
        params.parse_override("no-equals-sign")


def test_unknown_names_are_errors_with_suggestions(fake_repo):
    with pytest.raises(ParamError, match=r"unknown parameter 'stesp' \(did you mean steps\?\)"):
        params.load_params("00_first", "smoke", ["stesp=4"])


@pytest.mark.parametrize(
    ("override", "ok"),
    [("scale=2", True), ("steps=2.5", False), ("steps=true", False), ("name=3", False), ("name=null", True)],
)
def test_values_must_fit_the_type_of_the_default(fake_repo, override, ok):
    if ok:
        params.load_params("00_first", "smoke", [override])
    else:
        with pytest.raises(ParamError, match="the notebook's default"):
            params.load_params("00_first", "smoke", [override])


def test_missing_run_file_lists_the_runs(fake_repo):
    with pytest.raises(ParamError, match="runs of 00_first: base, smoke, toy"):
        params.load_params("00_first", "paper")


def test_bad_yaml_is_reported(fake_repo):
    (fake_repo / "params" / "00_first" / "broken.yaml").write_text("steps: [1\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        params.load_params("00_first", "broken")
    (fake_repo / "params" / "00_first" / "list.yaml").write_text("- 1\n")
    with pytest.raises(ParamError, match="must map parameter names"):
        params.load_params("00_first", "list")


def test_stems_resolve_by_unique_prefix(fake_repo):
    assert params.stems() == ["00_first", "10_second"]
    assert params.resolve_stem("10") == "10_second"
    with pytest.raises(ParamError, match="unknown notebook"):
        params.resolve_stem("99")


def test_real_notebooks_declare_their_parameters_with_help():
    import nbformat

    for stem in params.stems():
        declared = params.notebook_parameters(stem)
        cell = next(
            c
            for c in nbformat.read(params.notebook_path(stem), as_version=4).cells
            if "parameters" in c.metadata.get("tags", [])
        )
        assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if line.strip()]
        # papermill skips a line it cannot parse (an "=" or quotes in the comment): that name would be rejected
        assert list(declared) == assigned, f"{stem}: papermill reads {list(declared)}"
        assert all(p["help"] for p in declared.values()), f"{stem}: every parameter needs a trailing comment"
        for run in params.run_names(stem):
            params.load_params(stem, run)  # every committed params file validates


def test_a_run_extends_another_run(fake_repo):
    folder = fake_repo / "params" / "00_first"
    (folder / "ablation.yaml").write_text("extends: toy\nscale: 2.0\n")
    (folder / "deeper.yaml").write_text("extends: ablation\nname: deep\n")
    assert params.load_params("00_first", "ablation") == {"steps": 5, "scale": 2.0}
    assert params.load_params("00_first", "deeper") == {"steps": 5, "scale": 2.0, "name": "deep"}
    (folder / "loop_a.yaml").write_text("extends: loop_b\n")
    (folder / "loop_b.yaml").write_text("extends: loop_a\n")
    with pytest.raises(params.ParamError, match="circle"):
        params.load_params("00_first", "loop_a")
    (folder / "orphan.yaml").write_text("extends: nowhere\n")
    with pytest.raises(params.ParamError, match="no params file"):
        params.load_params("00_first", "orphan")


def test_a_line_is_shared_by_its_stages_and_a_run_still_wins(fake_repo):
    from tests.conftest import make_notebook

    make_notebook(fake_repo / "notebooks" / "20_third.ipynb", "steps = 2  # steps\nwidth = 8  # a width\n", "pass\n")
    (fake_repo / "params" / "20_third").mkdir()
    (fake_repo / "params" / "lines").mkdir()
    (fake_repo / "params" / "lines" / "exp.yaml").write_text("scale: 0.25\nwidth: 16\n")
    for stem in ("00_first", "20_third"):
        (fake_repo / "params" / stem / "exp.yaml").write_text("line: exp\nsteps: 9\n")
    (fake_repo / "params" / "00_first" / "exp_wide.yaml").write_text("extends: exp\nscale: 2.0\n")
    # each stage takes the line's settings it declares: 00_first has no `width`, 20_third no `scale`
    assert params.load_params("00_first", "exp") == {"steps": 9, "scale": 0.25}
    assert params.load_params("20_third", "exp") == {"steps": 9, "width": 16}
    # a run that extends a line's run keeps the line; its own value wins over the line's, an override over both
    assert params.load_params("00_first", "exp_wide") == {"steps": 9, "scale": 2.0}
    assert params.load_params("00_first", "exp_wide", ["scale=3.0"])["scale"] == 3.0


def test_a_line_with_a_setting_no_stage_declares_is_an_error(fake_repo):
    (fake_repo / "params" / "lines").mkdir()
    (fake_repo / "params" / "lines" / "exp.yaml").write_text("scael: 0.25\n")
    (fake_repo / "params" / "00_first" / "exp.yaml").write_text("line: exp\n")
    with pytest.raises(ParamError, match="no notebook declares scael"):
        params.load_params("00_first", "exp")
    (fake_repo / "params" / "00_first" / "other.yaml").write_text("line: nowhere\n")
    with pytest.raises(ParamError, match=r"no line 'nowhere'.*lines: exp"):
        params.load_params("00_first", "other")
