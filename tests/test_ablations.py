"""pxr.ablations on a fake outputs/ tree: runs collected and classified into Table 1 rows, flat table rows, the
learning-trap curves, what is missing, bad folders reported rather than fatal."""

import json

import pytest
import yaml

from pxr import ablations as A


def make_run(root, stage, run, metrics, params=None, *, state="finished", steps=None, raw_steps=""):
    folder = root / stage / run
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "params.yaml").write_text(yaml.safe_dump(params or {}))
    (folder / "run.json").write_text(json.dumps({"state": state}))
    if steps is not None:
        (folder / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps) + raw_steps)
    return folder


def rl_steps(rapr_values, accuracy=0.5):
    return [{"step": i + 1, "pxr/rapr": r, "pxr/accuracy": accuracy, "loss": 0.1} for i, r in enumerate(rapr_values)]


@pytest.fixture
def outputs(tmp_path):
    root = tmp_path / "outputs"
    make_run(
        root,
        "10_synthesize_data",
        "toy",
        {"sft_trajectories": 1400, "self_correction_share": 0.436},
        {"share_single": 0.3},
    )
    make_run(root, "10_synthesize_data", "toy_no_correction", {"self_correction_share": 0.0})
    make_run(
        root,
        "20_train_sft",
        "toy",
        {"final_loss": 0.3, "eval_accuracy": 0.15, "eval_rapr": 0.38},
        {"synth_dir": "outputs/10_synthesize_data/toy"},
    )
    make_run(
        root,
        "20_train_sft",
        "toy_no_correction",
        {"eval_accuracy": 0.1, "eval_rapr": 0.2},
        {"synth_dir": "outputs/10_synthesize_data/toy_no_correction"},
    )
    rl = {
        "sft_dir": "outputs/20_train_sft/toy",
        "curiosity_coef": 0.5,
        "curiosity_target_rate": 0.3,
        "penalty_coef": 0.05,
        "prompt": "pixel",
    }
    make_run(
        root,
        "30_train_rl",
        "toy",
        {"final_rapr": 0.4, "final_accuracy": 0.3, "eval_accuracy": 0.25, "eval_rapr": 0.35},
        rl,
        steps=rl_steps([0.4, 0.4, 0.5]),
    )
    make_run(
        root,
        "30_train_rl",
        "toy_no_curiosity",
        {"final_rapr": 0.05, "eval_accuracy": 0.2},
        {**rl, "curiosity_coef": 0.0},
        steps=rl_steps([0.4, 0.2, 0.0]),
        raw_steps="{not json\n",
    )
    make_run(
        root,
        "30_train_rl",
        "toy_no_selfcorr",
        {"eval_accuracy": 0.22},
        {**rl, "sft_dir": "outputs/20_train_sft/toy_no_correction"},
    )
    make_run(root, "30_train_rl", "toy_text", {"eval_accuracy": 0.12}, {**rl, "prompt": "text"})
    make_run(root, "30_train_rl", "crashed", {}, rl, state="failed")
    make_run(
        root,
        "40_evaluate",
        "toy",
        {"accuracy": 0.16, "rapr": 0.4, "vstar_accuracy": 0.5, "control": "none"},
        {"model_path": "outputs/20_train_sft/toy/model", "control": "none", "benchmark": "synthetic-zoom"},
    )
    make_run(root, "40_evaluate", "toy_rl", {"accuracy": 0.26}, {"model_path": "outputs/30_train_rl/toy/model"})
    make_run(
        root,
        "40_evaluate",
        "toy_blank",
        {"accuracy": 0.05},
        {"model_path": "outputs/20_train_sft/toy/model", "control": "blank"},
    )
    make_run(root, "40_evaluate", "paper", {"accuracy": 0.84}, {"model_path": "TIGER-Lab/PixelReasoner-RL-v1"})
    (root / "40_evaluate" / "broken").mkdir()
    (root / "40_evaluate" / "broken" / "metrics.json").write_text("{oops")
    return root


def test_runs_are_classified_into_table_rows(outputs):
    runs, report = A.collect_runs(outputs)
    rows = {(r.stage, r.run): r.row for r in runs}
    assert rows == {
        ("10_synthesize_data", "toy"): "",
        ("10_synthesize_data", "toy_no_correction"): "",
        ("20_train_sft", "toy"): A.SFT_ONLY,
        ("20_train_sft", "toy_no_correction"): A.SFT_ONLY,
        ("30_train_rl", "toy"): A.RL,
        ("30_train_rl", "toy_no_curiosity"): A.RL_NO_CURIOSITY,
        ("30_train_rl", "toy_no_selfcorr"): A.RL_NO_SELF_CORRECTION,
        ("30_train_rl", "toy_text"): A.CONTROLS,
        ("40_evaluate", "toy"): A.SFT_ONLY,
        ("40_evaluate", "toy_rl"): A.RL,
        ("40_evaluate", "toy_blank"): A.CONTROLS,
        ("40_evaluate", "paper"): A.OTHER_MODELS,
    }
    assert report["unfinished"] == ["30_train_rl/crashed (failed)"]
    assert report["unreadable"] == ["40_evaluate/broken: JSONDecodeError"]
    assert report["bad_step_lines"] == 1 and report["folders"] == 14


def test_self_correction_read_from_synthesis_params_when_metrics_lack_the_share(tmp_path):
    root = tmp_path / "outputs"
    make_run(root, "10_synthesize_data", "plain", {}, {"share_single": 1.0, "share_wrong_crop": 0.0})
    make_run(root, "20_train_sft", "plain", {}, {"synth_dir": "outputs/10_synthesize_data/plain"})
    assert A.had_self_correction_data({"sft_dir": "outputs/20_train_sft/plain"}, root) is False
    assert A.had_self_correction_data({"sft_dir": "outputs/20_train_sft/absent"}, root) is None
    assert A.had_self_correction_data({"sft_dir": ""}, root) is None


def test_table_rows_are_flat_in_table_order_with_figures_from_any_stage(outputs):
    runs, _ = A.collect_runs(outputs)
    rows = A.table_rows(runs)
    assert [(r["row"], r["stage"][:2], r["run"]) for r in rows] == [
        (A.SFT_ONLY, "20", "toy"),
        (A.SFT_ONLY, "20", "toy_no_correction"),
        (A.SFT_ONLY, "40", "toy"),
        (A.RL_NO_CURIOSITY, "30", "toy_no_curiosity"),
        (A.RL, "30", "toy"),
        (A.RL, "40", "toy_rl"),
        (A.RL_NO_SELF_CORRECTION, "30", "toy_no_selfcorr"),
        (A.CONTROLS, "30", "toy_text"),
        (A.CONTROLS, "40", "toy_blank"),
        (A.OTHER_MODELS, "40", "paper"),
    ]
    rl = rows[4]
    assert rl["accuracy"] == 0.25 and rl["rapr"] == 0.35 and rl["train_rapr"] == 0.4  # held-out first
    assert (rl["α"], rl["H"], rl["β"], rl["prompt"]) == (0.5, 0.3, 0.05, "pixel")
    assert rows[3]["rapr"] == 0.05 and rows[3]["α"] == 0.0  # only the training figure exists
    assert rows[2]["benchmark"] == "synthetic-zoom" and rows[2]["accuracy"] == 0.16 and "α" not in rows[2]
    assert all(isinstance(v, (str, int, float, type(None))) for r in rows for v in r.values())


def test_learning_trap_curves_and_smoothing(outputs):
    runs, _ = A.collect_runs(outputs)
    series = A.step_curves(runs)
    assert sorted(series) == ["toy accuracy", "toy rapr", "toy_no_curiosity accuracy", "toy_no_curiosity rapr"]
    assert series["toy_no_curiosity rapr"] == [(1, 0.4), (2, 0.2), (3, 0.0)]
    smoothed = A.step_curves(runs, window=2)["toy_no_curiosity rapr"]
    assert smoothed == [(1, 0.4), (2, pytest.approx(0.3)), (3, pytest.approx(0.1))]


def test_missing_rows_name_the_command_that_fills_them(outputs, tmp_path):
    runs, report = A.collect_runs(outputs)
    assert A.missing_rows(runs) == {}
    only_sft = [r for r in runs if r.stage == "20_train_sft"]
    missing = A.missing_rows(only_sft)
    assert list(missing) == [A.RL_NO_CURIOSITY, A.RL, A.RL_NO_SELF_CORRECTION, A.CONTROLS, A.OTHER_MODELS]
    assert missing[A.RL_NO_CURIOSITY] == "pxr run 30_train_rl toy_no_curiosity"
    metrics = A.summary_metrics(runs, report)
    assert metrics["runs"] == 10 and metrics["rl_runs"] == 4 and metrics["runs_rl_without_curiosity"] == 1
    assert metrics["unreadable_folders"] == 1
    empty, _ = A.collect_runs(tmp_path / "nothing")
    assert empty == [] and A.table_rows(empty) == [] and A.step_curves(empty) == {}


def test_evaluation_rows_keep_every_numeric_figure(outputs):
    runs, _ = A.collect_runs(outputs)
    rows = {r["run"]: r for r in A.evaluation_rows(runs)}
    assert rows["toy"] == {"row": A.SFT_ONLY, "run": "toy", "accuracy": 0.16, "rapr": 0.4, "vstar_accuracy": 0.5}


def test_unfinished_runs_can_be_included(outputs):
    runs, report = A.collect_runs(outputs, include_unfinished=True)
    assert ("30_train_rl", "crashed") in {(r.stage, r.run) for r in runs} and report["unfinished"] == []
    with pytest.raises(ValueError, match="smooth_steps"):
        A.AblationsConfig(smooth_steps=0)


def test_learning_trap_figure_draws_one_colour_per_run(outputs):
    runs, _ = A.collect_runs(outputs)
    fig = A.learning_trap_figure(A.step_curves(runs))
    lines = fig.axes[0].get_lines()
    assert [(line.get_color(), line.get_linestyle()) for line in lines] == [
        ("C0", "-"),
        ("C0", "--"),
        ("C1", "-"),
        ("C1", "--"),
    ]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["toy", "toy_no_curiosity"]


def test_notebook_builds_the_table_and_figure_from_a_fake_outputs_tree(outputs, tmp_path):
    import papermill

    from pxr import params

    out = tmp_path / "run"
    papermill.execute_notebook(
        str(params.notebook_path("50_ablations")),
        str(tmp_path / "executed.ipynb"),
        parameters={"outputs_root": str(outputs), "output_dir": str(out), "smooth_steps": 1},
        kernel_name="python3",
        progress_bar=False,
    )
    table = (out / "ablations.md").read_text()
    assert "| RL without curiosity | toy_no_curiosity | 30_train_rl |" in table and "Missing rows" not in table
    assert (out / "learning_trap.jpg").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["runs_rl_without_self_correction_data"] == 1


def test_trap_map_has_a_panel_per_knob_value_and_a_colour_per_arm(tmp_path):
    root = tmp_path / "outputs"
    for knob, budget in (("k0", 18816), ("k1", 42336)):
        for alpha in (0.0, 0.5):
            for seed in (0, 1):
                params = {
                    "image_max_pixels": budget,
                    "curiosity_coef": alpha,
                    "curiosity_target_rate": 0.3,
                    "seed": seed,
                }
                make_run(root, "30_train_rl", f"trap_{knob}_a{alpha:g}_s{seed}", {}, params, steps=rl_steps([0.3, 0.1]))
    make_run(root, "30_train_rl", "toy", {}, {"image_max_pixels": 18816}, steps=rl_steps([0.5]))  # not in the map
    runs, _ = A.collect_runs(root)
    fig = A.trap_map_figure(runs)
    assert [ax.get_title() for ax in fig.axes] == ["query budget 18816 px", "query budget 42336 px"]
    first = fig.axes[0]
    solid = [line for line in first.get_lines() if line.get_linestyle() == "-"]
    assert sorted(line.get_label() for line in solid) == [
        "trap_k0_a0.5_s0",
        "trap_k0_a0.5_s1",
        "trap_k0_a0_s0",
        "trap_k0_a0_s1",
    ]
    assert {line.get_label(): line.get_color() for line in solid}["trap_k0_a0_s0"] == "C0"
    assert {line.get_label(): line.get_color() for line in solid}["trap_k0_a0.5_s1"] == "C1"
    assert sorted(line.get_ydata()[0] for line in first.get_lines() if line.get_linestyle() == ":") == [0.15, 0.3]
    assert A.trap_map_figure([r for r in runs if r.run == "toy"]) is None
