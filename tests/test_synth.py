"""pxr.synthesis.synth: template trajectories with real ops, self-correction variants, trainable flags, proportions."""

from collections import Counter
from dataclasses import dataclass, field

import pytest
from PIL import Image

from pxr.config import EpisodeConfig
from pxr.synthesis import synth
from pxr.synthesis.synth import SynthConfig, SynthRejected, build_trajectory, choose_variant


@dataclass
class Item:  # the fields of pxr.data.SeedItem that synthesis reads
    id: str
    answer: str
    images: list | None = None
    video: list | None = None
    options: list | None = None
    cue_boxes: list | None = None
    cue_frames: list | None = None
    needs_op: bool = True
    meta: dict = field(default_factory=lambda: {"cue_name": "the red triangle"})


@dataclass
class Analysis:
    whole: str = "Several small shapes carry tiny digits; the red triangle is at the lower right."
    local: str = "In the zoomed view the digit inside the red triangle is a 7."
    direct: str = "The large shape is blue."


IMAGE = Image.new("RGB", (1536, 1024), (210, 205, 200))
CUE = [[1100, 800, 1140, 840]]


def run(variant, item=None, inputs=None):
    item = item or Item("x", "7", images=["x.png"], cue_boxes=CUE)
    return build_trajectory(
        item, inputs or [IMAGE], Analysis(), variant=variant, synth_config=SynthConfig(), episode_config=EpisodeConfig()
    )


def roles(result):
    return [(t.role, t.trainable) for t in result.turns]


def test_single_pass_is_analysis_zoom_observation_answer():
    result = run("single")
    assert roles(result) == [("assistant", True), ("observation", False), ("assistant", True)]
    first = result.turns[0].text
    assert first.startswith(Analysis.whole) and "Now I will zoom in" in first and "<tool_call>" in first
    assert result.turns[1].text.startswith("Here is image 2") and len(result.turns[1].images) == 1
    assert result.turns[2].text.endswith("\\boxed{7}")
    assert result.episode["ops_executed"] == 1 and result.episode["ending"] == "answer"


@pytest.mark.parametrize(("variant", "wrong_turns"), [("wrong_crop", 1), ("two_wrong", 2), ("overlarge", 1)])
def test_self_correction_executes_the_wrong_ops_and_masks_them(variant, wrong_turns):
    result = run(variant)
    assistant = [t for t in result.turns if t.role == "assistant"]
    assert [t.trainable for t in assistant] == [False] * wrong_turns + [True, True]
    assert result.episode["ops_executed"] == wrong_turns + 1
    assert all(t.role == "observation" and not t.trainable for t in result.turns[1::2])


def test_wrong_crops_miss_the_cue_and_overlarge_contains_it():
    for variant in ("wrong_crop", "two_wrong", "overlarge"):
        result = run(variant)
        images = result.episode["images"]
        cue = CUE[0]
        for image in images[1:-1]:  # the wrong crops
            x1, y1, x2, y2 = image["root_box"]
            contains = x1 <= cue[0] and y1 <= cue[1] and cue[2] <= x2 and cue[3] <= y2
            disjoint = x2 <= cue[0] or cue[2] <= x1 or y2 <= cue[1] or cue[3] <= y1
            assert contains if variant == "overlarge" else disjoint
        final = images[-1]["root_box"]
        assert final[0] <= cue[0] and final[2] >= cue[2]


def test_text_only_is_one_answer_turn():
    result = run("text_only", Item("c", "blue", images=["c.png"], needs_op=False))
    assert roles(result) == [("assistant", True)] and result.turns[0].text.endswith("\\boxed{blue}")


def test_video_variants_select_the_cue_window():
    frames = [Image.new("RGB", (224, 168), (k * 10, 0, 0)) for k in range(16)]
    item = Item("v", "4", video=["f.png"] * 16, cue_frames=[7, 8], meta={"cue_name": "the flashing digit"})
    single = run("single", item, frames)
    assert "select_frames" in single.turns[0].text and single.turns[1].text.startswith("Here are images 17-18")
    wrong = run("wrong_frames", item, frames)
    first_call = wrong.episode["ops"][0]["arguments"]["target_frames"]
    assert not set(first_call) & {7, 8} and [t.trainable for t in wrong.turns if t.role == "assistant"] == [
        False,
        True,
        True,
    ]


def test_a_crop_that_misses_the_cue_is_rejected():
    tight = EpisodeConfig(zoom_padding=0.0, min_crop_size=28)
    item = Item("x", "7", images=["x.png"], cue_boxes=[[10, 10, 20, 20]])  # smaller than the minimum crop
    with pytest.raises(SynthRejected):
        build_trajectory(item, [IMAGE], Analysis(), variant="single", synth_config=SynthConfig(), episode_config=tight)


def test_variant_proportions_follow_the_config():
    config = SynthConfig(seed=3)
    counts = Counter(choose_variant(f"item{i}", is_video=False, needs_op=True, config=config) for i in range(4000))
    for name, share in zip(synth.IMAGE_VARIANTS, (0.3, 0.2, 0.2, 0.3), strict=True):
        assert abs(counts[name] / 4000 - share) < 0.03
    videos = Counter(choose_variant(f"v{i}", is_video=True, needs_op=True, config=config) for i in range(4000))
    assert abs(videos["wrong_frames"] / 4000 - 0.1) < 0.02
    assert choose_variant("c", is_video=False, needs_op=False, config=config) == "text_only"
    assert choose_variant("item1", is_video=False, needs_op=True, config=config) == choose_variant(
        "item1", is_video=False, needs_op=True, config=config
    )


def test_invalid_shares_are_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        SynthConfig(share_single=0.5)


# ----------------------------------------------------------------------------------- grid scenes (position words)

TOY_EPISODE = EpisodeConfig(image_max_pixels=168 * 112, crop_min_pixels=112 * 112, crop_max_pixels=112 * 112,
                            zoom_padding=0.0)  # fmt: skip


def grid_trajectory(tmp_path, variant, index=0):
    from pxr.synthesis import synth_run
    from pxr.synthesis.teacher import AnalysisRequest, TemplateTeacher

    item = synth_run.write_seed_items("tile_digit", index + 1, 0, tmp_path, split="sft")[index]
    inputs = synth_run._inputs(item, tmp_path)
    request = AnalysisRequest(
        item.id, "op", item.question, item.answer, cue=item.meta["cue_name"], facts=item.meta["facts"]
    )
    analysis = TemplateTeacher().analyse_one(request)
    result = build_trajectory(
        item, inputs, analysis, variant=variant, synth_config=SynthConfig(), episode_config=TOY_EPISODE
    )
    return item, result


def within_a_pixel(crop, tile, pixel) -> bool:
    """`crop` holds `tile` and exceeds it by at most one shown pixel a side (a box written in whole pixels)."""
    holds = crop[0] <= tile[0] and crop[1] <= tile[1] and tile[2] <= crop[2] and tile[3] <= crop[3]
    return holds and max(tile[0] - crop[0], tile[1] - crop[1], crop[2] - tile[2], crop[3] - tile[3]) <= pixel + 1


@pytest.mark.parametrize("variant", ["single", "wrong_crop", "two_wrong", "overlarge"])
def test_grid_trajectories_name_the_tile_and_their_correct_zoom_holds_it_unpadded(tmp_path, variant):
    item, result = grid_trajectory(tmp_path, variant)
    assert item.meta["cue_name"] in result.turns[0].text  # "the tile in row r, column c", as the question says it
    assert item.meta["cue_name"].removeprefix("the ") in item.question
    images = result.episode["images"]
    pixel = images[0]["root_box"][2] / images[0]["shown_size"][0]  # source pixels per shown pixel
    # The box is written in whole pixels of the overview (Qwen2.5-VL's convention), rounded outwards: the crop is the
    # tile and at most one overview pixel around it.
    assert within_a_pixel(images[-1]["root_box"], item.cue_boxes[0], pixel)
    assert result.turns[-2].text.startswith("Here is image")
    assert result.turns[-1].text.endswith(f"\\boxed{{{item.answer}}}")


def test_grid_wrong_zooms_land_on_a_tile_one_row_or_column_off(tmp_path):
    for index in range(3):
        item, result = grid_trajectory(tmp_path, "two_wrong", index)
        images = result.episode["images"]
        pixel = images[0]["root_box"][2] / images[0]["shown_size"][0]
        wrong = [tuple(i["root_box"]) for i in images[1:-1]]
        assert len(wrong) == 2 and len(set(wrong)) == 2
        for crop in wrong:  # each wrong crop is a neighbour's tile
            assert any(within_a_pixel(crop, decoy, pixel) for decoy in item.meta["decoy_boxes"])


def test_the_correct_zoom_is_rounded_outwards_so_an_unpadded_crop_keeps_the_whole_cue():
    # The box is written in whole pixels of the image as shown (about 3.4 source px each here); rounded to nearest,
    # an unpadded crop could lose up to half a shown pixel of the cue on each side. Rounded outwards it keeps it all.
    item = Item("x", "7", images=["x.png"], cue_boxes=[[1101, 801, 1131, 831]])
    result = build_trajectory(
        item, [IMAGE], Analysis(), variant="single", synth_config=SynthConfig(),
        episode_config=EpisodeConfig(zoom_padding=0.0),
    )  # fmt: skip
    x1, y1, x2, y2 = result.episode["images"][-1]["root_box"]
    assert x1 <= 1101 and y1 <= 801 and x2 >= 1131 and y2 >= 831
