"""Experiment trackers: `report_to`, `run_name` and (RL) `log_completions` reach transformers' and TRL's trainers,
in this process and in a launched job's description. A few SFT and GRPO steps on the tiny model with TensorBoard,
the tracker that works offline, write event files in the run's folder holding the logged loss and the run's name;
the default writes none."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pxr import data, models, records
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.runner import runs
from pxr.synthesis import synth_run
from pxr.training import rl, rl_job, sft, sft_job
from tests.test_rl import EPISODE as RL_EPISODE
from tests.test_rl import scripted_generate

EPISODE = EpisodeConfig()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return synth_run.smoke_dataset(tmp_path_factory.mktemp("data"), seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def tensorboard_log(folder):
    """The scalars (tag -> [(step, value)]) and the logged args of the one TensorBoard run under `folder`."""
    event_files = sorted(folder.rglob("events.out.tfevents.*"))
    assert len({f.parent for f in event_files}) == 1, event_files
    log = EventAccumulator(str(event_files[0].parent))
    log.Reload()
    scalars = {tag: [(e.step, e.value) for e in log.Scalars(tag)] for tag in log.Tags()["scalars"]}
    args = json.loads(log.Tensors("args/text_summary")[0].tensor_proto.string_val[0].decode())
    return scalars, args


def test_tracker_run_name_is_stage_slash_run(tmp_path):
    run = tmp_path / "outputs" / "20_train_sft" / "smoke"
    assert records.tracker_run_name(run, "20_train_sft") == "20_train_sft/smoke"


def test_trackers_are_off_by_default(tmp_path):
    assert sft.training_arguments(tmp_path, learning_rate=1e-3).report_to == []
    args = rl.grpo_args(RLConfig(), tmp_path)
    assert args.report_to == [] and args.log_completions is False


@pytest.mark.slow
def test_sft_steps_write_the_loss_to_tensorboard_under_the_run(smoke, tiny, tmp_path):
    run = tmp_path / "20_train_sft" / "smoke"
    rows, _ = data.read_jsonl(smoke / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    model, processor = models.load_model(tiny, device="cpu", dtype="float32", episode_config=EPISODE)
    examples = [sft.sft_example(r, smoke, EPISODE) for r in rows[:4]]
    trainer = sft.make_trainer(model, processor, examples, output_dir=run / "checkpoints", learning_rate=1e-3,
                               max_steps=2, report_to="tensorboard",
                               run_name=records.tracker_run_name(run, "20_train_sft"))  # fmt: skip
    sft.train(trainer)
    scalars, args = tensorboard_log(run)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2]
    assert args["run_name"] == "20_train_sft/smoke" and args["report_to"] == ["tensorboard"]


@pytest.mark.slow
def test_sft_without_a_tracker_writes_no_events(smoke, tiny, tmp_path):
    rows, _ = data.read_jsonl(smoke / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    model, processor = models.load_model(tiny, device="cpu", dtype="float32", episode_config=EPISODE)
    examples = [sft.sft_example(r, smoke, EPISODE) for r in rows[:2]]
    sft.train(sft.make_trainer(model, processor, examples, output_dir=tmp_path, learning_rate=1e-3, max_steps=1))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_grpo_steps_write_rewards_to_tensorboard_and_log_completions(smoke, tiny, tmp_path):
    run = tmp_path / "30_train_rl" / "smoke"
    queries, _ = data.read_jsonl(smoke / synth_run.RL_QUERIES, data.RLQuery)
    model, processor = models.load_model(tiny, episode_config=RL_EPISODE, device="cpu", dtype="float32")
    scripted_generate(model, processor.tokenizer)
    config = RLConfig(max_steps=1, num_generations=2, per_device_train_batch_size=4, report_to="tensorboard",
                      run_name="30_train_rl/smoke", log_completions=True)  # fmt: skip
    trainer = rl.make_trainer(model, processor, queries, data_root=smoke, output_dir=run, episode_config=RL_EPISODE,
                              reward_config=RewardConfig(), rl_config=config)  # fmt: skip
    rl.train(trainer)
    scalars, args = tensorboard_log(run)
    assert [step for step, _ in scalars["train/reward"]] == [1] and "train/loss" in scalars
    assert args["run_name"] == "30_train_rl/smoke" and args["log_completions"] is True
    assert list((run / "checkpoints" / "completions").glob("completions_*.parquet"))  # TRL's completion table


def test_launched_jobs_carry_the_tracker_settings(tmp_path):
    job = sft_job.sft_job("model", tmp_path, tmp_path / "run", EPISODE, learning_rate=1e-3, report_to="tensorboard",
                          run_name="20_train_sft/paper")  # fmt: skip
    args = sft.training_arguments(job["checkpoint_dir"], **json.loads(json.dumps(job))["training"])
    assert args.report_to == ["tensorboard"] and args.run_name == "20_train_sft/paper"
    config = RLConfig(report_to="tensorboard", run_name="30_train_rl/paper", log_completions=True)
    job = json.loads(json.dumps(rl_job.rl_job("model", tmp_path, tmp_path, EPISODE, RewardConfig(), config)))
    args = rl.grpo_args(RLConfig(**job["rl_config"]), tmp_path)
    assert args.report_to == ["tensorboard"] and args.run_name == "30_train_rl/paper" and args.log_completions


def test_tracker_settings_do_not_change_what_a_run_is():
    params = {"learning_rate": 1e-3, "max_steps": 8}
    tracked = {**params, "report_to": "wandb", "run_name": "30_train_rl/paper", "log_completions": True}
    assert runs.params_hash(tracked) == runs.params_hash(params) != runs.params_hash({**params, "max_steps": 9})
