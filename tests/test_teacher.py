"""pxr.synthesis.teacher: the template teacher offline; the OpenAI teacher with the real openai client against the local
chat-completions server in tests/chat_server.py (faults, delays and rate limits scripted there)."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import pytest
from PIL import Image

from pxr.synthesis.teacher import AnalysisRequest, OpenAITeacher, TeacherFailure, TemplateTeacher, check_reply
from tests.chat_server import ChatServer, Faults, Reply, image_urls, question_text

COLOURS = ("red", "blue", "green", "orange", "purple")
SHAPES = ("triangle", "square", "circle", "hexagon")
POSITIONS = ("upper left", "lower right", "middle", "top edge")


def picture(shade=120, size=(64, 48)):
    return Image.new("RGB", size, (shade, 40, 200 - shade))


def scene_request(k: int, **overrides) -> AnalysisRequest:
    """A zoom item as pxr.scenes describes one: the target, its digit (the answer), the other shapes, the position."""
    target = f"{COLOURS[k % 5]} {SHAPES[k % 4]}"
    digit = str(k % 10)
    settings = {
        "item_id": f"item-{k}",
        "mode": "op",
        "question": f"What digit is written inside the {target}?",
        "answer": digit,
        "cue": f"the {target}",
        "facts": {
            "target": target,
            "digit": digit,
            "position": POSITIONS[k % 4],
            "objects": [target, f"{COLOURS[(k + 1) % 5]} {SHAPES[k % 4]}", f"{COLOURS[k % 5]} {SHAPES[(k + 1) % 4]}"],
        },
        "images": [picture(k % 200), picture(k % 200, (32, 32))],
    }
    return AnalysisRequest(**{**settings, **overrides})


def says(text: str, answer: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(answer)}(?![A-Za-z0-9])", text, re.IGNORECASE) is not None


# ------------------------------------------------------------------------------------------- template teacher


def test_template_teacher_is_deterministic_per_seed_and_varied_across_items():
    requests = [scene_request(k) for k in range(40)]
    first = TemplateTeacher(seed=0).analyse(requests)
    assert TemplateTeacher(seed=0).analyse(requests) == first
    assert TemplateTeacher(seed=1).analyse(requests) != first
    assert len({a.whole.split(".")[0].split(";")[0][:25] for a in first}) >= 3  # several phrasings, not one
    assert len({a.local[:20] for a in first}) >= 3
    assert all(a.teacher == "template" and not a.cached for a in first)


@pytest.mark.slow
def test_template_teacher_is_the_same_in_another_process():
    code = "from tests.test_teacher import *; print(TemplateTeacher(3).analyse([scene_request(5)])[0].whole)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip() == TemplateTeacher(3).analyse([scene_request(5)])[0].whole


def test_template_whole_never_names_the_answer_and_local_states_it():
    requests = [scene_request(k) for k in range(60)]
    # Answers that hide in the facts: a colour in the object list, a frame number in the cue.
    requests.append(scene_request(1, question="Which colour is the triangle?", answer="blue"))
    requests.append(scene_request(2, answer="green", facts={"target": "triangle", "objects": ["green triangle"] * 2}))
    requests += [
        AnalysisRequest(f"v{k}", "op", "Which digit flashes?", str(k), is_video=True, cue=f"frames {k}-{k + 1}",
                        facts={"digit": str(k), "background": "drifting stripes"})
        for k in range(1, 9)
    ]  # fmt: skip
    for request, analysis in zip(requests, TemplateTeacher(seed=7).analyse(requests), strict=True):
        assert not says(analysis.whole, request.answer), (request.answer, analysis.whole)
        assert says(analysis.local, request.answer), (request.answer, analysis.local)
        assert "\\boxed" not in analysis.whole + analysis.local and analysis.direct == ""


def test_template_video_phrasing_and_facts_it_does_not_have():
    video = AnalysisRequest("v", "op", "Which digit flashes?", "4", is_video=True, cue="frames 5-6",
                            facts={"digit": "4", "background": "drifting stripes"})  # fmt: skip
    wholes = {TemplateTeacher(seed).analyse([video])[0].whole for seed in range(12)}
    assert any("drifting stripes" in w for w in wholes) and not any("shape" in w for w in wholes)
    bare = AnalysisRequest("b", "op", "What does the sign say?", "exit", cue="the sign", facts={})
    for seed in range(12):
        analysis = TemplateTeacher(seed).analyse([bare])[0]
        text = analysis.whole + analysis.local
        assert "digit" not in text and "near the" not in text  # no digit, no position it was not given
        assert says(analysis.local, "exit") and not says(analysis.whole, "exit")


def test_template_direct_mode_answers_in_words_and_a_hopeless_whole_is_a_failure():
    (direct,) = TemplateTeacher().analyse([scene_request(3, mode="direct")])
    assert says(direct.direct, "3") and direct.whole == direct.local == "" and "\\boxed" not in direct.direct
    # The answer is a word every phrasing needs: reported, never dropped or leaked.
    (failure,) = TemplateTeacher().analyse([scene_request(4, answer="image", cue="the image", facts={})])
    assert isinstance(failure, TeacherFailure) and failure.reason == "reveals answer" and failure.item_id == "item-4"


def test_requests_reject_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        scene_request(0, mode="zoom")


# ------------------------------------------------------------------------------------- reply checks (literal)

GOOD = '{"whole": "Small shapes; the digit is unreadable here.", "local": "The digit is clearly a 7."}'


@pytest.mark.parametrize(
    "text, why",
    [
        (GOOD, ""),
        ("```json\n" + GOOD + "\n```", ""),
        ("Here you go: " + GOOD, ""),
        ("I think the digit is 7.", "not JSON"),
        ('{"whole": "Small shapes."}', "missing whole or local"),
        ('{"whole": "Shapes.", "local": 7}', "missing whole or local"),
        ('{"whole": " ", "local": "It is 7."}', "missing whole or local"),
        ('{"whole": "The triangle holds a 7.", "local": "It is 7."}', "whole reveals the answer"),
        ('{"whole": "Small shapes.", "local": "It is \\\\boxed{7}."}', "contains \\boxed"),
        ('{"whole": "Small shapes.", "local": "It is 17."}', "answer not stated"),
    ],
)
def test_check_reply(text, why):
    parts, reason = check_reply(text, scene_request(7, answer="7"))
    assert reason == why and (parts is None) == bool(why)
    if not why:
        assert parts["local"] == "The digit is clearly a 7."


def test_check_reply_direct_mode_needs_only_direct():
    parts, why = check_reply('{"direct": "It is large; the answer is 7."}', scene_request(7, mode="direct"))
    assert why == "" and parts == {"direct": "It is large; the answer is 7."}


# ---------------------------------------------------------------------------------------------- OpenAI teacher


def answer_in(body) -> str:
    return re.search(r"Correct answer: (.*)", question_text(body)).group(1)


def good_reply(body) -> str:
    return json.dumps({"whole": "Tiny shapes; the mark is unreadable.", "local": f"Zoomed, it is {answer_in(body)}."})


def make_teacher(server, **overrides) -> OpenAITeacher:
    settings = {"model": "scripted", "base_url": server.base_url, "timeout_seconds": 2.0, "max_retries": 1}
    return OpenAITeacher(**{**settings, **overrides})


def test_good_replies_are_parsed_plain_or_fenced_with_images_as_data_urls():
    def script(body):
        reply = good_reply(body)
        return f"```json\n{reply}\n```" if answer_in(body) == "2" else reply

    requests = [scene_request(1), scene_request(2, options=["2", "5"])]
    with ChatServer(script) as server:
        results = make_teacher(server).analyse(requests, progress=False)
    assert [(a.item_id, a.local, a.cached) for a in results] == [
        ("item-1", "Zoomed, it is 1.", False),
        ("item-2", "Zoomed, it is 2.", False),
    ]
    assert all(a.whole == "Tiny shapes; the mark is unreadable." and a.teacher == "openai:scripted" for a in results)
    bodies = {answer_in(b): b for b in server.bodies()}  # concurrent: they arrive in any order
    body = bodies["1"]
    assert body["model"] == "scripted" and body["temperature"] == 0.7
    assert "response_format" not in body and "seed" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert len(image_urls(body)) == 2 and all(u.startswith("data:image/png;base64,") for u in image_urls(body))
    assert "What the closer look at the blue square returned:" in question_text(body)
    assert "Options: 2; 5" in question_text(bodies["2"]) and "Options" not in question_text(body)


def test_json_mode_asks_for_a_json_object():
    with ChatServer(good_reply) as server:
        make_teacher(server, json_mode=True).analyse([scene_request(1)], progress=False)
    assert server.bodies()[0]["response_format"] == {"type": "json_object"}


def test_malformed_replies_are_rejected_counted_retried_and_finally_a_failure():
    replies = iter(["The digit is 7.", '{"whole": "x"}', '{"whole": "It is a 7.", "local": "It is 7."}'])
    with ChatServer(lambda body: next(replies)) as server:
        teacher = make_teacher(server)
        (failure,) = teacher.analyse([scene_request(7)], progress=False)
    assert failure == TeacherFailure("item-7", "malformed", "whole reveals the answer")
    bodies = server.bodies()
    assert [b["temperature"] for b in bodies] == [0.7, 0.85, 1.0]  # each retry samples differently
    assert [b.get("seed") for b in bodies] == [None, 1, 2]
    stats = teacher.stats
    assert stats["requests"] == 3 and stats["malformed"] == 3 and stats["failures"] == {"malformed": 1}
    assert stats["malformed_reasons"] == {"not JSON": 1, "missing whole or local": 1, "whole reveals the answer": 1}


def test_a_malformed_reply_then_a_good_one_succeeds():
    replies = iter(["not json"])
    with ChatServer(lambda body: next(replies, None) or good_reply(body)) as server:
        teacher = make_teacher(server, max_malformed_retries=1)
        (analysis,) = teacher.analyse([scene_request(4)], progress=False)
    assert analysis.local == "Zoomed, it is 4." and teacher.stats["malformed"] == 1 and teacher.stats["requests"] == 2


@pytest.mark.parametrize("status", [500, 503, 429])
def test_http_faults_are_retried_by_the_client_and_counted(status):
    with ChatServer(good_reply, fail_first=2, fail_status=status, retry_after="0.01") as server:
        teacher = make_teacher(server, max_retries=2)
        (analysis,) = teacher.analyse([scene_request(3)], progress=False)
    assert analysis.local == "Zoomed, it is 3."
    assert [r.status for r in server.requests] == [status, status, 200]
    stats = teacher.stats
    assert stats["requests"] == 1 and stats["http_attempts"] == 3 and stats["retries"] == 2
    assert stats["http_errors"] == {status: 2} and stats["failures"] == {}


@pytest.mark.slow
def test_a_429_waits_for_retry_after():
    with ChatServer(good_reply, fail_first=1, fail_status=429, retry_after="0.7") as server:
        (analysis,) = make_teacher(server).analyse([scene_request(3)], progress=False)
    assert analysis.local == "Zoomed, it is 3."
    limited, retried = server.requests
    assert retried.arrived - limited.arrived >= 0.65  # the client's own first backoff is 0.5 s at most


def test_an_endpoint_that_keeps_failing_fails_only_its_item():
    def script(body):
        return Reply(status=500) if answer_in(body) == "1" else good_reply(body)

    with ChatServer(script, retry_after="0.01") as server:
        teacher = make_teacher(server)
        broken, fine = teacher.analyse([scene_request(1), scene_request(2)], progress=False)
    assert broken.reason == "request failed" and broken.detail.startswith("InternalServerError: ")
    assert fine.local == "Zoomed, it is 2."
    assert teacher.stats["http_errors"] == {500: 2} and teacher.stats["failures"] == {"request failed": 1}


@pytest.mark.slow
def test_a_truncated_body_is_a_failed_request_retried_then_counted():
    """A 200 whose JSON is cut short raised json.JSONDecodeError out of `analyse`: the whole chunk was lost."""
    first = iter([True])

    def script(body):
        return Reply(good_reply(body), truncated=answer_in(body) == "1" or next(first, False))

    with ChatServer(script) as server:
        teacher = make_teacher(server, max_retries=1)
        broken, fine = teacher.analyse([scene_request(1), scene_request(2)], progress=False)
    assert broken.reason == "request failed" and broken.detail.startswith("BadResponseError: ")
    assert fine.local == "Zoomed, it is 2."
    stats = teacher.stats
    assert stats["bad_bodies"] == 3 and stats["failures"] == {"request failed": 1}
    assert len(server.requests) == 4  # item 1: 1 + max_retries; item 2: one cut, then a good one


@pytest.mark.slow
def test_every_fault_at_once_loses_no_item_and_hangs_are_bounded():
    """The fault server at high rates: every item ends as an analysis or a counted failure, within the timeouts."""
    faults = Faults(status_500=0.2, status_429=0.1, truncated=0.1, hang=0.1, hang_seconds=60, seed=3)
    start = time.perf_counter()
    with ChatServer(good_reply, faults=faults) as server:
        teacher = make_teacher(server, timeout_seconds=0.3, max_retries=3, concurrency=8)
        results = teacher.analyse([scene_request(k) for k in range(24)], progress=False)
    assert time.perf_counter() - start < 30  # hangs end at the 0.3 s timeout, not the server's 60 s
    assert [r.item_id for r in results] == [f"item-{k}" for k in range(24)]
    drawn = {r.fault for r in server.requests}
    assert {"500", "429", "truncated", "hang"} <= drawn  # the faults were really injected
    analyses = [r for r in results if not isinstance(r, TeacherFailure)]
    # Each item fails only after 4 faulty attempts in a row (about 6 % of items at these rates), and then as a count.
    assert len(analyses) >= 12 and all(r.reason == "request failed" for r in results if r not in analyses)
    assert teacher.stats["bad_bodies"] == sum(r.fault == "truncated" for r in server.requests)


def test_the_fault_server_stops_by_itself_and_binds_only_loopback():
    server = ChatServer(good_reply, lifetime_seconds=0.3)
    with server:
        assert server.base_url.startswith("http://127.0.0.1:")
        server.wait()  # returns once the lifetime is over, without the with block ending
    assert server._stopping.is_set()


@pytest.mark.slow
def test_a_timeout_is_retried_counted_and_reported():
    start = time.perf_counter()
    with ChatServer(lambda body: Reply(good_reply(body), delay_seconds=3)) as server:
        teacher = make_teacher(server, timeout_seconds=0.2, max_retries=1)
        (failure,) = teacher.analyse([scene_request(3)], progress=False)
    assert time.perf_counter() - start < 2.0
    assert failure.reason == "request failed" and failure.detail.startswith("APITimeoutError: ")
    stats = teacher.stats
    assert stats["http_attempts"] == 2 and stats["no_response"] == 2 and stats["retries"] == 1


# ------------------------------------------------------------------------------------------------ the cache


@pytest.mark.slow
def test_a_rerun_sends_nothing_and_returns_the_same_analyses(tmp_path):
    malformed_once = {"item-2"}

    def script(body):
        item = f"item-{answer_in(body)}"
        if item in malformed_once:
            malformed_once.discard(item)
            return "not json"
        return good_reply(body)

    requests = [scene_request(k) for k in range(4)]
    with ChatServer(script) as server:
        first = make_teacher(server, cache_dir=tmp_path).analyse(requests, progress=False)
        sent = len(server.requests)
        again = make_teacher(server, cache_dir=tmp_path)
        second = again.analyse(requests, progress=False)
        assert len(server.requests) == sent == 5  # 4 items, one of them asked twice
        assert again.stats["requests"] == 0 and again.stats["cache_hits"] == 5 and again.stats["malformed"] == 1
        assert [a.cached for a in first] == [False] * 4 and [a.cached for a in second] == [True] * 4
        assert [(a.whole, a.local) for a in second] == [(a.whole, a.local) for a in first]
        # The key covers the pixels and the temperature: either changed is a new request.
        changed = scene_request(0, images=[picture(1), picture(0, (32, 32))])
        make_teacher(server, cache_dir=tmp_path).analyse([changed], progress=False)
        make_teacher(server, cache_dir=tmp_path, temperature=0.2).analyse([requests[0]], progress=False)
        assert len(server.requests) == sent + 2


def test_cached_marks_exactly_the_items_that_sent_nothing(tmp_path):
    requests = [scene_request(k) for k in range(4)]
    with ChatServer(lambda body: Reply(good_reply(body), delay_seconds=0.05)) as server:
        make_teacher(server, cache_dir=tmp_path).analyse(requests[1::2], progress=False)
        # The misses wait on the server while the hits are served: a hit must not mark a waiting miss as cached.
        results = make_teacher(server, cache_dir=tmp_path).analyse(requests, progress=False)
    assert [a.cached for a in results] == [False, True, False, True] and len(server.requests) == 4


def test_an_entry_left_by_a_killed_run_is_ignored(tmp_path):
    requests = [scene_request(1), scene_request(2)]
    with ChatServer(good_reply) as server:
        make_teacher(server, cache_dir=tmp_path).analyse(requests, progress=False)
        one, two = sorted(tmp_path.rglob("*.json"))
        # Killed mid-write: only a partial temporary file exists. And, for robustness, a truncated entry.
        (one.parent / f".{one.stem}.killed.tmp").write_text(one.read_text()[:15])
        one.unlink()
        two.write_text(two.read_text()[:15])
        teacher = make_teacher(server, cache_dir=tmp_path)
        results = teacher.analyse(requests, progress=False)
    assert [a.local for a in results] == ["Zoomed, it is 1.", "Zoomed, it is 2."]
    assert teacher.stats["requests"] == 2 and teacher.stats["cache_hits"] == 0
    assert all("content" in json.loads(p.read_text()) for p in tmp_path.rglob("*.json"))


# ------------------------------------------------------------------------------------------------- the caps


@pytest.mark.parametrize(
    "cap, concurrency", [({"max_requests": 2}, 1), ({"max_requests": 2}, 4), ({"max_total_tokens": 20}, 1)]
)
def test_caps_stop_requests_and_mark_the_rest(cap, concurrency):
    with ChatServer(good_reply) as server:  # every reply uses 10 + 5 tokens
        teacher = make_teacher(server, concurrency=concurrency, **cap)
        results = teacher.analyse([scene_request(k) for k in range(5)], progress=False)
    assert len(server.requests) == 2
    assert sum(isinstance(r, TeacherFailure) and r.reason == "cap reached" for r in results) == 3
    assert teacher.stats["failures"] == {"cap reached": 3} and teacher.stats["total_tokens"] == 30


# ------------------------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_requests_overlap_up_to_the_concurrency_and_come_back_in_order():
    def script(body):
        return Reply(good_reply(body), delay_seconds=0.5 if answer_in(body) == "0" else 0.3)

    start = time.perf_counter()
    with ChatServer(script) as server:
        results = make_teacher(server, concurrency=8).analyse([scene_request(k) for k in range(8)], progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.2, f"8 requests of about 0.3 s took {elapsed:.2f} s: they did not overlap"
    assert server.max_in_flight == 8
    assert [a.local for a in results] == [f"Zoomed, it is {k}." for k in range(8)]


@pytest.mark.slow
def test_concurrency_bounds_the_requests_in_flight():
    with ChatServer(lambda body: Reply(good_reply(body), delay_seconds=0.1)) as server:
        make_teacher(server, concurrency=2).analyse([scene_request(k) for k in range(6)], progress=False)
    assert server.max_in_flight == 2


def test_works_where_an_event_loop_already_runs():
    async def notebook_cell():
        with ChatServer(good_reply) as server:
            return make_teacher(server).analyse([scene_request(5)], progress=False)

    (analysis,) = asyncio.run(notebook_cell())
    assert analysis.local == "Zoomed, it is 5."


# ------------------------------------------------------------------------------------------------- the key


def test_the_api_key_reaches_the_server_and_nothing_else(monkeypatch, tmp_path):
    secret = "sk-test-teacher-0123456789"
    monkeypatch.setenv("PXR_TEST_API_KEY", secret)

    def script(body):  # a careless proxy echoes the key in its error
        return Reply(status=400, error_message=f"bad key {secret}") if answer_in(body) == "1" else good_reply(body)

    with ChatServer(script) as server:
        teacher = make_teacher(server, api_key_env="PXR_TEST_API_KEY", cache_dir=tmp_path)
        results = teacher.analyse([scene_request(1), scene_request(2)], progress=False)
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert results[0].reason == "request failed" and "***" in results[0].detail
    assert results[1].local == "Zoomed, it is 2."
    cache_files = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert cache_files and not any(secret in text for text in cache_files)
    for text in (repr(results), json.dumps(teacher.stats), repr(teacher), repr(vars(teacher))):
        assert secret not in text


def test_the_official_api_without_a_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("PXR_TEST_API_KEY", raising=False)
    with pytest.raises(ValueError, match="PXR_TEST_API_KEY"):
        OpenAITeacher(model="gpt-4o", api_key_env="PXR_TEST_API_KEY").analyse([scene_request(1)], progress=False)
