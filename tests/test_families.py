"""pxr.families: the box convention of each model family, literal, and everywhere it reaches: the episode's box
reading, the tool schema, synthesis's templated boxes, the zoom IoU, the tiny model and `load_model`."""

import json

import pytest
from PIL import Image

from pxr import families, models, ops, protocol
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode
from pxr.metrics import zoom_boxes
from pxr.rollout import Query, apply_turn, start_trajectory
from pxr.synthesis.synth import SynthConfig, build_trajectory
from tests.conftest import family_episode_config
from tests.test_synth import CUE, IMAGE, Analysis, Item

ALL = list(families.FAMILIES)


def test_conversions_are_literal():
    # Qwen2.5-VL: pixels of the image as shown (here 560x280); Qwen3-VL: thousandths.
    assert families.to_normalized([140, 70, 280, 140], (560, 280), "qwen2.5-vl") == (0.25, 0.25, 0.5, 0.5)
    assert families.to_normalized([250, 250, 500, 500], (560, 280), "qwen3-vl") == (0.25, 0.25, 0.5, 0.5)
    assert families.to_normalized([0.25, 0.25, 0.5, 0.5], (560, 280), "qwen3-vl") == (0.25, 0.25, 0.5, 0.5)
    assert families.from_normalized([0.25, 0.25, 0.5, 0.5], (560, 280), "qwen2.5-vl") == [140, 70, 280, 140]
    assert families.from_normalized([0.2501, 0.25, 0.5, 0.5004], (560, 280), "qwen3-vl") == [250, 250, 500, 501]
    with pytest.raises(ops.OpError, match="from 0 to 1000"):
        families.to_normalized([100, 100, 1200, 500], (560, 280), "qwen3-vl")
    with pytest.raises(ops.OpError, match="which you see at 560x280 px"):
        families.to_normalized([100, 100, 600, 200], (560, 280), "qwen2.5-vl")


def test_family_comes_from_the_config_or_the_parameter():
    assert families.family_of_model_type("qwen2_5_vl") == "qwen2.5-vl"
    assert families.family_of_model_type("qwen3_vl") == "qwen3-vl"
    with pytest.raises(ValueError, match="set model_family"):
        families.family_of_model_type("llava")
    assert EpisodeConfig().family == "qwen2.5-vl" and EpisodeConfig(patch_factor=32).family == "qwen3-vl"
    assert EpisodeConfig(model_family="qwen3-vl").family == "qwen3-vl"
    with pytest.raises(ValueError, match="unknown model_family"):
        EpisodeConfig(model_family="qwen4")


def test_tool_schema_tells_each_family_its_convention():
    pixels = protocol.system_prompt("pixel", "qwen2.5-vl")
    relative = protocol.system_prompt("pixel", "qwen3-vl")
    assert "in pixel coordinates of the image as you see it" in pixels
    assert "relative coordinates from 0 to 1000" in relative and "pixel coordinates" not in relative
    assert protocol.system_prompt("pixel-reasoner-v1", "qwen3-vl") == protocol.system_prompt("pixel-reasoner-v1")


@pytest.mark.parametrize("family", ALL)
def test_the_episode_reads_boxes_in_the_family_convention(family):
    config = family_episode_config(family, zoom_padding=0.0)
    episode = VisualEpisode(images=[Image.new("RGB", (1024, 512))], config=config)
    w, h = episode.entries[0].shown.size
    box = families.from_normalized([0.25, 0.25, 0.5, 0.5], (w, h), family)
    observation = episode.step(protocol.tool_call_text("zoom_in", {"bbox_2d": box}))
    assert observation.ok and episode.entries[1].root_box == (256, 128, 512, 256)
    assert episode.record()["model_family"] == family


@pytest.mark.parametrize("family", ALL)
def test_synthesis_writes_boxes_in_the_family_convention_and_the_zoom_iou_reads_them(family):
    config = family_episode_config(family)
    item = Item("x", "7", images=["x.png"], cue_boxes=CUE)
    result = build_trajectory(item, [IMAGE], Analysis(), variant="single", synth_config=SynthConfig(),
                              episode_config=config)  # fmt: skip
    call = protocol.parse_tool_call(result.turns[0].text)
    shown = result.episode["images"][0]["shown_size"]
    cue = [CUE[0][0] / 1536, CUE[0][1] / 1024, CUE[0][2] / 1536, CUE[0][3] / 1024]
    assert call.arguments["bbox_2d"] == families.from_normalized(cue, tuple(shown), family)
    assert all(isinstance(v, int) for v in call.arguments["bbox_2d"]) and max(call.arguments["bbox_2d"]) > 1
    [(asked, _)] = zoom_boxes(result.episode)
    assert asked == pytest.approx(cue, abs=2 / min(shown) if family == "qwen2.5-vl" else 2e-3)


@pytest.mark.parametrize("family", ALL)
def test_zoom_iou_reads_the_record_in_its_family(family):
    trajectory = start_trajectory(
        Query("q", "What digit?", images=[Image.new("RGB", (1000, 500))]), family_episode_config(family)
    )
    shown = trajectory.episode.entries[0].shown.size
    box = families.from_normalized([0.5, 0.5, 1.0, 1.0], shown, family)
    apply_turn(trajectory, protocol.tool_call_text("zoom_in", {"bbox_2d": box}), 5)
    [(asked, _)] = zoom_boxes(trajectory.record()["episode"])
    assert asked == pytest.approx([0.5, 0.5, 1.0, 1.0])


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("qwen3"), family="qwen3-vl")


@pytest.mark.slow
def test_the_tiny_model_builds_in_qwen3_vl_shape_and_load_model_checks_the_family(qwen3_dir, tmp_path):
    assert json.loads((qwen3_dir / "config.json").read_text())["model_type"] == "qwen3_vl"
    assert models.model_family(qwen3_dir) == "qwen3-vl"
    settings = models.episode_config_for(qwen3_dir, EpisodeConfig())
    assert (settings.model_family, settings.patch_factor) == ("qwen3-vl", 32)
    model, processor = models.load_model(qwen3_dir, device="cpu", episode_config=settings)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and models.patch_factor(processor) == 32
    assert models.count_parameters(model) < 2_000_000
    # The parameter overrides the config: the boxes are then read as Qwen2.5-VL's, on Qwen3-VL's grid.
    override = models.episode_config_for(qwen3_dir, EpisodeConfig(model_family="qwen2.5-vl"))
    assert (override.family, override.patch_factor) == ("qwen2.5-vl", 32)
    models.load_model(qwen3_dir, device="cpu", episode_config=override)
    with pytest.raises(ValueError, match="patch_factor: 32"):
        models.load_model(qwen3_dir, device="cpu")


def test_sft_renders_the_family_schema_and_replays_its_boxes(tmp_path):
    from pxr import data
    from pxr.synthesis import synth_run
    from pxr.synthesis.teacher import TemplateTeacher
    from pxr.training import sft

    config = family_episode_config("qwen3-vl")
    items = synth_run.write_seed_items("read", 1, 0, tmp_path, split="train")
    synth_run.synthesize(
        items, tmp_path, TemplateTeacher(seed=0), synth_config=SynthConfig(seed=0), episode_config=config,
        progress=False,
    )  # fmt: skip
    [record], _ = data.read_jsonl(tmp_path / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    example = sft.sft_example(record, tmp_path, config)  # the replay reads the 0-1000 boxes back
    system = example["messages"][0]["content"][0]["text"]
    assert system == protocol.system_prompt("pixel", "qwen3-vl")


def test_the_demo_builds_its_model_in_the_family_of_its_settings():
    from pxr.evaluation import demo

    settings = models.episode_config_for("", EpisodeConfig(model_family="qwen3-vl"))  # no checkpoint: the parameter
    assert settings.patch_factor == 32
    model, processor = demo.load_demo_model("", settings)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and models.patch_factor(processor) == 32
