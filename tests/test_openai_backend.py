"""pxr.evaluation.openai_backend against a local chat-completions server (tests/chat_server.py) with the real openai client."""

import asyncio
import base64
import io
import json
import time

import pytest
from PIL import Image

from pxr import protocol
from pxr.config import EpisodeConfig
from pxr.evaluation.openai_backend import (
    OpenAIBackendConfig,
    generate_trajectories_openai,
    openai_messages,
    read_api_key,
)
from pxr.rollout import Query, RolloutConfig
from tests.chat_server import ChatServer, Reply, has_observation, image_urls, question_text

ZOOM_ARGUMENTS = {"bbox_2d": [0.1, 0.1, 0.5, 0.5]}
# What a server returns for a call when the request stops at "</tool_call>": the closing tag is dropped.
ZOOM_REPLY = (
    "The digit is small; let me look closer.\n"
    + protocol.tool_call_text("zoom_in", ZOOM_ARGUMENTS)[: -len(protocol.TOOL_CALL_CLOSE)]
)
ANSWER_REPLY = "Now I can read it: \\boxed{7}"


def picture(color=(120, 30, 200)):
    image = Image.new("RGB", (200, 150), (240, 240, 240))
    image.paste(Image.new("RGB", (40, 30), color), (30, 20))
    return image


def query(qid="q1", question="Which digit is written in the corner?"):
    return Query(id=qid, question=question, images=[picture()], answer="7")


def zoom_then_answer(body):
    """The two-turn script: a zoom first, the answer once an observation is in the chat."""
    return Reply(ANSWER_REPLY) if has_observation(body) else Reply(ZOOM_REPLY)


def backend(server, **overrides):
    settings = {"model": "scripted", "base_url": server.base_url, "timeout_seconds": 2.0, "max_retries": 1}
    return OpenAIBackendConfig(**{**settings, **overrides})


def run(server, queries, **kwargs):
    rollout_config = kwargs.pop("rollout_config", None)
    episode_config = kwargs.pop("episode_config", None)
    return generate_trajectories_openai(
        queries,
        backend=backend(server, **kwargs),
        rollout_config=rollout_config,
        episode_config=episode_config,
        progress=False,
    )


def decode(url):
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


# ------------------------------------------------------------------------------------------------ the loop


def test_two_turn_episode_zooms_then_answers_with_images_as_data_urls():
    with ChatServer(zoom_then_answer) as server:
        (trajectory,) = run(server, [query()], rollout_config=RolloutConfig(max_new_tokens=77))
    episode = trajectory.episode
    assert trajectory.error is None
    assert episode.ending == "answer" and episode.answer == "7"
    assert episode.n_executed == 1 and len(episode.entries) == 2  # image 2 is the crop
    assert [t.role for t in trajectory.turns] == ["assistant", "observation", "assistant"]
    assert trajectory.turns[0].text.endswith(protocol.TOOL_CALL_CLOSE)  # the dropped stop string is restored

    first, second = server.bodies()
    assert first["stop"] == [protocol.TOOL_CALL_CLOSE] and first["max_tokens"] == 77
    assert first["temperature"] == 0.0 and first["top_p"] == 1.0 and "tools" not in first
    assert len(image_urls(first)) == 1
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    system, _, assistant, observation = second["messages"]
    assert system["content"] == protocol.system_prompt("pixel")
    assert assistant["content"] == trajectory.turns[0].text
    assert observation["content"][0]["type"] == "text"
    assert observation["content"][0]["text"].startswith("<tool_response>\nHere is image 2")
    urls = image_urls(second)
    assert len(urls) == 2
    for url, shown in zip(urls, episode.shown_images, strict=True):
        assert decode(url).tobytes() == shown.tobytes()  # PNG is lossless: exactly the pixels the episode shows
    assert trajectory.prompt_tokens == 10 and trajectory.generated_tokens == 10
    assert trajectory.generate_seconds > 0


def test_video_frames_and_selected_frames_are_sent_in_image_number_order():
    frames = [Image.new("RGB", (64, 48), (k * 40, 0, 0)) for k in range(1, 5)]
    select = protocol.tool_call_text("select_frames", {"target_frames": [3]})
    video_query = Query(id="v", question="What happens?", video=frames)
    with ChatServer(lambda body: Reply("\\boxed{B}") if has_observation(body) else Reply(select)) as server:
        (trajectory,) = run(server, [video_query])
    assert trajectory.episode.ending == "answer" and trajectory.episode.n_executed == 1
    urls = image_urls(server.bodies()[1])
    assert len(urls) == 5
    assert [decode(u).getpixel((0, 0)) for u in urls] == [im.getpixel((0, 0)) for im in trajectory.episode.shown_images]
    first_user = server.bodies()[0]["messages"][1]["content"]
    assert first_user[0] == {"type": "text", "text": "Frame 1:"}


def test_finish_reason_length_ends_the_episode_truncated():
    with ChatServer(lambda body: Reply("I am still thinking about", finish_reason="length")) as server:
        (trajectory,) = run(server, [query()])
    assert trajectory.episode.ending == "truncated"
    assert len(server.requests) == 1 and trajectory.turns[0].text == "I am still thinking about"


def test_token_budget_ends_the_episode_with_limit():
    script = Reply(ZOOM_REPLY, usage={"prompt_tokens": 100, "completion_tokens": 20})
    with ChatServer(lambda body: script) as server:
        (trajectory,) = run(server, [query()], rollout_config=RolloutConfig(max_total_tokens=110))
    assert trajectory.episode.ending == "limit" and trajectory.episode.limit_reason == "max_tokens"
    assert len(server.requests) == 1
    assert trajectory.prompt_tokens == 100 and trajectory.generated_tokens == 20


def test_missing_usage_counts_zero_tokens():
    with ChatServer(lambda body: Reply(ANSWER_REPLY, usage=None)) as server:
        (trajectory,) = run(server, [query()])
    assert trajectory.episode.ending == "answer"
    assert trajectory.prompt_tokens == 0 and trajectory.generated_tokens == 0


# -------------------------------------------------------------------------------------------- native tools


def test_native_tool_calls_are_converted_and_executed():
    def script(body):
        if has_observation(body):
            return Reply(ANSWER_REPLY)
        return Reply("Let me zoom.", finish_reason="tool_calls", tool_calls=[("zoom_in", json.dumps(ZOOM_ARGUMENTS))])

    with ChatServer(script) as server:
        (trajectory,) = run(server, [query()], native_tools=True)
    first, second = server.bodies()
    assert [tool["function"]["name"] for tool in first["tools"]] == ["zoom_in", "select_frames"]
    assert "stop" not in first
    assert first["messages"][0]["content"] == protocol.BASE_SYSTEM_TEXT  # tools are not declared twice
    assert trajectory.turns[0].text == "Let me zoom.\n" + protocol.tool_call_text("zoom_in", ZOOM_ARGUMENTS)
    assert trajectory.episode.n_executed == 1 and trajectory.episode.ending == "answer"
    assert len(image_urls(second)) == 2


@pytest.mark.parametrize(
    ("calls", "error_part"),
    [
        ([("zoom_in", json.dumps(ZOOM_ARGUMENTS))] * 2, "2 tool calls"),
        ([("zoom_in", "{not json")], "not a JSON object"),
    ],
)
def test_bad_native_tool_calls_become_error_observations(calls, error_part):
    def script(body):
        return (
            Reply(ANSWER_REPLY) if has_observation(body) else Reply(None, finish_reason="tool_calls", tool_calls=calls)
        )

    with ChatServer(script) as server:
        (trajectory,) = run(server, [query()], native_tools=True)
    (op,) = trajectory.episode.ops
    assert not op["executed"] and error_part in op["error"]
    assert trajectory.turns[1].role == "observation" and trajectory.turns[1].text.startswith("Execution error:")
    assert trajectory.episode.ending == "answer"


# ------------------------------------------------------------------------------------------------- faults


def test_a_500_is_retried_and_the_episode_completes():
    with ChatServer(zoom_then_answer, fail_first=1, retry_after="0.01") as server:
        (trajectory,) = run(server, [query()])
    assert [r.status for r in server.requests] == [500, 200, 200]
    assert trajectory.error is None and trajectory.episode.ending == "answer"


@pytest.mark.slow
def test_a_429_waits_for_retry_after():
    with ChatServer(zoom_then_answer, fail_first=1, fail_status=429, retry_after="1") as server:
        (trajectory,) = run(server, [query()])
    assert trajectory.episode.ending == "answer"
    rate_limited, retried = server.requests[:2]
    assert rate_limited.status == 429
    assert retried.arrived - rate_limited.arrived >= 0.9  # the client's own backoff would be 0.5 s at most


def test_an_endpoint_that_keeps_failing_ends_only_its_episode():
    def script(body):
        return Reply(status=500) if "broken" in question_text(body) else zoom_then_answer(body)

    with ChatServer(script, retry_after="0.01") as server:
        broken, fine = run(server, [query("bad", "A broken question?"), query("good")])
    assert broken.error.startswith("InternalServerError: ") and broken.episode.ending == "no_answer"
    assert broken.turns == []
    assert sum("broken" in question_text(r.body) for r in server.requests) == 2  # 1 + max_retries
    assert fine.error is None and fine.episode.ending == "answer"


@pytest.mark.slow
def test_a_truncated_body_is_asked_again_and_then_ends_only_its_episode():
    """A 200 cut short raised json.JSONDecodeError out of the rollout, ending every episode of the evaluation."""
    truncated_once = iter([True])

    def script(body):
        if "cut" in question_text(body):
            return Reply(ANSWER_REPLY, truncated=True)
        reply = zoom_then_answer(body)
        reply.truncated = next(truncated_once, False)
        return reply

    with ChatServer(script) as server:
        cut, fine = run(server, [query("c", "A cut question?"), query("f")], max_retries=1)
    assert cut.error.startswith("BadResponseError: ") and cut.episode.ending == "no_answer"
    assert sum("cut" in question_text(r.body) for r in server.requests) == 2  # 1 + max_retries
    assert fine.error is None and fine.episode.ending == "answer"


def test_a_request_past_the_timeout_ends_only_its_episode():
    def script(body):
        return Reply(ANSWER_REPLY, delay_seconds=3) if "slow" in question_text(body) else zoom_then_answer(body)

    start = time.perf_counter()
    with ChatServer(script) as server:
        slow, fine = run(server, [query("s", "A slow question?"), query("f")], timeout_seconds=0.3, max_retries=0)
    assert time.perf_counter() - start < 2.5
    assert slow.error.startswith("APITimeoutError: ") and slow.episode.ending == "no_answer"
    assert fine.error is None and fine.episode.ending == "answer"


# ------------------------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_episodes_overlap_up_to_the_concurrency_and_come_back_in_query_order():
    def script(body):
        k = question_text(body)[1]
        # The first query is the slowest, so it finishes last and the order must be restored.
        return Reply(ANSWER_REPLY.replace("7", k), delay_seconds=0.4 if k == "0" else 0.3)

    queries = [query(f"q{k}", f"#{k} which digit?") for k in range(8)]
    with ChatServer(script) as server:
        trajectories = run(server, queries, concurrency=8)
    assert server.max_in_flight == 8  # all 8 were in flight at once: they overlapped (no wall-clock bound: load-proof)
    assert [t.query.id for t in trajectories] == [q.id for q in queries]
    assert [t.episode.answer for t in trajectories] == [str(k) for k in range(8)]


@pytest.mark.slow
def test_concurrency_bounds_the_requests_in_flight():
    with ChatServer(lambda body: Reply(ANSWER_REPLY, delay_seconds=0.1)) as server:
        trajectories = run(server, [query(f"q{k}") for k in range(6)], concurrency=2)
    assert all(t.episode.ending == "answer" for t in trajectories)
    assert server.max_in_flight == 2


def test_works_where_an_event_loop_already_runs():
    async def notebook_cell():  # a Jupyter kernel runs its cells inside a running loop
        with ChatServer(zoom_then_answer) as server:
            return run(server, [query()])

    (trajectory,) = asyncio.run(notebook_cell())
    assert trajectory.episode.ending == "answer"


# ------------------------------------------------------------------------------------------------ the key


def test_the_api_key_reaches_the_server_and_nothing_else(monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("PXR_TEST_API_KEY", secret)

    def script(body):  # the failing endpoint echoes the key in its error, as a careless proxy might
        if "broken" in question_text(body):
            return Reply(status=400, error_message=f"bad request with key {secret}")
        return zoom_then_answer(body)

    with ChatServer(script) as server:
        config = backend(server, api_key_env="PXR_TEST_API_KEY")
        trajectories = generate_trajectories_openai(
            [query("good"), query("bad", "A broken question?")], backend=config, progress=False
        )
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert all(secret not in json.dumps(r.body) for r in server.requests)
    assert trajectories[0].episode.ending == "answer"
    assert trajectories[1].error.startswith("BadRequestError: ") and "***" in trajectories[1].error
    for trajectory in trajectories:
        assert secret not in json.dumps(trajectory.record())
        assert secret not in (trajectory.error or "")
    assert secret not in repr(config)


def test_a_local_server_without_a_key_gets_a_placeholder(monkeypatch):
    monkeypatch.delenv("PXR_TEST_API_KEY", raising=False)
    with ChatServer(zoom_then_answer) as server:
        run(server, [query()], api_key_env="PXR_TEST_API_KEY")
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_the_official_api_without_a_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("PXR_TEST_API_KEY", raising=False)
    config = OpenAIBackendConfig(model="gpt-4o", api_key_env="PXR_TEST_API_KEY")
    with pytest.raises(ValueError, match="PXR_TEST_API_KEY"):
        read_api_key(config)
    with pytest.raises(ValueError, match="PXR_TEST_API_KEY"):
        generate_trajectories_openai([query()], backend=config, progress=False)


# ------------------------------------------------------------------------------------------- pure pieces


def test_observation_turns_become_wrapped_user_turns_and_placeholders_take_urls_in_order():
    messages = protocol.build_messages("Q?", 1, [("assistant", "call", 0), ("observation", "Here is image 2", 1)])
    converted = openai_messages(messages, ["data:1", "data:2"])
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "user"]
    assert converted[1]["content"][0] == {"type": "image_url", "image_url": {"url": "data:1"}}
    assert converted[3]["content"] == [  # the text the template gives a tool turn (tests/test_backend_parity.py)
        {"type": "text", "text": "<tool_response>\nHere is image 2"},
        {"type": "image_url", "image_url": {"url": "data:2"}},
        {"type": "text", "text": "\n</tool_response>"},
    ]
    assert messages[3]["role"] == "tool"  # the chat itself is left as it was
    with pytest.raises(ValueError, match="more image placeholders"):
        openai_messages(messages, ["data:1"])
    with pytest.raises(ValueError, match="more images"):
        openai_messages(messages, ["data:1", "data:2", "data:3"])


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIBackendConfig(model="m", concurrency=0)
    with pytest.raises(ValueError, match="timeout_seconds"):
        OpenAIBackendConfig(model="m", timeout_seconds=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIBackendConfig(model="m", max_retries=-1)


def test_text_prompt_variant_sends_no_tools_even_when_native():
    with ChatServer(lambda body: Reply(ANSWER_REPLY)) as server:
        (trajectory,) = run(server, [query()], native_tools=True, episode_config=EpisodeConfig(prompt="text"))
    (body,) = server.bodies()
    assert "tools" not in body and body["messages"][0]["content"] == protocol.BASE_SYSTEM_TEXT
    assert trajectory.episode.ending == "answer"
