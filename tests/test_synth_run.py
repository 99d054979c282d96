"""pxr.synthesis.synth_run: seed items on disk, trajectories appended one by one, kill-and-resume without duplicates or loss."""

from collections import Counter

import pytest

from pxr import data
from pxr.config import EpisodeConfig
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TeacherFailure, TemplateTeacher

EPISODE = EpisodeConfig()
SYNTH = synth.SynthConfig(seed=0)


def seed_items(out):
    items = []
    for kind, n in (("read", 6), ("coarse", 3), ("flash", 2)):
        items += synth_run.write_seed_items(kind, n, 0, out, split="train")
    return items


def written(out):
    records, report = data.read_jsonl(out / synth_run.TRAJECTORIES, data.TrajectoryRecord)
    return records, report


@pytest.mark.slow
def test_synthesize_writes_one_trajectory_per_item(tmp_path):
    items = seed_items(tmp_path)
    report = synth_run.synthesize(
        items, tmp_path, TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    records, read = written(tmp_path)
    assert report.written == len(items) == len(records) and read.skipped == 0 and not report.failed
    assert sorted(r.seed_id for r in records) == sorted(i.id for i in items)
    coarse = [r for r in records if r.meta["kind"] == "coarse"]
    assert coarse and all(r.variant == "text_only" and len(r.turns) == 1 for r in coarse)
    for record in records:
        for turn in record.turns:
            assert all((tmp_path / p).exists() for p in turn.images)
        assert record.turns[-1].text.endswith("}") and record.turns[-1].trainable
    video = next(r for r in records if r.is_video)
    assert len(video.inputs) == 16 and "select_frames" in video.turns[0].text


class Killer:
    """A teacher that dies (as a killed process would) after answering `budget` items."""

    def __init__(self, budget):
        self.inner, self.budget = TemplateTeacher(seed=0), budget

    def analyse(self, requests, progress=False):
        if self.budget < len(requests):
            raise KeyboardInterrupt
        self.budget -= len(requests)
        return self.inner.analyse(requests)


@pytest.mark.slow
def test_kill_and_resume_gives_every_item_exactly_once(tmp_path):
    items = seed_items(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        synth_run.synthesize(
            items, tmp_path, Killer(4), synth_config=SYNTH, episode_config=EPISODE, chunk_size=2, progress=False
        )
    first, _ = written(tmp_path)
    assert 0 < len(first) < len(items)
    with (tmp_path / synth_run.TRAJECTORIES).open("a") as f:
        f.write('{"id": "half a line')  # a writer killed mid-line
    report = synth_run.synthesize(
        items, tmp_path, TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    records, read = written(tmp_path)
    assert report.skipped_done == len(first) and report.written == len(items) - len(first)
    assert Counter(r.seed_id for r in records) == Counter(i.id for i in items)  # each exactly once
    assert read.skipped == 0  # the half line was cut, not left in the middle of the file
    assert (tmp_path / synth_run.TRAJECTORIES).read_text().count("half a line") == 0
    again = synth_run.synthesize(
        items, tmp_path, TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    assert again.written == 0 and again.skipped_done == len(items)


@pytest.mark.slow
def test_resumed_run_writes_the_same_trajectories(tmp_path):
    items = seed_items(tmp_path / "a")
    synth_run.synthesize(
        items, tmp_path / "a", TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    items_b = seed_items(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        synth_run.synthesize(
            items_b, tmp_path / "b", Killer(2), synth_config=SYNTH, episode_config=EPISODE, chunk_size=2, progress=False
        )
    synth_run.synthesize(
        items_b, tmp_path / "b", TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    a = {r.seed_id: r.to_dict() for r in written(tmp_path / "a")[0]}
    b = {r.seed_id: r.to_dict() for r in written(tmp_path / "b")[0]}
    assert a == b


class Failing:
    def analyse(self, requests, progress=False):
        return [TeacherFailure(r.item_id, "request failed", "HTTP 500") for r in requests]


@pytest.mark.slow
def test_failures_and_bad_inputs_are_counted_not_dropped_silently(tmp_path):
    items = seed_items(tmp_path)
    (tmp_path / items[0].images[0]).write_bytes(b"not a jpeg")
    (tmp_path / items[1].images[0]).unlink()
    report = synth_run.synthesize(
        items, tmp_path, Failing(), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    assert report.written == 0
    assert report.failed["teacher: request failed"] == len(items) - 2
    assert sum(v for k, v in report.failed.items() if k.startswith("unreadable input")) == 2


@pytest.mark.slow
def test_a_run_where_every_item_fails_says_what_failed_and_what_to_change(tmp_path):
    """Notebook 10 ended in FileNotFoundError on the trajectories file when the server was down or the key wrong."""
    items = seed_items(tmp_path)
    report = synth_run.synthesize(
        items, tmp_path, Failing(), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    assert report.failed_items == len(items) and report.asked == len(items)
    with pytest.raises(synth_run.SynthesisFailed) as failed:
        synth_run.read_trajectories(tmp_path, report)
    message = str(failed.value)
    assert f"teacher: request failed: {len(items)} of {len(items)} (first: HTTP 500)" in message
    assert "teacher_base_url" in message and "OPENAI_API_KEY" in message
    with pytest.raises(synth_run.SynthesisFailed, match="no items were asked for"):
        synth_run.read_trajectories(tmp_path, synth_run.SynthReport())


@pytest.mark.slow
def test_failed_items_are_reported_and_retried_by_the_next_run(tmp_path):
    items = seed_items(tmp_path)

    class FailsSome:
        def analyse(self, requests, progress=False):
            good = TemplateTeacher(seed=0).analyse(requests)
            return [
                TeacherFailure(r.item_id, "cap reached") if i % 3 == 0 else g
                for i, (r, g) in enumerate(zip(requests, good, strict=True))
            ]

    first = synth_run.synthesize(
        items, tmp_path, FailsSome(), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    assert first.failed_items > 0 and "raise teacher_max_requests" in first.failures()
    records, _ = synth_run.read_trajectories(tmp_path, first)
    assert len(records) == first.written == len(items) - first.failed_items
    second = synth_run.synthesize(
        items, tmp_path, TemplateTeacher(seed=0), synth_config=SYNTH, episode_config=EPISODE, progress=False
    )
    assert second.written == first.failed_items and second.failed_items == 0


def test_the_teacher_timeout_is_a_parameter():
    teacher = synth_run.make_teacher("openai", model="m", base_url="http://127.0.0.1:9/v1", timeout_seconds=7.5)
    assert teacher.timeout_seconds == 7.5 and teacher.endpoint.timeout_seconds == 7.5


def test_resuming_with_other_settings_is_refused(tmp_path):
    synth_run.claim_output_dir(tmp_path, {"seed": 0, "target_size": 28})
    synth_run.claim_output_dir(tmp_path, {"seed": 0, "target_size": 28})  # same settings: resume
    with pytest.raises(ValueError, match=r"other settings \(target_size\)"):
        synth_run.claim_output_dir(tmp_path, {"seed": 0, "target_size": 40})


def test_seed_items_are_read_back_instead_of_rendered_again(tmp_path, monkeypatch):
    first = synth_run.write_seed_items("read", 3, 0, tmp_path, split="sft")
    monkeypatch.setattr(synth_run.scenes, "make_scene", lambda *a, **k: pytest.fail("rendered again"))
    assert [i.to_dict() for i in synth_run.write_seed_items("read", 3, 0, tmp_path, split="sft")] == [
        i.to_dict() for i in first
    ]
    assert len(synth_run.write_seed_items("read", 2, 0, tmp_path, split="sft")) == 2


@pytest.mark.slow
def test_seed_items_rendered_in_processes_are_the_ones_rendered_here(tmp_path):
    knobs = dict(width=448, height=320, target_size=28)
    here = synth_run.write_seed_items("read", 30, 5, tmp_path / "here", split="sft", **knobs)
    pooled = synth_run.write_seed_items("read", 30, 5, tmp_path / "pooled", split="sft", workers=2, **knobs)
    assert [i.to_dict() for i in pooled] == [i.to_dict() for i in here]
    assert [i.id for i in pooled] == [f"sft-read-{k:05d}" for k in range(30)]
    for item in (here[0], here[-1]):  # the same pixels, saved by another process
        assert (tmp_path / "pooled" / item.images[0]).read_bytes() == (tmp_path / "here" / item.images[0]).read_bytes()


@pytest.mark.slow
def test_the_teacher_trajectory_of_an_in_memory_scene_is_what_synthesis_writes(tmp_path):
    from pxr import scenes

    items = synth_run.write_seed_items("tile_digit", 4, 0, tmp_path, split="train")
    synth_run.synthesize(items, tmp_path, TemplateTeacher(), synth_config=SYNTH, episode_config=EPISODE, progress=False)
    records, _ = written(tmp_path)
    for item, record in zip(items, records, strict=True):
        scene = scenes.make_scene("tile_digit", item.meta["scene_seed"])
        result = synth_run.teacher_trajectory(scene, item.id, episode_config=EPISODE, synth_config=SYNTH)
        assert result.variant == record.variant
        assert [t.text for t in result.turns] == [t.text for t in record.turns]


def test_suite_config_lists_the_kinds_with_items_and_their_scene_knobs():
    config = synth_run.SuiteConfig(n_read=2, n_tile_digit=1, n_flash=1, n_coarse=0, canvas_width=1500,
                                   canvas_height=1000, target_size=28, tile_size=30)  # fmt: skip
    assert config.counts() == {"tile_digit": 1, "read": 2, "flash": 1}  # in SUITE_KINDS order, kinds with none left out
    assert config.knobs("tile_colour") == {"width": 1500, "height": 1000, "tile_size": 30}
    assert config.knobs("count") == {"width": 1500, "height": 1000, "target_size": 28}
    assert config.knobs("coarse") == {"width": 1500, "height": 1000}
    assert config.knobs("flash") == config.knobs("colour_change") == {}
    assert set(synth_run.SELF_CORRECTION_VARIANTS) == {"wrong_crop", "two_wrong", "overlarge", "wrong_frames"}


def test_write_suites_writes_every_split_from_disjoint_seeds(tmp_path):
    config = synth_run.SuiteConfig(seed=3, n_read=3, n_coarse=1, n_rl_per_kind=2, n_eval_per_kind=1,
                                   canvas_width=448, canvas_height=320)  # fmt: skip
    suites = synth_run.write_suites(config, tmp_path)
    assert [i.id for i in suites.sft] == ["sft-read-00000", "sft-read-00001", "sft-read-00002", "sft-coarse-00000"]
    assert len(suites.rl) == 4 and len(suites.eval) == 2
    scene_seeds = [{i.meta["scene_seed"] for i in split} for split in (suites.sft, suites.rl, suites.eval)]
    assert not (scene_seeds[0] & scene_seeds[1]) and not (scene_seeds[0] & scene_seeds[2])
    assert suites.op_needed_share == 0.75
    assert str(suites) == "4 SFT items, 4 RL queries, 2 held-out queries; 75% of SFT items need an op"
    assert len(data.read_jsonl(tmp_path / "seed_items.jsonl", data.SeedItem)[0]) == 4
    assert len(data.read_jsonl(tmp_path / synth_run.RL_QUERIES, data.RLQuery)[0]) == 4
    assert len(data.read_jsonl(tmp_path / synth_run.EVAL_QUERIES, data.RLQuery)[0]) == 2


def test_resume_settings_name_the_teacher_model_only_for_a_teacher_that_has_one():
    config = synth_run.SuiteConfig(seed=1, canvas_width=1500, canvas_height=1000, target_size=30, tile_size=30)
    settings = synth_run.resume_settings(config, teacher="template", teacher_model="gpt-4o", episode_config=EPISODE,
                                         synth_config=SYNTH)  # fmt: skip
    assert settings == {"seed": 1, "canvas": [1500, 1000], "target_size": 30, "tile_size": 30, "teacher": "template",
                        "teacher_model": "", "jpeg_quality": 95, "episode": EPISODE, "synth": SYNTH}  # fmt: skip
    assert synth_run.resume_settings(config, teacher="openai", teacher_model="gpt-4o", episode_config=EPISODE,
                                     synth_config=SYNTH)["teacher_model"] == "gpt-4o"  # fmt: skip


@pytest.mark.slow
def test_run_metrics_and_one_trajectory_per_variant(tmp_path):
    suites = synth_run.write_suites(synth_run.SuiteConfig(n_read=6, n_coarse=2, n_rl_per_kind=1), tmp_path)
    report = synth_run.synthesize(suites.sft, tmp_path, TemplateTeacher(seed=0), synth_config=SYNTH,
                                  episode_config=EPISODE, progress=False)  # fmt: skip
    records, _ = synth_run.read_trajectories(tmp_path, report)
    shown = synth_run.one_per_variant(records)
    assert sorted(r.variant for r in shown) == sorted({r.variant for r in records})
    assert all(r is next(x for x in records if x.variant == r.variant) for r in shown)  # the first of each
    metrics = synth_run.run_metrics(records, report, suites)
    corrections = sum(r.variant in ("wrong_crop", "two_wrong", "overlarge") for r in records)
    turns = [t for r in records for t in r.turns if t.role == "assistant"]
    assert metrics == {
        "sft_trajectories": 8, "written_this_run": 8, "failed_items": 0, "op_needed_share": 0.75,
        "self_correction_share": round(corrections / 8, 3),
        "masked_assistant_turn_share": round(sum(not t.trainable for t in turns) / len(turns), 3),
        "rl_queries": 2, "eval_queries": 0,
    }  # fmt: skip
    assert 0 < metrics["masked_assistant_turn_share"] < 1 or corrections == 0
