"""Every backend renders an episode to the same token ids: the in-process engine renders pxr's chat with the
model's processor; the OpenAI-compatible backend sends `openai_messages`, which the server renders with the same
chat template. A 3-turn episode (call, observation, answer) is rendered both ways, for every prompt variant and
with the tiny model of each family."""

import base64
import io

import pytest
from PIL import Image

from pxr import families, models, protocol
from pxr.evaluation.openai_backend import image_data_url, openai_messages
from pxr.rollout import Query, apply_turn, start_trajectory
from tests.conftest import family_episode_config


@pytest.fixture(scope="module", params=list(families.FAMILIES))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def processor(tmp_path_factory, family):
    return models.load_processor(models.build_tiny_model(tmp_path_factory.mktemp(family), seed=0, family=family))


def _picture():
    image = Image.new("RGB", (224, 168), (240, 240, 240))
    image.paste(Image.new("RGB", (56, 42), (120, 30, 200)), (28, 28))
    return image


def _episode(variant: str, family: str):
    trajectory = start_trajectory(
        Query(id="q", question="Which digit is in the corner?", images=[_picture()], answer="7"),
        family_episode_config(family, prompt=variant),
    )
    zoom = "crop_image_normalized" if variant == "pixel-reasoner-v1" else "zoom_in"
    call = "Let me look closer.\n" + protocol.tool_call_text(zoom, {"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": 1})
    apply_turn(trajectory, call, 5)
    prompt_after_call = trajectory.messages()
    apply_turn(trajectory, "It is \\boxed{7}", 5)
    return trajectory, prompt_after_call


def _ids(processor, messages, images):
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images or None, return_tensors="pt", do_resize=False)
    return text, inputs["input_ids"][0].tolist()


def _as_served(messages: list[dict]) -> tuple[list[dict], list[Image.Image]]:
    """What a server makes of a request: `image_url` parts become images for its processor, in order."""
    images, served = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image_url":
                    url = part["image_url"]["url"]
                    images.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            content = parts
        served.append({"role": message["role"], "content": content})
    return served, images


@pytest.mark.slow
@pytest.mark.parametrize("variant", protocol.PROMPT_VARIANTS)
def test_in_process_and_openai_backends_render_the_same_token_ids(processor, family, variant):
    trajectory, prompt_after_call = _episode(variant, family)
    assert [t.role for t in trajectory.turns] == ["assistant", "observation", "assistant"]
    shown = trajectory.episode.shown_images
    assert len(shown) == (1 if variant == "text" else 2)  # the text variant's call fails: an error, no image
    urls = [image_data_url(image) for image in shown]
    for messages in (prompt_after_call, trajectory.messages()):
        n_images = sum(p["type"] == "image" for m in messages for p in m["content"])
        local_text, local_ids = _ids(processor, messages, shown[:n_images])
        served, served_images = _as_served(openai_messages(messages, urls[:n_images]))
        served_text, served_ids = _ids(processor, served, served_images)
        assert served_text == local_text
        assert served_ids == local_ids
    wrapped = "<tool_response>" in local_text
    assert wrapped == (variant != "pixel-reasoner-v1")  # the released format has no wrapper
