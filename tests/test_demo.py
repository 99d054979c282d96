"""pxr.evaluation.demo: the stepper runs one episode turn by turn through the rollout engine's path (a scripted generator, then
the tiny model for real); queries from scenes and uploads; the widget callbacks as plain methods."""

import io

import pytest
from PIL import Image

from pxr import protocol
from pxr.config import EpisodeConfig
from pxr.evaluation import demo

ZOOM = "Too small to read. " + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]})


def scripted(turns):
    """A generator that answers each step with the next scripted text (10 tokens each, never truncated)."""
    texts = iter(turns)
    return lambda batch: [(next(texts), 10, False) for _ in batch]


def png_bytes(size=(320, 240)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_stepper_shows_each_zoom_then_the_answer():
    stepper = demo.EpisodeStepper(demo.scene_query("read", 3), scripted([ZOOM, "It reads \\boxed{7}"]))
    first = stepper.step()
    assert (first.number, first.ok, first.done) == (1, True, False)
    assert first.observation.startswith("Here is image 2: the zoomed region of image 1")
    assert len(first.pictures) == 2 and first.titles[1] == "image 2 (zoom of image 1)"
    assert first.pictures[0].size == stepper.trajectory.episode.entries[0].shown.size  # the input as shown, boxed
    second = stepper.step()
    assert (second.number, second.done, second.answer, second.ending) == (2, True, "7", "answer")
    assert second.observation is None and "episode over" in second.markdown()
    with pytest.raises(RuntimeError, match="episode is over"):
        stepper.step()


def test_failed_op_is_shown_as_an_error_and_run_stops_at_the_turn_limit():
    bad = "Zoom. " + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.9, 0.9, 0.1, 0.1]})
    stepper = demo.EpisodeStepper(demo.scene_query("coarse", 1), scripted([bad] * 5), EpisodeConfig(max_turns=3))
    views = stepper.run(max_turns=10)
    assert [v.ok for v in views] == [False, False, None] and views[-1].done
    assert "(error)" in views[0].markdown() and len(views[0].pictures) == 1


def test_token_budget_ends_the_episode():
    stepper = demo.EpisodeStepper(demo.scene_query("read", 0), scripted([ZOOM]), max_total_tokens=5)
    view = stepper.step()
    assert view.done and view.ending == "limit"


@pytest.mark.slow
def test_queries_from_scenes_and_uploads(tmp_path):
    video = demo.scene_query("flash", 2)
    assert video.images is None and len(video.video) > 1 and video.answer is not None
    own = demo.scene_query("read", 2, "What colour is the background?")
    assert own.question == "What colour is the background?" and own.options is None and own.answer is None
    image = demo.upload_query("photo.png", png_bytes(), "What is it?")
    assert image.images[0].size == (320, 240) and image.id == "photo"
    with pytest.raises(ValueError, match="neither an image nor a video"):
        demo.upload_query("notes.txt", b"hello", "What is it?")
    with pytest.raises(ValueError, match="type a question"):
        demo.upload_query("photo.png", png_bytes(), "  ")
    from pxr.video import write_video

    path = write_video([Image.new("RGB", (64, 48), (i * 30, 0, 0)) for i in range(8)], tmp_path / "clip.mp4")
    clip = demo.upload_query("clip.mp4", open(path, "rb").read(), "Which frame is red?", num_frames=4)
    assert len(clip.video) == 4 and clip.video[0].size == (64, 48)


def uploaded(name, content):
    """A file as ipywidgets 8's FileUpload holds it."""
    import datetime

    stamp = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return {"name": name, "content": memoryview(content), "type": "", "size": len(content), "last_modified": stamp}


@pytest.fixture
def app(monkeypatch):
    loaded = []

    def loader(path, episode_config, **kwargs):
        if path == "missing":
            raise OSError("model path missing not found")
        loaded.append((path, episode_config.prompt))
        return "model", "processor"

    monkeypatch.setattr(demo, "model_generator", lambda *a: scripted([ZOOM, "\\boxed{7}", ZOOM, "\\boxed{7}"]))
    application = demo.DemoApp(loader=loader, scene_kind="read", seed=5)
    application.loaded = loaded
    return application


@pytest.mark.slow
def test_widget_callbacks_drive_an_episode(app):
    app.on_new_scene()
    assert app.query.id == "read-5" and "scene read-5" in app.status.value
    app.prompt.value = "pixel-reasoner-v1"
    view = app.on_step()
    assert view.number == 1 and app.loaded == [("", "pixel-reasoner-v1")]
    assert app.stepper.trajectory.episode.config.prompt == "pixel-reasoner-v1"
    views = app.on_run()
    assert [v.number for v in views] == [2] and views[-1].done and "answer '7'" in app.status.value
    app.on_step()  # a finished episode restarts on the same query with the cached model
    assert len(app.loaded) == 1 and [v.number for v in app.views] == [1]
    app.on_new_scene()
    assert app.query.id == "read-6" and app.stepper is None and app.views == []


def test_widget_errors_are_reported_not_raised(app):
    app.model_path.value = "missing"
    assert app.on_step() is None and "not found" in app.status.value
    app.question.value = "What is it?"
    app.upload.value = (uploaded("notes.txt", b"hi"),)
    assert "cannot use notes.txt" in app.status.value
    app.upload.value = (uploaded("a.png", png_bytes()),)
    assert app.query.id == "a" and app.query.question == "What is it?"


@pytest.mark.slow
def test_tiny_model_steps_for_real(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the model's temp folder is removed with tmp_path
    config = EpisodeConfig()
    model, processor = demo.load_demo_model("", config, model_size="tiny")
    rollout_config = demo.RolloutConfig(max_new_tokens=8, batch_size=1)
    stepper = demo.EpisodeStepper(demo.scene_query("read", 0), demo.model_generator(model, processor, rollout_config))
    view = stepper.step()
    assert view.number == 1 and stepper.trajectory.generated_tokens > 0 and view.pictures


@pytest.mark.slow
def test_with_no_model_the_teacher_trajectory_is_replayed_through_the_episode_and_labelled():
    config = EpisodeConfig(image_max_pixels=168 * 112, crop_min_pixels=112 * 112, crop_max_pixels=112 * 112,
                           zoom_padding=0.0)  # fmt: skip
    query = demo.scene_query("tile_digit", 5)
    stepper = demo.EpisodeStepper(query, demo.teacher_generator(query, config), config, 4096, demo.TEACHER_AUTHOR)
    views = stepper.run(8)
    assert views[-1].done and views[-1].ending == "answer" and views[-1].answer == query.answer
    assert all(v.ok for v in views[:-1]) and len(views) >= 2  # every zoom ran, then the answer
    assert all(f"**turn {v.number}, {demo.TEACHER_AUTHOR}:**" in v.markdown() for v in views)
    # The last zoom is on the asked tile: the crop holds its box, within one shown pixel per side (the box is written
    # in whole pixels of the 168x112 overview, rounded outwards: pxr.families).
    crop = stepper.trajectory.episode.entries[-1].root_box
    from pxr import scenes

    scene = scenes.make_scene("tile_digit", 5)
    tile, pixel = scene.cue_box, scene.image.width / stepper.trajectory.episode.entries[0].shown.width
    assert crop[0] <= tile[0] and crop[1] <= tile[1] and tile[2] <= crop[2] and tile[3] <= crop[3]
    assert max(tile[0] - crop[0], tile[1] - crop[1], crop[2] - tile[2], crop[3] - tile[3]) <= pixel + 1
    with pytest.raises(ValueError, match="scene's own question"):
        demo.teacher_generator(demo.scene_query("tile_digit", 5, "What is this?"), config)


@pytest.mark.slow
def test_the_app_replays_the_teacher_when_the_model_is_named_teacher(app):
    app.model_path.value = demo.TEACHER
    app.kind.value = "tile_digit"
    app.on_new_scene()
    views = app.on_run()
    assert views and views[-1].done and views[0].author == demo.TEACHER_AUTHOR
