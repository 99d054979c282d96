"""The paper line's params (params/*/paper.yaml) resolve against their notebooks and keep the released recipe across
stages: every stage that builds an episode shows video at the released budgets and stops after 4 ops, synthesis, SFT
and RL agree on every budget (SFT replays synthesis; RL must roll out what SFT trained on), and RL starts from the
~1-epoch SFT model that SFT saves."""

import ast
from pathlib import Path

import pytest

from pxr import config
from pxr.runner import params

EPISODE_STAGES = ("10_synthesize_data", "20_train_sft", "30_train_rl", "40_evaluate")
TRAINING_STAGES = EPISODE_STAGES[:3]
TILE = 28 * 28


def episode(stem: str) -> config.EpisodeConfig:
    """The EpisodeConfig the stage's notebook builds from the resolved params (its defaults, then paper.yaml)."""
    declared = {name: ast.literal_eval(spec["default"]) for name, spec in params.notebook_parameters(stem).items()}
    return config.from_params(config.EpisodeConfig, {**declared, **params.load_params(stem, "paper")})


@pytest.mark.parametrize("stem", EPISODE_STAGES)
def test_every_episode_stage_shows_video_at_the_released_budgets_and_stops_after_4_ops(stem):
    built = episode(stem)
    assert built.video_frame_max_pixels == 512 * TILE  # smoke default: 16 tiles a frame
    assert built.max_ops == 4 and built.max_turns == 5  # the 5th call ends the episode
    expected_frames = 512 * TILE if stem == "40_evaluate" else 400 * TILE  # released eval / training value
    assert built.frame_max_pixels == expected_frames


def test_synthesis_sft_and_rl_build_the_same_episode():
    first, *others = (episode(stem) for stem in TRAINING_STAGES)
    assert all(other == first for other in others)


def test_rl_starts_from_the_epoch_1_model_that_sft_saves():
    sft = params.load_params("20_train_sft", "paper")
    rl = params.load_params("30_train_rl", "paper")
    assert sft["save_model_at_epochs"] == [1] and sft["num_train_epochs"] > 1
    assert Path(rl["model_name_or_path"]) == Path("outputs/20_train_sft/paper/model_epoch1")
    assert Path(rl["sft_dir"]) == Path(rl["model_name_or_path"]).parent
