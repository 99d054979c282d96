"""pxr.perception: the toy line's base-stage items (crops as zoom_in cuts them, boxes, disjoint seeds), their SFT
examples and loss mask, and the held-out scoring."""

import random
from dataclasses import replace

import numpy as np
import pytest

from pxr import models, perception, scenes, sft
from pxr.config import TILE, EpisodeConfig

TOY_EPISODE = EpisodeConfig(zoom_padding=0.01, crop_min_pixels=64 * TILE)
SMALL = perception.PerceptionConfig(n_read=3, n_count=2, n_coarse=2, n_ground=2, n_locate=2)


def test_jittered_boxes_contain_the_cue_and_stay_in_the_image():
    rng = random.Random(0)
    cue = [0.40, 0.30, 0.42, 0.33]
    for _ in range(200):
        box = perception.jittered_box(cue, rng, 2.5, decimals=4)
        assert 0.0 <= box[0] <= cue[0] + 1e-4 and box[2] >= cue[2] - 1e-4 and box[2] <= 1.0
        assert 0.0 <= box[1] <= cue[1] + 1e-4 and box[3] >= cue[3] - 1e-4 and box[3] <= 1.0
        assert box[2] - box[0] <= 2.5 * (cue[2] - cue[0]) + 1e-4
    for _ in range(200):  # written with 2 decimals, as the trajectories write boxes: rounded outwards
        box = perception.jittered_box(cue, rng, 1.2, decimals=2)
        assert box[0] <= cue[0] and box[1] <= cue[1] and box[2] >= cue[2] and box[3] >= cue[3]
    edge = perception.jittered_box([0.0, 0.9, 0.02, 1.0], rng, 3.0, decimals=4)
    assert edge[0] == 0.0 and edge[3] == 1.0


def test_a_read_crop_is_what_zoom_in_shows_and_is_enlarged_to_the_crop_budget():
    item = perception.make_item("read", 0, 100, SMALL, TOY_EPISODE)
    scene = scenes.make_scene("read", scenes.suite_seed(100, 0), width=1536, height=1024, target_size=28)
    assert item.answer == scene.answer and item.question == scene.question
    width, height = item.image.size
    assert width * height >= TOY_EPISODE.crop_min_pixels and width % 28 == 0 and height % 28 == 0
    # with the paper's padding the same crop is several times wider: the digit is a small part of it
    paper = perception.make_item("read", 0, 100, SMALL, EpisodeConfig())
    assert paper.image.size[0] > width


def test_ground_items_answer_with_the_targets_box_and_coarse_items_show_the_whole_image():
    ground = perception.make_item("ground", 1, 100, SMALL, TOY_EPISODE)
    box = perception.parse_box(ground.answer)
    assert box is not None and perception.iou(box, ground.cue_box) > 0.5
    assert "Where is the" in ground.question and ground.response() == f"\\boxed{{{ground.answer}}}"
    coarse = perception.make_item("coarse", 0, 100, SMALL, TOY_EPISODE)
    assert (
        coarse.image.size
        == perception.query_view(
            scenes.make_scene("coarse", scenes.suite_seed(100, 0), width=1536, height=1024).image, TOY_EPISODE
        ).size
    )


def test_locate_items_ask_for_a_flat_square_in_the_targets_colour_twice_its_side():
    config = replace(SMALL, jpeg_quality=0)
    item = perception.make_item("locate", 3, 100, config, TOY_EPISODE)
    scene = scenes.make_scene("read", scenes.suite_seed(100, 3), width=1536, height=1024, target_size=28)
    target = scene.objects[0]
    assert item.question.startswith(f"Where is the {target.colour} square?")
    box, cue = perception.parse_box(item.answer), scene.cue_box_normalized
    assert box == pytest.approx(item.cue_box, abs=0.006)
    assert box[2] - box[0] == pytest.approx(2 * (cue[2] - cue[0]), abs=0.011)
    width, height = item.image.size
    inside = item.image.getpixel((int((box[0] + box[2]) / 2 * width), int((box[1] + box[3]) / 2 * height)))
    assert inside == scenes.COLOURS[target.colour]
    outside = item.image.getpixel((int(box[2] * width) + 3 if box[2] < 0.9 else int(box[0] * width) - 3, 5))
    assert all(150 <= level <= 235 for level in outside)  # the scenes' light background, no other object
    # a target at the edge: the grown square moves inward and stays on the canvas
    edge, edge_box = perception.flat_square(replace(scene, cue_box_normalized=[0.0, 0.97, 0.02, 1.0]), 2.0)
    assert edge_box[0] == 0.0 and edge_box[3] == 1.0 and edge_box[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="locate_grow"):
        perception.PerceptionConfig(locate_grow=0.5)


def test_flat_square_with_others_draws_every_shape_as_a_square_in_its_colour():
    scene = scenes.make_scene("read", 7, width=448, height=320, n_distractors=1, distractor_similarity="low")
    image, box = perception.flat_square(scene, 2.0, with_others=True)
    alone, _ = perception.flat_square(scene, 2.0)
    other = perception.grown_box([v / s for v, s in zip(scene.objects[1].box, (448, 320, 448, 320), strict=True)], 2.0)

    def centre(b, img):
        return img.getpixel((int((b[0] + b[2]) / 2 * 448), int((b[1] + b[3]) / 2 * 320)))

    assert centre(box, image) == scenes.COLOURS[scene.objects[0].colour]
    assert centre(other, image) == scenes.COLOURS[scene.objects[1].colour] != centre(other, alone)


def test_ground_distractors_sets_how_many_other_shapes_a_ground_scene_has():
    alone = perception.make_item("ground", 1, 100, replace(SMALL, ground_distractors=0, jpeg_quality=0), TOY_EPISODE)
    crowded = perception.make_item("ground", 1, 100, replace(SMALL, jpeg_quality=0), TOY_EPISODE)
    assert alone.question.startswith("Where is the") and perception.parse_box(alone.answer) is not None
    assert alone.other_boxes == [] and len(crowded.other_boxes) == SMALL.ground_distractors == 7
    assert all(perception.iou(crowded.cue_box, box) == 0 for box in crowded.other_boxes)  # shapes do not overlap

    def coloured(image):  # pixels far from the grey background: the shapes'
        pixels = np.asarray(image, dtype=int)
        return int((pixels.max(axis=-1) - pixels.min(axis=-1) > 60).sum())

    assert 0 < 3 * coloured(alone.image) < coloured(crowded.image)


def test_ground_similarity_decides_whether_a_distractor_shares_the_targets_colour():
    def target_coloured(similarity):  # pixels of the named target's colour: the target's, and a twin's if any
        config = replace(SMALL, ground_distractors=2, ground_similarity=similarity, jpeg_quality=0)
        item = perception.make_item("ground", 3, 100, config, EpisodeConfig(image_max_pixels=10**6))
        colour = np.array(scenes.COLOURS[item.question.split()[3]])
        return int((np.abs(np.asarray(item.image, dtype=int) - colour).sum(axis=-1) < 30).sum())

    # "high" (and the read scenes' "mixed"): the first distractor shares the target's colour; "low": none does
    assert target_coloured("high") > 1.5 * target_coloured("low") > 0
    with pytest.raises(ValueError, match="ground_similarity"):
        perception.PerceptionConfig(ground_similarity="some")


def test_ground_target_size_enlarges_the_target_of_box_tasks_only():
    config = replace(SMALL, canvas_width=448, canvas_height=320, ground_distractors=0, ground_target_size=56)
    usual = perception.make_item("ground", 2, 100, replace(config, ground_target_size=0), TOY_EPISODE)
    large = perception.make_item("ground", 2, 100, config, TOY_EPISODE)
    assert large.cue_box[2] - large.cue_box[0] == pytest.approx(2 * (usual.cue_box[2] - usual.cue_box[0]), rel=0.1)
    # read scenes keep target_size: their 7 other shapes would not fit the canvas at 56 px
    read = perception.make_item("read", 2, 100, config, TOY_EPISODE)
    usual_read = perception.make_item("read", 2, 100, replace(config, ground_target_size=0), TOY_EPISODE)
    assert read.image.tobytes() == usual_read.image.tobytes()
    with pytest.raises(ValueError, match="ground_target_size"):
        perception.PerceptionConfig(ground_target_size=-1)


def test_held_out_items_come_from_another_suite_than_training():
    train = perception.make_items(SMALL, TOY_EPISODE, progress=False)
    held = perception.make_items(SMALL, TOY_EPISODE, held_out=True, n=2, progress=False)
    assert {i.task for i in train} == {i.task for i in held} == set(perception.TASKS)
    # the warm-up task is held out only in runs that train on it
    without = perception.make_items(replace(SMALL, n_locate=0), TOY_EPISODE, held_out=True, n=1, progress=False)
    assert {i.task for i in without} == set(perception.TASKS) - {"locate"}
    assert all(f"-{SMALL.perception_seed}-" in i.id for i in train)
    assert all(f"-{SMALL.perception_seed + 1}-" in i.id for i in held)
    parallel = perception.make_items(SMALL, TOY_EPISODE, workers=2, progress=False)
    assert [i.id for i in parallel] == [i.id for i in train] and parallel[0].answer == train[0].answer
    with pytest.raises(ValueError, match="crop_scale_max"):
        perception.PerceptionConfig(crop_scale_max=0.5)


def test_the_sft_example_trains_only_the_answer(tmp_path):
    processor = models.load_processor(models.build_tiny_model(tmp_path / "tiny"))
    models.set_pixel_limits(processor, TOY_EPISODE)
    item = perception.make_item("read", 2, 100, SMALL, TOY_EPISODE)
    tokens = sft.tokenize_example(processor, perception.sft_example(item), with_answer_mask=True)
    learned = processor.tokenizer.decode(tokens["input_ids"][tokens["labels"] != sft.IGNORE_INDEX])
    assert learned.startswith(item.response()) and "<tool_call>" not in processor.tokenizer.decode(tokens["input_ids"])
    assert int(tokens["image_grid_thw"].prod()) // 4 == (item.image.size[0] // 28) * (item.image.size[1] // 28)
    assert processor.tokenizer.decode(tokens["input_ids"][tokens["answer_mask"]]) == item.answer
    ground = perception.make_item("ground", 0, 100, SMALL, TOY_EPISODE)
    tokens = sft.tokenize_example(processor, perception.sft_example(ground), with_answer_mask=True)
    assert processor.tokenizer.decode(tokens["input_ids"][tokens["answer_mask"]]).strip() == ground.answer


def test_scoring_counts_exact_answers_boxes_and_unanswered_items():
    items = [
        perception.PerceptionItem("a", "read", "q", "7", None),
        perception.PerceptionItem("b", "read", "q", "3", None),
        perception.PerceptionItem("c", "ground", "q", "[0.10, 0.10, 0.20, 0.20]", None, cue_box=[0.1, 0.1, 0.2, 0.2]),
        perception.PerceptionItem("d", "ground", "q", "[0.10, 0.10, 0.20, 0.20]", None, cue_box=[0.1, 0.1, 0.2, 0.2]),
        perception.PerceptionItem("e", "locate", "q", "[0.10, 0.10, 0.30, 0.30]", None, cue_box=[0.1, 0.1, 0.3, 0.3]),
        perception.PerceptionItem(
            "f",
            "ground",
            "q",
            "[0.10, 0.10, 0.20, 0.20]",
            None,
            cue_box=[0.1, 0.1, 0.2, 0.2],
            other_boxes=[[0.6, 0.6, 0.7, 0.7], [0.0, 0.8, 0.1, 0.9]],
        ),
    ]
    answers = ["7", None, "[0.10, 0.10, 0.20, 0.20]", "[0.5, 0.5, nonsense]", "[0.10, 0.10, 0.20, 0.20]"]
    answers.append("[0.60, 0.10, 0.70, 0.70]")  # misses the target, contains the first other shape's centre
    scores = perception.score(items, answers)
    assert scores["locate_iou"] == pytest.approx(0.25) and scores["locate_hits_centre"] == 1.0
    assert scores["read_accuracy"] == 0.5 and scores["read_answered"] == 0.5
    assert scores["ground_iou"] == pytest.approx(1 / 3) and scores["ground_hits_centre"] == pytest.approx(1 / 3)
    # the third ground box misses the target but contains the centre of another shape: a wrong shape picked
    assert scores["ground_hits_other"] == pytest.approx(1 / 3)
    assert perception.chance(items) == {"read_majority": 0.5}
    assert perception.parse_box("[0.3, 0.1, 0.2, 0.4]") is None and perception.parse_box(None) is None
