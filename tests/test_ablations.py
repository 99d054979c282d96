"""pxr.evaluation.ablations on a fake outputs/ tree: runs collected and classified into Table 1 rows, flat table rows, the
learning-trap curves, what is missing, bad folders reported rather than fatal."""

import json

import pytest
import yaml

from pxr.evaluation import ablations as A
from pxr.metrics import answer_baselines


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
    by_name = {r.run: r for r in runs if r.stage == "30_train_rl"}
    assert sorted(name for name, run in by_name.items() if run.steps) == ["toy", "toy_no_curiosity"]
    assert A.run_curves(by_name["toy_no_curiosity"])["pxr/rapr"] == [(1, 0.4), (2, 0.2), (3, 0.0)]
    assert A.run_curves(by_name["toy_no_curiosity"], ("pxr/missing",)) == {"pxr/missing": []}
    smoothed = A.run_curves(by_name["toy_no_curiosity"], window=2)["pxr/rapr"]
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
    assert empty == [] and A.table_rows(empty) == [] and A.table1(empty) == [] and A.line_panels(empty) == []
    assert A.baseline_rows(empty) == [] and A.learning_trap_figure([]) is None


def test_every_figure_of_every_run_lands_in_metrics(outputs):
    runs, report = A.collect_runs(outputs)
    metrics = A.all_metrics(runs, report, A.table1(runs), A.baseline_rows(runs))
    assert {k: v for k, v in metrics.items() if k.startswith("40_evaluate/toy/")} == {
        "40_evaluate/toy/row": A.SFT_ONLY,
        "40_evaluate/toy/benchmark": "synthetic-zoom",
        "40_evaluate/toy/accuracy": 0.16,
        "40_evaluate/toy/rapr": 0.4,
        "40_evaluate/toy/rapr_zoom_needed": None,
        "40_evaluate/toy/mean_ops": None,
        "40_evaluate/toy/train_accuracy": None,
        "40_evaluate/toy/train_rapr": None,
        "40_evaluate/toy/vstar_accuracy": 0.5,
    }
    for row in A.table_rows(runs):  # the old wide table's every column, nothing lost
        for column, value in row.items():
            if column not in ("stage", "run"):
                assert metrics[f"{row['stage']}/{row['run']}/{column}"] == value
    for run in runs:
        if run.row:
            for key, value in run.metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert metrics[f"{run.stage}/{run.run}/{key}"] == value
    assert metrics["runs"] == 10 and "10_synthesize_data/toy/sft_trajectories" not in metrics


def test_unfinished_runs_can_be_included(outputs):
    runs, report = A.collect_runs(outputs, include_unfinished=True)
    assert ("30_train_rl", "crashed") in {(r.stage, r.run) for r in runs} and report["unfinished"] == []
    with pytest.raises(ValueError, match="smooth_steps"):
        A.AblationsConfig(smooth_steps=0)


def test_learning_trap_figure_draws_one_colour_per_arm(outputs):
    runs, _ = A.collect_runs(outputs)
    panels = A.line_panels(runs)
    assert [(p.title, [r.run for r in p.runs]) for p in panels] == [
        ("toy (from 20_train_sft/toy)", ["toy", "toy_no_curiosity"])
    ]
    fig = A.learning_trap_figure(panels)
    rapr, accuracy = fig.axes
    assert [(line.get_label(), line.get_color(), line.get_linestyle()) for line in rapr.get_lines()] == [
        ("_H 0.3", "grey", "--"),
        ("_H/2 0.15", "grey", "--"),
        ("without curiosity (α 0)", "C0", "-"),
        ("with curiosity (α 0.5)", "C1", "-"),
    ]
    assert [line.get_label() for line in accuracy.get_lines()] == ["without curiosity (α 0)", "with curiosity (α 0.5)"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["without curiosity (α 0)", "with curiosity (α 0.5)"]
    assert (rapr.get_ylabel(), accuracy.get_ylabel(), accuracy.get_xlabel()) == ("sampled RaPR", "accuracy", "step")


@pytest.mark.slow
def test_notebook_builds_the_table_and_figure_from_a_fake_outputs_tree(outputs, tmp_path):
    import papermill

    from pxr.runner import params

    out = tmp_path / "run"
    papermill.execute_notebook(
        str(params.notebook_path("50_ablations")),
        str(tmp_path / "executed.ipynb"),
        parameters={"outputs_root": str(outputs), "output_dir": str(out), "smooth_steps": 1},
        kernel_name="python3",
        progress_bar=False,
    )
    table = (out / "ablations.md").read_text()
    # the fake runs' figures do not split zoom-needed from coarse items: accuracy and RaPR over all items
    assert "| row | variant | acc, all items | RaPR, all items | from |" in table
    assert "| RL without curiosity | toy_no_curiosity | 0.200 |  | held-out |" in table
    assert "| RL | toy | 0.260 |  | evaluation |" in table  # its evaluation (40_evaluate/toy_rl) before held-out
    assert "| other models | paper | 0.840 |  | evaluation |" in table and "no run yet" not in table
    assert (out / "learning_trap.jpg").stat().st_size > 1000
    assert (out / "learning_trap_map.jpg").stat().st_size > 1000  # the committed knobs, every panel "not run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runs_rl_without_self_correction_data"] == 1 and metrics["40_evaluate/toy/vstar_accuracy"] == 0.5


def test_trap_map_has_a_panel_per_knob_value_and_a_colour_per_arm(tmp_path):
    root = tmp_path / "outputs"
    for knob, budget in (("k0", 18816), ("k2", 75264)):  # k1 has not run
        for alpha in (0.0, 0.5):
            for seed in (0, 1):
                params = {
                    "image_max_pixels": budget,
                    "curiosity_coef": alpha,
                    "curiosity_target_rate": 0.3,
                    "seed": seed,
                    "sft_dir": f"outputs/20_train_sft/trap_{knob}",
                }
                rapr = [0.3 + 0.1 * seed, 0.1 + 0.1 * seed, 0.1]
                make_run(root, "30_train_rl", f"trap_{knob}_a{alpha:g}_s{seed}", {}, params, steps=rl_steps(rapr))
    make_run(root, "30_train_rl", "toy", {}, {"image_max_pixels": 18816, "sft_dir": "x"}, steps=rl_steps([0.5]))
    runs, _ = A.collect_runs(root)
    knobs = [
        (k, f"{k}: query budget {b} px", frozenset(f"trap_{k}_a{a}_s{s}" for a in ("0", "0.5") for s in (0, 1)))
        for k, b in (("k0", 18816), ("k1", 42336), ("k2", 75264))
    ]
    panels = A.trap_panels(runs, knobs)
    assert [len(p.runs) for p in panels] == [4, 0, 4]  # `toy` is not in the map
    fig = A.learning_trap_figure(panels, window=2)
    assert len(fig.axes) == 6  # two rows of three panels
    top = fig.axes[:3]
    assert [ax.get_title() for ax in top] == [
        "k0: query budget 18816 px",
        "k1: query budget 42336 px",
        "k2: query budget 75264 px",
    ]
    lines = top[0].get_lines()
    thin = {line.get_label(): line for line in lines if line.get_linewidth() < 1 and line.get_linestyle() == "-"}
    thick = {line.get_label(): line for line in lines if line.get_linewidth() > 2}
    assert sorted(thin) == ["_trap_k0_a0.5_s0", "_trap_k0_a0.5_s1", "_trap_k0_a0_s0", "_trap_k0_a0_s1"]
    assert thin["_trap_k0_a0_s0"].get_color() == "C0" and thin["_trap_k0_a0.5_s1"].get_color() == "C1"
    assert list(thick) == ["without curiosity (α 0)", "with curiosity (α 0.5)"]
    # the mean of the seeds, smoothed over 2 steps: seed 0 0.3, 0.2, 0.1; seed 1 0.4, 0.3, 0.15
    assert list(thick["without curiosity (α 0)"].get_ydata()) == pytest.approx([0.35, 0.25, 0.125])
    dashed = sorted(line.get_ydata()[0] for line in lines if line.get_linestyle() == "--")
    assert dashed == [0.15, 0.3]  # H/2 and H
    assert not [line for line in fig.axes[3].get_lines() if line.get_linestyle() == "--"]  # accuracy: no H lines
    for ax in (top[1], fig.axes[4]):
        assert [t.get_text() for t in ax.texts] in (["not run"], ["H 0.3", "H/2 0.15", "not run"])
        assert all(line.get_linestyle() == "--" for line in ax.get_lines())
    assert A.line_panels(runs, exclude=frozenset().union(*(names for _, _, names in knobs)))[0].runs[0].run == "toy"


@pytest.mark.slow
def test_trap_knobs_come_from_the_committed_grids():
    knobs = A.trap_knobs()
    assert [(knob, title) for knob, title, _ in knobs] == [
        ("k0", "k0: query budget 18816 px"),
        ("k1", "k1: query budget 42336 px"),
        ("k2", "k2: query budget 75264 px"),
    ]
    assert knobs[1][2] == {"trap_k1_a0_s0", "trap_k1_a0_s1", "trap_k1_a0.5_s0", "trap_k1_a0.5_s1"}
    empty = A.learning_trap_figure(A.trap_panels([], knobs))
    assert [t.get_text() for ax in empty.axes for t in ax.texts if t.get_text() == "not run"] == ["not run"] * 6


def _held_out(zoom_needed, coarse, valid):
    return {
        "eval_items": 10,
        "eval_accuracy_zoom_needed": zoom_needed,
        "eval_accuracy_coarse": coarse,
        "eval_rapr_zoom_needed": 1.0,
        "eval_rapr_coarse": 0.0,
        "eval_op_error_rate": 0.1,
        "eval_valid_call_rate_zoom_needed": valid,
    }


def _suite(zoom_needed, coarse, **more):
    figures = {"accuracy_zoom_needed": zoom_needed, "accuracy_coarse": coarse, "rapr_zoom_needed": 1.0}
    return {**figures, "rapr_coarse": 0.0, "op_error_rate": 0.0, "metric": "accuracy", **more}


@pytest.fixture
def line(tmp_path):
    """The toy line as the notebooks write it: SFT and RL at two seeds, evaluations of the main and named suites,
    a text control, and the scored records of one evaluation."""
    root = tmp_path / "outputs"
    make_run(root, "10_synthesize_data", "toy", {"self_correction_share": 0.3})
    sft = {"synth_dir": "outputs/10_synthesize_data/toy", "seed": 0, "output_dir": "outputs/20_train_sft/toy"}
    make_run(root, "20_train_sft", "toy", {"final_loss": 0.3, **_held_out(0.2, 0.3, 0.9)}, sft)
    sft1 = {**sft, "seed": 1, "output_dir": "outputs/20_train_sft/toy_seed1"}
    make_run(root, "20_train_sft", "toy_seed1", {"final_loss": 0.4, **_held_out(0.1, 0.3, 0.7)}, sft1)
    rl = {"sft_dir": "outputs/20_train_sft/toy", "curiosity_coef": 0.5, "curiosity_target_rate": 0.3, "seed": 0}
    for name, alpha, seed, rapr in (
        ("toy", 0.5, 0, [0.4, 0.4]),
        ("toy_rl_seed1", 0.5, 1, [0.5, 0.3]),
        ("toy_no_curiosity", 0.0, 0, [0.4, 0.1]),
        ("toy_no_curiosity_seed1", 0.0, 1, [0.3, 0.0]),
    ):
        params = {**rl, "curiosity_coef": alpha, "seed": seed, "output_dir": f"outputs/30_train_rl/{name}"}
        make_run(
            root,
            "30_train_rl",
            name,
            {"final_rapr": rapr[-1], **_held_out(0.1, 0.2, 1.0)},
            params,
            steps=rl_steps(rapr),
        )
    evaluation = {"benchmark": "synthetic-zoom", "control": "none", "prompt": "pixel"}
    sft_model = {**evaluation, "model_path": "outputs/20_train_sft/toy/model"}
    folder = make_run(root, "40_evaluate", "toy", _suite(0.17, 0.27, zoom_iou=0.2), sft_model)
    records = [("3", "read", True), ("3", "read", True), ("5", "read", True), ("7", "count", True)]
    records += [("red", "coarse", False), ("blue", "coarse", False)]
    (folder / "records.jsonl").write_text(
        "".join(
            json.dumps({"answer": a, "meta": {"kind": k, "needs_op": n}, "score": 0.0}) + "\n" for a, k, n in records
        )
    )
    named = {**sft_model, "benchmark": "synthetic-zoom-named"}
    make_run(root, "40_evaluate", "toy_named", {"accuracy": 0.05, "metric": "accuracy"}, named)
    for name, model in (("toy_rl", "toy"), ("toy_rl_seed1", "toy_rl_seed1")):
        params = {**evaluation, "model_path": f"outputs/30_train_rl/{model}/model"}
        make_run(root, "40_evaluate", name, _suite(0.15 if model == "toy" else 0.12, 0.2), params)
    text = {**evaluation, "model_path": "outputs/15_perception_base/toy/model", "control": "text"}
    make_run(root, "40_evaluate", "toy_text", _suite(0.075, 0.27), text)
    return root


def test_table1_has_a_row_per_variant_with_seeds_joined_and_evaluations_attached(line):
    runs, _ = A.collect_runs(line)
    table = A.table1(runs)
    assert [(t["row"], t["variant"]) for t in table] == [
        (A.SFT_ONLY, "toy"),
        (A.RL_NO_CURIOSITY, "toy_no_curiosity"),
        (A.RL, "toy"),
        (A.CONTROLS, "toy_text"),
    ]
    sft, no_curiosity, rl, text = table
    assert sft["runs"] == ["20_train_sft/toy", "40_evaluate/toy", "40_evaluate/toy_named", "20_train_sft/toy_seed1"]
    assert sft["seeds"] == [0, 1] and sft["source"] == "evaluation, held-out"
    # seed 0 from its evaluation (0.17), seed 1 from its held-out rollouts (0.1): mean ± half the range
    assert sft["figures"]["acc_zoom_needed"] == (pytest.approx(0.135), pytest.approx(0.035), 2)
    assert sft["figures"]["acc_named"] == (0.05, None, 1) and sft["figures"]["valid_calls"][:2] == pytest.approx(
        (0.8, 0.1)
    )
    assert rl["figures"]["acc_zoom_needed"] == (pytest.approx(0.135), pytest.approx(0.015), 2)
    assert no_curiosity["source"] == "held-out" and no_curiosity["figures"]["acc_zoom_needed"] == (0.1, 0.0, 2)
    assert text["runs"] == ["40_evaluate/toy_text"] and text["seeds"] == [] and "valid_calls" not in text["figures"]


def test_table1_shows_the_papers_columns_first_and_the_baselines(line):
    runs, _ = A.collect_runs(line)
    table, baselines = A.table1(runs), A.baseline_rows(runs)
    rows, columns = A.table1_markdown_rows(table + baselines)
    assert columns == [
        "row",
        "variant",
        "zoom-needed acc",
        "coarse acc",
        "named-suite acc",
        "RaPR zoom-needed",
        "RaPR coarse",
        "op errors",
        "valid calls",
        "from",
    ]
    assert rows[0]["variant"] == "toy ×2 (seeds 0, 1)" and rows[0]["zoom-needed acc"] == "0.135 ± 0.035"
    assert rows[0]["named-suite acc"] == "0.050" and rows[3]["valid calls"] == ""
    # zoom-needed answers 3, 3, 5 (read) and 7 (count); coarse red, blue
    assert [(r["variant"], r["zoom-needed acc"], r["coarse acc"]) for r in rows[4:]] == [
        (A.CHANCE, "0.375", "0.500"),
        (A.MAJORITY, "0.750", "0.500"),
    ]
    assert answer_baselines([]) == {}


def test_every_shown_figure_and_baseline_lands_in_metrics(line):
    runs, report = A.collect_runs(line)
    table, baselines = A.table1(runs), A.baseline_rows(runs)
    metrics = A.all_metrics(runs, report, table, baselines)
    assert metrics["table/sft_only/toy/acc_zoom_needed"] == pytest.approx(0.135)
    assert metrics["table/sft_only/toy/acc_zoom_needed_spread"] == pytest.approx(0.035)
    assert metrics["table/sft_only/toy/acc_zoom_needed_n"] == 2
    assert (
        metrics["table/rl/toy/runs"]
        == "30_train_rl/toy, 40_evaluate/toy_rl, 30_train_rl/toy_rl_seed1, 40_evaluate/toy_rl_seed1"
    )
    assert metrics["baseline/chance_answer_prior/acc_zoom_needed"] == pytest.approx(0.375)
    assert metrics["40_evaluate/toy/zoom_iou"] == 0.2 and metrics["20_train_sft/toy_seed1/final_loss"] == 0.4
    for t in table:
        for column, (mean, _, n) in t["figures"].items():
            assert metrics[f"table/{A._slug(t['row'])}/{t['variant']}/{column}"] == mean
            assert metrics[f"table/{A._slug(t['row'])}/{t['variant']}/{column}_n"] == n


def test_line_figure_has_one_panel_with_seeds_thin_and_their_mean_thick(line):
    runs, _ = A.collect_runs(line)
    panels = A.line_panels(runs)
    assert [p.title for p in panels] == ["toy (from 20_train_sft/toy)"]
    fig = A.learning_trap_figure(panels)
    rapr = fig.axes[0]
    solid = [ln for ln in rapr.get_lines() if ln.get_linestyle() == "-"]
    assert [(ln.get_label(), ln.get_color(), ln.get_linewidth() > 2) for ln in solid] == [
        ("_toy_no_curiosity", "C0", False),
        ("_toy_no_curiosity_seed1", "C0", False),
        ("without curiosity (α 0)", "C0", True),
        ("_toy", "C1", False),
        ("_toy_rl_seed1", "C1", False),
        ("with curiosity (α 0.5)", "C1", True),
    ]
    assert list(solid[2].get_ydata()) == pytest.approx([0.35, 0.05])
    assert list(solid[5].get_ydata()) == pytest.approx([0.45, 0.35])
