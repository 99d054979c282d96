"""pxr.synthesis.perception: the toy line's base-stage items (crops as zoom_in cuts them, the whole image for the text path,
disjoint seeds), their SFT examples and loss mask, and the held-out scoring."""

import random
import re
from dataclasses import replace

import pytest

from pxr import models, scenes
from pxr.config import EpisodeConfig
from pxr.synthesis import perception
from pxr.training import sft

# The toy episode: the whole image at 168x112, zooms without padding into a 112x112 crop.
TOY_EPISODE = EpisodeConfig(image_max_pixels=168 * 112, zoom_padding=0.0, crop_min_pixels=112 * 112,
                            crop_max_pixels=112 * 112)  # fmt: skip
SMALL = perception.PerceptionConfig(n_read=3, n_peek=2, n_coarse=2, crop_scale_max=1.3)
NAMED = perception.PerceptionConfig(n_read=2, n_peek=1, n_coarse=1, n_count=2, scene_family="named",
                                    canvas_width=1536, canvas_height=1024, target_size=28)  # fmt: skip


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


@pytest.mark.slow
def test_a_read_crop_is_the_tile_as_zoom_in_cuts_it_enlarged_to_the_crop_budget():
    item = perception.make_item("read", 0, 100, SMALL, TOY_EPISODE)
    scene = scenes.make_scene("tile_digit", scenes.suite_seed(100, 0), width=1500, height=1000, tile_size=30)
    assert item.answer == scene.answer and item.question == scene.question
    width, height = item.image.size  # a jittered box of at most 1.3 tiles, enlarged to the crop budget
    assert width * height >= TOY_EPISODE.crop_min_pixels and width % 28 == 0 and height % 28 == 0 and width <= 168
    # The tile's colour fills much of the crop: the crop is on the asked tile.
    pixels = [item.image.getpixel((x, y)) for x in range(0, width, 4) for y in range(0, height, 4)]
    fill = scenes.COLOURS[scene.objects[0].colour]
    assert sum(max(abs(a - b) for a, b in zip(p, fill, strict=True)) < 40 for p in pixels) / len(pixels) > 0.3


@pytest.mark.slow
def test_peek_and_coarse_items_show_the_whole_image_at_the_query_budget():
    peek = perception.make_item("peek", 1, 100, SMALL, TOY_EPISODE)
    read = perception.make_item("read", 1, 100, SMALL, TOY_EPISODE)
    coarse = perception.make_item("coarse", 1, 100, SMALL, TOY_EPISODE)
    assert peek.image.size == coarse.image.size == (168, 112)
    assert (peek.question, peek.answer) == (read.question, read.answer)  # the same question, no crop
    assert coarse.question.startswith("What colour is the tile in row ") and coarse.answer in scenes.COLOURS


@pytest.mark.slow
def test_named_scenes_keep_the_older_tasks_and_grid_scenes_refuse_count():
    items = perception.make_items(NAMED, EpisodeConfig(zoom_padding=0.01), held_out=True, n=1, progress=False)
    assert {i.task for i in items} == set(perception.TASKS)
    assert next(i for i in items if i.task == "read").question.startswith("What digit is written inside the ")
    with pytest.raises(ValueError, match="no count items"):
        perception.PerceptionConfig(n_count=1)
    with pytest.raises(ValueError, match="scene_family"):
        perception.PerceptionConfig(scene_family="maze")


@pytest.mark.slow
def test_held_out_items_come_from_another_suite_than_training():
    train = perception.make_items(SMALL, TOY_EPISODE, progress=False)
    held = perception.make_items(SMALL, TOY_EPISODE, held_out=True, n=2, progress=False)
    assert {i.task for i in train} == {i.task for i in held} == {"read", "peek", "coarse"}
    # the text path is held out even where the base does not train on it: it is the text control's baseline
    without = perception.make_items(replace(SMALL, n_peek=0), TOY_EPISODE, held_out=True, n=1, progress=False)
    assert {i.task for i in without} == {"read", "peek", "coarse"}
    assert all(f"-{SMALL.perception_seed}-" in i.id for i in train)
    assert all(f"-{SMALL.perception_seed + 1}-" in i.id for i in held)
    parallel = perception.make_items(SMALL, TOY_EPISODE, workers=2, progress=False)
    assert [i.id for i in parallel] == [i.id for i in train] and parallel[0].answer == train[0].answer
    with pytest.raises(ValueError, match="crop_scale_max"):
        perception.PerceptionConfig(crop_scale_max=0.5)


@pytest.mark.slow
def test_the_sft_example_trains_only_the_answer(tmp_path):
    processor = models.load_processor(models.build_tiny_model(tmp_path / "tiny"))
    models.set_pixel_limits(processor, TOY_EPISODE)
    item = perception.make_item("read", 2, 100, SMALL, TOY_EPISODE)
    tokens = sft.tokenize_example(processor, perception.sft_example(item), with_answer_mask=True)
    learned = processor.tokenizer.decode(tokens["input_ids"][tokens["labels"] != sft.IGNORE_INDEX])
    assert learned.startswith(item.response()) and "<tool_call>" not in processor.tokenizer.decode(tokens["input_ids"])
    assert int(tokens["image_grid_thw"].prod()) // 4 == (item.image.size[0] // 28) * (item.image.size[1] // 28)
    assert processor.tokenizer.decode(tokens["input_ids"][tokens["answer_mask"]]) == item.answer
    coarse = perception.make_item("coarse", 0, 100, SMALL, TOY_EPISODE)
    tokens = sft.tokenize_example(processor, perception.sft_example(coarse), with_answer_mask=True)
    assert processor.tokenizer.decode(tokens["input_ids"][tokens["answer_mask"]]).strip() == coarse.answer


def test_scoring_counts_exact_answers_and_unanswered_items():
    items = [
        perception.PerceptionItem("a", "read", "q", "7", None),
        perception.PerceptionItem("b", "read", "q", "3", None),
        perception.PerceptionItem("c", "peek", "q", "3", None),
        perception.PerceptionItem("d", "peek", "q", "3", None),
    ]
    scores = perception.score(items, ["7", None, " 3", "5"])
    assert scores["read_accuracy"] == 0.5 and scores["read_answered"] == 0.5
    assert scores["peek_accuracy"] == 0.5 and scores["peek_answered"] == 1.0
    assert perception.chance(items) == {"read_majority": 0.5, "peek_majority": 1.0}


@pytest.mark.slow
def test_several_tiles_of_one_scene_each_get_their_own_question_and_crop():
    config = replace(SMALL, items_per_scene=4, jpeg_quality=0)
    items = [perception.make_item("read", i, 100, config, TOY_EPISODE) for i in range(8)]
    scene = scenes.make_scene("tile_digit", scenes.suite_seed(100, 0))
    by_position = {t.box[0] // 250 + 1 + (t.box[1] // 250) * 10: t for t in scene.objects}
    assert len({i.question for i in items[:4]}) == 4  # four tiles of scene 0, then four of scene 1
    for item in items[:4]:
        row, column = map(int, re.search(r"row (\d+), column (\d+)", item.question).groups())
        tile = by_position[column + (row - 1) * 10]
        assert item.answer == tile.digit
        w, h = item.image.size
        pixels = [item.image.getpixel((x, y)) for x in range(0, w, 4) for y in range(0, h, 4)]
        fill = scenes.COLOURS[tile.colour]  # the crop is on this tile: its colour covers much of it
        assert sum(max(abs(a - b) for a, b in zip(p, fill, strict=True)) < 40 for p in pixels) / len(pixels) > 0.2
    with pytest.raises(ValueError, match="items_per_scene"):
        perception.PerceptionConfig(items_per_scene=2, scene_family="named", n_count=0)


def _item(item_id, task, answer="1"):
    return perception.PerceptionItem(item_id, task, f"q {item_id}", answer, None)


def test_first_of_each_task_keeps_the_tasks_order():
    items = [_item("a", "coarse"), _item("b", "read"), _item("c", "read"), _item("d", "peek")]
    assert [i.id for i in perception.first_of_each_task(items)] == ["b", "d", "a"]
    assert [i.id for i in perception.first_of_each_task(items, ["coarse", "count"])] == ["a"]


@pytest.mark.slow
def test_the_tokenizer_corpus_adds_the_synthesis_runs_text(tmp_path):
    from pxr.synthesis import synth_run

    items = [_item("a", "read"), _item("b", "coarse")]
    generic, note = perception.tokenizer_corpus(items, "", seed=0)
    assert generic[-2:] == ["q a", "q b"]
    assert note == f"tokenizer corpus: {len(generic)} texts (generic, and the items' questions)"
    with pytest.raises(FileNotFoundError, match="pxr run 10_synthesize_data"):
        perception.tokenizer_corpus(items, str(tmp_path), seed=0)
    run = synth_run.smoke_dataset(tmp_path / "synth")
    corpus, note = perception.tokenizer_corpus(items, str(run), seed=0)
    records, _ = synth_run.read_trajectories(run)
    assert corpus[: len(generic)] == generic and records[0].question in corpus
    assert records[0].turns[0].text in corpus and "read 10, ok 10" in note


def test_the_base_model_is_the_one_named_or_a_fresh_one(tmp_path, monkeypatch):
    named = perception.base_model(tmp_path, init_model="outputs/15_perception_base/toy/model", corpus=[])
    assert str(named) == "outputs/15_perception_base/toy/model"  # goes on training; nothing is built
    built = []
    monkeypatch.setattr(models, "build_tiny_model", lambda out, **kw: built.append((out, kw)) or out)
    assert perception.base_model(tmp_path / "base", corpus=["x"], seed=3, size="small") == tmp_path / "base"
    assert built == [(tmp_path / "base", {"seed": 3, "size": "small", "corpus": ["x"]})]


def test_answers_are_greedy_text_prompt_rollouts(monkeypatch):
    from types import SimpleNamespace

    from pxr import rollout

    seen = {}

    def fake_rollouts(model, processor, queries, *, episode_config, rollout_config):
        seen.update(queries=queries, episode_config=episode_config, rollout_config=rollout_config)
        return [SimpleNamespace(episode=SimpleNamespace(answer=q.answer if q.id == "a" else None)) for q in queries]

    monkeypatch.setattr(rollout, "generate_trajectories", fake_rollouts)
    model = SimpleNamespace(eval=lambda: seen.setdefault("eval", True))
    answers = perception.answer(model, None, [_item("a", "read", "7"), _item("b", "read")], TOY_EPISODE,
                                max_new_tokens=16)  # fmt: skip
    assert answers == ["7", None] and seen["eval"]
    assert seen["episode_config"] == replace(TOY_EPISODE, prompt="text")
    assert seen["rollout_config"].max_new_tokens == 16 and seen["rollout_config"].temperature == 0.0
    assert [q.id for q in seen["queries"]] == ["a", "b"] and seen["queries"][0].meta == {"kind": "read"}


def test_run_metrics_hold_the_held_out_scores_and_the_losses():
    from types import SimpleNamespace

    state = SimpleNamespace(
        global_step=6, log_history=[{"step": 1, "loss": 2.5}, {"eval": 1}, {"step": 6, "loss": 0.5}]
    )
    trainer, result = SimpleNamespace(state=state), SimpleNamespace(metrics={"train_runtime": 12.0})
    metrics = perception.run_metrics({"read_accuracy": 0.5, "read_majority": 0.25}, trainer, result, n_items=28)
    assert metrics == {"heldout_read_accuracy": 0.5, "heldout_read_majority": 0.25, "final_loss": 0.5, "first_loss": 2.5,
                       "steps": 6, "train_seconds": 12.0, "items": 28}  # fmt: skip
    assert list(metrics)[0] == "heldout_read_accuracy"  # the headline first
    state.log_history = []
    assert perception.run_metrics({}, trainer, result, n_items=0)["final_loss"] is None
    assert sft.loss_history(SimpleNamespace(state=SimpleNamespace(log_history=[{"step": 2, "loss": 1.0}]))) == [
        (2, 1.0)
    ]
