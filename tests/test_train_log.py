"""What notebooks 20 and 30 show and record (pxr.training.train_log, and the notebook functions of pxr.models, pxr.training.sft,
pxr.training.sft_job, pxr.training.rl_job, pxr.training.launch, pxr.viz): the model a stage starts from, settings tables, the headline table,
held-out sampling and records, the progress bar that replaces the per-step table, the filtered warnings, the metric
keys later stages read, smoothed curves; and the in-process SFT and RL paths of the notebooks end to end."""

import io
import warnings
from types import SimpleNamespace

import pytest
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils.notebook import NotebookProgressCallback

from pxr import config, models, viz
from pxr.runner import params as P
from pxr.synthesis import synth_run
from pxr.training import launch, rl, rl_job, sft, sft_job, train_log

EPISODE = config.EpisodeConfig()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return synth_run.smoke_dataset(tmp_path_factory.mktemp("data"), seed=0, episode_config=EPISODE)


# ------------------------------------------------------------------------------------------- the starting model


def test_starting_model_prefers_a_path_then_the_sft_run_then_builds_one(tmp_path, tiny):
    assert models.starting_model("org/model", sft_dir=tmp_path, build_dir=tmp_path / "b") == "org/model"
    with pytest.raises(FileNotFoundError, match="pxr run 20_train_sft"):
        models.starting_model("", sft_dir=tmp_path / "sft", build_dir=tmp_path / "b")
    (tmp_path / "sft" / "model").mkdir(parents=True)
    assert models.starting_model("", sft_dir=tmp_path / "sft", build_dir=tmp_path / "b") == tmp_path / "sft" / "model"
    built = models.starting_model("", build_dir=tmp_path / "b", corpus=["zebra quokka"], seed=1)
    assert built == tmp_path / "b" and (built / "config.json").exists()
    _, processor = models.load_model(built, device="cpu", episode_config=EPISODE)
    assert len(processor.tokenizer("zebra quokka")["input_ids"]) < len("zebra quokka")  # the corpus was learned


@pytest.mark.slow
def test_load_policy_with_weights_or_processor_only(tiny):
    policy = models.load_policy(tiny, EPISODE)
    assert policy.model is not None and "M parameters" in policy.describe()
    assert next(policy.model.parameters()).dtype.is_floating_point
    light = models.load_policy(tiny, EPISODE, processor_only=True)
    assert light.model is None and "launched processes" in light.describe()
    assert light.processor.image_processor.size["longest_edge"] >= EPISODE.image_max_pixels
    models.release(policy)
    assert policy.model is None


# ------------------------------------------------------------------------------------------------- settings


def test_sft_config_gives_the_training_arguments_settings():
    c = sft.SFTConfig(max_steps=0, save_model_at_epochs=[2, 1, 2], lora_rank=8, answer_loss_weight=1.0)
    settings = c.training_settings()
    assert settings["max_steps"] == -1 and settings["save_model_at_epochs"] == [1, 2]
    assert not {"lora_rank", "freeze_vision", "answer_loss_weight"} & set(settings)
    sft.training_arguments("/tmp/unused", **{k: v for k, v in settings.items() if k != "save_model_at_epochs"})
    with pytest.raises(ValueError, match="whole epochs"):
        sft.SFTConfig(save_model_at_epochs=[0])
    with pytest.raises(ValueError, match="answer_loss_weight"):
        sft.SFTConfig(answer_loss_weight=-1)


def test_notebook_parameters_build_the_configs():
    declared = {
        stem: {name: spec["default"] for name, spec in P.notebook_parameters(stem).items()}
        for stem in ("20_train_sft", "30_train_rl")
    }
    for cls in (sft.SFTConfig, launch.LaunchConfig, train_log.HeldOutConfig):
        stem_names = declared["20_train_sft"]
        missing = [f for f in cls.__dataclass_fields__ if f not in stem_names]
        assert not missing, f"{cls.__name__}: notebook 20 does not declare {missing}"
    for cls in (launch.LaunchConfig, train_log.HeldOutConfig):
        assert not [f for f in cls.__dataclass_fields__ if f not in declared["30_train_rl"]]


def test_launch_rules_of_the_two_notebooks():
    one = launch.LaunchConfig(num_processes=1)
    assert not sft_job.launches(one) and rl_job.launches(one)  # notebook 30 launches a single process too
    assert sft_job.launches(launch.LaunchConfig(num_processes=2))
    assert sft_job.launches(launch.LaunchConfig(accelerate_config="c.yaml"))
    assert not sft_job.launches(launch.LaunchConfig()) and not rl_job.launches(launch.LaunchConfig())
    assert launch.LaunchConfig(machine_rank=1).settings()["machine_rank"] == 1


@pytest.mark.slow
def test_settings_tables_name_what_matters(tiny, smoke, tmp_path):
    policy = models.load_policy(tiny, EPISODE, processor_only=True)
    _, records, _ = sft_job.trajectories(smoke, tmp_path, seed=0, episode_config=EPISODE)
    rows = sft_job.settings(
        policy, smoke, records, sft.SFTConfig(lora_rank=4), launch.LaunchConfig(), train_log.HeldOutConfig(), tmp_path
    )
    assert rows["trained"].startswith("LoRA of rank 4") and rows["length"] == "8 steps"
    assert rows["training runs in"] == "this process" and f"{len(records)} from" in rows["trajectories"]
    table = train_log.settings_table(rows)
    assert table.splitlines()[0] == "| setting | value |" and len(table.splitlines()) == len(rows) + 2
    queries = rl_job.queries(smoke, tmp_path, seed=0, episode_config=EPISODE)[1]
    rows = rl_job.settings(
        policy,
        smoke,
        queries,
        config.RewardConfig(),
        config.RLConfig(),
        launch.LaunchConfig(num_processes=2),
        train_log.HeldOutConfig(eval_baseline=False),
        tmp_path,
    )
    assert "H = 0.3, N = 1" in rows["reward"] and "x 2 processes" in rows["batch"]
    assert rows["training runs in"] == "accelerate launch (2 processes)"
    assert "starting model" not in rows["held-out evaluation"]


def test_missing_trajectories_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="pxr run 10_synthesize_data"):
        sft_job.trajectories(tmp_path, tmp_path, seed=0, episode_config=EPISODE)


# ------------------------------------------------------------------------------------------- held-out figures


def test_held_out_queries_are_a_seeded_mix(smoke):
    first = train_log.held_out_queries(smoke, 6, seed=0)
    assert [q.id for q in first] == [q.id for q in train_log.held_out_queries(smoke, 6, seed=0)]
    assert len({q.meta.get("kind") for q in first}) > 1  # the file is ordered by kind; the sample is not
    assert train_log.held_out_queries(smoke, 0, seed=0) == []


def test_headline_table_puts_models_side_by_side():
    before = train_log.HeldOut(["r"], {"items": 4, "accuracy": 0.25, "rapr_zoom_needed": 0.0, "other": 9})
    table = train_log.headline_table({"before": before, "after": {"items": 4, "accuracy": 0.5}}).splitlines()
    assert table[0] == "| model | items | accuracy | rapr_zoom_needed |"
    assert table[2] == "| before | 4 | 0.25 | 0 |" and table[3] == "| after | 4 | 0.5 |  |"
    missing = train_log.headline_table({"before": None, "after": {"accuracy": 0.5}}).splitlines()
    assert missing[0].endswith("| note |") and "not measured" in missing[2] and "not measured" not in missing[3]


def test_recorded_figures_keep_the_metric_keys_later_stages_read():
    held = train_log.HeldOut(
        [], {"accuracy": 0.5, "rapr": 0.25}, {"tile_digit": {"items": 2, "accuracy": 1.0, "zoom_iou": 0.3}}
    )
    assert held.recorded() == {
        "eval_accuracy": 0.5,
        "eval_rapr": 0.25,
        "eval_tile_digit_items": 2,
        "eval_tile_digit_accuracy": 1.0,
    }
    assert train_log.start_figures(None) == {} and train_log.start_figures(train_log.HeldOut()) == {}
    assert train_log.start_figures(train_log.HeldOut(["r"], {"accuracy": 0.5, "zoom_iou": 1})) == {
        "start_eval_accuracy": 0.5
    }
    trained = sft_job.Trained(model_dir="m", losses=[(1, 2.0), (2, 1.0)], steps=2, train_seconds=3.0)
    record = sft_job.metrics_record(trained, [1, 2, 3], held, None)
    assert record["first_loss"] == 2.0 and record["final_loss"] == 1.0 and record["trajectories"] == 3
    steps = [
        {"step": s, "pxr/rapr": s / 10, "pxr/accuracy": 0.5, "pxr/filtered_group_share": 0.0} for s in range(1, 11)
    ]
    rl_record = rl_job.metrics_record(rl_job.Trained("m", 10, steps), [1, 2], held, None)
    assert rl_record["final_rapr"] == pytest.approx(0.95) and rl_record["train_queries"] == 2  # the last fifth
    assert set(rl_record) == {"steps", "train_queries", "final_rapr", "final_accuracy", "final_filtered_group_share",
                              "eval_accuracy", "eval_rapr"}  # fmt: skip


def test_saved_models_line_says_which_epochs_were_not_saved():
    trained = sft_job.Trained("run/model", [], 3, None, {1: "run/model_epoch1"})
    assert sft_job.saved_models(trained, [1, 2]).splitlines() == [
        "checkpoint: run/model",
        "epoch 1 model: run/model_epoch1",
        "epoch 2 model: not saved: the run did not finish that epoch",
    ]


# ------------------------------------------------------------------------------------------------- the log


def test_known_warnings_are_ignored_and_others_still_show():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_log.quiet_known_warnings()
        for category, message, why in train_log.KNOWN_HARMLESS_WARNINGS:
            assert why
            warnings.warn(message, category, stacklevel=1)
        warnings.warn("`is_gradient_checkpointing` is something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`is_gradient_checkpointing` is something else"]


def test_progress_bar_replaces_the_per_step_table():
    trainer = SimpleNamespace(callbacks=[NotebookProgressCallback, PrinterCallback, ProgressCallback])
    trainer.remove_callback = lambda cls: trainer.callbacks.remove(cls) if cls in trainer.callbacks else None
    trainer.add_callback = trainer.callbacks.append
    train_log.use_progress_bar(trainer, ("loss",))
    assert len(trainer.callbacks) == 1 and type(trainer.callbacks[0]).__name__ == "_StepProgress"
    stream = io.StringIO()
    bar = train_log.StepProgress(("loss",), mininterval=0, file=stream)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    bar.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        bar.on_log(None, state, None, logs={"loss": 1.0 / step, "learning_rate": 0.1})
        bar.on_step_end(None, state, None)
    bar.on_train_end(None, state, None)
    text = stream.getvalue()
    assert "4/4" in text and "loss=0.25" in text and "learning_rate" not in text and "\n" not in text.rstrip("\n")


def test_curves_smooth_over_faint_raw_values_and_draw_references():
    points = [(s, float(s % 2)) for s in range(100)]
    assert viz.smoothing_window(100) == 5 and viz.smoothing_window(30) == 1
    fig = viz.curves({"RaPR": points}, smooth="auto", references={"H = 0.3": 0.3})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 and lines[0].get_alpha() == 0.25 and lines[1].get_color() == lines[0].get_color()
    assert max(lines[1].get_ydata()[5:]) < 0.7  # the alternating 0/1 is averaged out
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["RaPR (mean of 5)", "H = 0.3"]
    plain = viz.curves({"loss": points[:5]})
    assert len(plain.axes[0].get_lines()) == 1 and plain.axes[0].get_legend() is None


def test_rl_training_figures_ask_one_question_each():
    steps = [{"step": s, **{f"pxr/{k}": 0.1 for k in ("rapr", "accuracy", "curiosity_mean", "penalty_mean",
                                                       "filtered_group_share", "truncated_share")}} for s in range(1, 5)]  # fmt: skip
    figures = rl_job.training_figures(steps, 0.3)
    assert len(figures) == 4 and all(
        f.axes[0].get_title().endswith("?") or "?" in f.axes[0].get_title() for f in figures
    )
    assert any(line.get_label() == "H = 0.3" for line in figures[0].axes[0].get_lines())


# ------------------------------------------------------------------------------------- the notebooks' paths


@pytest.mark.slow
def test_sft_notebook_path_trains_saves_and_records(tiny, smoke, tmp_path):
    _, records, _ = sft_job.trajectories(smoke, tmp_path, seed=0, episode_config=EPISODE)
    policy = models.load_policy(tiny, EPISODE)
    evaluation = train_log.HeldOutConfig(eval_items=2, eval_max_new_tokens=8)
    held_out = evaluation.queries(smoke)
    baseline = evaluation.baseline(policy, held_out)
    trained = sft_job.train(
        policy, smoke, records, tmp_path, sft.SFTConfig(max_steps=2, learning_rate=1e-3), launch.LaunchConfig()
    )
    assert trained.steps == 2 and len(trained.losses) == 2 and (trained.model_dir / "config.json").exists()
    result = evaluation.evaluate(policy, held_out)
    assert len(result.rollouts) == len(baseline.rollouts) == 2
    assert [t.query.id for t in result.rollouts] == [t.query.id for t in baseline.rollouts]
    record = sft_job.metrics_record(trained, records, result, baseline)
    assert {"final_loss", "first_loss", "steps", "train_seconds", "trajectories", "eval_accuracy"} <= set(record)
    assert "start_eval_accuracy" in record
    result.save(tmp_path / "eval_rollouts.jsonl")
    assert len((tmp_path / "eval_rollouts.jsonl").read_text().splitlines()) == 2
    assert len(train_log.rollout_outputs(result.rollouts[:1], "title")) == 3


@pytest.mark.slow
def test_rl_notebook_path_trains_saves_and_logs_steps(tiny, smoke, tmp_path):
    data_dir, train_queries, _, reports = rl_job.queries(smoke, tmp_path, seed=0, episode_config=EPISODE)
    assert len(reports) == 2 and len(rl_job.sample_queries(train_queries, data_dir, 2, seed=0)) == 2
    policy = models.load_policy(tiny, EPISODE)
    rl_config = config.RLConfig(max_steps=1, num_generations=2, per_device_train_batch_size=2, max_completion_length=48)
    trained = rl_job.train(policy, data_dir, train_queries, tmp_path, config.RewardConfig(), rl_config,
                           launch.LaunchConfig())  # fmt: skip
    assert trained.steps == 1 and (trained.model_dir / "config.json").exists()
    assert rl.step_series(trained.step_log, "pxr/rapr") and policy.model is not None
