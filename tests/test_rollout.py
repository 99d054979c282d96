"""pxr.rollout: the multi-turn loop checked deterministically with a scripted model, then run for real on the
tiny model; records saved and read back."""

import pytest
import torch
from PIL import Image
from transformers import LogitsProcessorList

from pxr import families, models, protocol, rollout_batch
from pxr.config import EpisodeConfig
from pxr.rollout import Query, RolloutConfig, generate_trajectories, load_trajectory_records, save_trajectories
from tests.conftest import family_episode_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.load_model(models.build_tiny_model(tmp_path_factory.mktemp("tiny")), device="cpu")


@pytest.fixture(scope="module", params=list(families.FAMILIES))
def tiny_of_family(request, tmp_path_factory):
    """The tiny model in each family's shape, with the episode settings of that family."""
    config = family_episode_config(request.param)
    path = models.build_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)
    return (*models.load_model(path, device="cpu", episode_config=config), config)


class ScriptedModel:
    """Stands in for a VLM: answers each prompt with `script(prompt_text)` and records what it was given."""

    def __init__(self, tokenizer, script, eos=True):
        self.tokenizer, self.script, self.eos = tokenizer, script, eos
        self.device = torch.device("cpu")
        eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.generation_config = type("GenerationConfig", (), {"eos_token_id": [eos_id]})()
        self.calls = []

    def generate(self, input_ids, attention_mask, image_grid_thw=None, max_new_tokens=16, **kwargs):
        assert protocol.TOOL_CALL_CLOSE in kwargs["stop_strings"]
        self.calls.append({"batch": input_ids.shape[0], "images": 0 if image_grid_thw is None else len(image_grid_thw)})
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = self.tokenizer.decode(ids[mask.bool()].tolist())
            new = self.tokenizer.encode(self.script(prompt))[:max_new_tokens]
            if self.eos and len(new) < max_new_tokens:
                new.append(self.generation_config.eos_token_id[0])
            rows.append(ids.tolist() + new)
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        return torch.tensor([row + [pad] * (width - len(row)) for row in rows])


ZOOM = "The digit is too small. Let me zoom in.\n" + protocol.tool_call_text(
    "zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]}
)


def zoom_then_answer(prompt):
    return "I can read it now: \\boxed{7}" if "<tool_response>" in prompt else ZOOM


def queries(n, size=(300, 200)):
    return [
        Query(
            f"q{i}", "What digit is inside the red square?", images=[Image.new("RGB", size, (i * 20, 9, 9))], answer="7"
        )
        for i in range(n)
    ]


@pytest.mark.slow
def test_scripted_zoom_then_answer(tiny):
    _, processor = tiny
    model = ScriptedModel(processor.tokenizer, zoom_then_answer)
    [t] = generate_trajectories(model, processor, queries(1), progress=False)
    assert [(turn.role, turn.trainable) for turn in t.turns] == [
        ("assistant", True),
        ("observation", False),
        ("assistant", True),
    ]
    assert t.turns[0].text == ZOOM and t.turns[1].ok and t.turns[1].images == [2]
    assert t.turns[1].text.startswith("Here is image 2: the zoomed region of image 1")
    assert t.episode.ending == "answer" and t.episode.answer == "7" and t.episode.n_executed == 1
    assert [c["images"] for c in model.calls] == [1, 2]  # the crop reached the second turn's input
    assert t.generated_tokens == sum(turn.tokens for turn in t.turns) > 0 and t.prompt_tokens > 0


def test_finished_episodes_make_room_for_the_next_queries(tiny):
    _, processor = tiny

    def answer_first_query_at_once(prompt):
        return "\\boxed{1}" if "rgb-marker-0" in prompt else zoom_then_answer(prompt)

    model = ScriptedModel(processor.tokenizer, answer_first_query_at_once)
    items = queries(5)
    items[0].question += " rgb-marker-0"
    trajectories = generate_trajectories(
        model, processor, items, rollout_config=RolloutConfig(batch_size=3), progress=False
    )
    # q0 answers at once and q3 takes its place; q1, q2 answer on turn 2 and q4 joins q3; q4 zooms last
    assert [c["batch"] for c in model.calls] == [3, 3, 2, 1]
    assert [t.query.id for t in trajectories] == ["q0", "q1", "q2", "q3", "q4"]
    assert trajectories[0].episode.n_executed == 0 and all(t.episode.n_executed == 1 for t in trajectories[1:])


def test_turn_cut_by_max_new_tokens_is_truncated(tiny):
    _, processor = tiny
    model = ScriptedModel(processor.tokenizer, lambda prompt: "thinking " * 50, eos=False)
    [t] = generate_trajectories(
        model, processor, queries(1), rollout_config=RolloutConfig(max_new_tokens=8), progress=False
    )
    assert t.episode.ending == "truncated" and t.turns[-1].tokens == 8


def test_total_token_budget_ends_the_episode(tiny):
    _, processor = tiny
    model = ScriptedModel(processor.tokenizer, zoom_then_answer)
    config = RolloutConfig(max_total_tokens=50)
    [t] = generate_trajectories(model, processor, queries(1), rollout_config=config, progress=False)
    assert t.episode.ending == "limit" and t.episode.limit_reason == "max_tokens"


def test_text_after_the_tool_call_is_cut(tiny):
    _, processor = tiny
    model = ScriptedModel(processor.tokenizer, lambda p: "\\boxed{2}" if "<tool_response>" in p else ZOOM + " and more")
    [t] = generate_trajectories(model, processor, queries(1), progress=False)
    assert t.turns[0].text == ZOOM


def test_video_query_frames_are_numbered_images(tiny):
    _, processor = tiny
    frames = [Image.new("RGB", (224, 168), (k * 15, 0, 0)) for k in range(16)]
    select = protocol.tool_call_text("select_frames", {"target_frames": [4, 5]})
    model = ScriptedModel(processor.tokenizer, lambda p: "\\boxed{3}" if "<tool_response>" in p else select)
    [t] = generate_trajectories(model, processor, [Query("v", "Which digit flashes?", video=frames)], progress=False)
    assert t.turns[1].images == [17, 18] and [c["images"] for c in model.calls] == [16, 18]
    assert "Frame 16:" in processor.apply_chat_template(t.messages(), tokenize=False)


@pytest.mark.slow
def test_real_tiny_model_rollout_and_records(tiny_of_family, tmp_path):
    model, processor, episode_config = tiny_of_family
    config = RolloutConfig(max_new_tokens=6, batch_size=4, temperature=1.0)
    trajectories = generate_trajectories(
        model, processor, queries(3), episode_config=episode_config, rollout_config=config, progress=False
    )
    assert all(t.episode.record()["model_family"] == episode_config.model_family for t in trajectories)
    assert all(t.episode.done and t.generated_tokens > 0 for t in trajectories)
    path = save_trajectories(trajectories, tmp_path)
    records = load_trajectory_records(path)
    assert [r["id"] for r in records] == ["q0", "q1", "q2"]
    image = records[0]["episode"]["images"][0]
    assert (tmp_path / image["path"]).exists() and Image.open(tmp_path / image["path"]).size == tuple(
        image["shown_size"]
    )


# ------------------------------------------------------------------------- KV caches kept across turns


@pytest.fixture(scope="module", params=list(families.FAMILIES))
def sharp(request, tmp_path_factory):
    """The tiny model (each family's shape) with larger random weights: its greedy text depends on the prompt (the
    stock init writes newlines whatever it is shown), so a wrong position or a stale cache changes the text."""
    episode_config = family_episode_config(request.param)
    path = models.build_tiny_model(tmp_path_factory.mktemp("sharp"), family=request.param)
    model, processor = models.load_model(path, device="cpu", episode_config=episode_config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "visual" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.15)
    return model, processor, episode_config


class ZoomFirst:
    """The real model, except that a logits processor makes every first turn write a zoom call: the second turn is
    then the model's own greedy text on a prompt that holds the crop, prefilled from the cache the first turn left
    (its keys/values are those of the forced tokens, so the cache covers the whole first turn)."""

    def __init__(self, model, tokenizer):
        self.inner, self.tokenizer = model, tokenizer
        self.forced = tokenizer.encode(ZOOM) + [model.generation_config.eos_token_id[0]]

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def generate(self, input_ids, attention_mask, **kwargs):
        width = input_ids.shape[1]
        first = [
            "<tool_response>" not in self.tokenizer.decode(ids[mask.bool()].tolist())
            for ids, mask in zip(input_ids, attention_mask, strict=True)
        ]

        def force(ids, scores):
            step = ids.shape[1] - width
            for row, is_first in enumerate(first):
                if is_first and step < len(self.forced):
                    scores[row] = torch.where(torch.arange(scores.shape[1]) == self.forced[step], 0.0, -float("inf"))
            return scores

        return self.inner.generate(
            input_ids=input_ids, attention_mask=attention_mask, logits_processor=LogitsProcessorList([force]), **kwargs
        )


def zoom_queries(n):
    return [
        Query(
            f"z{i}",
            "What digit is on the sign?" + " Look closely." * i,
            images=[Image.new("RGB", (308 + 56 * i, 224), (i * 40, 90, 9))],
        )
        for i in range(n)
    ]


def test_prompt_ids_match_the_processor(tiny):
    _, processor = tiny
    images = [Image.new("RGB", (280, 196), (1, 2, 3)), Image.new("RGB", (112, 168), (4, 5, 6))]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = processor(text=[text], images=images, return_tensors="pt", do_resize=False)
    grids = list(processor.image_processor(images=images, return_tensors="pt", do_resize=False)["image_grid_thw"])
    assert rollout_batch.prompt_ids(processor, text, grids) == expected["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="2 image placeholders but the episode has 1 images"):
        rollout_batch.prompt_ids(processor, text, grids[:1])


@pytest.mark.slow
def test_kv_reuse_gives_the_plain_engine_texts_at_every_batch_size(sharp, monkeypatch):
    model, processor, episode_config = sharp
    model_ = ZoomFirst(model, processor.tokenizer)
    config = dict(max_new_tokens=len(model_.forced), temperature=0.0)

    def texts(batch_size):
        trajectories = generate_trajectories(
            model_,
            processor,
            zoom_queries(5),
            episode_config=episode_config,
            rollout_config=RolloutConfig(batch_size=batch_size, **config),
            progress=False,
        )
        return [[(turn.role, turn.text) for turn in t.turns] for t in trajectories], [
            t.prompt_tokens for t in trajectories
        ]

    cached = {batch: texts(batch) for batch in (1, 3)}
    monkeypatch.setattr(rollout_batch, "supports_cache_reuse", lambda model: False)
    plain = texts(1)
    assert cached[1] == plain and cached[3] == plain
    turns, prompt_tokens = plain
    assert [len(t) for t in turns] == [3] * 5  # zoom call, observation with the crop, the model's own answer
    assert len({t[2][1] for t in turns}) == 5  # five different prompts, five different second turns
    assert all(n > 300 for n in prompt_tokens)


@pytest.mark.slow
def test_each_image_is_encoded_once_per_episode(sharp, monkeypatch):
    model, processor, episode_config = sharp
    encoded = []
    encode = rollout_batch._encode_images

    def counting(processor, images, *args, **kwargs):
        encoded.append([image.size for image in images])
        return encode(processor, images, *args, **kwargs)

    monkeypatch.setattr(rollout_batch, "_encode_images", counting)
    model_ = ZoomFirst(model, processor.tokenizer)
    config = RolloutConfig(max_new_tokens=len(model_.forced), batch_size=2)
    trajectories = generate_trajectories(
        model_, processor, zoom_queries(2), episode_config=episode_config, rollout_config=config, progress=False
    )
    shown = [[entry.shown.size for entry in t.episode.entries] for t in trajectories]
    # turn 1: each input image; turn 2: each crop only (the input's keys/values come from the cache)
    assert encoded == [[shown[0][0]], [shown[1][0]], [shown[0][1]], [shown[1][1]]]


class VideoRecordingProcessor:
    """The tiny processor, recording what a processor with a video processor would be given (torchvision is not
    installed here, so the stock one cannot be built); the video's frames are left out of the real call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __call__(self, text, images=None, videos=None, **kwargs):
        self.calls.append({"images": len(images or []), "videos": [len(v) for v in videos or []]})
        text = [t.replace("<|video_pad|>", "") for t in text]
        return self.inner(text=text, images=images, **kwargs)


def test_released_format_gives_the_video_as_one_video_item(tiny):
    _, processor = tiny
    recording = VideoRecordingProcessor(processor)
    frames = [Image.new("RGB", (224, 168), (k * 15, 0, 0)) for k in range(16)]
    select = protocol.tool_call_text("select_frames", {"target_frames": [4, 5]})
    model = ScriptedModel(processor.tokenizer, lambda p: "\\boxed{3}" if "Numbered" in p else select)
    config = EpisodeConfig(prompt="pixel-reasoner-v1", video_input="video")
    [t] = generate_trajectories(
        model, recording, [Query("v", "Which digit flashes?", video=frames)], episode_config=config, progress=False
    )
    assert t.turns[1].text.endswith("Numbered 1 to 2):") and t.episode.ending == "answer"
    # turn 1: the video alone; turn 2: the video and the two selected frames as images
    assert recording.calls == [{"images": 0, "videos": [16]}, {"images": 2, "videos": [16]}]
    text = processor.apply_chat_template(t.messages(), tokenize=False)
    assert text.count("<|video_pad|>") == 1 and "Frame 1:" not in text
